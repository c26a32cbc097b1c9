//! The five sections of `host validate`, each computed from a [`Study`]:
//!
//! - a. [`correlations`]: per model size, Spearman and Kendall tau-b between
//!   GMSE and mean loss (scalar weight-only configurations) and between rho and
//!   mean loss (all configurations), with bootstrap intervals over seeds; the
//!   pairs of formats whose loss order contradicts their GMSE order.
//! - b. [`law_fit`]: the unified law refitted on the runs (`host_fit::report`).
//! - c. [`held_out`]: leave one format out, refit, predict it from its GMSE.
//! - d. [`factorization`]: implied rho of combined configurations against the
//!   product of their parts (the fit report's check, with intervals).
//! - e. [`noise_pairs`]: noise injection against the quantizer of closest GMSE.
//!
//! Each returns `Err(one line)` when it cannot be computed on these runs.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::stats::{self, Estimate, kendall_tau_b, spearman};
use super::study::{Class, Config, Study};
use host_core::law::{Capacity, Law};
use host_fit::model::GLOBALS;
use host_fit::report::Report;
use host_fit::{FitArgs, LawKind, Layout, Run, Setup, check_data, parse_bounds, parse_fix};

/// Settings shared by the fits of sections b and c.
#[derive(Debug, Clone)]
pub struct FitSettings {
    /// `--fix` as applied (None = nothing fixed).
    pub fix: Option<String>,
    /// Why each parameter is fixed when the default was used: (name=value, reason).
    pub why: Vec<(String, String)>,
    /// Whether `--fix` was given.
    pub user: bool,
    /// `--bound`.
    pub bound: Option<String>,
    /// Huber threshold.
    pub delta: f64,
    /// `--force`.
    pub force: bool,
    /// Bootstrap resamples of section b.
    pub bootstrap: usize,
    /// Seed of every bootstrap.
    pub seed: u64,
}

// ---------------------------------------------------------------- a. correlations

/// Two rank correlations of one pair of variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    /// Configurations in it.
    pub configs: usize,
    /// Spearman's rho.
    pub spearman: Estimate,
    /// Kendall's tau-b.
    pub kendall: Estimate,
}

/// A pair of formats whose loss order contradicts their GMSE order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBreak {
    /// The format with the lower GMSE (and the higher loss).
    pub lower: String,
    /// The format with the higher GMSE.
    pub higher: String,
    /// Their GMSE.
    pub gmse: (f64, f64),
    /// Their mean loss.
    pub loss: (f64, f64),
    /// Standard error of the loss difference from seed noise:
    /// `pooled seed SD * sqrt(1/seeds_lower + 1/seeds_higher)`.
    pub se: Option<f64>,
    /// `(loss_lower - loss_higher) / se` (> 0).
    pub z: Option<f64>,
}

/// Section a at one model size.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeCorrelation {
    /// Index into the study's sizes.
    pub size: usize,
    /// GMSE vs mean loss over the scalar weight-only configurations (expected positive).
    pub gmse: Result<Correlation, String>,
    /// rho vs mean loss over every configuration (expected negative).
    pub rho: Result<Correlation, String>,
    /// Pairs breaking the GMSE order, largest `z` first.
    pub breaks: Vec<OrderBreak>,
    /// Bootstrap resamples made (0 when every configuration has one seed: no intervals).
    pub resamples: usize,
}

/// Correlations need this many configurations (two points always correlate perfectly).
pub const MIN_CONFIGS: usize = 3;

/// Section a: every size's correlations.
pub fn correlations(study: &Study, bootstrap: usize, seed: u64) -> Result<Vec<SizeCorrelation>, String> {
    let out: Vec<SizeCorrelation> =
        (0..study.sizes.len()).map(|s| size_correlation(study, s, bootstrap, seed)).collect();
    if out.iter().all(|c| c.gmse.is_err() && c.rho.is_err()) {
        return Err(format!(
            "no model size has {MIN_CONFIGS} or more configurations with a GMSE or rho to correlate with loss"
        ));
    }
    Ok(out)
}

fn size_correlation(study: &Study, s: usize, bootstrap: usize, seed: u64) -> SizeCorrelation {
    let configs: Vec<&Config> = study.at(s).collect();
    let groups: Vec<Vec<f64>> = configs.iter().map(|c| c.losses.clone()).collect();
    let scalar: Vec<usize> = (0..configs.len()).filter(|&i| configs[i].class == Class::Scalar).collect();
    let with_rho: Vec<usize> = (0..configs.len()).filter(|&i| configs[i].rho.is_some_and(|r| r.is_finite())).collect();
    let gx: Vec<f64> = scalar.iter().map(|&i| configs[i].w_gmse()).collect();
    let rx: Vec<f64> = with_rho.iter().map(|&i| configs[i].rho.unwrap_or(f64::NAN)).collect();
    let pick = |m: &[f64], idx: &[usize]| idx.iter().map(|&i| m[i]).collect::<Vec<f64>>();
    let four = |m: &[f64]| {
        let (gy, ry) = (pick(m, &scalar), pick(m, &with_rho));
        [spearman(&gx, &gy), kendall_tau_b(&gx, &gy), spearman(&rx, &ry), kendall_tau_b(&rx, &ry)]
    };
    let means: Vec<f64> = groups.iter().map(|g| stats::mean(g)).collect();
    let observed = four(&means);
    let pooled = study.sizes[s].pooled;
    let samples = if pooled.is_some() {
        stats::bootstrap_means(&groups, bootstrap, stats::derive_seed(seed, s as u64), four)
    } else {
        Vec::new()
    };
    let est = |k: usize| Estimate::new(observed[k], samples.iter().map(|x| x[k]));
    let corr = |idx: &[usize], k: usize, what: &str| {
        if idx.len() < MIN_CONFIGS {
            Err(format!("{} {what} (need {MIN_CONFIGS})", idx.len()))
        } else {
            Ok(Correlation { configs: idx.len(), spearman: est(k), kendall: est(k + 1) })
        }
    };
    let gmse = corr(&scalar, 0, "scalar weight-only configurations");
    let rho = corr(&with_rho, 2, "configurations with a rho");
    let mut breaks = Vec::new();
    for &i in &scalar {
        for &j in &scalar {
            let (a, b) = (configs[i], configs[j]);
            if a.w_gmse() < b.w_gmse() && means[i] > means[j] {
                let se = pooled.map(|p| p.sd * (1.0 / a.losses.len() as f64 + 1.0 / b.losses.len() as f64).sqrt());
                breaks.push(OrderBreak {
                    lower: a.name(),
                    higher: b.name(),
                    gmse: (a.w_gmse(), b.w_gmse()),
                    loss: (means[i], means[j]),
                    se,
                    z: se.filter(|x| *x > 0.0).map(|x| (means[i] - means[j]) / x),
                });
            }
        }
    }
    breaks.sort_by(|x, y| {
        let key = |b: &OrderBreak| b.z.unwrap_or(b.loss.0 - b.loss.1);
        key(y).total_cmp(&key(x)).then(x.lower.cmp(&y.lower)).then(x.higher.cmp(&y.higher))
    });
    SizeCorrelation { size: s, gmse, rho, breaks, resamples: samples.len() }
}

// ---------------------------------------------------------------- b. the law refit

/// The default `--fix`: what these runs cannot identify, fixed at the paper's Llama / C4 value
/// (alpha), dropped (the data term, B = 0, when D is proportional to N) or fixed at the default
/// law's value for the family (L = 1, C).
pub fn default_fix(runs: &[Run]) -> Vec<(String, f64, String)> {
    let mut out = Vec::new();
    let span = |f: &dyn Fn(&Run) -> f64| {
        let (lo, hi) = runs.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| (lo.min(f(r)), hi.max(f(r))));
        hi / lo
    };
    if span(&|r| r.n).log10() < 0.5 {
        out.push((
            "alpha".into(),
            0.13,
            "N spans less than half a decade: the parameter term cannot be told from E".into(),
        ));
    }
    if span(&|r| r.d / r.n) < 1.01 {
        // With D = k N the data term B D^-beta is a second power law in N: fitted beside the
        // parameter term it trades against A (the fit lands in basins where the term rho acts on
        // vanishes). Dropping it leaves the size dependence to the parameter term.
        out.push((
            "B".into(),
            0.0,
            "every run has the same tokens per parameter, so D is proportional to N and the data term \
             cannot be told from the parameter term: it is dropped and the parameter term carries the size \
             dependence"
                .into(),
        ));
        out.push(("beta".into(), 0.33, "no effect with B = 0 (the paper's Llama / C4 value)".into()));
    }
    let Ok(layout) = Layout::new(LawKind::Unified, runs) else {
        return out;
    };
    let law = Law::default_law();
    for fam in &layout.families {
        let mut g: Vec<f64> = runs.iter().flat_map(Run::comps).filter(|c| c.family == *fam).map(|c| c.gmse).collect();
        g.sort_by(f64::total_cmp);
        g.dedup_by(|a, b| (*a - *b).abs() <= 1e-9 * b.abs());
        let name = |p: &str| if layout.families.len() == 1 { p.to_string() } else { format!("{p}[{fam}]") };
        if g.len() < 3 {
            out.push((
                name("L"),
                1.0,
                format!(
                    "the {fam} family has {} distinct GMSE values (< 3): its curve's level is not identified",
                    g.len()
                ),
            ));
        }
        // Two points leave F and C exactly determined (and free to run off to absurd values when
        // both points cost almost nothing): fit F alone, C from the default law.
        if g.len() < 3
            && let Capacity::Tanh { c, .. } = law.family(fam).0.capacity
        {
            out.push((
                name("C"),
                c,
                format!(
                    "the {fam} family has {} of the 3 GMSE values its curve's shape needs: only F is fitted (C from \
                     the default law)",
                    g.len()
                ),
            ));
        }
    }
    out
}

/// Rewrites `NAME[fam]` entries of a `--fix` / `--bound` string for a layout whose only family is
/// `fam` (there the parameter is named `NAME`): a held-out subset can lose every other family.
fn adapt(spec: &str, layout: &Layout) -> String {
    spec.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return p.to_string();
            };
            let k = k.trim();
            if layout.resolve(k).is_empty()
                && let Some((base, fam)) = k.strip_suffix(']').and_then(|x| x.split_once('['))
                && layout.families.len() == 1
                && layout.families[0] == fam
            {
                return format!("{base}={v}");
            }
            p.to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The unified law's fit setup on `runs` (fixes and bounds adapted to the runs' families).
pub fn setup(runs: &[Run], s: &FitSettings) -> Result<Setup, String> {
    let layout = Layout::new(LawKind::Unified, runs)?;
    let fixed = match &s.fix {
        Some(f) => parse_fix(&adapt(f, &layout), &layout, false)?,
        None => BTreeMap::new(),
    };
    let bounds = match &s.bound {
        Some(b) => parse_bounds(&adapt(b, &layout), &layout, false)?,
        None => BTreeMap::new(),
    };
    Ok(Setup { layout, fixed, bounds, delta: s.delta })
}

/// The arguments `host_fit::report::build` gets for section b.
pub fn fit_args(s: &FitSettings, law: LawKind, bootstrap: usize, compare: bool) -> FitArgs {
    FitArgs {
        runs: "validate".into(),
        law,
        map: None,
        filters: Vec::new(),
        fix: s.fix.clone(),
        bound: s.bound.clone(),
        delta: s.delta,
        bootstrap,
        seed: s.seed,
        threads: None,
        no_compare: !compare,
        force: s.force,
        json: false,
        plot: None,
        write_law: None,
        plugins: Vec::new(),
    }
}

/// Why the law-fitting sections cannot run on these runs (several data sets).
pub fn one_data_set(study: &Study) -> Result<(), String> {
    if study.data_sets.len() > 1 {
        let list: Vec<String> = study.data_sets.iter().map(|d| format!("`{d}`")).collect();
        return Err(format!(
            "the runs come from {} data sets ({}): one law per data set, choose one with --where 'data=...'",
            study.data_sets.len(),
            list.join(", ")
        ));
    }
    Ok(())
}

/// Section b: the unified law with bootstrap, beside the other laws (`host fit`'s report).
pub fn law_fit(study: &Study, s: &FitSettings) -> Result<Report, String> {
    one_data_set(study)?;
    host_fit::report::build(&fit_args(s, LawKind::Unified, s.bootstrap, true), &study.runs)
}

// ---------------------------------------------------------------- c. held-out prediction

/// The prediction of one held-out configuration at one size.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Index into the study's sizes.
    pub size: usize,
    /// Mean observed loss over its seeds.
    pub observed: f64,
    /// Seeds.
    pub seeds: usize,
    /// The law's loss (fitted without this format) from its GMSE.
    pub predicted: f64,
    /// `predicted - observed`.
    pub error: f64,
    /// `error / pooled seed SD of the size` (None without a seed SD).
    pub z: Option<f64>,
}

/// One held-out format.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    /// Its name (weight format, or `W:.. A:..`).
    pub name: String,
    /// Its class.
    pub class: Class,
    /// Runs the law was fitted on (None when not fitted).
    pub fitted_on: Option<usize>,
    /// Why it could not be predicted.
    pub error: Option<String>,
    /// Its predictions, per size.
    pub predictions: Vec<Prediction>,
}

/// Held-out results of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSummary {
    /// The class.
    pub class: Class,
    /// Held-out formats of the class.
    pub formats: usize,
    /// Of which predicted.
    pub predicted: usize,
    /// Predicted formats with a seed SD at one size at least.
    pub formats_with_sd: usize,
    /// Of which within 2 seed SDs at every size that has a seed SD.
    pub formats_within_2sd: usize,
    /// (format, size) predictions with a seed SD.
    pub predictions: usize,
    /// Of which within 2 seed SDs.
    pub within_2sd: usize,
}

/// Section c.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOutSection {
    /// Whether each fit started from section b's optimum (one L-BFGS run) rather than from the
    /// grid of starts.
    pub warm: bool,
    /// Every held-out format.
    pub formats: Vec<HeldOut>,
    /// Per class.
    pub summary: Vec<ClassSummary>,
}

/// Section c: each format (all its runs across sizes and seeds) left out in turn, the unified
/// law fitted on the rest with the settings of section b (no bootstrap), the format's loss at
/// each size predicted from its GMSE alone. The uncompressed runs are never left out. With
/// `start` (section b's layout and optimum), each fit is one L-BFGS run from that optimum (a
/// subset's optimum lies near it); without, the grid of starts of `host fit`.
pub fn held_out(study: &Study, s: &FitSettings, start: Option<(&Layout, &[f64])>) -> Result<HeldOutSection, String> {
    one_data_set(study)?;
    let names: Vec<(String, Class)> = study.names().into_iter().filter(|(_, c)| *c != Class::None).collect();
    if names.len() < 2 {
        return Err(format!("{} compressed formats in the runs: need 2 or more to leave one out", names.len()));
    }
    let formats: Vec<HeldOut> = names.par_iter().map(|(name, class)| hold_out(study, s, start, name, *class)).collect();
    let mut summary = Vec::new();
    for class in Class::ALL {
        let of: Vec<&HeldOut> = formats.iter().filter(|h| h.class == class).collect();
        if of.is_empty() {
            continue;
        }
        let preds = || of.iter().flat_map(|h| h.predictions.iter()).filter(|p| p.z.is_some());
        let within = |p: &Prediction| p.z.is_some_and(|z| z.abs() <= 2.0);
        let with_sd: Vec<&&HeldOut> =
            of.iter().filter(|h| h.error.is_none() && h.predictions.iter().any(|p| p.z.is_some())).collect();
        summary.push(ClassSummary {
            class,
            formats: of.len(),
            predicted: of.iter().filter(|h| h.error.is_none()).count(),
            formats_with_sd: with_sd.len(),
            formats_within_2sd: with_sd
                .iter()
                .filter(|h| h.predictions.iter().filter(|p| p.z.is_some()).all(within))
                .count(),
            predictions: preds().count(),
            within_2sd: preds().filter(|p| within(p)).count(),
        });
    }
    if formats.iter().all(|h| h.error.is_some()) {
        return Err(format!(
            "no held-out format could be predicted (first: {}: {})",
            formats[0].name,
            formats[0].error.clone().unwrap_or_default()
        ));
    }
    Ok(HeldOutSection { warm: start.is_some(), formats, summary })
}

/// `start`'s parameters in the order of `layout` (by name; a per-family name of a one-family
/// layout also matches `NAME[family]`); None when some parameter has no counterpart.
fn map_start(layout: &Layout, start: (&Layout, &[f64])) -> Option<Vec<f64>> {
    let (from, p) = start;
    layout
        .names
        .iter()
        .map(|n| {
            from.index(n)
                .or_else(|| match layout.families.as_slice() {
                    [fam] => from.index(&format!("{n}[{fam}]")),
                    _ => None,
                })
                .map(|i| p[i])
        })
        .collect()
}

fn hold_out(study: &Study, s: &FitSettings, start: Option<(&Layout, &[f64])>, name: &str, class: Class) -> HeldOut {
    let mine: Vec<&Config> = study.configs.iter().filter(|c| c.name() == name).collect();
    let mut out = HeldOut { name: name.into(), class, fitted_on: None, error: None, predictions: Vec::new() };
    let rest: Vec<Run> = study
        .configs
        .iter()
        .filter(|c| c.name() != name)
        .flat_map(|c| c.losses.iter().map(|&l| c.run(&study.sizes[c.size], l)))
        .collect();
    let fitted = (|| -> Result<(Setup, Vec<f64>), String> {
        let setup = setup(&rest, s)?;
        if let Some(c) = mine[0].w.iter().chain(mine[0].a.iter()).find(|c| !setup.layout.families.contains(&c.family)) {
            return Err(format!("no other format of the {} family in the runs: its curve is unknown", c.family));
        }
        let (refuse, _) = check_data(&setup, &rest);
        if !refuse.is_empty() && !s.force {
            return Err(format!("refused: {}", refuse.join("; ")));
        }
        let fit = match start.and_then(|st| map_start(&setup.layout, st)) {
            Some(init) => setup.fit_from(&rest, &init)?,
            None => setup.fit(&rest)?,
        };
        Ok((setup, fit.params))
    })();
    match fitted {
        Err(e) => out.error = Some(e),
        Ok((setup, params)) => {
            out.fitted_on = Some(rest.len());
            for c in mine {
                let size = &study.sizes[c.size];
                let observed = c.mean();
                let run = c.run(size, observed);
                let pre = setup.layout.precompute(std::slice::from_ref(&run));
                let predicted = setup.layout.predict(&params, &pre[0], None);
                let error = predicted - observed;
                out.predictions.push(Prediction {
                    size: c.size,
                    observed,
                    seeds: c.losses.len(),
                    predicted,
                    error,
                    z: size.pooled.filter(|p| p.sd > 0.0).map(|p| error / p.sd),
                });
            }
        }
    }
    out
}

// ---------------------------------------------------------------- d. factorization

/// One factorization check with bootstrap intervals.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorRow {
    /// The combined configuration (decoupled key: `W:int4 A:int8`, or `W:sparse50+int4`).
    pub key: String,
    /// `W+A` or `A+B`.
    pub kind: &'static str,
    /// Its implied rho (decoupled fit).
    pub implied: Estimate,
    /// Product of its parts' implied rho.
    pub product: Estimate,
    /// `implied / product` (1 when capacity factorizes).
    pub ratio: Estimate,
    /// The parts and their implied rho.
    pub parts: Vec<(String, f64)>,
}

/// Section d.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorSection {
    /// The checks.
    pub rows: Vec<FactorRow>,
    /// Bootstrap resamples of the decoupled fit behind the intervals.
    pub resamples: usize,
}

/// Section d from a fit report that has the decoupled fit (its factorization check, with the
/// intervals of the implied rho, the product and their ratio over the decoupled bootstrap).
pub fn factorization(study: &Study, report: &Report) -> Result<FactorSection, String> {
    let combined: Vec<String> = study
        .names()
        .into_iter()
        .filter(|(n, c)| *c == Class::Pair || super::study::is_composition(n))
        .map(|x| x.0)
        .collect();
    if combined.is_empty() {
        return Err("no W+A pairs (act_format other than none) or compositions A+B in the runs".into());
    }
    let dec = report.decoupled.as_ref().ok_or("the decoupled fit was not made")?;
    if report.factorization.is_empty() {
        return Err(format!(
            "no combined configuration ({}) has each of its parts trained alone (weights only) in the runs",
            combined.join(", ")
        ));
    }
    let keys = &dec.setup.layout.keys;
    let index = |k: &str| keys.iter().position(|x| x == k).map(|i| GLOBALS.len() + i);
    let mut rows = Vec::new();
    for f in &report.factorization {
        let (Some(ik), Some(parts)) =
            (index(&f.key), f.parts.iter().map(|(k, _)| index(k)).collect::<Option<Vec<usize>>>())
        else {
            continue;
        };
        let per = |p: &[f64]| (p[ik], parts.iter().map(|&i| p[i]).product::<f64>());
        let samples: Vec<(f64, f64)> = dec.samples.iter().map(|p| per(p)).collect();
        rows.push(FactorRow {
            key: f.key.clone(),
            kind: if f.key.contains(' ') { "W+A" } else { "A+B" },
            implied: Estimate::new(Some(f.implied), samples.iter().map(|x| Some(x.0))),
            product: Estimate::new(Some(f.product), samples.iter().map(|x| Some(x.1))),
            ratio: Estimate::new(Some(f.implied / f.product), samples.iter().map(|x| Some(x.0 / x.1))),
            parts: f.parts.clone(),
        });
    }
    Ok(FactorSection { rows, resamples: dec.samples.len() })
}

/// Section d when section b could not be made: the decoupled law alone (its fit is what the
/// check needs).
pub fn factorization_alone(study: &Study, s: &FitSettings) -> Result<FactorSection, String> {
    one_data_set(study)?;
    let boot = s.bootstrap.min(200);
    let report = host_fit::report::build(&fit_args(s, LawKind::Decoupled, boot, false), &study.runs)?;
    factorization(study, &report)
}

// ---------------------------------------------------------------- e. noise vs quantizer

/// A noise-injection configuration beside the quantizer of closest GMSE.
#[derive(Debug, Clone, PartialEq)]
pub struct NoisePair {
    /// Index into the study's sizes.
    pub size: usize,
    /// The noise format.
    pub noise: String,
    /// The quantizer (weight-only, scalar or vector family).
    pub quantizer: String,
    /// (noise, quantizer) GMSE.
    pub gmse: (f64, f64),
    /// (noise, quantizer) mean loss.
    pub loss: (f64, f64),
    /// (noise, quantizer) seeds.
    pub seeds: (usize, usize),
    /// `loss_noise - loss_quantizer`.
    pub diff: f64,
    /// Its standard error from seed noise: pooled seed SD * sqrt(1/seeds_noise + 1/seeds_quantizer).
    pub se: Option<f64>,
    /// `diff / se`.
    pub z: Option<f64>,
}

/// Section e: each weight-only noise configuration (formats named `noise...`) beside the
/// weight-only quantizer (scalar or vector family, not noise, not a composition) of closest GMSE
/// (in log GMSE) at the same size.
pub fn noise_pairs(study: &Study) -> Result<Vec<NoisePair>, String> {
    let noise: Vec<&Config> =
        study.configs.iter().filter(|c| c.act == "none" && super::study::is_noise(&c.format)).collect();
    if noise.is_empty() {
        return Err("no noise-injection runs (weight formats named noise...) in the runs".into());
    }
    let mut out = Vec::new();
    for n in &noise {
        let g = n.w_gmse();
        let best = study
            .at(n.size)
            .filter(|c| matches!(c.class, Class::Scalar | Class::Vector) && !super::study::is_noise(&c.format))
            .min_by(|a, b| (a.w_gmse() / g).ln().abs().total_cmp(&(b.w_gmse() / g).ln().abs()));
        let Some(q) = best else { continue };
        let (ln, lq) = (n.mean(), q.mean());
        let pooled = study.sizes[n.size].pooled;
        let se = pooled.map(|p| p.sd * (1.0 / n.losses.len() as f64 + 1.0 / q.losses.len() as f64).sqrt());
        out.push(NoisePair {
            size: n.size,
            noise: n.name(),
            quantizer: q.name(),
            gmse: (g, q.w_gmse()),
            loss: (ln, lq),
            seeds: (n.losses.len(), q.losses.len()),
            diff: ln - lq,
            se,
            z: se.filter(|x| *x > 0.0).map(|x| (ln - lq) / x),
        });
    }
    if out.is_empty() {
        return Err("no noise configuration has a weight-only quantizer at the same model size".into());
    }
    Ok(out)
}
