//! Minimizing the Huber objective: L-BFGS from a grid of starts, and the
//! bootstrap over runs.
//!
//! Objective: `sum_i w_i Huber_delta(ln pred_i - ln obs_i)`, `w_i` = the
//! run's multiplicity (1, or its count in a bootstrap resample). Free
//! parameters are optimized as `theta = ln p`; a bounded parameter as
//! `ln p = ln lo + (ln hi - ln lo) sigmoid(theta)`.

use std::collections::BTreeMap;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rayon::prelude::*;

use super::data::Run;
use super::model::{Layout, Pre};

/// Starts whose objective is within this relative tolerance of the best one
/// count as having reached the best basin.
pub const BASIN_RTOL: f64 = 1e-3;

/// What to fit and how.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The law's parameters.
    pub layout: Layout,
    /// Fixed parameters by index.
    pub fixed: BTreeMap<usize, f64>,
    /// Bounds (lo, hi), both positive, by index.
    pub bounds: BTreeMap<usize, (f64, f64)>,
    /// Huber threshold.
    pub delta: f64,
}

/// The optimization problem over the free parameters.
#[derive(Debug, Clone)]
pub struct Problem {
    layout: Layout,
    pre: Vec<Pre>,
    weight: Vec<f64>,
    delta: f64,
    base: Vec<f64>,
    free: Vec<usize>,
    /// ln-bounds of each free parameter (None = unbounded).
    bounds: Vec<Option<(f64, f64)>>,
    scale: f64,
}

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

impl Problem {
    /// Parameter values from theta.
    pub fn params(&self, theta: &[f64]) -> Vec<f64> {
        let mut p = self.base.clone();
        for (j, &i) in self.free.iter().enumerate() {
            p[i] = match self.bounds[j] {
                None => theta[j].exp(),
                Some((lo, hi)) => (lo + (hi - lo) * sigmoid(theta[j])).exp(),
            };
        }
        p
    }

    /// theta of parameter values (clamped into bounds).
    fn theta(&self, p: &[f64]) -> Vec<f64> {
        self.free
            .iter()
            .zip(&self.bounds)
            .map(|(&i, b)| match b {
                None => p[i].ln(),
                Some((lo, hi)) => {
                    let u = ((p[i].ln() - lo) / (hi - lo)).clamp(1e-6, 1.0 - 1e-6);
                    (u / (1.0 - u)).ln()
                }
            })
            .collect()
    }

    /// Huber objective and its gradient with respect to theta.
    pub fn objective(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let p = self.params(theta);
        let mut g = vec![0.0; self.layout.len()];
        let mut total = 0.0;
        let mut grad = vec![0.0; self.free.len()];
        for (r, &w) in self.pre.iter().zip(&self.weight) {
            if w == 0.0 {
                continue;
            }
            let pred = self.layout.predict(&p, r, Some(&mut g));
            let res = pred.ln() - r.ln_obs;
            let (h, dh) = if res.abs() <= self.delta {
                (0.5 * res * res, res)
            } else {
                (self.delta * (res.abs() - 0.5 * self.delta), self.delta * res.signum())
            };
            total += w * h;
            for (j, &i) in self.free.iter().enumerate() {
                grad[j] += w * dh * g[i] / pred;
            }
        }
        for (j, b) in self.bounds.iter().enumerate() {
            if let Some((lo, hi)) = b {
                let s = sigmoid(theta[j]);
                grad[j] *= (hi - lo) * s * (1.0 - s);
            }
        }
        (total, grad)
    }
}

impl CostFunction for Problem {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, theta: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let c = self.objective(theta).0 / self.scale;
        Ok(if c.is_finite() { c } else { f64::INFINITY })
    }
}

impl Gradient for Problem {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, theta: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.objective(theta).1.into_iter().map(|g| g / self.scale).collect())
    }
}

fn lbfgs(problem: &Problem, init: Vec<f64>) -> Option<(Vec<f64>, f64)> {
    if init.is_empty() {
        let c = problem.objective(&init).0;
        return c.is_finite().then_some((init, c));
    }
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-10)
        .ok()?
        .with_tolerance_cost(1e-14)
        .ok()?;
    let res = Executor::new(problem.clone(), solver).configure(|s| s.param(init).max_iters(1000)).run().ok()?;
    let best = res.state().get_best_param()?.clone();
    let c = problem.objective(&best).0;
    c.is_finite().then_some((best, c))
}

/// Result of one multi-start fit.
#[derive(Debug, Clone)]
pub struct Fit {
    /// Every parameter's value (fixed ones included), in layout order.
    pub params: Vec<f64>,
    /// Huber objective at the optimum.
    pub objective: f64,
    /// Starts tried.
    pub starts: usize,
    /// Starts that reached the best objective within [`BASIN_RTOL`].
    pub in_best_basin: usize,
    /// Largest relative spread of a free parameter among the starts in the best basin
    /// (name, spread): the same objective reached at different values means the data do
    /// not pin that parameter down.
    pub spread: Option<(String, f64)>,
}

/// Start values tried for a parameter (by base name); `min_loss` scales E's starts.
fn start_values(base: &str, min_loss: f64) -> Vec<f64> {
    match base {
        "A" => vec![10.0, 1000.0],
        "alpha" => vec![0.1, 0.3],
        "B" => vec![100.0, 1.0e4],
        "beta" => vec![0.2, 0.4],
        "E" => vec![0.5 * min_loss, 0.85 * min_loss],
        "L" => vec![1.0],
        "F" => vec![0.3, 0.6],
        "C" => vec![1.0, 2.0],
        "a" => vec![0.5, 2.0],
        "b" => vec![0.5, 5.0],
        "gamma" => vec![1.0, 3.0],
        _ => vec![0.7], // decoupled rho
    }
}

impl Setup {
    /// The problem on `runs` with multiplicities `weight`.
    pub fn problem(&self, runs: &[Run], weight: Vec<f64>) -> Problem {
        let mut base = vec![1.0; self.layout.len()];
        for (&i, &v) in &self.fixed {
            base[i] = v;
        }
        let free: Vec<usize> = (0..self.layout.len()).filter(|i| !self.fixed.contains_key(i)).collect();
        let bounds = free.iter().map(|i| self.bounds.get(i).map(|(lo, hi)| (lo.ln(), hi.ln()))).collect();
        let total: f64 = weight.iter().sum();
        Problem {
            layout: self.layout.clone(),
            pre: self.layout.precompute(runs),
            weight,
            delta: self.delta,
            base,
            free,
            bounds,
            scale: self.delta * total.max(1.0),
        }
    }

    /// Names of the free parameters.
    pub fn free_names(&self) -> Vec<&str> {
        (0..self.layout.len()).filter(|i| !self.fixed.contains_key(i)).map(|i| self.layout.names[i].as_str()).collect()
    }

    /// Indices of the free parameters.
    pub fn free(&self) -> Vec<usize> {
        (0..self.layout.len()).filter(|i| !self.fixed.contains_key(i)).collect()
    }

    /// The grid of starts: every combination of the start values of the global parameters and
    /// the first family's parameters; further families and decoupled rhos start at one value.
    fn starts(&self, problem: &Problem, runs: &[Run]) -> Vec<Vec<f64>> {
        let min_loss = runs.iter().map(|r| r.loss).fold(f64::INFINITY, f64::min);
        let per_family = self.layout.law.family_params().len();
        let mut starts: Vec<Vec<f64>> = vec![problem.base.clone()];
        for &i in &problem.free {
            let mut vals = start_values(self.layout.base(i), min_loss);
            if i >= super::model::GLOBALS.len() + per_family {
                vals.truncate(1);
            }
            if let Some(&(lo, hi)) = self.bounds.get(&i) {
                for v in &mut vals {
                    if !(lo..=hi).contains(v) {
                        *v = (lo * hi).sqrt();
                    }
                }
                vals.dedup();
            }
            starts = starts
                .into_iter()
                .flat_map(|s| {
                    vals.iter().map(move |&v| {
                        let mut s = s.clone();
                        s[i] = v;
                        s
                    })
                })
                .collect();
        }
        starts.iter().map(|p| problem.theta(p)).collect()
    }

    /// Multi-start fit on all runs.
    pub fn fit(&self, runs: &[Run]) -> Result<Fit, String> {
        if runs.is_empty() {
            return Err("no usable runs".into());
        }
        let problem = self.problem(runs, vec![1.0; runs.len()]);
        let starts = self.starts(&problem, runs);
        let results: Vec<Option<(Vec<f64>, f64)>> = starts.par_iter().map(|s| lbfgs(&problem, s.clone())).collect();
        let ok: Vec<&(Vec<f64>, f64)> = results.iter().flatten().collect();
        let best = ok.iter().min_by(|a, b| a.1.total_cmp(&b.1)).ok_or("every start of the optimizer failed")?;
        let basin: Vec<Vec<f64>> = ok
            .iter()
            .filter(|r| r.1 <= best.1 * (1.0 + BASIN_RTOL) + f64::MIN_POSITIVE)
            .map(|r| problem.params(&r.0))
            .collect();
        let mut spread: Option<(String, f64)> = None;
        for &i in &problem.free {
            let (lo, hi) = basin.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p[i]), hi.max(p[i])));
            let s = (hi - lo) / hi.abs().max(f64::MIN_POSITIVE);
            if spread.as_ref().is_none_or(|(_, m)| s > *m) {
                spread = Some((self.layout.names[i].clone(), s));
            }
        }
        Ok(Fit {
            params: problem.params(&best.0),
            objective: best.1,
            starts: starts.len(),
            in_best_basin: basin.len(),
            spread,
        })
    }

    /// One L-BFGS run from `init` (every parameter in layout order; fixed ones keep the setup's
    /// values): the fit when a good start is known, e.g. the optimum of a fit on a superset of
    /// `runs`. The result counts as one start in the best basin.
    pub fn fit_from(&self, runs: &[Run], init: &[f64]) -> Result<Fit, String> {
        if runs.is_empty() {
            return Err("no usable runs".into());
        }
        // Free parameters are optimized in log space; fixed ones keep the setup's value (B may
        // be fixed at 0).
        let bad = |(i, v): (usize, &f64)| !(self.fixed.contains_key(&i) || v.is_finite() && *v > 0.0);
        if init.len() != self.layout.len() || init.iter().enumerate().any(bad) {
            return Err("the start must give every free parameter a positive value".into());
        }
        let problem = self.problem(runs, vec![1.0; runs.len()]);
        let (best, objective) =
            lbfgs(&problem, problem.theta(init)).ok_or("the optimizer failed from the given start")?;
        Ok(Fit { params: problem.params(&best), objective, starts: 1, in_best_basin: 1, spread: None })
    }

    /// Loss RMSE of `params` on `runs`.
    pub fn rmse(&self, params: &[f64], runs: &[Run]) -> f64 {
        let pre = self.layout.precompute(runs);
        let s: f64 = pre.iter().zip(runs).map(|(p, r)| (self.layout.predict(params, p, None) - r.loss).powi(2)).sum();
        (s / runs.len() as f64).sqrt()
    }

    /// Bootstrap: `count` resamples of the runs (resample `b` drawn from an RNG seeded by
    /// `(seed, b)`), each refit from `best`. Returns every parameter's value per successful
    /// resample, in resample order, and the number of failed refits.
    pub fn bootstrap(&self, runs: &[Run], best: &[f64], count: usize, seed: u64) -> (Vec<Vec<f64>>, usize) {
        let n = runs.len();
        let base = self.problem(runs, vec![1.0; n]);
        let init = base.theta(best);
        let out: Vec<Option<Vec<f64>>> = (0..count)
            .into_par_iter()
            .map(|b| {
                let mut rng = SplitMix64(SplitMix64(seed).next_u64() ^ (b as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
                let mut w = vec![0.0; n];
                for _ in 0..n {
                    w[(rng.next_u64() % n as u64) as usize] += 1.0;
                }
                let mut p = base.clone();
                p.weight = w;
                lbfgs(&p, init.clone()).map(|(t, _)| p.params(&t))
            })
            .collect();
        let fails = out.iter().filter(|o| o.is_none()).count();
        (out.into_iter().flatten().collect(), fails)
    }
}

/// SplitMix64: a tiny seeded generator for bootstrap resampling (also `host-validate`'s).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

// The percentile intervals live in `law` (`host rank` gives rho intervals from a law file's
// bootstrap samples); the fit uses the same functions.
pub use host_core::law::{intervals, percentile};
