//! `host train` end to end: the run record, QAT through real plugins, a killed
//! run resumed, and clear errors that keep what was computed.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{arg, host, host_exe, num, root, shipped_plugins};

/// A fresh, empty folder for one test's runs.
fn scratch(name: &str) -> PathBuf {
    support::scratch("test-train", name)
}

#[test]
fn acceptance_command_prints_the_record() {
    shipped_plugins();
    let out = scratch("acceptance");
    let dir = out.join("run");
    let r = host(&[
        "train",
        "--model",
        "bench-tiny",
        "--format",
        "int4-absmax-g32",
        "--steps",
        "200",
        "--json",
        "--out",
        arg(&dir),
    ]);
    r.expect_code(0);
    let j = r.json();
    for key in [
        "model",
        "format",
        "act_format",
        "non_embedding_params",
        "tokens",
        "train_loss",
        "val_loss",
        "tokens_per_second",
        "wall_seconds",
        "seed",
        "w_gmse",
        "w_rho",
    ] {
        assert!(!j[key].is_null(), "field {key} missing in {j}");
    }
    assert_eq!(j["model"], "bench-tiny");
    // A CPU record keeps its columns: no `matmul` (CUDA records name it; the CPU has only fp32).
    assert_eq!((j["device"].as_str(), j.get("matmul")), (Some("cpu"), None));
    // bench-tiny: 4 blocks x (4 x 128^2 attention + 3 x 128 x 384 MLP + 2 x 128 norms) + final norm.
    assert_eq!(j["non_embedding_params"], 4 * (4 * 128 * 128 + 3 * 128 * 384 + 2 * 128) + 128);
    assert_eq!(j["tokens"], 200 * 16 * 128);
    // int4 with absmax per 32: GMSE about 9.4e-3 (between NVFP4's 9.0e-3 and INT4's 1.15e-2).
    let g = num(&j, "w_gmse");
    assert!((0.008..0.011).contains(&g), "{g}");
    // The loss falls clearly below ln 256 = 5.545 (uniform over bytes) within 200 steps.
    assert!(num(&j, "val_loss") < 4.0, "{j}");
    // The record is also written, and `host fit` reads run folders.
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(rec["val_loss"], j["val_loss"]);
    assert!(dir.join("checkpoint.safetensors").exists() && dir.join("metrics.jsonl").exists());
}

/// The final validation loss of a run.
fn val_loss(dir: &std::path::Path, args: &[&str]) -> f64 {
    let mut all = vec!["train", "--model", "lm-50k", "--json", "--out", arg(dir)];
    all.extend_from_slice(args);
    let r = host(&all);
    r.expect_code(0);
    num(&r.json(), "val_loss")
}

#[test]
fn int8_matches_plain_training_and_int2_is_worse() {
    shipped_plugins();
    let out = scratch("qat");
    let steps = ["--steps", "300", "--eval-windows", "128"];
    let plain = val_loss(&out.join("plain"), &steps);
    let int8 = val_loss(&out.join("int8"), &[&steps[..], &["--format", "int8"]].concat());
    let int2 = val_loss(&out.join("int2"), &[&steps[..], &["--format", "int2"]].concat());
    println!("lm-50k, 300 steps: plain {plain:.4}, int8 {int8:.4}, int2 {int2:.4} nats/byte");
    // Issue 4: int8 ends within 1 % of plain training; int2 clearly worse.
    assert!((int8 - plain).abs() < 0.01 * plain, "int8 {int8} vs plain {plain}");
    assert!(int2 > plain * 1.02, "int2 {int2} vs plain {plain}");
}

#[test]
fn gradient_accumulation_trains_the_same_run() {
    // lm-50k with batch 16 as 4 micro-batches of 4, through int4 on the weights: the same run up
    // to float summation order (the trainer's own test bounds the per-step difference at 1e-4
    // relative); the record names the accumulation.
    shipped_plugins();
    let out = scratch("accum");
    let steps = ["--steps", "40", "--eval-windows", "32", "--format", "int4"];
    let one = val_loss(&out.join("one"), &steps);
    let four = val_loss(&out.join("four"), &[&steps[..], &["--accum", "4"]].concat());
    println!("lm-50k int4, 40 steps: accum 1 {one:.6}, accum 4 {four:.6}");
    assert!((one - four).abs() < 1e-3 * one, "{one} vs {four}");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("four").join("result.json")).unwrap()).unwrap();
    assert_eq!(rec["accum"], 4);
    // Batch given in tokens: 4096 tokens = 32 sequences of 128 per step, in 2 micro-batches.
    let dir = out.join("tokens");
    let r = host(&[
        "train",
        "--model",
        "lm-20k",
        "--steps",
        "3",
        "--eval-windows",
        "4",
        "--json",
        "--out",
        arg(&dir),
        "--batch-tokens",
        "4096",
        "--accum",
        "2",
    ]);
    r.expect_code(0);
    let j = r.json();
    let got = (j["batch_tokens"].as_u64(), j["tokens"].as_u64(), j["accum"].as_u64());
    assert_eq!(got, (Some(4096), Some(3 * 4096), Some(2)), "{j}");
}

#[test]
fn rotated_formats_train_through_their_own_backward() {
    // Weights and activations both in formats that quantize in a Hadamard
    // basis: the run goes through each plugin's backward (trust mask in the
    // rotated basis, see plugins/int and plugins/vq) and ends close to plain
    // training, as int4 does with its element-wise mask.
    shipped_plugins();
    let out = scratch("rotated");
    let steps = ["--steps", "150", "--eval-windows", "64"];
    let plain = val_loss(&out.join("plain"), &steps);
    let rot = ["--format", "int4:hadamard=true", "--act-format", "vq4-d2"];
    let loss = val_loss(&out.join("rot"), &[&steps[..], &rot[..]].concat());
    println!("lm-50k, 150 steps: plain {plain:.4}, int4 + Hadamard weights and vq4-d2 activations {loss:.4} nats/byte");
    // Measured: plain 0.857, rotated 0.879 (+2.6 %); ln 256 = 5.545 learns nothing.
    assert!(loss.is_finite() && loss < 1.05 * plain, "rotated {loss} vs plain {plain}");
}

#[test]
fn killed_run_resumes_to_the_same_loss() {
    shipped_plugins();
    let out = scratch("resume");
    let common = ["train", "--model", "lm-50k", "--steps", "120", "--checkpoint-every", "5", "--json"];
    let whole = out.join("whole");
    let r = host(&[&common[..], &["--out", arg(&whole)]].concat());
    r.expect_code(0);
    let expect = r.json();

    // The same run, killed (SIGKILL) once a checkpoint exists, then resumed.
    let cut = out.join("cut");
    let mut child = Command::new(host_exe())
        .args(common)
        .args(["--out", arg(&cut)])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !cut.join("checkpoint.safetensors").exists() && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cut.join("result.json").exists(), "the run finished before it could be killed");
    let r = host(&[&common[..], &["--out", arg(&cut), "--resume"]].concat());
    r.expect_code(0);
    let got = r.json();
    for key in ["train_loss", "val_loss", "final_step_loss"] {
        assert_eq!(got[key], expect[key], "{key}: resumed {} vs uninterrupted {}", got[key], expect[key]);
    }
    // Starting over in a folder that holds a run needs --resume.
    let r = host(&[&common[..], &["--out", arg(&cut)]].concat());
    r.expect_code(1);
    assert!(r.stderr.contains("pass --resume"), "{}", r.stderr);
}

#[test]
fn bad_input_stops_with_a_clear_message() {
    shipped_plugins();
    let out = scratch("errors");
    let check = |args: &[&str], needle: &str| {
        let mut all = vec!["train", "--steps", "3"];
        all.extend_from_slice(args);
        let r = host(&all);
        r.expect_code(1);
        let lines = r.stderr_lines();
        let last = lines.last().copied().unwrap_or("");
        assert!(last.starts_with("host: error: ") && last.contains(needle), "{}: {}", r.cmd, r.stderr);
    };
    let missing = out.join("nope.txt");
    check(&["--data", arg(&missing), "--out", arg(&out.join("a"))], "nope.txt");
    let empty = out.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    check(&["--data", arg(&empty), "--out", arg(&out.join("b"))], "empty.txt");
    check(&["--model", "lm-7b", "--out", arg(&out.join("c"))], "unknown model preset 'lm-7b'");
    check(
        &["--accum", "3", "--out", arg(&out.join("c3"))],
        "--accum 3: model config 'lm-200k': accum 3 must be a divisor of batch 16",
    );
    check(
        &["--batch-tokens", "1000", "--out", arg(&out.join("c4"))],
        "--batch-tokens 1000: must be a positive multiple of the context of 'lm-200k' (128 tokens)",
    );
    check(&["--format", "no-such-format", "--out", arg(&out.join("d"))], "no-such-format");
    // Tensor-core matrix products are a CUDA option; an unknown precision lists the valid ones.
    for p in ["tf32", "bf16"] {
        check(
            &["--matmul", p, "--out", arg(&out.join(p))],
            &format!("matmul precision `{p}` needs device cuda: the CPU trainer computes matrix products in fp32 only"),
        );
        check(&["--device", "cpu", "--matmul", p, "--out", arg(&out.join(p))], "needs device cuda");
        assert!(!out.join(p).exists(), "refused before anything was written");
    }
    check(
        &["--matmul", "fp16", "--out", arg(&out.join("e"))],
        "matmul precision `fp16`: expected `fp32`, `tf32` or `bf16`",
    );
    // The shipped formats take any shape; a misbehaving plugin (one that panics, one that returns
    // half its output) stops the run before training with an error naming the format. (That the
    // trainer names the layer when a compressor fails mid-run is tested in trainer/tests.)
    let f = support::fixtures();
    for (lib, spec) in [(&f.panicky, "panicky-boom"), (&f.wrong_length, "wrong-length")] {
        let dir = out.join(spec);
        let args = ["--model", "lm-50k", "--format", spec, "--plugins", arg(lib), "--out", arg(&dir)];
        check(&args, &format!("format `{spec}`"));
    }
    // A learning rate that blows the loss up: the error names the step, and the checkpoint
    // of the last good step and the metrics are kept.
    let nan = out.join("nan");
    let r = host(&[
        "train",
        "--model",
        "lm-50k",
        "--steps",
        "50",
        "--lr",
        "1e9",
        "--checkpoint-every",
        "1",
        "--out",
        arg(&nan),
    ]);
    r.expect_code(1);
    assert!(r.stderr.contains("became NaN at step"), "{}", r.stderr);
    assert!(nan.join("metrics.jsonl").exists() && nan.join("checkpoint.safetensors").exists());
}

/// Runs `exe train ...` (2 steps of bench-tiny with int4) in the folder `cwd` with
/// `HOST_PLUGIN_PATH` set to `plugin_path` (or unset): (exit code, stderr).
fn train_in(
    exe: &std::path::Path,
    cwd: &std::path::Path,
    plugin_path: Option<&str>,
    out: &std::path::Path,
) -> (i32, String) {
    let mut c = Command::new(exe);
    c.args(["train", "--model", "bench-tiny", "--format", "int4", "--steps", "2", "--eval-windows", "4", "--json"])
        .args(["--out", arg(out)])
        .current_dir(cwd)
        .env_remove("HOST_PLUGIN_PATH");
    if let Some(p) = plugin_path {
        c.env("HOST_PLUGIN_PATH", p);
    }
    let o = c.output().expect("run host");
    (o.status.code().expect("exit code"), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Without `--plugins`, `host train` looks in `./plugins`, else next to its executable, then in
/// `HOST_PLUGIN_PATH`; when nothing loads, the one error line names every place it looked in.
#[test]
fn plugins_are_found_from_another_folder() {
    shipped_plugins();
    let d = scratch("elsewhere");
    let cwd = d.join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    // From a folder without `plugins/`: the libraries next to the binary (target/<profile>).
    let (code, err) = train_in(&host_exe(), &cwd, None, &d.join("run1"));
    assert_eq!(code, 0, "{err}");
    assert!(d.join("run1/result.json").is_file());
    // A copy of the binary in a folder without plugins: nothing loads, and the error says where
    // it looked (./plugins, the executable's folder, each HOST_PLUGIN_PATH entry).
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join(host_exe().file_name().unwrap());
    std::fs::copy(host_exe(), &exe).unwrap();
    let (missing, empty) = (d.join("missing"), d.join("empty"));
    std::fs::create_dir_all(&empty).unwrap();
    let var = format!("{}:{}", missing.display(), empty.display());
    let (code, err) = train_in(&exe, &cwd, Some(&var), &d.join("run2"));
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    for needle in [
        "host: error: no plugin could be loaded; looked in plugins (in the current folder): no such file or folder",
        &format!("{} (next to the host executable): no plugin libraries", bin.display()),
        &format!("{} (HOST_PLUGIN_PATH): no such file or folder", missing.display()),
        &format!("{} (HOST_PLUGIN_PATH): no plugin libraries", empty.display()),
        "cargo build --release",
    ] {
        assert!(lines[0].contains(needle), "`{needle}` missing from:\n{err}");
    }
    // The same copy with the built libraries' folder in HOST_PLUGIN_PATH.
    let profile = host_exe().parent().unwrap().to_path_buf();
    let var = format!("{}:{}", missing.display(), profile.display());
    let (code, err) = train_in(&exe, &cwd, Some(&var), &d.join("run3"));
    assert_eq!(code, 0, "{err}");
    // From the repository root, `./plugins` (crates whose libraries are in target/) is used.
    let (code, err) = train_in(&exe, &root(), None, &d.join("run4"));
    assert_eq!(code, 0, "{err}");
    let r1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("run1/result.json")).unwrap()).unwrap();
    let r4: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("run4/result.json")).unwrap()).unwrap();
    assert_eq!(num(&r1, "val_loss"), num(&r4, "val_loss"), "the same plugin gives the same run");
}

/// What a CUDA run offers the library for native weight kernels: a single format of a shipped
/// int, fp or block plugin, as its kind and full parameter table (preset parameters, then the
/// SPEC's overrides); nothing for compositions or other plugins.
#[test]
fn native_weight_specs_name_kind_and_full_parameters() {
    shipped_plugins();
    let paths: Vec<_> = ["plugin_int", "plugin_fp", "plugin_block", "plugin_sparse"]
        .iter()
        .map(|l| support::shipped_library(l))
        .collect();
    let (libs, failed) = host_core::loader::load_all(&paths);
    assert!(failed.is_empty(), "{}", failed.len());
    let table = |spec: &str| {
        let (kind, text) = host_train::native_spec(&libs, spec).unwrap_or_else(|| panic!("{spec}: none"));
        (kind, text.parse::<sdk::params::Table>().unwrap())
    };
    let (kind, t) = table("int4");
    assert_eq!((kind.as_str(), t["bits"].as_integer()), ("int", Some(4)));
    let (_, t) = table("int:bits=6,rule=absmax,group=32");
    assert_eq!(
        (t["bits"].as_integer(), t["rule"].as_str(), t["group"].as_integer()),
        (Some(6), Some("absmax"), Some(32))
    );
    let (kind, t) = table("e4m3");
    assert_eq!((kind.as_str(), t["e"].as_integer(), t["m"].as_integer()), ("fp", Some(4), Some(3)));
    assert_eq!(table("nvfp4").0, "nvfp4");
    assert_eq!(table("mxfp4").0, "mx");
    for spec in ["sparse50", "sparse50+int4", "outliers:p=0.01+int4", "none"] {
        assert_eq!(host_train::native_spec(&libs, spec), None, "{spec}");
    }
}
