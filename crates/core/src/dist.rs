//! What the Monte Carlo tensors are drawn from (`host rank --dist`).
//!
//! - `gaussian` (default): i.i.d. N(0, 1), exactly [`sampler::fill_normal`];
//! - `laplace`: i.i.d. Laplace with b = 1/sqrt(2);
//! - `student-t:NU`: i.i.d. Student-t with NU > 2 degrees of freedom, scaled by
//!   sqrt((NU - 2) / NU);
//! - `logistic`: i.i.d. logistic with s = sqrt(3) / pi;
//!
//! all of unit variance and zero mean, so the MSE stays comparable with the
//! Gaussian one (the scaling law's input, strictly, is the Gaussian MSE: other
//! distributions show how a format fares off its design point). Tensor `t` of
//! seed `s` depends only on (s, t): Xoshiro256++ seeded by
//! [`sampler::tensor_seed`]`(s, t)`; Laplace and logistic by inverse CDF from
//! open-interval uniforms, Student-t by `rand_distr::StudentT`.
//!
//! - `file:PATH` (`.safetensors` or `.npy`): real weights. The file's usable
//!   tensors (2-D or more, viewed as `[product of leading dims, last dim]`, as
//!   in `host apply`) are each scaled to unit RMS, so the MSE is a normalized
//!   MSE (MSE / mean square); Monte Carlo tensor `t` is file tensor
//!   `t mod count`, keeping its own shape (`--shape` is ignored). The values
//!   are then not i.i.d. draws: the standard error describes the spread between
//!   file tensors, tensors repeat once the file is exhausted (only stochastic
//!   formats then see new randomness), and the measurement always covers at
//!   least one full pass over the file. Every file tensor weighs the same in
//!   the mean, whatever its size; bits per element are the element-weighted
//!   mean over the file's tensor shapes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;
use rand_distr::{Distribution, Open01, StudentT};
use rand_xoshiro::Xoshiro256PlusPlus;
use sdk::{Bits, BitsPart, Shape};

use ndarray::Array2;

use crate::diag::Diagnostics;
use crate::format::HostFormat;
use crate::{sampler, tensorio};

/// Tensors of a file, each scaled to unit RMS.
#[derive(Debug)]
pub struct FileTensors {
    /// The file.
    pub path: PathBuf,
    /// (name, values at unit RMS as `[rows, cols]`), in file order.
    pub tensors: Vec<(String, Array2<f32>)>,
}

/// A distribution of Monte Carlo tensors.
#[derive(Debug, Clone, Default)]
pub enum Dist {
    /// N(0, 1).
    #[default]
    Gaussian,
    /// Laplace, unit variance.
    Laplace,
    /// Student-t with `nu` > 2 degrees of freedom, unit variance.
    StudentT(f64),
    /// Logistic, unit variance.
    Logistic,
    /// A file's tensors at unit RMS.
    File(Arc<FileTensors>),
}

/// Laplace scale b = 1/sqrt(2) (variance 2 b^2 = 1).
const LAPLACE_B: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// Logistic scale s = sqrt(3)/pi (variance s^2 pi^2 / 3 = 1).
const LOGISTIC_S: f64 = 0.551_328_895_421_792_1;

impl Dist {
    /// Parses `gaussian`, `laplace`, `student-t:NU`, `logistic` or `file:PATH`
    /// (reading the file; each unusable tensor is skipped with a failure in `diags`).
    pub fn parse(s: &str, diags: &mut Diagnostics) -> Result<Dist, String> {
        let t = s.trim();
        if let Some(path) = t.strip_prefix("file:") {
            return Dist::from_file(Path::new(path), diags);
        }
        if let Some(nu) = t.strip_prefix("student-t:") {
            let nu: f64 =
                nu.trim().parse().map_err(|_| format!("--dist {t}: `{nu}` is not a number of degrees of freedom"))?;
            if !(nu > 2.0 && nu.is_finite()) {
                return Err(format!(
                    "--dist {t}: Student-t needs more than 2 degrees of freedom (its variance is infinite at NU <= 2)"
                ));
            }
            return Ok(Dist::StudentT(nu));
        }
        match t.to_ascii_lowercase().as_str() {
            "gaussian" | "normal" => Ok(Dist::Gaussian),
            "laplace" => Ok(Dist::Laplace),
            "logistic" => Ok(Dist::Logistic),
            _ => Err(format!(
                "--dist `{t}`: unknown distribution; use gaussian, laplace, student-t:NU, logistic or file:PATH"
            )),
        }
    }

    /// Loads a file's usable tensors, each scaled to unit RMS (each unusable one is skipped with
    /// a failure in `diags`).
    pub fn from_file(path: &Path, diags: &mut Diagnostics) -> Result<Dist, String> {
        let read = tensorio::read(path)?;
        let mut tensors = Vec::new();
        for (_, t) in read.tensors {
            let t = match t {
                Ok(t) => t,
                Err(e) => {
                    diags.failure(format!("{e}; skipped"));
                    continue;
                }
            };
            let m = match t.matrix_view(path) {
                Ok(m) => m,
                Err(e) => {
                    diags.failure(format!("{e}; skipped"));
                    continue;
                }
            };
            let ms = m.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / m.len() as f64;
            if ms <= 0.0 {
                diags.failure(format!("`{}`: tensor `{}` is all zeros; skipped", path.display(), t.name));
                continue;
            }
            let k = (1.0 / ms.sqrt()) as f32;
            tensors.push((t.name.clone(), m.mapv(|v| v * k)));
        }
        if tensors.is_empty() {
            return Err(format!("`{}`: no usable tensor (2-D, finite, floating point) to sample", path.display()));
        }
        Ok(Dist::File(Arc::new(FileTensors { path: path.to_path_buf(), tensors })))
    }

    /// The name shown in output headers.
    pub fn name(&self) -> String {
        match self {
            Dist::Gaussian => "gaussian".into(),
            Dist::Laplace => "laplace".into(),
            Dist::StudentT(nu) => format!("student-t:{nu}"),
            Dist::Logistic => "logistic".into(),
            Dist::File(f) => format!("file:{}", f.path.display()),
        }
    }

    /// Shape of tensor `t` (`default` unless the tensors come from a file).
    pub fn shape(&self, t: u64, default: Shape) -> Shape {
        match self {
            Dist::File(f) => matrix_shape(&f.tensors[(t % f.tensors.len() as u64) as usize].1),
            _ => default,
        }
    }

    /// Elements in tensors `0..n`.
    pub fn samples_in(&self, n: u64, default: Shape) -> u64 {
        match self {
            Dist::File(f) => {
                let count = f.tensors.len() as u64;
                let lens = f.tensors.iter().map(|t| t.1.len() as u64);
                let total: u64 = lens.clone().sum();
                (n / count) * total + lens.take((n % count) as usize).sum::<u64>()
            }
            _ => n * default.len() as u64,
        }
    }

    /// Tensors needed for `samples` elements: rounded up to whole tensors (of
    /// the mean size for a file).
    pub fn tensors_for(&self, samples: u64, default: Shape) -> u64 {
        match self {
            Dist::File(f) => {
                let mean = self.samples_in(f.tensors.len() as u64, default) as f64 / f.tensors.len() as f64;
                (samples as f64 / mean).ceil() as u64
            }
            _ => samples.div_ceil(default.len() as u64),
        }
    }

    /// Fewest tensors a measurement stopped by its precision target covers.
    pub fn min_tensors(&self) -> usize {
        match self {
            Dist::File(f) => f.tensors.len().max(2),
            _ => 2,
        }
    }

    /// Fills `buf` (of `self.shape(t, ..).len()` values) with tensor `t` of `seed`.
    pub fn fill(&self, seed: u64, t: u64, buf: &mut [f32]) {
        let rng = || Xoshiro256PlusPlus::seed_from_u64(sampler::tensor_seed(seed, t));
        match self {
            Dist::Gaussian => sampler::fill_normal(seed, t, buf),
            Dist::Laplace => {
                let mut r = rng();
                for x in buf.iter_mut() {
                    // Inverse CDF of the Laplace from u in (0, 1).
                    let u: f64 = Open01.sample(&mut r);
                    let v = if u < 0.5 { (2.0 * u).ln() } else { -(2.0 * (1.0 - u)).ln() };
                    *x = (LAPLACE_B * v) as f32;
                }
            }
            Dist::Logistic => {
                let mut r = rng();
                for x in buf.iter_mut() {
                    let u: f64 = Open01.sample(&mut r);
                    *x = (LOGISTIC_S * (u / (1.0 - u)).ln()) as f32;
                }
            }
            Dist::StudentT(nu) => {
                let mut r = rng();
                let d = StudentT::new(*nu).expect("nu > 2 checked when parsed");
                let k = ((nu - 2.0) / nu).sqrt();
                for x in buf.iter_mut() {
                    *x = (k * d.sample(&mut r)) as f32;
                }
            }
            Dist::File(f) => {
                let a = &f.tensors[(t % f.tensors.len() as u64) as usize].1;
                for (b, v) in buf.iter_mut().zip(a.iter()) {
                    *b = *v;
                }
            }
        }
    }
}

/// The format's view of a file tensor's shape.
fn matrix_shape(a: &Array2<f32>) -> Shape {
    let (rows, cols) = a.dim();
    Shape::new(rows, cols)
}

/// Bits of `format` averaged over the file's tensors, weighted by elements.
pub fn mean_bits(format: &dyn HostFormat, f: &FileTensors) -> Result<Bits, String> {
    let mut parts: Vec<(String, f64)> = Vec::new();
    let mut total = 0f64;
    for (name, a) in &f.tensors {
        let shape = &matrix_shape(a);
        let info = format.info(*shape).map_err(|e| format!("tensor `{name}` ({shape}): {e}"))?;
        let n = shape.len() as f64;
        total += n;
        for part in &info.bits.parts {
            match parts.iter_mut().find(|(w, _)| *w == part.what) {
                Some(p) => p.1 += part.bits * n,
                None => parts.push((part.what.clone(), part.bits * n)),
            }
        }
    }
    let bits = Bits { parts: parts.into_iter().map(|(what, b)| BitsPart { what, bits: b / total }).collect() };
    let t = bits.total();
    if !(t.is_finite() && t > 0.0) {
        return Err(format!("reports {t} bits per element"));
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(d: &Dist, n: usize) -> Vec<f32> {
        let mut v = vec![0f32; n];
        let per = n / 4;
        for t in 0..4 {
            d.fill(5, t as u64, &mut v[t * per..(t + 1) * per]);
        }
        v
    }

    fn moments(v: &[f32]) -> [f64; 4] {
        let n = v.len() as f64;
        let m = |k: i32| v.iter().map(|&x| (x as f64).powi(k)).sum::<f64>() / n;
        [m(1), m(2), m(4), m(8)]
    }

    /// Mean, variance and fourth moment against the exact values, within 5
    /// standard errors of the estimates, computed from the exact moments:
    /// se(mean) = 1/sqrt(n), se(var) = sqrt((m4 - 1)/n), se(m4) =
    /// sqrt((m8 - m4^2)/n). Exact moments at unit variance: Laplace m4 = 6,
    /// m8 = 8!/16 = 2520; logistic m4 = 4.2, m8 = 685.8 (below); Student-t(10) m4 = 3 + 6/(10-4) = 4, m8 = 105 (nu-2)^3 /
    /// ((nu-4)(nu-6)(nu-8)) = 1120 (its m4 estimator is heavy-tailed, hence
    /// 6 standard errors there).
    #[test]
    fn unit_variance_and_the_exact_kurtosis() {
        let n = 1usize << 22;
        // Logistic (s = 1) moments: E X^4 = 7 pi^4 / 15, E X^8 = 127 pi^8 / 15;
        // at unit variance (s^2 = 3 / pi^2): m4 = 7*9/15 = 4.2, m8 = 127 * 81 / 15 = 685.8.
        let cases = [
            (Dist::Laplace, 6.0, 2520.0, 5.0),
            (Dist::Logistic, 4.2, 685.8, 5.0),
            (Dist::StudentT(10.0), 4.0, 1120.0, 6.0),
            (Dist::Gaussian, 3.0, 105.0, 5.0),
        ];
        for (d, m4, m8, k) in cases {
            let [e1, e2, e4, _] = moments(&sample(&d, n));
            let nf = n as f64;
            let (s1, s2, s4) = (1.0 / nf.sqrt(), ((m4 - 1.0) / nf).sqrt(), ((m8 - m4 * m4) / nf).sqrt());
            println!("{}: mean {e1:.2e} var {e2:.5} m4 {e4:.4} (exact {m4})", d.name());
            assert!(e1.abs() < 5.0 * s1, "{}: mean {e1}", d.name());
            assert!((e2 - 1.0).abs() < 5.0 * s2, "{}: variance {e2}", d.name());
            assert!((e4 - m4).abs() < k * s4, "{}: fourth moment {e4} vs {m4}", d.name());
        }
    }

    #[test]
    fn deterministic_per_seed_and_tensor() {
        for d in [Dist::Laplace, Dist::Logistic, Dist::StudentT(5.0)] {
            let mut a = vec![0f32; 100];
            let mut b = vec![0f32; 100];
            d.fill(3, 9, &mut a);
            d.fill(3, 9, &mut b);
            assert_eq!(a, b);
            d.fill(3, 10, &mut b);
            assert_ne!(a, b);
        }
        let mut a = vec![0f32; 100];
        let mut b = vec![0f32; 100];
        Dist::Gaussian.fill(3, 9, &mut a);
        sampler::fill_normal(3, 9, &mut b);
        assert_eq!(a, b, "gaussian is the engine's historical sampler");
    }

    #[test]
    fn parsing_and_clear_errors() {
        assert!(matches!(Dist::parse("gaussian", &mut Diagnostics::default()), Ok(Dist::Gaussian)));
        assert!(matches!(Dist::parse("laplace", &mut Diagnostics::default()), Ok(Dist::Laplace)));
        assert!(matches!(Dist::parse("logistic", &mut Diagnostics::default()), Ok(Dist::Logistic)));
        assert!(matches!(Dist::parse("student-t:3.5", &mut Diagnostics::default()), Ok(Dist::StudentT(v)) if v == 3.5));
        assert!(
            Dist::parse("student-t:2", &mut Diagnostics::default())
                .unwrap_err()
                .contains("more than 2 degrees of freedom")
        );
        assert!(Dist::parse("student-t:x", &mut Diagnostics::default()).unwrap_err().contains("not a number"));
        assert!(Dist::parse("cauchy", &mut Diagnostics::default()).unwrap_err().contains("unknown distribution"));
        assert!(
            Dist::parse("file:/nonexistent/w.safetensors", &mut Diagnostics::default())
                .unwrap_err()
                .contains("w.safetensors")
        );
    }

    #[test]
    fn file_tensors_are_unit_rms_cycled_with_their_shapes() {
        let dir = tempfile::Builder::new().prefix("host-dist-").tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        let t = |name: &str, shape: Vec<usize>, scale: f32| {
            let n: usize = shape.iter().product();
            tensorio::Tensor { name: name.into(), shape, data: (0..n).map(|i| scale * (i as f32 - 3.5)).collect() }
        };
        let bias = t("bias", vec![8], 1.0);
        tensorio::write(&p, &[t("a", vec![4, 8], 5.0), t("b", vec![2, 2, 16], 0.1), bias]).unwrap();
        let Dist::File(f) = Dist::parse(&format!("file:{}", p.display()), &mut Diagnostics::default()).unwrap() else {
            panic!()
        };
        assert_eq!(f.tensors.len(), 2, "the 1-D tensor is skipped");
        let d = Dist::File(f.clone());
        assert_eq!(d.shape(0, Shape::new(1, 1)), Shape::new(4, 8));
        assert_eq!(d.shape(3, Shape::new(1, 1)), Shape::new(4, 16));
        assert_eq!(d.min_tensors(), 2);
        assert_eq!(d.samples_in(3, Shape::new(1, 1)), 32 + 64 + 32);
        assert_eq!(d.tensors_for(97, Shape::new(1, 1)), 3);
        for (i, (_, a)) in f.tensors.iter().enumerate() {
            let mut buf = vec![0f32; a.len()];
            d.fill(0, i as u64 + 2, &mut buf);
            let ms = buf.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / buf.len() as f64;
            assert!((ms - 1.0).abs() < 1e-6, "{ms}");
        }
    }
}
