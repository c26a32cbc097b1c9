//! Unit tests of `host sweep`: experiment parsing and errors, grid expansion,
//! hashing, job selection, launchers.

use std::path::Path;

use serde_json::json;

use super::exp::{Experiment, expand_group};
use super::plan::{canonical, fnv1a64, job_hash};
use super::*;

fn parse(text: &str) -> Result<Experiment, String> {
    Experiment::parse(Path::new("EXP.toml"), text)
}

#[test]
fn fnv1a64_matches_the_published_vectors() {
    // Reference values of 64-bit FNV-1a (Fowler/Noll/Vo test suite).
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn canonical_json_sorts_keys_and_hash_is_stable() {
    let a = json!({"b": 1, "a": {"y": [1, 2.5], "x": "s"}});
    let b = json!({"a": {"x": "s", "y": [1, 2.5]}, "b": 1});
    assert_eq!(canonical(&a), r#"{"a":{"x":"s","y":[1,2.5]},"b":1}"#);
    assert_eq!(job_hash(&a), job_hash(&b));
    assert_eq!(job_hash(&a).len(), 16);
    assert!(job_hash(&a).chars().all(|c| c.is_ascii_hexdigit()));
    // Any change gives a new hash: a value, a key, a type (1 vs 1.0), a plugin version.
    for changed in [
        json!({"b": 2, "a": {"y": [1, 2.5], "x": "s"}}),
        json!({"c": 1, "a": {"y": [1, 2.5], "x": "s"}}),
        json!({"b": 1.0, "a": {"y": [1, 2.5], "x": "s"}}),
        json!({"b": 1, "a": {"y": [2.5, 1], "x": "s"}}),
    ] {
        assert_ne!(job_hash(&a), job_hash(&changed), "{changed}");
    }
    let p = |v: &str| json!({"format": "int4", "plugins": [{"plugin": "int", "version": v}]});
    assert_ne!(job_hash(&p("0.1.0")), job_hash(&p("0.1.1")));
}

#[test]
fn kind_grid_expands_as_a_cartesian_product_with_exclude() {
    let e = parse(
        r#"
[[formats]]
kind = "int"
params = { bits = [3, 4, 8], rule = "absmax", group = [32, 128] }
exclude = [{ bits = 8, group = 32 }, { bits = 3.0 }]
"#,
    )
    .unwrap();
    let specs = e.format_specs().unwrap();
    // 3 x 2 = 6 combinations; bits = 8 with group 32 and every bits = 3 (2) are dropped: 3 left.
    // Keys in sorted order (bits, group, rule), the last axis fastest.
    assert_eq!(
        specs,
        ["int:bits=4,group=32,rule=absmax", "int:bits=4,group=128,rule=absmax", "int:bits=8,group=128,rule=absmax"]
    );
}

#[test]
fn presets_compositions_and_duplicates() {
    let e = parse(
        r#"
[[formats]]
preset = "int4"
[[formats]]
preset = ["int4", "e2m1"]
[[formats]]
kind = "outliers"
params = { p = [0.01, 0.001] }
then = "int4"
[[formats]]
preset = ["int4"]
before = ["sparse50", "sparse75"]
"#,
    )
    .unwrap();
    assert_eq!(
        e.format_specs().unwrap(),
        ["int4", "e2m1", "outliers:p=0.01+int4", "outliers:p=0.001+int4", "sparse50+int4", "sparse75+int4"]
    );
}

#[test]
fn spec_values_read_back_as_the_same_toml_values() {
    for (v, text) in [
        (toml::Value::Integer(4), "4"),
        (toml::Value::Float(0.5), "0.5"),
        (toml::Value::Float(2.0), "2.0"),
        (toml::Value::Boolean(true), "true"),
        (toml::Value::String("absmax".into()), "absmax"),
        (toml::Value::String("a,b".into()), "\"a,b\""),
        (toml::Value::String("true".into()), "\"true\""),
    ] {
        assert_eq!(exp::spec_value(&v), text);
        let t = host_core::spec::parse_overrides(&format!("k={text}")).unwrap();
        let mut want = toml::Table::new();
        want.insert("k".into(), v.clone());
        assert_eq!(toml::to_string(&t).unwrap(), toml::to_string(&want).unwrap(), "{text}");
    }
}

#[test]
fn errors_name_line_and_column_on_one_line() {
    let cases = [
        ("name = \"x\"\nbogus = 1\n", "line 2, column 1", "bogus"),
        ("[gmse]\nshape = \"12by3\"\n", "line 2, column 9", "ROWSxCOLS"),
        ("[gmse]\ndistributions = [\"gaussian\", \"cauchy\"]\n", "line 2, column 17", "unknown distribution"),
        ("[gmse]\ntarget_rse = -1.0\n", "line 2, column 14", "positive"),
        ("[[formats]]\npreset = \"int4\"\ncolour = 3\n", "line 3, column 1", "colour"),
        ("[train]\nmodels = [\"lm-7b\"]\n", "line 2, column 10", "unknown model preset"),
        ("[[formats]]\npreset=\"int4\"\n[fit]\nlaw = \"magic\"\n", "line 4, column 7", "unknown law"),
        ("[gmse]\nsamples = 10\ntarget_rse = 0.1\n[[formats]]\npreset=\"int4\"\n", "line 2", "not both"),
    ];
    for (text, at, what) in cases {
        let e = parse(text).unwrap_err();
        assert!(e.starts_with("EXP.toml: ") && e.contains(at) && e.contains(what), "{text:?} gave: {e}");
        assert!(!e.contains('\n'), "not one line: {e}");
    }
    let e = parse("[[formats]]\nkind = \"int\"\nparams = { bits = [4] }\nexclude = [{ group = 32 }]\n").unwrap();
    assert!(e.format_specs().unwrap_err().contains("`group`, which is not in params"));
    assert!(parse("name = \"empty\"\n").unwrap_err().contains("nothing to run"));
}

#[test]
fn expand_group_without_params_is_the_bare_kind() {
    let e = parse("[[formats]]\nkind = \"lloydmax\"\n").unwrap();
    assert_eq!(expand_group(&e.formats[0]).unwrap(), ["lloydmax"]);
}

fn run_args(index: Option<usize>, shard: Option<&str>, all: bool) -> RunArgs {
    RunArgs {
        common: Common { experiment: "e.toml".into(), results: None },
        index,
        shard: shard.map(str::to_string),
        all,
        jobs: None,
        threads: None,
        keep_stale: false,
    }
}

#[test]
fn selection_from_flags_and_scheduler_environment() {
    let none = |_: &str| None;
    assert_eq!(select(5, &run_args(None, None, true), &none).unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(select(5, &run_args(Some(3), None, false), &none).unwrap(), [3]);
    assert!(select(5, &run_args(Some(5), None, false), &none).unwrap_err().contains("5 jobs"));
    assert_eq!(select(5, &run_args(None, Some("1/2"), false), &none).unwrap(), [1, 3]);
    assert!(select(5, &run_args(None, Some("2/2"), false), &none).is_err());
    assert!(select(5, &run_args(None, None, false), &none).unwrap_err().contains("say --index"));
    let slurm = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    };
    let a = run_args(None, None, false);
    // One task per job.
    assert_eq!(select(5, &a, &slurm(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_COUNT", "5")])).unwrap(), [4]);
    // Fewer tasks than jobs: task i runs jobs j with j % count == i.
    assert_eq!(
        select(5, &a, &slurm(&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "2")])).unwrap(),
        [1, 3]
    );
    // An array starting at 10.
    assert_eq!(select(5, &a, &slurm(&[("SLURM_ARRAY_TASK_ID", "12"), ("SLURM_ARRAY_TASK_MIN", "10")])).unwrap(), [2]);
    // Past the end: nothing to do.
    assert!(select(5, &a, &slurm(&[("SLURM_ARRAY_TASK_ID", "7")])).unwrap().is_empty());
    assert_eq!(select(5, &a, &slurm(&[("JOB_COMPLETION_INDEX", "0")])).unwrap(), [0]);
    assert_eq!(select(5, &a, &slurm(&[("JOB_COMPLETION_INDEX", "0"), ("SWEEP_TASK_COUNT", "2")])).unwrap(), [0, 2, 4]);
    assert!(select(5, &a, &slurm(&[("JOB_COMPLETION_INDEX", "x")])).unwrap_err().contains("not an index"));
}

/// A YAML document (one) as JSON values, through a maintained YAML parser.
fn yaml(text: &str) -> serde_json::Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

#[test]
fn launchers_name_the_array_and_the_command() {
    let m = plan::Manifest {
        sweep: 1,
        name: "FP vs INT".into(),
        experiment: "/w/e.toml".into(),
        results: "/w/e.results".into(),
        plugins: vec!["/w/plugins".into()],
        hash: String::new(),
        report: serde_json::Value::Null,
        jobs: (0..3)
            .map(|i| plan::Job {
                index: i,
                hash: format!("{i:016x}"),
                kind: "gmse".into(),
                what: String::new(),
                config: json!({}),
                slot: String::new(),
            })
            .collect(),
    };
    let o = emit::EmitOptions {
        cpus: 2,
        mem: "4G".into(),
        time: "01:00:00".into(),
        partition: None,
        max_running: None,
        parallelism: 2,
        image: "img".into(),
        pvc: Some("shared".into()),
        host_path: false,
        backoff_limit: 3,
        tasks: None,
        host_exe: Some("/bin/host".into()),
    };
    let s = emit::emit(emit::Target::Slurm, &m, &o, Path::new("/w")).unwrap();
    assert!(s.contains("#SBATCH --array=0-2\n") && s.contains("#SBATCH --cpus-per-task=2\n"), "{s}");
    assert!(s.contains("exec /bin/host sweep run /w/e.toml --results /w/e.results\n"), "{s}");
    // Kubernetes: the manifest parsed as YAML, checked field by field.
    let k = emit::emit(emit::Target::K8s, &m, &o, Path::new("/w")).unwrap();
    let y = yaml(&k);
    assert_eq!(y["apiVersion"], "batch/v1");
    assert_eq!(y["kind"], "Job");
    assert_eq!(y["metadata"]["name"], "sweep-fp-vs-int");
    let spec = &y["spec"];
    assert_eq!(
        (&spec["completionMode"], &spec["completions"], &spec["parallelism"], &spec["backoffLimit"]),
        (&json!("Indexed"), &json!(3), &json!(2), &json!(3))
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    assert_eq!((&c["name"], &c["image"], &c["workingDir"]), (&json!("sweep"), &json!("img"), &json!("/w")));
    assert_eq!(c["command"], json!(["/bin/host", "sweep", "run", "/w/e.toml", "--results", "/w/e.results"]));
    assert_eq!(
        c["env"],
        json!([{"name": "RAYON_NUM_THREADS", "value": "2"}, {"name": "SWEEP_TASK_COUNT", "value": "3"}])
    );
    assert_eq!(c["resources"]["requests"], json!({"cpu": "2", "memory": "4Gi"}));
    assert_eq!(c["volumeMounts"], json!([{"name": "work", "mountPath": "/w"}]));
    assert_eq!(pod["volumes"], json!([{"name": "work", "persistentVolumeClaim": {"claimName": "shared"}}]));
    // --host-path: the node's own folder at the same path.
    let hp = emit::EmitOptions { pvc: None, host_path: true, ..o.clone() };
    let y = yaml(&emit::emit(emit::Target::K8s, &m, &hp, Path::new("/w")).unwrap());
    let pod = &y["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"], json!([{"name": "work", "hostPath": {"path": "/w", "type": "Directory"}}]));
    assert_eq!(pod["containers"][0]["volumeMounts"], json!([{"name": "work", "mountPath": "/w"}]));
    // Neither: the pods would see this machine's paths on no storage; one line saying what to set.
    let none = emit::EmitOptions { pvc: None, host_path: false, ..o.clone() };
    let e = emit::emit(emit::Target::K8s, &m, &none, Path::new("/w")).unwrap_err();
    assert!(e.contains("--pvc NAME") && e.contains("--host-path") && e.contains("/w") && !e.contains('\n'), "{e}");
    // Names and strings that need quoting stay one YAML string each.
    let odd =
        emit::EmitOptions { image: "reg.io/host:v1 # not a comment".into(), pvc: Some("a: b".into()), ..o.clone() };
    let odd_m = plan::Manifest { name: "x".into(), experiment: "/w/my exp: 1.toml".into(), ..m.clone() };
    let y = yaml(&emit::emit(emit::Target::K8s, &odd_m, &odd, Path::new("/w d")).unwrap());
    let pod = &y["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "reg.io/host:v1 # not a comment");
    assert_eq!(pod["containers"][0]["command"][3], "/w/my exp: 1.toml");
    assert_eq!(pod["containers"][0]["workingDir"], "/w d");
    assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "a: b");
    let p = emit::emit(emit::Target::Parallel, &m, &o, Path::new("/w")).unwrap();
    assert!(p.contains("seq 0 2 | parallel -j 2") && p.ends_with("--index {}\n"), "{p}");
    // Fewer tasks than jobs: shards.
    let o = emit::EmitOptions { tasks: Some(2), ..o };
    let s = emit::emit(emit::Target::Slurm, &m, &o, Path::new("/w")).unwrap();
    assert!(s.contains("#SBATCH --array=0-1\n"), "{s}");
    let y = yaml(&emit::emit(emit::Target::K8s, &m, &o, Path::new("/w")).unwrap());
    assert_eq!(y["spec"]["completions"], 2);
    assert_eq!(
        y["spec"]["template"]["spec"]["containers"][0]["env"][1],
        json!({"name": "SWEEP_TASK_COUNT", "value": "2"})
    );
    let p = emit::emit(emit::Target::Parallel, &m, &o, Path::new("/w")).unwrap();
    assert!(p.contains("seq 0 1 | parallel") && p.ends_with("--shard {}/2\n"), "{p}");
}

/// A grid of more than `MAX_SPECS` combinations is a one-line error, found
/// before anything is expanded (10 keys x 10 values would be 10^10 SPECs).
#[test]
fn grid_explosion_is_refused_before_expanding() {
    let values = "[0,1,2,3,4,5,6,7,8,9]";
    let keys: Vec<String> = "abcdefghij".chars().map(|k| format!("{k} = {values}")).collect();
    let e = parse(&format!("[[formats]]\nkind = \"int\"\nparams = {{ {} }}\n", keys.join(", "))).unwrap();
    let err = e.format_specs().unwrap_err();
    assert!(err.contains("[[formats]] #1") && err.contains("more than 100000 combinations"), "{err}");
    assert!(err.contains("a: 10"), "{err}");
    // A small grid still expands.
    let e = parse("[[formats]]\nkind = \"int\"\nparams = { bits = [1, 2, 3], group = [16, 32] }\n").unwrap();
    assert_eq!(e.format_specs().unwrap().len(), 6);
}

/// The train jobs of a train-only experiment (formats `none` need no plugin): (what, hash, config).
fn train_jobs(text: &str) -> Vec<(String, String, serde_json::Value)> {
    let e = parse(text).unwrap();
    let m = plan::build(&e, Path::new("EXP.toml"), Path::new("EXP.results"), &[]).unwrap();
    m.jobs.into_iter().filter(|j| j.kind == "train").map(|j| (j.what, j.hash, j.config)).collect()
}

/// The `[train]` table of examples/validation/synthetic.toml with its `none` format only.
const STUDY_TRAIN: &str = "[train]\nmodels = [\"lm-10k\"]\ntokens_per_param = [20]\nformats = [\"none\"]\n\
    seeds = [0]\ndata = \"synthetic\"\neval_every = 500\neval_windows = 512\ncheckpoint_every = 200\n";

#[test]
fn matmul_precision_enters_a_job_only_when_not_fp32_and_finished_hashes_stay() {
    // Pinned before the option existed: the finished validation study's job
    // (examples/validation/synthetic.results/jobs/23a312373e41e01d.json) and the quick sweep's
    // (examples/experiments/quick.toml, `train lm-50k none, 0.5 tok/param, seed 0`).
    let study = train_jobs(STUDY_TRAIN);
    assert_eq!(study.len(), 1);
    assert_eq!(
        (study[0].0.as_str(), study[0].1.as_str()),
        ("train lm-10k none, 20 tok/param, seed 0", "23a312373e41e01d")
    );
    let quick = "[train]\nmodels = [\"lm-50k\"]\nformats = [\"none\"]\nseeds = [0]\ndata = \"synthetic\"\n\
        tokens_per_param = [0.5]\neval_every = 50\ncheckpoint_every = 10\n";
    assert_eq!(train_jobs(quick)[0].1, "eba1fdbde9cff901");
    // `matmul = "fp32"` is the default: the same job, the same hash, no key.
    let fp32 = train_jobs(&format!("{STUDY_TRAIN}matmul = \"fp32\"\n"));
    assert_eq!(fp32, study);
    assert!(fp32[0].2.get("matmul").is_none());
    // On CUDA, fp32 keeps the device-only hash; tf32 and bf16 are new jobs, each its own.
    let cuda = |m: &str| train_jobs(&format!("{STUDY_TRAIN}device = \"cuda\"\n{m}"));
    let plain = cuda("");
    assert_eq!(cuda("matmul = \"fp32\"\n"), plain);
    let tf32 = cuda("matmul = \"tf32\"\n");
    let bf16 = cuda("matmul = \"bf16\"\n");
    assert_eq!((&tf32[0].2["matmul"], &bf16[0].2["matmul"]), (&json!("tf32"), &json!("bf16")));
    let hashes = [&study[0].1, &plain[0].1, &tf32[0].1, &bf16[0].1];
    for (i, a) in hashes.iter().enumerate() {
        for b in &hashes[i + 1..] {
            assert_ne!(a, b);
        }
    }
    // The hash is the configuration's: the default job's config plus the key, nothing else.
    let mut want = plain[0].2.clone();
    want["matmul"] = json!("tf32");
    assert_eq!(tf32[0].2, want);
    assert_eq!(tf32[0].1, job_hash(&want));
}

#[test]
fn matmul_errors_name_line_and_column_and_the_cpu_refuses_tensor_cores() {
    let e = parse(&format!("{STUDY_TRAIN}device = \"cuda\"\nmatmul = \"fp16\"\n")).unwrap_err();
    assert_eq!(e, "EXP.toml: line 11, column 1: [train] matmul precision `fp16`: expected `fp32`, `tf32` or `bf16`");
    for text in
        [format!("{STUDY_TRAIN}matmul = \"bf16\"\n"), format!("{STUDY_TRAIN}device = \"cpu\"\nmatmul = \"tf32\"\n")]
    {
        let e = parse(&text).unwrap_err();
        let p = if text.contains("bf16") { "bf16" } else { "tf32" };
        assert_eq!(
            e,
            format!(
                "EXP.toml: line {}, column 1: [train] matmul precision `{p}` needs device cuda: the CPU trainer computes matrix products in fp32 only (use `fp32`, or train with device `cuda`)",
                text.lines().count()
            )
        );
    }
}
