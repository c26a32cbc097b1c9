//! Kind `nvfp4`: NVIDIA's NVFP4.
//!
//! E2M1 elements in blocks of 16 values along a row, with a two-level scale:
//! a per-tensor FP32 scale `s = amax_tensor / (448 * 6)` and per block an
//! E4M3 code `d_b = e4m3(amax_b / 6 / s)` (round to nearest even,
//! saturating at 448), so the block scale is `scale_b = d_b * s`. Elements are
//! `x / scale_b` rounded to nearest even on the E2M1 grid and saturated at 6;
//! the output is `element * scale_b`.
//!
//! As in Transformer Engine's kernels, the divisions of the formula are done
//! as multiplications: the block code is `e4m3(amax_b * (448 / amax))` and
//! elements are `x * (1 / scale_b)` (one division per tensor and one per
//! block). This can differ from the divisions only for a value within about
//! one ulp of a rounding midpoint.

use sdk::grid::{clip_mask, map};
use sdk::minifloat::Minifloat;
use sdk::{Bits, Error, Family, Format, Kind, Preset, Result, Shape, Tensor};

use crate::{BlockOp, MagicRound, absmax, block_bits, for_blocks};

sdk::params! {
    /// Parameters of NVFP4.
    pub struct Nvfp4Params {
        /// Values sharing one E4M3 block scale along a row.
        block: usize = 16,
    }
}

/// `448 * 6`: the largest E4M3 code times the largest E2M1 element.
const TOP: f32 = 448.0 * 6.0;

/// A built NVFP4 format.
#[derive(Debug, Clone)]
pub struct Nvfp4 {
    block: usize,
    e2m1: Minifloat,
    e4m3: Minifloat,
}

/// One NVFP4 block, given the tensor's scales.
struct Nvfp4Op {
    /// Per-tensor scale `s = amax / (448 * 6)`.
    s: f32,
    /// `448 / amax`: `amax_b * to_code = amax_b / 6 / s`.
    to_code: f64,
    /// False for an all-zero (or non-finite) tensor: every block gives zeros.
    usable: bool,
    e4m3: MagicRound,
    e2m1: MagicRound,
    /// E2M1 clip limit: `6 + 2 / 2`.
    clip: f32,
}

impl BlockOp for Nvfp4Op {
    #[inline(always)]
    fn block(&self, x: &[f32], y: &mut [f32], mask: Option<&mut [f32]>, _: usize) {
        let sb = self.e4m3.round((absmax(x) as f64 * self.to_code) as f32) * self.s;
        if !(self.usable && sb > 0.0 && sb.is_finite()) {
            // An all-zero tensor, or a block too small for the smallest E4M3 code.
            y.fill(0.0);
            if let Some(m) = mask {
                clip_mask(x, m, 0.0);
            }
            return;
        }
        // x * (1 / scale_b), then E2M1 (round to nearest even, saturating), times scale_b.
        let inv = 1.0 / sb;
        let e2m1 = self.e2m1;
        map(x, y, |v| e2m1.round(v * inv) * sb);
        if let Some(m) = mask {
            clip_mask(x, m, self.clip * sb);
        }
    }
}

impl Nvfp4 {
    /// The per-block work for a tensor `input` (its per-tensor scale included).
    fn op(&self, input: &[f32]) -> Nvfp4Op {
        let amax = absmax(input);
        let s = amax / TOP;
        Nvfp4Op {
            s,
            // amax_b / 6 / s = amax_b * (448 / amax), one multiplication per block
            // (in f64, so that a tiny tensor amax does not overflow the factor).
            to_code: 448.0 / amax as f64,
            usable: s > 0.0 && s.is_finite(),
            e4m3: MagicRound::new(&self.e4m3, 0).expect("E4M3 at scale 1 is in range"),
            e2m1: MagicRound::new(&self.e2m1, 0).expect("E2M1 at scale 1 is in range"),
            clip: self.e2m1.clip_limit(1.0),
        }
    }
}

/// The block loop compiled for AVX2 (eight lanes instead of four). Same
/// arithmetic, same results (tested against the baseline loop).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn compress_avx2(t: Tensor<'_>, block: usize, op: &Nvfp4Op) -> Result<()> {
    for_blocks(t, block, op)
}

impl Format for Nvfp4 {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        let op = self.op(t.input);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { compress_avx2(t, self.block, &op) };
        }
        for_blocks(t, self.block, &op)
    }

    fn bits(&self, shape: Shape) -> Bits {
        block_bits(4.0, "E4M3", 8, shape.cols, self.block).per_tensor("scale (FP32)", 32.0, shape)
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn block_len(&self) -> Option<usize> {
        Some(self.block)
    }

    fn label(&self) -> Option<String> {
        Some(format!("NVFP4 (E2M1), E4M3 scale per {} + FP32 scale per tensor", self.block))
    }
}

/// Kind `nvfp4`: E2M1 elements with E4M3 block scales and an FP32 tensor scale.
pub struct Nvfp4Kind;

impl Kind for Nvfp4Kind {
    type Params = Nvfp4Params;
    const NAME: &'static str = "nvfp4";
    const DOC: &'static str = "NVIDIA NVFP4: E2M1 elements in blocks of `block` (16) values along a row. Two-level \
        scale: per tensor FP32 s = amax / (448 * 6); per block an E4M3 code e4m3(amax_b / 6 / s), computed as \
        amax_b * (448 / amax) (round to nearest even, saturating at 448), block scale = code * s. Elements \
        x * (1 / scale) rounded to nearest even on E2M1 and saturated at 6. A block whose code rounds to 0 \
        gives zeros. Bits counted: 4 + 8/16 (E4M3 per block) + 32/(rows*cols) (FP32 per tensor). Trust mask where values are not clipped.";
    const PRESETS: &'static [Preset] =
        &[Preset::new("nvfp4", "block = 16", "NVFP4: E2M1, E4M3 scale per 16, FP32 scale per tensor")];

    fn build(p: Nvfp4Params) -> Result<Box<dyn Format>> {
        if p.block == 0 {
            return Err(Error::param("block", "must be at least 1"));
        }
        Ok(Box::new(Nvfp4 { block: p.block, e2m1: Minifloat::standard(2, 1)?, e4m3: Minifloat::standard(4, 3)? }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::testing::{self, build, estimate_on, gaussian_tensors, preset, run};

    #[test]
    fn conformance() {
        testing::check_kind::<Nvfp4Kind>();
        testing::check_format("block = 24", &*build::<Nvfp4Kind>("block = 24").unwrap());
        assert!(build::<Nvfp4Kind>("block = 0").err().unwrap().to_string().contains("`block`"));
    }

    /// A hand-computed example of the two-level scale.
    #[test]
    fn exact_two_level_scale() {
        // One row of three blocks of 16. Tensor amax 10.5 = 2688 / 256, so s = 2^-8 exactly.
        let mut x = vec![0.0f32; 48];
        // Block 0: amax 10.5 -> 10.5 / 6 / s = 448 -> E4M3 448 -> scale 448 / 256 = 1.75.
        // 10.5 / 1.75 = 6 -> 10.5; 5 / 1.75 = 2.857 -> 3 -> 5.25; -2 / 1.75 = -1.143 -> -1 -> -1.75.
        x[..3].copy_from_slice(&[10.5, 5.0, -2.0]);
        // Block 1: amax 1 -> 1 / 6 / s = 42.67 -> E4M3 (step 4 in [32, 64)) 44 -> scale 44 / 256 = 0.171875.
        // 1 / 0.171875 = 5.82 -> 6 -> 1.03125; 0.5 -> 2.91 -> 3 -> 0.515625;
        // 0.3 -> 1.745 -> 1.5 -> 0.2578125; 0.04 -> 0.233 -> 0.
        x[16..20].copy_from_slice(&[1.0, 0.5, -0.3, 0.04]);
        // Block 2: amax 0.001 -> 0.04267 -> E4M3 (step 2^-8 in [2^-5, 2^-4)) 11 * 2^-8 -> scale 11 * 2^-16;
        // 0.001 / scale = 5.958 -> 6 -> 66 * 2^-16.
        x[32] = 0.001;
        let f = preset::<Nvfp4Kind>("nvfp4");
        let (y, _) = run(&*f, &x, Shape::new(1, 48), 0, false).unwrap();
        let mut want = vec![0.0f32; 48];
        want[..3].copy_from_slice(&[10.5, 5.25, -1.75]);
        want[16..20].copy_from_slice(&[1.03125, 0.515625, -0.2578125, 0.0]);
        want[32] = 66.0 / 65536.0;
        assert_eq!(y, want);
        // Saturation: a block code rounded down puts the block's amax above 6 * scale; it maps to 6 * scale.
        let x = [12.0f32, 7.4, 1.0, 0.0];
        let f = build::<Nvfp4Kind>("block = 2").unwrap();
        let (y, _) = run(&*f, &x, Shape::new(2, 2), 0, false).unwrap();
        // s = 12 / 2688; block 0: code 448 -> scale 2 (up to rounding of s) -> 12, 7.4/2 = 3.7 -> 4 -> 8.
        assert!((y[0] - 12.0).abs() < 1e-5 && (y[1] - 8.0).abs() < 1e-5, "{y:?}");
        // Block 1: amax 1 -> 1/6/s = 37.33 -> 36 (step 4) -> scale 36 * 12 / 2688 = 0.1607; 1 -> 6.22 -> 6.
        assert!((y[2] - 6.0 * 36.0 * 12.0 / 2688.0).abs() < 1e-6, "{y:?}");
        // All-zero tensor.
        let (y, _) = run(&*f, &[0.0; 4], Shape::new(2, 2), 0, true).unwrap();
        assert_eq!(y, [0.0; 4]);
    }

    #[test]
    fn bits() {
        let f = preset::<Nvfp4Kind>("nvfp4");
        let b = f.bits(Shape::new(256, 4096));
        assert_eq!(b.total(), 4.5 + 32.0 / (256.0 * 4096.0));
        let names: Vec<&str> = b.parts.iter().map(|p| p.what.as_str()).collect();
        assert_eq!(names, ["elements", "scale (E4M3) per 16", "scale (FP32) per tensor"]);
        assert_eq!(f.block_len(), Some(16));
    }

    /// The AVX2 build of the loop (taken by `compress` where the CPU has
    /// AVX2) and the baseline build give the same bits.
    #[test]
    fn simd_paths_agree() {
        let shape = Shape::new(8, 256);
        let x = sdk::testing::gaussian(shape.len(), 9);
        let f = Nvfp4 { block: 16, e2m1: Minifloat::standard(2, 1).unwrap(), e4m3: Minifloat::standard(4, 3).unwrap() };
        let (y, _) = run(&f, &x, shape, 0, false).unwrap();
        let mut z = vec![0.0; x.len()];
        let t = Tensor { input: &x, output: &mut z, mask: None, shape, seed: 0 };
        for_blocks(t, 16, &f.op(&x)).unwrap();
        assert!(y.iter().zip(&z).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    /// Monte Carlo GMSE against DESIGN.md 3 (NVFP4 1x16, MC). Tolerance: 3
    /// standard errors of the mean of the per-tensor values plus 0.5 % of the
    /// oracle. 4 tensors of 64 x 4096.
    #[test]
    fn gmse_oracle() {
        let shape = Shape::new(64, 4096);
        let tensors = gaussian_tensors(shape, 400..404);
        estimate_on(&*preset::<Nvfp4Kind>("nvfp4"), shape, &tensors).assert_close("nvfp4", 9.0389e-3);
    }
}
