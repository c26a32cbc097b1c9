//! Quantization grids: uniform mid-rise and mid-tread grids, and arbitrary
//! sorted level lists, with fast slice kernels.
//!
//! Each grid hands out a *quantizer*: a small `Copy` closure `f32 -> f32` for
//! one scale, with no branches per element, so [`map`] and [`map_in_place`]
//! compile to vectorized loops (round-to-nearest-even by
//! [`round::rne_fast`](crate::round::rne_fast), valid because values are
//! clamped first). Stochastic variants take the element's index as well and
//! go through [`map_indexed`].
//!
//! A scale that is zero, negative or not finite (an all-zero group, say)
//! gives a quantizer that returns `0` for every finite input.
//!
//! Clipping, for straight-through masks: every grid says beyond which
//! magnitude a value is clipped (its `clip_limit`), and [`clip_mask`] writes
//! `0` there.

use crate::round::{floor_fast, rne_fast, uniform};

/// `min(max(x, lo), hi)` written as compare-and-select (compiles to `maxps`/`minps`; NaN passes through).
#[inline(always)]
pub fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x < lo { lo } else { x };
    if x > hi { hi } else { x }
}

/// `(scale, 1 / scale)` for a usable scale, `(0, 0)` otherwise.
#[inline]
fn scale_pair(scale: f32) -> (f32, f32) {
    if scale > 0.0 && scale.is_finite() && (1.0 / scale).is_finite() { (scale, 1.0 / scale) } else { (0.0, 0.0) }
}

/// `output[i] = f(input[i])`. With an inlinable `f` this is a vectorized loop.
///
/// # Panics
/// When the slices differ in length.
#[inline]
pub fn map(input: &[f32], output: &mut [f32], f: impl Fn(f32) -> f32) {
    assert_eq!(input.len(), output.len(), "map: input and output lengths differ");
    for (y, &x) in output.iter_mut().zip(input) {
        *y = f(x);
    }
}

/// `x[i] = f(x[i])`.
#[inline]
pub fn map_in_place(x: &mut [f32], f: impl Fn(f32) -> f32) {
    for v in x {
        *v = f(*v);
    }
}

/// `output[i] = f(input[i], first_index + i)`: for stochastic quantizers,
/// whose random number for an element depends on its index in the tensor.
///
/// # Panics
/// When the slices differ in length.
#[inline]
pub fn map_indexed(input: &[f32], output: &mut [f32], first_index: u64, f: impl Fn(f32, u64) -> f32) {
    assert_eq!(input.len(), output.len(), "map_indexed: input and output lengths differ");
    for (i, (y, &x)) in output.iter_mut().zip(input).enumerate() {
        *y = f(x, first_index + i as u64);
    }
}

/// `x[i] = f(x[i], first_index + i)`.
#[inline]
pub fn map_indexed_in_place(x: &mut [f32], first_index: u64, f: impl Fn(f32, u64) -> f32) {
    for (i, v) in x.iter_mut().enumerate() {
        *v = f(*v, first_index + i as u64);
    }
}

/// `Σ (x - f(x))^2` over `input`, accumulated in `f32` lanes per block of
/// 1024 values and in `f64` across blocks (relative error about `1e-6`).
#[inline]
pub fn sq_error(input: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0f64;
    for block in input.chunks(1024) {
        let mut acc = [0f32; 16];
        let mut it = block.chunks_exact(16);
        for c in &mut it {
            for k in 0..16 {
                let d = c[k] - f(c[k]);
                acc[k] += d * d;
            }
        }
        let mut s: f64 = acc.iter().map(|&v| v as f64).sum();
        for &x in it.remainder() {
            let d = x - f(x);
            s += (d * d) as f64;
        }
        total += s;
    }
    total
}

/// Writes `0` into `mask` where `|input| > limit` (the value was clipped);
/// leaves other entries as they are.
///
/// # Panics
/// When the slices differ in length.
pub fn clip_mask(input: &[f32], mask: &mut [f32], limit: f32) {
    clip_mask_range(input, mask, -limit, limit);
}

/// Writes `0` into `mask` where `input < lo` or `input > hi`; leaves other entries as they are.
///
/// # Panics
/// When the slices differ in length.
pub fn clip_mask_range(input: &[f32], mask: &mut [f32], lo: f32, hi: f32) {
    assert_eq!(input.len(), mask.len(), "clip_mask: input and mask lengths differ");
    for (m, &x) in mask.iter_mut().zip(input) {
        if x < lo || x > hi {
            *m = 0.0;
        }
    }
}

/// Mid-rise uniform grid: `n` levels `linspace(-a, a, n)`, no level at 0 when
/// `n` is even (QuEST's grid, with `n = 2^bits`).
///
/// ```
/// use sdk::grid::MidRise;
/// let g = MidRise::bits(2); // levels -1.5, -0.5, 0.5, 1.5 for a = 1.5
/// let q = g.quantizer(1.5);
/// assert_eq!([q(0.1), q(-0.9), q(1.2), q(7.0)], [0.5, -0.5, 1.5, 1.5]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MidRise {
    levels: u32,
    half: f32,
}

impl MidRise {
    /// A grid of `levels` levels.
    ///
    /// # Panics
    /// When `levels < 2` or `levels > 2^22`.
    pub fn new(levels: u32) -> Self {
        assert!((2..=1 << 22).contains(&levels), "MidRise: levels must be 2..=2^22, got {levels}");
        MidRise { levels, half: (levels - 1) as f32 * 0.5 }
    }

    /// The grid of `2^bits` levels.
    ///
    /// # Panics
    /// When `bits` is not in `1..=22`.
    pub fn bits(bits: u32) -> Self {
        assert!((1..=22).contains(&bits), "MidRise: bits must be 1..=22, got {bits}");
        MidRise::new(1 << bits)
    }

    /// Number of levels.
    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// Distance between neighbouring levels when the outer level is `amax`: `2 a / (n - 1)`.
    pub fn step(&self, amax: f32) -> f32 {
        amax / self.half
    }

    /// Magnitude beyond which a value is clipped: `a + step / 2`.
    pub fn clip_limit(&self, amax: f32) -> f32 {
        amax + 0.5 * self.step(amax)
    }

    /// The levels for outer level `amax`, ascending.
    pub fn values(&self, amax: f32) -> Vec<f32> {
        let step = self.step(amax);
        (0..self.levels).map(|j| (j as f32 - self.half) * step).collect()
    }

    /// Round-to-nearest quantizer with outer level `amax` (clamp to `[-a, a]`, then snap).
    #[inline]
    pub fn quantizer(&self, amax: f32) -> impl Fn(f32) -> f32 + Copy + use<> {
        let (step, inv) = scale_pair(self.step(amax));
        let h = self.half;
        move |x| (rne_fast(clamp(x * inv, -h, h) - 0.5) + 0.5) * step
    }

    /// Stochastic-rounding quantizer: rounds to one of the two neighbouring
    /// levels with probabilities that make the result unbiased (inside
    /// `[-a, a]`), using the random number of `(seed, index)`.
    #[inline]
    pub fn stochastic_quantizer(&self, amax: f32, seed: u64) -> impl Fn(f32, u64) -> f32 + Copy + use<> {
        let (step, inv) = scale_pair(self.step(amax));
        let h = self.half;
        let top = 2.0 * h;
        move |x, i| {
            let r = clamp(x * inv, -h, h) + h;
            let j = floor_fast(r + uniform(seed, i));
            ((if j > top { top } else { j }) - h) * step
        }
    }

    /// Quantizes `input` into `output` with outer level `amax`.
    pub fn quantize(&self, input: &[f32], output: &mut [f32], amax: f32) {
        map(input, output, self.quantizer(amax));
    }

    /// Quantizes `x` in place with outer level `amax`.
    pub fn quantize_in_place(&self, x: &mut [f32], amax: f32) {
        map_in_place(x, self.quantizer(amax));
    }
}

/// Mid-tread uniform grid: integer levels `-qmax..=qmax` times a step
/// (symmetric INT-k has `qmax = 2^(k-1) - 1`), 0 included.
///
/// ```
/// use sdk::grid::MidTread;
/// let g = MidTread::bits(4); // levels -7..=7
/// let step = g.absmax_step(3.5); // 0.5
/// let q = g.quantizer(step);
/// assert_eq!([q(0.2), q(0.25), q(0.75), q(-3.5), q(9.0)], [0.0, 0.0, 1.0, -3.5, 3.5]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MidTread {
    qmax: u32,
}

impl MidTread {
    /// Levels `-qmax..=qmax`.
    ///
    /// # Panics
    /// When `qmax` is 0 or above `2^22`.
    pub fn new(qmax: u32) -> Self {
        assert!((1..=1 << 22).contains(&qmax), "MidTread: qmax must be 1..=2^22, got {qmax}");
        MidTread { qmax }
    }

    /// Symmetric signed `bits`-bit integers: `qmax = 2^(bits-1) - 1`.
    ///
    /// # Panics
    /// When `bits` is not in `2..=23`.
    pub fn bits(bits: u32) -> Self {
        assert!((2..=23).contains(&bits), "MidTread: bits must be 2..=23, got {bits}");
        MidTread::new((1 << (bits - 1)) - 1)
    }

    /// The largest level index.
    pub fn qmax(&self) -> u32 {
        self.qmax
    }

    /// The step that maps `amax` to the top level: `amax / qmax`.
    pub fn absmax_step(&self, amax: f32) -> f32 {
        amax / self.qmax as f32
    }

    /// Magnitude beyond which a value is clipped: `(qmax + 1/2) * step`.
    pub fn clip_limit(&self, step: f32) -> f32 {
        (self.qmax as f32 + 0.5) * step
    }

    /// The levels for `step`, ascending.
    pub fn values(&self, step: f32) -> Vec<f32> {
        let q = self.qmax as i64;
        (-q..=q).map(|j| j as f32 * step).collect()
    }

    /// Round-to-nearest-even quantizer with `step` (clamp to `±qmax` steps, then round).
    #[inline]
    pub fn quantizer(&self, step: f32) -> impl Fn(f32) -> f32 + Copy + use<> {
        let (step, inv) = scale_pair(step);
        let q = self.qmax as f32;
        move |x| rne_fast(clamp(x * inv, -q, q)) * step
    }

    /// Stochastic-rounding quantizer (unbiased inside the range), using the
    /// random number of `(seed, index)`.
    #[inline]
    pub fn stochastic_quantizer(&self, step: f32, seed: u64) -> impl Fn(f32, u64) -> f32 + Copy + use<> {
        let (step, inv) = scale_pair(step);
        let q = self.qmax as f32;
        move |x, i| {
            let j = floor_fast(clamp(x * inv, -q, q) + uniform(seed, i));
            (if j > q { q } else { j }) * step
        }
    }

    /// Quantizes `input` into `output` with `step`.
    pub fn quantize(&self, input: &[f32], output: &mut [f32], step: f32) {
        map(input, output, self.quantizer(step));
    }

    /// Quantizes `x` in place with `step`.
    pub fn quantize_in_place(&self, x: &mut [f32], step: f32) {
        map_in_place(x, self.quantizer(step));
    }
}

/// An arbitrary sorted list of levels (Lloyd-Max, NF4, a minifloat's values,
/// ...), quantized to the nearest level. A value exactly on a midpoint goes
/// to the lower level.
///
/// The search is a bucket table over the range of the midpoints: a value's
/// bucket `floor((v - t_first) * K / (t_last - t_first))` gives the number of
/// midpoints in earlier buckets, and a fixed number of branch-free
/// comparisons (the most midpoints any bucket holds, 1 for Lloyd-Max grids)
/// finishes the count. Exact: bucket numbers of midpoints are computed with
/// the same arithmetic, and that arithmetic is monotone.
///
/// ```
/// use sdk::grid::Levels;
/// let g = Levels::new(&[-1.0, 0.0, 0.5, 2.0]);
/// let q = g.quantizer(2.0); // effective levels -2, 0, 1, 4
/// assert_eq!([q(-9.0), q(0.4), q(0.6), q(2.6), q(50.0)], [-2.0, 0.0, 1.0, 4.0, 4.0]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    levels: Vec<f32>,
    /// Midpoints, then one `+∞` (so `thresholds[i]` exists for every level index `i`).
    thresholds: Vec<f32>,
    /// Per bucket: number of midpoints in earlier buckets.
    base: Vec<u32>,
    /// First midpoint.
    lo: f32,
    /// Buckets per unit of value.
    inv_width: f32,
    /// Largest bucket index, as `f32`.
    top: f32,
    /// Most midpoints in one bucket.
    per_bucket: usize,
}

/// Most buckets a [`Levels`] table uses.
const MAX_BUCKETS: usize = 1 << 16;

impl Levels {
    /// The levels, sorted and deduplicated.
    ///
    /// # Panics
    /// When `levels` is empty or holds a value that is not finite.
    pub fn new(levels: &[f32]) -> Self {
        assert!(!levels.is_empty(), "Levels: no levels");
        assert!(levels.iter().all(|v| v.is_finite()), "Levels: levels must be finite");
        let mut levels = levels.to_vec();
        levels.sort_by(f32::total_cmp);
        levels.dedup();
        let mid: Vec<f32> = levels.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        let mut thresholds = mid.clone();
        thresholds.push(f32::INFINITY);
        let mut g = Levels { levels, thresholds, base: vec![0], lo: 0.0, inv_width: 0.0, top: 0.0, per_bucket: 0 };
        if mid.is_empty() {
            return g;
        }
        let (lo, hi) = (mid[0], mid[mid.len() - 1]);
        g.lo = lo;
        // Finer tables until no bucket holds more than two midpoints.
        let mut k = (8 * mid.len()).clamp(16, MAX_BUCKETS);
        loop {
            g.inv_width = if hi > lo { k as f32 / (hi - lo) } else { 0.0 };
            g.top = (k - 1) as f32;
            g.base = vec![0; k]; // `bucket` reads the table size from here
            let mut count = vec![0u32; k];
            for &t in &mid {
                count[g.bucket(t)] += 1;
            }
            g.per_bucket = count.iter().copied().max().unwrap_or(0) as usize;
            g.base = count
                .iter()
                .scan(0u32, |acc, &c| {
                    let b = *acc;
                    *acc += c;
                    Some(b)
                })
                .collect();
            if g.per_bucket <= 2 || k == MAX_BUCKETS {
                return g;
            }
            k = (k * 4).min(MAX_BUCKETS);
        }
    }

    /// The levels from `f64` values (rounded to `f32`).
    pub fn from_f64(levels: &[f64]) -> Self {
        Levels::new(&levels.iter().map(|&v| v as f32).collect::<Vec<_>>())
    }

    /// The levels, ascending.
    pub fn levels(&self) -> &[f32] {
        &self.levels
    }

    #[inline(always)]
    fn bucket(&self, v: f32) -> usize {
        // NaN becomes bucket 0 (`as` maps NaN to 0); via i32, which x86-64
        // converts in one instruction (the table has at most 2^16 buckets).
        (clamp((v - self.lo) * self.inv_width, 0.0, self.top) as i32 as usize).min(self.base.len() - 1)
    }

    /// Index of the level nearest to `v` (NaN gives 0).
    #[inline(always)]
    pub fn index(&self, v: f32) -> usize {
        let mut idx = self.base[self.bucket(v)] as usize;
        for _ in 0..self.per_bucket {
            idx += (v > self.thresholds[idx]) as usize;
        }
        idx
    }

    /// The level nearest to `v`.
    #[inline(always)]
    pub fn nearest(&self, v: f32) -> f32 {
        self.levels[self.index(v)]
    }

    /// Values outside `(lo, hi)` are clipped when quantized with `scale`:
    /// half a spacing beyond the outer levels (infinite for a single level).
    pub fn clip_range(&self, scale: f32) -> (f32, f32) {
        let l = &self.levels;
        let n = l.len();
        if n < 2 {
            return (f32::NEG_INFINITY, f32::INFINITY);
        }
        let lo = l[0] - 0.5 * (l[1] - l[0]);
        let hi = l[n - 1] + 0.5 * (l[n - 1] - l[n - 2]);
        (scale * lo, scale * hi)
    }

    /// Nearest-level quantizer for effective levels `scale * levels`.
    #[inline]
    pub fn quantizer(&self, scale: f32) -> impl Fn(f32) -> f32 + Copy + '_ {
        let (s, inv) = scale_pair(scale);
        move |x| self.nearest(x * inv) * s
    }

    /// Quantizes `input` into `output` with `scale`.
    pub fn quantize(&self, input: &[f32], output: &mut [f32], scale: f32) {
        map(input, output, self.quantizer(scale));
    }

    /// Quantizes `x` in place with `scale`.
    pub fn quantize_in_place(&self, x: &mut [f32], scale: f32) {
        map_in_place(x, self.quantizer(scale));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scalar reference: nearest level by linear scan, ties to the lower level.
    fn nearest_ref(levels: &[f32], v: f32) -> f32 {
        let mut best = levels[0];
        for &l in levels {
            if (v - l).abs() < (v - best).abs() {
                best = l;
            }
        }
        best
    }

    fn test_values() -> Vec<f32> {
        let mut v = Vec::new();
        let mut x = -11.3f32;
        while x < 11.3 {
            v.push(x);
            x += 0.0137;
        }
        v
    }

    #[test]
    fn midrise_matches_reference() {
        for bits in 1..=8 {
            let g = MidRise::bits(bits);
            let a = 2.7f32;
            let levels = g.values(a);
            assert_eq!(levels.len(), 1 << bits);
            assert!((levels[0] + a).abs() < 1e-6 && (levels[levels.len() - 1] - a).abs() < 1e-6);
            let x = test_values();
            let mut y = vec![0.0; x.len()];
            g.quantize(&x, &mut y, a);
            let mut worst = 0f32;
            for (&xi, &yi) in x.iter().zip(&y) {
                worst = worst.max((yi - nearest_ref(&levels, xi)).abs());
            }
            println!("mid-rise {bits} bits: max |fast - reference| = {worst:e}");
            assert!(worst <= 1e-5, "bits {bits}: {worst}");
        }
        assert_eq!(MidRise::bits(1).values(0.8), vec![-0.8, 0.8]);
    }

    #[test]
    fn midtread_matches_reference_and_ties_to_even() {
        let g = MidTread::bits(4);
        let step = 0.37f32;
        let levels = g.values(step);
        assert_eq!(levels.len(), 15);
        let x = test_values();
        let mut y = vec![0.0; x.len()];
        g.quantize(&x, &mut y, step);
        let worst = x.iter().zip(&y).map(|(&a, &b)| (b - nearest_ref(&levels, a)).abs()).fold(0f32, f32::max);
        println!("mid-tread INT4: max |fast - reference| = {worst:e}");
        assert!(worst <= 1e-6);
        let q = g.quantizer(1.0);
        assert_eq!([q(0.5), q(1.5), q(2.5), q(-2.5), q(6.5), q(7.4)], [0.0, 2.0, 2.0, -2.0, 6.0, 7.0]);
        assert_eq!(MidTread::bits(8).qmax(), 127);
    }

    #[test]
    fn zero_or_bad_scale_gives_zeros() {
        let x = [1.0f32, -2.0, 0.0];
        for s in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
            let q = MidTread::bits(4).quantizer(s);
            let r = MidRise::bits(4).quantizer(s);
            let levels = Levels::new(&[-1.0, 1.0]);
            let l = levels.quantizer(s);
            for v in x {
                assert_eq!(q(v), 0.0);
                assert_eq!(r(v), 0.0);
                assert_eq!(l(v), 0.0);
            }
        }
    }

    #[test]
    fn stochastic_is_unbiased_and_stays_on_grid() {
        let g = MidTread::bits(3); // -3..=3
        let q = g.stochastic_quantizer(1.0, 9);
        let n = 100_000u64;
        let mean: f64 = (0..n).map(|i| q(1.25, i) as f64).sum::<f64>() / n as f64;
        assert!((mean - 1.25).abs() < 0.01, "{mean}");
        assert!((0..1000).all(|i| [1.0, 2.0].contains(&q(1.25, i))));
        assert!((0..1000).all(|i| q(3.0, i) == 3.0 && q(-30.0, i) == -3.0));

        let r = MidRise::bits(2).stochastic_quantizer(1.5, 4); // levels ±0.5, ±1.5
        let mean: f64 = (0..n).map(|i| r(0.2, i) as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.2).abs() < 0.01, "{mean}");
        assert!((0..1000).all(|i| [-0.5, 0.5].contains(&r(0.2, i))));
        assert!((0..1000).all(|i| r(1.5, i) == 1.5 && r(-9.0, i) == -1.5));
    }

    #[test]
    fn levels_match_reference() {
        let raw = [0.3f32, -2.0, 1.1, 4.0, -0.7, 0.0, 2.5, 2.5];
        let g = Levels::new(&raw);
        assert_eq!(g.levels(), &[-2.0, -0.7, 0.0, 0.3, 1.1, 2.5, 4.0]);
        let x = test_values();
        let mut y = vec![0.0; x.len()];
        g.quantize(&x, &mut y, 1.0);
        let worst = x.iter().zip(&y).map(|(&a, &b)| (b - nearest_ref(g.levels(), a)).abs()).fold(0f32, f32::max);
        println!("levels: max |search - linear scan| = {worst:e}");
        assert_eq!(worst, 0.0);
        for n in 1..=20 {
            let l: Vec<f32> = (0..n).map(|i| (i * i) as f32).collect();
            let g = Levels::new(&l);
            for v in [-1.0f32, 0.4, 3.0, 50.0, 500.0, 5000.0] {
                assert_eq!(g.nearest(v), nearest_ref(&l, v), "n {n} v {v}");
            }
        }
        assert_eq!(Levels::new(&[-1.0, 1.0, 2.0]).clip_range(2.0), (-4.0, 5.0));
        // Clustered levels (a minifloat's values): many midpoints per coarse bucket.
        let mut l: Vec<f32> = (-60..=60).map(|e: i32| 2f32.powi(e / 4).copysign(e as f32)).collect();
        l.push(0.0);
        let g = Levels::new(&l);
        let mut v = -300.0f32;
        while v < 300.0 {
            for w in [v, v * 1e-3, v * 1e-6] {
                assert_eq!(g.nearest(w), nearest_ref(g.levels(), w), "v {w}");
            }
            v += 0.0731;
        }
        for t in g.thresholds.iter().filter(|t| t.is_finite()) {
            assert_eq!(g.nearest(*t), nearest_ref(g.levels(), *t), "midpoint {t}");
        }
        assert_eq!(g.index(f32::NAN), 0);
    }

    #[test]
    fn masks_and_errors() {
        let x = [0.5f32, -3.0, 2.0, 2.1];
        let mut m = [1.0f32; 4];
        clip_mask(&x, &mut m, 2.0);
        assert_eq!(m, [1.0, 0.0, 1.0, 0.0]);
        let g = MidRise::bits(2);
        assert_eq!(g.clip_limit(1.5), 2.0);
        let e = sq_error(&[1.0, 2.0, 3.0], |v| v.floor() + 0.5);
        assert!((e - 0.75).abs() < 1e-12);
        let big: Vec<f32> = (0..5000).map(|i| (i % 7) as f32 * 0.1).collect();
        let e = sq_error(&big, |_| 0.0);
        let want: f64 = big.iter().map(|&v| (v as f64).powi(2)).sum();
        assert!((e - want).abs() < 1e-5 * want);
    }
}
