//! Scale rules for a slice (a row or a group): absmax, RMS, MSE-searched;
//! plus the reductions they need ([`absmax`], [`sum_sq`], [`rms`]).
//!
//! A *scale* here is whatever the grid's quantizer takes: the outer level for
//! [`MidRise`](crate::grid::MidRise), the step for
//! [`MidTread`], the multiplier of the levels for
//! [`Levels`](crate::grid::Levels) and [`Minifloat`](crate::minifloat::Minifloat).
//!
//! ```
//! use sdk::{grid::MidTread, scale};
//! let x = [0.5f32, -2.0, 1.0, 0.25];
//! let g = MidTread::bits(3); // levels -3..=3
//! assert_eq!(scale::absmax_scale(&x, g.qmax() as f32), 2.0 / 3.0);
//! assert!((scale::rms(&x) - 1.1524430).abs() < 1e-6);
//! let step = scale::mse_scale(&x, scale::shrink_candidates(2.0 / 3.0, 100, 0.2), |s| g.quantizer(s));
//! assert!(step > 0.0 && step <= 2.0 / 3.0);
//! ```

use crate::grid::{MidTread, sq_error};

/// Largest magnitude in `x` (0 for an empty slice; NaN values are skipped).
/// Vectorized: 8 independent lanes, reduced as a tree (short chains for
/// short groups such as 32 values). Inlined, so per-block callers get it
/// unrolled into their loop.
#[inline]
pub fn absmax(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for k in 0..8 {
            let a = c[k].abs();
            acc[k] = if a > acc[k] { a } else { acc[k] };
        }
    }
    let mut w = 4;
    while w > 0 {
        for k in 0..w {
            acc[k] = if acc[k + w] > acc[k] { acc[k + w] } else { acc[k] };
        }
        w /= 2;
    }
    it.remainder().iter().fold(acc[0], |m, v| if v.abs() > m { v.abs() } else { m })
}

/// `Σ f(x)`, accumulated in 16 `f32` lanes per block of 1024 values and in
/// `f64` across blocks (relative error about `1e-6` for any length).
#[inline]
fn sum_map(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0f64;
    for block in x.chunks(1024) {
        let mut acc = [0f32; 16];
        let mut it = block.chunks_exact(16);
        for c in &mut it {
            for k in 0..16 {
                acc[k] += f(c[k]);
            }
        }
        let mut s: f64 = acc.iter().map(|&v| v as f64).sum();
        s += it.remainder().iter().map(|&v| f(v) as f64).sum::<f64>();
        total += s;
    }
    total
}

/// `Σ x²` in `f64` (16 `f32` lanes per block of 1024, `f64` across blocks).
pub fn sum_sq(x: &[f32]) -> f64 {
    sum_map(x, |v| v * v)
}

/// `Σ |x|` in `f64` (16 `f32` lanes per block of 1024, `f64` across blocks).
pub fn sum_abs(x: &[f32]) -> f64 {
    sum_map(x, f32::abs)
}

/// Root mean square `sqrt(mean(x²))`, no mean subtracted (0 for an empty slice).
pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (sum_sq(x) / x.len() as f64).sqrt() as f32
}

/// Absmax rule: the scale that maps the largest magnitude to level `top`,
/// `absmax(x) / top` (a mid-tread step when `top = qmax`; `absmax(x)` itself
/// when `top = 1`, the outer level of a mid-rise grid).
pub fn absmax_scale(x: &[f32], top: f32) -> f32 {
    absmax(x) / top
}

/// RMS rule: `k * rms(x)` (QuEST: `k = k_b` from
/// [`gauss::optimal_uniform`](crate::gauss::optimal_uniform) for the outer level of a mid-rise grid).
pub fn rms_scale(x: &[f32], k: f32) -> f32 {
    k * rms(x)
}

/// `n` candidate scales from `base` shrinking linearly to `base * min_factor`:
/// `base * (1 - (1 - min_factor) * i / (n - 1))`, `i = 0..n` (just `base` when `n <= 1`).
pub fn shrink_candidates(base: f32, n: usize, min_factor: f32) -> impl Iterator<Item = f32> {
    let n = n.max(1);
    let span = if n > 1 { (1.0 - min_factor) / (n - 1) as f32 } else { 0.0 };
    (0..n).map(move |i| base * (1.0 - span * i as f32))
}

/// The candidate with the smallest `err`; the first one on ties. Returns 0
/// when there is no candidate.
pub fn search(candidates: impl IntoIterator<Item = f32>, mut err: impl FnMut(f32) -> f64) -> f32 {
    let mut best = (0f32, f64::INFINITY);
    for s in candidates {
        let e = err(s);
        if e < best.1 {
            best = (s, e);
        }
    }
    best.0
}

/// MSE-searched scale: among `candidates`, the one whose quantizer
/// (`quantizer(scale)`) gives the smallest squared error on `x`.
pub fn mse_scale<Q: Fn(f32) -> f32>(
    x: &[f32],
    candidates: impl IntoIterator<Item = f32>,
    quantizer: impl Fn(f32) -> Q,
) -> f32 {
    search(candidates, |s| sq_error(x, quantizer(s)))
}

/// MSE-searched step for a mid-tread grid: `n` candidates from the absmax
/// step down to `0.2` times it (100 is a good `n`); 0 for an all-zero slice.
pub fn midtread_mse_step(x: &[f32], grid: &MidTread, n: usize) -> f32 {
    let base = grid.absmax_step(absmax(x));
    if base <= 0.0 || !base.is_finite() {
        return base;
    }
    mse_scale(x, shrink_candidates(base, n, 0.2), |s| grid.quantizer(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_match_plain_loops() {
        let x: Vec<f32> = (0..2077).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01).collect();
        for n in [0, 5, 16, 32, 77, 1024, 2077] {
            let x = &x[..n];
            assert_eq!(absmax(x), x.iter().fold(0f32, |m, v| m.max(v.abs())));
            let abs: f64 = x.iter().map(|v| v.abs() as f64).sum();
            assert!((sum_abs(x) - abs).abs() <= 1e-6 * abs.max(1.0), "{n}");
        }
        assert_eq!(absmax(&[1.0, f32::NAN, -3.0]), 3.0);
    }

    #[test]
    fn reductions() {
        let x: Vec<f32> = (0..1000).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01).collect();
        let amax_ref = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(absmax(&x), amax_ref);
        assert_eq!(absmax(&x[..7]), x[..7].iter().fold(0f32, |m, v| m.max(v.abs())));
        assert_eq!(absmax(&[]), 0.0);
        assert_eq!(absmax(&[1.0, f32::NAN, -3.0]), 3.0);
        let ss_ref: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert!((sum_sq(&x) - ss_ref).abs() < 1e-6 * ss_ref);
        assert_eq!(rms(&[3.0, -4.0]), (12.5f32).sqrt());
        assert_eq!(rms(&[]), 0.0);
        let long = vec![0.1f32; 1 << 20];
        assert!((rms(&long) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn rules() {
        let x = [0.5f32, -2.0, 1.0, 0.25];
        assert_eq!(absmax_scale(&x, 1.0), 2.0);
        assert!((rms_scale(&x, 2.0) - 2.0 * 1.152_443).abs() < 1e-5);
        let c: Vec<f32> = shrink_candidates(1.0, 5, 0.2).collect();
        assert_eq!(c, vec![1.0, 0.8, 0.6, 0.39999998, 0.19999999]);
        assert_eq!(shrink_candidates(2.0, 1, 0.2).collect::<Vec<_>>(), vec![2.0]);
        assert_eq!(search([3.0, 1.0, 2.0], |s| ((s - 1.9) as f64).abs()), 2.0);
        assert_eq!(search([], |_| 0.0), 0.0);
    }

    #[test]
    fn mse_search_beats_absmax_with_an_outlier() {
        // A Gaussian-ish bulk with one outlier: the MSE step clips the outlier.
        let mut x: Vec<f32> = (0..256).map(|i| ((i * 97 % 256) as f32 / 255.0 - 0.5) * 2.0).collect();
        x[17] = 5.0;
        let g = MidTread::bits(4);
        let s_abs = g.absmax_step(absmax(&x));
        let s_mse = midtread_mse_step(&x, &g, 100);
        let e_abs = sq_error(&x, g.quantizer(s_abs));
        let e_mse = sq_error(&x, g.quantizer(s_mse));
        assert!(s_mse < s_abs && e_mse < e_abs, "{s_mse} {s_abs} {e_mse} {e_abs}");
        // Candidates include the absmax step, so the search never does worse.
        let y: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).sin()).collect();
        let s = midtread_mse_step(&y, &g, 100);
        assert!(sq_error(&y, g.quantizer(s)) <= sq_error(&y, g.quantizer(g.absmax_step(absmax(&y)))));
        assert_eq!(midtread_mse_step(&[0.0; 8], &g, 100), 0.0);
    }
}
