//! Lloyd-Max quantizers, kind `lloydmax`.
//!
//! The `2^k` levels that minimize the mean squared error for `N(0, 1)` data
//! ([`sdk::gauss::lloyd_max`]), times the RMS of each row (or group): the
//! scalar lower bound that a ranking compares other formats against. Trust
//! mask: the gradient passes where the value is within half a spacing of the
//! outer levels.

use sdk::grid::{Levels, clip_mask_range, map};
use sdk::{Bits, Error, Family, Format, Kind, Preset, Result, Shape, Tensor, gauss, rows, scale};

sdk::params! {
    /// Parameters of a Lloyd-Max quantizer.
    pub struct LloydMaxParams {
        /// Bits per element (1..=8).
        bits: u32 = 4,
        /// Values sharing one scale along a row (0 = the whole row).
        group: usize = 0,
        /// Bits counted for each stored scale.
        scale_bits: u32 = 16,
    }
}

/// A built Lloyd-Max quantizer.
#[derive(Debug, Clone)]
pub struct LloydMax {
    bits: u32,
    levels: Levels,
    group: usize,
    scale_bits: u32,
}

impl Format for LloydMax {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        for g in rows::tensor_groups(t, self.group) {
            let s = scale::rms(g.input);
            map(g.input, g.output, self.levels.quantizer(s));
            if let Some(m) = g.mask {
                let (lo, hi) = self.levels.clip_range(s);
                clip_mask_range(g.input, m, lo, hi);
            }
        }
        Ok(())
    }

    fn bits(&self, shape: Shape) -> Bits {
        rows::grouped_bits(self.bits as f64, self.scale_bits, shape.cols, self.group)
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn block_len(&self) -> Option<usize> {
        (self.group > 0).then_some(self.group)
    }

    fn label(&self) -> Option<String> {
        let per = if self.group > 0 { format!("g{}", self.group) } else { "per row".to_string() };
        Some(format!("Lloyd-Max {}-bit x RMS {per}", self.bits))
    }
}

/// Kind `lloydmax`: Lloyd-Max levels times the RMS.
pub struct LloydMaxKind;

impl Kind for LloydMaxKind {
    type Params = LloydMaxParams;
    const NAME: &'static str = "lloydmax";
    const DOC: &'static str = "Lloyd-Max k-bit quantizer: the 2^k levels that minimize the mean squared error for \
        N(0,1) data, times the RMS of each row (or group). The scalar lower bound for Gaussian data.";
    const PRESETS: &'static [Preset] = &[
        Preset::new("lloydmax1", "bits = 1", "Lloyd-Max 1-bit (±0.7979 RMS) per row"),
        Preset::new("lloydmax2", "bits = 2", "Lloyd-Max 2-bit (±0.4528, ±1.5104 RMS) per row"),
        Preset::new("lloydmax3", "bits = 3", "Lloyd-Max 3-bit per row"),
        Preset::new("lloydmax4", "bits = 4", "Lloyd-Max 4-bit per row"),
        Preset::new("lloydmax5", "bits = 5", "Lloyd-Max 5-bit per row"),
        Preset::new("lloydmax6", "bits = 6", "Lloyd-Max 6-bit per row"),
        Preset::new("lloydmax7", "bits = 7", "Lloyd-Max 7-bit per row"),
        Preset::new("lloydmax8", "bits = 8", "Lloyd-Max 8-bit per row"),
    ];

    fn build(p: LloydMaxParams) -> Result<Box<dyn Format>> {
        if !(1..=8).contains(&p.bits) {
            return Err(Error::param("bits", format!("must be 1..=8, got {}", p.bits)));
        }
        if p.scale_bits > 64 {
            return Err(Error::param("scale_bits", format!("must be 0..=64, got {}", p.scale_bits)));
        }
        let levels = Levels::from_f64(gauss::lloyd_max(p.bits));
        Ok(Box::new(LloydMax { bits: p.bits, levels, group: p.group, scale_bits: p.scale_bits }))
    }
}

sdk::export_plugin!(name: "lloydmax", kinds: [LloydMaxKind]);

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::testing::{self, build, estimate_on, gaussian, gaussian_tensors, preset, run};

    #[test]
    fn conformance() {
        testing::check_kind::<LloydMaxKind>();
    }

    #[test]
    fn options_and_errors() {
        testing::check_format("bits = 3, group = 64", &*build::<LloydMaxKind>("bits = 3, group = 64").unwrap());
        assert!(build::<LloydMaxKind>("bits = 9").err().unwrap().to_string().contains("`bits`"));
        assert!(build::<LloydMaxKind>("bits = 0").is_err());
        let f = preset::<LloydMaxKind>("lloydmax3");
        assert_eq!(f.bits(Shape::new(8, 1024)).total(), 3.0 + 16.0 / 1024.0);
        assert_eq!(f.label().unwrap(), "Lloyd-Max 3-bit x RMS per row");
    }

    /// Scalar reference: nearest of the f64 levels times the f64 row RMS, by scan.
    #[test]
    fn fast_path_matches_reference() {
        let shape = Shape::new(4, 1024);
        let x = gaussian(shape.len(), 4);
        for bits in 1..=8 {
            let (y, _) = run(&*preset::<LloydMaxKind>(&format!("lloydmax{bits}")), &x, shape, 0, false).unwrap();
            let levels = gauss::lloyd_max(bits);
            let mut worst = 0f64;
            for (row, out) in x.chunks(shape.cols).zip(y.chunks(shape.cols)) {
                let rms = (row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / row.len() as f64).sqrt();
                for (&v, &q) in row.iter().zip(out) {
                    let t = v as f64 / rms;
                    let best = levels.iter().fold(levels[0], |b, &l| if (t - l).abs() < (t - b).abs() { l } else { b });
                    worst = worst.max((q as f64 - best * rms).abs());
                }
            }
            println!("lloydmax{bits}: max |fast - reference| = {worst:e}");
            assert!(worst < 1e-5, "lloydmax{bits}: {worst}");
        }
    }

    #[test]
    fn mask_closes_outside_the_outer_cells() {
        let shape = Shape::new(2, 2048);
        let x = gaussian(shape.len(), 6);
        let (_, m) = run(&*preset::<LloydMaxKind>("lloydmax2"), &x, shape, 0, true).unwrap();
        let closed = m.unwrap().iter().filter(|&&v| v == 0.0).count() as f64 / x.len() as f64;
        // Outer levels ±1.5104, spacing 1.0576: clipped beyond 2.039, P = 4.1 %.
        assert!((0.025..0.06).contains(&closed), "{closed}");
    }

    /// Monte Carlo GMSE against the exact Lloyd-Max values (DESIGN.md 3).
    /// Tolerance: 3 standard errors of the mean of per-tensor values plus
    /// 0.5 % of the oracle (the row RMS is estimated from 4096 values).
    #[test]
    fn gmse_oracles() {
        let shape = Shape::new(64, 4096);
        let tensors = gaussian_tensors(shape, 300..308);
        let want = [0.36338, 0.11748, 0.034548, 0.0095010, 2.5047e-3, 6.4424e-4, 1.6348e-4, 4.1185e-5];
        for (b, w) in (1..=8).zip(want) {
            let name = format!("lloydmax{b}");
            estimate_on(&*preset::<LloydMaxKind>(&name), shape, &tensors).assert_close(&name, w);
        }
    }
}
