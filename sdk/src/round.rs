//! Rounding of `f32` values: round-to-nearest-even that vectorizes, and seeded
//! stochastic rounding whose random numbers depend only on `(seed, index)`.
//!
//! Baseline x86_64 (SSE2) has no vector rounding instruction, so
//! [`rne_fast`] uses the magic-number trick: adding `1.5 * 2^23` pushes the
//! fraction bits out of the significand (the hardware rounds to nearest even
//! while doing so), and subtracting it again gives the rounded value. This is
//! exact for `|x| <= 2^22` ([`FAST_LIMIT`]); grid quantizers clamp before they
//! round, so their arguments are always in range. [`rne`] is correct for every
//! input.
//!
//! Stochastic rounding draws its uniform number for element `i` from a hash of
//! `(seed, i)` ([`uniform`]), so results do not depend on how a tensor is split
//! into rows, groups or threads.

/// `1.5 * 2^23`: adding and subtracting it rounds an `f32` to an integer (ties to even).
pub const MAGIC: f32 = 12_582_912.0;

/// `2^22`: [`rne_fast`] and [`floor_fast`] are exact for `|x| <= FAST_LIMIT`.
pub const FAST_LIMIT: f32 = 4_194_304.0;

/// Rounds to the nearest integer, ties to even, for `|x| <= 2^22` ([`FAST_LIMIT`]).
///
/// Outside that range the result is wrong (use [`rne`]). Branch-free; a loop
/// of these compiles to plain SSE2 adds and subtracts.
///
/// ```
/// use sdk::round::rne_fast;
/// assert_eq!(rne_fast(2.5), 2.0);
/// assert_eq!(rne_fast(3.5), 4.0);
/// assert_eq!(rne_fast(-1.5), -2.0);
/// ```
#[inline(always)]
pub fn rne_fast(x: f32) -> f32 {
    (x + MAGIC) - MAGIC
}

/// Rounds to the nearest integer, ties to even, for any `f32`.
///
/// Branch-free and vectorizable like [`rne_fast`]: adds and subtracts
/// `2^23` with the sign of `x` (exact for `|x| < 2^23`); larger values are
/// integers already and are returned as they are. NaN stays NaN. The only
/// difference from `f32::round_ties_even` is the sign of a zero result
/// (`rne(-0.5)` is `+0.0`).
#[inline(always)]
pub fn rne(x: f32) -> f32 {
    let m = 8_388_608.0f32.copysign(x);
    let r = (x + m) - m;
    if x.abs() < 8_388_608.0 { r } else { x }
}

/// Rounds every element of `x` to the nearest integer, ties to even.
pub fn rne_slice(x: &mut [f32]) {
    for v in x {
        *v = rne(*v);
    }
}

/// Largest integer `<= x`, exact for `|x| <= 2^22` ([`FAST_LIMIT`]); branch-free.
#[inline(always)]
pub fn floor_fast(x: f32) -> f32 {
    let r = rne_fast(x);
    if r > x { r - 1.0 } else { r }
}

/// A 64-bit hash of `(seed, index)` (splitmix64's finalizer over a Weyl sequence).
///
/// The same pair always gives the same value; neighbouring indices give
/// unrelated values.
#[inline(always)]
pub fn hash(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0xD1B5_4A32_D192_ED03)
        .wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in `[0, 1)` (24 random bits) for element `index` under `seed`.
#[inline(always)]
pub fn uniform(seed: u64, index: u64) -> f32 {
    (hash(seed, index) >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// Stochastic rounding of `x` with uniform number `u` in `[0, 1)`:
/// `floor(x + u)`, which rounds up with probability `frac(x)`, so the result
/// is unbiased. Exact for `|x| < 2^22`.
#[inline(always)]
pub fn stochastic_with(x: f32, u: f32) -> f32 {
    floor_fast(x + u)
}

/// Stochastic rounding of `x` as element `index` of a stream seeded with `seed`.
#[inline(always)]
pub fn stochastic(x: f32, seed: u64, index: u64) -> f32 {
    stochastic_with(x, uniform(seed, index))
}

/// Stochastically rounds every element of `x`; element `i` is element
/// `first_index + i` of the stream seeded with `seed`.
pub fn stochastic_slice(x: &mut [f32], seed: u64, first_index: u64) {
    for (i, v) in x.iter_mut().enumerate() {
        *v = stochastic(*v, seed, first_index + i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rne_ties_to_even() {
        let cases = [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-0.4, -0.0),
            (-2.5, -2.0),
            (0.49999997, 0.0),
            (1.2, 1.0),
            (-1.7, -2.0),
            (4_194_303.5, 4_194_304.0),
            (-4_194_304.0, -4_194_304.0),
        ];
        for (x, want) in cases {
            assert_eq!(rne_fast(x), want, "rne_fast({x})");
            assert_eq!(rne(x), want, "rne({x})");
        }
    }

    #[test]
    fn rne_matches_std_everywhere() {
        // Magnitudes from 2^-3 to 2^26, with fractions that hit ties.
        let mut worst = 0f32;
        let mut x = 0.125f32;
        while x < 6.7e7 {
            for d in [0.0f32, 0.25, 0.5, 0.75, 1.0 / 3.0] {
                for v in [x + d, -(x + d)] {
                    worst = worst.max((rne(v) - v.round_ties_even()).abs());
                }
            }
            x = x * 1.0007 + 0.37;
        }
        println!("max |rne - round_ties_even| = {worst}");
        assert_eq!(worst, 0.0);
        assert_eq!(rne(1.0e30), 1.0e30);
        assert!(rne(f32::NAN).is_nan());
        assert_eq!(rne(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn floor_fast_is_floor() {
        for x in [-2.5f32, -2.0, -1.25, -0.1, 0.0, 0.1, 0.99, 1.0, 3.7, 1e6 + 0.5] {
            assert_eq!(floor_fast(x), x.floor(), "floor_fast({x})");
        }
    }

    #[test]
    fn uniform_is_deterministic_and_uniform() {
        assert_eq!(uniform(7, 12), uniform(7, 12));
        assert_ne!(uniform(7, 12), uniform(8, 12));
        let n = 100_000;
        let mean: f64 = (0..n).map(|i| uniform(3, i) as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!((0..n).all(|i| (0.0..1.0).contains(&uniform(3, i))));
    }

    #[test]
    fn stochastic_is_unbiased_and_chunking_independent() {
        let n = 200_000u64;
        let sum: f64 = (0..n).map(|i| stochastic(0.3, 11, i) as f64).sum();
        let mean = sum / n as f64;
        // Bernoulli(0.3): standard error 0.001.
        assert!((mean - 0.3).abs() < 0.005, "mean {mean}");
        assert!((0..1000).all(|i| [0.0, 1.0].contains(&stochastic(0.3, 11, i))));
        assert_eq!(stochastic(2.0, 5, 9), 2.0);
        assert_eq!(stochastic(-2.0, 5, 9), -2.0);

        let x: Vec<f32> = (0..100).map(|i| i as f32 * 0.37 - 17.0).collect();
        let mut whole = x.clone();
        stochastic_slice(&mut whole, 42, 1000);
        let mut parts = x.clone();
        let (a, b) = parts.split_at_mut(37);
        stochastic_slice(a, 42, 1000);
        stochastic_slice(b, 42, 1037);
        assert_eq!(whole, parts);
        for (r, v) in whole.iter().zip(&x) {
            assert!(*r == v.floor() || *r == v.floor() + 1.0);
        }
    }
}
