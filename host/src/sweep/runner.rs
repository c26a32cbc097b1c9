//! Running jobs into a shared results folder, and reading its state.
//!
//! Layout of `DIR/jobs/` (one set of files per job hash `H`):
//! - `H.json`: the result, written atomically (temporary file in the same
//!   folder, fsync, rename) once the job finished; its presence means done;
//! - `H.running`: the claim of a process working on it (host, pid, start
//!   time), created exclusively (so two processes never run one job at once
//!   on one host) and touched every 30 s; stale when its pid is gone (same
//!   host) or it was not touched for 5 minutes (another host);
//! - `H.failed.json`: the last failure (error, host, pid, time), removed when
//!   the job later succeeds.
//!
//! Training jobs train into `DIR/train/H/` and resume from its checkpoint.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::plan::{Job, Manifest};
use crate::cli::prepare_one;
use crate::dist::Dist;
use crate::engine::{self, Config, Subject};
use crate::loader::Loaded;

/// Seconds after which another host's claim that was not touched is stale.
pub const STALE_AFTER_S: u64 = 300;
/// Interval of the claim heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// This machine's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `unknown`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether process `pid` exists on this machine (`None` where that cannot be told).
fn pid_alive(pid: u64) -> Option<bool> {
    if Path::new("/proc/self").exists() { Some(Path::new(&format!("/proc/{pid}")).exists()) } else { None }
}

/// Paths of one job's files.
pub struct JobFiles {
    /// `H.json`.
    pub result: PathBuf,
    /// `H.running`.
    pub running: PathBuf,
    /// `H.failed.json`.
    pub failed: PathBuf,
    /// `DIR/train/H`.
    pub train: PathBuf,
}

impl JobFiles {
    /// The files of job `hash` in `dir`.
    pub fn new(dir: &Path, hash: &str) -> JobFiles {
        let jobs = dir.join("jobs");
        JobFiles {
            result: jobs.join(format!("{hash}.json")),
            running: jobs.join(format!("{hash}.running")),
            failed: jobs.join(format!("{hash}.failed.json")),
            train: dir.join("train").join(hash),
        }
    }
}

/// Reads a finished result (None when absent or not a result of `hash`).
pub fn read_result(files: &JobFiles, hash: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&files.result).ok()?).ok()?;
    (v["hash"] == hash).then_some(v)
}

/// A claim's state.
#[derive(Debug, Clone)]
pub enum Claim {
    /// No claim.
    None,
    /// Held by a live (or not known dead) process: host, pid, start time, seconds since touched.
    Live {
        /// Host name.
        host: String,
        /// Process id.
        pid: u64,
        /// Start time (Unix seconds).
        started: u64,
        /// Seconds since the start.
        age: u64,
    },
    /// Left by a dead process: why it is stale.
    Stale(String),
}

/// Reads the claim of a job.
pub fn claim_state(files: &JobFiles) -> Claim {
    let Ok(meta) = std::fs::metadata(&files.running) else { return Claim::None };
    let touched = meta.modified().ok().and_then(|m| m.elapsed().ok()).map(|d| d.as_secs()).unwrap_or(0);
    let v: Value = match std::fs::read_to_string(&files.running).ok().and_then(|t| serde_json::from_str(&t).ok()) {
        Some(v) => v,
        None => return Claim::Stale("unreadable claim".into()),
    };
    let host = v["host"].as_str().unwrap_or("").to_string();
    let pid = v["pid"].as_u64().unwrap_or(0);
    let started = v["started"].as_u64().unwrap_or(0);
    if host == hostname() {
        if pid == std::process::id() as u64 {
            return Claim::Live { host, pid, started, age: now_s().saturating_sub(started) };
        }
        if pid_alive(pid) == Some(false) {
            return Claim::Stale(format!("pid {pid} is gone on {host}"));
        }
    } else if touched > STALE_AFTER_S {
        return Claim::Stale(format!("{host} pid {pid} silent for {touched} s"));
    }
    Claim::Live { host, pid, started, age: now_s().saturating_sub(started) }
}

/// Removes the temporary files a killed writer of job `hash` may have left.
fn clean_temps(files: &JobFiles, hash: &str) {
    let mut dirs = vec![(files.result.parent().map(Path::to_path_buf), Some(hash.to_string()))];
    dirs.push((Some(files.train.clone()), None));
    for (dir, prefix) in dirs {
        let Some(dir) = dir else { continue };
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.contains(".tmp-") && prefix.as_ref().is_none_or(|p| name.starts_with(p.as_str())) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Tries to claim a job: Ok(true) claimed, Ok(false) held by a live process.
fn try_claim(files: &JobFiles, hash: &str) -> Result<bool, String> {
    for _ in 0..3 {
        let body = json!({"hash": hash, "host": hostname(), "pid": std::process::id(), "started": now_s()});
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&files.running) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(format!("{body}\n").as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| format!("{}: {e}", files.running.display()))?;
                clean_temps(files, hash);
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match claim_state(files) {
                Claim::Live { .. } => return Ok(false),
                _ => {
                    let _ = std::fs::remove_file(&files.running);
                }
            },
            Err(e) => return Err(format!("{}: {e}", files.running.display())),
        }
    }
    Ok(false)
}

/// Everything a job needs to run.
pub struct Context<'a> {
    /// The loaded plugins.
    pub libs: &'a [Loaded],
    /// The plan.
    pub manifest: &'a Manifest,
    /// Worker threads inside a job (None = rayon's global pool).
    pub pool: Option<Arc<rayon::ThreadPool>>,
    /// Verbose plugin loading (training).
    pub verbose: bool,
}

/// Measures one GMSE job.
fn run_gmse(ctx: &Context, job: &Job) -> Result<Value, String> {
    let c = &job.config;
    let spec = c["format"].as_str().ok_or("job without format")?;
    let dist_name = c["dist"].as_str().ok_or("job without dist")?;
    let dist = Dist::parse(dist_name)?;
    let shape = super::exp::parse_shape(c["shape"].as_str().unwrap_or(""))?;
    let shape = sdk::Shape::new(shape.0, shape.1);
    let p = prepare_one(ctx.libs, spec, dist.shape(0, shape))?;
    let mut prepared = vec![p];
    dist.average_bits(&mut prepared);
    let p = prepared.pop().ok_or_else(|| format!("format `{spec}` cannot describe every tensor of {dist_name}"))?;
    let cfg = Config {
        shape,
        dist: dist.clone(),
        seed: c["seed"].as_u64().unwrap_or(0),
        target_rse: c["target_rse"].as_f64().unwrap_or(1e-3),
        max_samples: c["max_samples"].as_u64().unwrap_or(1 << 30),
        fixed_samples: c["samples"].as_u64(),
    };
    let subjects: Vec<&dyn Subject> = vec![&p.format as &dyn Subject];
    let m = engine::measure(&subjects, &cfg, &mut |_, _, _| {})
        .pop()
        .ok_or("the engine returned nothing")?
        .map_err(|e| format!("format `{spec}` (plugin `{}`): {e}", p.plugin))?;
    let family = p.info.family.as_str().to_string();
    let law = crate::law::Law::default_law();
    Ok(json!({
        "format": spec, "distribution": dist.name(), "plugin": p.plugin, "kind": p.kind, "family": family,
        "label": p.info.label, "bits": p.info.bits.total(), "gmse": m.gmse, "stderr": m.stderr, "rse": m.rse(),
        "samples": m.samples, "reached_target": cfg.fixed_samples.is_none().then_some(m.reached_target), "rho": law.rho(&family, m.gmse),
        "law": law.name, "shape": c["shape"], "seed": cfg.seed,
    }))
}

/// Record fields that depend on the machine or the moment, moved under `timing`.
const TIMING_KEYS: [&str; 4] = ["wall_seconds", "tokens_per_second", "threads", "out"];

/// Trains one training job (resuming its checkpoint) and splits off the timing fields.
fn run_train(ctx: &Context, job: &Job, files: &JobFiles) -> Result<(Value, Value), String> {
    let c = &job.config;
    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
    let a = crate::train::TrainArgs {
        model: s("model"),
        format: s("format"),
        act_format: s("act_format"),
        tokens_per_param: c["tokens_per_param"].as_f64().unwrap_or(20.0),
        steps: c["steps"].as_u64(),
        data: s("data"),
        seed: c["seed"].as_u64().unwrap_or(0),
        threads: None,
        out: Some(files.train.clone()),
        resume: files.train.join("checkpoint.safetensors").exists(),
        json: false,
        lr: c["lr"].as_f64().map(|x| x as f32),
        eval_every: c["eval_every"].as_u64().unwrap_or(200),
        eval_windows: c["eval_windows"].as_u64().unwrap_or(64) as usize,
        checkpoint_every: c["checkpoint_every"].as_u64().unwrap_or(100),
        plugins: ctx.manifest.plugins.clone(),
        law: None,
        list_models: false,
    };
    let mut record = crate::train::execute(&a, ctx.verbose)?;
    let mut timing = serde_json::Map::new();
    if let Some(obj) = record.as_object_mut() {
        for k in TIMING_KEYS {
            if let Some(v) = obj.remove(k) {
                timing.insert(k.to_string(), v);
            }
        }
        obj.insert("tokens_per_param".into(), c["tokens_per_param"].clone());
    }
    // Whether this attempt resumed a checkpoint depends on history, not on the configuration.
    timing.insert("resumed".into(), Value::Bool(a.resume));
    Ok((record, Value::Object(timing)))
}

/// Outcome of one job in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Already finished before.
    Skipped,
    /// Another live process holds it.
    Busy,
    /// Ran and finished.
    Done,
    /// Ran and failed.
    Failed,
}

/// Runs one job if it is not finished and no live process holds it.
pub fn run_job(ctx: &Context, job: &Job, held: &Mutex<BTreeSet<PathBuf>>) -> Result<Outcome, String> {
    let dir = &ctx.manifest.results;
    let files = JobFiles::new(dir, &job.hash);
    if read_result(&files, &job.hash).is_some() {
        if matches!(claim_state(&files), Claim::Stale(_)) {
            let _ = std::fs::remove_file(&files.running);
        }
        return Ok(Outcome::Skipped);
    }
    if !try_claim(&files, &job.hash)? {
        return Ok(Outcome::Busy);
    }
    held.lock().map_err(|_| "claim list poisoned")?.insert(files.running.clone());
    // Another process may have finished it between the check and the claim.
    let outcome = if read_result(&files, &job.hash).is_some() {
        Ok(Outcome::Skipped)
    } else {
        let started = Instant::now();
        let begun = now_s();
        let run = || -> Result<(Value, Value), String> {
            match job.kind.as_str() {
                "gmse" => Ok((run_gmse(ctx, job)?, json!({}))),
                "train" => run_train(ctx, job, &files),
                k => Err(format!("unknown job type `{k}`")),
            }
        };
        let result = match &ctx.pool {
            Some(pool) => pool.install(run),
            None => run(),
        };
        let stamp = |mut timing: Value| {
            timing["seconds"] = json!(started.elapsed().as_secs_f64());
            timing["host"] = json!(hostname());
            timing["pid"] = json!(std::process::id());
            timing["started"] = json!(begun);
            timing["finished"] = json!(now_s());
            timing["threads"] = json!(rayon::current_num_threads());
            timing
        };
        match result {
            Ok((result, timing)) => {
                let v = json!({"hash": job.hash, "type": job.kind, "what": job.what, "config": job.config,
                    "result": result, "timing": stamp(timing)});
                let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
                trainer::checkpoint::write_atomic(&files.result, format!("{text}\n").as_bytes())?;
                let _ = std::fs::remove_file(&files.failed);
                Ok(Outcome::Done)
            }
            Err(e) => {
                let v = json!({"hash": job.hash, "type": job.kind, "what": job.what, "error": e,
                    "timing": stamp(json!({}))});
                let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
                trainer::checkpoint::write_atomic(&files.failed, format!("{text}\n").as_bytes())?;
                eprintln!("host: sweep: job {} ({}) failed: {e}", job.index, job.what);
                Ok(Outcome::Failed)
            }
        }
    };
    let _ = std::fs::remove_file(&files.running);
    held.lock().map_err(|_| "claim list poisoned")?.remove(&files.running);
    outcome
}

/// Runs `selected` jobs with `parallel` workers; returns (done, skipped, busy, failed).
pub fn run_jobs(ctx: &Context, selected: &[&Job], parallel: usize) -> Result<[usize; 4], String> {
    let held: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    let next = AtomicUsize::new(0);
    let counts = Mutex::new([0usize; 4]);
    let stop = AtomicBool::new(false);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let total = selected.len();
    std::thread::scope(|s| {
        // Heartbeat: touch the claims this process holds, so other hosts see them alive.
        let hb = s.spawn(|| {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= HEARTBEAT {
                    last = Instant::now();
                    if let Ok(h) = held.lock() {
                        for p in h.iter() {
                            if let Ok(f) = std::fs::OpenOptions::new().append(true).open(p) {
                                let _ = f.set_modified(SystemTime::now());
                            }
                        }
                    }
                }
            }
        });
        let workers: Vec<_> = (0..parallel.max(1))
            .map(|_| {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(job) = selected.get(i) else { break };
                        let t = Instant::now();
                        match run_job(ctx, job, &held) {
                            Ok(o) => {
                                let slot = match o {
                                    Outcome::Done => 0,
                                    Outcome::Skipped => 1,
                                    Outcome::Busy => 2,
                                    Outcome::Failed => 3,
                                };
                                let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                                c[slot] += 1;
                                let word = ["done", "already done", "running elsewhere", "FAILED"][slot];
                                let finished = c.iter().sum::<usize>();
                                drop(c);
                                if o != Outcome::Skipped {
                                    eprintln!(
                                        "host: sweep: [{finished}/{total}] job {} {}: {word} ({:.1} s)",
                                        job.index,
                                        job.what,
                                        t.elapsed().as_secs_f64()
                                    );
                                }
                            }
                            Err(e) => {
                                // The results folder itself failed (cannot write): stop.
                                errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        stop.store(true, Ordering::Relaxed);
        let _ = hb.join();
    });
    if let Some(e) = errors.into_inner().unwrap_or_default().into_iter().next() {
        return Err(e);
    }
    Ok(counts.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// State of one job in the results folder.
#[derive(Debug, Clone)]
pub enum State {
    /// Finished.
    Done,
    /// Claimed by a live process: host, pid, seconds since start.
    Running(String, u64, u64),
    /// Failed: the first line of its error.
    Failed(String),
    /// Not started (or left by a dead process: why).
    Pending(Option<String>),
}

/// The state of `job` in `dir`.
pub fn state(dir: &Path, job: &Job) -> State {
    let files = JobFiles::new(dir, &job.hash);
    if read_result(&files, &job.hash).is_some() {
        return State::Done;
    }
    let claim = claim_state(&files);
    if let Claim::Live { host, pid, age, .. } = claim {
        return State::Running(host, pid, age);
    }
    if let Some(v) = std::fs::read_to_string(&files.failed).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()) {
        let e = v["error"].as_str().unwrap_or("unknown error").lines().next().unwrap_or("").to_string();
        return State::Failed(e);
    }
    match claim {
        Claim::Stale(why) => State::Pending(Some(format!("stale claim: {why}"))),
        _ => State::Pending(None),
    }
}
