//! `host sweep` end to end: a sweep killed with SIGKILL and rerun, two shard
//! processes sharing one results folder, a failing job, launchers, errors,
//! and every shipped example experiment planning.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{arg, host, host_env, host_exe, root, shipped_plugins};

/// Lease expiry of the runs here (seconds): a killed run's lease expires this soon, not after
/// the default 300 s, and a rerun waits a little longer than this before it starts.
const LEASE_S: &str = "1";
/// A little longer than the expiry.
const AFTER_EXPIRY: Duration = Duration::from_millis(1500);

/// `host ARGS` with the short lease expiry.
fn host_l(args: &[&str]) -> support::Run {
    host_env(args, &[("HOST_SWEEP_LEASE_S", LEASE_S)])
}

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    support::scratch("test-sweep", name)
}

/// Writes an experiment file into `dir` and returns its path.
fn experiment(dir: &Path, text: &str) -> PathBuf {
    support::write_experiment(dir, text)
}

/// Tiny GMSE precision: 2^20 samples = 16 tensors of 64x1024 per measurement.
const TINY: &str = r#"
[gmse]
distributions = ["gaussian", "laplace"]
shape = "64x1024"
samples = 1048576
seed = 3
"#;

fn spawn(args: &[&str]) -> Child {
    Command::new(host_exe())
        .args(args)
        .current_dir(root())
        .env("HOST_SWEEP_LEASE_S", LEASE_S)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn host")
}

/// The manifest's jobs.
/// Writes `TINY` + an int4 GMSE format + `train` (a `[train]` table) as the experiment file of
/// `d`, plans it into `d/res`, and returns (the experiment, its jobs).
fn plan_train(d: &Path, res: &str, train: &str) -> (PathBuf, Vec<Value>) {
    let exp = experiment(d, &format!("{TINY}\n[[formats]]\npreset = [\"int4\"]\n{train}"));
    host(&["sweep", "plan", arg(&exp), "--results", arg(&d.join(res))]).expect_code(0);
    (exp, jobs(&d.join(res)))
}

fn jobs(dir: &Path) -> Vec<Value> {
    let m: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    m["jobs"].as_array().unwrap().clone()
}

/// Names of the files in `dir/jobs`.
fn job_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("jobs"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default()
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

/// Every job has exactly one valid result (`H.json` whose hash is H) and nothing else is left.
fn assert_complete(dir: &Path) {
    let jobs = jobs(dir);
    let files = job_files(dir);
    let expected: BTreeSet<String> = jobs.iter().map(|j| format!("{}.json", j["hash"].as_str().unwrap())).collect();
    assert_eq!(files, expected, "jobs/ should hold exactly one result per job and no temporary or claim files");
    for j in &jobs {
        let h = j["hash"].as_str().unwrap();
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("jobs").join(format!("{h}.json"))).unwrap())
                .unwrap_or_else(|e| panic!("{h}.json is not valid JSON: {e}"));
        assert_eq!(r["hash"], h);
        assert_eq!(r["config"], j["config"]);
        assert!(r["result"].is_object(), "{r}");
    }
}

#[test]
fn killed_sweep_reruns_to_every_job_exactly_once() {
    shipped_plugins();
    let d = scratch("kill");
    let exp = experiment(
        &d,
        &format!(
            r#"{TINY}
[[formats]]
kind = "int"
params = {{ bits = [2, 3, 4, 5, 6, 8], rule = ["rms", "absmax"] }}
[[formats]]
preset = ["e2m1", "e4m3", "lloydmax3"]
[train]
models = ["lm-50k"]
formats = ["none"]
seeds = [0, 1]
steps = 40
checkpoint_every = 5
eval_every = 20
"#
        ),
    );
    let res = d.join("res");
    let args = ["sweep", "run", arg(&exp), "--results", arg(&res), "--all"];
    // First run: killed once some GMSE results exist.
    let mut c = spawn(&args);
    let some =
        wait_for(Duration::from_secs(60), || job_files(&res).iter().filter(|f| f.ends_with(".json")).count() >= 2);
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(some, "no result within 60 s");
    let total = jobs(&res).len();
    // 15 formats x 2 distributions + 2 training runs.
    assert_eq!(total, 32);
    let done_at_kill = job_files(&res).iter().filter(|f| f.ends_with(".json") && !f.contains(".failed")).count();
    // The kill lands early: the two training runs alone take longer than the polling interval.
    assert!(done_at_kill < total, "the first run finished before it was killed");
    // Second run: killed once a training checkpoint exists (if it gets there first).
    // (The first run's lease on the job it was running may still be live: this run skips it.)
    let mut c = spawn(&args);
    // Training runs write into an attempt folder per lease: train/H/attempt-TOKEN/.
    let at_checkpoint = wait_for(Duration::from_secs(60), || {
        std::fs::read_dir(res.join("train"))
            .map(|rd| {
                rd.flatten().any(|e| {
                    std::fs::read_dir(e.path())
                        .map(|a| a.flatten().any(|a| a.path().join("checkpoint.safetensors").exists()))
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    });
    c.kill().unwrap();
    c.wait().unwrap();
    // Third run finishes, once the killed run's leases have expired (an `--all` run skips jobs
    // whose lease is live).
    std::thread::sleep(AFTER_EXPIRY);
    let r = host_l(&args);
    r.expect_code(0);
    assert_complete(&res);
    if at_checkpoint {
        // The killed training run continued from its checkpoint.
        let resumed = jobs(&res).iter().any(|j| {
            let h = j["hash"].as_str().unwrap();
            let r: Value =
                serde_json::from_str(&std::fs::read_to_string(res.join("jobs").join(format!("{h}.json"))).unwrap())
                    .unwrap();
            r["timing"]["resumed"] == true
        });
        assert!(resumed, "no training job resumed its checkpoint");
    }
    // Each training job keeps one attempt folder, the publisher's (named by its lease token):
    // the publisher removed the killed attempts'.
    for j in jobs(&res).iter().filter(|j| j["type"] == "train") {
        let h = j["hash"].as_str().unwrap();
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(res.join("jobs").join(format!("{h}.json"))).unwrap())
                .unwrap();
        let token = r["timing"]["lease"]["token"].as_str().unwrap();
        let attempts: Vec<String> = std::fs::read_dir(res.join("train").join(h))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(attempts, [format!("attempt-{token}")]);
        assert_eq!(r["timing"]["out"], res.join("train").join(h).join(&attempts[0]).display().to_string());
    }
    let s = host(&["sweep", "status", arg(&exp), "--results", arg(&res), "--json"]);
    s.expect_code(0);
    let s = s.json();
    assert_eq!((s["done"].as_u64(), s["pending"].as_u64(), s["failed"].as_u64()), (Some(32), Some(0), Some(0)));
    // A fourth run has nothing to do and changes nothing.
    let before: Vec<String> = jobs(&res)
        .iter()
        .map(|j| {
            std::fs::read_to_string(res.join("jobs").join(format!("{}.json", j["hash"].as_str().unwrap()))).unwrap()
        })
        .collect();
    host(&args).expect_code(0);
    let after: Vec<String> = jobs(&res)
        .iter()
        .map(|j| {
            std::fs::read_to_string(res.join("jobs").join(format!("{}.json", j["hash"].as_str().unwrap()))).unwrap()
        })
        .collect();
    assert_eq!(before, after);
}

/// `results.jsonl` rows without their `timing`.
fn rows_without_timing(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("timing");
            v
        })
        .collect()
}

#[test]
fn two_shard_processes_equal_one_process() {
    shipped_plugins();
    let d = scratch("shards");
    let exp = experiment(
        &d,
        &format!(
            r#"{TINY}
[[formats]]
preset = ["int4", "e2m1", "nvfp4"]
[[formats]]
kind = "int"
params = {{ bits = 3, rule = "absmax", group = [32, 128] }}
[train]
models = ["lm-50k"]
formats = ["none", "int4"]
steps = 3
"#
        ),
    );
    let one = d.join("one");
    let two = d.join("two");
    host(&["sweep", "run", arg(&exp), "--results", arg(&one), "--all", "--jobs", "2"]).expect_code(0);
    host(&["sweep", "collect", arg(&exp), "--results", arg(&one)]).expect_code(0);
    let mut a = spawn(&["sweep", "run", arg(&exp), "--results", arg(&two), "--shard", "0/2", "--threads", "1"]);
    let mut b = spawn(&["sweep", "run", arg(&exp), "--results", arg(&two), "--shard", "1/2"]);
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    host(&["sweep", "collect", arg(&exp), "--results", arg(&two)]).expect_code(0);
    assert_complete(&two);
    // 5 formats x 2 distributions + 2 training runs.
    let rows = rows_without_timing(&one);
    assert_eq!(rows.len(), 12);
    assert_eq!(rows, rows_without_timing(&two));
    // The CSV holds no timing: byte for byte the same.
    let csv1 = std::fs::read_to_string(one.join("results.csv")).unwrap();
    assert_eq!(csv1, std::fs::read_to_string(two.join("results.csv")).unwrap());
    // Real values: INT4 (QuEST RMS per row) GMSE 0.0115 on Gaussian data (DESIGN: 0.011543),
    // within 3 % at 2^20 samples (relative standard error about 0.3 %).
    let int4 = rows.iter().find(|r| r["format"] == "int4" && r["distribution"] == "gaussian").unwrap();
    let g = int4["gmse"].as_f64().unwrap();
    assert!((g / 0.011543 - 1.0).abs() < 0.03, "int4 gmse {g}");
    assert_eq!(int4["samples"], 1048576);
    assert!(int4["rho"].as_f64().unwrap() > 0.0 && int4["rho"].as_f64().unwrap() < 1.0);
    let header = csv1.lines().next().unwrap();
    for col in ["index", "hash", "type", "format", "distribution", "bits", "gmse", "stderr", "rho", "family", "samples"]
    {
        assert!(header.split(',').any(|c| c == col), "column {col} missing in {header}");
    }
    // Training rows carry the train record: a 3-step lm-50k run's validation loss is near ln 256 = 5.55.
    let t: Vec<&Value> = rows.iter().filter(|r| r["type"] == "train").collect();
    assert_eq!(t.len(), 2);
    for r in t {
        let v = r["val_loss"].as_f64().unwrap();
        assert!((4.5..6.0).contains(&v), "{r}");
        assert_eq!(r["steps"], 3);
    }
}

#[test]
fn failing_job_is_reported_and_the_rest_finish() {
    shipped_plugins();
    let d = scratch("fail");
    let exp = experiment(&d, &format!("{TINY}\n[[formats]]\npreset = [\"int4\", \"int:bits=99\", \"e2m1\"]\n"));
    let res = d.join("res");
    let r = host(&["sweep", "run", arg(&exp), "--results", arg(&res), "--all"]);
    r.expect_code(2);
    assert!(r.stderr.contains("2 of 6 jobs failed"), "{}", r.stderr);
    let s = host(&["sweep", "status", arg(&exp), "--results", arg(&res), "--json"]);
    let s = s.json();
    assert_eq!((s["done"].as_u64(), s["failed"].as_u64(), s["pending"].as_u64()), (Some(4), Some(2), Some(0)));
    for j in s["jobs"].as_array().unwrap() {
        if j["what"].as_str().unwrap().contains("bits=99") {
            assert_eq!(j["state"], "failed");
            let reason = j["reason"].as_str().unwrap();
            assert!(reason.contains("int:bits=99") && reason.contains("bits"), "{reason}");
        } else {
            assert_eq!(j["state"], "done", "{j}");
        }
    }
    let text = host(&["sweep", "status", arg(&exp), "--results", arg(&res)]);
    assert!(text.stdout.contains("6 jobs: 4 done, 0 running, 2 failed, 0 pending"), "{}", text.stdout);
    // Collect keeps the finished rows.
    host(&["sweep", "collect", arg(&exp), "--results", arg(&res)]).expect_code(0);
    assert_eq!(rows_without_timing(&res).len(), 4);
}

#[test]
fn launchers_for_slurm_kubernetes_and_parallel() {
    shipped_plugins();
    let d = scratch("emit");
    let exp = experiment(&d, &format!("name = \"Emit Test\"\n{TINY}\n[[formats]]\npreset = [\"int4\", \"e2m1\"]\n"));
    let res = d.join("res");
    let exp_abs = std::path::absolute(&exp).unwrap();
    let res_abs = std::path::absolute(&res).unwrap();
    let run_cmd = format!("sweep run {} --results {}", exp_abs.display(), res_abs.display());

    let s = host(&["sweep", "emit", "slurm", arg(&exp), "--results", arg(&res), "--time", "00:30:00"]);
    s.expect_code(0);
    assert!(s.stdout.starts_with("#!/bin/bash\n"));
    assert!(s.stdout.lines().any(|l| l == "#SBATCH --array=0-3"), "{}", s.stdout);
    assert!(s.stdout.lines().any(|l| l == "#SBATCH --time=00:30:00"));
    assert!(s.stdout.lines().any(|l| l.starts_with("#SBATCH --output=") && l.ends_with("/logs/%A_%a.out")));
    assert!(s.stdout.lines().any(|l| l.starts_with("exec /") && l.ends_with(&run_cmd)), "{}", s.stdout);
    assert!(res.join("logs").is_dir());

    // Kubernetes: refused without shared storage (the pods would point at this machine's
    // paths), one line saying what to set; with --pvc, the manifest parsed as YAML.
    let bare = host(&["sweep", "emit", "k8s", arg(&exp), "--results", arg(&res)]);
    bare.expect_code(1);
    let lines = bare.stderr_lines();
    assert!(lines.len() == 1 && lines[0].contains("--pvc NAME") && lines[0].contains("--host-path"), "{}", bare.stderr);
    let k = host(&["sweep", "emit", "k8s", arg(&exp), "--results", arg(&res), "--parallelism", "3", "--pvc", "sweeps"]);
    k.expect_code(0);
    let y: serde_json::Value =
        serde_norway::from_str(&k.stdout).unwrap_or_else(|e| panic!("not YAML: {e}\n{}", k.stdout));
    assert_eq!((&y["apiVersion"], &y["kind"]), (&json!("batch/v1"), &json!("Job")));
    assert_eq!(y["metadata"]["name"], "sweep-emit-test");
    let spec = &y["spec"];
    assert_eq!(
        (&spec["completionMode"], &spec["completions"], &spec["parallelism"]),
        (&json!("Indexed"), &json!(4), &json!(3))
    );
    assert!(spec["backoffLimit"].is_u64(), "{spec}");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "sweep");
    let list: Vec<String> = serde_json::from_value(c["command"].clone()).expect("command is a list of strings");
    assert_eq!(list[1..], ["sweep", "run", arg(&exp_abs), "--results", arg(&res_abs)]);
    assert!(Path::new(&list[0]).is_absolute());
    // The working folder (this one, where the relative paths were resolved) is the PVC's mount.
    let cwd = root().canonicalize().unwrap();
    assert_eq!(c["workingDir"], arg(&cwd));
    assert_eq!(c["volumeMounts"], json!([{"name": "work", "mountPath": arg(&cwd)}]));
    assert_eq!(pod["volumes"], json!([{"name": "work", "persistentVolumeClaim": {"claimName": "sweeps"}}]));
    let h = host(&["sweep", "emit", "k8s", arg(&exp), "--results", arg(&res), "--host-path"]);
    h.expect_code(0);
    let y: serde_json::Value = serde_norway::from_str(&h.stdout).unwrap();
    assert_eq!(
        y["spec"]["template"]["spec"]["volumes"][0]["hostPath"],
        json!({"path": arg(&cwd), "type": "Directory"})
    );

    let p = host(&["sweep", "emit", "parallel", arg(&exp), "--results", arg(&res), "--parallelism", "2"]);
    p.expect_code(0);
    assert!(p.stdout.contains("seq 0 3 | parallel -j 2 ") && p.stdout.contains(&format!("{run_cmd} --index {{}}")));

    // An array task runs its job from the environment, like Slurm would.
    let mut c = Command::new(host_exe());
    c.args(["sweep", "run", arg(&exp), "--results", arg(&res)])
        .current_dir(root())
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_COUNT", "4");
    assert!(c.output().unwrap().status.success());
    let done: Vec<String> = job_files(&res).into_iter().collect();
    assert_eq!(done, [format!("{}.json", jobs(&res)[2]["hash"].as_str().unwrap())]);
    // Without a selection or a scheduler, run refuses.
    let r = host(&["sweep", "run", arg(&exp), "--results", arg(&res)]);
    r.expect_code(1);
    assert!(r.stderr.contains("say --index"), "{}", r.stderr);
}

#[test]
fn bad_experiment_files_are_one_line_errors_with_position() {
    let d = scratch("bad");
    let exp = experiment(&d, "[gmse]\nshape = \"64x1024\"\nsampels = 10\n[[formats]]\npreset = \"int4\"\n");
    let r = host(&["sweep", "plan", arg(&exp)]);
    r.expect_code(1);
    let lines = r.stderr_lines();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(lines[0].contains("exp.toml: line 3, column 1: unknown field `sampels`"), "{}", lines[0]);
    let exp = experiment(&d, "[[formats]]\nkind = \"int\"\nparams = { bits = [4, \"x\"] }\n[gmse]\nshape = \"0x4\"\n");
    let r = host(&["sweep", "plan", arg(&exp)]);
    r.expect_code(1);
    assert!(r.stderr.contains("line 5, column 9") && r.stderr.contains("positive"), "{}", r.stderr);
}

#[test]
fn plan_hashes_are_stable_and_change_with_the_configuration() {
    shipped_plugins();
    let d = scratch("plan");
    let text = format!("{TINY}\n[[formats]]\npreset = [\"int4\", \"e2m1\"]\n");
    let exp = experiment(&d, &text);
    let res = d.join("res");
    host(&["sweep", "plan", arg(&exp), "--results", arg(&res)]).expect_code(0);
    let a = jobs(&res);
    host(&["sweep", "plan", arg(&exp), "--results", arg(&res)]).expect_code(0);
    assert_eq!(a, jobs(&res));
    // The plugin identity is part of the configuration.
    assert_eq!(a[0]["config"]["plugins"][0]["plugin"], "int");
    assert!(a[0]["config"]["plugins"][0]["version"].is_string());
    // Parameters are the kind's full table, defaults included: `int4` sets no `scale_bits`, yet
    // the hash covers the default, and code versions are part of the configuration.
    let params = &a[0]["config"]["plugins"][0]["params"];
    assert_eq!(params["bits"], 4);
    assert_eq!(params["scale_bits"], 16, "default missing from {params}");
    assert_eq!(a[0]["config"]["versions"]["host"], host::engine::RESULTS_VERSION);
    // Another seed: every hash changes.
    std::fs::write(&exp, text.replace("seed = 3", "seed = 4")).unwrap();
    host(&["sweep", "plan", arg(&exp), "--results", arg(&res)]).expect_code(0);
    let b = jobs(&res);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x["hash"], y["hash"]);
    }
}

/// Rewrites the finished result of `job` as if an older host (RESULTS_VERSION 0) had computed
/// it: its config says so and it is stored under that config's hash. Returns the old hash.
fn make_stale(res: &Path, job: &Value) -> String {
    let hash = job["hash"].as_str().unwrap();
    let path = res.join("jobs").join(format!("{hash}.json"));
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    r["config"]["versions"]["host"] = 0.into();
    r["result"]["gmse"] = 1.0.into();
    let old = host::sweep::plan::job_hash(&r["config"]);
    r["hash"] = old.clone().into();
    std::fs::write(res.join("jobs").join(format!("{old}.json")), r.to_string()).unwrap();
    std::fs::remove_file(path).unwrap();
    old
}

#[test]
fn stale_results_are_reported_redone_or_kept() {
    shipped_plugins();
    let d = scratch("stale");
    let exp = experiment(&d, &format!("{TINY}\n[[formats]]\npreset = [\"int4\", \"e2m1\"]\n"));
    let res = d.join("res");
    let run = |extra: &[&str]| {
        let mut a = vec!["sweep", "run", arg(&exp), "--results", arg(&res), "--all"];
        a.extend_from_slice(extra);
        host(&a)
    };
    run(&[]).expect_code(0);
    let jobs = jobs(&res);
    let old = make_stale(&res, &jobs[1]);
    // Status names the stale result and what changed.
    let st = host(&["sweep", "status", arg(&exp), "--results", arg(&res)]);
    st.expect_code(0);
    assert!(st.stdout.contains("1 stale"), "{}", st.stdout);
    assert!(st.stdout.contains(&old) && st.stdout.contains("versions.host: 0 -> 1"), "{}", st.stdout);
    // --keep-stale runs nothing and collects the old value, marked stale.
    let kept = run(&["--keep-stale"]);
    kept.expect_code(0);
    assert!(kept.stderr.contains("0 done"), "{}", kept.stderr);
    host(&["sweep", "collect", arg(&exp), "--results", arg(&res), "--keep-stale"]).expect_code(0);
    let csv = std::fs::read_to_string(res.join("results.csv")).unwrap();
    let mut rd = csv::Reader::from_reader(csv.as_bytes());
    let head = rd.headers().unwrap().clone();
    let col = |n: &str| head.iter().position(|h| h == n).unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), jobs.len());
    assert_eq!((&rows[1][col("hash")], &rows[1][col("stale")], &rows[1][col("gmse")]), (old.as_str(), "true", "1.0"));
    assert_eq!(&rows[0][col("stale")], "");
    // Without the flag, collect leaves it out, and run computes it again under its new hash.
    host(&["sweep", "collect", arg(&exp), "--results", arg(&res)]).expect_code(0);
    assert_eq!(std::fs::read_to_string(res.join("results.csv")).unwrap().lines().count(), jobs.len());
    let redo = run(&[]);
    redo.expect_code(0);
    assert!(redo.stderr.contains("1 done"), "{}", redo.stderr);
    let st = host(&["sweep", "status", arg(&exp), "--results", arg(&res), "--json"]);
    let v: Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!((v["done"].as_u64(), v["stale"].as_u64()), (Some(jobs.len() as u64), Some(0)));
}

#[test]
fn cuda_device_in_an_experiment_requests_a_gpu_and_leaves_cpu_hashes_alone() {
    shipped_plugins();
    let d = scratch("device");
    let train = "[train]\nmodels = [\"lm-20k\"]\nformats = [\"none\", \"int4\"]\nsteps = 2\n";
    let cpu = experiment(&d, &format!("{TINY}\n[[formats]]\npreset = [\"int4\"]\n{train}"));
    let res = d.join("cpu");
    host(&["sweep", "plan", arg(&cpu), "--results", arg(&res)]).expect_code(0);
    let cpu_jobs = jobs(&res);
    let slurm = host(&["sweep", "emit", "slurm", arg(&cpu), "--results", arg(&res)]);
    assert!(!slurm.stdout.contains("--gres"), "{}", slurm.stdout);
    // `device = "cpu"` is the default: same hashes as no device at all.
    let same = experiment(&d, &format!("{TINY}\n[[formats]]\npreset = [\"int4\"]\n{train}device = \"cpu\"\n"));
    host(&["sweep", "plan", arg(&same), "--results", arg(&res)]).expect_code(0);
    assert_eq!(jobs(&res), cpu_jobs);
    let gpu = experiment(&d, &format!("{TINY}\n[[formats]]\npreset = [\"int4\"]\n{train}device = \"cuda\"\n"));
    let res = d.join("gpu");
    host(&["sweep", "plan", arg(&gpu), "--results", arg(&res)]).expect_code(0);
    let gpu_jobs = jobs(&res);
    let train_jobs = |j: &[Value]| j.iter().filter(|j| j["type"] == "train").cloned().collect::<Vec<_>>();
    for (c, g) in train_jobs(&cpu_jobs).iter().zip(&train_jobs(&gpu_jobs)) {
        assert_eq!(g["config"]["device"], "cuda");
        assert_ne!(c["hash"], g["hash"]);
    }
    let slurm = host(&["sweep", "emit", "slurm", arg(&gpu), "--results", arg(&res)]);
    assert!(slurm.stdout.contains("#SBATCH --gres=gpu:1"), "{}", slurm.stdout);
    // Without a GPU backend, the training jobs fail with one line each; GMSE jobs still run.
    let run = host(&["sweep", "run", arg(&gpu), "--results", arg(&res), "--all"]);
    run.expect_code(2);
    assert!(run.stderr.contains("device cuda: "), "{}", run.stderr);
    // A tensor-core precision is a new job on CUDA (its own hash, the key in its configuration);
    // the runner hands it to `host train`, which needs the GPU backend like any CUDA job.
    let bf16 = experiment(&d, &format!("{train}device = \"cuda\"\nmatmul = \"bf16\"\n"));
    let res = d.join("bf16");
    host(&["sweep", "plan", arg(&bf16), "--results", arg(&res)]).expect_code(0);
    for (g, b) in train_jobs(&gpu_jobs).iter().zip(&jobs(&res)) {
        assert_eq!((&g["config"]["matmul"], &b["config"]["matmul"]), (&Value::Null, &Value::from("bf16")));
        assert_ne!(g["hash"], b["hash"]);
    }
    let run = host(&["sweep", "run", arg(&bf16), "--results", arg(&res), "--all"]);
    run.expect_code(1);
    assert!(run.stderr.contains("device cuda: ") && run.stderr.contains("2 of 2 jobs failed"), "{}", run.stderr);
    // On the CPU it is refused when the experiment is read.
    let cpu_bf16 = experiment(&d, &format!("{train}matmul = \"bf16\"\n"));
    let r = host(&["sweep", "plan", arg(&cpu_bf16), "--results", arg(&d.join("cpu-bf16"))]);
    r.expect_code(1);
    assert!(r.stderr.contains("[train] matmul precision `bf16` needs device cuda"), "{}", r.stderr);
    let bad = experiment(&d, &format!("{TINY}\n{train}device = \"tpu\"\n"));
    let r = host(&["sweep", "plan", arg(&bad), "--results", arg(&d.join("bad"))]);
    r.expect_code(1);
    assert!(r.stderr.contains("expected `cpu` or `cuda`"), "{}", r.stderr);
}

#[test]
fn accumulation_in_an_experiment_reaches_the_run_and_leaves_plain_hashes_alone() {
    shipped_plugins();
    let d = scratch("accum");
    let train = "[train]\nmodels = [\"lm-20k\"]\nformats = [\"none\"]\nsteps = 2\neval_windows = 4\n";
    let (_, plain_jobs) = plan_train(&d, "plain", train);
    // accum = 1 is the default: the same hashes as no accum at all.
    assert_eq!(plan_train(&d, "one", &format!("{train}accum = 1\n")).1, plain_jobs);
    let (two, two_jobs) = plan_train(&d, "two", &format!("{train}accum = 2\n"));
    let res2 = d.join("two");
    host(&["sweep", "all", arg(&two), "--results", arg(&res2)]).expect_code(0);
    let train_job = two_jobs.iter().find(|j| j["type"] == "train").unwrap();
    assert_eq!(train_job["config"]["accum"], 2);
    assert_ne!(train_job["hash"], plain_jobs.iter().find(|j| j["type"] == "train").unwrap()["hash"]);
    let rows = std::fs::read_to_string(res2.join("results.jsonl")).unwrap();
    let rec: Value =
        rows.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|r| r["type"] == "train").unwrap();
    assert_eq!(rec["accum"], 2, "{rec}");
    let (_, bt) = plan_train(&d, "bt", &format!("{train}batch_tokens = 4096\n"));
    assert_eq!(bt.iter().find(|j| j["type"] == "train").unwrap()["config"]["batch_tokens"], 4096);
    let zero = experiment(&d, &format!("{TINY}\n{train}accum = 0\n"));
    let r = host(&["sweep", "plan", arg(&zero), "--results", arg(&d.join("zero"))]);
    r.expect_code(1);
    assert!(r.stderr.contains("accum must be at least 1"), "{}", r.stderr);
}

#[test]
fn every_example_experiment_plans() {
    shipped_plugins();
    let d = scratch("examples");
    let mut n = 0;
    let files = ["examples/experiments", "examples/validation"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root().join(dir)).unwrap().flatten().map(|e| e.path()));
    for p in files {
        if p.extension().is_some_and(|x| x == "toml") {
            let res = d.join(format!(
                "{}-{}",
                p.parent().unwrap().file_name().unwrap().to_str().unwrap(),
                p.file_stem().unwrap().to_str().unwrap()
            ));
            let r = host(&["sweep", "plan", arg(&p), "--results", arg(&res)]);
            r.expect_code(0);
            assert!(jobs(&res).len() >= 4, "{}: {}", p.display(), r.stdout);
            n += 1;
        }
    }
    assert!(n >= 3, "too few example experiments ({n})");
}

#[test]
fn all_plans_runs_collects_fits_and_reports() {
    shipped_plugins();
    let d = scratch("all");
    let exp = experiment(
        &d,
        &format!(
            r#"{TINY}
[[formats]]
preset = ["int4", "e2m1"]
[train]
models = ["lm-50k", "lm-100k"]
formats = ["none", "int4"]
steps = 3
[fit]
law = "unified"
fix = "alpha=0.13,beta=0.33,E=1.3,L=1"
bootstrap = 10
force = true
[report]
title = "all"
"#
        ),
    );
    // Default results folder: beside the experiment file.
    let r = host(&["sweep", "all", arg(&exp), "--jobs", "2"]);
    r.expect_code(0);
    let res = d.join("exp.results");
    assert_complete(&res);
    assert_eq!(rows_without_timing(&res).len(), 8);
    let m: Value = serde_json::from_str(&std::fs::read_to_string(res.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["report"]["title"], "all");
    let fit: Value = serde_json::from_str(&std::fs::read_to_string(res.join("fit.json")).unwrap()).unwrap();
    assert!(fit.get("error").is_none(), "{fit}");
    // The fixed parameters come back as fixed, at their values.
    let text = std::fs::read_to_string(res.join("fit.txt")).unwrap();
    assert!(text.contains("law unified (4 runs)"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("alpha") && l.contains("0.130000") && l.contains("fixed")), "{text}");
    let plots: Vec<_> = std::fs::read_dir(res.join("plots")).unwrap().flatten().collect();
    assert!(plots.iter().any(|e| e.file_name() == "loss-vs-n.svg"), "{plots:?}");
    // ... and the report, titled from the experiment, opening with its plots.
    let report = std::fs::read_to_string(res.join("report/report.md")).unwrap();
    assert!(report.starts_with("# all"), "{report}");
    assert!(res.join("report/plots/loss-vs-n.svg").exists());
    assert!(r.stderr.contains("host: report: wrote"), "{}", r.stderr);
}
