//! `host validate` end to end: a sweep results folder written here with runs generated from the
//! default law without its data term (every run has 50 tokens per parameter, so the default fit
//! drops it) plus a little seeded noise (3 sizes x 8 configurations x 3 seeds: uncompressed,
//! INT2/3/4, 50 % sparsity, its composition with INT4, a noise format and a W4A4 pair), then the
//! JSON report's fields and known values; the same rows as CSV; thread-count independence; the
//! exit codes 2 (some sections missing) and 1 (no training rows).

mod support;

use std::path::PathBuf;

use host::law::Law;
use serde_json::{Value, json};
use support::{arg, host};

/// Relative SD of the multiplicative Gaussian noise on every loss (0.1 %).
const NOISE: f64 = 1e-3;

/// (weight format, weight GMSE, family; activation GMSE) of each configuration. GMSE: the exact
/// QuEST grids (DESIGN.md 2.6), magnitude sparsity 50 % (DESIGN.md 3); the composition's is made
/// up (only its record matters here).
const CONFIGS: [(&str, f64, &str, Option<f64>); 8] = [
    ("none", 0.0, "", None),
    ("int2", 0.11885, "scalar", None),
    ("int3", 0.037440, "scalar", None),
    ("int4", 0.011543, "scalar", None),
    ("sparse50", 0.071326, "sparse", None),
    ("sparse50+int4", 0.0775, "sparse", None),
    ("noise:mse=0.0115", 0.0115, "scalar", None),
    ("int4", 0.011543, "scalar", Some(0.011543)),
];

const SIZES: [(&str, f64); 3] = [("m30", 3e7), ("m100", 1e8), ("m300", 3e8)];

/// SplitMix64 -> standard normal (Box-Muller), seeded.
struct Gauss(u64);

impl Gauss {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (1.0 - self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The generating law: the default law with B = 0 (D is proportional to N in these runs; the
/// default fit drops the data term, which it could not tell from the parameter term).
fn law() -> Law {
    Law { b: 0.0, ..Law::default_law() }
}

/// The generating rho of a configuration: the default law's curve of its family, and the product
/// rule (DESIGN.md 2.3) for the composition (sparse50 x int4) and the W4A4 pair.
fn rho(law: &Law, i: usize) -> f64 {
    let (f, g, fam, act) = CONFIGS[i];
    let w = match f {
        "none" => 1.0,
        "sparse50+int4" => law.rho("sparse", 0.071326) * law.rho("scalar", 0.011543),
        _ => law.rho(fam, g),
    };
    w * act.map_or(1.0, |a| law.rho("scalar", a))
}

/// The rows of `results.jsonl` as `host sweep collect` writes them (plus a GMSE row, ignored).
fn rows() -> Vec<Value> {
    let law = law();
    let mut rng = Gauss(42);
    let mut out = vec![json!({"index": 0, "type": "gmse", "format": "int4", "gmse": 0.011543})];
    for (model, n) in SIZES {
        for (i, &(f, g, fam, act)) in CONFIGS.iter().enumerate() {
            for seed in 0..3 {
                let loss = law.loss(n, 50.0 * n, rho(&law, i)) * (1.0 + NOISE * rng.normal());
                let comp = f != "none";
                out.push(json!({
                    "index": out.len(), "type": "train", "model": model, "format": f,
                    "act_format": if act.is_some() { "int4" } else { "none" },
                    "seed": seed, "data": "synthetic test data", "tokens_per_param": 50,
                    "non_embedding_params": n, "tokens": 50.0 * n, "val_loss": loss,
                    "w_gmse": if comp { json!(g) } else { Value::Null },
                    "w_family": if comp { json!(fam) } else { Value::Null },
                    "w_rho": if comp { json!(rho(&law, i) / act.map_or(1.0, |a| law.rho("scalar", a))) } else { Value::Null },
                    "a_gmse": act, "a_family": act.map(|_| "scalar"), "a_rho": act.map(|a| law.rho("scalar", a)),
                }));
            }
        }
    }
    out
}

fn scratch(name: &str) -> PathBuf {
    support::scratch("test-validate", name)
}

fn write_jsonl(path: &std::path::Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// The same rows as CSV (the union of the keys as columns, null = empty cell).
fn write_csv(path: &std::path::Path, rows: &[Value]) {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for k in r.as_object().unwrap().keys() {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    let cell = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) if s.contains(',') || s.contains('"') => format!("\"{}\"", s.replace('"', "\"\"")),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let mut text = cols.join(",") + "\n";
    for r in rows {
        text += &cols.iter().map(|c| cell(&r[c.as_str()])).collect::<Vec<_>>().join(",");
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[track_caller]
fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn validate_a_results_folder() {
    let dir = scratch("folder");
    let rows = rows();
    write_jsonl(&dir.join("results.jsonl"), &rows);
    let plots = dir.join("plots");
    let r = host(&["validate", arg(&dir), "--json", "--bootstrap", "200", "--threads", "1", "--plot", arg(&plots)]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!((j["runs"].as_u64(), j["rows_read"].as_u64()), (Some(72), Some(73)));
    assert_eq!(j["seeds_per_config"], json!([3, 3]));
    assert_eq!(j["rho_source"], "the records' w_rho x a_rho");
    for s in ["a_correlations", "b_law", "c_held_out", "d_factorization", "e_noise"] {
        assert_eq!(j["sections"][s], "ok", "{s}: {}", j["sections"]);
    }
    assert_eq!(j["sizes"].as_array().unwrap().len(), 3);
    assert_eq!(j["configs"].as_array().unwrap().len(), 24);
    // Pooled seed SD: each size's 8 configurations x 2 dof. The noise is 0.1 % of losses of
    // 2.7-3.5: the SD estimate from 16 dof lies within +-50 % of it with probability > 0.999.
    for s in j["sizes"].as_array().unwrap() {
        assert_eq!(s["seed_sd_dof"], 16);
        let rel = f(&s["seed_sd"]) / (NOISE * 3.0);
        assert!((0.5..1.5).contains(&rel), "{s}");
    }

    // a. INT2/3/4 differ by 1-3 % in loss at every size, 10-30 noise SDs: the GMSE order is exact,
    // in every bootstrap resample too.
    for c in j["correlations"].as_array().unwrap() {
        let g = &c["gmse_vs_loss"];
        assert_eq!(g["configs"], 3, "{c}");
        for k in ["spearman", "kendall_tau_b"] {
            assert_eq!(g[k]["value"], 1.0, "{c}");
            assert_eq!(g[k]["ci95"], json!([1.0, 1.0]), "{c}");
        }
        assert_eq!(c["order_breaks"], json!([]));
        // rho over all 8: only INT4 / noise (rho 0.8196 / 0.8203) and INT3 / W4A4 (0.6696 /
        // 0.6718) are close enough for the noise to swap; each adjacent swap lowers |Spearman|
        // by 6 * 2 / (8 * 63) = 0.024.
        let rs = f(&c["rho_vs_loss"]["spearman"]["value"]);
        assert!(rs <= -1.0 + 2.0 * 0.024 + 1e-12, "{c}");
        assert_eq!(c["rho_vs_loss"]["configs"], 8);
        assert_eq!(c["resamples"], 200);
    }

    // b. The law refit: the data term dropped by default (every run has 50 tokens per parameter;
    // B = 0, beta inert), L[sparse] and C[sparse] fixed (two sparse GMSE values: F alone is
    // fitted); the other laws beside it.
    let set = &j["law_fit"]["settings"];
    assert_eq!(set["fix_source"], "default");
    assert_eq!(set["fix"], "B=0,beta=0.33,L[sparse]=1,C[sparse]=0.857");
    let rep = &j["law_fit"]["report"];
    assert_eq!(rep["law"], "unified");
    assert_eq!(rep["runs"], 72);
    assert_eq!(rep["params"]["beta"]["fixed"], true);
    assert_eq!((&rep["params"]["B"]["fixed"], f(&rep["params"]["B"]["value"])), (&json!(true), 0.0));
    assert_eq!(rep["params"]["F[scalar]"]["fixed"], false);
    assert!(rep["params"]["F[scalar]"]["ci95"].is_array());
    assert!(rep.get("residuals").is_none());
    let laws: Vec<&str> = rep["comparison"].as_array().unwrap().iter().map(|r| r["law"].as_str().unwrap()).collect();
    assert!(laws.contains(&"decoupled") && laws.contains(&"chinchilla"), "{laws:?}");
    // The scalar curve comes back: F and C of the generating law (0.41, 1.39) lie in the 95 %
    // intervals.
    for (p, truth) in [("F[scalar]", 0.41), ("C[scalar]", 1.39)] {
        let ci = &rep["params"][p]["ci95"];
        assert!(f(&ci[0]) <= truth && truth <= f(&ci[1]), "{p}: {}", rep["params"][p]);
    }

    // c. Held out: 7 formats (the uncompressed runs stay in), 3 sizes each; errors in seed SDs.
    let h = &j["held_out"];
    assert_eq!(h["start"], "section b's optimum");
    let formats = h["formats"].as_array().unwrap();
    assert_eq!(formats.len(), 7);
    for fm in formats {
        assert_eq!(fm["error"], Value::Null, "{fm}");
        assert_eq!(fm["fitted_on_runs"], 63, "{fm}");
        for p in fm["predictions"].as_array().unwrap() {
            let (e, sd) = (f(&p["error"]), f(&p["error_sd"]));
            assert!((f(&p["predicted"]) - f(&p["observed"]) - e).abs() < 1e-12);
            // The unit is the size's pooled seed SD.
            let size = j["sizes"].as_array().unwrap().iter().find(|s| s["size"] == p["size"]).unwrap();
            assert!((e / f(&size["seed_sd"]) - sd).abs() < 1e-9);
        }
    }
    // INT3 lies between INT4 and INT2 on the scalar curve: interpolated from the law fitted
    // without it, its loss comes back within 3 seed SDs at every size (the noise of 3 seeds'
    // mean and of the refit is about 1 SD).
    let int3 = formats.iter().find(|x| x["config"] == "int3").unwrap();
    for p in int3["predictions"].as_array().unwrap() {
        assert!(f(&p["error_sd"]).abs() < 3.0, "{p}");
    }
    let classes: Vec<&str> = h["per_class"].as_array().unwrap().iter().map(|c| c["class"].as_str().unwrap()).collect();
    assert_eq!(classes, ["scalar", "sparse", "other", "W+A"]);
    for c in h["per_class"].as_array().unwrap() {
        let (k, n) = (c["predictions_within_2sd"].as_u64().unwrap(), c["predictions"].as_u64().unwrap());
        assert!(k <= n && n == 3 * c["formats"].as_u64().unwrap(), "{c}");
        assert_eq!(c["formats_with_sd"], c["predicted"], "{c}");
        assert!((f(&c["fraction_predictions_within_2sd"]) - k as f64 / n as f64).abs() < 1e-12);
    }

    // d. Both combined configurations were generated with the product rule: implied / product
    // = 1 within the spread of 9 runs per configuration (0.1 % loss noise moves an implied rho by
    // ~1 %; bound 5 %).
    let checks = j["factorization"]["checks"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> =
        checks.iter().map(|c| (c["config"].as_str().unwrap(), c["kind"].as_str().unwrap())).collect();
    assert_eq!(kinds, [("W:int4 A:int4", "W+A"), ("W:sparse50+int4", "A+B")]);
    for c in checks {
        assert!((f(&c["ratio"]["value"]) - 1.0).abs() < 0.05, "{c}");
        assert!(c["ratio"]["ci95"].is_array(), "{c}");
        let parts: Vec<&str> = c["parts"].as_array().unwrap().iter().map(|p| p["config"].as_str().unwrap()).collect();
        assert!(parts.iter().all(|p| *p == "W:int4" || *p == "W:sparse50"), "{parts:?}");
    }

    // e. The noise format (GMSE 0.0115) pairs with INT4 (0.011543) at each size; the law gives them
    // equal loss to 1e-5, so the difference is seed noise: within 4 SE.
    let noise = j["noise_vs_quantizer"].as_array().unwrap();
    assert_eq!(noise.len(), 3);
    for p in noise {
        assert_eq!((p["noise"].as_str(), p["quantizer"].as_str()), (Some("noise:mse=0.0115"), Some("int4")));
        assert_eq!(p["gmse"], json!([0.0115, 0.011543]));
        assert!(f(&p["z"]).abs() < 4.0, "{p}");
        let d = f(&p["mean_loss"][0]) - f(&p["mean_loss"][1]);
        assert!((d - f(&p["loss_diff"])).abs() < 1e-12);
    }

    for name in ["loss-vs-gmse.svg", "loss-vs-gmse-m30.svg", "loss-vs-gmse-m300.svg", "held-out.svg"] {
        let svg = std::fs::read_to_string(plots.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{name}");
    }
    let m30 = std::fs::read_to_string(plots.join("loss-vs-gmse-m30.svg")).unwrap();
    assert!(m30.contains("sparse50+int4") && m30.contains("uncompressed"));

    // Two threads: the same JSON, byte for byte.
    let r2 = host(&["validate", arg(&dir), "--json", "--bootstrap", "200", "--threads", "2"]);
    r2.expect_code(0);
    assert_eq!(r.stdout, r2.stdout, "results depend on the thread count");

    // The same rows as a CSV file: the same numbers, bit for bit (JSON floats are parsed
    // correctly rounded, serde_json's `float_roundtrip`, like the CSV reader's).
    let csv = dir.join("results.csv");
    write_csv(&csv, &rows);
    let r3 = host(&["validate", arg(&csv), "--json", "--bootstrap", "200", "--threads", "1"]);
    r3.expect_code(0);
    let k = r3.json();
    for key in ["correlations", "law_fit", "held_out", "noise_vs_quantizer", "factorization", "configs", "sizes"] {
        assert_eq!(j[key], k[key], "{key} differs between JSON lines and CSV");
    }
}

#[test]
fn missing_sections_exit_2_and_no_training_rows_exit_1() {
    let dir = scratch("partial");
    let path = dir.join("runs.jsonl");
    write_jsonl(&path, &rows());
    // Weight-only quantizers: no pair, no composition, no noise.
    let r = host(&[
        "validate",
        arg(&path),
        "--where",
        "format=none|int2|int3|int4",
        "--where",
        "act_format=none",
        "--bootstrap",
        "50",
    ]);
    r.expect_code(2);
    assert!(r.stdout.contains("a. GMSE and rho") && r.stdout.contains("c. held-out"), "{}", r.stdout);
    assert!(r.stderr.contains("section d (factorization) not computed: no W+A pairs"), "stderr:\n{}", r.stderr);
    assert!(r.stderr.contains("section e (noise) not computed: no noise-injection runs"), "stderr:\n{}", r.stderr);

    let gmse_only = dir.join("gmse.jsonl");
    write_jsonl(&gmse_only, &rows()[..1]);
    let r = host(&["validate", arg(&gmse_only)]);
    r.expect_code(1);
    assert!(r.stderr.contains("no training rows"), "{}", r.stderr);
    let r = host(&["validate", arg(&dir.join("nowhere"))]);
    r.expect_code(1);
    assert!(r.stderr.contains("no such file or folder"), "{}", r.stderr);
    let r = host(&["validate", arg(&dir)]);
    r.expect_code(1);
    assert!(r.stderr.contains("no results.jsonl here"), "{}", r.stderr);
}
