//! A minimal format plugin: symmetric INT-k with one scale per tensor.
//!
//! The `2^(k-1) - 1` positive levels, their negatives and zero (mid-tread,
//! e.g. -3..=3 for k = 3) are spaced so that the outer level sits at `clip`
//! times the tensor's RMS; values beyond it are clamped. One FP32 scale is
//! stored per tensor, so a `rows x cols` tensor costs `k + 32 / (rows * cols)`
//! bits per element.
//!
//! Everything a plugin needs is here: a parameter struct ([`sdk::params!`]),
//! a [`Format`] (compress + honest bits), a [`Kind`] with a preset, the export
//! macro, and the one-line conformance test.

use sdk::{Bits, Error, Family, Format, Kind, Preset, Result, Shape, Tensor};

sdk::params! {
    /// Parameters of `example-int`.
    pub struct ExampleIntParams {
        /// Bits per element, 2..=8 (levels -(2^(bits-1)-1) ..= 2^(bits-1)-1).
        bits: u32 = 3,
        /// Outer level in units of the tensor's RMS; must be positive.
        clip: f64 = 2.0,
    }
}

/// A built `example-int` format.
pub struct ExampleInt {
    bits: u32,
    /// Number of positive levels, `2^(bits-1) - 1`.
    levels: f32,
    clip: f64,
}

impl Format for ExampleInt {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        // One scale for the whole tensor, from its RMS (accumulated in f64).
        let n = t.input.len().max(1) as f64;
        let rms = (t.input.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / n).sqrt();
        let step = (self.clip * rms) as f32 / self.levels;
        if !(step > 0.0 && step.is_finite()) {
            // All zeros (or nothing representable): zero is exact for zeros.
            t.output.fill(0.0);
            return Ok(());
        }
        for (x, y) in t.input.iter().zip(t.output.iter_mut()) {
            *y = (x / step).round_ties_even().clamp(-self.levels, self.levels) * step;
        }
        Ok(())
    }

    fn bits(&self, shape: Shape) -> Bits {
        Bits::elements(f64::from(self.bits)).per_tensor("scale (fp32)", 32.0, shape)
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn label(&self) -> Option<String> {
        Some(format!("INT{} per-tensor RMS scale, clip {}", self.bits, self.clip))
    }
}

/// The kind `example-int` and its preset `example-int3-tensor`.
pub struct ExampleIntKind;

impl Kind for ExampleIntKind {
    type Params = ExampleIntParams;
    const NAME: &'static str = "example-int";
    const DOC: &'static str = "Example plugin: symmetric INT-k, mid-tread, one FP32 scale per tensor \
                               placing the outer level at `clip` x the tensor RMS.";
    const PRESETS: &'static [Preset] =
        &[Preset::new("example-int3-tensor", "bits = 3, clip = 2.0", "INT3 (levels -3..=3), outer level at 2 RMS")];

    fn build(p: ExampleIntParams) -> Result<Box<dyn Format>> {
        if !(2..=8).contains(&p.bits) {
            return Err(Error::param("bits", format!("must be 2..=8, got {}", p.bits)));
        }
        if !(p.clip > 0.0 && p.clip.is_finite()) {
            return Err(Error::param("clip", format!("must be a positive number, got {}", p.clip)));
        }
        let levels = ((1u32 << (p.bits - 1)) - 1) as f32;
        Ok(Box::new(ExampleInt { bits: p.bits, levels, clip: p.clip }))
    }
}

sdk::export_plugin!(name: "minimal-plugin", kinds: [ExampleIntKind]);

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        sdk::testing::check_kind::<super::ExampleIntKind>();
    }
}
