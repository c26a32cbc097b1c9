//! Minifloats ExMy: sign, `e` exponent bits, `m` mantissa bits, bias
//! `2^(e-1) - 1`, subnormals, round to nearest even, saturation to the
//! largest finite value.
//!
//! Three conventions for the top exponent code ([`Variant`]):
//! - [`Variant::Finite`]: every code is a number (OCP MX element types E2M1,
//!   E2M3, E3M2: max 6, 7.5, 28);
//! - [`Variant::NanOnly`]: only `S.1111.111` is NaN (OCP E4M3 "FN": max 448);
//! - [`Variant::Ieee`]: the top exponent code is infinities and NaNs (E5M2: max 57344).
//!
//! [`Minifloat::standard`] picks the OCP convention for a given `(e, m)`.
//!
//! The quantizer is branch-free: with `v` clamped to `[-max, max]`, the
//! spacing of representable values around `v` is
//! `2^(max(floor(log2 |v|), emin) - m)`, read from the exponent bits of `v`;
//! `v` is divided by it (exactly, a power of two, by exponent arithmetic),
//! rounded to nearest even by the magic-number trick, and multiplied back. Ties go to the even mantissa code, as in IEEE
//! arithmetic, for `m >= 1`. (With `m = 0` a tie between two powers of two
//! goes to the larger one.)

use crate::grid::{clamp, map, map_in_place};
use crate::round::rne_fast;
use crate::{Error, Result};

/// What the top exponent code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// All codes are finite numbers (OCP MX element types E2M1, E2M3, E3M2).
    Finite,
    /// Only the all-ones code is NaN; no infinities (OCP E4M3, "FN").
    NanOnly,
    /// IEEE-like: the top exponent code holds infinities and NaNs (E5M2).
    Ieee,
}

/// A minifloat format ExMy. See the [module docs](self).
///
/// ```
/// use sdk::minifloat::Minifloat;
/// let fp4 = Minifloat::standard(2, 1).unwrap();
/// assert_eq!(fp4.values(), vec![0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
/// assert_eq!([fp4.round(2.5), fp4.round(-5.1), fp4.round(100.0)], [2.0, -6.0, 6.0]);
/// assert_eq!(Minifloat::standard(4, 3).unwrap().max(), 448.0);
/// assert_eq!(Minifloat::standard(5, 2).unwrap().max(), 57344.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minifloat {
    e: u32,
    m: u32,
    variant: Variant,
    bias: i32,
    emin: i32,
    emax: i32,
    max: f32,
    min_normal: f32,
}

impl Minifloat {
    /// ExMy with the given top-code convention.
    ///
    /// `e` must be in `1..=7` and `m` in `0..=16` (so that every step fits
    /// `f32` arithmetic exactly), and the format must have at least one
    /// normal binade (`e >= 2` for [`Variant::Ieee`]).
    pub fn new(e: u32, m: u32, variant: Variant) -> Result<Self> {
        if !(1..=7).contains(&e) {
            return Err(Error::param("e", format!("exponent bits must be 1..=7, got {e}")));
        }
        if m > 16 {
            return Err(Error::param("m", format!("mantissa bits must be 0..=16, got {m}")));
        }
        let bias = (1i32 << (e - 1)) - 1;
        let top = (1i32 << e) - 1; // top exponent code
        let emin = 1 - bias;
        let frac = |mant: u32| 1.0 + mant as f64 / (1u64 << m) as f64;
        let all_ones = (1u32 << m) - 1;
        let (emax, max) = match variant {
            Variant::Finite => (top - bias, frac(all_ones)),
            Variant::NanOnly if m >= 1 => (top - bias, frac(all_ones - 1)),
            Variant::NanOnly | Variant::Ieee => (top - 1 - bias, frac(all_ones)),
        };
        if emax < emin {
            return Err(Error::param(
                "e",
                format!("E{e}M{m} with {variant:?} has no normal numbers: use more exponent bits"),
            ));
        }
        let max = (max * 2f64.powi(emax)) as f32;
        Ok(Minifloat { e, m, variant, bias, emin, emax, max, min_normal: 2f32.powi(emin) })
    }

    /// ExMy with the OCP conventions: E4M3 is [`Variant::NanOnly`] (max 448),
    /// E5M2 is [`Variant::Ieee`] (max 57344), everything else [`Variant::Finite`].
    pub fn standard(e: u32, m: u32) -> Result<Self> {
        let variant = match (e, m) {
            (4, 3) => Variant::NanOnly,
            (5, 2) => Variant::Ieee,
            _ => Variant::Finite,
        };
        Minifloat::new(e, m, variant)
    }

    /// Exponent bits.
    pub fn exponent_bits(&self) -> u32 {
        self.e
    }

    /// Mantissa bits.
    pub fn mantissa_bits(&self) -> u32 {
        self.m
    }

    /// Bits per value, sign included: `1 + e + m`.
    pub fn bits(&self) -> u32 {
        1 + self.e + self.m
    }

    /// The top-code convention.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Exponent bias `2^(e-1) - 1`.
    pub fn bias(&self) -> i32 {
        self.bias
    }

    /// Exponent of the smallest normal number, `1 - bias`.
    pub fn emin(&self) -> i32 {
        self.emin
    }

    /// Exponent of the largest finite number.
    pub fn emax(&self) -> i32 {
        self.emax
    }

    /// Largest finite value.
    pub fn max(&self) -> f32 {
        self.max
    }

    /// Smallest positive (subnormal) value, `2^(emin - m)`.
    pub fn min_positive(&self) -> f32 {
        2f32.powi(self.emin - self.m as i32)
    }

    /// Spacing of the values just below the maximum, `2^(emax - m)`.
    pub fn top_step(&self) -> f32 {
        2f32.powi(self.emax - self.m as i32)
    }

    /// Magnitude beyond which a value (after division by `scale`) is clipped:
    /// `scale * (max + top_step / 2)`.
    pub fn clip_limit(&self, scale: f32) -> f32 {
        scale * (self.max + 0.5 * self.top_step())
    }

    /// Name like `E4M3`.
    pub fn name(&self) -> String {
        format!("E{}M{}", self.e, self.m)
    }

    /// Every non-negative finite value, ascending (0 first). Exact.
    pub fn values(&self) -> Vec<f32> {
        let mut v = Vec::new();
        let per = 1u32 << self.m;
        for code in 0..(1i32 << self.e) {
            for mant in 0..per {
                let x = if code == 0 {
                    mant as f64 * 2f64.powi(self.emin - self.m as i32)
                } else {
                    (per + mant) as f64 * 2f64.powi(code - self.bias - self.m as i32)
                };
                if x <= self.max as f64 {
                    v.push(x as f32);
                }
            }
        }
        v
    }

    /// Every finite value with both signs, ascending, zero once.
    pub fn signed_values(&self) -> Vec<f32> {
        let pos = self.values();
        let mut v: Vec<f32> = pos.iter().rev().filter(|&&x| x > 0.0).map(|&x| -x).collect();
        v.extend(pos);
        v
    }

    /// Rounds `v` to this format (nearest, ties to even, saturating).
    #[inline]
    pub fn round(&self, v: f32) -> f32 {
        self.quantizer(1.0)(v)
    }

    /// Quantizer for `x -> scale * round(x / scale)`; branch-free.
    #[inline]
    pub fn quantizer(&self, scale: f32) -> impl Fn(f32) -> f32 + Copy + use<> {
        let (s, inv_s) = if scale > 0.0 && scale.is_finite() && (1.0 / scale).is_finite() {
            (scale, 1.0 / scale)
        } else {
            (0.0, 0.0)
        };
        let max = self.max;
        let min_normal = self.min_normal;
        // For p = 2^k (biased exponent E = k + 127): 2^m / p has biased
        // exponent 254 + m - E, and p / 2^m has E - m. The restrictions in
        // `new` keep both normal.
        let inv_base = (254 + self.m) << 23;
        let m_bits = self.m << 23;
        move |x: f32| {
            // Saturate, keeping the sign (rounding to nearest even is symmetric).
            let v = clamp(x * inv_s, -max, max);
            // 2^floor(log2 |v|) (the mask drops the sign), at least 2^emin.
            let p = f32::from_bits(v.to_bits() & 0x7F80_0000);
            let p = if p < min_normal { min_normal } else { p };
            let inv = f32::from_bits(inv_base.wrapping_sub(p.to_bits()));
            let step = f32::from_bits(p.to_bits().wrapping_sub(m_bits));
            rne_fast(v * inv) * (step * s)
        }
    }

    /// Quantizes `input` into `output`: `scale * round(x / scale)`.
    pub fn quantize(&self, input: &[f32], output: &mut [f32], scale: f32) {
        map(input, output, self.quantizer(scale));
    }

    /// Quantizes `x` in place: `scale * round(x / scale)`.
    pub fn quantize_in_place(&self, x: &mut [f32], scale: f32) {
        map_in_place(x, self.quantizer(scale));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scalar reference: nearest representable value by scan; ties to the
    /// even code (the even index in the list of non-negative values).
    fn round_ref(f: &Minifloat, v: f32) -> f32 {
        let vals = f.values();
        let a = v.abs().min(f.max());
        let mut best = 0usize;
        for (i, &x) in vals.iter().enumerate() {
            let d = (a - x).abs();
            let db = (a - vals[best]).abs();
            if d < db || (d == db && i % 2 == 0) {
                best = i;
            }
        }
        vals[best].copysign(v)
    }

    const STANDARD: [(u32, u32, f32); 5] = [(2, 1, 6.0), (2, 3, 7.5), (3, 2, 28.0), (4, 3, 448.0), (5, 2, 57344.0)];

    #[test]
    fn e2m1_values() {
        let f = Minifloat::standard(2, 1).unwrap();
        assert_eq!(f.values(), [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
        assert_eq!(
            f.signed_values(),
            [-6.0, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
        );
        assert_eq!((f.bias(), f.emin(), f.emax(), f.min_positive(), f.top_step()), (1, 0, 2, 0.5, 2.0));
    }

    #[test]
    fn maxima_and_counts() {
        for (e, m, max) in STANDARD {
            let f = Minifloat::standard(e, m).unwrap();
            assert_eq!(f.max(), max, "E{e}M{m}");
            let n = f.values().len();
            let want = match (e, m) {
                (4, 3) => 127, // 128 codes, one NaN
                (5, 2) => 124, // 128 codes, 4 inf/NaN
                _ => 1 << (e + m),
            };
            assert_eq!(n, want, "E{e}M{m}");
        }
        assert_eq!(Minifloat::new(4, 3, Variant::Ieee).unwrap().max(), 240.0);
        assert_eq!(Minifloat::new(5, 2, Variant::Finite).unwrap().max(), 114688.0);
        assert!(Minifloat::new(1, 2, Variant::Ieee).is_err());
        assert!(Minifloat::new(8, 7, Variant::Ieee).is_err());
    }

    #[test]
    fn ties_to_even() {
        let f = Minifloat::standard(2, 1).unwrap();
        let cases =
            [(0.25, 0.0), (0.75, 1.0), (1.25, 1.0), (1.75, 2.0), (2.5, 2.0), (3.5, 4.0), (5.0, 4.0), (-5.0, -4.0)];
        for (x, want) in cases {
            assert_eq!(f.round(x), want, "round({x})");
        }
        let f = Minifloat::standard(4, 3).unwrap();
        assert_eq!(f.round(17.0), 16.0); // between 16 and 18, code of 16 is even
        assert_eq!(f.round(19.0), 20.0);
        assert_eq!(f.round(2f32.powi(-10)), 0.0); // half the smallest subnormal 2^-9
        assert_eq!(f.round(3.0 * 2f32.powi(-10)), 2f32.powi(-8));
    }

    #[test]
    fn round_trip_and_saturate() {
        for (e, m, max) in STANDARD {
            let f = Minifloat::standard(e, m).unwrap();
            for v in f.signed_values() {
                assert_eq!(f.round(v), v, "E{e}M{m} {v}");
            }
            for v in [max * 1.01, max * 4.0, 1e30, f32::INFINITY] {
                assert_eq!(f.round(v), max);
                assert_eq!(f.round(-v), -max);
            }
        }
    }

    #[test]
    fn fast_matches_reference() {
        for (e, m, _) in STANDARD.into_iter().chain([(3, 0, 0.0), (1, 3, 0.0), (6, 2, 0.0)]) {
            let f = Minifloat::standard(e, m).unwrap();
            let vals = f.values();
            // Every value, every midpoint, and points in between.
            let mut xs = Vec::new();
            for w in vals.windows(2) {
                for t in [0.0f32, 0.2, 0.5, 0.8] {
                    xs.push(w[0] + t * (w[1] - w[0]));
                }
            }
            xs.extend(xs.clone().iter().map(|v| -v));
            let mut ys = vec![0.0; xs.len()];
            f.quantize(&xs, &mut ys, 1.0);
            let mut worst = 0f32;
            for (&x, &y) in xs.iter().zip(&ys) {
                if m == 0 && vals.contains(&(2.0 * x.abs() / 1.5)) {
                    continue; // documented: m = 0 ties between powers of two go up
                }
                worst = worst.max((y - round_ref(&f, x)).abs());
            }
            println!("E{e}M{m}: max |fast - reference| = {worst:e} over {} inputs", xs.len());
            assert_eq!(worst, 0.0, "E{e}M{m}");
        }
    }

    #[test]
    fn scaled() {
        let f = Minifloat::standard(2, 1).unwrap();
        let x = [0.3f32, -1.0, 2.9, 100.0];
        let mut y = [0.0; 4];
        f.quantize(&x, &mut y, 0.5);
        assert_eq!(y, [0.25, -1.0, 3.0, 3.0]);
        assert_eq!(f.clip_limit(0.5), 3.5);
        f.quantize(&x, &mut y, 0.0);
        assert_eq!(y, [0.0; 4]);
    }
}
