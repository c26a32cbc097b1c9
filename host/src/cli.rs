//! Command line: `host list`, `host rank`, `host bench`, `host law`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sdk::Shape;
use sdk::abi::RemoteFormat;

use crate::engine::{self, Config, Subject};
use crate::law::{DEFAULT_LAW, Law};
use crate::loader::{self, Loaded};
use crate::rank::{self, BitsRow, Budget, By, Entry};
use crate::{bench, output, spec};

/// Rank compressed number formats by the capacity a model trained over them keeps.
///
/// Loads format plugins, measures each format's Gaussian MSE (GMSE) by Monte
/// Carlo on seeded N(0,1) tensors, converts it to a representation capacity
/// rho with a scaling law, and ranks the formats.
#[derive(Parser, Debug)]
#[command(name = "host", version, about, long_about)]
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
    /// Print the built-in default law file (copy it to make your own).
    Law,
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
    /// Non-embedding parameters N for `--by loss`.
    #[arg(long, value_name = "N")]
    pub params: Option<f64>,
    /// Training tokens D for `--by loss`.
    #[arg(long, value_name = "D")]
    pub tokens: Option<f64>,
    /// Law file (TOML; see `host law`). Default: the built-in Llama/C4 law.
    #[arg(long, value_name = "FILE")]
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
}

/// `host bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Plugin libraries or folders, as for `rank`.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
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

/// Prints a warning line on stderr.
pub fn warn(msg: impl std::fmt::Display) {
    eprintln!("host: warning: {msg}");
}

/// Loads the plugins at `paths`, printing one line per failure.
pub fn load(paths: &[PathBuf], verbose: bool) -> Vec<Loaded> {
    let found = loader::discover(paths);
    let (ok, bad) = loader::load_all(&found.files);
    for f in found.failures.iter().chain(&bad) {
        warn(f);
        if verbose && let Some(d) = &f.detail {
            eprintln!("{d}");
        }
    }
    ok
}

/// A format ready to measure.
pub struct Prepared {
    /// SPEC as given.
    pub spec: String,
    /// Plugin name.
    pub plugin: String,
    /// Kind name.
    pub kind: String,
    /// The built format.
    pub format: RemoteFormat,
    /// What it says about itself for the measured shape.
    pub info: sdk::plugin::FormatInfo,
}

/// Resolves and builds the selected formats, printing one line per failure.
pub fn prepare(libs: &[Loaded], specs: &[String], shape: Shape) -> Vec<Prepared> {
    let specs: Vec<String> = if specs.is_empty() {
        loader::all_presets(libs).iter().map(|p| p.preset.name.clone()).collect()
    } else {
        specs.to_vec()
    };
    let mut out = Vec::new();
    for s in &specs {
        let r = match spec::resolve(libs, s) {
            Ok(r) => r,
            Err(e) => {
                warn(e);
                continue;
            }
        };
        let lib = &libs[r.plugin];
        let plugin = lib.lib.info.name.clone();
        let built = lib.lib.instantiate(&r.kind, &r.params).and_then(|f| f.info(shape).map(|i| (f, i)));
        match built {
            Ok((format, info)) => {
                let bits = info.bits.total();
                if !(bits.is_finite() && bits > 0.0) {
                    warn(format!("format `{s}` (plugin `{plugin}`): reports {bits} bits per element; skipped"));
                    continue;
                }
                out.push(Prepared { spec: r.spec, plugin, kind: r.kind, format, info })
            }
            Err(e) => warn(format!("format `{s}` (plugin `{plugin}`, kind `{}`): {e}", r.kind)),
        }
    }
    out
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

fn run_rank(a: RankArgs, verbose: bool) -> Result<(), String> {
    let law = match &a.law {
        Some(p) => Law::from_file(p)?,
        None => Law::default_law(),
    };
    let budget = match (a.by, a.params, a.tokens) {
        (By::Loss, Some(n), Some(d)) => Some(Budget { params: n, tokens: d }),
        (By::Loss, _, _) => return Err("--by loss needs --params N and --tokens D".into()),
        (_, Some(n), Some(d)) => Some(Budget { params: n, tokens: d }),
        _ => None,
    };
    if a.target_rse.is_nan() || a.target_rse <= 0.0 {
        return Err(format!("--target-rse must be positive (got {})", a.target_rse));
    }
    let libs = load(&a.paths, verbose);
    if libs.is_empty() {
        return Err("no plugin could be loaded from the given paths".into());
    }
    let m = &a.measure;
    let prepared = prepare(&libs, &m.formats, m.shape);
    if prepared.is_empty() {
        return Err("no format could be built; nothing to rank".into());
    }
    let cfg = Config {
        shape: m.shape,
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
    let mut entries = Vec::new();
    for (p, o) in prepared.into_iter().zip(outcomes) {
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
                    m,
                })
            }
            Err(e) => warn(format!("format `{}` (plugin `{}`): {e}; skipped", p.spec, p.plugin)),
        }
    }
    if entries.is_empty() {
        return Err("every format failed; nothing to rank".into());
    }
    let rows = rank::rank(entries, &law, a.by, budget);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?);
    } else if a.csv {
        print!("{}", output::ranking_csv(&rows));
    } else {
        println!(
            "# {} formats on {} N(0,1) tensors, seed {}, ranked by {}; law `{}` ({})",
            rows.len(),
            m.shape,
            m.seed,
            clap::ValueEnum::to_possible_value(&a.by).map(|v| v.get_name().to_string()).unwrap_or_default(),
            law.name,
            law.description
        );
        print!("{}", output::ranking_table(&rows, a.by == By::Loss));
        println!("# front: on the Pareto front of (bits, GMSE); vs LM: GMSE / Lloyd-Max GMSE at the same bits;");
        println!("# P(>next): probability that the format truly ranks above the next one (paired tensors).");
        if rows.iter().any(|r| r.family_fallback) {
            println!("# family*: no curve for this family in the law; the scalar curve was used.");
        }
    }
    Ok(())
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
        Command::Law => {
            print!("{DEFAULT_LAW}");
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("host: error: {e}");
            1
        }
    }
}
