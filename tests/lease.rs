//! Leases of `host sweep` on one shared results folder, end to end: eight
//! `sweep run --all` processes racing with random SIGKILLs (every job
//! published exactly once), a requeued array task taking over a killed
//! runner's training job, an array task waiting for a live holder, and
//! leases that are clock-skewed, pid-reused, half-written or live.
//!
//! The runs here use a short lease expiry (`HOST_SWEEP_LEASE_S`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use support::{Run, arg, host_env, host_exe, root, shipped_plugins};

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    support::scratch("test-lease", name)
}

/// Writes an experiment file into `dir` and returns its path.
fn experiment(dir: &Path, text: &str) -> PathBuf {
    support::write_experiment(dir, text)
}

/// `host ARGS` with lease expiry `lease_s` seconds.
fn host_l(lease_s: &str, args: &[&str]) -> Run {
    host_env(args, &[("HOST_SWEEP_LEASE_S", lease_s)])
}

/// Starts `host ARGS` with lease expiry `lease_s`, stderr into `log`, extra environment `env`.
fn spawn_logged(lease_s: &str, args: &[&str], log: &Path, env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(host_exe());
    c.args(args)
        .current_dir(root())
        .env_remove("RAYON_NUM_THREADS")
        .env("HOST_SWEEP_LEASE_S", lease_s)
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("spawn host")
}

/// The manifest's jobs.
fn jobs(dir: &Path) -> Vec<Value> {
    let m: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    m["jobs"].as_array().unwrap().clone()
}

/// Names of the files in `dir` (empty when it does not exist).
fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default()
}

/// Number of results (`H.json`) in `dir/jobs`.
fn results(dir: &Path) -> usize {
    names(&dir.join("jobs")).iter().filter(|f| f.ends_with(".json") && !f.ends_with(".failed.json")).count()
}

/// The result of job `hash` (panics when absent or invalid).
fn result(dir: &Path, hash: &str) -> Value {
    let p = dir.join("jobs").join(format!("{hash}.json"));
    let t = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", p.display()))
}

/// A result without its `timing`.
fn without_timing(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("timing");
    v
}

/// The lines of `DIR/published.log` grouped by hash: the tokens published.
fn publications(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for l in std::fs::read_to_string(dir.join("published.log")).unwrap_or_default().lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("published.log line `{l}`: {e}"));
        m.entry(v["hash"].as_str().unwrap().to_string()).or_default().push(v);
    }
    m
}

/// Waits until `pred` holds or `limit` passes; true if it held.
fn wait_for(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Sets the mtime of `p` to now + `offset_s` seconds (negative: in the past).
fn stamp_at(p: &Path, offset_s: f64) {
    let d = Duration::from_secs_f64(offset_s.abs());
    let t = if offset_s >= 0.0 { SystemTime::now() + d } else { SystemTime::now() - d };
    File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
}

/// A thread that keeps the leases `paths` fresh (as a live holder's heartbeat would) until dropped.
struct Holder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Holder {
    fn new(paths: Vec<PathBuf>) -> Holder {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for p in &paths {
                    if let Ok(f) = File::options().write(true).open(p) {
                        let _ = f.set_modified(SystemTime::now());
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Holder { stop, thread: Some(thread) }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A lease file as another runner would have written it.
fn lease_json(hash: &str, host: &str, pid: u32, token: &str, generation: u64) -> String {
    json!({"job": hash, "host": host, "pid": pid, "token": token, "generation": generation, "created": 1_700_000_000u64})
        .to_string()
}

/// SplitMix64: the seeded random numbers of the race (kill points and victims).
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// 48 cheap GMSE jobs: 16 INT formats x 3 distributions, 2^20 samples of 16x64 tensors each.
const RACE: &str = r#"
[gmse]
distributions = ["gaussian", "laplace", "logistic"]
shape = "16x64"
samples = 1048576
seed = 5
[[formats]]
kind = "int"
params = { bits = [2, 3, 4, 5, 6, 7, 8, 9], rule = ["rms", "absmax"] }
"#;

/// The race's lease expiry (seconds), and a pause a little longer than it.
const RACE_LEASE: &str = "1";
const RACE_AFTER_EXPIRY: Duration = Duration::from_millis(1300);

#[test]
fn racing_runners_with_kills_publish_every_job_exactly_once() {
    shipped_plugins();
    let d = scratch("race");
    let exp = experiment(&d, RACE);
    // The reference: one undisturbed runner.
    let reference = d.join("reference");
    host_l(RACE_LEASE, &["sweep", "run", arg(&exp), "--results", arg(&reference), "--all"]).expect_code(0);
    let plan = jobs(&reference);
    assert_eq!(plan.len(), 48);
    let expected: BTreeMap<String, Value> = plan
        .iter()
        .map(|j| {
            let h = j["hash"].as_str().unwrap();
            (h.to_string(), without_timing(result(&reference, h)))
        })
        .collect();
    let mut rng = SplitMix(20_250_611);
    let (rounds, mut kills, mut takeovers, mut unlogged) = (20, 0, 0, 0);
    for round in 0..rounds {
        let res = d.join(format!("round{round}"));
        let all = ["sweep", "run", arg(&exp), "--results", arg(&res), "--all", "--jobs", "1"];
        let mut runners: Vec<Child> =
            (0..8).map(|i| spawn_logged(RACE_LEASE, &all, &res_log(&res, &format!("runner{i}")), &[])).collect();
        // Two or three SIGKILLs, each once the folder holds a random number of results.
        let mut points: Vec<usize> = (0..2 + rng.below(2)).map(|_| 2 + rng.below(42)).collect();
        points.sort();
        let mut killed: Vec<u32> = Vec::new();
        let mut killed_idx: Vec<usize> = Vec::new();
        for p in points {
            wait_for(Duration::from_secs(120), || {
                results(&res) >= p || runners.iter_mut().all(|c| c.try_wait().unwrap().is_some())
            });
            let alive: Vec<usize> = (0..8).filter(|&i| runners[i].try_wait().unwrap().is_none()).collect();
            if alive.is_empty() {
                break;
            }
            let v = alive[rng.below(alive.len())];
            runners[v].kill().unwrap();
            killed.push(runners[v].id());
            killed_idx.push(v);
            kills += 1;
        }
        for (i, c) in runners.iter_mut().enumerate() {
            let status = c.wait().unwrap();
            // The others end normally: jobs held by others are skipped, not errors.
            assert!(killed_idx.contains(&i) || status.success(), "round {round}: runner {i} exited with {status}");
        }
        // The final pass, once the killed runners' leases expired.
        std::thread::sleep(RACE_AFTER_EXPIRY);
        let fin = host_l(RACE_LEASE, &["sweep", "run", arg(&exp), "--results", arg(&res), "--all"]);
        fin.expect_code(0);
        std::fs::write(res_log(&res, "final"), &fin.stderr).unwrap();

        // Exactly one result per job, nothing else in jobs/ (no lease, no failure) or tmp/.
        let want: BTreeSet<String> = expected.keys().map(|h| format!("{h}.json")).collect();
        assert_eq!(names(&res.join("jobs")), want, "round {round}: jobs/");
        assert_eq!(names(&res.join("tmp")), BTreeSet::new(), "round {round}: tmp/ should be empty");
        let log = publications(&res);
        assert!(log.keys().all(|h| expected.contains_key(h)), "round {round}: {log:?}");
        let mut done_lines: BTreeMap<String, usize> = BTreeMap::new();
        for f in names(&res.join("logs")) {
            let text = std::fs::read_to_string(res.join("logs").join(&f)).unwrap();
            for l in text.lines() {
                takeovers += l.contains("took over the expired lease") as usize;
                if let Some(i) = l.find("] job ").filter(|_| l.ends_with(" s)") && l.contains(": done (")) {
                    let index: usize = l[i + 6..].split(' ').next().unwrap().parse().unwrap();
                    *done_lines.entry(plan[index]["hash"].as_str().unwrap().to_string()).or_default() += 1;
                }
            }
        }
        for (h, want) in &expected {
            let r = result(&res, h);
            // The same record as the undisturbed run, whoever ran it and however often it was killed.
            assert_eq!(&without_timing(r.clone()), want, "round {round}: job {h}");
            let token = r["timing"]["lease"]["token"].as_str().unwrap();
            let pid = r["timing"]["pid"].as_u64().unwrap() as u32;
            // Published exactly once: one log line, by the token the result carries; no line only
            // when its publisher was killed between its link and its log line.
            match log.get(h).map(|v| v.as_slice()) {
                Some([one]) => assert_eq!(one["token"], token, "round {round}: job {h}"),
                None => {
                    assert!(killed.contains(&pid), "round {round}: job {h} has no publication line");
                    unlogged += 1;
                }
                Some(many) => panic!("round {round}: job {h} published {} times: {many:?}", many.len()),
            }
            assert!(done_lines.get(h).copied().unwrap_or(0) <= 1, "round {round}: job {h} reported done twice");
        }
        eprintln!(
            "round {round}: {} kills, {} done lines, {} publication lines",
            killed.len(),
            done_lines.values().sum::<usize>(),
            log.values().map(Vec::len).sum::<usize>()
        );
    }
    eprintln!(
        "{rounds} rounds of 8 racing runners: {kills} SIGKILLs, {takeovers} takeovers of expired leases, \
         {unlogged} publications whose log line a kill prevented; every job published exactly once"
    );
    // The kills landed while runners worked: their leases were taken over.
    assert!(kills >= rounds, "only {kills} kills landed");
    assert!(takeovers >= 1, "no kill left a lease to take over");
}

/// `DIR/logs/NAME.log` (the folder made on first use).
fn res_log(res: &Path, name: &str) -> PathBuf {
    let d = res.join("logs");
    std::fs::create_dir_all(&d).unwrap();
    d.join(format!("{name}.log"))
}

/// One GMSE job and one short training run (60 steps of lm-50k, a checkpoint every 5).
const TRAIN: &str = r#"
[gmse]
distributions = ["gaussian"]
shape = "16x64"
samples = 4096
seed = 5
[[formats]]
preset = ["int4"]
[train]
models = ["lm-50k"]
formats = ["none"]
steps = 60
checkpoint_every = 5
eval_every = 30
"#;

/// The attempt folders of the training job `h` holding a checkpoint.
fn checkpointed_attempts(res: &Path, h: &str) -> Vec<PathBuf> {
    let train = res.join("train").join(h);
    names(&train).into_iter().map(|n| train.join(n)).filter(|p| p.join("checkpoint.safetensors").exists()).collect()
}

#[test]
fn requeued_array_task_waits_for_the_expiry_takes_over_and_resumes() {
    shipped_plugins();
    let d = scratch("requeue");
    let exp = experiment(&d, TRAIN);
    let lease = "3";
    // The reference: the training job undisturbed.
    let reference = d.join("reference");
    host_l(lease, &["sweep", "plan", arg(&exp), "--results", arg(&reference)]).expect_code(0);
    let plan = jobs(&reference);
    let job = plan.iter().find(|j| j["type"] == "train").unwrap();
    let (index, h) = (job["index"].as_u64().unwrap().to_string(), job["hash"].as_str().unwrap());
    host_l(lease, &["sweep", "run", arg(&exp), "--results", arg(&reference), "--index", &index]).expect_code(0);
    let want = result(&reference, h);

    // A Slurm array task runs the training job ...
    let res = d.join("res");
    let mut task = spawn_logged(
        lease,
        &["sweep", "run", arg(&exp), "--results", arg(&res)],
        &res_log(&d, "task"),
        &[("SLURM_ARRAY_TASK_ID", &index), ("SLURM_ARRAY_TASK_COUNT", "2")],
    );
    let pid = task.id();
    assert!(
        wait_for(Duration::from_secs(120), || !checkpointed_attempts(&res, h).is_empty()),
        "no checkpoint within 120 s"
    );
    // ... while an `--all` runner skips it (its lease is live) and does the rest.
    let all = host_l(lease, &["sweep", "run", arg(&exp), "--results", arg(&res), "--all"]);
    all.expect_code(0);
    assert!(all.stderr.contains("1 running elsewhere"), "{}", all.stderr);
    assert!(task.try_wait().unwrap().is_none(), "the training run ended before it could be killed");
    // The task is killed (a node fails), and Slurm requeues it: the new task waits for the lease
    // to expire, takes it over and resumes the killed attempt's checkpoint.
    task.kill().unwrap();
    task.wait().unwrap();
    assert!(!res.join("jobs").join(format!("{h}.json")).exists());
    let requeued = host_env(
        &["sweep", "run", arg(&exp), "--results", arg(&res)],
        &[("HOST_SWEEP_LEASE_S", lease), ("SLURM_ARRAY_TASK_ID", &index), ("SLURM_ARRAY_TASK_COUNT", "2")],
    );
    requeued.expect_code(0);
    let who = format!("{} pid {pid} (lease generation 1)", host::sweep::lease::hostname());
    assert!(requeued.stderr.contains(&format!("held by {who}")), "{}", requeued.stderr);
    assert!(requeued.stderr.contains("waiting"), "{}", requeued.stderr);
    assert!(
        requeued.stderr.contains(&format!("took over the expired lease of {who}: its heartbeat is")),
        "{}",
        requeued.stderr
    );
    let r = result(&res, h);
    assert_eq!(r["timing"]["lease"]["generation"], 2);
    assert_eq!(r["timing"]["resumed"], true);
    let step = r["timing"]["resumed_step"].as_u64().unwrap();
    assert!(step >= 5 && step.is_multiple_of(5) && step < 60, "resumed at step {step}");
    // Exactly the record of the undisturbed run.
    assert_eq!(without_timing(r.clone()), without_timing(want));
    // Published once, by the requeued task; the killed attempt's folder is gone.
    let token = r["timing"]["lease"]["token"].as_str().unwrap();
    let log = publications(&res);
    assert_eq!(log[h].len(), 1);
    assert_eq!(log[h][0]["token"], token);
    assert_eq!(log[h][0]["generation"], 2);
    let attempt = res.join("train").join(h).join(format!("attempt-{token}"));
    assert_eq!(checkpointed_attempts(&res, h), std::slice::from_ref(&attempt));
    // Its metrics continue the killed attempt's without repeating a step.
    let steps: Vec<u64> = std::fs::read_to_string(attempt.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["loss"].is_number())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=6).map(|i| i * 10).collect::<Vec<u64>>());
    assert_eq!(
        names(&res.join("jobs")),
        plan.iter().map(|j| format!("{}.json", j["hash"].as_str().unwrap())).collect()
    );
}

/// Four cheap GMSE jobs.
const FOUR: &str = r#"
[gmse]
distributions = ["gaussian", "laplace"]
shape = "16x64"
samples = 4096
seed = 5
[[formats]]
preset = ["int4", "e2m1"]
"#;

#[test]
fn array_task_waits_for_a_live_holder_and_exits_with_its_result() {
    shipped_plugins();
    let d = scratch("wait");
    let exp = experiment(&d, FOUR);
    let lease = "2";
    let reference = d.join("reference");
    host_l(lease, &["sweep", "run", arg(&exp), "--results", arg(&reference), "--all"]).expect_code(0);
    let res = d.join("res");
    host_l(lease, &["sweep", "plan", arg(&exp), "--results", arg(&res)]).expect_code(0);
    let plan = jobs(&res);
    let h = plan[1]["hash"].as_str().unwrap();
    // Another host's runner holds job 1 and keeps its lease alive.
    let path = res.join("jobs").join(format!("{h}.running"));
    let content = lease_json(h, "other-host", 1, "feedfacefeedface", 3);
    std::fs::write(&path, &content).unwrap();
    let holder = Holder::new(vec![path.clone()]);
    // An array task for index 1 waits for it ...
    let mut task = spawn_logged(
        lease,
        &["sweep", "run", arg(&exp), "--results", arg(&res), "--index", "1"],
        &res_log(&d, "task"),
        &[],
    );
    // ... while `--all` skips it.
    let all = host_l(lease, &["sweep", "run", arg(&exp), "--results", arg(&res), "--all"]);
    all.expect_code(0);
    assert!(all.stderr.contains("3 done, 0 were already done, 1 running elsewhere"), "{}", all.stderr);
    assert_eq!(results(&res), 3);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    let s = host_l(lease, &["sweep", "status", arg(&exp), "--results", arg(&res), "--json"]).json();
    assert_eq!(
        (&s["jobs"][1]["state"], &s["jobs"][1]["host"], &s["jobs"][1]["pid"]),
        (&json!("running"), &json!("other-host"), &json!(1))
    );
    assert!(
        wait_for(Duration::from_secs(60), || std::fs::read_to_string(res_log(&d, "task")).unwrap().contains("waiting")),
        "the array task printed no waiting line"
    );
    // Three expiries later it still waits (the lease is alive).
    std::thread::sleep(Duration::from_secs(6));
    assert!(task.try_wait().unwrap().is_none(), "the array task stopped waiting for a live lease");
    // The holder publishes its result (link of a complete file) and releases its lease.
    let mine = res.join("tmp").join("other-host-result");
    std::fs::copy(reference.join("jobs").join(format!("{h}.json")), &mine).unwrap();
    std::fs::hard_link(&mine, res.join("jobs").join(format!("{h}.json"))).unwrap();
    std::fs::remove_file(&mine).unwrap();
    drop(holder);
    std::fs::remove_file(&path).unwrap();
    assert!(wait_for(Duration::from_secs(60), || task.try_wait().unwrap().is_some()), "the array task did not end");
    assert!(task.wait().unwrap().success());
    let text = std::fs::read_to_string(res_log(&d, "task")).unwrap();
    assert!(text.contains("held by other-host pid 1 (lease generation 3)"), "{text}");
    assert!(text.contains("done by another runner"), "{text}");
    // The holder's result, untouched; the task published nothing.
    assert_eq!(
        std::fs::read(res.join("jobs").join(format!("{h}.json"))).unwrap(),
        std::fs::read(reference.join("jobs").join(format!("{h}.json"))).unwrap()
    );
    assert!(!publications(&res).contains_key(h));
    assert_eq!(publications(&res).len(), 3);
}

/// Six cheap GMSE jobs.
const SIX: &str = r#"
[gmse]
distributions = ["gaussian", "laplace"]
shape = "16x64"
samples = 4096
seed = 5
[[formats]]
preset = ["int4", "e2m1", "int8"]
"#;

#[test]
fn skewed_pid_reused_and_half_written_leases() {
    shipped_plugins();
    let d = scratch("skew");
    let exp = experiment(&d, SIX);
    let lease = "2";
    let res = d.join("res");
    host_l(lease, &["sweep", "plan", arg(&exp), "--results", arg(&res)]).expect_code(0);
    let plan = jobs(&res);
    let hs: Vec<&str> = plan.iter().map(|j| j["hash"].as_str().unwrap()).collect();
    let lease_of = |i: usize| res.join("jobs").join(format!("{}.running", hs[i]));
    let me = host::sweep::lease::hostname();
    // A process that has exited: its pid is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let leases: [(String, f64); 6] = [
        // 0: this host and a live pid (this test's own: a reused pid), heartbeat an hour old.
        (lease_json(hs[0], &me, std::process::id(), "a0a0a0a0a0a0a0a0", 5), -3600.0),
        // 1: a host whose clock runs an hour ahead (and is dead).
        (lease_json(hs[1], "fast-clock", 7, "b1b1b1b1b1b1b1b1", 7), 3600.0),
        // 2: ten years without a heartbeat.
        (lease_json(hs[2], "old-host", 2, "c2c2c2c2c2c2c2c2", 2), -3.15e8),
        // 3: half-written (empty) and silent for an hour.
        (String::new(), -3600.0),
        // 4: half-written but fresh (kept alive below): live.
        (String::new(), 0.0),
        // 5: this host and a pid that is gone, but fresh (kept alive below): live, pids mean nothing.
        (lease_json(hs[5], &me, gone.id(), "f5f5f5f5f5f5f5f5", 1), 0.0),
    ];
    for (i, (text, offset)) in leases.iter().enumerate() {
        std::fs::write(lease_of(i), text).unwrap();
        stamp_at(&lease_of(i), *offset);
    }
    let holder = Holder::new(vec![lease_of(4), lease_of(5)]);
    let s = host_l(lease, &["sweep", "status", arg(&exp), "--results", arg(&res), "--json"]).json();
    for i in 0..4 {
        assert_eq!(s["jobs"][i]["state"], "pending", "{}", s["jobs"][i]);
        assert!(s["jobs"][i]["reason"].as_str().unwrap().contains("expired lease of"), "{}", s["jobs"][i]);
    }
    assert_eq!((&s["jobs"][4]["state"], &s["jobs"][4]["host"]), (&json!("running"), &json!("(unreadable lease)")));
    assert_eq!((&s["jobs"][5]["state"], &s["jobs"][5]["pid"]), (&json!("running"), &json!(gone.id())));

    let r = host_l(lease, &["sweep", "run", arg(&exp), "--results", arg(&res), "--all"]);
    r.expect_code(0);
    assert!(r.stderr.contains("4 done, 0 were already done, 2 running elsewhere"), "{}", r.stderr);
    let took = |who: &str, why: &str| {
        r.stderr.lines().any(|l| l.contains(&format!("took over the expired lease of {who}: {why}")))
    };
    assert!(took(&format!("{me} pid {} (lease generation 5)", std::process::id()), "its heartbeat is"), "{}", r.stderr);
    assert!(took("fast-clock pid 7 (lease generation 7)", "its heartbeat is stamped"), "{}", r.stderr);
    assert!(r.stderr.contains("in the future (clock skew"), "{}", r.stderr);
    assert!(took("old-host pid 2 (lease generation 2)", "its heartbeat is"), "{}", r.stderr);
    assert!(took("an unknown holder (unreadable lease)", "its heartbeat is"), "{}", r.stderr);
    // Taken over with the next generation (1 after an unreadable lease, whose generation is unknown).
    for (i, g) in [(0, 6), (1, 8), (2, 3), (3, 1)] {
        assert_eq!(result(&d.join("res"), hs[i])["timing"]["lease"]["generation"], g, "job {i}");
        assert!(!lease_of(i).exists());
    }
    // The live ones are untouched.
    assert_eq!(std::fs::read_to_string(lease_of(4)).unwrap(), "");
    assert_eq!(std::fs::read_to_string(lease_of(5)).unwrap(), leases[5].0);
    assert_eq!(results(&res), 4);
    // Their holders die: once the expiry passed, a rerun takes them over too.
    drop(holder);
    std::thread::sleep(Duration::from_millis(2500));
    let r = host_l(lease, &["sweep", "run", arg(&exp), "--results", arg(&res), "--all"]);
    r.expect_code(0);
    assert!(r.stderr.contains("2 done, 4 were already done, 0 running elsewhere"), "{}", r.stderr);
    assert_eq!(result(&res, hs[4])["timing"]["lease"]["generation"], 1);
    assert_eq!(result(&res, hs[5])["timing"]["lease"]["generation"], 2);
    assert_eq!(names(&res.join("jobs")), hs.iter().map(|h| format!("{h}.json")).collect());
    assert_eq!(publications(&res).values().map(Vec::len).collect::<Vec<_>>(), [1; 6]);
}
