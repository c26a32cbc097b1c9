//! `host fit`: fit a scaling law to training runs (DESIGN.md 2.1-2.3).
//!
//! Law: `Loss(N, D, R) = A (N rho)^-alpha + B D^-beta + E` with
//! `chinchilla` (rho = 1) or `unified` (tanh form,
//! `rho = L tanh(F x)^C`, `x = -ln(GMSE)/ln 4`, weights and activations
//! multiplied; an uncompressed tensor has rho = 1).
//!
//! Method: minimize `sum_i Huber_delta(ln pred_i - ln obs_i)` over the free
//! parameters, all positive and optimized as their logarithms, by L-BFGS
//! (argmin, More-Thuente line search) with analytic gradients, from every
//! point of a small deterministic grid of starts. Percentile bootstrap over
//! runs (resample `b` drawn from an RNG seeded by `(seed, b)`, each refit
//! started at the full-data optimum) gives 68 % and 95 % intervals.
//!
//! Not implemented yet (issue 5): decoupled / precision-law / logistic forms
//! in the fitter, JSON run records as input, identifiability checks, plots,
//! writing a law file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use clap::{Args, ValueEnum};
use rayon::prelude::*;

/// Parameter names, in the order of the internal vector.
pub const NAMES: [&str; 8] = ["A", "alpha", "B", "beta", "E", "L", "F", "C"];
const I_A: usize = 0;
const I_ALPHA: usize = 1;
const I_B: usize = 2;
const I_BETA: usize = 3;
const I_E: usize = 4;
const I_L: usize = 5;
const I_F: usize = 6;
const I_C: usize = 7;

/// Starts whose objective is within this relative tolerance of the best one
/// count as having reached the best basin.
pub const BASIN_RTOL: f64 = 1e-3;

/// The law to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LawKind {
    /// rho = 1: parameters A, alpha, B, beta, E.
    Chinchilla,
    /// rho = L tanh(F x)^C per compressed tensor, weights x activations: A, alpha, B, beta, E, L, F, C.
    Unified,
}

impl LawKind {
    /// Number of parameters of the law (prefix of [`NAMES`]).
    pub fn n_params(self) -> usize {
        match self {
            LawKind::Chinchilla => 5,
            LawKind::Unified => 8,
        }
    }

    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LawKind::Chinchilla => "chinchilla",
            LawKind::Unified => "unified",
        }
    }
}

/// `host fit`.
#[derive(Args, Debug)]
pub struct FitArgs {
    /// CSV of training runs (one row per run, with a header line).
    pub csv: PathBuf,
    /// Law to fit (`unified` uses the tanh capacity form only; logistic,
    /// decoupled and precision-law forms are not implemented in the fitter yet).
    #[arg(long, value_enum, default_value_t = LawKind::Unified)]
    pub law: LawKind,
    /// Column names: `n=COL,d=COL,loss=COL,w_gmse=COL,a_gmse=COL` (defaults: n, d, loss, w_gmse, a_gmse).
    /// Empty GMSE = uncompressed (rho 1); `na` = unusable (row skipped).
    #[arg(long, value_name = "KEY=COL,...")]
    pub map: Option<String>,
    /// Keep only rows where column COL equals one of the values. Repeatable; all must hold.
    #[arg(long = "where", value_name = "COL=V1|V2")]
    pub filters: Vec<String>,
    /// Fix parameters: `alpha=0.13,beta=0.33,E=1.3,L=1`.
    #[arg(long, value_name = "NAME=V,...")]
    pub fix: Option<String>,
    /// Huber threshold on log-loss residuals.
    #[arg(long, default_value_t = 1e-3)]
    pub delta: f64,
    /// Bootstrap resamples over runs (0 = none).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: RAYON_NUM_THREADS, else all cores). Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One training run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    /// Non-embedding parameters.
    pub n: f64,
    /// Training tokens.
    pub d: f64,
    /// Observed loss.
    pub loss: f64,
    /// Weight GMSE (None = uncompressed).
    pub w_gmse: Option<f64>,
    /// Activation GMSE (None = uncompressed).
    pub a_gmse: Option<f64>,
}

/// Runs read from a CSV plus warnings about skipped rows.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Usable runs.
    pub runs: Vec<Run>,
    /// One line per kind of skipped row.
    pub warnings: Vec<String>,
}

fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got `{p}`"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Reads runs from CSV text. `map` renames the logical columns, `filters` are `COL=V1|V2`.
pub fn read_runs(text: &str, map: Option<&str>, filters: &[String]) -> Result<Dataset, String> {
    let mut cols: BTreeMap<&str, String> =
        ["n", "d", "loss", "w_gmse", "a_gmse"].iter().map(|k| (*k, k.to_string())).collect();
    if let Some(m) = map {
        for (k, v) in parse_pairs(m)? {
            let slot = cols
                .get_mut(k.as_str())
                .ok_or_else(|| format!("--map: unknown key `{k}` (n, d, loss, w_gmse, a_gmse)"))?;
            *slot = v;
        }
    }
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| e.to_string())?.clone();
    let col = |name: &str| -> Result<usize, String> {
        headers.iter().position(|h| h == name).ok_or_else(|| format!("no column `{name}` in the CSV"))
    };
    let idx: BTreeMap<&str, usize> = cols.iter().map(|(k, v)| Ok((*k, col(v)?))).collect::<Result<_, String>>()?;
    let mut conds = Vec::new();
    for f in filters {
        let (c, vs) = f.split_once('=').ok_or_else(|| format!("--where: expected COL=V1|V2, got `{f}`"))?;
        let values: Vec<String> = vs.split('|').map(|v| v.trim().to_string()).collect();
        conds.push((col(c.trim())?, values));
    }
    let (mut na, mut dead, mut bad) = (0usize, 0usize, 0usize);
    let mut runs = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| e.to_string())?;
        if !conds.iter().all(|(i, vs)| vs.iter().any(|v| rec.get(*i) == Some(v.as_str()))) {
            continue;
        }
        let num = |k: &str| rec.get(idx[k]).and_then(|s| s.parse::<f64>().ok()).filter(|x| x.is_finite() && *x > 0.0);
        let gmse = |k: &str| -> Result<Option<f64>, ()> {
            match rec.get(idx[k]).unwrap_or("") {
                "" => Ok(None),
                s => s.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).map(Some).ok_or(()),
            }
        };
        let (Some(n), Some(d), Some(loss)) = (num("n"), num("d"), num("loss")) else {
            bad += 1;
            continue;
        };
        let (Ok(w), Ok(a)) = (gmse("w_gmse"), gmse("a_gmse")) else {
            na += 1;
            continue;
        };
        if w.is_some_and(|g| g >= 1.0) || a.is_some_and(|g| g >= 1.0) {
            dead += 1;
            continue;
        }
        runs.push(Run { n, d, loss, w_gmse: w, a_gmse: a });
    }
    let mut warnings = Vec::new();
    if na > 0 {
        warnings.push(format!("skipped {na} rows with unusable GMSE (`na` or not a number)"));
    }
    if dead > 0 {
        warnings.push(format!("skipped {dead} rows with GMSE >= 1 (rho = 0: the law cannot predict them)"));
    }
    if bad > 0 {
        warnings.push(format!("skipped {bad} rows without a positive N, D and loss"));
    }
    Ok(Dataset { runs, warnings })
}

/// Parses `--fix NAME=V,...` for `law`.
pub fn parse_fix(s: &str, law: LawKind) -> Result<BTreeMap<usize, f64>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in parse_pairs(s)? {
        let i = NAMES[..law.n_params()]
            .iter()
            .position(|n| *n == k)
            .ok_or_else(|| format!("--fix: `{k}` is not a parameter of the {} law", law.name()))?;
        let x: f64 = v.parse().map_err(|_| format!("--fix: `{v}` is not a number"))?;
        if !(x > 0.0 && x.is_finite()) {
            return Err(format!("--fix: {k} must be positive"));
        }
        out.insert(i, x);
    }
    Ok(out)
}

/// Per-run precomputed quantities.
#[derive(Debug, Clone, Copy)]
struct Pre {
    ln_n: f64,
    ln_d: f64,
    ln_obs: f64,
    /// Effective bits of the compressed tensors (at most two).
    x: [f64; 2],
    k: usize,
}

fn precompute(runs: &[Run]) -> Vec<Pre> {
    runs.iter()
        .map(|r| {
            let mut x = [0.0; 2];
            let mut k = 0;
            for g in [r.w_gmse, r.a_gmse].into_iter().flatten() {
                x[k] = if g <= 0.0 { f64::INFINITY } else { -g.ln() / 4f64.ln() };
                k += 1;
            }
            Pre { ln_n: r.n.ln(), ln_d: r.d.ln(), ln_obs: r.loss.ln(), x, k }
        })
        .collect()
}

/// Predicted loss and its gradient with respect to the log of every parameter
/// (`p` = parameter values, all 8 slots; unused slots ignored for chinchilla).
fn predict(law: LawKind, p: &[f64; 8], r: &Pre, grad: Option<&mut [f64; 8]>) -> f64 {
    let (a, alpha, b, beta, e) = (p[I_A], p[I_ALPHA], p[I_B], p[I_BETA], p[I_E]);
    let (mut ln_rho, mut s_lntanh, mut s_df) = (0.0, 0.0, 0.0);
    if law == LawKind::Unified {
        let (l, f, c) = (p[I_L], p[I_F], p[I_C]);
        for &x in &r.x[..r.k] {
            let fx = f * x;
            let lt = if fx.is_finite() { fx.tanh().ln() } else { 0.0 };
            s_lntanh += lt;
            // d ln tanh(F x) / d ln F = F x sech^2 / tanh = 2 F x / sinh(2 F x).
            s_df += if fx.is_finite() && fx < 300.0 { 2.0 * fx / (2.0 * fx).sinh() } else { 0.0 };
        }
        ln_rho = r.k as f64 * l.ln() + c * s_lntanh;
    }
    let t1 = a * (-alpha * (r.ln_n + ln_rho)).exp();
    let t2 = b * (-beta * r.ln_d).exp();
    let pred = t1 + t2 + e;
    if let Some(g) = grad {
        g[I_A] = t1;
        g[I_ALPHA] = -alpha * (r.ln_n + ln_rho) * t1;
        g[I_B] = t2;
        g[I_BETA] = -beta * r.ln_d * t2;
        g[I_E] = e;
        if law == LawKind::Unified {
            let dt1 = -alpha * t1; // d t1 / d ln rho
            g[I_L] = dt1 * r.k as f64;
            g[I_F] = dt1 * p[I_C] * s_df;
            g[I_C] = dt1 * p[I_C] * s_lntanh;
        } else {
            g[I_L] = 0.0;
            g[I_F] = 0.0;
            g[I_C] = 0.0;
        }
    }
    pred
}

fn huber(r: f64, delta: f64) -> (f64, f64) {
    if r.abs() <= delta { (0.5 * r * r, r) } else { (delta * (r.abs() - 0.5 * delta), delta * r.signum()) }
}

/// The optimization problem over the free parameters' logarithms.
#[derive(Debug, Clone)]
pub struct Problem {
    law: LawKind,
    pre: Vec<Pre>,
    /// Run multiplicities (bootstrap weights).
    weight: Vec<f64>,
    delta: f64,
    /// All 8 parameter values; free slots are overwritten from theta.
    base: [f64; 8],
    free: Vec<usize>,
    /// Internal scale: objective / scale is what L-BFGS sees (keeps tolerances sensible).
    scale: f64,
}

impl Problem {
    /// Parameter values from free log-parameters.
    pub fn params(&self, theta: &[f64]) -> [f64; 8] {
        let mut p = self.base;
        for (j, &i) in self.free.iter().enumerate() {
            p[i] = theta[j].exp();
        }
        p
    }

    /// Huber objective (unscaled) and its gradient with respect to theta.
    pub fn objective(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let p = self.params(theta);
        let mut g = [0.0; 8];
        let mut total = 0.0;
        let mut grad = vec![0.0; self.free.len()];
        for (r, &w) in self.pre.iter().zip(&self.weight) {
            if w == 0.0 {
                continue;
            }
            let pred = predict(self.law, &p, r, Some(&mut g));
            let (h, dh) = huber(pred.ln() - r.ln_obs, self.delta);
            total += w * h;
            for (j, &i) in self.free.iter().enumerate() {
                grad[j] += w * dh * g[i] / pred;
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

/// Result of one fit.
#[derive(Debug, Clone)]
pub struct Fit {
    /// All parameter values (8 slots; the law's prefix is meaningful).
    pub params: [f64; 8],
    /// Huber objective at the optimum.
    pub objective: f64,
    /// Starts tried, and how many reached the best objective within [`BASIN_RTOL`].
    pub starts: usize,
    /// See `starts`.
    pub in_best_basin: usize,
}

fn lbfgs(problem: &Problem, init: Vec<f64>) -> Option<(Vec<f64>, f64)> {
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-10)
        .ok()?
        .with_tolerance_cost(1e-14)
        .ok()?;
    let res = Executor::new(problem.clone(), solver).configure(|s| s.param(init).max_iters(1000)).run().ok()?;
    let st = res.state();
    let best = st.get_best_param()?.clone();
    let c = problem.objective(&best).0;
    c.is_finite().then_some((best, c))
}

/// Start values tried for each parameter (product over the free ones).
const GRID: [&[f64]; 8] = [
    &[10.0, 1000.0], // A
    &[0.1, 0.3],     // alpha
    &[100.0, 1.0e4], // B
    &[0.2, 0.4],     // beta
    &[1.0, 1.7],     // E
    &[1.0],          // L
    &[0.3, 0.6],     // F
    &[1.0, 2.0],     // C
];

/// Fitting setup.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Law.
    pub law: LawKind,
    /// Fixed parameters by index into [`NAMES`].
    pub fixed: BTreeMap<usize, f64>,
    /// Huber threshold.
    pub delta: f64,
}

impl Setup {
    fn problem(&self, runs: &[Run], weight: Vec<f64>) -> Problem {
        let mut base = [1.0; 8];
        for (&i, &v) in &self.fixed {
            base[i] = v;
        }
        let free: Vec<usize> = (0..self.law.n_params()).filter(|i| !self.fixed.contains_key(i)).collect();
        let total: f64 = weight.iter().sum();
        Problem {
            law: self.law,
            pre: precompute(runs),
            weight,
            delta: self.delta,
            base,
            free,
            scale: self.delta * total.max(1.0),
        }
    }

    /// Names of the free parameters, in theta order.
    pub fn free_names(&self) -> Vec<&'static str> {
        (0..self.law.n_params()).filter(|i| !self.fixed.contains_key(i)).map(|i| NAMES[i]).collect()
    }

    /// Multi-start fit on all runs.
    pub fn fit(&self, runs: &[Run]) -> Result<Fit, String> {
        if runs.is_empty() {
            return Err("no usable runs".into());
        }
        let problem = self.problem(runs, vec![1.0; runs.len()]);
        let mut starts: Vec<Vec<f64>> = vec![vec![]];
        for &i in &problem.free {
            starts = starts
                .into_iter()
                .flat_map(|s| GRID[i].iter().map(move |v| [s.clone(), vec![v.ln()]].concat()))
                .collect();
        }
        let results: Vec<Option<(Vec<f64>, f64)>> = starts.par_iter().map(|s| lbfgs(&problem, s.clone())).collect();
        let ok: Vec<&(Vec<f64>, f64)> = results.iter().flatten().collect();
        let best = ok.iter().min_by(|a, b| a.1.total_cmp(&b.1)).ok_or("every start of the optimizer failed")?;
        let in_best = ok.iter().filter(|r| r.1 <= best.1 * (1.0 + BASIN_RTOL) + f64::MIN_POSITIVE).count();
        Ok(Fit { params: problem.params(&best.0), objective: best.1, starts: starts.len(), in_best_basin: in_best })
    }

    /// Loss RMSE of `params` on `runs`.
    pub fn rmse(&self, params: &[f64; 8], runs: &[Run]) -> f64 {
        let pre = precompute(runs);
        let s: f64 = pre.iter().zip(runs).map(|(p, r)| (predict(self.law, params, p, None) - r.loss).powi(2)).sum();
        (s / runs.len() as f64).sqrt()
    }

    /// Bootstrap: `count` resamples of the runs, each refit from `best`.
    /// Returns the free parameters' values per successful resample, in order, and the failure count.
    pub fn bootstrap(&self, runs: &[Run], best: &[f64; 8], count: usize, seed: u64) -> (Vec<Vec<f64>>, usize) {
        let n = runs.len();
        let base = self.problem(runs, vec![1.0; n]);
        let init: Vec<f64> = base.free.iter().map(|&i| best[i].ln()).collect();
        let out: Vec<Option<Vec<f64>>> = (0..count)
            .into_par_iter()
            .map(|b| {
                let mut rng = SplitMix64(SplitMix64(seed).next() ^ (b as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
                let mut w = vec![0.0; n];
                for _ in 0..n {
                    w[(rng.next() % n as u64) as usize] += 1.0;
                }
                let mut p = base.clone();
                p.scale = self.delta * n as f64;
                p.weight = w;
                lbfgs(&p, init.clone()).map(|(t, _)| t.iter().map(|x| x.exp()).collect())
            })
            .collect();
        let fails = out.iter().filter(|o| o.is_none()).count();
        (out.into_iter().flatten().collect(), fails)
    }
}

/// SplitMix64: a tiny seeded generator for bootstrap resampling.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Percentile `q` in [0, 1] of sorted `v` (linear interpolation).
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// A fitted parameter with its percentile intervals (None when fixed or without bootstrap).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamReport {
    /// Name.
    pub name: &'static str,
    /// Fitted or fixed value.
    pub value: f64,
    /// Whether it was fixed.
    pub fixed: bool,
    /// 68 % interval.
    pub ci68: Option<(f64, f64)>,
    /// 95 % interval.
    pub ci95: Option<(f64, f64)>,
}

/// Everything `host fit` reports.
#[derive(Debug, Clone)]
pub struct Report {
    /// Law.
    pub law: LawKind,
    /// Parameters in [`NAMES`] order.
    pub params: Vec<ParamReport>,
    /// Loss RMSE on the runs.
    pub rmse: f64,
    /// Huber objective.
    pub objective: f64,
    /// Runs fitted.
    pub runs: usize,
    /// Multi-start starts.
    pub starts: usize,
    /// Starts that reached the best basin.
    pub starts_in_best_basin: usize,
    /// Bootstrap resamples requested, and how many failed (excluded).
    pub bootstrap: usize,
    /// See `bootstrap`.
    pub bootstrap_failed: usize,
}

/// Fits and bootstraps.
pub fn run_fit(setup: &Setup, runs: &[Run], bootstrap: usize, seed: u64) -> Result<Report, String> {
    let fit = setup.fit(runs)?;
    let (samples, failed) = setup.bootstrap(runs, &fit.params, bootstrap, seed);
    let free = setup.free_names();
    let params = (0..setup.law.n_params())
        .map(|i| {
            let fixed = setup.fixed.contains_key(&i);
            let (mut ci68, mut ci95) = (None, None);
            if !fixed && !samples.is_empty() {
                let j = free.iter().position(|n| *n == NAMES[i]).expect("free parameter");
                let mut v: Vec<f64> = samples.iter().map(|s| s[j]).collect();
                v.sort_by(f64::total_cmp);
                ci68 = Some((percentile(&v, 0.16), percentile(&v, 0.84)));
                ci95 = Some((percentile(&v, 0.025), percentile(&v, 0.975)));
            }
            ParamReport { name: NAMES[i], value: fit.params[i], fixed, ci68, ci95 }
        })
        .collect();
    Ok(Report {
        law: setup.law,
        params,
        rmse: setup.rmse(&fit.params, runs),
        objective: fit.objective,
        runs: runs.len(),
        starts: fit.starts,
        starts_in_best_basin: fit.in_best_basin,
        bootstrap,
        bootstrap_failed: failed,
    })
}

impl Report {
    /// Parameter by name.
    pub fn get(&self, name: &str) -> Option<&ParamReport> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The `--json` object.
    pub fn to_json(&self) -> serde_json::Value {
        let iv = |c: Option<(f64, f64)>| c.map_or(serde_json::Value::Null, |(a, b)| serde_json::json!([a, b]));
        let params: serde_json::Map<String, serde_json::Value> = self
            .params
            .iter()
            .map(|p| {
                (p.name.to_string(), serde_json::json!({ "value": p.value, "ci68": iv(p.ci68), "ci95": iv(p.ci95) }))
            })
            .collect();
        serde_json::json!({
            "law": self.law.name(),
            "form": if self.law == LawKind::Unified { "tanh" } else { "none" },
            "params": params,
            "rmse": self.rmse,
            "objective": self.objective,
            "runs": self.runs,
            "starts": self.starts,
            "starts_in_best_basin": self.starts_in_best_basin,
            "bootstrap": self.bootstrap,
            "bootstrap_failed": self.bootstrap_failed,
        })
    }

    /// The text table.
    pub fn to_text(&self) -> String {
        let mut s = format!("law {} ({} runs)\n", self.law.name(), self.runs);
        s += &format!("{:<6} {:>12} {:>27} {:>27}\n", "param", "value", "ci68", "ci95");
        let iv = |c: Option<(f64, f64)>, fixed: bool| match c {
            Some((a, b)) => format!("[{}, {}]", num(a), num(b)),
            None if fixed => "fixed".to_string(),
            None => "-".to_string(),
        };
        for p in &self.params {
            s += &format!(
                "{:<6} {:>12} {:>27} {:>27}\n",
                p.name,
                num(p.value),
                iv(p.ci68, p.fixed),
                iv(p.ci95, p.fixed)
            );
        }
        s += &format!("loss RMSE {:.5}   Huber objective {:.6e}\n", self.rmse, self.objective);
        s += &format!("starts in best basin: {} of {}", self.starts_in_best_basin, self.starts);
        if self.bootstrap > 0 {
            s += &format!("   bootstrap: {} resamples ({} failed)", self.bootstrap, self.bootstrap_failed);
        }
        s.push('\n');
        s
    }
}

/// Six significant digits, scientific outside [1e-3, 1e6).
fn num(v: f64) -> String {
    let m = v.abs();
    if m == 0.0 || (1e-3..1e6).contains(&m) {
        let decimals = (5 - m.log10().floor().max(-3.0) as i32).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.5e}")
    }
}

/// Runs `host fit`.
pub fn run(args: FitArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.csv).map_err(|e| format!("{}: {e}", args.csv.display()))?;
    run_text(&text, &args.csv, &args)
}

fn run_text(text: &str, path: &Path, args: &FitArgs) -> Result<(), String> {
    let data = read_runs(text, args.map.as_deref(), &args.filters).map_err(|e| format!("{}: {e}", path.display()))?;
    for w in &data.warnings {
        eprintln!("host: warning: {w}");
    }
    if args.delta.is_nan() || args.delta <= 0.0 {
        return Err("--delta must be positive".into());
    }
    let fixed = match &args.fix {
        Some(s) => parse_fix(s, args.law)?,
        None => BTreeMap::new(),
    };
    let setup = Setup { law: args.law, fixed, delta: args.delta };
    let go = || run_fit(&setup, &data.runs, args.bootstrap, args.seed);
    let report = match args.threads {
        Some(t) => rayon::ThreadPoolBuilder::new().num_threads(t).build().map_err(|e| e.to_string())?.install(go)?,
        None => go()?,
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quest_csv() -> String {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/quest_scaling_runs.csv");
        std::fs::read_to_string(p).expect("shared/data/quest_scaling_runs.csv beside the repository")
    }

    const PAPER_ROWS: &str =
        "w_quantizer=NoQuantizer|HadamardTrustQuantizer|HalfHadamardTrustQuantizer|HalfHadamardFP4TrustQuantizer";
    const QUEST_MAP: &str = "n=non_embedding_params,d=tokens,loss=val_loss";

    fn quest_runs() -> Vec<Run> {
        let data = read_runs(&quest_csv(), Some(QUEST_MAP), &[PAPER_ROWS.to_string()]).unwrap();
        assert!(data.warnings.is_empty(), "{:?}", data.warnings);
        data.runs
    }

    fn paper_fixed() -> BTreeMap<usize, f64> {
        parse_fix("alpha=0.13,beta=0.33,E=1.3,L=1", LawKind::Unified).unwrap()
    }

    #[test]
    fn reads_csv_with_map_filters_and_na() {
        let all = read_runs(&quest_csv(), Some(QUEST_MAP), &[]).unwrap();
        // 104 rows, 21 with `na` GMSE (1-bit clip and 4:8 sparse quantizers).
        assert_eq!(all.runs.len(), 83);
        assert_eq!(all.warnings, vec!["skipped 21 rows with unusable GMSE (`na` or not a number)".to_string()]);
        assert_eq!(quest_runs().len(), 64);
        let text =
            "n,d,loss,w_gmse,a_gmse,kind\n1e6,1e9,3.5,,,x\n1e6,1e9,3.6,0.01,,y\n1e6,1e9,3.7,na,,y\n1e6,1e9,4,1.5,,y\n";
        let d = read_runs(text, None, &["kind=y|z".to_string()]).unwrap();
        assert_eq!(d.runs, vec![Run { n: 1e6, d: 1e9, loss: 3.6, w_gmse: Some(0.01), a_gmse: None }]);
        assert_eq!(d.warnings.len(), 2);
        assert!(read_runs(text, Some("q=1"), &[]).is_err());
        assert!(parse_fix("F=0.4", LawKind::Chinchilla).is_err());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let runs = quest_runs();
        let mut max_rel: f64 = 0.0;
        for law in [LawKind::Chinchilla, LawKind::Unified] {
            // delta large so the objective is smooth (quadratic) around the test point.
            let setup = Setup { law, fixed: BTreeMap::new(), delta: 10.0 };
            let p = setup.problem(&runs, (0..runs.len()).map(|i| 1.0 + (i % 3) as f64).collect());
            let theta: Vec<f64> =
                [15.0f64, 0.15, 300.0, 0.3, 1.4, 0.9, 0.45, 1.3][..law.n_params()].iter().map(|v| v.ln()).collect();
            let (_, g) = p.objective(&theta);
            for j in 0..theta.len() {
                let h = 1e-6;
                let (mut tp, mut tm) = (theta.clone(), theta.clone());
                tp[j] += h;
                tm[j] -= h;
                let fd = (p.objective(&tp).0 - p.objective(&tm).0) / (2.0 * h);
                let rel = (fd - g[j]).abs() / fd.abs().max(g[j].abs()).max(1e-12);
                max_rel = max_rel.max(rel);
            }
        }
        println!("max relative difference analytic vs finite-difference gradient: {max_rel:.3e}");
        assert!(max_rel < 1e-5, "{max_rel}");
    }

    #[test]
    fn recovers_synthetic_unified_parameters() {
        // Grid of N, D and GMSE (weights, activations, both, none) like the QuEST design.
        let truth = [15.0, 0.13, 350.0, 0.33, 1.3, 1.0, 0.40, 1.37];
        let law = LawKind::Unified;
        let mut rng = SplitMix64(7);
        let mut runs = Vec::new();
        for &n in &[3e7, 5e7, 1e8, 2e8, 4e8, 8e8] {
            for &tpp in &[25.0, 50.0, 100.0] {
                for &(w, a) in &[
                    (None, None),
                    (Some(0.1175), None),
                    (Some(0.0095), Some(0.0095)),
                    (Some(0.0345), Some(0.0345)),
                    (Some(0.0025), None),
                ] {
                    let r = Run { n, d: n * tpp, loss: 0.0, w_gmse: w, a_gmse: a };
                    let pre = precompute(&[r])[0];
                    // Multiplicative noise, uniform in +-0.2 %.
                    let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                    let loss = predict(law, &truth, &pre, None) * (1.0 + 0.004 * (u - 0.5));
                    runs.push(Run { loss, ..r });
                }
            }
        }
        let fixed = parse_fix("alpha=0.13,beta=0.33,E=1.3,L=1", law).unwrap();
        let setup = Setup { law, fixed, delta: 1e-3 };
        let rep = run_fit(&setup, &runs, 50, 1).unwrap();
        print!("{}", rep.to_text());
        for name in ["A", "B", "F", "C"] {
            let p = rep.get(name).unwrap();
            let t = truth[NAMES.iter().position(|n| *n == name).unwrap()];
            let (lo, hi) = p.ci95.unwrap();
            assert!(lo <= t && t <= hi, "{name}: true {t} outside [{lo}, {hi}] (fit {})", p.value);
        }
        assert_eq!(rep.bootstrap_failed, 0);
    }

    #[test]
    fn quest_unified_tanh_matches_design() {
        let runs = quest_runs();
        let setup = Setup { law: LawKind::Unified, fixed: paper_fixed(), delta: 1e-3 };
        let rep = run_fit(&setup, &runs, 50, 0).unwrap();
        print!("{}", rep.to_text());
        let f = rep.get("F").unwrap().value;
        let c = rep.get("C").unwrap().value;
        // DESIGN.md 2.2: F = 0.404, C = 1.369, A = 15.43, B = 354, RMSE 0.0162.
        assert!((0.38..=0.43).contains(&f), "F = {f}");
        assert!((1.30..=1.45).contains(&c), "C = {c}");
        assert!((rep.rmse - 0.0162).abs() < 0.002, "rmse {}", rep.rmse);
        assert!(rep.starts_in_best_basin >= 1);
        let j = rep.to_json();
        assert_eq!(j["runs"], 64);
        assert_eq!(j["params"]["alpha"]["value"], 0.13);
        assert!(j["params"]["alpha"]["ci95"].is_null());
        assert!(j["params"]["F"]["ci68"][0].as_f64().unwrap() < f);

        // (c) Chinchilla (rho = 1) on the same rows fits worse.
        let chin = Setup {
            law: LawKind::Chinchilla,
            fixed: parse_fix("alpha=0.13,beta=0.33,E=1.3", LawKind::Chinchilla).unwrap(),
            delta: 1e-3,
        };
        let ch = run_fit(&chin, &runs, 0, 0).unwrap();
        print!("{}", ch.to_text());
        assert!(ch.rmse > rep.rmse, "chinchilla {} vs unified {}", ch.rmse, rep.rmse);
    }

    #[test]
    fn bootstrap_independent_of_threads() {
        let runs = quest_runs();
        let setup = Setup { law: LawKind::Unified, fixed: paper_fixed(), delta: 1e-3 };
        let fit = setup.fit(&runs).unwrap();
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let a = one.install(|| setup.bootstrap(&runs, &fit.params, 8, 3));
        let b = two.install(|| setup.bootstrap(&runs, &fit.params, 8, 3));
        assert_eq!(a, b);
    }
}
