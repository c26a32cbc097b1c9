//! End-to-end tests of `host apply` and `host rank --dist` on real tensor
//! files: the tests write their own `.safetensors` fixture (Gaussian tensors
//! in F32 and BF16, plus a 1-D, an integer and a NaN tensor that must be
//! reported and skipped), run the real binary on the shipped INT plugin, and
//! recompute every reported column from the written output and mask.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use safetensors::{Dtype, tensor::TensorView};
use support::{arg, host, num, rows_by_format, shipped_plugins};

/// INT4 (QuEST RMS scale per row) Gaussian MSE, DESIGN.md 2.6.
const INT4_GMSE: f64 = 0.011543;

fn work_dir() -> PathBuf {
    let d = support::target_dir().join("apply-tests");
    std::fs::create_dir_all(&d).expect("create the test folder");
    d
}

fn gaussian(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0f32; n];
    host::sampler::fill_normal(seed, 0, &mut v);
    v.iter_mut().for_each(|x| *x *= scale);
    v
}

/// The fixture: `gauss` F32 64x4096 N(0,1); `scaled` BF16 32x2048 of
/// 3 N(0,1); `bias` F32 [512] (1-D); `ids` I64 4x4; `broken` F32 4x8 with a NaN.
/// Returns its path and the two usable tensors as f32 (BF16 already rounded).
fn fixture() -> &'static (PathBuf, Vec<f32>, Vec<f32>) {
    static F: OnceLock<(PathBuf, Vec<f32>, Vec<f32>)> = OnceLock::new();
    F.get_or_init(|| {
        let path = work_dir().join("weights.safetensors");
        let gauss = gaussian(1, 64 * 4096, 1.0);
        let scaled: Vec<f32> = gaussian(2, 32 * 2048, 3.0).iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
        let f32b = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let bf16b: Vec<u8> = scaled.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect();
        let mut broken = gaussian(3, 32, 1.0);
        broken[9] = f32::NAN;
        let entries: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            ("gauss", Dtype::F32, vec![64, 4096], f32b(&gauss)),
            ("scaled", Dtype::BF16, vec![32, 2048], bf16b),
            ("bias", Dtype::F32, vec![512], f32b(&gaussian(4, 512, 1.0))),
            ("ids", Dtype::I64, vec![4, 4], (0..16i64).flat_map(|v| v.to_le_bytes()).collect()),
            ("broken", Dtype::F32, vec![4, 8], f32b(&broken)),
        ];
        let views: Vec<(String, TensorView<'_>)> = entries
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).expect("valid view")))
            .collect();
        safetensors::serialize_to_file(views, None, &path).expect("write the fixture");
        (path, gauss, scaled)
    })
}

/// Reads every tensor of a file through the host's reader.
fn read_all(path: &Path) -> Vec<(String, Vec<f32>)> {
    host::tensorio::read(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .tensors
        .into_iter()
        .map(|(n, t)| (n, t.unwrap_or_else(|e| panic!("{e}")).data))
        .collect()
}

fn find<'a>(tensors: &'a [(String, Vec<f32>)], name: &str) -> &'a [f32] {
    &tensors.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("no tensor `{name}`")).1
}

/// Asserts the three bad tensors gave one warning line each, naming the file
/// and the tensor.
#[track_caller]
fn three_warnings(run: &support::Run) {
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 3, "{}: expected 3 warnings:\n{}", run.cmd, run.stderr);
    for (tensor, what) in [("bias", "1-D shape [512]"), ("ids", "dtype I64"), ("broken", "NaN at element 9")] {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("tensor `{tensor}`")))
            .unwrap_or_else(|| panic!("{}: no warning for `{tensor}`:\n{}", run.cmd, run.stderr));
        assert!(line.starts_with("host: warning: "), "{line}");
        assert!(line.contains("weights.safetensors") && line.contains(what), "{line}");
    }
}

#[test]
fn apply_reports_every_column_and_writes_output_and_mask() {
    shipped_plugins();
    let (path, gauss, scaled) = fixture();
    let out = work_dir().join("int4-out.safetensors");
    let mask = work_dir().join("int4-mask.safetensors");
    let run = host(&[
        "apply",
        "plugins/int",
        "--format",
        "int4",
        "--input",
        arg(path),
        "--json",
        "--output",
        arg(&out),
        "--mask",
        arg(&mask),
    ]);
    // Three tensors were skipped while the rest was reported: exit status 2.
    run.expect_code(2);
    three_warnings(&run);
    let rows = run.json();
    let rows = rows.as_array().expect("a JSON array");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let outputs = read_all(&out);
    let masks = read_all(&mask);
    assert_eq!(outputs.len(), 2);

    // Bits: what `host rank` reports for the same shape.
    let bits_of = |shape: &str| {
        let r = host(&["rank", "plugins/int", "-f", "int4", "--shape", shape, "--samples", "1", "--json"]);
        r.expect_code(0);
        num(&rows_by_format(&r)["int4"], "bits_per_element")
    };

    for (row, name, x, shape) in [(&rows[0], "gauss", gauss, [64, 4096]), (&rows[1], "scaled", scaled, [32, 2048])] {
        assert_eq!(row["tensor"], name);
        assert_eq!(row["format"], "int4");
        assert_eq!(row["shape"], serde_json::json!(shape));
        assert_eq!(num(row, "elements"), x.len() as f64);
        assert_eq!(num(row, "bits_per_element"), bits_of(&format!("{}x{}", shape[0], shape[1])));
        let y = find(&outputs, name);
        let m = find(&masks, name);
        let n = x.len() as f64;
        let se: Vec<f64> = x.iter().zip(y).map(|(a, b)| (*b as f64 - *a as f64).powi(2)).collect();
        let mse = se.iter().sum::<f64>() / n;
        let ms = x.iter().map(|&a| a as f64 * a as f64).sum::<f64>() / n;
        let max_err = x.iter().zip(y).map(|(a, b)| (*b as f64 - *a as f64).abs()).fold(0.0, f64::max);
        let clipped = m.iter().filter(|&&v| v == 0.0).count() as f64 / n;
        let nonzero = x.iter().filter(|&&a| a != 0.0).count() as f64;
        let zeroed = x.iter().zip(y).filter(|(a, b)| **a != 0.0 && **b == 0.0).count() as f64 / nonzero;
        let close = |key: &str, want: f64| {
            let got = num(row, key);
            assert!((got - want).abs() <= 1e-6 * want.abs(), "{name}: {key} {got} vs recomputed {want}");
        };
        close("mse", mse);
        close("rel_mse", mse / ms);
        close("max_abs_err", max_err);
        assert_eq!(num(row, "clipped"), clipped, "{name}: clipped");
        assert_eq!(num(row, "zeroed"), zeroed, "{name}: zeroed");
        // SQNR is exactly -10 log10(rel MSE).
        let rel = num(row, "rel_mse");
        assert!((num(row, "sqnr_db") + 10.0 * rel.log10()).abs() < 1e-9, "{name}: sqnr_db");
        // The normalized MSE of a Gaussian tensor is int4's GMSE: within 3
        // standard errors (from the spread of the squared errors) + 0.5 %.
        let sd = (se.iter().map(|e| (e - mse).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let stderr = sd / n.sqrt() / ms;
        assert!(
            (rel - INT4_GMSE).abs() <= 3.0 * stderr + 0.005 * INT4_GMSE,
            "{name}: rel_mse {rel} vs GMSE {INT4_GMSE} (se {stderr:.1e})"
        );
        // The mask closes gradients on a row's largest magnitudes only.
        assert!(clipped > 0.0 && clipped < 0.05, "{name}: clipped {clipped}");
        for r in 0..shape[0] {
            let row = r * shape[1]..(r + 1) * shape[1];
            let open = row.clone().filter(|&i| m[i] != 0.0).map(|i| x[i].abs()).fold(0f32, f32::max);
            let shut = row.clone().filter(|&i| m[i] == 0.0).map(|i| x[i].abs()).fold(f32::INFINITY, f32::min);
            assert!(shut > open, "{name}: row {r}: a masked |x| {shut} is below an open one {open}");
        }
        assert_eq!(zeroed, 0.0, "int4's mid-rise grid has no zero level");
    }

    // The table: one row per tensor plus the total, and the same warnings.
    let text = host(&["apply", "plugins/int", "-f", "int4", "-i", arg(path)]);
    text.expect_code(2);
    three_warnings(&text);
    assert!(text.stdout.starts_with("# format `int4`"), "{}", text.stdout);
    for needle in ["gauss", "scaled", "(total)", "SQNR dB", "clipped", "zeroed"] {
        assert!(text.stdout.contains(needle), "`{needle}` missing:\n{}", text.stdout);
    }
}

#[test]
fn apply_one_tensor_to_npy_and_clear_errors() {
    shipped_plugins();
    let (path, gauss, _) = fixture();
    let out = work_dir().join("gauss-out.npy");
    let mask = work_dir().join("gauss-mask.npy");
    let run = host(&[
        "apply",
        "plugins/int",
        "-f",
        "int4",
        "-i",
        arg(path),
        "--tensor",
        "gauss",
        "-o",
        arg(&out),
        "--mask",
        arg(&mask),
        "--json",
    ]);
    run.expect_code(0);
    assert!(run.stderr_lines().is_empty(), "{}", run.stderr);
    let rows = run.json();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let y = read_all(&out);
    assert_eq!(y[0].0, "gauss-out");
    assert_eq!(y[0].1.len(), gauss.len());
    assert_eq!(read_all(&mask)[0].1.len(), gauss.len());

    // The same tensor as .npy input gives the same row.
    let npy = work_dir().join("gauss.npy");
    host::tensorio::write_npy(&npy, &[64, 4096], gauss).unwrap();
    let again = host(&["apply", "plugins/int", "-f", "int4", "-i", arg(&npy), "--json"]);
    again.expect_code(0);
    let (a, b) = (&rows[0], &again.json()[0]);
    assert_eq!(b["tensor"], "gauss");
    for key in ["mse", "rel_mse", "sqnr_db", "max_abs_err", "clipped", "zeroed", "bits_per_element"] {
        assert_eq!(a[key], b[key], "{key}");
    }

    // Unknown tensor, 1-D tensor alone, truncated file: exit 1, one line.
    let one_error = |args: &[&str], needles: &[&str]| {
        let r = host(args);
        r.expect_code(1);
        let lines = r.stderr_lines();
        let last = lines.last().unwrap_or_else(|| panic!("{}: no error line", r.cmd));
        assert!(last.starts_with("host: error: "), "{}: {}", r.cmd, r.stderr);
        for n in needles {
            assert!(r.stderr.contains(n), "{}: `{n}` missing from:\n{}", r.cmd, r.stderr);
        }
        lines.len()
    };
    let base = ["apply", "plugins/int", "-f", "int4", "-i", arg(path)];
    let args = |extra: &[&'static str]| base.iter().copied().chain(extra.iter().copied()).collect::<Vec<_>>();
    assert_eq!(one_error(&args(&["--tensor", "nope"]), &["no tensor `nope`", "`gauss`", "`scaled`"]), 1);
    assert_eq!(one_error(&args(&["--tensor", "bias"]), &["1-D shape [512]", "no usable tensor"]), 2);
    let bytes = std::fs::read(path).unwrap();
    let cut = work_dir().join("truncated.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = ["apply", "plugins/int", "-f", "int4", "-i", arg(&cut)];
    assert_eq!(one_error(&r, &["truncated.safetensors", "truncated or damaged"]), 1);
}

/// One `host rank plugins/ -f int4 --json` with `--dist` and extra options.
fn rank_int4(dist: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["rank", "plugins/int", "-f", "int4", "--json", "--dist", dist];
    args.extend(extra);
    let r = host(&args);
    r.expect_code(0);
    rows_by_format(&r).remove("int4").expect("int4 ranked")
}

#[test]
fn rank_on_other_distributions_and_on_file_tensors() {
    shipped_plugins();
    let fast = ["--shape", "64x4096", "--samples", "2097152"];
    let g = rank_int4("gaussian", &fast);
    let l = rank_int4("laplace", &fast);
    assert_eq!(g["dist"], "gaussian");
    assert_eq!(l["dist"], "laplace");
    let (gg, gs, lg, ls) = (num(&g, "gmse"), num(&g, "gmse_stderr"), num(&l, "gmse"), num(&l, "gmse_stderr"));
    // A grid tuned to the Gaussian clips Laplace's heavier tails: larger MSE.
    assert!(lg > gg + 3.0 * (gs + ls), "int4 on Laplace {lg} ± {ls} vs Gaussian {gg} ± {gs}");

    let e = host(&["rank", "plugins/int", "-f", "int4", "--dist", "student-t:2"]);
    e.expect_code(1);
    assert!(e.stderr.contains("more than 2 degrees of freedom"), "{}", e.stderr);

    // Real tensors: eight full passes over the file's two usable tensors (mean
    // size 163840 elements; 16 tensors, so no remark about few tensors) give the
    // mean of their normalized MSEs, which is what `host apply` reports per
    // tensor (int4 is scale-invariant).
    let (path, _, _) = fixture();
    let dist = format!("file:{}", path.display());
    let r = host(&["rank", "plugins/int", "-f", "int4", "--json", "--dist", &dist, "--samples", "2621440"]);
    r.expect_code(2);
    three_warnings(&r);
    let f = rows_by_format(&r).remove("int4").unwrap();
    assert_eq!(f["dist"], dist.as_str());
    assert_eq!(num(&f, "samples"), 8.0 * (64.0 * 4096.0 + 32.0 * 2048.0));
    assert_eq!(num(&f, "tensors"), 16.0);
    // Two passes: four tensors, and one remark (not a failure) saying so.
    let r = host(&["rank", "plugins/int", "-f", "int4", "--json", "--dist", &dist, "--samples", "655360"]);
    r.expect_code(2);
    let remark = r.stderr_lines().into_iter().filter(|l| l.contains("fewer than 16 tensors")).collect::<Vec<_>>();
    assert_eq!(remark.len(), 1, "{}", r.stderr);
    assert!(remark[0].contains("int4 (4)") && remark[0].contains("--samples 2621440"), "{}", remark[0]);
    assert_eq!(r.stderr_lines().len(), 4, "{}", r.stderr);
    let a = host(&["apply", "plugins/int", "-f", "int4", "-i", arg(path), "--json"]).json();
    let mean = (num(&a[0], "rel_mse") + num(&a[1], "rel_mse")) / 2.0;
    let gmse = num(&f, "gmse");
    assert!((gmse - mean).abs() < 1e-4 * mean, "file GMSE {gmse} vs mean apply rel_mse {mean}");
}

/// A raw cast with `overflow = "ml_dtypes"` gives NaN beyond E4M3's range, as
/// ml_dtypes does: `host apply` writes those outputs as they are, counts them
/// (`nonfinite`), and computes the error columns over the finite outputs.
#[test]
fn apply_writes_and_counts_the_nan_of_ml_dtypes_overflow() {
    shipped_plugins();
    let input = work_dir().join("overflow.npy");
    let output = work_dir().join("overflow-out.npy");
    // float8_e4m3fn: 500 and -470 are beyond 464 (NaN); 463.9 rounds to 448;
    // 0.1 to 0.1015625 (13/128); the rest are representable.
    let x = [1.0f32, 500.0, -470.0, 0.1, 463.9, -2.0, 0.75, 3.0];
    let want = [1.0f32, f32::NAN, f32::NAN, 0.1015625, 448.0, -2.0, 0.75, 3.0];
    host::tensorio::write_npy(&input, &[2, 4], &x).unwrap();
    let spec = "raw:dtype=e4m3,overflow=ml_dtypes";
    let run = host(&["apply", "plugins/fp", "-f", spec, "-i", arg(&input), "-o", arg(&output), "--json"]);
    run.expect_code(0);
    assert!(run.stderr_lines().is_empty(), "{}", run.stderr);
    let row = &run.json()[0];
    assert_eq!(row["nonfinite"], 2, "{row}");
    let y = &read_all(&output)[0].1;
    assert_eq!(y.len(), 8);
    for (i, (a, b)) in y.iter().zip(&want).enumerate() {
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "element {i}: {a} vs {b}");
    }
    // Error columns over the six finite outputs.
    let fin: Vec<(f64, f64)> =
        x.iter().zip(&want).filter(|(_, w)| w.is_finite()).map(|(&a, &b)| (a as f64, b as f64)).collect();
    let mse = fin.iter().map(|(a, b)| (b - a).powi(2)).sum::<f64>() / 6.0;
    let ms = fin.iter().map(|(a, _)| a * a).sum::<f64>() / 6.0;
    let close = |key: &str, v: f64| {
        let got = num(row, key);
        assert!((got - v).abs() <= 1e-6 * v.abs(), "{key}: {got} vs {v}");
    };
    close("mse", mse);
    close("rel_mse", mse / ms);
    close("sqnr_db", -10.0 * (mse / ms).log10());
    close("max_abs_err", (463.9f32 as f64 - 448.0).abs());
    // The table shows the column and says what the error columns cover.
    let text = host(&["apply", "plugins/fp", "-f", spec, "-i", arg(&input)]);
    text.expect_code(0);
    assert!(text.stdout.contains("non-finite"), "{}", text.stdout);
    assert!(text.stdout.contains("2 of 8 elements") && text.stdout.contains("over the finite outputs only"));
    // Saturating (the default) gives no non-finite output, and no column.
    let sat = host(&["apply", "plugins/fp", "-f", "raw:dtype=e4m3", "-i", arg(&input), "--json"]);
    sat.expect_code(0);
    assert_eq!(sat.json()[0]["nonfinite"], 0);
    let sat = host(&["apply", "plugins/fp", "-f", "raw:dtype=e4m3", "-i", arg(&input)]);
    assert!(!sat.stdout.contains("non-finite"), "{}", sat.stdout);
}
