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
    /// The same nearest-level search as a table for eight lanes at a time.
    wide: Wide,
    group: usize,
    scale_bits: u32,
}

/// The nearest level of `v`, level `i` where `i` = the number of midpoints
/// below `v` (strictly: a value on a midpoint goes to the lower level; NaN
/// to level 0), exactly as [`Levels::index`] counts them, by a bucket table
/// laid out for AVX2 gathers: `b = min(max((v - lo) * inv_width, 0), top)`
/// truncated (NaN gives 0), then `base[b]` (the midpoints of earlier
/// buckets; `b` is monotone in `v`, so they are all below `v` and the
/// midpoints of later buckets all above) plus, for `j < per_bucket`,
/// `v > mid[base[b] + j]` (the bucket's own midpoints; `+inf` padding): the
/// scalar search ([`Wide::index`]); the AVX2 one reads the same answer from
/// the tables `thr` and `pair`.
#[derive(Debug, Clone)]
struct Wide {
    levels: Vec<f32>,
    /// Midpoints, then `per_bucket` copies of `+inf`.
    mid: Vec<f32>,
    base: Vec<i32>,
    lo: f32,
    inv_width: f32,
    top: f32,
    per_bucket: usize,
    /// With one midpoint per bucket at most (every Lloyd-Max grid of 1 to 8 bits): the
    /// bucket's own midpoint, `thr[b] = mid[base[b]]` (`+inf` if none), and the levels on
    /// either side of it, `pair[2 b] = levels[base[b]]`, `pair[2 b + 1] = levels[base[b] +
    /// 1]`; the level is `pair[2 b + (v > thr[b])]`, two gathers per eight values instead
    /// of three (gathers are what this loop's speed is made of).
    thr: Vec<f32>,
    pair: Vec<f32>,
}

impl Wide {
    fn new(levels: &Levels) -> Wide {
        let levels = levels.levels().to_vec();
        let mid: Vec<f32> = levels.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        let (lo, hi) = (mid.first().copied().unwrap_or(0.0), mid.last().copied().unwrap_or(0.0));
        let k = (8 * mid.len()).clamp(16, 1 << 16);
        let inv_width = if hi > lo { k as f32 / (hi - lo) } else { 0.0 };
        let mut w = Wide {
            levels,
            mid: Vec::new(),
            base: Vec::new(),
            lo,
            inv_width,
            top: (k - 1) as f32,
            per_bucket: 0,
            thr: Vec::new(),
            pair: Vec::new(),
        };
        let mut count = vec![0i32; k];
        for &t in &mid {
            count[w.bucket(t)] += 1;
        }
        w.per_bucket = count.iter().copied().max().unwrap_or(0) as usize;
        w.base = count
            .iter()
            .scan(0i32, |acc, &c| {
                let b = *acc;
                *acc += c;
                Some(b)
            })
            .collect();
        w.mid = mid;
        w.mid.extend(std::iter::repeat_n(f32::INFINITY, w.per_bucket.max(1)));
        if w.per_bucket == 1 {
            let top = w.levels.len() - 1;
            for &b in &w.base {
                let b = b as usize;
                w.thr.push(w.mid[b]);
                w.pair.push(w.levels[b]);
                w.pair.push(w.levels[(b + 1).min(top)]);
            }
        }
        w
    }

    /// The bucket of `v`, with the vector code's operations.
    #[inline(always)]
    fn bucket(&self, v: f32) -> usize {
        let t = (v - self.lo) * self.inv_width;
        let t = if t > 0.0 { t } else { 0.0 }; // `_mm256_max_ps(t, 0)`: NaN gives 0
        let t = if t < self.top { t } else { self.top }; // `_mm256_min_ps(t, top)`
        t as usize
    }

    /// Level index of `v` (the scalar form of [`Wide::quantize_avx2`]).
    #[inline(always)]
    fn index(&self, v: f32) -> usize {
        let b = self.base[self.bucket(v)] as usize;
        b + (0..self.per_bucket).map(|j| (v > self.mid[b + j]) as usize).sum::<usize>()
    }

    /// `output = levels[index(x * inv)] * s`, eight values at a time, through the two-gather
    /// tables `thr` and `pair` (built when every bucket holds at most one midpoint).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn quantize_avx2(&self, input: &[f32], output: &mut [f32], s: f32, inv: f32) {
        use std::arch::x86_64::*;
        assert_eq!(input.len(), output.len());
        assert_eq!(self.per_bucket, 1, "the AVX2 search needs at most one midpoint per bucket");
        let (vinv, vs, vlo, vw, vtop, zero) = (
            _mm256_set1_ps(inv),
            _mm256_set1_ps(s),
            _mm256_set1_ps(self.lo),
            _mm256_set1_ps(self.inv_width),
            _mm256_set1_ps(self.top),
            _mm256_setzero_ps(),
        );
        let mut xs = input.chunks_exact(8);
        let mut ys = output.chunks_exact_mut(8);
        for (x, y) in (&mut xs).zip(&mut ys) {
            // SAFETY: 8 values in and out; every bucket index b is in 0..=top, below
            // the length of `thr`, and 2 b + 1 below that of `pair`.
            unsafe {
                let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr()), vinv);
                let t = _mm256_mul_ps(_mm256_sub_ps(v, vlo), vw);
                let b = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(t, zero), vtop));
                let m = _mm256_i32gather_ps::<4>(self.thr.as_ptr(), b);
                let gt = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(v, m));
                let at = _mm256_sub_epi32(_mm256_add_epi32(b, b), gt);
                let l = _mm256_i32gather_ps::<4>(self.pair.as_ptr(), at);
                _mm256_storeu_ps(y.as_mut_ptr(), _mm256_mul_ps(l, vs));
            }
        }
        for (x, y) in xs.remainder().iter().zip(ys.into_remainder()) {
            *y = self.levels[self.index(x * inv)] * s;
        }
    }
}

/// `(scale, 1 / scale)` for a usable scale, `(0, 0)` otherwise (as
/// [`Levels::quantizer`] takes its scale).
fn scale_pair(scale: f32) -> (f32, f32) {
    if scale > 0.0 && scale.is_finite() && (1.0 / scale).is_finite() { (scale, 1.0 / scale) } else { (0.0, 0.0) }
}

#[cfg(all(test, target_arch = "x86_64"))]
thread_local! {
    /// Tests set this to run the baseline search on this thread.
    static FORCE_BASELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread may use the AVX2 search.
#[cfg(target_arch = "x86_64")]
fn use_avx2() -> bool {
    #[cfg(test)]
    if FORCE_BASELINE.get() {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx2")
}

impl Format for LloydMax {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        // The AVX2 search needs the two-gather tables (at most one midpoint per bucket).
        #[cfg(target_arch = "x86_64")]
        let avx2 = self.wide.per_bucket == 1 && use_avx2();
        for g in rows::tensor_groups(t, self.group) {
            let s = scale::rms(g.input);
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                let (s, inv) = scale_pair(s);
                // SAFETY: the CPU has AVX2 (`use_avx2`).
                unsafe { self.wide.quantize_avx2(g.input, g.output, s, inv) };
            } else {
                map(g.input, g.output, self.levels.quantizer(s));
            }
            #[cfg(not(target_arch = "x86_64"))]
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
        let wide = Wide::new(&levels);
        Ok(Box::new(LloydMax { bits: p.bits, levels, wide, group: p.group, scale_bits: p.scale_bits }))
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

    /// The AVX2 search picks [`Levels::index`]'s level for every value tried:
    /// each midpoint and its two f32 neighbours, zeros, infinities, NaN, and
    /// 2^20 Gaussian values at several scales; and `compress` gives the
    /// baseline build's output bit for bit (rows of zeros, huge and tiny
    /// scales, a short tail).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_search_matches_levels() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let bits_of = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
        for bits in 1..=8 {
            let f = build::<LloydMaxKind>(&format!("bits = {bits}")).unwrap();
            let levels = Levels::from_f64(gauss::lloyd_max(bits));
            let wide = Wide::new(&levels);
            // Every grid has at most one midpoint per bucket: the two-gather loop is what runs.
            assert_eq!((wide.per_bucket, wide.thr.len(), wide.pair.len()), (1, wide.base.len(), 2 * wide.base.len()));
            let mut x: Vec<f32> = vec![0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e30, -1e30];
            for w in levels.levels().windows(2) {
                let m = 0.5 * (w[0] + w[1]);
                x.extend([m, m.next_up(), m.next_down()]);
            }
            for k in [0.25f32, 1.0, 3.0] {
                x.extend(gaussian(1 << 18, 40 + bits as u64).iter().map(|v| v * k));
            }
            let mut y = vec![0f32; x.len()];
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { wide.quantize_avx2(&x, &mut y, 1.0, 1.0) };
            for (v, q) in x.iter().zip(&y) {
                assert_eq!(q.to_bits(), levels.nearest(*v).to_bits(), "{bits} bits: {v}");
            }
            let shape = Shape::new(5, 1029);
            let mut t = gaussian(shape.len(), 7);
            t[..shape.cols].iter_mut().for_each(|v| *v *= 1e30);
            t[shape.cols..2 * shape.cols].iter_mut().for_each(|v| *v *= 1e-30);
            t[2 * shape.cols..3 * shape.cols].fill(0.0);
            let (fast, _) = run(&*f, &t, shape, 0, false).unwrap();
            FORCE_BASELINE.set(true);
            let (base, _) = run(&*f, &t, shape, 0, false).unwrap();
            FORCE_BASELINE.set(false);
            assert_eq!(bits_of(&fast), bits_of(&base), "{bits} bits: compress");
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
