//! What `host fit` reports, and the files it writes.

use std::collections::BTreeMap;

use super::data::Run;
use super::model::{GLOBALS, LawKind, Layout};
use super::solve::{Fit, Setup, intervals};
use super::{FitArgs, check_data, parse_bounds, parse_fix};

/// A fitted law with its bootstrap.
#[derive(Debug, Clone)]
pub struct LawFit {
    /// What was fitted.
    pub setup: Setup,
    /// The multi-start fit.
    pub fit: Fit,
    /// Bootstrap samples: every parameter per successful resample.
    pub samples: Vec<Vec<f64>>,
    /// Resamples requested.
    pub bootstrap: usize,
    /// Resamples whose refit failed.
    pub failed: usize,
    /// Loss RMSE on the runs.
    pub rmse: f64,
}

impl LawFit {
    fn new(setup: Setup, runs: &[Run], bootstrap: usize, seed: u64) -> Result<LawFit, String> {
        let fit = setup.fit(runs)?;
        let (samples, failed) = setup.bootstrap(runs, &fit.params, bootstrap, seed);
        let rmse = setup.rmse(&fit.params, runs);
        Ok(LawFit { setup, fit, samples, bootstrap, failed, rmse })
    }

    /// Intervals of parameter `i` from the bootstrap.
    fn ci(&self, i: usize) -> Option<((f64, f64), (f64, f64))> {
        intervals(self.samples.iter().map(|s| s[i]).collect())
    }

    /// rho of `run` under the fitted parameters, and its 68 % interval over the bootstrap.
    fn rho(&self, run: &Run) -> (f64, Option<(f64, f64)>) {
        let pre = self.setup.layout.precompute(std::slice::from_ref(run));
        let rho = self.setup.layout.run_rho(&self.fit.params, &pre[0]);
        let ci = intervals(self.samples.iter().map(|s| self.setup.layout.run_rho(s, &pre[0])).collect());
        (rho, ci.map(|c| c.0))
    }
}

/// One parameter of the reported law.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamReport {
    /// Name.
    pub name: String,
    /// Fitted or fixed value.
    pub value: f64,
    /// Whether it was fixed.
    pub fixed: bool,
    /// 68 % interval (None when fixed or without bootstrap).
    pub ci68: Option<(f64, f64)>,
    /// 95 % interval.
    pub ci95: Option<(f64, f64)>,
}

/// One row of the law comparison.
#[derive(Debug, Clone)]
pub struct CompareRow {
    /// The law.
    pub law: LawKind,
    /// Free parameters.
    pub free: usize,
    /// Huber objective (NaN when not fitted).
    pub objective: f64,
    /// Loss RMSE (NaN when not fitted).
    pub rmse: f64,
    /// Why it was not fitted, or a remark.
    pub note: String,
}

/// Implied capacity of one compressed configuration.
#[derive(Debug, Clone)]
pub struct Implied {
    /// Configuration (`W:int4 A:int4`).
    pub key: String,
    /// Runs with it.
    pub runs: usize,
    /// (role, family, GMSE) of each compressed tensor.
    pub comps: Vec<(&'static str, String, f64)>,
    /// Free rho of the decoupled fit, with its 68 % interval.
    pub implied: f64,
    /// See `implied`.
    pub implied_ci68: Option<(f64, f64)>,
    /// The reported law's rho for it, with its 68 % interval.
    pub law: f64,
    /// See `law`.
    pub law_ci68: Option<(f64, f64)>,
}

/// Factorization check of one combined configuration (DESIGN.md 2.3).
#[derive(Debug, Clone)]
pub struct Factor {
    /// The combined configuration.
    pub key: String,
    /// Its implied rho.
    pub implied: f64,
    /// The single configurations used and their implied rho.
    pub parts: Vec<(String, f64)>,
    /// Product of the parts' implied rho.
    pub product: f64,
}

/// One run's fit.
#[derive(Debug, Clone)]
pub struct Residual {
    /// N.
    pub n: f64,
    /// D.
    pub d: f64,
    /// Configuration (`none` = uncompressed).
    pub key: String,
    /// Observed loss.
    pub observed: f64,
    /// Predicted loss.
    pub predicted: f64,
}

/// Everything `host fit` reports.
#[derive(Debug, Clone)]
pub struct Report {
    /// The reported law.
    pub main: LawFit,
    /// Its parameters.
    pub params: Vec<ParamReport>,
    /// The runs.
    pub runs: Vec<Run>,
    /// All laws fitted to the same runs.
    pub comparison: Vec<CompareRow>,
    /// The decoupled fit, when made.
    pub decoupled: Option<LawFit>,
    /// Implied rho per configuration.
    pub implied: Vec<Implied>,
    /// Factorization checks.
    pub factorization: Vec<Factor>,
    /// Per-run residuals.
    pub residuals: Vec<Residual>,
    /// Identifiability and data warnings.
    pub warnings: Vec<String>,
    /// Why the fit is not a result (empty when it is): its error is far above the runs' noise,
    /// or parameters sit at absurd values. Shown in the report's title.
    pub not_identified: Vec<String>,
}

/// Seed-to-seed noise of the runs: the pooled standard deviation of the loss over runs that
/// repeat one (N, D, configuration), with its degrees of freedom (None without repeats).
pub fn seed_noise(runs: &[Run]) -> Option<(f64, usize)> {
    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in runs {
        let key = format!("{:e} {:e} {}", r.n, r.d, r.key().unwrap_or_default());
        groups.entry(key).or_default().push(r.loss);
    }
    let (mut ss, mut dof) = (0.0, 0usize);
    for v in groups.values().filter(|v| v.len() > 1) {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        ss += v.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
        dof += v.len() - 1;
    }
    (dof > 0).then(|| ((ss / dof as f64).sqrt(), dof))
}

/// RMSE above this many times the seed noise means the law misses the data.
pub const RMSE_OVER_NOISE: f64 = 3.0;
/// Without repeated runs: RMSE above this fraction of the mean loss means the law misses it.
pub const RMSE_OVER_LOSS: f64 = 0.05;

/// Plausible ranges of the law's parameters (N and D as raw counts). A value outside is an
/// artefact of an unidentified fit (e.g. A = 1e-12 with F = 1e9), not a measurement.
fn plausible(name: &str) -> Option<(f64, f64)> {
    let base = name.split('[').next().unwrap_or(name);
    match base {
        "A" | "B" => Some((1e-4, 1e7)),
        "alpha" | "beta" => Some((1e-3, 3.0)),
        "E" => Some((1e-6, 1e3)),
        "L" => Some((1e-3, 1.5)),
        "F" => Some((1e-3, 1e2)),
        "C" => Some((1e-2, 1e2)),
        _ => None,
    }
}

/// The reasons a fit is not identified (empty when it is).
fn identification(main: &LawFit, params: &[ParamReport], runs: &[Run]) -> Vec<String> {
    let mut why = Vec::new();
    let rmse = main.rmse;
    match seed_noise(runs) {
        Some((noise, dof)) if noise > 0.0 && rmse > RMSE_OVER_NOISE * noise => why.push(format!(
            "loss RMSE {rmse:.4} is {:.0}x the seed noise {noise:.4} ({dof} degrees of freedom)",
            rmse / noise
        )),
        None => {
            let mean = runs.iter().map(|r| r.loss).sum::<f64>() / runs.len().max(1) as f64;
            if rmse > RMSE_OVER_LOSS * mean {
                why.push(format!("loss RMSE {rmse:.4} is {:.0} % of the mean loss {mean:.3}", 100.0 * rmse / mean));
            }
        }
        _ => {}
    }
    for p in params.iter().filter(|p| !p.fixed) {
        if let Some((lo, hi)) = plausible(&p.name)
            && !(lo..=hi).contains(&p.value)
        {
            why.push(format!(
                "{} = {} is outside any plausible range [{}, {}]",
                p.name,
                num(p.value),
                num(lo),
                num(hi)
            ));
        }
    }
    why
}

/// Bootstrap resamples of the decoupled fit made for the implied-rho intervals.
const DECOUPLED_BOOTSTRAP: usize = 200;

fn setup_for(law: LawKind, args: &FitArgs, runs: &[Run], strict: bool) -> Result<Setup, String> {
    let layout = Layout::new(law, runs)?;
    let fixed = match &args.fix {
        Some(s) => parse_fix(s, &layout, strict)?,
        None => BTreeMap::new(),
    };
    let bounds = match &args.bound {
        Some(s) => parse_bounds(s, &layout, strict)?,
        None => BTreeMap::new(),
    };
    Ok(Setup { layout, fixed, bounds, delta: args.delta })
}

/// Fits the chosen law (with bootstrap) and, unless `--no-compare`, every other law.
pub fn build(args: &FitArgs, runs: &[Run]) -> Result<Report, String> {
    let setup = setup_for(args.law, args, runs, true)?;
    let (refuse, mut warnings) = check_data(&setup, runs);
    if !refuse.is_empty() {
        if !args.force {
            return Err(format!(
                "refusing to fit the {} law: {} (--force fits anyway)",
                args.law.name(),
                refuse.join("; ")
            ));
        }
        warnings.extend(refuse);
    }
    let main = LawFit::new(setup, runs, args.bootstrap, args.seed)?;
    warnings.extend(fit_warnings(&main));
    let params: Vec<ParamReport> = (0..main.setup.layout.len())
        .map(|i| {
            let fixed = main.setup.fixed.contains_key(&i);
            let ci = if fixed { None } else { main.ci(i) };
            ParamReport {
                name: main.setup.layout.names[i].clone(),
                value: main.fit.params[i],
                fixed,
                ci68: ci.map(|c| c.0),
                ci95: ci.map(|c| c.1),
            }
        })
        .collect();
    let mut comparison = vec![row(&main)];
    let mut decoupled = (args.law == LawKind::Decoupled).then(|| main.clone());
    if !args.no_compare {
        for law in LawKind::ALL.into_iter().filter(|l| *l != args.law) {
            let setup = match setup_for(law, args, runs, false) {
                Ok(s) => s,
                Err(e) => {
                    comparison.push(CompareRow { law, free: 0, objective: f64::NAN, rmse: f64::NAN, note: e });
                    continue;
                }
            };
            let free = setup.free().len();
            let (refuse, _) = check_data(&setup, runs);
            if !refuse.is_empty() && !args.force {
                let note = format!("not fitted: {}", refuse.join("; "));
                comparison.push(CompareRow { law, free, objective: f64::NAN, rmse: f64::NAN, note });
                continue;
            }
            let boot = if law == LawKind::Decoupled { args.bootstrap.min(DECOUPLED_BOOTSTRAP) } else { 0 };
            match LawFit::new(setup, runs, boot, args.seed) {
                Ok(f) => {
                    comparison.push(row(&f));
                    if law == LawKind::Decoupled {
                        decoupled = Some(f);
                    }
                }
                Err(e) => comparison.push(CompareRow { law, free, objective: f64::NAN, rmse: f64::NAN, note: e }),
            }
        }
        comparison.sort_by_key(|r| LawKind::ALL.iter().position(|l| *l == r.law));
    }
    let implied = decoupled.as_ref().map(|d| implied_rho(d, &main, runs)).unwrap_or_default();
    let factorization = factorize(&implied);
    let pre = main.setup.layout.precompute(runs);
    let residuals = runs
        .iter()
        .zip(&pre)
        .map(|(r, p)| Residual {
            n: r.n,
            d: r.d,
            key: r.key().unwrap_or_else(|| "none".into()),
            observed: r.loss,
            predicted: main.setup.layout.predict(&main.fit.params, p, None),
        })
        .collect();
    let not_identified = identification(&main, &params, runs);
    Ok(Report {
        main,
        params,
        runs: runs.to_vec(),
        comparison,
        decoupled,
        implied,
        factorization,
        residuals,
        warnings,
        not_identified,
    })
}

fn row(f: &LawFit) -> CompareRow {
    let note = if f.fit.in_best_basin * 2 < f.fit.starts {
        format!("{} of {} starts in the best basin", f.fit.in_best_basin, f.fit.starts)
    } else {
        String::new()
    };
    CompareRow { law: f.setup.layout.law, free: f.setup.free().len(), objective: f.fit.objective, rmse: f.rmse, note }
}

/// Warnings about what the fit could not determine.
fn fit_warnings(f: &LawFit) -> Vec<String> {
    let mut w = Vec::new();
    let law = f.setup.layout.law.name();
    if f.fit.in_best_basin * 2 < f.fit.starts {
        w.push(format!(
            "{law}: only {} of {} starts reached the best objective: the fit has several minima; fix parameters or add runs",
            f.fit.in_best_basin, f.fit.starts
        ));
    }
    if let Some((name, s)) = &f.fit.spread
        && *s > 0.05
    {
        w.push(format!(
            "{law}: starts reaching the best objective disagree on {name} by {:.0} %: the data do not separate it \
             (fix it with --fix {name}=...)",
            100.0 * s
        ));
    }
    if f.bootstrap > 0 && f.failed * 20 > f.bootstrap {
        w.push(format!("{law}: {} of {} bootstrap refits failed", f.failed, f.bootstrap));
    }
    for i in f.setup.free() {
        if let Some((_, (lo, hi))) = f.ci(i) {
            let v = f.fit.params[i];
            if hi - lo > v.abs() {
                let name = &f.setup.layout.names[i];
                w.push(format!(
                    "{law}: {name} = {} has a 95 % interval [{}, {}] wider than its value: the data cannot pin {name} \
                     down (fix it with --fix {name}=... or add runs)",
                    num(v),
                    num(lo),
                    num(hi)
                ));
            }
        }
    }
    w
}

fn implied_rho(dec: &LawFit, main: &LawFit, runs: &[Run]) -> Vec<Implied> {
    let layout = &dec.setup.layout;
    layout
        .keys
        .iter()
        .enumerate()
        .filter_map(|(k, key)| {
            let with: Vec<&Run> = runs.iter().filter(|r| r.key().as_deref() == Some(key.as_str())).collect();
            let first = *with.first()?;
            let i = GLOBALS.len() + k;
            let (law, law_ci68) = main.rho(first);
            Some(Implied {
                key: key.clone(),
                runs: with.len(),
                comps: [("W", &first.w), ("A", &first.a)]
                    .into_iter()
                    .filter_map(|(t, c)| c.as_ref().map(|c| (t, c.family.clone(), c.gmse)))
                    .collect(),
                implied: dec.fit.params[i],
                implied_ci68: dec.ci(i).map(|c| c.0),
                law,
                law_ci68,
            })
        })
        .collect()
}

/// For configurations that combine compressions (weights and activations, or a composed SPEC
/// `A+B`): the implied rho beside the product of the single configurations' implied rho. A
/// single configuration is looked up as weights first, then activations (the same format on
/// either tensor).
pub(crate) fn factorize(implied: &[Implied]) -> Vec<Factor> {
    // A part is looked up in its own role first (the activation part of `W:int4 A:int8` is the
    // activation-only configuration `A:int8`), else in the other role (the same format's
    // weight-only rho stands in when no activation-only runs exist; the report names the key used).
    let single = |role: &str, fmt: &str| {
        let other = if role == "A" { "W" } else { "A" };
        [role, other]
            .iter()
            .find_map(|t| implied.iter().find(|i| i.key == format!("{t}:{fmt}")).map(|i| (i.key.clone(), i.implied)))
    };
    let mut out = Vec::new();
    for im in implied {
        let roles: Vec<(&str, &str)> = im.key.split(' ').filter_map(|p| p.split_once(':')).collect();
        let parts: Vec<(&str, &str)> = if roles.len() > 1 {
            roles
        } else {
            let Some(&(role, fmt)) = roles.first() else {
                continue;
            };
            let p = host_core::spec::split_parts(fmt);
            if p.len() < 2 {
                continue;
            }
            p.into_iter().map(|f| (role, f)).collect()
        };
        let found: Option<Vec<(String, f64)>> = parts.iter().map(|(r, f)| single(r, f.trim())).collect();
        if let Some(found) = found
            && found.iter().all(|(k, _)| *k != im.key)
        {
            let product = found.iter().map(|p| p.1).product();
            out.push(Factor { key: im.key.clone(), implied: im.implied, parts: found, product });
        }
    }
    out
}

/// Six significant digits, scientific outside [1e-3, 1e6).
pub fn num(v: f64) -> String {
    let m = v.abs();
    if !v.is_finite() {
        return "-".into();
    }
    if m == 0.0 || (1e-3..1e6).contains(&m) {
        let decimals = (5 - m.log10().floor().max(-3.0) as i32).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.5e}")
    }
}

fn iv(c: Option<(f64, f64)>) -> serde_json::Value {
    c.map_or(serde_json::Value::Null, |(a, b)| serde_json::json!([a, b]))
}

fn form_text(law: LawKind) -> &'static str {
    match law {
        LawKind::Chinchilla => "rho = 1",
        LawKind::Unified => "rho = L tanh(F x)^C, x = log_1/4 GMSE, per family, W x A",
        LawKind::Logistic => "rho = 1 / (1 + b GMSE^a), per family, W x A",
        LawKind::Logistic10 => "rho = (1 - GMSE^a) / (1 + b GMSE^a), per family, W x A",
        LawKind::Decoupled => "one free rho per compressed configuration",
        LawKind::Precision => "rho = 1 - exp(-P / gamma), P = bits, W x A",
    }
}

impl Report {
    /// Parameter by name.
    pub fn get(&self, name: &str) -> Option<&ParamReport> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Loss RMSE of the reported law.
    pub fn rmse(&self) -> f64 {
        self.main.rmse
    }

    /// The comparison row of `law`.
    pub fn compared(&self, law: LawKind) -> Option<&CompareRow> {
        self.comparison.iter().find(|r| r.law == law)
    }

    /// The `--json` object.
    pub fn to_json(&self) -> serde_json::Value {
        let m = &self.main;
        let params: serde_json::Map<String, serde_json::Value> = self
            .params
            .iter()
            .map(|p| {
                let v =
                    serde_json::json!({ "value": p.value, "fixed": p.fixed, "ci68": iv(p.ci68), "ci95": iv(p.ci95) });
                (p.name.clone(), v)
            })
            .collect();
        let f = |x: f64| if x.is_finite() { serde_json::json!(x) } else { serde_json::Value::Null };
        serde_json::json!({
            "law": m.setup.layout.law.name(),
            "form": m.setup.layout.law.form(),
            "families": m.setup.layout.families,
            "params": params,
            "rmse": m.rmse,
            "objective": m.fit.objective,
            "delta": m.setup.delta,
            "runs": self.runs.len(),
            "starts": m.fit.starts,
            "starts_in_best_basin": m.fit.in_best_basin,
            "bootstrap": m.bootstrap,
            "bootstrap_failed": m.failed,
            "warnings": self.warnings,
            "identified": self.not_identified.is_empty(),
            "not_identified": self.not_identified,
            "comparison": self.comparison.iter().map(|r| serde_json::json!({
                "law": r.law.name(), "free": r.free, "objective": f(r.objective), "rmse": f(r.rmse), "note": r.note,
            })).collect::<Vec<_>>(),
            "implied_rho": self.implied.iter().map(|i| serde_json::json!({
                "config": i.key, "runs": i.runs,
                "tensors": i.comps.iter().map(|(t, fam, g)| serde_json::json!({"tensor": t, "family": fam, "gmse": g})).collect::<Vec<_>>(),
                "implied": i.implied, "implied_ci68": iv(i.implied_ci68), "law": i.law, "law_ci68": iv(i.law_ci68),
            })).collect::<Vec<_>>(),
            "factorization": self.factorization.iter().map(|x| serde_json::json!({
                "config": x.key, "implied": x.implied, "product": x.product,
                "parts": x.parts.iter().map(|(k, r)| serde_json::json!({"config": k, "implied": r})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "residuals": self.residuals.iter().map(|r| serde_json::json!({
                "n": r.n, "d": r.d, "config": r.key, "observed": r.observed, "predicted": r.predicted,
                "log_residual": (r.predicted / r.observed).ln(),
            })).collect::<Vec<_>>(),
        })
    }

    /// The text report: [`Report::summary_text`], then the per-run residuals.
    pub fn to_text(&self) -> String {
        let mut s = self.summary_text();
        s += "\nper-run residuals:\n";
        s +=
            &format!("{:>11} {:>11} {:<34} {:>9} {:>9} {:>9}\n", "N", "D", "config", "observed", "predicted", "ln o/p");
        for r in &self.residuals {
            s += &format!(
                "{:>11.4e} {:>11.4e} {:<34} {:>9.4} {:>9.4} {:>+9.4}\n",
                r.n,
                r.d,
                r.key,
                r.observed,
                r.predicted,
                (r.observed / r.predicted).ln()
            );
        }
        s
    }

    /// The text report without the per-run residuals: parameters, the law comparison, implied
    /// rho and the factorization check.
    pub fn summary_text(&self) -> String {
        let m = &self.main;
        let law = m.setup.layout.law;
        let mut s = String::new();
        if !self.not_identified.is_empty() {
            s += &format!("NOT IDENTIFIED (not a result): {}\n", self.not_identified.join("; "));
        }
        s += &format!(
            "law {} ({} runs): Loss = A (N rho)^-alpha + B D^-beta + E; {}\n",
            law.name(),
            self.runs.len(),
            form_text(law)
        );
        s += &format!("{:<14} {:>12} {:>27} {:>27}\n", "param", "value", "ci68", "ci95");
        let civ = |c: Option<(f64, f64)>, fixed: bool| match c {
            Some((a, b)) => format!("[{}, {}]", num(a), num(b)),
            None if fixed => "fixed".to_string(),
            None => "-".to_string(),
        };
        for p in &self.params {
            s += &format!(
                "{:<14} {:>12} {:>27} {:>27}\n",
                p.name,
                num(p.value),
                civ(p.ci68, p.fixed),
                civ(p.ci95, p.fixed)
            );
        }
        s += &format!("loss RMSE {:.5}   Huber objective {:.6e} (delta {})\n", m.rmse, m.fit.objective, m.setup.delta);
        s += &format!("starts in best basin: {} of {}", m.fit.in_best_basin, m.fit.starts);
        if m.bootstrap > 0 {
            s += &format!("   bootstrap: {} resamples over runs ({} failed)", m.bootstrap, m.failed);
        }
        s.push('\n');
        if self.comparison.len() > 1 {
            s += "\nlaws fitted to the same runs (same --fix):\n";
            s += &format!("{:<11} {:>5} {:>14} {:>9}  note\n", "law", "free", "objective", "RMSE");
            for r in &self.comparison {
                let obj = if r.objective.is_finite() { format!("{:.6e}", r.objective) } else { "-".into() };
                let rmse = if r.rmse.is_finite() { format!("{:.5}", r.rmse) } else { "-".into() };
                s += &format!("{:<11} {:>5} {:>14} {:>9}  {}\n", r.law.name(), r.free, obj, rmse, r.note);
            }
        }
        if !self.implied.is_empty() {
            s += &format!(
                "\nimplied rho per configuration (decoupled fit, 68 % over {} resamples) vs the {} law's rho:\n",
                self.decoupled.as_ref().map_or(0, |d| d.samples.len()),
                law.name()
            );
            s += &format!(
                "{:<34} {:>4} {:>11} {:>24} {:>24}\n",
                "config", "runs", "GMSE", "implied [68 %]", "law [68 %]"
            );
            for i in &self.implied {
                let g: Vec<String> = i.comps.iter().map(|c| format!("{:.4e}", c.2)).collect();
                let both = |v: f64, c: Option<(f64, f64)>| match c {
                    Some((a, b)) => format!("{v:.4} [{a:.3}, {b:.3}]"),
                    None => format!("{v:.4}"),
                };
                s += &format!(
                    "{:<34} {:>4} {:>11} {:>24} {:>24}\n",
                    i.key,
                    i.runs,
                    g.join("/"),
                    both(i.implied, i.implied_ci68),
                    both(i.law, i.law_ci68)
                );
            }
        }
        if !self.factorization.is_empty() {
            s += "\nfactorization (DESIGN.md 2.3): implied rho of a combined configuration vs the product of its parts:\n";
            for f in &self.factorization {
                let parts: Vec<String> = f.parts.iter().map(|(k, r)| format!("{r:.4} ({k})")).collect();
                s += &format!(
                    "  {}: implied {:.4} vs product {:.4} = {}\n",
                    f.key,
                    f.implied,
                    f.product,
                    parts.join(" x ")
                );
            }
        }
        s
    }

    /// The SVG plots: (file name, SVG text).
    pub fn plots(&self) -> Result<Vec<(String, String)>, String> {
        super::plots::plots(self)
    }

    /// The law file for `host rank --law`.
    pub fn law_file(&self, args: &FitArgs) -> Result<String, String> {
        super::lawfile::write(self, args)
    }
}
