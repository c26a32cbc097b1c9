//! Command line: `host list`, `host rank`, `host bench`, `host law`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sdk::Shape;

use crate::engine::{self, Config, Subject};
use crate::format::{HostFormat, OutlierParams, Outliers, Then};
use crate::law::Law;
use crate::loader::{self, Loaded};
use crate::rank::{self, BitsRow, Budget, By, Entry};
use crate::{bench, output, spec};

/// Rank compressed number formats by the capacity a model trained over them keeps.
///
/// Loads format plugins, measures each format's Gaussian MSE (GMSE) by Monte
/// Carlo on seeded N(0,1) tensors, converts it to a representation capacity
/// rho with a scaling law, and ranks the formats.
#[derive(Parser, Debug)]
#[command(
    name = "host",
    version,
    about,
    long_about,
    after_help = "Exit status: 0 = everything asked for was done; 2 = something failed (a library in the \
                  given paths did not load, a requested format could not be built or measured, a tensor or \
                  run was skipped, a sweep job failed) while the rest was still printed; 1 = nothing could be \
                  done."
)]
pub struct Cli {
    /// Print long reports (e.g. abi_stable's layout dump for incompatible plugins).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List plugins, their format kinds, presets and parameters.
    List(ListArgs),
    /// Measure GMSE and rank formats by capacity, capacity per bit, or predicted loss.
    Rank(RankArgs),
    /// Measure GMSE Monte Carlo throughput (samples/s) through the plugin ABI.
    Bench(BenchArgs),
    /// Apply a format to real tensors (.safetensors or .npy) and report its error per tensor.
    Apply(crate::apply::ApplyArgs),
    /// Print a shipped law file (default: the built-in default law; copy it to make your own),
    /// or list the shipped laws.
    Law(LawArgs),
    /// Train a small Llama-style byte-level language model over a format (quantization-aware,
    /// straight-through) and record its loss, for calibrating the law with `host fit`.
    Train(crate::train::TrainArgs),
    /// Fit a scaling law to training runs (CSV or `host train --json` records): parameters with
    /// bootstrap intervals, identifiability checks, all laws side by side, implied rho per format,
    /// the factorization check, SVG plots, and a law file for `host rank --law`.
    Fit(crate::fit::FitArgs),
    /// Run an experiment file (formats x distributions GMSE, a training grid, a fit) as
    /// independent jobs into one shared results folder: plan, run (locally, as Slurm array or
    /// Kubernetes indexed tasks), status, collect, emit launch scripts.
    Sweep(crate::sweep::SweepArgs),
    /// Write a Markdown report with plots from a sweep's results folder.
    Report(crate::report::ReportArgs),
    /// Does GMSE / rho predict the trained loss? The numbers of a validation study from
    /// collected training runs (sweep results folders, .jsonl or .csv files).
    ///
    /// A configuration is (model, weight format, activation format) on one data set and token
    /// budget; its seeds are repeats. A model size is (data set, model, tokens). The seed SD of
    /// a model size is pooled over its configurations (dof = runs - configurations). Sections:
    ///
    /// a. Per model size: Spearman and Kendall tau-b (ties handled) between GMSE and mean loss
    /// over the scalar weight-only configurations (noise and compositions excluded; expected
    /// positive) and between rho (w_rho x a_rho of the records, or --law) and mean loss over
    /// every configuration, uncompressed included (expected negative); 68/95 % intervals from
    /// --bootstrap resamples of the seeds within each configuration. Then every pair of scalar
    /// formats whose loss order contradicts their GMSE order, with the loss difference in
    /// standard errors (seed SD * sqrt(1/n1 + 1/n2)), largest first.
    ///
    /// b. The unified law refitted on the runs (host fit's report: parameters with 68/95 %
    /// bootstrap intervals over runs, every other law side by side, implied rho, the fitter's
    /// refusals and warnings); which parameters are fixed and why.
    ///
    /// c. Held-out prediction: each format (all its sizes and seeds) left out in turn, the
    /// unified law fitted on the rest with b's settings (no bootstrap), the format's loss
    /// predicted from its GMSE alone; error = predicted - observed mean in seed SDs, and per
    /// family (scalar, sparse, vector, other = noise / compositions, W+A) the fraction within 2
    /// seed SDs.
    ///
    /// d. Factorization: implied rho (decoupled fit) of W+A pairs and compositions A+B against
    /// the product of their parts' implied rho, with bootstrap intervals.
    ///
    /// e. Noise injection vs the quantizer: each noise configuration (formats named noise...)
    /// beside the weight-only scalar or vector quantizer of closest GMSE at the same size: both
    /// GMSE, the loss difference and it in standard errors.
    ///
    /// Exit status: 0 every section computed; 2 some not (each says why in one line); 1 none.
    #[command(verbatim_doc_comment)]
    Validate(crate::validate::ValidateArgs),
}

/// `host list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Plugin libraries, folders of them, plugin crates, or folders of crates (e.g. `plugins/`).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print JSON (one object per plugin) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options shared by `rank` and `bench`.
#[derive(Args, Debug, Clone)]
pub struct MeasureArgs {
    /// Format to measure: a preset (`int4`), a kind with parameters
    /// (`int:bits=3,rule=absmax,group=64`), or a preset with overrides
    /// (`int4-absmax-g32:stochastic=true`). Repeatable; default: every preset.
    #[arg(short, long = "format", value_name = "SPEC")]
    pub formats: Vec<String>,
    /// Seed of the Gaussian tensors (and of stochastic formats).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: RAYON_NUM_THREADS, else all cores). Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Shape of each Gaussian tensor, ROWSxCOLS (per-row and per-tensor statistics depend on it).
    #[arg(long, default_value = "256x4096", value_parser = parse_shape)]
    pub shape: Shape,
    /// What the tensors are drawn from, all at unit variance: `gaussian`, `laplace`, `student-t:NU`
    /// (NU > 2), `logistic`, or `file:W.safetensors` / `file:W.npy` (the file's 2-D tensors, each
    /// scaled to unit RMS, used in turn with their own shapes; `--shape` is then ignored).
    #[arg(long, default_value = "gaussian", value_name = "DIST")]
    pub dist: String,
}

/// `host rank`.
#[derive(Args, Debug)]
pub struct RankArgs {
    /// Plugin libraries, folders of them, plugin crates, or folders of crates (e.g. `plugins/`).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub measure: MeasureArgs,
    /// Order by capacity (`rho`), capacity per bit (`rho-per-bit`, equal memory), or predicted `loss`.
    #[arg(long, value_enum, default_value_t = By::Rho)]
    pub by: By,
    /// Non-embedding parameters N of the predicted loss (with --tokens): needed by `--by loss`;
    /// with another `--by`, the predicted loss is shown beside the ranking (`loss` column,
    /// `predicted_loss` in JSON and CSV).
    #[arg(long, value_name = "N")]
    pub params: Option<f64>,
    /// Training tokens D of the predicted loss (with --params).
    #[arg(long, value_name = "D")]
    pub tokens: Option<f64>,
    /// Law: a law file (TOML; see `host law`) or the name of a shipped law (`host law --list`).
    /// Default: the built-in Llama/C4 law.
    #[arg(long, value_name = "FILE|NAME")]
    pub law: Option<PathBuf>,
    /// Stop measuring a format once standard error / GMSE falls below this.
    #[arg(long, default_value_t = 1e-3, value_name = "X")]
    pub target_rse: f64,
    /// Measure exactly this many samples per format instead of stopping at the target.
    #[arg(long, value_name = "N")]
    pub samples: Option<u64>,
    /// Never measure more samples than this per format.
    #[arg(long, default_value_t = 1 << 30, value_name = "N")]
    pub max_samples: u64,
    /// Print a JSON array (one object per ranked format).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
    /// Also write an SVG chart: GMSE vs bits per element with the Pareto front, the Lloyd-Max
    /// curve and the Shannon bound.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// `host bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Plugin libraries or folders, as for `rank`.
    #[arg(required_unless_present_any = ["fit", "train"])]
    pub paths: Vec<PathBuf>,
    /// Time training instead: tokens/s of this model preset (e.g. `bench-tiny`), plain and with
    /// each `-f` format on the weights (default int4-absmax-g32), per thread count. Paths default
    /// to the plugin search places of `host train`.
    #[arg(long, value_name = "PRESET")]
    pub train: Option<String>,
    /// Training steps timed per configuration (after one warm-up step); the median is reported.
    #[arg(long, default_value_t = 30)]
    pub steps: u64,
    /// Time `host fit` instead: a unified fit (A, B, F, C free; alpha, beta, E, L fixed at the
    /// paper's values) of this many synthetic runs, plus 1000 bootstrap resamples.
    #[arg(long, value_name = "RUNS")]
    pub fit: Option<usize>,
    /// Formats to time (default: int4-absmax-g32 and e2m1).
    #[arg(short, long = "format", value_name = "SPEC")]
    pub formats: Vec<String>,
    /// Thread counts to time, comma-separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Samples per measurement.
    #[arg(long, default_value_t = 1 << 26)]
    pub samples: u64,
    /// Shape of each Gaussian tensor.
    #[arg(long, default_value = "256x4096", value_parser = parse_shape)]
    pub shape: Shape,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_shape(s: &str) -> Result<Shape, String> {
    let (r, c) = s.split_once(['x', 'X']).ok_or_else(|| format!("shape `{s}` is not ROWSxCOLS (e.g. 256x4096)"))?;
    let r: usize = r.trim().parse().map_err(|_| format!("shape `{s}`: bad row count `{r}`"))?;
    let c: usize = c.trim().parse().map_err(|_| format!("shape `{s}`: bad column count `{c}`"))?;
    if r == 0 || c == 0 {
        return Err(format!("shape `{s}`: rows and columns must be positive"));
    }
    Ok(Shape::new(r, c))
}

/// Prints a warning line on stderr (not a failure; see [`crate::diag`]).
pub fn warn(msg: impl std::fmt::Display) {
    crate::diag::warn(msg);
}

/// Loads the plugins at `paths`, printing one line per failure (and per stale build).
pub fn load(paths: &[PathBuf], verbose: bool) -> Vec<Loaded> {
    load_found(loader::discover(paths), verbose)
}

fn load_found(found: loader::Found, verbose: bool) -> Vec<Loaded> {
    for w in &found.warnings {
        warn(w);
    }
    let (ok, bad) = loader::load_all(&found.files);
    for f in found.failures.iter().chain(&bad) {
        crate::diag::fail(f);
        if verbose && let Some(d) = &f.detail {
            eprintln!("{d}");
        }
    }
    ok
}

/// Loads the plugins at `paths` (`--plugins`), or, when none are given, from the default search
/// places ([`loader::default_places`]: `./plugins` if it exists, else next to the host
/// executable, then `HOST_PLUGIN_PATH`). An error when nothing loads, naming every place looked in.
pub fn load_or_search(paths: &[PathBuf], verbose: bool) -> Result<Vec<Loaded>, String> {
    if !paths.is_empty() {
        let libs = load(paths, verbose);
        if libs.is_empty() {
            return Err(format!(
                "no plugin could be loaded from {} (build them with `cargo build --release`, or use --plugins PATH)",
                paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        return Ok(libs);
    }
    let searched = loader::search(&loader::default_places());
    let libs = load_found(searched.found, verbose);
    if libs.is_empty() {
        return Err(format!(
            "no plugin could be loaded; looked in {} (build them with `cargo build --release`, set {} to folders \
             of plugin libraries, or pass --plugins PATH)",
            searched.looked.join("; "),
            loader::PLUGIN_PATH_VAR
        ));
    }
    Ok(libs)
}

/// A format ready to measure.
pub struct Prepared {
    /// SPEC as given.
    pub spec: String,
    /// Plugin name (`a+b` for a composition).
    pub plugin: String,
    /// Kind name (`a+b` for a composition).
    pub kind: String,
    /// The built format.
    pub format: Box<dyn HostFormat>,
    /// What it says about itself for the measured shape.
    pub info: sdk::plugin::FormatInfo,
    /// For `A+B` (independent compressions): the SPECs of `A` and `B`, whose
    /// capacities the product rule multiplies (DESIGN.md 2.3).
    pub parts: Vec<String>,
}

/// One part of a SPEC, built: the format, its plugin name and its kind.
type Part = (Box<dyn HostFormat>, String, String);

fn build_part(libs: &[Loaded], part: &str) -> Result<Part, String> {
    let r = spec::resolve(libs, part)?;
    let lib = &libs[r.plugin];
    let plugin = lib.lib.info.name.clone();
    let f = lib
        .lib
        .instantiate(&r.kind, &r.params)
        .map_err(|e| format!("format `{part}` (plugin `{plugin}`, kind `{}`): {e}", r.kind))?;
    Ok((Box::new(f), plugin, r.kind))
}

/// Builds a SPEC: one part, `A+B`, or `outliers:...+B`.
fn build(libs: &[Loaded], s: &str) -> Result<Part, String> {
    let parts = spec::split_parts(s);
    let is_outliers = |p: &str| p.split(':').next().map(str::trim) == Some("outliers");
    match parts.as_slice() {
        [one] if is_outliers(one) => {
            Err(format!("format `{s}`: `outliers` needs a format for the rest, e.g. `outliers:p=0.01+int4`"))
        }
        [one] => build_part(libs, one),
        [a, b] if is_outliers(a) => {
            let table = spec::parse_overrides(a.split_once(':').map(|x| x.1).unwrap_or(""))
                .map_err(|e| format!("format `{s}`: {e}"))?;
            let p = <OutlierParams as sdk::Params>::from_table(&table)
                .map_err(|e| format!("format `{s}` (outliers): {e}"))?;
            if !(0.0..1.0).contains(&p.p) {
                return Err(format!("format `{s}` (outliers): parameter `p`: must be in [0, 1) (got {})", p.p));
            }
            let (inner, plugin, kind) = build_part(libs, b)?;
            let f = Outliers { fraction: p.p, value_bits: p.value_bits, inner };
            Ok((Box::new(f), format!("host+{plugin}"), format!("outliers+{kind}")))
        }
        [a, b] => {
            let (first, pa, ka) = build_part(libs, a)?;
            let (second, pb, kb) = build_part(libs, b)?;
            Ok((Box::new(Then { first, second }), format!("{pa}+{pb}"), format!("{ka}+{kb}")))
        }
        _ => Err(format!("format `{s}`: compose at most two formats (`A+B`)")),
    }
}

/// Resolves and builds the selected formats, printing one line per failure.
pub fn prepare(libs: &[Loaded], specs: &[String], shape: Shape) -> Vec<Prepared> {
    let specs: Vec<String> = if specs.is_empty() {
        loader::all_presets(libs).iter().map(|p| p.preset.name.clone()).collect()
    } else {
        specs.to_vec()
    };
    // Built in parallel (some formats build tables or train codebooks);
    // failures are printed in SPEC order.
    use rayon::prelude::*;
    let built: Vec<Result<Prepared, String>> = specs.par_iter().map(|s| prepare_one(libs, s, shape)).collect();
    built.into_iter().filter_map(|r| r.map_err(crate::diag::fail).ok()).collect()
}

/// Builds one SPEC and asks it about `shape`.
pub fn prepare_one(libs: &[Loaded], s: &str, shape: Shape) -> Result<Prepared, String> {
    let (format, plugin, kind) = build(libs, s)?;
    let info = format.info(shape).map_err(|e| format!("format `{s}` (plugin `{plugin}`, kind `{kind}`): {e}"))?;
    let bits = info.bits.total();
    if !(bits.is_finite() && bits > 0.0) {
        return Err(format!("format `{s}` (plugin `{plugin}`): reports {bits} bits per element; skipped"));
    }
    let parts = match spec::split_parts(s).as_slice() {
        [a, b] if !kind.starts_with("outliers+") => vec![a.to_string(), b.to_string()],
        _ => vec![],
    };
    Ok(Prepared { spec: s.trim().to_string(), plugin, kind, format, info, parts })
}

/// Measures the GMSE of each SPEC on Gaussian tensors at the default shape and precision
/// (for `host fit` runs that name formats but carry no GMSE).
pub fn measure_specs(
    paths: &[PathBuf],
    specs: &[String],
    threads: Option<usize>,
    verbose: bool,
) -> Result<Measured, String> {
    let libs = load_or_search(paths, verbose)
        .map_err(|e| format!("formats {} need their GMSE measured, but {e}", specs.join(", ")))?;
    measure_loaded(&libs, specs, threads)
}

/// GMSE, family and bits of each SPEC by its result (or error).
pub type Measured = std::collections::BTreeMap<String, Result<crate::fit::data::Measured, String>>;

/// [`measure_specs`] with plugins already loaded.
pub fn measure_loaded(libs: &[Loaded], specs: &[String], threads: Option<usize>) -> Result<Measured, String> {
    let shape = Config::default().shape;
    let mut out = std::collections::BTreeMap::new();
    let mut prepared = Vec::new();
    for s in specs {
        match prepare_one(libs, s, shape) {
            Ok(p) => prepared.push(p),
            Err(e) => {
                out.insert(s.clone(), Err(e));
            }
        }
    }
    let cfg = Config::default();
    let subjects: Vec<&dyn Subject> = prepared.iter().map(|p| &p.format as &dyn Subject).collect();
    let outcomes = with_threads(threads, || engine::measure(&subjects, &cfg, &mut |_, _, _| {}))?;
    for (p, o) in prepared.iter().zip(outcomes) {
        let m = o.map(|m| crate::fit::data::Measured {
            gmse: m.gmse,
            family: p.info.family.as_str().to_string(),
            bits: p.info.bits.total(),
        });
        out.insert(p.spec.clone(), m);
    }
    Ok(out)
}

/// Runs `f` on a pool of `threads` threads (or the global pool).
pub fn with_threads<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    match threads {
        None => Ok(f()),
        Some(0) => Err("--threads must be at least 1".into()),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().map_err(|e| e.to_string())?;
            Ok(pool.install(f))
        }
    }
}

/// `host law`.
#[derive(Args, Debug)]
pub struct LawArgs {
    /// A shipped law's name (default: the built-in default law).
    pub name: Option<String>,
    /// List the shipped laws with their descriptions.
    #[arg(long, conflicts_with = "name")]
    pub list: bool,
}

fn print_law(a: &LawArgs) -> Result<(), String> {
    if a.list {
        for (name, _) in crate::law::SHIPPED {
            let law = Law::shipped(name).ok_or("shipped law missing")?;
            println!("{name:<16} {}", law.description);
        }
        return Ok(());
    }
    let name = a.name.as_deref().unwrap_or(crate::law::SHIPPED[0].0);
    match crate::law::SHIPPED.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => {
            print!("{text}");
            Ok(())
        }
        None => {
            let names: Vec<&str> = crate::law::SHIPPED.iter().map(|s| s.0).collect();
            Err(format!("no shipped law named `{name}` (shipped: {})", names.join(", ")))
        }
    }
}

fn run_rank(a: RankArgs, verbose: bool) -> Result<(), String> {
    let law = match &a.law {
        Some(p) => Law::load(p)?,
        None => Law::default_law(),
    };
    let budget = match (a.params, a.tokens) {
        (Some(n), Some(d)) => Some(rank_budget(n, d)?),
        (Some(_), None) => return Err("--params needs --tokens D too (the predicted loss needs both)".into()),
        (None, Some(_)) => return Err("--tokens needs --params N too (the predicted loss needs both)".into()),
        (None, None) if a.by == By::Loss => return Err("--by loss needs --params N and --tokens D".into()),
        (None, None) => None,
    };
    if a.target_rse.is_nan() || a.target_rse <= 0.0 {
        return Err(format!("--target-rse must be positive (got {})", a.target_rse));
    }
    let libs = load(&a.paths, verbose);
    if libs.is_empty() {
        return Err("no plugin could be loaded from the given paths".into());
    }
    let m = &a.measure;
    let dist = crate::dist::Dist::parse(&m.dist)?;
    let mut prepared = prepare(&libs, &m.formats, dist.shape(0, m.shape));
    if prepared.is_empty() {
        return Err("no format could be built; nothing to rank".into());
    }
    // The parts of compositions are measured too (on the same tensors), for
    // the product rule; those the user did not select are not ranked.
    let ranked = prepared.len();
    let missing: std::collections::BTreeSet<String> = prepared
        .iter()
        .flat_map(|p| p.parts.iter())
        .filter(|part| !prepared.iter().any(|p| &p.spec == *part))
        .cloned()
        .collect();
    // (`prepare` of no SPEC means every preset: only ask when a part is missing.)
    if !missing.is_empty() {
        prepared.extend(prepare(&libs, &missing.into_iter().collect::<Vec<_>>(), dist.shape(0, m.shape)));
    }
    dist.average_bits(&mut prepared);
    let cfg = Config {
        shape: m.shape,
        dist: dist.clone(),
        seed: m.seed,
        target_rse: a.target_rse,
        max_samples: a.max_samples,
        fixed_samples: a.samples,
    };
    let subjects: Vec<&dyn Subject> = prepared.iter().map(|p| &p.format as &dyn Subject).collect();
    let bar = progress_bar(prepared.len() as u64);
    let outcomes = with_threads(m.threads, || {
        engine::measure(&subjects, &cfg, &mut |done, _, samples| {
            if let Some(b) = &bar {
                b.set_position(done as u64);
                b.set_message(format!("{:.0} M samples", samples as f64 / 1e6));
            }
        })
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let alone: std::collections::HashMap<String, (String, f64)> = prepared
        .iter()
        .zip(&outcomes)
        .filter_map(|(p, o)| Some((p.spec.clone(), (p.info.family.as_str().to_string(), o.as_ref().ok()?.gmse))))
        .collect();
    let mut entries = Vec::new();
    for (p, o) in prepared.into_iter().zip(outcomes).take(ranked) {
        match o {
            Ok(m) => {
                if !m.reached_target && a.samples.is_none() {
                    warn(format!(
                        "format `{}`: relative standard error {:.2e} after {} samples (target {:.1e}); raise --max-samples",
                        p.spec,
                        m.rse(),
                        m.samples,
                        a.target_rse
                    ));
                }
                entries.push(Entry {
                    format: p.spec,
                    plugin: p.plugin,
                    kind: p.kind,
                    family: p.info.family.as_str().to_string(),
                    label: p.info.label.clone(),
                    bits: p.info.bits.total(),
                    bits_parts: p
                        .info
                        .bits
                        .parts
                        .iter()
                        .map(|b| BitsRow { what: b.what.clone(), bits: b.bits })
                        .collect(),
                    parts: p
                        .parts
                        .iter()
                        .filter_map(|s| alone.get(s).map(|(f, g)| (s.clone(), f.clone(), *g)))
                        .collect(),
                    m,
                })
            }
            Err(e) => crate::diag::fail(format!("format `{}` (plugin `{}`): {e}; skipped", p.spec, p.plugin)),
        }
    }
    if entries.is_empty() {
        return Err("every format failed; nothing to rank".into());
    }
    let rows = rank::rank(entries, &law, a.by, budget);
    warn_few_tensors(&rows, &dist, m.shape);
    if let Some(p) = &a.plot {
        crate::rankplot::write(&rows, p)?;
        eprintln!("host: wrote {}", p.display());
    }
    if a.json {
        let mut v = serde_json::to_value(&rows).map_err(|e| e.to_string())?;
        for r in v.as_array_mut().into_iter().flatten() {
            r["dist"] = dist.name().into();
        }
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
    } else if a.csv {
        print!("{}", output::ranking_csv(&rows));
    } else {
        println!(
            "# {} formats on {}, dist {}, seed {}, ranked by {}; law `{}` ({})",
            rows.len(),
            match &dist {
                crate::dist::Dist::Gaussian => format!("{} N(0,1) tensors", m.shape),
                crate::dist::Dist::File(f) => format!("{} file tensors at unit RMS (normalized MSE)", f.tensors.len()),
                _ => format!("{} unit-variance tensors", m.shape),
            },
            dist.name(),
            m.seed,
            clap::ValueEnum::to_possible_value(&a.by).map(|v| v.get_name().to_string()).unwrap_or_default(),
            law.name,
            law.description
        );
        if let Some(b) = budget {
            println!(
                "# loss: predicted loss at N = {:e} non-embedding parameters, D = {:e} training tokens",
                b.params, b.tokens
            );
        }
        print!("{}", output::ranking_table(&rows));
        println!("# front: on the Pareto front of (bits, GMSE); vs LM: GMSE / Lloyd-Max GMSE at the same bits;");
        println!("# P(>next): probability that the format truly ranks above the next one (paired tensors).");
        for r in rows.iter().filter(|r| r.rho_product.is_some()) {
            let parts: Vec<String> = r.parts.iter().map(|p| format!("rho({}) {:.4}", p.format, p.rho)).collect();
            println!(
                "# {}: rho {:.4} from its own GMSE ({} curve); product rule (DESIGN 2.3): {} = {:.4}",
                r.format,
                r.rho,
                r.family,
                parts.join(" x "),
                r.rho_product.unwrap_or(f64::NAN)
            );
        }
        if rows.iter().any(|r| r.family_fallback) {
            println!("# family*: no curve for this family in the law; the scalar curve was used.");
        }
    }
    Ok(())
}

/// The budget of `--params N --tokens D`, both positive and finite.
fn rank_budget(params: f64, tokens: f64) -> Result<Budget, String> {
    for (name, v) in [("--params", params), ("--tokens", tokens)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(format!("{name} must be a positive number (got {v})"));
        }
    }
    Ok(Budget { params, tokens })
}

/// One warning line (not a failure) naming the formats whose standard error rests on fewer
/// than [`rank::FEW_TENSORS`] tensors.
fn warn_few_tensors(rows: &[rank::Row], dist: &crate::dist::Dist, shape: Shape) {
    let few: Vec<String> = rows
        .iter()
        .filter(|r| r.tensors < rank::FEW_TENSORS)
        .map(|r| format!("{} ({})", r.format, r.tensors))
        .collect();
    if few.is_empty() {
        return;
    }
    const SHOWN: usize = 6;
    let more = if few.len() > SHOWN { format!(" and {} more", few.len() - SHOWN) } else { String::new() };
    let samples = dist.samples_in(rank::FEW_TENSORS as u64, shape);
    warn(format!(
        "the standard error of {} rests on fewer than {} tensors (column `tensors`): {}{more}; \
         their ± and P(>next) are rough; --samples {samples} measures {} tensors each",
        if few.len() == 1 { "1 format".to_string() } else { format!("{} formats", few.len()) },
        rank::FEW_TENSORS,
        few[..few.len().min(SHOWN)].join(", "),
        rank::FEW_TENSORS
    ));
}

fn progress_bar(len: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template("measuring GMSE {bar:30} {pos}/{len} formats done, {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(b)
}

fn run_list(a: ListArgs, verbose: bool) -> Result<(), String> {
    let libs = load(&a.paths, verbose);
    if libs.is_empty() {
        return Err("no plugin could be loaded from the given paths".into());
    }
    if a.json {
        let v: Vec<serde_json::Value> = libs
            .iter()
            .map(|l| {
                let mut v = serde_json::to_value(&l.lib.info).unwrap_or_default();
                v["path"] = l.path.display().to_string().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let shape = Shape::new(256, 4096);
    for l in &libs {
        let i = &l.lib.info;
        println!("plugin {} {} (SDK {}) from {}", i.name, i.version, i.sdk_version, l.path.display());
        for k in &i.kinds {
            println!("  kind {}: {}", k.name, k.doc);
            for p in &k.params {
                println!("    {} = {}  ({}) {}", p.name, p.default, p.ty, p.doc);
            }
            for p in &k.presets {
                let bits = l
                    .lib
                    .instantiate(&k.name, &sdk::plugin::parse_inline_table(&p.params).unwrap_or_default())
                    .and_then(|f| f.info(shape));
                let bits = match bits {
                    Ok(info) => {
                        let parts: Vec<String> =
                            info.bits.parts.iter().map(|b| format!("{} {:.4}", b.what, b.bits)).collect();
                        format!(
                            "{:.4} bits/element at {shape} ({}); {}",
                            info.bits.total(),
                            parts.join(" + "),
                            info.family
                        )
                    }
                    Err(e) => format!("cannot build: {e}"),
                };
                println!("    preset {:<18} {:<40} {}", p.name, p.params, p.doc);
                println!("      {bits}");
            }
        }
    }
    Ok(())
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    let result = match cli.command {
        Command::List(a) => run_list(a, verbose),
        Command::Rank(a) => run_rank(a, verbose),
        Command::Bench(a) => bench::run(a, verbose),
        Command::Apply(a) => crate::apply::run(a, verbose),
        Command::Fit(a) => crate::fit::run(a, verbose),
        Command::Train(a) => crate::train::run(a, verbose),
        Command::Sweep(a) => crate::sweep::run(a, verbose),
        Command::Report(a) => crate::report::run(&a, verbose),
        Command::Validate(a) => match crate::validate::run(a, verbose) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Law(a) => print_law(&a),
    };
    if let Err(e) = &result {
        eprintln!("host: error: {e}");
    }
    crate::diag::exit_code(&result)
}
