//! Running jobs into a shared results folder, and reading its state.
//!
//! Layout of `DIR/jobs/` (one set of files per job hash `H`):
//! - `H.json`: the result; its presence means done. Published once: the
//!   complete record is written to a unique file in `DIR/tmp/` and fsynced,
//!   then hard-linked to `H.json`, which fails when a result exists (a
//!   rename would replace it);
//! - `H.running`: the lease of the runner working on it (see [`super::lease`]:
//!   created by `link()` of a complete unique file, heartbeat = mtime touched
//!   every expiry/10, expired after `$HOST_SWEEP_LEASE_S` seconds, default
//!   300, without heartbeat, taken over by rename-and-verify, fenced by the
//!   holder's token);
//! - `H.failed.json`: the last failure (error, host, pid, time), written only
//!   by the lease holder and removed when the job later succeeds.
//!
//! `DIR/tmp/` holds unique files in flight (lease candidates, results before
//! their link, expired leases moved aside); what a killed runner leaves
//! there is removed once older than the expiry. `DIR/published.log` gets one
//! JSON line per publication (hash, index, token, generation, host, pid,
//! time), appended by the publisher right after its link succeeded (on NFS,
//! appends from different clients may interleave: it is a record for
//! people and tests, not part of the protocol).
//!
//! A job runs only under its lease, and its result is published only if the
//! lease still holds the runner's token right before the link:
//!
//! 1. result exists: skip (removing an expired lease left beside it);
//! 2. acquire the lease: create it, or take it over when expired (with the
//!    next generation); when another runner's live lease holds the job, `--all` and
//!    `--shard` skip it (counted "running elsewhere"), while an array task
//!    (`--index`, or the Slurm / Kubernetes index) waits for it, printing
//!    progress, until its result appears (exit 0) or its lease expires and
//!    is taken over (then runs it): an array task never ends successfully
//!    without a result for its index;
//! 3. check the result again (it may have appeared meanwhile), run the job;
//! 4. fence (still our lease?), then publish by link; a runner that lost its
//!    lease publishes nothing and, as an array task, goes back to waiting;
//! 5. release the lease if it is still ours.
//!
//! Training jobs train into a per-attempt folder `DIR/train/H/attempt-TOKEN/`
//! (TOKEN: the lease's), which starts from a copy of the newest complete
//! checkpoint of the earlier attempts (and their metrics up to its step), so
//! a runner that was paused and came back writes only into its own attempt
//! and never into a newer one's. The publisher removes the other attempts'
//! folders once the result is published.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::lease::{self, Acquired, Lease, Leases, Policy};
use super::plan::{Job, Manifest};
use host_core::dist::Dist;
use host_core::engine::{self, Config, Subject};
use host_core::loader::Loaded;
use host_core::session::prepare_one;

pub use super::lease::hostname;

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Paths of one job's files.
pub struct JobFiles {
    /// `H.json`.
    pub result: PathBuf,
    /// `H.running`: the lease.
    pub running: PathBuf,
    /// `H.failed.json`.
    pub failed: PathBuf,
    /// `DIR/train/H` (attempt folders inside).
    pub train: PathBuf,
    /// `DIR/tmp`: unique files in flight.
    pub scratch: PathBuf,
    /// `DIR/published.log`.
    pub published: PathBuf,
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
            scratch: dir.join("tmp"),
            published: dir.join("published.log"),
        }
    }
}

/// Reads a finished result (None when absent or not a result of `hash`).
pub fn read_result(files: &JobFiles, hash: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&files.result).ok()?).ok()?;
    (v["hash"] == hash).then_some(v)
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
    let mut d = host_core::diag::Diagnostics::default();
    let dist = Dist::parse(dist_name, &mut d);
    d.report(ctx.verbose);
    let dist = dist?;
    let shape = super::exp::parse_shape(c["shape"].as_str().unwrap_or(""))?;
    let shape = sdk::Shape::new(shape.0, shape.1);
    let p = prepare_one(ctx.libs, spec, dist.shape(0, shape))?;
    let mut prepared = vec![p];
    host_core::session::average_bits(&dist, &mut prepared).report(ctx.verbose);
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
    let law = host_core::law::Law::default_law();
    Ok(json!({
        "format": spec, "distribution": dist.name(), "plugin": p.plugin, "kind": p.kind, "family": family,
        "label": p.info.label, "bits": p.info.bits.total(), "gmse": m.gmse, "stderr": m.stderr, "rse": m.rse(),
        "samples": m.samples, "reached_target": cfg.fixed_samples.is_none().then_some(m.reached_target), "rho": law.rho(&family, m.gmse),
        "law": law.name, "shape": c["shape"], "seed": cfg.seed,
    }))
}

/// Record fields that depend on the machine or the moment, moved under `timing`.
const TIMING_KEYS: [&str; 4] = ["wall_seconds", "tokens_per_second", "threads", "out"];

/// The name of the checkpoint file in a training folder.
const CHECKPOINT: &str = "checkpoint.safetensors";

/// Prepares the attempt folder `attempt` of the training job in `train`: copies in the newest
/// checkpoint (by step) that loads completely among the earlier attempts (and the older layout,
/// a checkpoint directly in `train`), with the metrics lines up to its step. Returns the step
/// it resumes from, None when it starts afresh.
pub fn prepare_attempt(train: &Path, attempt: &Path) -> Result<Option<u64>, String> {
    std::fs::create_dir_all(attempt).map_err(|e| format!("{}: {e}", attempt.display()))?;
    let mut dirs = vec![train.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(train) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with("attempt-") && p != attempt && p.is_dir() {
                dirs.push(p);
            }
        }
    }
    let mut found: Vec<(u64, PathBuf)> = dirs
        .into_iter()
        .filter_map(|d| {
            let (_, meta) = trainer::checkpoint::load(&d.join(CHECKPOINT)).ok()?;
            Some((meta["step"].as_u64()?, d))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let ours = attempt.join(CHECKPOINT);
    for (_, dir) in found {
        // Read once: a checkpoint replaced meanwhile is copied whole, old or new.
        let Ok(bytes) = std::fs::read(dir.join(CHECKPOINT)) else { continue };
        trainer::checkpoint::write_atomic(&ours, &bytes)?;
        let Some(step) = trainer::checkpoint::load(&ours).ok().and_then(|(_, m)| m["step"].as_u64()) else {
            let _ = std::fs::remove_file(&ours);
            continue;
        };
        let metrics: String = std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["step"].as_u64().is_some_and(|s| s <= step)))
            .map(|l| format!("{l}\n"))
            .collect();
        trainer::checkpoint::write_atomic(&attempt.join("metrics.jsonl"), metrics.as_bytes())?;
        return Ok(Some(step));
    }
    Ok(None)
}

/// Trains one training job in its attempt folder (resuming the newest checkpoint of earlier
/// attempts) and splits off the timing fields.
fn run_train(ctx: &Context, job: &Job, files: &JobFiles, lease: &Lease) -> Result<(Value, Value), String> {
    let c = &job.config;
    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
    let attempt = files.train.join(format!("attempt-{}", lease.holder.token));
    let resumed_from = prepare_attempt(&files.train, &attempt)?;
    let a = host_train::TrainArgs {
        model: s("model"),
        format: s("format"),
        act_format: s("act_format"),
        tokens_per_param: c["tokens_per_param"].as_f64().unwrap_or(20.0),
        steps: c["steps"].as_u64(),
        data: s("data"),
        seed: c["seed"].as_u64().unwrap_or(0),
        threads: None,
        out: Some(attempt),
        resume: resumed_from.is_some(),
        json: false,
        lr: c["lr"].as_f64().map(|x| x as f32),
        eval_every: c["eval_every"].as_u64().unwrap_or(200),
        eval_windows: c["eval_windows"].as_u64().unwrap_or(64) as usize,
        checkpoint_every: c["checkpoint_every"].as_u64().unwrap_or(100),
        plugins: ctx.manifest.plugins.clone(),
        law: None,
        list_models: false,
        device: c["device"].as_str().unwrap_or("cpu").to_string(),
        accum: c["accum"].as_u64().unwrap_or(1) as usize,
        batch_tokens: c["batch_tokens"].as_u64().map(|t| t as usize),
        matmul: c["matmul"].as_str().unwrap_or("fp32").to_string(),
    };
    let mut record = host_train::execute(&a, ctx.verbose)?;
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
    if let Some(step) = resumed_from {
        timing.insert("resumed_step".into(), step.into());
    }
    Ok((record, Value::Object(timing)))
}

/// Outcome of one job in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Already finished before.
    Skipped,
    /// Finished by another runner while this one waited for it.
    DoneElsewhere,
    /// Another live runner holds its lease.
    Busy,
    /// The lease was taken over while the job ran: nothing published.
    Lost,
    /// Ran, finished and published.
    Done,
    /// Ran and failed.
    Failed,
}

impl Outcome {
    /// Slot in the counts (done, skipped, busy, failed) and the word of the progress line.
    fn slot(self) -> (usize, &'static str) {
        match self {
            Outcome::Done => (0, "done"),
            Outcome::Skipped => (1, "already done"),
            Outcome::DoneElsewhere => (1, "done by another runner"),
            Outcome::Busy => (2, "running elsewhere"),
            Outcome::Lost => (2, "lease lost to another runner, nothing published"),
            Outcome::Failed => (3, "FAILED"),
        }
    }
}

/// What a run does with a job whose lease another live runner holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Skip it (`--all`, `--shard`: it is someone else's).
    Skip,
    /// Wait for its result, or take it over when its lease expires (an array task owns its index).
    Wait,
}

/// What the workers of one run share.
struct Shared {
    leases: Leases,
    /// Leases held now (touched by the heartbeat thread).
    held: Mutex<BTreeMap<PathBuf, Lease>>,
    /// What to do with a job another live runner holds.
    busy: Busy,
}

/// Appends one line to `DIR/published.log` (one write, so lines from processes of one host
/// never interleave).
fn log_publication(files: &JobFiles, job: &Job, lease: &Lease) {
    use std::io::Write;
    let line = json!({"hash": job.hash, "index": job.index, "token": lease.holder.token,
        "generation": lease.holder.generation, "host": lease.holder.host, "pid": lease.holder.pid, "time": now_s()});
    let r = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&files.published)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = r {
        host_core::diag::warn(format!("sweep: {}: {e} (the result is published)", files.published.display()));
    }
}

/// Removes the attempt folders of `train` other than `keep` (the result is published: no
/// attempt can publish any more).
fn remove_other_attempts(train: &Path, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(train) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with("attempt-") && p != keep {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

/// Runs `job` under `lease` (just acquired), publishes or records its failure, releases.
fn run_owned(ctx: &Context, job: &Job, files: &JobFiles, sh: &Shared, lease: Lease) -> Result<Outcome, String> {
    if let Some(t) = &lease.took_over {
        eprintln!("host: sweep: job {} {}: took over {t}", job.index, job.what);
    }
    sh.held.lock().map_err(|_| "lease list poisoned")?.insert(lease.path.clone(), lease.clone());
    let outcome = run_leased(ctx, job, files, sh, &lease);
    sh.held.lock().map_err(|_| "lease list poisoned")?.remove(&lease.path);
    let released = sh.leases.release(&lease);
    let outcome = outcome?;
    released?;
    Ok(outcome)
}

fn run_leased(ctx: &Context, job: &Job, files: &JobFiles, sh: &Shared, lease: &Lease) -> Result<Outcome, String> {
    // Another runner may have published it between our check and the lease.
    if read_result(files, &job.hash).is_some() {
        return Ok(Outcome::Skipped);
    }
    let started = Instant::now();
    let begun = now_s();
    let run = || -> Result<(Value, Value), String> {
        match job.kind.as_str() {
            "gmse" => Ok((run_gmse(ctx, job)?, json!({}))),
            "train" => run_train(ctx, job, files, lease),
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
        timing["lease"] = json!({"token": lease.holder.token, "generation": lease.holder.generation});
        timing
    };
    let token = &lease.holder.token;
    match result {
        Ok((result, timing)) => {
            let v = json!({"hash": job.hash, "type": job.kind, "what": job.what, "config": job.config,
                "result": result, "timing": stamp(timing)});
            let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
            let tmp = files.scratch.join(format!("{}.json.{token}", job.hash));
            lease::write_new(&tmp, format!("{text}\n").as_bytes())?;
            // Fencing: publish only while the lease still holds our token.
            let published = if sh.leases.holds(lease) { Some(lease::link_new(&tmp, &files.result)) } else { None };
            let _ = std::fs::remove_file(&tmp);
            match published {
                None => Ok(Outcome::Lost),
                Some(Ok(false)) => Ok(Outcome::Skipped),
                Some(Err(e)) => Err(e),
                Some(Ok(true)) => {
                    log_publication(files, job, lease);
                    if let Some(d) = files.result.parent() {
                        lease::sync_dir(d);
                    }
                    let _ = std::fs::remove_file(&files.failed);
                    if job.kind == "train" {
                        remove_other_attempts(&files.train, &files.train.join(format!("attempt-{token}")));
                    }
                    Ok(Outcome::Done)
                }
            }
        }
        Err(e) => {
            if read_result(files, &job.hash).is_some() {
                return Ok(Outcome::Skipped);
            }
            if !sh.leases.holds(lease) {
                eprintln!(
                    "host: sweep: job {} ({}) failed after its lease was taken over (not recorded): {e}",
                    job.index, job.what
                );
                return Ok(Outcome::Lost);
            }
            let v = json!({"hash": job.hash, "type": job.kind, "what": job.what, "error": e,
                "timing": stamp(json!({}))});
            let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
            // A failure record may replace an older one: unique file, then rename.
            let tmp = files.scratch.join(format!("{}.failed.json.{token}", job.hash));
            lease::write_new(&tmp, format!("{text}\n").as_bytes())?;
            std::fs::rename(&tmp, &files.failed).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!("cannot write {}: {e}", files.failed.display())
            })?;
            eprintln!("host: sweep: job {} ({}) failed: {e}", job.index, job.what);
            Ok(Outcome::Failed)
        }
    }
}

/// Runs one job unless it is finished; a job another live runner holds is skipped or waited
/// for, as `sh.busy` says.
fn run_job(ctx: &Context, job: &Job, sh: &Shared) -> Result<Outcome, String> {
    let files = JobFiles::new(&ctx.manifest.results, &job.hash);
    let policy = sh.leases.policy();
    let mut waiting: Option<(Instant, Instant)> = None;
    loop {
        if read_result(&files, &job.hash).is_some() {
            // A runner killed after publishing leaves its lease (and maybe a failure) behind.
            if files.running.exists() {
                let _ = sh.leases.clear_expired(&files.running);
            }
            if files.failed.exists() {
                let _ = std::fs::remove_file(&files.failed);
            }
            return Ok(if waiting.is_some() { Outcome::DoneElsewhere } else { Outcome::Skipped });
        }
        match sh.leases.acquire(&files.running, &job.hash)? {
            Acquired::Owned(lease) => {
                let o = run_owned(ctx, job, &files, sh, lease)?;
                if o == Outcome::Lost && sh.busy == Busy::Wait {
                    // An array task still owes its index a result: back to waiting.
                    waiting.get_or_insert((Instant::now(), Instant::now()));
                    continue;
                }
                return Ok(o);
            }
            Acquired::Held(seen) => {
                if sh.busy == Busy::Skip {
                    return Ok(Outcome::Busy);
                }
                let now = Instant::now();
                let every = (policy.expiry / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
                let first = waiting.is_none();
                let (since, last) = waiting.get_or_insert((now, now));
                if first || last.elapsed() >= every {
                    *last = now;
                    eprintln!(
                        "host: sweep: job {} {}: held by {} (heartbeat {:.1} s ago); waiting {:.0} s so far for its \
                         result, or for its lease to expire ({} s without heartbeat)",
                        job.index,
                        job.what,
                        seen.describe(),
                        seen.age,
                        since.elapsed().as_secs_f64(),
                        policy.expiry.as_secs_f64()
                    );
                }
                std::thread::sleep(policy.poll());
            }
        }
    }
}

/// Runs `selected` jobs with `parallel` workers; returns (done, skipped, busy, failed).
/// `busy` says what to do with a job another live runner holds.
pub fn run_jobs(ctx: &Context, selected: &[&Job], parallel: usize, busy: Busy) -> Result<[usize; 4], String> {
    let dir = &ctx.manifest.results;
    let scratch = dir.join("tmp");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let policy = Policy::from_env()?;
    // What killed runners left in flight, once older than the expiry.
    lease::remove_old(&scratch, policy.expiry);
    let sh = Shared { leases: Leases::new(policy, scratch.clone()), held: Mutex::new(BTreeMap::new()), busy };
    let next = AtomicUsize::new(0);
    let counts = Mutex::new([0usize; 4]);
    let stop = AtomicBool::new(false);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let total = selected.len();
    std::thread::scope(|s| {
        // Heartbeat: touch the leases this process holds, so other runners see them alive.
        let hb = s.spawn(|| {
            let every = policy.heartbeat();
            let tick = (every / 4).min(Duration::from_millis(200));
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                if last.elapsed() >= every {
                    last = Instant::now();
                    let held: Vec<Lease> = sh.held.lock().map(|h| h.values().cloned().collect()).unwrap_or_default();
                    for l in &held {
                        sh.leases.heartbeat(l);
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
                        match run_job(ctx, job, &sh) {
                            Ok(o) => {
                                let (slot, word) = o.slot();
                                let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                                c[slot] += 1;
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
    lease::remove_old(&scratch, policy.expiry);
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
    /// Leased by a live runner: host, pid, seconds since the lease was made.
    Running(String, u64, u64),
    /// Failed: the first line of its error.
    Failed(String),
    /// Not started (or left by a dead runner: why).
    Pending(Option<String>),
}

/// The state of `job` in `dir` (leases judged with the expiry of `$HOST_SWEEP_LEASE_S`).
pub fn state(dir: &Path, job: &Job) -> State {
    let files = JobFiles::new(dir, &job.hash);
    if read_result(&files, &job.hash).is_some() {
        return State::Done;
    }
    let leases = Leases::new(Policy::from_env().unwrap_or_default(), files.scratch.clone());
    let seen = leases.inspect(&files.running).ok().flatten();
    if let Some(s) = seen.as_ref().filter(|s| s.expired.is_none()) {
        let (host, pid, since) = match &s.holder {
            Some(h) => (h.host.clone(), h.pid as u64, now_s().saturating_sub(h.created)),
            None => ("(unreadable lease)".to_string(), 0, s.age.max(0.0) as u64),
        };
        return State::Running(host, pid, since);
    }
    if let Some(v) = std::fs::read_to_string(&files.failed).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()) {
        let e = v["error"].as_str().unwrap_or("unknown error").lines().next().unwrap_or("").to_string();
        return State::Failed(e);
    }
    match seen {
        Some(s) => {
            State::Pending(Some(format!("expired lease of {}: {}", s.describe(), s.expired.unwrap_or_default())))
        }
        None => State::Pending(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(dir: &Path, step: u64) {
        std::fs::create_dir_all(dir).unwrap();
        let t = vec![("w".to_string(), ndarray::arr1(&[step as f32, 1.0]).into_dyn())];
        trainer::checkpoint::save(&dir.join(CHECKPOINT), &t, &json!({"step": step})).unwrap();
    }

    #[test]
    fn an_attempt_starts_from_the_newest_complete_checkpoint() {
        let guard = tempfile::Builder::new().prefix("host-attempt-").tempdir().unwrap();
        let train = guard.path().join("train");
        // The older layout (step 3), two attempts (steps 10 and 5), a torn checkpoint (half of
        // the step-10 file), an attempt without a checkpoint.
        save(&train, 3);
        save(&train.join("attempt-a"), 10);
        save(&train.join("attempt-b"), 5);
        let newest = std::fs::read(train.join("attempt-a").join(CHECKPOINT)).unwrap();
        std::fs::create_dir_all(train.join("attempt-c")).unwrap();
        std::fs::write(train.join("attempt-c").join(CHECKPOINT), &newest[..newest.len() / 2]).unwrap();
        std::fs::create_dir_all(train.join("attempt-d")).unwrap();
        let metrics =
            "{\"step\":10,\"loss\":2.5}\n{\"step\":10,\"val_loss\":2.6}\n{\"step\":20,\"loss\":2.4}\nnot json\n";
        std::fs::write(train.join("attempt-a").join("metrics.jsonl"), metrics).unwrap();
        let ours = train.join("attempt-new");
        assert_eq!(prepare_attempt(&train, &ours).unwrap(), Some(10));
        assert_eq!(std::fs::read(ours.join(CHECKPOINT)).unwrap(), newest);
        // The metrics up to the checkpoint's step only: the resumed run logs step 20 again.
        assert_eq!(
            std::fs::read_to_string(ours.join("metrics.jsonl")).unwrap(),
            "{\"step\":10,\"loss\":2.5}\n{\"step\":10,\"val_loss\":2.6}\n"
        );
        // The earlier attempts are left as they were.
        assert!(train.join("attempt-a").join(CHECKPOINT).exists() && train.join("attempt-b").join(CHECKPOINT).exists());
        // Nothing to resume: a fresh start in an empty folder.
        let fresh = guard.path().join("fresh");
        assert_eq!(prepare_attempt(&fresh, &fresh.join("attempt-x")).unwrap(), None);
        assert!(std::fs::read_dir(fresh.join("attempt-x")).unwrap().next().is_none());
        // After a publication only the publisher's attempt stays.
        remove_other_attempts(&train, &ours);
        let left: Vec<String> =
            std::fs::read_dir(&train).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
        let mut left = left;
        left.sort();
        assert_eq!(left, ["attempt-new", CHECKPOINT]);
    }
}
