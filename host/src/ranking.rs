//! `host rank`: measure the selected formats' GMSE (through the session layer), rank them with a
//! law and print the table, JSON or CSV (and the `--plot` chart).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use sdk::Shape;

use crate::diag::warn;
use crate::engine::{self, Config, Subject};
use crate::law::Law;
use crate::output;
use crate::rank::{self, BitsRow, Budget, By, Entry};
use crate::session::{average_bits, load, prepare, with_threads};
use crate::spec::parse_shape;

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

/// Runs `host rank`.
pub fn run(a: RankArgs, verbose: bool) -> Result<(), String> {
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
    let (libs, d) = load(&a.paths);
    d.report(verbose);
    if libs.is_empty() {
        return Err("no plugin could be loaded from the given paths".into());
    }
    let m = &a.measure;
    let mut d = crate::diag::Diagnostics::default();
    let dist = crate::dist::Dist::parse(&m.dist, &mut d);
    d.report(verbose);
    let dist = dist?;
    let (mut prepared, d) = prepare(&libs, &m.formats, dist.shape(0, m.shape));
    d.report(verbose);
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
        let (more, d) = prepare(&libs, &missing.into_iter().collect::<Vec<_>>(), dist.shape(0, m.shape));
        d.report(verbose);
        prepared.extend(more);
    }
    average_bits(&dist, &mut prepared).report(verbose);
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
