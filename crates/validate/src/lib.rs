//! `host-validate`. Owns: the validation study's numbers from collected runs. Never: loads
//! plugins, trains or measures (it reads records; the refit goes through `host-fit`), or
//! depends on `host-sweep` or the binary.
//!
//! `host validate`: does GMSE / rho predict the trained loss? The numbers of
//! a validation study, recomputed from collected training records by one
//! command.
//!
//! - [`study`]: the runs (sweep `results.jsonl`, `.jsonl` / `.csv` files, read
//!   with `host_fit`'s readers) grouped into model sizes, configurations
//!   and seeds.
//! - [`stats`]: Spearman, Kendall tau-b, pooled seed SD, bootstrap over seeds.
//! - [`sections`]: the five sections (a. correlations, b. the law refit,
//!   c. held-out prediction, d. factorization, e. noise vs quantizer).
//! - [`render`]: text and JSON; [`plots`]: SVG charts.
//!
//! Exit status: 0 when every section was computed, 2 when some could not be
//! (each says why in one line), 1 when none could (e.g. no training rows).

pub mod plots;
pub mod render;
pub mod sections;
pub mod stats;
pub mod study;

use std::path::PathBuf;

use clap::Args;

use sections::{FactorSection, FitSettings, HeldOutSection, NoisePair, SizeCorrelation};
use study::{ReadOptions, Study};

/// `host validate`.
#[derive(Args, Debug, Clone)]
pub struct ValidateArgs {
    /// Sweep results folders (their `results.jsonl`, written by `host sweep collect`) or
    /// `.jsonl` / `.json` / `.csv` files of the same rows (`host train --json` records too). Rows
    /// whose `type` is not `train` are ignored. Columns as for `host fit` (`non_embedding_params`,
    /// `tokens`, `val_loss`, `format`, `act_format`, `w_gmse`, `a_gmse`, `w_family`, ...) plus
    /// `model`, `seed`, `data`, `w_rho`, `a_rho`, `stale`.
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,
    /// Keep only rows where column COL equals one of the values (e.g. one data set:
    /// `--where 'data=...'`). Repeatable; all must hold.
    #[arg(long = "where", value_name = "COL=V1|V2")]
    pub filters: Vec<String>,
    /// Column names, as for `host fit --map`.
    #[arg(long, value_name = "KEY=COL,...")]
    pub map: Option<String>,
    /// Law file for the rho of section a (default: the records' `w_rho` x `a_rho`, else the
    /// built-in law).
    #[arg(long, value_name = "FILE.toml")]
    pub law: Option<PathBuf>,
    /// Fix parameters of the fits of sections b and c, as for `host fit` (`none`: fix nothing).
    /// Default: fit every parameter the runs can identify, fixing only alpha = 0.13 when N spans
    /// less than half a decade, dropping the data term (B = 0; beta = 0.33, inert) when every
    /// run has the same tokens per parameter (D proportional to N: the two terms cannot be told
    /// apart), L = 1 for a family with fewer than 3 distinct GMSE values and its C (default
    /// law) as well; the report says which and why.
    #[arg(long, value_name = "NAME=V,...")]
    pub fix: Option<String>,
    /// Bound parameters, as for `host fit --bound`.
    #[arg(long, value_name = "NAME=LO:HI,...")]
    pub bound: Option<String>,
    /// Huber threshold of the fits (log-loss residuals).
    #[arg(long, default_value_t = 1e-3)]
    pub delta: f64,
    /// Bootstrap resamples: over seeds (section a) and over runs (section b's unified law; the
    /// decoupled fit behind section d uses at most 200).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of every bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: RAYON_NUM_THREADS, else all cores). Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Fit even when an identifiability check would refuse (the warnings stay).
    #[arg(long)]
    pub force: bool,
    /// Leave out results marked `stale` (kept by `host sweep collect --keep-stale`).
    #[arg(long)]
    pub drop_stale: bool,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Write SVG charts into this folder: loss vs GMSE per model size (seed error bars) and
    /// held-out predicted vs observed loss.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
}

/// Everything `host validate` computed.
#[derive(Debug, Clone)]
pub struct Validation {
    /// The runs.
    pub study: Study,
    /// Fit settings of sections b and c.
    pub settings: FitSettings,
    /// a. Correlations per model size.
    pub correlations: Result<Vec<SizeCorrelation>, String>,
    /// b. The unified law refit (host fit's report).
    pub law: Result<host_fit::Report, String>,
    /// c. Held-out prediction.
    pub held_out: Result<HeldOutSection, String>,
    /// d. Factorization.
    pub factorization: Result<FactorSection, String>,
    /// e. Noise vs quantizer.
    pub noise: Result<Vec<NoisePair>, String>,
}

impl Validation {
    /// Computes every section.
    pub fn compute(study: Study, settings: FitSettings) -> Validation {
        let correlations = sections::correlations(&study, settings.bootstrap, settings.seed);
        let law = sections::law_fit(&study, &settings);
        let start = law.as_ref().ok().map(|r| (&r.main.setup.layout, r.main.fit.params.as_slice()));
        let held_out = sections::held_out(&study, &settings, start);
        let factorization = match &law {
            Ok(r) => sections::factorization(&study, r),
            Err(_) => sections::factorization_alone(&study, &settings),
        };
        let noise = sections::noise_pairs(&study);
        Validation { study, settings, correlations, law, held_out, factorization, noise }
    }

    /// (section letter, title, why it was not computed) of every section.
    pub fn sections(&self) -> [(&'static str, &'static str, Option<&str>); 5] {
        fn why<T>(r: &Result<T, String>) -> Option<&str> {
            r.as_ref().err().map(String::as_str)
        }
        [
            ("a", "correlations", why(&self.correlations)),
            ("b", "law", why(&self.law)),
            ("c", "held_out", why(&self.held_out)),
            ("d", "factorization", why(&self.factorization)),
            ("e", "noise", why(&self.noise)),
        ]
    }

    /// Exit status: 0 all sections, 2 some, 1 none.
    pub fn exit_code(&self) -> i32 {
        let missing = self.sections().iter().filter(|s| s.2.is_some()).count();
        match missing {
            0 => 0,
            5 => 1,
            _ => 2,
        }
    }
}

/// The fit settings from the options (the default `--fix` computed from the runs).
pub fn settings(args: &ValidateArgs, study: &Study) -> FitSettings {
    let (fix, why, user) = match args.fix.as_deref().map(str::trim) {
        Some("none") | Some("") => (None, Vec::new(), true),
        Some(f) => (Some(f.to_string()), Vec::new(), true),
        None => {
            let d = sections::default_fix(&study.runs);
            let spec = d.iter().map(|(k, v, _)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            let why = d.into_iter().map(|(k, v, w)| (format!("{k}={v}"), w)).collect();
            ((!spec.is_empty()).then_some(spec), why, false)
        }
    };
    FitSettings {
        fix,
        why,
        user,
        bound: args.bound.clone(),
        delta: args.delta,
        force: args.force,
        bootstrap: args.bootstrap,
        seed: args.seed,
    }
}

/// Runs `host validate`; returns the exit status (errors that stop everything are `Err`).
pub fn run(args: ValidateArgs, _verbose: bool) -> Result<i32, String> {
    if args.delta.is_nan() || args.delta <= 0.0 {
        return Err("--delta must be positive".into());
    }
    let law = match &args.law {
        Some(p) => Some((p.clone(), host_core::law::Law::from_file(p)?)),
        None => None,
    };
    let opts = ReadOptions { map: args.map.clone(), filters: args.filters.clone(), law, drop_stale: args.drop_stale };
    let study = Study::read(&args.results, &opts)?;
    for w in &study.warnings {
        host_core::diag::warn(w);
    }
    let settings = settings(&args, &study);
    let v = host_core::session::with_threads(args.threads, || Validation::compute(study, settings))?;
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir).map_err(|e| format!("--plot {}: {e}", dir.display()))?;
        for (name, svg) in plots::plots(&v) {
            let path = dir.join(name);
            match svg {
                Ok(svg) => {
                    std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
                    eprintln!("host: wrote {}", path.display());
                }
                Err(e) => host_core::diag::warn(format!("no plot {}: {e}", path.display())),
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&render::json(&v)).map_err(|e| e.to_string())?);
    } else {
        print!("{}", render::text(&v));
    }
    for (letter, name, why) in v.sections() {
        if let Some(why) = why {
            host_core::diag::warn(format!("section {letter} ({name}) not computed: {why}"));
        }
    }
    Ok(v.exit_code())
}

#[cfg(test)]
mod tests;
