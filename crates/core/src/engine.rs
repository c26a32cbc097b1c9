//! The Monte Carlo GMSE engine: sample each seeded N(0, 1) tensor once, run
//! every selected format on it (common random numbers), accumulate per-tensor
//! MSE in f64, stop each format at a target relative standard error.
//!
//! Tensors come from [`Config::dist`] (default N(0, 1); see [`crate::dist`]).
//!
//! Invariants:
//! - tensor `t` depends only on (seed, t); a format's GMSE is the same alone or
//!   beside others, and with any thread count (work is done in fixed rounds of
//!   [`ROUND`] tensors, each tensor's sum by one thread, results folded in
//!   tensor order);
//! - memory is constant in the sample count: one input and one output buffer
//!   per worker, plus one f64 per tensor per format.

use rayon::prelude::*;
use sdk::Shape;

use crate::dist::Dist;
use crate::sampler;

/// Tensors per round; results depend on it, never on the thread count.
pub const ROUND: usize = 8;

/// Version of the host's measurement results: the sampler, the distributions, the engine's
/// accumulation and stopping rule, compositions and the format wrapper used in training. Bump it
/// in any change that alters a GMSE (or a training run through the host's wrapper) for the same
/// configuration and seed; sweep job hashes include it, so older results are reported as stale.
/// `golden_gmse_pins_results_version` fails when a GMSE changes without a bump.
pub const RESULTS_VERSION: u32 = 1;

/// Something the engine can measure: compresses and hands the output to `f`.
pub trait Subject: Sync {
    /// Compresses `x` (of `shape`) with `seed` and calls `f` on the output.
    fn with_output(&self, x: &[f32], shape: Shape, seed: u64, f: &mut dyn FnMut(&[f32])) -> Result<(), String>;
}

impl<T: crate::format::HostFormat + ?Sized> Subject for T {
    fn with_output(&self, x: &[f32], shape: Shape, seed: u64, f: &mut dyn FnMut(&[f32])) -> Result<(), String> {
        self.run(x, shape, seed, false, &mut |y, _| f(y))
    }
}

/// How much to sample.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tensor shape (of sampled tensors; file tensors keep their own).
    pub shape: Shape,
    /// What the tensors are drawn from (default N(0, 1)).
    pub dist: Dist,
    /// Run seed.
    pub seed: u64,
    /// Stop a format once its standard error / GMSE is below this.
    pub target_rse: f64,
    /// Never sample more than this per format.
    pub max_samples: u64,
    /// Sample exactly this many per format (rounded up to whole tensors).
    pub fixed_samples: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shape: Shape::new(256, 4096),
            dist: Dist::Gaussian,
            seed: 0,
            target_rse: 1e-3,
            max_samples: 1 << 30,
            fixed_samples: None,
        }
    }
}

/// The GMSE of one format.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Mean over tensors of the per-element squared error.
    pub gmse: f64,
    /// Standard error of `gmse` from the spread of the per-tensor values.
    pub stderr: f64,
    /// MSE of each tensor, in tensor order.
    pub per_tensor: Vec<f64>,
    /// Elements compressed.
    pub samples: u64,
    /// Whether the target relative standard error was reached.
    pub reached_target: bool,
}

impl Measurement {
    fn from_values(per_tensor: Vec<f64>, samples: u64, target: f64) -> Measurement {
        let n = per_tensor.len() as f64;
        // Welford, in tensor order.
        let (mut mean, mut m2) = (0.0f64, 0.0f64);
        for (i, &v) in per_tensor.iter().enumerate() {
            let d = v - mean;
            mean += d / (i + 1) as f64;
            m2 += d * (v - mean);
        }
        let stderr = if n > 1.0 { (m2 / (n - 1.0)).sqrt() / n.sqrt() } else { f64::INFINITY };
        let rse = if mean > 0.0 { stderr / mean } else { 0.0 };
        Measurement { gmse: mean, stderr, samples, per_tensor, reached_target: rse <= target }
    }

    /// Relative standard error.
    pub fn rse(&self) -> f64 {
        if self.gmse > 0.0 { self.stderr / self.gmse } else { 0.0 }
    }
}

/// Sum of squared differences in f64: blocks of 256 are summed in f32 lanes
/// (relative error ~1e-6 per block), blocks are added in f64.
///
/// Per block: lane `j` adds `(y - x)^2` of elements `8 m + j` in order, the
/// block's tail goes to lane 0, then the lanes are added in `f64` in lane
/// order. Where the CPU has AVX2, four blocks are summed side by side
/// (independent chains, so the additions' latency is not paid per element);
/// the operations per block are the same, so the result is bit for bit the
/// one-block-at-a-time sum (`squared_error_matches_plain_sum`).
pub fn squared_error(x: &[f32], y: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { squared_error_avx2(x, y) };
    }
    squared_error_blocks(x, y)
}

/// [`squared_error`] in AVX2 intrinsics: four blocks side by side, each
/// with its 8 lanes in one register (`lane += (y - x) * (y - x)`, as the
/// plain sum does), the lanes stored and added in `f64` in lane order; the
/// blocks after the last group of four by [`block_sum`].
///
/// The groups are visited from the end of the tensor back to its start: a
/// format writes its output front to back, so its last megabytes (and the
/// input's) are still in cache when the sum begins. Block sums are kept and
/// added in block order afterwards, so the result does not depend on the
/// visiting order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn squared_error_avx2(x: &[f32], y: &[f32]) -> f64 {
    use std::arch::x86_64::*;
    thread_local! {
        static SUMS: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let groups = n / (4 * SQ_BLOCK);
    let (xq, yq) = (&x[..groups * 4 * SQ_BLOCK], &y[..groups * 4 * SQ_BLOCK]);
    SUMS.with(|sums| {
        let mut sums = sums.borrow_mut();
        sums.clear();
        sums.resize(4 * groups, 0.0);
        for g in (0..groups).rev() {
            let (xb, yb) = (&xq[g * 4 * SQ_BLOCK..], &yq[g * 4 * SQ_BLOCK..]);
            let mut acc = [_mm256_setzero_ps(); 4];
            for m in 0..SQ_BLOCK / 8 {
                for (b, a) in acc.iter_mut().enumerate() {
                    let o = b * SQ_BLOCK + 8 * m;
                    // SAFETY: `o + 8 <= 4 * SQ_BLOCK`, within both slices.
                    let d = unsafe {
                        _mm256_sub_ps(_mm256_loadu_ps(yb.as_ptr().add(o)), _mm256_loadu_ps(xb.as_ptr().add(o)))
                    };
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(d, d));
                }
            }
            for (b, a) in acc.into_iter().enumerate() {
                let mut lanes = [0f32; 8];
                // SAFETY: `lanes` holds 8 values.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
                sums[4 * g + b] = lanes.iter().map(|&v| v as f64).sum::<f64>();
            }
        }
        let mut total = sums.iter().fold(0f64, |t, &b| t + b);
        let (xr, yr) = (&x[groups * 4 * SQ_BLOCK..], &y[groups * 4 * SQ_BLOCK..]);
        for (xb, yb) in xr.chunks(SQ_BLOCK).zip(yr.chunks(SQ_BLOCK)) {
            total += block_sum(xb, yb);
        }
        total
    })
}

/// Elements per block of [`squared_error`].
const SQ_BLOCK: usize = 256;

/// [`squared_error`] one block at a time (the baseline build).
fn squared_error_blocks(x: &[f32], y: &[f32]) -> f64 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    x.chunks(SQ_BLOCK).zip(y.chunks(SQ_BLOCK)).map(|(xb, yb)| block_sum(xb, yb)).fold(0f64, |t, b| t + b)
}

/// One block's sum: 8 `f32` lanes, the tail into lane 0, lanes added in `f64`.
#[inline(always)]
fn block_sum(xb: &[f32], yb: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let mut xc = xb.chunks_exact(8);
    let mut yc = yb.chunks_exact(8);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for j in 0..8 {
            let d = b[j] - a[j];
            lanes[j] += d * d;
        }
    }
    for (a, b) in xc.remainder().iter().zip(yc.remainder()) {
        lanes[0] += (b - a) * (b - a);
    }
    lanes.iter().map(|&v| v as f64).sum::<f64>()
}

/// Outcome for one subject: a measurement, or the error that stopped it.
pub type Outcome = Result<Measurement, String>;

/// Measures every subject on shared tensors. `progress(done, total, samples)`
/// is called after each round.
pub fn measure(subjects: &[&dyn Subject], cfg: &Config, progress: &mut dyn FnMut(usize, usize, u64)) -> Vec<Outcome> {
    let k = subjects.len();
    // Elements of tensor t (file tensors have shapes of their own).
    let samples_in = |n: usize| cfg.dist.samples_in(n as u64, cfg.shape);
    let per_tensor_cap = |samples: u64| cfg.dist.tensors_for(samples, cfg.shape).max(2) as usize;
    let fixed = cfg.fixed_samples.map(per_tensor_cap);
    let cap = per_tensor_cap(cfg.max_samples);
    let min = cfg.dist.min_tensors().min(cap);
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); k];
    let mut failed: Vec<Option<String>> = vec![None; k];
    let mut done = vec![false; k];
    let mut next_tensor = 0usize;
    while done.iter().any(|d| !d) {
        let active: Vec<usize> = (0..k).filter(|&i| !done[i]).collect();
        let round: Vec<usize> = (next_tensor..next_tensor + ROUND).collect();
        next_tensor += ROUND;
        // results[tensor][active subject]
        let results: Vec<Vec<Result<f64, String>>> = round
            .par_iter()
            .map(|&t| {
                thread_local! {
                    static INPUT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                INPUT.with(|buf| {
                    let mut x = buf.borrow_mut();
                    let shape = cfg.dist.shape(t as u64, cfg.shape);
                    let len = shape.len();
                    x.resize(len, 0.0);
                    cfg.dist.fill(cfg.seed, t as u64, &mut x);
                    let seed = sampler::tensor_seed(cfg.seed ^ 0x5EED, t as u64);
                    active
                        .iter()
                        .map(|&i| {
                            let mut sum = f64::NAN;
                            subjects[i].with_output(&x, shape, seed, &mut |y| sum = squared_error(&x, y))?;
                            if !sum.is_finite() {
                                return Err(format!(
                                    "produced non-finite values (NaN or infinity) on {} input",
                                    if matches!(cfg.dist, Dist::Gaussian) {
                                        "Gaussian".into()
                                    } else {
                                        cfg.dist.name()
                                    }
                                ));
                            }
                            Ok(sum / len as f64)
                        })
                        .collect()
                })
            })
            .collect();
        for row in &results {
            for (j, &i) in active.iter().enumerate() {
                if done[i] {
                    continue;
                }
                match &row[j] {
                    Ok(v) => values[i].push(*v),
                    Err(e) => {
                        failed[i] = Some(e.clone());
                        done[i] = true;
                    }
                }
            }
        }
        for &i in &active {
            if done[i] {
                continue;
            }
            let n = values[i].len();
            done[i] = match fixed {
                Some(f) => n >= f,
                None => {
                    n >= cap
                        || (n >= min && Measurement::from_values(values[i].clone(), 0, cfg.target_rse).reached_target)
                }
            };
        }
        let finished = done.iter().filter(|d| **d).count();
        let samples: u64 = values.iter().map(|v| samples_in(v.len())).sum();
        progress(finished, k, samples);
    }
    values
        .into_iter()
        .zip(failed)
        .map(|(mut v, f)| match f {
            Some(e) => Err(e),
            None => {
                if let Some(f) = fixed {
                    v.truncate(f);
                }
                let samples = samples_in(v.len());
                Ok(Measurement::from_values(v, samples, cfg.target_rse))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum as it was first written: one block of 256 at a time.
    fn plain_squared_error(x: &[f32], y: &[f32]) -> f64 {
        let mut total = 0f64;
        for (xb, yb) in x.chunks(256).zip(y.chunks(256)) {
            let mut lanes = [0f32; 8];
            let mut xc = xb.chunks_exact(8);
            let mut yc = yb.chunks_exact(8);
            for (a, b) in (&mut xc).zip(&mut yc) {
                for j in 0..8 {
                    let d = b[j] - a[j];
                    lanes[j] += d * d;
                }
            }
            for (a, b) in xc.remainder().iter().zip(yc.remainder()) {
                lanes[0] += (b - a) * (b - a);
            }
            total += lanes.iter().map(|&v| v as f64).sum::<f64>();
        }
        total
    }

    /// Bit for bit the one-block-at-a-time sum, for lengths around every
    /// boundary (8, a block, four blocks) and on both builds.
    #[test]
    fn squared_error_matches_plain_sum() {
        let mut x = vec![0f32; 5000];
        let mut y = vec![0f32; 5000];
        sampler::fill_normal(1, 0, &mut x);
        sampler::fill_normal(1, 1, &mut y);
        y.iter_mut().step_by(3).for_each(|v| *v *= 1e3);
        for n in [0, 1, 7, 8, 9, 255, 256, 257, 1023, 1024, 1025, 2047, 3072, 4096, 4099, 5000] {
            let want = plain_squared_error(&x[..n], &y[..n]).to_bits();
            assert_eq!(squared_error(&x[..n], &y[..n]).to_bits(), want, "n = {n}");
            assert_eq!(squared_error_blocks(&x[..n], &y[..n]).to_bits(), want, "n = {n} (baseline build)");
        }
    }

    /// Rounds every value to a multiple of `step` (uniform error, MSE step^2/12).
    struct Rounder(f32);
    impl Subject for Rounder {
        fn with_output(&self, x: &[f32], _: Shape, _: u64, f: &mut dyn FnMut(&[f32])) -> Result<(), String> {
            let y: Vec<f32> = x.iter().map(|v| (v / self.0).round() * self.0).collect();
            f(&y);
            Ok(())
        }
    }
    struct Broken;
    impl Subject for Broken {
        fn with_output(&self, x: &[f32], _: Shape, _: u64, f: &mut dyn FnMut(&[f32])) -> Result<(), String> {
            f(&vec![f32::NAN; x.len()]);
            Ok(())
        }
    }

    fn cfg() -> Config {
        Config { shape: Shape::new(16, 1024), seed: 1, target_rse: 2e-3, ..Config::default() }
    }

    /// Golden values of the sampler + engine at RESULTS_VERSION. Sweep results are reused by
    /// job hash, so a change that moves these numbers must bump [`RESULTS_VERSION`] (and then
    /// update this table): otherwise old results would be silently mixed with new ones.
    #[test]
    fn golden_gmse_pins_results_version() {
        // Near step^2/12 = 0.046875 (the check of the number itself is the test above).
        const GOLDEN: (u32, f64) = (1, 4.6991603121568915e-2);
        let c = Config { fixed_samples: Some(2 * ROUND as u64 * 16 * 1024), ..cfg() };
        let m = measure(&[&Rounder(0.75)], &c, &mut |_, _, _| {}).pop().unwrap().unwrap();
        assert_eq!(
            (RESULTS_VERSION, m.gmse),
            GOLDEN,
            "GMSE results changed: bump engine::RESULTS_VERSION and update GOLDEN (got {:e})",
            m.gmse
        );
    }

    #[test]
    fn uniform_rounding_gives_step_squared_over_12() {
        // A fine grid (step 0.1 << sigma) has MSE step^2/12 = 8.333e-4 up to
        // O(step^4) terms; allow 3 standard errors of the estimate.
        let out = measure(&[&Rounder(0.1)], &cfg(), &mut |_, _, _| {});
        let m = out[0].as_ref().unwrap();
        let expected = 0.01 / 12.0;
        assert!(m.reached_target);
        assert!((m.gmse - expected).abs() < 3.0 * m.stderr + 1e-6, "{} vs {expected} (se {})", m.gmse, m.stderr);
    }

    #[test]
    fn same_numbers_alone_or_together_and_with_any_threads() {
        let alone = measure(&[&Rounder(0.5)], &cfg(), &mut |_, _, _| {});
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let together = pool.install(|| measure(&[&Rounder(0.1), &Broken, &Rounder(0.5)], &cfg(), &mut |_, _, _| {}));
        assert_eq!(alone[0], together[2]);
        assert!(together[1].as_ref().unwrap_err().contains("non-finite"));
    }

    #[test]
    fn fixed_sample_count() {
        let c = Config { fixed_samples: Some(3 * 16 * 1024), ..cfg() };
        let out = measure(&[&Rounder(0.5)], &c, &mut |_, _, _| {});
        assert_eq!(out[0].as_ref().unwrap().per_tensor.len(), 3);
    }

    /// File tensors keep their shapes; a precision-stopped run covers the file.
    #[test]
    fn file_tensors_with_their_own_shapes() {
        struct ShapeCheck;
        impl Subject for ShapeCheck {
            fn with_output(&self, x: &[f32], s: Shape, _: u64, f: &mut dyn FnMut(&[f32])) -> Result<(), String> {
                assert_eq!(x.len(), s.len());
                f(&vec![0.0; x.len()]); // error = the tensor itself: MSE 1 at unit RMS
                Ok(())
            }
        }
        let shapes = [Shape::new(2, 8), Shape::new(3, 4), Shape::new(1, 4)];
        let signs = |n: usize| (0..n).map(|j| if j % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let tensors = shapes
            .iter()
            .map(|&s| (format!("{s}"), ndarray::Array2::from_shape_vec((s.rows, s.cols), signs(s.len())).unwrap()))
            .collect();
        let file = crate::dist::FileTensors { path: "w.npy".into(), tensors };
        let c = Config { dist: Dist::File(std::sync::Arc::new(file)), target_rse: 1.0, ..cfg() };
        let m = measure(&[&ShapeCheck], &c, &mut |_, _, _| {}).remove(0).unwrap();
        assert_eq!(m.per_tensor, vec![1.0; ROUND]);
        // Two full passes (16 + 12 + 4 elements each) and two more tensors.
        assert_eq!(m.samples, 2 * 32 + 16 + 12);
    }

    #[test]
    fn squared_error_matches_naive_sum() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let y: Vec<f32> = x.iter().map(|v| v * 0.9 + 0.01).collect();
        let naive: f64 = x.iter().zip(&y).map(|(a, b)| ((b - a) as f64).powi(2)).sum();
        let fast = squared_error(&x, &y);
        println!("squared_error: max relative difference {:e}", (fast - naive).abs() / naive);
        assert!((fast - naive).abs() / naive < 1e-6);
    }
}
