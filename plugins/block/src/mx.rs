//! Kind `mx`: OCP Microscaling (MX) block formats.
//!
//! `block` (default 32) consecutive values of a row share one E8M0 scale
//! `2^e` (an 8-bit power of two, `e` clamped to `-127..=127`); each value is
//! stored as an element `x / 2^e` rounded to nearest even on the element grid
//! and saturated to the element's largest value (the MX spec saturates).
//! Elements are the OCP minifloats E2M1, E2M3, E3M2, E4M3 (max 448), E5M2
//! (max 57344) or INT8 (MXINT8: `k / 64`, `|k| <= 127`).
//!
//! The spec's scale rule (`floor`): `e = floor(log2 amax) - emax_elem`, where
//! `amax` is the block's largest magnitude and `emax_elem` the exponent of
//! the element type's largest binade (2 for E2M1 and E2M3, 4 for E3M2, 8 for
//! E4M3, 15 for E5M2, 0 for INT8). `floor(log2 amax)` is read from the
//! exponent bits of `amax`; no `log2` is called.

use sdk::grid::{clamp, clip_mask, map, map_indexed, sq_error};
use sdk::minifloat::Minifloat;
use sdk::round::{floor_fast, rne_fast, uniform};
use sdk::{Bits, Error, Family, Format, Kind, Preset, Result, Shape, Tensor};

use crate::{BlockOp, MagicRound, absmax, block_bits, for_blocks, log2_parts, pow2};

sdk::params! {
    /// Parameters of an OCP MX block format.
    pub struct MxParams {
        /// Element type: "e2m1" (MXFP4), "e2m3" or "e3m2" (MXFP6), "e4m3" or "e5m2" (MXFP8), "int8" (MXINT8, k/64 with |k| <= 127).
        elem: String = "e2m1".to_string(),
        /// Values sharing one E8M0 scale along a row.
        block: usize = 32,
        /// Scale exponent rule: "floor" (OCP spec: floor(log2 amax) - emax_elem), "ceil" (ceil(log2 amax) - emax_elem), "nearest" (log2 amax rounded to nearest, minus emax_elem), "nosat" (the smallest exponent that saturates nothing: ceil(log2(amax / elem_max))), "mse" (per block, the best of floor-1, floor, floor+1 by squared error).
        rule: String = "floor".to_string(),
        /// Seeded stochastic rounding of the elements (unbiased inside the element range; the scale rule is unchanged, "mse" compares exponents under round-to-nearest).
        stochastic: bool = false,
    }
}

/// The element grid of an MX format.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Elem {
    /// An OCP minifloat.
    Mini(Minifloat),
    /// MXINT8: `k / 64`, `|k| <= 127`.
    Int8,
}

/// How the shared exponent is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Floor,
    Ceil,
    Nearest,
    NoSat,
    Mse,
}

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Rule::Floor => "floor",
            Rule::Ceil => "ceil",
            Rule::Nearest => "nearest",
            Rule::NoSat => "nosat",
            Rule::Mse => "mse",
        }
    }
}

/// Fraction bits (23) of `sqrt(2) / 1`: `log2 a` rounds up when the
/// normalized fraction of `a` is above this (`sqrt(2)` is irrational, so
/// there is no tie; `f32(sqrt 2)` is just below it).
const SQRT2_FRAC: u32 = std::f32::consts::SQRT_2.to_bits() & 0x7f_ffff;

/// A built MX format.
#[derive(Debug, Clone)]
pub struct Mx {
    elem: Elem,
    /// `emax_elem`: exponent of the element type's top binade.
    emax: i32,
    /// Fraction bits of `max / 2^emax`.
    max_frac: u32,
    /// Element magnitude beyond which a value is clipped (`max` + half a top step).
    clip: f32,
    elem_bits: u32,
    block: usize,
    rule: Rule,
    stochastic: bool,
}

/// An element grid that a block applies at its scale `2^e`.
trait Grid: Copy {
    /// The grid at one block scale, applied to the unscaled values.
    type At: Copy;
    /// The grid at scale `2^e`, or `None` where the fast arithmetic would
    /// leave `f32`'s normal range (then [`Grid::round_elem`] is used).
    fn at(self, e: i32) -> Option<Self::At>;
    /// Rounds an unscaled value `x` to `2^e` times the grid.
    fn round_at(at: Self::At, x: f32) -> f32;
    /// Rounds an element-domain value `v = x / 2^e` to the grid.
    fn round_elem(self, v: f32) -> f32;
}

/// A minifloat grid (round to nearest even, saturating).
#[derive(Debug, Clone, Copy)]
struct MiniGrid(Minifloat);

impl Grid for MiniGrid {
    type At = MagicRound;

    #[inline(always)]
    fn at(self, e: i32) -> Option<MagicRound> {
        MagicRound::new(&self.0, e)
    }

    #[inline(always)]
    fn round_at(at: MagicRound, x: f32) -> f32 {
        at.round(x)
    }

    #[inline(always)]
    fn round_elem(self, v: f32) -> f32 {
        self.0.round(v)
    }
}

/// `1 / 64`, the MXINT8 element step.
const INT8_STEP: f32 = 1.0 / 64.0;

/// The MXINT8 grid `k / 64`, `|k| <= 127` (round to nearest even, saturating).
#[derive(Debug, Clone, Copy)]
struct Int8Grid;

/// The MXINT8 grid at block scale `2^e`: `(2^(6 - e), 2^(e - 6))`.
#[derive(Debug, Clone, Copy)]
struct Int8At {
    inv: f32,
    step: f32,
}

impl Grid for Int8Grid {
    type At = Int8At;

    #[inline(always)]
    fn at(self, e: i32) -> Option<Int8At> {
        (-120..=127).contains(&e).then(|| Int8At { inv: pow2(6 - e), step: pow2(e - 6) })
    }

    #[inline(always)]
    fn round_at(at: Int8At, x: f32) -> f32 {
        rne_fast(clamp(x * at.inv, -127.0, 127.0)) * at.step
    }

    #[inline(always)]
    fn round_elem(self, v: f32) -> f32 {
        rne_fast(clamp(v * 64.0, -127.0, 127.0)) * INT8_STEP
    }
}

/// Rounds block `x` into `y` at scale `2^e`.
#[inline(always)]
fn quantize_block<G: Grid>(g: G, e: i32, x: &[f32], y: &mut [f32]) {
    match g.at(e) {
        Some(at) => map(x, y, |v| G::round_at(at, v)),
        None => {
            let (s, inv) = (pow2(e), pow2(-e));
            map(x, y, |v| g.round_elem(v * inv) * s);
        }
    }
}

/// Squared error of block `x` at scale `2^e`.
#[inline(always)]
fn block_error<G: Grid>(g: G, e: i32, x: &[f32]) -> f64 {
    match g.at(e) {
        Some(at) => sq_error(x, |v| G::round_at(at, v)),
        None => {
            let (s, inv) = (pow2(e), pow2(-e));
            sq_error(x, |v| g.round_elem(v * inv) * s)
        }
    }
}

/// MXINT8 stochastic element rounding with uniform `u` in `[0, 1)`.
#[inline(always)]
fn int8_stochastic(v: f32, u: f32) -> f32 {
    floor_fast(clamp(v * 64.0, -127.0, 127.0) + u) * INT8_STEP
}

/// Stochastic rounding onto a minifloat grid (saturating): the spacing around
/// `v` is read from its exponent bits as in [`Minifloat::quantizer`], and
/// `v / spacing` is rounded down or up with probabilities that keep it unbiased.
#[derive(Debug, Clone, Copy)]
struct MiniStochastic {
    max: f32,
    min_normal: f32,
    inv_base: u32,
    m_bits: u32,
}

impl MiniStochastic {
    fn new(f: &Minifloat) -> Self {
        let m = f.mantissa_bits();
        MiniStochastic { max: f.max(), min_normal: pow2(f.emin()), inv_base: (254 + m) << 23, m_bits: m << 23 }
    }

    #[inline(always)]
    fn round(self, x: f32, u: f32) -> f32 {
        let v = clamp(x, -self.max, self.max);
        let p = f32::from_bits(v.to_bits() & 0x7F80_0000);
        let p = if p < self.min_normal { self.min_normal } else { p };
        let inv = f32::from_bits(self.inv_base.wrapping_sub(p.to_bits()));
        let step = f32::from_bits(p.to_bits().wrapping_sub(self.m_bits));
        // `v` is on the grid's range, so `floor(v / step + u) * step` stays within `±max`.
        floor_fast(v * inv + u) * step
    }
}

impl Mx {
    /// The shared exponent of a block with largest magnitude `amax > 0`
    /// (before clamping to the E8M0 range), for the rules that depend on
    /// `amax` only.
    #[inline(always)]
    fn exponent_of_amax(&self, amax: f32) -> i32 {
        let (k, frac) = log2_parts(amax);
        match self.rule {
            Rule::Floor | Rule::Mse => k - self.emax,
            Rule::Ceil => k + (frac != 0) as i32 - self.emax,
            Rule::Nearest => k + (frac > SQRT2_FRAC) as i32 - self.emax,
            // amax <= max * 2^(k - emax) iff frac(amax) <= frac(max).
            Rule::NoSat => k - self.emax + (frac > self.max_frac) as i32,
        }
    }

    /// Shared exponent of block `x` (with `amax > 0`), clamped to E8M0's `-127..=127`.
    #[inline(always)]
    fn exponent<G: Grid>(&self, g: G, x: &[f32], amax: f32) -> i32 {
        let e = self.exponent_of_amax(amax).clamp(-127, 127);
        if self.rule != Rule::Mse {
            return e;
        }
        let mut best = (e, block_error(g, e, x));
        for c in [e + 1, e - 1] {
            if (-127..=127).contains(&c) {
                let ec = block_error(g, c, x);
                if ec < best.1 {
                    best = (c, ec);
                }
            }
        }
        best.0
    }

    fn name(&self) -> String {
        match self.elem {
            Elem::Int8 => "MXINT8".to_string(),
            Elem::Mini(f) => format!("MXFP{} ({})", f.bits(), f.name()),
        }
    }
}

/// One MX block, round to nearest even.
struct MxRne<'a, G> {
    mx: &'a Mx,
    g: G,
}

impl<G: Grid> BlockOp for MxRne<'_, G> {
    #[inline(always)]
    fn block(&self, x: &[f32], y: &mut [f32], mask: Option<&mut [f32]>, _: usize) {
        let amax = absmax(x);
        if amax <= 0.0 {
            y.fill(0.0);
            return;
        }
        let e = self.mx.exponent(self.g, x, amax);
        quantize_block(self.g, e, x, y);
        if let Some(m) = mask {
            clip_mask(x, m, self.mx.clip * pow2(e));
        }
    }
}

/// One MX block, stochastic rounding: exponent chosen as for round to
/// nearest, elements (`v = x / 2^e`) rounded with `sr(v, u)`.
struct MxStochastic<'a, G, S> {
    mx: &'a Mx,
    g: G,
    sr: S,
    seed: u64,
}

impl<G: Grid, S: Fn(f32, f32) -> f32 + Copy> BlockOp for MxStochastic<'_, G, S> {
    #[inline(always)]
    fn block(&self, x: &[f32], y: &mut [f32], mask: Option<&mut [f32]>, offset: usize) {
        let amax = absmax(x);
        if amax <= 0.0 {
            y.fill(0.0);
            return;
        }
        let e = self.mx.exponent(self.g, x, amax);
        let (s, inv) = (pow2(e), pow2(-e));
        let (sr, seed) = (self.sr, self.seed);
        map_indexed(x, y, offset as u64, |v, i| sr(v * inv, uniform(seed, i)) * s);
        if let Some(m) = mask {
            clip_mask(x, m, self.mx.clip * s);
        }
    }
}

impl Format for Mx {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        let seed = t.seed;
        match (self.elem, self.stochastic) {
            (Elem::Mini(f), false) => for_blocks(t, self.block, &MxRne { mx: self, g: MiniGrid(f) }),
            (Elem::Mini(f), true) => {
                let s = MiniStochastic::new(&f);
                let sr = move |v, u| s.round(v, u);
                for_blocks(t, self.block, &MxStochastic { mx: self, g: MiniGrid(f), sr, seed })
            }
            (Elem::Int8, false) => for_blocks(t, self.block, &MxRne { mx: self, g: Int8Grid }),
            (Elem::Int8, true) => {
                for_blocks(t, self.block, &MxStochastic { mx: self, g: Int8Grid, sr: int8_stochastic, seed })
            }
        }
    }

    fn bits(&self, shape: Shape) -> Bits {
        block_bits(self.elem_bits as f64, "E8M0", 8, shape.cols, self.block)
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn block_len(&self) -> Option<usize> {
        Some(self.block)
    }

    fn stochastic(&self) -> bool {
        self.stochastic
    }

    fn label(&self) -> Option<String> {
        let mut s = format!("{}, E8M0 scale per {}", self.name(), self.block);
        if self.rule != Rule::Floor {
            s += &format!(", {} rule", self.rule.name());
        }
        if self.stochastic {
            s += ", stochastic rounding";
        }
        Some(s)
    }
}

/// Kind `mx`: OCP Microscaling block formats.
pub struct MxKind;

impl Kind for MxKind {
    type Params = MxParams;
    const NAME: &'static str = "mx";
    const DOC: &'static str = "OCP Microscaling (MX v1.0): blocks of `block` values along a row share an E8M0 \
        scale 2^e (e clamped to -127..127); elements x / 2^e are rounded to nearest even on the element grid \
        (E2M1, E2M3, E3M2, E4M3 max 448, E5M2 max 57344, or INT8 k/64 with |k| <= 127) and saturated. Spec \
        rule: e = floor(log2 amax) - emax_elem (2 for E2M1/E2M3, 4 E3M2, 8 E4M3, 15 E5M2, 0 INT8); also \
        ceil, nearest, nosat (no saturation) and per-block MSE choice. An all-zero block gives zeros. Bits \
        counted: element bits + one 8-bit E8M0 scale per block (e.g. MXFP4: 4 + 8/32 = 4.25). Trust mask \
        where values are not clipped.";
    const PRESETS: &'static [Preset] = &[
        Preset::new("mxfp4", "elem = \"e2m1\"", "MXFP4: E2M1 elements, E8M0 scale per 32 (OCP rule)"),
        Preset::new("mxfp6-e2m3", "elem = \"e2m3\"", "MXFP6 E2M3 elements, E8M0 scale per 32 (OCP rule)"),
        Preset::new("mxfp6-e3m2", "elem = \"e3m2\"", "MXFP6 E3M2 elements, E8M0 scale per 32 (OCP rule)"),
        Preset::new("mxfp8-e4m3", "elem = \"e4m3\"", "MXFP8 E4M3 elements, E8M0 scale per 32 (OCP rule)"),
        Preset::new("mxfp8-e5m2", "elem = \"e5m2\"", "MXFP8 E5M2 elements, E8M0 scale per 32 (OCP rule)"),
        Preset::new("mxint8", "elem = \"int8\"", "MXINT8: k/64 elements (|k| <= 127), E8M0 scale per 32"),
    ];

    fn build(p: MxParams) -> Result<Box<dyn Format>> {
        let elem = match p.elem.as_str() {
            "e2m1" => Elem::Mini(Minifloat::standard(2, 1)?),
            "e2m3" => Elem::Mini(Minifloat::standard(2, 3)?),
            "e3m2" => Elem::Mini(Minifloat::standard(3, 2)?),
            "e4m3" => Elem::Mini(Minifloat::standard(4, 3)?),
            "e5m2" => Elem::Mini(Minifloat::standard(5, 2)?),
            "int8" => Elem::Int8,
            other => {
                return Err(Error::param(
                    "elem",
                    format!(
                        "unknown element type \"{other}\" (use \"e2m1\", \"e2m3\", \"e3m2\", \"e4m3\", \"e5m2\" or \"int8\")"
                    ),
                ));
            }
        };
        if p.block == 0 {
            return Err(Error::param("block", "must be at least 1"));
        }
        let rule = match p.rule.as_str() {
            "floor" => Rule::Floor,
            "ceil" => Rule::Ceil,
            "nearest" => Rule::Nearest,
            "nosat" => Rule::NoSat,
            "mse" => Rule::Mse,
            other => {
                return Err(Error::param(
                    "rule",
                    format!("unknown rule \"{other}\" (use \"floor\", \"ceil\", \"nearest\", \"nosat\" or \"mse\")"),
                ));
            }
        };
        let (emax, max, clip, elem_bits) = match elem {
            Elem::Mini(f) => (f.emax(), f.max(), f.clip_limit(1.0), f.bits()),
            Elem::Int8 => (0, 127.0 * INT8_STEP, 127.5 * INT8_STEP, 8),
        };
        let max_frac = log2_parts(max).1;
        debug_assert_eq!(log2_parts(max).0, emax);
        Ok(Box::new(Mx { elem, emax, max_frac, clip, elem_bits, block: p.block, rule, stochastic: p.stochastic }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::testing::{self, build, estimate_on, gaussian, gaussian_tensors, preset, run};

    #[test]
    fn conformance() {
        testing::check_kind::<MxKind>();
    }

    #[test]
    fn conformance_of_options() {
        for params in [
            "elem = \"e2m1\", rule = \"mse\"",
            "elem = \"e4m3\", rule = \"ceil\", block = 20",
            "elem = \"e3m2\", rule = \"nearest\", block = 64",
            "elem = \"e2m1\", rule = \"nosat\"",
            "elem = \"e2m1\", stochastic = true",
            "elem = \"int8\", stochastic = true, rule = \"mse\", block = 16",
            "elem = \"e5m2\", block = 300",
        ] {
            let f = build::<MxKind>(params).unwrap();
            testing::check_format(params, &*f);
        }
    }

    #[test]
    fn bad_parameters() {
        assert!(build::<MxKind>("elem = \"e3m3\"").err().unwrap().to_string().contains("`elem`"));
        assert!(build::<MxKind>("rule = \"up\"").err().unwrap().to_string().contains("`rule`"));
        assert!(build::<MxKind>("block = 0").err().unwrap().to_string().contains("`block`"));
        assert!(build::<MxKind>("bits = 4").err().unwrap().to_string().contains("`bits`"));
    }

    fn one_block(f: &dyn Format, x: &[f32]) -> Vec<f32> {
        run(f, x, Shape::new(1, x.len()), 0, false).unwrap().0
    }

    /// Hand-made blocks: the floor rule, ties to even, saturation, zeros, E8M0 clamping.
    #[test]
    fn exact_blocks() {
        let f = preset::<MxKind>("mxfp4");
        // amax 5: e = floor(log2 5) - 2 = 0, so the elements are the values themselves.
        // 5 is a tie between 4 (mantissa code 0) and 6 (code 1): RNE gives 4.
        let x = [5.0f32, -2.5, 0.25, 0.75, 1.25, 3.5, -5.0, 0.3];
        assert_eq!(one_block(&*f, &x), [4.0, -2.0, 0.0, 1.0, 1.0, 4.0, -4.0, 0.5]);
        // amax 7.5: e = 0 again; 7.5 and 7 saturate to 6.
        assert_eq!(one_block(&*f, &[7.5, 7.0, -6.9, 1.0]), [6.0, 6.0, -6.0, 1.0]);
        // amax 13: e = 3 - 2 = 1 (scale 2): 10 / 2 = 5 -> 4 -> 8; 13 / 2 = 6.5 saturates at 6 -> 12.
        assert_eq!(one_block(&*f, &[10.0, 3.0, -13.0, 0.4]), [8.0, 3.0, -12.0, 0.0]);
        // Zero block.
        assert_eq!(one_block(&*f, &[0.0; 32]), [0.0; 32]);
        // A zero block next to a non-zero one (two blocks of 32 in a row).
        let mut x2 = vec![0.0f32; 64];
        x2[40] = 3.0;
        let y2 = one_block(&*f, &x2);
        assert!(y2[..32].iter().all(|&v| v == 0.0) && y2[40] == 3.0);
        // E8M0 clamp: amax 2^-130 wants e = -132 but gets -127, so 2^-130 / 2^-127 = 1/8 -> 0 in E2M1 ...
        let tiny = pow2(-130);
        assert_eq!(one_block(&*f, &[tiny, -tiny]), [0.0, 0.0]);
        // ... and 1/8 = 8/64 exactly in MXINT8.
        assert_eq!(one_block(&*preset::<MxKind>("mxint8"), &[tiny, -tiny]), [tiny, -tiny]);
    }

    #[test]
    fn exact_rules_and_int8() {
        let rule = |r: &str| build::<MxKind>(&format!("rule = \"{r}\"")).unwrap();
        let x = [5.0f32, 1.1];
        // ceil: e = 3 - 2 = 1: 5/2 = 2.5 -> 2 -> 4; 1.1/2 = 0.55 -> 0.5 -> 1.
        assert_eq!(one_block(&*rule("ceil"), &x), [4.0, 1.0]);
        // nearest: log2 5 = 2.32 -> 2, e = 0.
        assert_eq!(one_block(&*rule("nearest"), &x), [4.0, 1.0]);
        // log2 6 = 2.58 -> 3: e = 1, 6/2 = 3 -> 6; floor keeps e = 0 (6 -> 6).
        assert_eq!(one_block(&*rule("nearest"), &[6.0, 1.1]), [6.0, 1.0]);
        // nosat: 5 <= 6 * 2^0, e = 0; 7 > 6 so e = 1: 7/2 = 3.5 -> 4 -> 8.
        assert_eq!(one_block(&*rule("nosat"), &x), [4.0, 1.0]);
        assert_eq!(one_block(&*rule("nosat"), &[7.0, 1.1]), [8.0, 1.0]);
        assert_eq!(one_block(&*rule("nosat"), &[6.0, 1.1]), [6.0, 1.0]);
        // mse: the block [7.9, 7.9, 7.9] saturates to 6 with floor (error 3 * 1.9^2) but is 8 with e = 1.
        assert_eq!(one_block(&*rule("mse"), &[7.9, 7.9, -7.9]), [8.0, 8.0, -8.0]);
        assert_eq!(one_block(&*rule("floor"), &[7.9, 7.9, -7.9]), [6.0, 6.0, -6.0]);

        // MXINT8: amax 1.5 -> e = 0, step 1/64; amax 3 -> e = 1, step 1/32.
        let f = preset::<MxKind>("mxint8");
        assert_eq!(one_block(&*f, &[1.5, 0.01, -1.0 / 128.0, 3.0 / 128.0]), [1.5, 0.015625, 0.0, 1.0 / 32.0]);
        // 1.999 saturates at 127/64 = 1.984375.
        assert_eq!(one_block(&*f, &[1.999, 1.0]), [1.984375, 1.0]);
        assert_eq!(one_block(&*f, &[3.0, 3.0 / 64.0, 1.0 / 64.0]), [3.0, 1.0 / 16.0, 0.0]);
    }

    /// Scalar reference in `f64`: exponent from `log2`, nearest representable
    /// element by scan with ties to the even code, saturating.
    fn reference(x: &[f32], elem: &str, rule: &str, block: usize) -> Vec<f32> {
        let (vals, emax): (Vec<f64>, i32) = match elem {
            "int8" => ((0..=127).map(|k| k as f64 / 64.0).collect(), 0),
            e => {
                let (eb, mb) = (e[1..2].parse().unwrap(), e[3..4].parse().unwrap());
                let f = Minifloat::standard(eb, mb).unwrap();
                (f.values().iter().map(|&v| v as f64).collect(), f.emax())
            }
        };
        let top = *vals.last().unwrap();
        let mut y = Vec::new();
        for b in x.chunks(block) {
            let amax = b.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
            if amax == 0.0 {
                y.extend(b.iter().map(|_| 0.0));
                continue;
            }
            let l = amax.log2();
            let e = match rule {
                "floor" => l.floor() as i32 - emax,
                "ceil" => l.ceil() as i32 - emax,
                "nearest" => l.round() as i32 - emax,
                _ => (amax / top).log2().ceil() as i32,
            }
            .clamp(-127, 127);
            let s = 2f64.powi(e);
            for &v in b {
                let a = (v as f64 / s).abs().min(top);
                let mut best = 0usize;
                for (i, &w) in vals.iter().enumerate() {
                    let (d, db) = ((a - w).abs(), (a - vals[best]).abs());
                    if d < db || (d == db && i % 2 == 0) {
                        best = i;
                    }
                }
                y.push((vals[best].copysign(v as f64) * s) as f32);
            }
        }
        y
    }

    /// Every element type and rule against the reference, at ordinary scales
    /// and near the ends of the E8M0 range (where the fast path hands over to
    /// scaling into the element domain, and outputs may be subnormal).
    #[test]
    fn fast_path_matches_reference() {
        let x: Vec<f32> = gaussian(8 * 96, 4).iter().enumerate().map(|(i, v)| v * (1 << (i % 7)) as f32).collect();
        for k in [0, -118, -124, 118] {
            let x: Vec<f32> = x.iter().map(|v| v * pow2(k)).collect();
            for elem in ["e2m1", "e2m3", "e3m2", "e4m3", "e5m2", "int8"] {
                for rule in ["floor", "ceil", "nearest", "nosat"] {
                    for block in [32, 20] {
                        let p = format!("elem = \"{elem}\", rule = \"{rule}\", block = {block}");
                        let (y, _) = run(&*build::<MxKind>(&p).unwrap(), &x, Shape::new(8, 96), 0, false).unwrap();
                        let r: Vec<f32> = x.chunks(96).flat_map(|row| reference(row, elem, rule, block)).collect();
                        assert_eq!(y, r, "{elem} {rule} block {block}, data times 2^{k}");
                    }
                }
            }
        }
        // Both paths are taken.
        let g = MiniGrid(Minifloat::standard(5, 2).unwrap());
        assert!(g.at(0).is_some() && g.at(-120).is_none() && g.at(90).is_none());
        assert!(Int8Grid.at(-120).is_some() && Int8Grid.at(-121).is_none());
    }

    #[test]
    fn mse_rule_and_stochastic() {
        let shape = Shape::new(16, 1024);
        let tensors = gaussian_tensors(shape, 0..2);
        let floor = estimate_on(&*preset::<MxKind>("mxfp4"), shape, &tensors).mean;
        let mse = estimate_on(&*build::<MxKind>("rule = \"mse\"").unwrap(), shape, &tensors).mean;
        let nosat = estimate_on(&*build::<MxKind>("rule = \"nosat\"").unwrap(), shape, &tensors).mean;
        println!("MXFP4 GMSE: floor {floor:.5e}, nosat {nosat:.5e}, mse {mse:.5e}");
        // The MSE choice includes the floor exponent, so it never does worse on any block.
        assert!(mse < floor && mse < nosat, "{mse} {floor} {nosat}");
        // Stochastic rounding: unbiased, noisier than RNE.
        let f = build::<MxKind>("elem = \"e2m1\", stochastic = true").unwrap();
        let st = estimate_on(&*f, shape, &tensors).mean;
        assert!(st > 1.3 * floor && st < 3.0 * floor, "{st} vs {floor}");
        let x = vec![2.5f32; 32 * 2000];
        let (y, _) = run(&*f, &x, Shape::new(1, x.len()), 3, false).unwrap();
        assert!(y.iter().all(|&v| v == 2.0 || v == 3.0));
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
        assert!((mean - 2.5).abs() < 0.01, "{mean}");
    }

    #[test]
    fn bits_and_mask() {
        let f = preset::<MxKind>("mxfp4");
        assert_eq!(f.bits(Shape::new(16, 4096)).total(), 4.25);
        assert_eq!(f.bits(Shape::new(16, 4096)).parts[1].what, "scale (E8M0) per 32");
        assert_eq!(f.block_len(), Some(32));
        assert_eq!(f.label().unwrap(), "MXFP4 (E2M1), E8M0 scale per 32");
        for (name, bits) in
            [("mxfp6-e2m3", 6.25), ("mxfp6-e3m2", 6.25), ("mxfp8-e4m3", 8.25), ("mxfp8-e5m2", 8.25), ("mxint8", 8.25)]
        {
            assert_eq!(preset::<MxKind>(name).bits(Shape::new(4, 256)).total(), bits, "{name}");
        }
        // Mask: closed exactly where |x| > (6 + 2/2) * 2^e (beyond the top value plus half
        // a top step: clipped), here e = 0.
        let x = [7.9f32, 6.4, 6.6, -7.0, -7.2, 1.0];
        let (_, m) = run(&*f, &x, Shape::new(1, 6), 0, true).unwrap();
        assert_eq!(m.unwrap(), [0.0, 1.0, 1.0, 1.0, 0.0, 1.0]);
    }

    /// Monte Carlo GMSE against DESIGN.md 3 (MC oracles). Tolerance: 3
    /// standard errors of the mean of the per-tensor values plus 0.5 % of the
    /// oracle (the oracles are Monte Carlo values themselves). 4 tensors of
    /// 64 x 4096.
    #[test]
    fn gmse_oracles() {
        let shape = Shape::new(64, 4096);
        let tensors = gaussian_tensors(shape, 300..304);
        for (name, want) in [
            ("mxfp4", 1.32228e-2),
            ("mxfp6-e2m3", 8.0487e-4),
            ("mxfp6-e3m2", 2.9111e-3),
            ("mxfp8-e4m3", 8.6206e-4),
            ("mxfp8-e5m2", 2.9110e-3),
            ("mxint8", 6.8174e-5),
        ] {
            estimate_on(&*preset::<MxKind>(name), shape, &tensors).assert_close(name, want);
        }
    }
}
