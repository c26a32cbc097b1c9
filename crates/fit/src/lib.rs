//! `host-fit`. Owns: run records in, a fitted scaling law out (report, plots, law file).
//! Never: loads plugins itself (SPECs without a GMSE are measured through
//! `host_core::session`), trains, or depends on `host-sweep`, `host-validate` or the binary.
//!
//! `host fit`: fit a scaling law to training runs (DESIGN.md 2.1-2.3), say
//! how certain the fit is, refuse when the data cannot identify it, and hand
//! the result to `host rank` as a law file.
//!
//! - [`data`]: runs in (CSV, the trainer's JSON records), column mapping, row filters.
//! - [`model`]: the laws (chinchilla, unified tanh, logistic, logistic10,
//!   decoupled, precision), their parameters and predicted loss with gradient.
//! - [`solve`]: Huber objective on log residuals, L-BFGS (argmin, More-Thuente)
//!   from a grid of starts, seeded rayon bootstrap over runs.
//! - [`report`]: the report (parameters with 68/95 % intervals, residuals,
//!   implied rho per format, law comparison, factorization check), JSON, SVG
//!   plots, the law file.

pub mod data;
pub mod lawfile;
pub mod model;
pub mod plots;
pub mod report;
pub mod solve;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

pub use data::{Dataset, Run, Table, read_runs};
pub use model::{LawKind, Layout};
pub use report::Report;
pub use solve::{Fit, Setup};

/// `host fit`.
#[derive(Args, Debug, Clone)]
pub struct FitArgs {
    /// Training runs: a CSV file, a JSON-lines / JSON file of run records (`host train --json`
    /// output), or a folder of such records.
    pub runs: PathBuf,
    /// Law to fit and report (the others are fitted too, for the comparison table).
    #[arg(long, value_enum, default_value_t = LawKind::Unified)]
    pub law: LawKind,
    /// Column names: `n=COL,d=COL,loss=COL,w_gmse=COL,a_gmse=COL,w_format=COL,a_format=COL,
    /// w_bits=COL,a_bits=COL,family=COL`. Empty GMSE = uncompressed; `na` = row skipped; a format
    /// SPEC without a GMSE is measured through the plugins (`--plugins`).
    #[arg(long, value_name = "KEY=COL,...")]
    pub map: Option<String>,
    /// Keep only rows where column COL equals one of the values. Repeatable; all must hold.
    #[arg(long = "where", value_name = "COL=V1|V2")]
    pub filters: Vec<String>,
    /// Fix parameters: `alpha=0.13,beta=0.33,E=1.3,L=1` (a per-family name such as `L` fixes it
    /// in every family; `L[sparse]=1` in one). Values must be positive, except `B=0`, which drops
    /// the data term (for runs whose D is proportional to N, where it cannot be told from the
    /// parameter term).
    #[arg(long, value_name = "NAME=V,...")]
    pub fix: Option<String>,
    /// Bound parameters: `L=0.5:1.5,E=1:2` (positive bounds).
    #[arg(long, value_name = "NAME=LO:HI,...")]
    pub bound: Option<String>,
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
    /// Skip fitting the other laws (no comparison table, no implied rho / factorization check).
    #[arg(long)]
    pub no_compare: bool,
    /// Fit anyway when an identifiability check would refuse (the warnings stay).
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Write SVG plots into this folder: rho vs GMSE (`rho-vs-gmse.svg`) and loss vs N
    /// (`loss-vs-n.svg`).
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Write the fitted law as a law file for `host rank --law` (unified, logistic or
    /// logistic10), with its data, method and bootstrap samples.
    #[arg(long, value_name = "FILE.toml")]
    pub write_law: Option<PathBuf>,
    /// Plugins for measuring formats given only as SPECs (repeatable). Default: `./plugins` if
    /// that folder exists, else the folder holding the host executable, then the folders in
    /// HOST_PLUGIN_PATH (colon-separated).
    #[arg(long, value_name = "PATH")]
    pub plugins: Vec<PathBuf>,
}

/// Parses `--fix NAME=V,...` against `layout`. With `strict`, unknown names are errors;
/// otherwise they are ignored (the comparison laws lack some parameters).
pub fn parse_fix(s: &str, layout: &Layout, strict: bool) -> Result<BTreeMap<usize, f64>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in data::parse_pairs(s)? {
        let x: f64 = v.parse().map_err(|_| format!("--fix {k}: `{v}` is not a number"))?;
        // B = 0 drops the data term (runs with D proportional to N cannot tell it from the
        // parameter term); every other parameter must be positive.
        let zero_ok = k.trim() == "B" && x == 0.0;
        if !(zero_ok || x > 0.0 && x.is_finite()) {
            return Err(format!("--fix {k}: must be positive (got {v}; only B may be 0, which drops the data term)"));
        }
        let idx = layout.resolve(&k);
        if idx.is_empty() && strict {
            return Err(format!(
                "--fix: `{k}` is not a parameter of the {} law (parameters: {})",
                layout.law.name(),
                layout.names.join(", ")
            ));
        }
        for i in idx {
            out.insert(i, x);
        }
    }
    Ok(out)
}

/// Parses `--bound NAME=LO:HI,...` against `layout`.
pub fn parse_bounds(s: &str, layout: &Layout, strict: bool) -> Result<BTreeMap<usize, (f64, f64)>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in data::parse_pairs(s)? {
        let bad = || format!("--bound {k}: expected LO:HI with 0 < LO < HI, got `{v}`");
        let (lo, hi) = v.split_once(':').ok_or_else(bad)?;
        let (lo, hi): (f64, f64) = (lo.parse().map_err(|_| bad())?, hi.parse().map_err(|_| bad())?);
        if !(lo > 0.0 && hi > lo && hi.is_finite()) {
            return Err(bad());
        }
        let idx = layout.resolve(&k);
        if idx.is_empty() && strict {
            return Err(format!("--bound: `{k}` is not a parameter of the {} law", layout.law.name()));
        }
        for i in idx {
            out.insert(i, (lo, hi));
        }
    }
    Ok(out)
}

/// Identifiability checks before fitting: refusals (the fit would be meaningless) and warnings.
pub fn check_data(setup: &Setup, runs: &[Run]) -> (Vec<String>, Vec<String>) {
    let (mut refuse, mut warn) = (Vec::new(), Vec::new());
    let free = setup.free_names();
    if runs.len() < free.len() + 2 {
        refuse.push(format!(
            "{} runs cannot identify {} free parameters (need at least {}): fix some with --fix or add runs",
            runs.len(),
            free.len(),
            free.len() + 2
        ));
    }
    let span = |f: &dyn Fn(&Run) -> f64| {
        let (lo, hi) = runs.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| (lo.min(f(r)), hi.max(f(r))));
        (hi / lo).log10()
    };
    let n_span = span(&|r| r.n);
    if free.contains(&"alpha") && n_span < 0.5 {
        refuse.push(format!(
            "N spans {n_span:.2} decades (< 0.5): the parameter term (A, alpha) cannot be told apart from E; \
             add model sizes or fix alpha (--fix alpha=0.13)"
        ));
    }
    let d_span = span(&|r| r.d);
    if free.contains(&"beta") && d_span < 0.3 {
        warn.push(format!(
            "D spans {d_span:.2} decades: the data term (B, beta) is barely constrained; consider --fix beta=0.33"
        ));
    }
    if setup.layout.law != LawKind::Chinchilla && !runs.iter().any(|r| r.key().is_some()) {
        warn.push("no run is compressed: the capacity parameters are not constrained by the data".into());
    }
    (refuse, warn)
}

/// `count` runs generated from the unified law with parameters `truth` (layout of
/// [`LawKind::Unified`] with one family): model sizes log-spaced over 3e7-8e8, 25/50/100 tokens
/// per parameter, and weight/activation GMSE cycling through uncompressed, W2, W4A4, W3A3 and W6
/// (optimal uniform grids); multiplicative noise uniform in +-`noise`/2, seeded.
pub fn synthetic_runs(truth: &[f64], count: usize, noise: f64, seed: u64) -> Vec<Run> {
    const CONFIGS: [(Option<f64>, Option<f64>); 5] = [
        (None, None),
        (Some(0.1175), None),
        (Some(0.0095), Some(0.0095)),
        (Some(0.0345), Some(0.0345)),
        (Some(0.0025), None),
    ];
    let layout = Layout::new(LawKind::Unified, &[Run::simple(1.0, 1.0, 1.0, Some(0.1), None)]).expect("layout");
    let mut rng = solve::SplitMix64(seed);
    let sizes = count.div_ceil(CONFIGS.len() * 3).max(2);
    (0..count)
        .map(|i| {
            let (cfg, tpp, size) = (i % CONFIGS.len(), (i / CONFIGS.len()) % 3, i / (CONFIGS.len() * 3));
            let n = (3e7f64.ln() + (8e8f64 / 3e7).ln() * size as f64 / (sizes - 1) as f64).exp();
            let d = n * [25.0, 50.0, 100.0][tpp];
            let r = Run::simple(n, d, 0.0, CONFIGS[cfg].0, CONFIGS[cfg].1);
            let pre = layout.precompute(std::slice::from_ref(&r));
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let loss = layout.predict(truth, &pre[0], None) * (1.0 + noise * (u - 0.5));
            Run { loss, ..r }
        })
        .collect()
}

/// Runs `host fit`.
pub fn run(args: FitArgs, verbose: bool) -> Result<(), String> {
    let table = Table::read(&args.runs)?;
    let mut data =
        read_runs(&table, args.map.as_deref(), &args.filters).map_err(|e| format!("{}: {e}", args.runs.display()))?;
    if !data.pending.is_empty() {
        let specs: Vec<String> = data.pending.iter().cloned().collect();
        eprintln!("host: measuring GMSE of {} formats given only as SPECs", specs.len());
        let (measured, d) = host_core::session::measure_specs(&args.plugins, &specs, args.threads);
        d.report(verbose);
        let measured = measured?;
        data.fill(&measured);
    }
    for w in &data.warnings {
        host_core::diag::warn(w);
    }
    if let Some(e) = &data.unmeasured {
        host_core::diag::fail(e);
    }
    if args.delta.is_nan() || args.delta <= 0.0 {
        return Err("--delta must be positive".into());
    }
    let go = || report::build(&args, &data.runs);
    let report = host_core::session::with_threads(args.threads, go)??;
    for w in &report.warnings {
        host_core::diag::warn(w);
    }
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir).map_err(|e| format!("--plot {}: {e}", dir.display()))?;
        for (name, svg) in report.plots()? {
            let path = dir.join(name);
            std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("host: wrote {}", path.display());
        }
    }
    if let Some(path) = &args.write_law {
        let text = report.law_file(&args)?;
        std::fs::write(path, text).map_err(|e| format!("--write-law {}: {e}", path.display()))?;
        eprintln!("host: wrote law file {} (use it with `host rank --law {}`)", path.display(), path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json()).map_err(|e| e.to_string())?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
