//! `host-sweep`. Owns: experiment files, job plans and their hashes, leases, running and
//! collecting jobs, launch scripts. It is the only crate that drives the others together (GMSE
//! through `host_core::session`, training through `host-train`, the fit through `host-fit`,
//! the report through `host-report`). Never: is imported by any of them, or by anything but
//! the binary.
//!
//! `host sweep`: run an experiment file (formats x distributions GMSE
//! measurements, an optional training grid and fit) as independent jobs
//! into one shared results folder, on one machine or many.
//!
//! - [`exp`]: the experiment file (TOML) and its format grids.
//! - [`plan`]: jobs with content hashes, `DIR/manifest.json`.
//! - [`lease`]: leases on shared filesystems (who runs a job; fencing).
//! - [`runner`]: running jobs (leases, results published once, failures), job states.
//! - [`stale`]: results of older code or plugin defaults, reported and redone.
//! - [`emit`]: Slurm, Kubernetes and GNU parallel launchers.
//!
//! Results folder (`DIR`, default `<experiment stem>.results/` beside the
//! experiment file):
//! - `manifest.json`: the plan (jobs in order with hash, type, description,
//!   full configuration; the experiment's `[report]` table);
//! - `jobs/H.json`, `jobs/H.running`, `jobs/H.failed.json`: per job (see [`runner`]);
//! - `tmp/`: files in flight; `published.log`: one line per published result;
//! - `train/H/attempt-TOKEN/`: training runs, one folder per attempt (checkpoint, metrics, `result.json`);
//! - `results.csv`, `results.jsonl`: written by `collect`, one row per
//!   finished job in plan order (timing fields only in the JSONL `timing` key);
//! - `fit.json`, `fit.txt`, `plots/*.svg`, `law.toml`: the fit of the training
//!   runs, when the experiment has `[fit]`.

pub mod emit;
pub mod exp;
pub mod lease;
pub mod plan;
pub mod runner;
pub mod stale;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use exp::Experiment;
use plan::{Job, Manifest};
use runner::{Context, State};

/// `host sweep`.
#[derive(Args, Debug)]
pub struct SweepArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// The experiment file and its results folder.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Experiment file (TOML; see examples/experiments/).
    pub experiment: PathBuf,
    /// Results folder (default: `<experiment stem>.results/` beside the experiment file).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
}

/// `host sweep run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The experiment and its results folder.
    #[command(flatten)]
    pub common: Common,
    /// Run job I only (0-based, as in the manifest).
    #[arg(long, value_name = "I", conflicts_with_all = ["shard", "all"])]
    pub index: Option<usize>,
    /// Run the jobs j with j % N == i.
    #[arg(long, value_name = "i/N", conflicts_with = "all")]
    pub shard: Option<String>,
    /// Run every job.
    #[arg(long)]
    pub all: bool,
    /// Jobs run at once in this process (default: one per core; RAYON_NUM_THREADS, when set,
    /// counts as the cores).
    #[arg(long, value_name = "J")]
    pub jobs: Option<usize>,
    /// Worker threads per job (default: the cores divided among the jobs run at once, so one
    /// thread per job when there are enough jobs: small models use two cores better as two
    /// one-thread jobs). Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep stale results (computed by an older host, trainer or plugin default) instead of
    /// running those jobs again.
    #[arg(long)]
    pub keep_stale: bool,
}

/// `host sweep collect`.
#[derive(Args, Debug, Clone)]
pub struct CollectArgs {
    /// The experiment and its results folder.
    #[command(flatten)]
    pub common: Common,
    /// Collect stale results (marked `stale = true`) for jobs that have no current one.
    #[arg(long)]
    pub keep_stale: bool,
}

/// `host sweep status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The experiment and its results folder.
    #[command(flatten)]
    pub common: Common,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `host sweep emit`.
#[derive(Args, Debug, Clone)]
pub struct EmitArgs {
    /// `slurm`, `k8s` or `parallel`.
    #[arg(value_enum)]
    pub target: emit::Target,
    /// The experiment and its results folder.
    #[command(flatten)]
    pub common: Common,
    /// Script options.
    #[command(flatten)]
    pub options: emit::EmitOptions,
}

/// `host sweep all`.
#[derive(Args, Debug, Clone)]
pub struct AllArgs {
    /// The experiment and its results folder.
    #[command(flatten)]
    pub common: Common,
    /// Jobs run at once (default: one per core).
    #[arg(long, value_name = "J")]
    pub jobs: Option<usize>,
    /// Worker threads per job (default: the cores divided among the jobs run at once).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep stale results instead of running those jobs again (see `sweep run --keep-stale`).
    #[arg(long)]
    pub keep_stale: bool,
}

/// The `host sweep` verbs.
#[derive(Subcommand, Debug)]
pub enum Action {
    /// Expand the experiment into jobs and write DIR/manifest.json.
    Plan(Common),
    /// Run jobs (--index I, --shard i/N, --all, or the Slurm / Kubernetes array index); finished
    /// jobs are skipped, so a killed run continues where it stopped. Jobs run under leases that
    /// expire HOST_SWEEP_LEASE_S seconds (default 300) after their runner's last heartbeat:
    /// --all and --shard skip jobs another runner holds, an array task waits for them.
    /// Stale results (an older host, trainer or plugin default) are computed again unless
    /// --keep-stale.
    Run(RunArgs),
    /// Count done / running / failed / stale / pending jobs, with reasons (for a stale result:
    /// what changed).
    Status(StatusArgs),
    /// Write DIR/results.csv and DIR/results.jsonl (and the fit of the training runs).
    Collect(CollectArgs),
    /// Print a Slurm array script, a Kubernetes Indexed Job or a GNU parallel command.
    Emit(EmitArgs),
    /// Plan, run every job, collect, write the report (DIR/report/report.md): the whole
    /// experiment in one command.
    All(AllArgs),
}

/// The results folder of `c`.
fn results_dir(c: &Common) -> PathBuf {
    plan::absolute(&c.results.clone().unwrap_or_else(|| plan::default_results(&c.experiment)))
}

/// A planned experiment with its plugins.
pub struct Planned {
    /// The experiment.
    pub exp: Experiment,
    /// The plan.
    pub manifest: Manifest,
    /// The loaded plugins.
    pub libs: Vec<host_core::loader::Loaded>,
}

/// Reads the experiment, loads its plugins and builds the plan (writing the manifest when it changed).
pub fn plan_experiment(c: &Common, verbose: bool) -> Result<Planned, String> {
    let exp = Experiment::read(&c.experiment)?;
    let paths = exp.plugin_paths();
    let (libs, d) = host_core::session::load(&paths);
    d.report(verbose);
    let dir = results_dir(c);
    let manifest = plan::build(&exp, &c.experiment, &dir, &libs)?;
    if manifest.write(&dir)? {
        eprintln!("host: sweep: wrote {}", dir.join("manifest.json").display());
    }
    Ok(Planned { exp, manifest, libs })
}

/// Which job indices a run selects, from the flags or the scheduler's environment
/// (`env` looks a variable up).
///
/// - `--all`: every job; `--index I`: job I; `--shard i/N`: jobs j with j % N == i.
/// - Slurm array task: index `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` (min default 0);
///   when `SLURM_ARRAY_TASK_COUNT` is below the job count, the task runs shard index/count.
/// - Kubernetes Indexed Job: `JOB_COMPLETION_INDEX` is the job index; with `SWEEP_TASK_COUNT`
///   (set by `emit k8s --tasks K`) below the job count, the pod runs shard index/count.
///
/// An index at or past the job count selects nothing (the plan may have shrunk).
pub fn select(n: usize, a: &RunArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<usize>, String> {
    let num = |k: &str| -> Result<Option<usize>, String> {
        match env(k) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| format!("environment {k}=`{v}` is not an index")),
        }
    };
    let shard = |i: usize, count: usize| -> Vec<usize> { (0..n).filter(|j| j % count == i).collect() };
    if a.all {
        return Ok((0..n).collect());
    }
    if let Some(i) = a.index {
        if i >= n {
            return Err(format!("--index {i}: the plan has {n} jobs (0..{})", n.saturating_sub(1)));
        }
        return Ok(vec![i]);
    }
    if let Some(s) = &a.shard {
        let bad = || format!("--shard `{s}`: expected i/N with 0 <= i < N (e.g. 0/4)");
        let (i, c) = s.split_once('/').ok_or_else(bad)?;
        let (i, c): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, c.trim().parse().map_err(|_| bad())?);
        if c == 0 || i >= c {
            return Err(bad());
        }
        return Ok(shard(i, c));
    }
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let i = id.checked_sub(min).ok_or("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?;
        return Ok(match num("SLURM_ARRAY_TASK_COUNT")? {
            Some(c) if c > 0 && c < n && i < c => shard(i, c),
            _ if i < n => vec![i],
            _ => vec![],
        });
    }
    if let Some(i) = num("JOB_COMPLETION_INDEX")? {
        return Ok(match num("SWEEP_TASK_COUNT")? {
            Some(c) if c > 0 && c < n && i < c => shard(i, c),
            _ if i < n => vec![i],
            _ => vec![],
        });
    }
    Err("say --index I, --shard i/N or --all (or run as a Slurm array task or a Kubernetes Indexed Job)".into())
}

fn cmd_plan(c: &Common, verbose: bool) -> Result<(), String> {
    let p = plan_experiment(c, verbose)?;
    let m = &p.manifest;
    let (g, t) = m.counts();
    let done = m.jobs.iter().filter(|j| matches!(runner::state(&m.results, j), State::Done)).count();
    let stale = stale::StaleIndex::scan(m)
        .0
        .keys()
        .filter(|&&i| !matches!(runner::state(&m.results, &m.jobs[i]), State::Done))
        .count();
    let stale = if stale > 0 { format!(", {stale} with stale results (see `sweep status`)") } else { String::new() };
    println!(
        "sweep `{}`: {} jobs ({g} GMSE: {} formats x {} distributions; {t} training runs), {done} already done{stale}",
        m.name,
        m.jobs.len(),
        p.exp.format_specs()?.len(),
        p.exp.gmse.distributions.len()
    );
    println!("manifest: {}", m.results.join("manifest.json").display());
    Ok(())
}

/// Cores to use: RAYON_NUM_THREADS when set, else the available parallelism.
fn cores() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// Runs the selected jobs; Err when any failed.
fn cmd_run(a: &RunArgs, verbose: bool) -> Result<(), String> {
    if a.jobs == Some(0) || a.threads == Some(0) {
        return Err("--jobs and --threads must be at least 1".into());
    }
    let p = plan_experiment(&a.common, verbose)?;
    let m = &p.manifest;
    let env = |k: &str| std::env::var(k).ok();
    let mut selected: Vec<&Job> = select(m.jobs.len(), a, &env)?.into_iter().map(|i| &m.jobs[i]).collect();
    let stale = stale::StaleIndex::scan(m);
    let redo = selected.iter().filter(|j| stale.get(j.index).is_some() && !is_done(m, j)).count();
    if redo > 0 && a.keep_stale {
        selected.retain(|j| stale.get(j.index).is_none() || is_done(m, j));
        eprintln!("host: sweep: keeping {redo} stale results (--keep-stale); `sweep status` says what changed");
    } else if redo > 0 {
        eprintln!(
            "host: sweep: {redo} selected jobs have only stale results (older host, trainer or plugin defaults); \
             running them again (--keep-stale keeps them)"
        );
    }
    let cores = cores();
    let parallel = a.jobs.unwrap_or(cores).min(selected.len()).max(1);
    let threads = a.threads.unwrap_or((cores / parallel).max(1));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("--threads {threads}: {e}"))?;
    let ctx = Context { libs: &p.libs, manifest: m, pool: Some(Arc::new(pool)), verbose };
    eprintln!(
        "host: sweep `{}`: running {} of {} jobs into {} ({parallel} at once, {threads} threads each)",
        m.name,
        selected.len(),
        m.jobs.len(),
        m.results.display()
    );
    // An array task (--index, or the scheduler's index) owns its jobs: it waits for a busy one.
    let wait = if a.all || a.shard.is_some() { runner::Busy::Skip } else { runner::Busy::Wait };
    let [done, skipped, busy, failed] = runner::run_jobs(&ctx, &selected, parallel, wait)?;
    eprintln!("host: sweep: {done} done, {skipped} were already done, {busy} running elsewhere, {failed} failed");
    if failed > 0 {
        let msg = format!(
            "{failed} of {} jobs failed (see `host sweep status {}`)",
            selected.len(),
            a.common.experiment.display()
        );
        // Exit 1 when nothing asked for got done, 2 when some jobs did.
        if failed == selected.len() {
            return Err(msg);
        }
        host_core::diag::fail(msg);
    }
    Ok(())
}

/// Whether `j` has a current result.
fn is_done(m: &Manifest, j: &Job) -> bool {
    runner::read_result(&runner::JobFiles::new(&m.results, &j.hash), &j.hash).is_some()
}

/// The status of every job, as JSON.
pub fn status_json(m: &Manifest) -> Value {
    let stale = stale::StaleIndex::scan(m);
    let mut counts = [0usize; 5];
    let jobs: Vec<Value> = m
        .jobs
        .iter()
        .map(|j| {
            let mut v = json!({"index": j.index, "hash": j.hash, "type": j.kind, "what": j.what});
            match runner::state(&m.results, j) {
                State::Done => {
                    counts[0] += 1;
                    v["state"] = "done".into();
                }
                State::Running(host, pid, age) => {
                    counts[1] += 1;
                    v["state"] = "running".into();
                    v["host"] = host.into();
                    v["pid"] = pid.into();
                    v["age_s"] = age.into();
                }
                State::Failed(e) => {
                    counts[2] += 1;
                    v["state"] = "failed".into();
                    v["reason"] = e.into();
                }
                State::Pending(_) if stale.get(j.index).is_some() => {
                    let s = stale.get(j.index).unwrap_or_else(|| unreachable!());
                    counts[4] += 1;
                    v["state"] = "stale".into();
                    v["stale_hash"] = s.hash.clone().into();
                    v["changed"] = s.changed.clone().into();
                }
                State::Pending(why) => {
                    counts[3] += 1;
                    v["state"] = "pending".into();
                    if let Some(w) = why {
                        v["reason"] = w.into();
                    }
                }
            }
            v
        })
        .collect();
    json!({"name": m.name, "results": m.results, "total": m.jobs.len(), "done": counts[0], "running": counts[1],
        "failed": counts[2], "pending": counts[3], "stale": counts[4], "jobs": jobs})
}

fn cmd_status(a: &StatusArgs) -> Result<(), String> {
    let m = Manifest::read(&results_dir(&a.common))?;
    let s = status_json(&m);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "sweep `{}`: {} jobs: {} done, {} running, {} failed, {}{} pending ({})",
        m.name,
        s["total"],
        s["done"],
        s["running"],
        s["failed"],
        if s["stale"] != 0 { format!("{} stale, ", s["stale"]) } else { String::new() },
        s["pending"],
        m.results.display()
    );
    for j in s["jobs"].as_array().into_iter().flatten() {
        let head = format!("#{} {} {}", j["index"], j["hash"].as_str().unwrap_or(""), j["what"].as_str().unwrap_or(""));
        match j["state"].as_str() {
            Some("running") => {
                println!("  running  {head}: {} pid {}, {} s", j["host"].as_str().unwrap_or(""), j["pid"], j["age_s"])
            }
            Some("failed") => println!("  failed   {head}: {}", j["reason"].as_str().unwrap_or("")),
            Some("stale") => {
                let changed: Vec<&str> =
                    j["changed"].as_array().into_iter().flatten().filter_map(|c| c.as_str()).collect();
                println!(
                    "  stale    {head}: result {} is from older code or defaults ({}); `sweep run` redoes it, \
                     --keep-stale keeps it",
                    j["stale_hash"].as_str().unwrap_or(""),
                    changed.join("; ")
                )
            }
            Some("pending") if !j["reason"].is_null() => {
                println!("  pending  {head}: {}", j["reason"].as_str().unwrap_or(""))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The leading columns of `results.csv` (those present), in this order.
const FIRST_COLUMNS: [&str; 22] = [
    "index",
    "hash",
    "type",
    "format",
    "distribution",
    "bits",
    "gmse",
    "stderr",
    "rse",
    "rho",
    "family",
    "samples",
    "model",
    "act_format",
    "tokens_per_param",
    "seed",
    "steps",
    "tokens",
    "non_embedding_params",
    "train_loss",
    "val_loss",
    "w_gmse",
];

/// A CSV cell for a JSON value.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Writes `results.csv`, `results.jsonl` (and the fit); returns (rows, training records).
/// With `keep_stale`, a job without a current result contributes its stale one (`stale = true`).
pub fn collect(m: &Manifest, keep_stale: bool) -> Result<(usize, Vec<Value>), String> {
    let dir = &m.results;
    let stale = if keep_stale { stale::StaleIndex::scan(m) } else { stale::StaleIndex::default() };
    let mut rows: Vec<Value> = Vec::new();
    let mut timings: Vec<Value> = Vec::new();
    let mut train = Vec::new();
    for j in &m.jobs {
        let files = runner::JobFiles::new(dir, &j.hash);
        let (r, old) = match runner::read_result(&files, &j.hash) {
            Some(r) => (r, None),
            None => match stale.get(j.index) {
                Some(s) => (s.record.clone(), Some(s.hash.clone())),
                None => continue,
            },
        };
        let mut row = serde_json::Map::new();
        row.insert("index".into(), j.index.into());
        row.insert("hash".into(), old.clone().unwrap_or_else(|| j.hash.clone()).into());
        row.insert("type".into(), j.kind.clone().into());
        if old.is_some() {
            row.insert("stale".into(), true.into());
        }
        if let Some(o) = r["result"].as_object() {
            for (k, v) in o {
                row.insert(k.clone(), v.clone());
            }
        }
        if j.kind == "train" {
            train.push(r["result"].clone());
        }
        rows.push(Value::Object(row));
        timings.push(r["timing"].clone());
    }
    // CSV columns: index, hash, type, the main fields, then every other result key in order of
    // first appearance.
    let mut cols: Vec<String> = Vec::new();
    for k in FIRST_COLUMNS {
        if k == "index" || k == "hash" || k == "type" || rows.iter().any(|r| r.get(k).is_some()) {
            cols.push(k.to_string());
        }
    }
    for r in &rows {
        for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&cols).map_err(|e| e.to_string())?;
    for r in &rows {
        w.write_record(cols.iter().map(|c| cell(&r[c.as_str()]))).map_err(|e| e.to_string())?;
    }
    let csv = w.into_inner().map_err(|e| e.to_string())?;
    trainer::checkpoint::write_atomic(&dir.join("results.csv"), &csv)?;
    let mut jsonl = String::new();
    for (r, t) in rows.iter().zip(&timings) {
        let mut r = r.clone();
        r["timing"] = t.clone();
        jsonl += &serde_json::to_string(&r).map_err(|e| e.to_string())?;
        jsonl.push('\n');
    }
    trainer::checkpoint::write_atomic(&dir.join("results.jsonl"), jsonl.as_bytes())?;
    Ok((rows.len(), train))
}

/// Fits the `[fit]` law to the training records and writes `fit.json`, `fit.txt`, `plots/`, `law.toml`.
pub fn fit(m: &Manifest, f: &exp::Fit, records: &[Value], verbose: bool) -> Result<(), String> {
    let dir = &m.results;
    let table = host_fit::Table::from_json(records)?;
    let mut data = host_fit::read_runs(&table, None, &[])?;
    if !data.pending.is_empty() {
        let specs: Vec<String> = data.pending.iter().cloned().collect();
        let (measured, d) = host_core::session::measure_specs(&m.plugins, &specs, None);
        d.report(verbose);
        let measured = measured?;
        data.fill(&measured);
    }
    for w in &data.warnings {
        host_core::diag::warn(format!("fit: {w}"));
    }
    if let Some(e) = &data.unmeasured {
        host_core::diag::fail(format!("fit: {e}"));
    }
    let args = host_fit::FitArgs {
        runs: dir.join("results.jsonl"),
        law: f.law.0,
        map: None,
        filters: vec![],
        fix: f.fix.clone(),
        bound: f.bound.clone(),
        delta: f.delta.map(|d| d.0).unwrap_or(1e-3),
        bootstrap: f.bootstrap,
        seed: f.seed,
        threads: None,
        no_compare: f.no_compare,
        force: f.force,
        json: false,
        plot: Some(dir.join("plots")),
        write_law: None,
        plugins: m.plugins.clone(),
    };
    let report = host_fit::report::build(&args, &data.runs)?;
    for w in &report.warnings {
        host_core::diag::warn(format!("fit: {w}"));
    }
    let text = serde_json::to_string_pretty(&report.to_json()).map_err(|e| e.to_string())?;
    trainer::checkpoint::write_atomic(&dir.join("fit.json"), format!("{text}\n").as_bytes())?;
    trainer::checkpoint::write_atomic(&dir.join("fit.txt"), report.to_text().as_bytes())?;
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| format!("{}: {e}", plots.display()))?;
    for (name, svg) in report.plots()? {
        trainer::checkpoint::write_atomic(&plots.join(name), svg.as_bytes())?;
    }
    match report.law_file(&args) {
        Ok(law) => trainer::checkpoint::write_atomic(&dir.join("law.toml"), law.as_bytes())?,
        Err(e) => {
            if verbose {
                host_core::diag::warn(format!("fit: no law file: {e}"));
            }
        }
    }
    Ok(())
}

fn cmd_collect(a: &CollectArgs, verbose: bool) -> Result<(), String> {
    let c = &a.common;
    let exp = Experiment::read(&c.experiment)?;
    let m = Manifest::read(&results_dir(c))?;
    let (n, train) = collect(&m, a.keep_stale)?;
    eprintln!(
        "host: sweep: collected {n} of {} jobs into {} and results.jsonl",
        m.jobs.len(),
        m.results.join("results.csv").display()
    );
    if let Some(f) = &exp.fit {
        if train.is_empty() {
            host_core::diag::warn("fit: no finished training runs yet; no fit written");
        } else {
            match fit(&m, f, &train, verbose) {
                Ok(()) => {
                    eprintln!("host: sweep: wrote {} (and fit.txt, plots/)", m.results.join("fit.json").display())
                }
                Err(e) => {
                    // The results stay collected; the fit's failure is recorded beside them.
                    let v = json!({"error": e});
                    trainer::checkpoint::write_atomic(&m.results.join("fit.json"), format!("{v}\n").as_bytes())?;
                    trainer::checkpoint::write_atomic(
                        &m.results.join("fit.txt"),
                        format!("fit failed: {e}\n").as_bytes(),
                    )?;
                    host_core::diag::warn(format!("fit of {} training runs failed: {e}", train.len()));
                }
            }
        }
    }
    Ok(())
}

fn cmd_emit(a: &EmitArgs, verbose: bool) -> Result<(), String> {
    let p = plan_experiment(&a.common, verbose)?;
    let cwd = std::env::current_dir().map_err(|e| format!("current folder: {e}"))?;
    if a.target == emit::Target::Slurm {
        let logs = p.manifest.results.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    }
    print!("{}", emit::emit(a.target, &p.manifest, &a.options, &cwd)?);
    Ok(())
}

/// Entry point of `host sweep`.
pub fn run(a: SweepArgs, verbose: bool) -> Result<(), String> {
    match a.action {
        Action::Plan(c) => cmd_plan(&c, verbose),
        Action::Run(r) => cmd_run(&r, verbose),
        Action::Status(s) => cmd_status(&s),
        Action::Collect(c) => cmd_collect(&c, verbose),
        Action::Emit(e) => cmd_emit(&e, verbose),
        Action::All(a) => {
            cmd_plan(&a.common, verbose)?;
            let r = RunArgs {
                common: a.common.clone(),
                index: None,
                shard: None,
                all: true,
                jobs: a.jobs,
                threads: a.threads,
                keep_stale: a.keep_stale,
            };
            let ran = cmd_run(&r, verbose);
            cmd_collect(&CollectArgs { common: a.common.clone(), keep_stale: a.keep_stale }, verbose)?;
            let dir = results_dir(&a.common);
            match host_report::report::write(&dir, &dir.join("report")) {
                Ok(p) => eprintln!("host: report: wrote {}", p.display()),
                Err(e) => host_core::diag::warn(format!("report not written: {e}")),
            }
            ran
        }
    }
}

#[cfg(test)]
mod tests;
