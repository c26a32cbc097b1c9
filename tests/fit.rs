//! `host fit` end to end: formats given as SPECs are measured through the
//! plugins, the fitted law is written and `host rank --law` ranks with its
//! intervals.

mod support;

use support::{arg, host, num, rows_by_format, shipped_plugins, target_dir};

/// Exact GMSE of the QuEST (RMS-optimal uniform) grids, DESIGN.md 2.6.
const GRIDS: [(&str, f64); 4] =
    [("int2", 0.11884605), ("int3", 0.03743966), ("int4", 0.011542885), ("int8", 8.768619e-5)];

#[test]
fn specs_are_measured_and_the_law_file_feeds_rank() {
    shipped_plugins();
    let dir = target_dir().join("test-fit");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Losses generated from the default law (A 15.44, alpha 0.13, B 355.5, beta 0.33, E 1.3,
    // L 1, F 0.41, C 1.39) at the exact GMSE, times a deterministic +-0.2 % wobble standing in for
    // run-to-run noise; the fit only sees the SPECs.
    let mut k = 0u32;
    let mut noise = || {
        k += 1;
        1.0 + 0.002 * (f64::from(k) * 2.399).sin()
    };
    let law = |n: f64, d: f64, g: Option<f64>| {
        let rho = g.map_or(1.0, |g: f64| (0.41 * (-g.ln() / 4f64.ln())).tanh().powf(1.39));
        15.44 * (n * rho).powf(-0.13) + 355.5 * d.powf(-0.33) + 1.3
    };
    let mut csv = String::from("model_n,tokens,loss,fmt\n");
    for n in [3e7, 1e8, 3e8, 1e9] {
        for tpp in [20.0, 80.0] {
            csv += &format!("{n},{},{},none\n", n * tpp, law(n, n * tpp, None) * noise());
            for (spec, g) in GRIDS {
                csv += &format!("{n},{},{},{spec}\n", n * tpp, law(n, n * tpp, Some(g)) * noise());
            }
        }
    }
    let path = dir.join("runs.csv");
    std::fs::write(&path, csv).unwrap();
    let law_file = dir.join("fitted.toml");
    let r = host(&[
        "fit",
        arg(&path),
        "--map",
        "n=model_n,w_format=fmt",
        "--fix",
        "alpha=0.13,beta=0.33,E=1.3,L=1",
        "--bootstrap",
        "100",
        "--json",
        "--write-law",
        arg(&law_file),
    ]);
    r.expect_code(0);
    assert!(r.stderr.contains("measuring GMSE of 4 formats"), "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["runs"], 40);
    // The fit recovers the law it was generated from: the true F and C lie in the 95 % bootstrap
    // intervals (the GMSE, measured to 0.1 % relative standard error, moves them far less).
    for (name, truth) in [("F", 0.41), ("C", 1.39)] {
        let p = &j["params"][name];
        let (lo, hi) = (p["ci95"][0].as_f64().unwrap(), p["ci95"][1].as_f64().unwrap());
        assert!(lo <= truth && truth <= hi, "{name}: {truth} outside [{lo}, {hi}] ({})", p["value"]);
    }
    assert!(num(&j, "rmse") < 0.01, "{j}");

    let r = host(&["rank", "plugins/", "-f", "int4", "-f", "int2", "--json", "--law", arg(&law_file)]);
    r.expect_code(0);
    let rows = rows_by_format(&r);
    for spec in ["int4", "int2"] {
        let row = &rows[spec];
        let ci = row["rho_law_ci95"].as_array().unwrap_or_else(|| panic!("no law interval in {row}"));
        let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
        let rho = num(row, "rho");
        assert!(lo <= rho && rho <= hi && lo < hi, "{spec}: rho {rho} outside its law interval [{lo}, {hi}]");
    }
}

/// Records without `matmul` (every record written before it existed, and CPU records now) and
/// CUDA records that name it are read together: the key changes nothing of the fit, and
/// `--where` selects by it, an old record's empty cell included.
#[test]
fn records_with_and_without_the_matmul_key_are_read_together() {
    let dir = target_dir().join("test-fit-matmul");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The default law at the exact GMSE, with a deterministic +-0.2 % wobble (as above).
    let law = |n: f64, d: f64, g: Option<f64>| {
        let rho = g.map_or(1.0, |g: f64| (0.41 * (-g.ln() / 4f64.ln())).tanh().powf(1.39));
        15.44 * (n * rho).powf(-0.13) + 355.5 * d.powf(-0.33) + 1.3
    };
    let (mut plain, mut mixed) = (String::new(), String::new());
    let mut k = 0u32;
    for n in [3e7, 1e8, 3e8, 1e9] {
        for tpp in [20.0, 80.0] {
            for g in std::iter::once(None).chain(GRIDS.iter().map(|x| Some(x.1))) {
                k += 1;
                let loss = law(n, n * tpp, g) * (1.0 + 0.002 * (f64::from(k) * 2.399).sin());
                let rec = serde_json::json!({"device": "cpu", "non_embedding_params": n, "tokens": n * tpp,
                    "val_loss": loss, "w_gmse": g, "w_family": g.map(|_| "scalar")});
                plain += &format!("{rec}\n");
                let mut rec = rec;
                if k.is_multiple_of(2) {
                    rec["device"] = "cuda".into();
                    rec["matmul"] = "tf32".into();
                }
                mixed += &format!("{rec}\n");
            }
        }
    }
    let fit = |name: &str, text: &str, filter: Option<&str>| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let mut a = vec!["fit", arg(&path), "--fix", "alpha=0.13,beta=0.33,E=1.3,L=1", "--bootstrap", "20", "--json"];
        if let Some(f) = filter {
            a.extend(["--where", f]);
        }
        let r = host(&a);
        r.expect_code(0);
        r.json()
    };
    let (p, m) = (fit("plain.jsonl", &plain, None), fit("mixed.jsonl", &mixed, None));
    assert_eq!((p["runs"].as_u64(), m["runs"].as_u64()), (Some(40), Some(40)));
    assert_eq!(m["params"], p["params"]);
    assert_eq!(fit("mixed.jsonl", &mixed, Some("matmul=tf32"))["runs"], 20);
    assert_eq!(fit("mixed.jsonl", &mixed, Some("matmul=|fp32"))["runs"], 20);
}
