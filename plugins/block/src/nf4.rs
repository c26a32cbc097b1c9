//! Kind `nf4`: QLoRA's NormalFloat-4.
//!
//! The 16 NF4 levels (the table of Dettmers et al., 2023, as bitsandbytes
//! ships it) times the block's absmax, blocks of 64 values along a row; each
//! value goes to the nearest level (bitsandbytes multiplies by `1 / absmax`
//! and compares with the midpoints between levels, as done here). The
//! absmax never clips, so the trust mask is left open.

use sdk::{Bits, Error, Family, Format, Kind, Preset, Result, Shape, Tensor};

use crate::{BlockOp, absmax, block_bits, for_blocks};

sdk::params! {
    /// Parameters of NF4.
    pub struct Nf4Params {
        /// Values sharing one absmax scale along a row.
        block: usize = 64,
        /// Bits counted for each stored absmax (QLoRA stores FP32; double quantization is not modelled).
        scale_bits: u32 = 32,
    }
}

/// The 16 NF4 levels, ascending (QLoRA / bitsandbytes).
pub const NF4_LEVELS: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// Midpoints between neighbouring levels (`0.5 * (l[i] + l[i + 1])`, as
/// `sdk::grid::Levels` computes them): a value above `MIDPOINTS[i]` is at least level `i + 1`.
const MIDPOINTS: [f32; 15] = {
    let mut t = [0f32; 15];
    let mut i = 0;
    while i < 15 {
        t[i] = 0.5 * (NF4_LEVELS[i] + NF4_LEVELS[i + 1]);
        i += 1;
    }
    t
};

/// The levels are multiples of `2^-27` (the spacing of `f32` values in
/// `[2^-4, 2^-3)`, where the smallest nonzero levels lie), at most `2^27` of them
/// in magnitude: exact as `i32` in units of `2^-27`.
const FIXED: f32 = (1u32 << 27) as f32;

/// `2^64`.
const TWO_64: f32 = 18_446_744_073_709_551_616.0;

/// The levels in units of `2^-27` (exact; checked by a test).
const LEVELS_FIXED: [i32; 16] = {
    let mut l = [0i32; 16];
    let mut i = 0;
    while i < 16 {
        l[i] = (NF4_LEVELS[i] * FIXED) as i32;
        i += 1;
    }
    l
};

/// The NF4 level nearest to `v` (a value on a midpoint goes to the lower
/// level), in units of `2^-27`: the lowest level plus the step between level
/// `k` and `k + 1` for every midpoint `k` below `v`. Branch-free and
/// vectorizable: 15 compares, 15 masks, 15 integer additions (exact and
/// associative, so they need not be a 15-deep chain). A table lookup would
/// need a gather, which baseline x86-64 does not have.
#[inline(always)]
fn nearest_level_fixed(v: f32) -> i32 {
    let mut y = LEVELS_FIXED[0];
    for k in 0..15 {
        y += if v > MIDPOINTS[k] { LEVELS_FIXED[k + 1] - LEVELS_FIXED[k] } else { 0 };
    }
    y
}

/// The NF4 level nearest to `v`.
#[cfg(test)]
fn nearest_level(v: f32) -> f32 {
    nearest_level_fixed(v) as f32 / FIXED
}

/// A built NF4 format.
#[derive(Debug, Clone)]
pub struct Nf4 {
    block: usize,
    scale_bits: u32,
}

/// One NF4 block.
struct Nf4Op;

impl BlockOp for Nf4Op {
    #[inline(always)]
    fn block(&self, x: &[f32], y: &mut [f32], _: Option<&mut [f32]>, _: usize) {
        let a = absmax(x);
        if !(a > 0.0 && a.is_finite()) {
            y.fill(0.0); // an all-zero block (or an infinite value)
            return;
        }
        let out = a / FIXED; // exact unless subnormal
        if out >= f32::MIN_POSITIVE {
            // bitsandbytes multiplies by 1 / absmax. The i32 -> f32
            // conversion is exact, so this is level * a rounded once.
            let inv = 1.0 / a;
            for (o, &v) in y.iter_mut().zip(x) {
                *o = nearest_level_fixed(v * inv) as f32 * out;
            }
        } else {
            // A tiny absmax (below 2^-99): scale up by 2^64 first (1 / a may overflow).
            let (k, inv) = (TWO_64, 1.0 / (a * TWO_64));
            for (o, &v) in y.iter_mut().zip(x) {
                *o = (nearest_level_fixed(v * k * inv) as f32 / FIXED) * a;
            }
        }
    }
}

/// The block loop compiled for AVX2 (eight lanes instead of SSE2's four:
/// the 15-compare level search is most of the work). Same arithmetic, same
/// results (tested against the baseline loop).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn compress_avx2(t: Tensor<'_>, block: usize) -> Result<()> {
    for_blocks(t, block, &Nf4Op)
}

impl Format for Nf4 {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { compress_avx2(t, self.block) };
        }
        for_blocks(t, self.block, &Nf4Op)
    }

    fn bits(&self, shape: Shape) -> Bits {
        block_bits(4.0, &format!("absmax, {}-bit", self.scale_bits), self.scale_bits, shape.cols, self.block)
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn block_len(&self) -> Option<usize> {
        Some(self.block)
    }

    fn label(&self) -> Option<String> {
        Some(format!("NF4, absmax per {}", self.block))
    }
}

/// Kind `nf4`: NormalFloat-4 with a per-block absmax.
pub struct Nf4Kind;

impl Kind for Nf4Kind {
    type Params = Nf4Params;
    const NAME: &'static str = "nf4";
    const DOC: &'static str = "QLoRA NormalFloat-4: the 16 NF4 levels (bitsandbytes' table) times the absmax of each \
        block of `block` (64) values along a row, nearest level. Bits counted: 4 + scale_bits/block with \
        scale_bits = 32 by default (QLoRA stores an FP32 absmax per block: 4.5 bits; its double quantization of \
        the absmax values is not modelled).";
    const PRESETS: &'static [Preset] = &[Preset::new("nf4", "block = 64", "NF4 (QLoRA), FP32 absmax per 64 values")];

    fn build(p: Nf4Params) -> Result<Box<dyn Format>> {
        if p.block == 0 {
            return Err(Error::param("block", "must be at least 1"));
        }
        if p.scale_bits > 64 {
            return Err(Error::param("scale_bits", format!("must be 0..=64, got {}", p.scale_bits)));
        }
        Ok(Box::new(Nf4 { block: p.block, scale_bits: p.scale_bits }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::testing::{self, build, estimate_on, gaussian, gaussian_tensors, preset, run};

    #[test]
    fn conformance() {
        testing::check_kind::<Nf4Kind>();
        testing::check_format("block = 50", &*build::<Nf4Kind>("block = 50, scale_bits = 16").unwrap());
        assert!(build::<Nf4Kind>("block = 0").err().unwrap().to_string().contains("`block`"));
        assert!(build::<Nf4Kind>("scale_bits = 65").err().unwrap().to_string().contains("`scale_bits`"));
    }

    /// The table as QLoRA prints it (f64 literals), rounded to f32.
    #[test]
    fn levels_table() {
        let qlora = [
            -1.0,
            -0.6961928009986877,
            -0.5250730514526367,
            -0.39491748809814453,
            -0.28444138169288635,
            -0.18477343022823334,
            -0.09105003625154495,
            0.0,
            0.07958029955625534,
            0.16093020141124725,
            0.24611230194568634,
            0.33791524171829224,
            0.44070982933044434,
            0.5626170039176941,
            0.7229568362236328,
            1.0,
        ];
        for (&a, &b) in NF4_LEVELS.iter().zip(&qlora) {
            assert_eq!(a, b as f32);
            assert!((a as f64 - b).abs() < 1e-7, "{a} vs {b}");
        }
    }

    #[test]
    fn exact_levels() {
        let f = preset::<Nf4Kind>("nf4");
        for a in [0.37f32, 1.0, 3.0e-3, 250.0, 1e-35, 1e-41] {
            // Every level times the absmax (which is in the block, as ±1 * a) comes back unchanged.
            let mut x: Vec<f32> = NF4_LEVELS.iter().map(|l| l * a).collect();
            x.extend(NF4_LEVELS.iter().rev().map(|l| l * a));
            x.resize(64, 0.0);
            let (y, _) = run(&*f, &x, Shape::new(1, 64), 0, false).unwrap();
            assert_eq!(y, x, "absmax {a}");
            // 0.5 a lies between 0.4407 a and 0.5626 a, nearer the first (midpoint 0.5017 a).
            x[40] = 0.5 * a;
            x[41] = -0.6 * a; // nearer -0.5251 a than -0.6962 a (midpoint -0.6106 a)
            let (y, _) = run(&*f, &x, Shape::new(1, 64), 0, false).unwrap();
            assert_eq!([y[40], y[41]], [NF4_LEVELS[12] * a, NF4_LEVELS[2] * a]);
        }
        let (y, _) = run(&*f, &[0.0; 64], Shape::new(1, 64), 0, false).unwrap();
        assert_eq!(y, [0.0; 64]);
    }

    /// The compare-and-add search equals `sdk::grid::Levels` (bucket table)
    /// on every midpoint, its neighbours, and a dense sweep.
    #[test]
    fn search_matches_levels() {
        for (i, &l) in NF4_LEVELS.iter().enumerate() {
            assert_eq!(LEVELS_FIXED[i] as f32 / FIXED, l, "level {i} in fixed point");
            assert_eq!(nearest_level(l), l, "level {i}");
        }
        let g = sdk::grid::Levels::new(&NF4_LEVELS);
        let mut xs: Vec<f32> = (-3000..=3000).map(|i| i as f32 * 4e-4).collect();
        for &t in &MIDPOINTS {
            xs.extend([t, f32::from_bits(t.to_bits() - 1), f32::from_bits(t.to_bits() + 1)]);
        }
        xs.extend(NF4_LEVELS);
        for v in xs {
            assert_eq!(nearest_level(v), g.nearest(v), "v = {v}");
        }
    }

    /// The AVX2 build of the loop (taken by `compress` where the CPU has
    /// AVX2) and the baseline build give the same bits.
    #[test]
    fn simd_paths_agree() {
        let shape = Shape::new(8, 256);
        let x = gaussian(shape.len(), 9);
        let f = preset::<Nf4Kind>("nf4");
        let (y, _) = run(&*f, &x, shape, 0, false).unwrap();
        let mut z = vec![0.0; x.len()];
        let t = Tensor { input: &x, output: &mut z, mask: None, shape, seed: 0 };
        for_blocks(t, 64, &Nf4Op).unwrap();
        assert!(y.iter().zip(&z).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    /// Against a linear scan over the levels in `f64`.
    #[test]
    fn matches_reference() {
        let x = gaussian(4 * 200, 6);
        let f = preset::<Nf4Kind>("nf4");
        let (y, _) = run(&*f, &x, Shape::new(4, 200), 0, false).unwrap();
        let mut worst = 0f32;
        for (xb, yb) in x.chunks(200).flat_map(|r| r.chunks(64)).zip(y.chunks(200).flat_map(|r| r.chunks(64))) {
            let a = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (&v, &w) in xb.iter().zip(yb) {
                let l = NF4_LEVELS.iter().min_by(|p, q| ((v / a - **p).abs()).total_cmp(&(v / a - **q).abs())).unwrap();
                worst = worst.max((l * a - w).abs());
            }
        }
        assert_eq!(worst, 0.0);
    }

    #[test]
    fn bits() {
        let f = preset::<Nf4Kind>("nf4");
        let b = f.bits(Shape::new(16, 4096));
        assert_eq!(b.total(), 4.5);
        assert_eq!(b.parts[1].what, "scale (absmax, 32-bit) per 64");
        assert_eq!(build::<Nf4Kind>("scale_bits = 16").unwrap().bits(Shape::new(1, 4096)).total(), 4.25);
    }

    /// Monte Carlo GMSE against DESIGN.md 3 (NF4 absmax block 64, MC).
    /// Tolerance: 3 standard errors of the mean of the per-tensor values plus
    /// 0.5 % of the oracle. 4 tensors of 64 x 4096.
    #[test]
    fn gmse_oracle() {
        let shape = Shape::new(64, 4096);
        let tensors = gaussian_tensors(shape, 500..504);
        estimate_on(&*preset::<Nf4Kind>("nf4"), shape, &tensors).assert_close("nf4", 8.4578e-3);
    }
}
