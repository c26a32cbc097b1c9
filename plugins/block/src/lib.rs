//! Block-scaled formats: kinds `mx` (OCP Microscaling: MXFP4, MXFP6, MXFP8,
//! MXINT8), `nvfp4` (NVIDIA's FP4 with an E4M3 scale per 16 values and an
//! FP32 scale per tensor) and `nf4` (QLoRA's NormalFloat-4 with an absmax
//! scale per 64 values).
//!
//! Blocks are `block` consecutive values along a row; a row whose length is
//! not a multiple of `block` ends with a shorter block, which stores a scale
//! too (and the bit budget counts it). Blocks never straddle rows.
//!
//! Speed: per block, the absmax is an inlined 8-lane reduction, the E8M0
//! exponent is read from the bits of the absmax (no `log2`), and elements
//! are rounded by a magic-number trick whose constant comes from each value's
//! exponent bits (`MagicRound`); blocks of 16, 32 and 64 have
//! compile-time lengths. NF4's level search (15 compares) and NVFP4's loop
//! also have an AVX2 build, chosen at run time where the CPU has AVX2 (same
//! results, tested); everything vectorizes on baseline SSE2 too.

use sdk::grid::clamp;
use sdk::minifloat::Minifloat;
use sdk::{Bits, Result, Tensor, rows};

mod mx;
mod nf4;
mod nvfp4;

pub use mx::{Mx, MxKind, MxParams};
pub use nf4::{NF4_LEVELS, Nf4, Nf4Kind, Nf4Params};
pub use nvfp4::{Nvfp4, Nvfp4Kind, Nvfp4Params};

sdk::export_plugin!(name: "block", kinds: [MxKind, Nvfp4Kind, Nf4Kind]);

/// What a format does to one block: quantize `x` into `y`, write the mask
/// entries when asked; `offset` is the flat index of the block's first value.
/// Implementations mark `block` `#[inline(always)]`, so that it is inlined
/// into the block loops of [`for_blocks`] (where the block length may be a
/// compile-time constant).
pub(crate) trait BlockOp {
    fn block(&self, x: &[f32], y: &mut [f32], mask: Option<&mut [f32]>, offset: usize);
}

/// Runs `op` on every block of `block` values along the rows of `t`.
///
/// When the row length is a multiple of the block length (the usual case)
/// the blocks are plain `chunks_exact` of the tensor, without the general
/// group iterator's bookkeeping; for blocks of 16, 32 and 64 without a mask
/// (the Monte Carlo engine's case) the block length is a compile-time
/// constant, so the per-block reductions and loops are fully unrolled.
#[inline(always)]
pub(crate) fn for_blocks(t: Tensor<'_>, block: usize, op: &impl BlockOp) -> Result<()> {
    rows::check(&t)?;
    let glen = rows::group_len(t.shape.cols, block);
    if glen == 0 {
        return Ok(());
    }
    if t.shape.cols.is_multiple_of(glen) {
        let Tensor { input, output, mask, .. } = t;
        match mask {
            None => match glen {
                16 => fixed_blocks::<16>(input, output, op),
                32 => fixed_blocks::<32>(input, output, op),
                64 => fixed_blocks::<64>(input, output, op),
                _ => input
                    .chunks_exact(glen)
                    .zip(output.chunks_exact_mut(glen))
                    .enumerate()
                    .for_each(|(i, (x, y))| op.block(x, y, None, i * glen)),
            },
            Some(m) => input
                .chunks_exact(glen)
                .zip(output.chunks_exact_mut(glen))
                .zip(m.chunks_exact_mut(glen))
                .enumerate()
                .for_each(|(i, ((x, y), m))| op.block(x, y, Some(m), i * glen)),
        }
    } else {
        for g in rows::tensor_groups(t, block) {
            op.block(g.input, g.output, g.mask, g.offset);
        }
    }
    Ok(())
}

/// Blocks of the compile-time length `B` (which divides the length of `x`).
#[inline(always)]
fn fixed_blocks<const B: usize>(x: &[f32], y: &mut [f32], op: &impl BlockOp) {
    for (i, (x, y)) in x.chunks_exact(B).zip(y.chunks_exact_mut(B)).enumerate() {
        let x: &[f32; B] = x.try_into().expect("chunks_exact gives B values");
        let y: &mut [f32; B] = y.try_into().expect("chunks_exact gives B values");
        op.block(x, y, None, i * B);
    }
}

pub(crate) use sdk::scale::absmax;

/// Round-to-nearest-even onto `2^e` times a minifloat grid (saturating),
/// with the magic-number trick and a magic constant per value: for `v` in
/// the binade `[2^k, 2^(k+1))` (or the subnormal range, `k = emin`), the
/// spacing is `2^(k-m)`, and adding `c = 1.5 * 2^(k+23-m)` pushes exactly
/// the bits below that spacing out of the significand (the hardware rounds
/// to nearest even while doing so; `c / 2^(k-m)` is even, so the parity of
/// the rounded sum is the parity of the rounded value); subtracting `c`
/// again is exact. `c` is built from the exponent bits of `v` with one
/// integer add. Seven vector operations per four values (clamp 2, exponent
/// mask, max, add, add, sub), against ten for `Minifloat::quantizer` (which
/// also scales and unscales). Same results, value for value (tested).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MagicRound {
    /// `max * 2^e`.
    hi: f32,
    /// `2^(emin + e)`: the binade whose spacing the subnormals share.
    lo_p: f32,
    /// `((23 - m) << 23) | 0x40_0000`: added to the bits of `p = 2^k`, gives `1.5 * 2^(k+23-m)`.
    magic_bits: u32,
}

impl MagicRound {
    /// `2^e` times the grid of `f`, or `None` where the arithmetic would leave
    /// `f32`'s normal range (`2^(emin+e)` subnormal, or `v + c` overflowing:
    /// it stays below `2^(emax+e+24-m)`; one binade of margin is kept).
    #[inline(always)]
    pub(crate) fn new(f: &Minifloat, e: i32) -> Option<Self> {
        let m = f.mantissa_bits() as i32;
        let (lo, hi) = (f.emin() + e, f.emax() + e);
        if lo < -126 || hi + 25 - m > 127 || m > 23 {
            return None;
        }
        Some(MagicRound { hi: f.max() * pow2(e), lo_p: pow2(lo), magic_bits: (((23 - m) as u32) << 23) | 0x40_0000 })
    }

    /// The nearest grid value to `x` (ties to the even code), saturating at `±max * 2^e`.
    #[inline(always)]
    pub(crate) fn round(self, x: f32) -> f32 {
        let v = clamp(x, -self.hi, self.hi);
        let p = f32::from_bits(v.to_bits() & 0x7F80_0000);
        let p = if p < self.lo_p { self.lo_p } else { p };
        let c = f32::from_bits(p.to_bits().wrapping_add(self.magic_bits));
        (v + c) - c
    }
}

/// `2^e` exactly, for `e` in `-149..=127` (subnormal below `-126`).
#[inline(always)]
pub(crate) fn pow2(e: i32) -> f32 {
    debug_assert!((-149..=127).contains(&e));
    if e >= -126 { f32::from_bits(((e + 127) as u32) << 23) } else { f32::from_bits(1u32 << (e + 149)) }
}

/// `floor(log2 a)` and the 23 fraction bits of `a / 2^floor(log2 a)`, for a
/// positive `a` (subnormals included; read from the bits, no `log2` call).
#[inline(always)]
pub(crate) fn log2_parts(a: f32) -> (i32, u32) {
    let (a, off) = if a < f32::MIN_POSITIVE { (a * pow2(64), -64) } else { (a, 0) };
    let b = a.to_bits();
    (((b >> 23) & 0xff) as i32 - 127 + off, b & 0x7f_ffff)
}

/// Bits per element: `element_bits`, plus one `scale_bits` scale (named
/// `scale_name`) per block of `block` values along each row; a row's shorter
/// last block stores a scale too.
pub(crate) fn block_bits(element_bits: f64, scale_name: &str, scale_bits: u32, cols: usize, block: usize) -> Bits {
    let cols = cols.max(1);
    let glen = rows::group_len(cols, block);
    let per_row = rows::groups_per_row(cols, block);
    Bits::elements(element_bits)
        .plus(format!("scale ({scale_name}) per {glen}"), (scale_bits as usize * per_row) as f64 / cols as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The magic-constant rounding equals `Minifloat::round` on every value,
    /// every midpoint, points in between, and far outside the range, for the
    /// OCP element types and a few more, at several scales.
    #[test]
    fn magic_round_matches_minifloat() {
        for (e, m) in [(2, 1), (2, 3), (3, 2), (4, 3), (5, 2), (3, 0), (1, 3), (6, 2)] {
            let f = Minifloat::standard(e, m).unwrap();
            let vals = f.values();
            let mut xs = vec![0.0f32, 1e-30, f.max() * 1.5, 1e30, f32::INFINITY];
            for w in vals.windows(2) {
                for t in [0.0f32, 0.2, 0.5, 0.8] {
                    xs.push(w[0] + t * (w[1] - w[0]));
                }
            }
            xs.extend(xs.clone().iter().map(|v| -v));
            for k in [0, -3, 7, -90] {
                let r = MagicRound::new(&f, k).unwrap();
                for &x in &xs {
                    let want = f.round(x) * pow2(k);
                    let got = r.round(x * pow2(k));
                    // m = 0: a tie between two powers of two goes up in both.
                    assert_eq!(got, want, "E{e}M{m} x {x} scale 2^{k}");
                }
            }
        }
        let f = Minifloat::standard(5, 2).unwrap();
        assert!(MagicRound::new(&f, 0).is_some() && MagicRound::new(&f, -113).is_none());
        assert!(MagicRound::new(&f, 89).is_some() && MagicRound::new(&f, 90).is_none());
    }

    #[test]
    fn bit_helpers() {
        for e in -149..=127 {
            assert_eq!(pow2(e) as f64, 2f64.powi(e), "2^{e}");
        }
        for &a in &[1.0f32, 5.0, 0.75, 6.0, 7.99, f32::MAX, f32::MIN_POSITIVE, 1e-40, 1e-45, 3e-39] {
            let (k, frac) = log2_parts(a);
            assert_eq!(k, (a as f64).log2().floor() as i32, "floor log2 {a}");
            let norm = a as f64 / 2f64.powi(k);
            assert_eq!(1.0 + frac as f64 / (1u64 << 23) as f64, norm, "fraction of {a}");
        }
        let b = block_bits(4.0, "E8M0", 8, 100, 32); // 4 scales per row of 100
        assert_eq!(b.total(), 4.0 + 32.0 / 100.0);
        assert_eq!(b.parts[1].what, "scale (E8M0) per 32");
        assert_eq!(block_bits(4.0, "E8M0", 8, 4096, 32).total(), 4.25);
        assert_eq!(block_bits(4.0, "E8M0", 8, 16, 32).parts[1].what, "scale (E8M0) per 16");
    }
}
