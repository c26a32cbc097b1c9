//! `host report` end to end: a tiny GMSE-only sweep, then its Markdown report with the
//! per-distribution charts; and the error for a folder that was never collected.

mod support;

use std::path::{Path, PathBuf};

use host::rankplot;
use host::report::sig;
use serde_json::Value;
use support::{arg, host, shipped_plugins};

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    support::scratch("test-report", name)
}

/// The GMSE rows of `dir/results.jsonl`.
fn gmse_rows(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["type"] == "gmse")
        .collect()
}

#[test]
fn sweep_then_report() {
    shipped_plugins();
    let d = scratch("all");
    let exp = d.join("exp.toml");
    // 2^20 samples = 16 tensors of 64x1024 per measurement: a relative standard error near
    // 0.3 %, so the GMSE checks below hold with a 4 % tolerance.
    std::fs::write(
        &exp,
        r#"name = "tiny"
plugins = ["plugins"]
[gmse]
distributions = ["gaussian"]
shape = "64x1024"
samples = 1048576
seed = 5
[[formats]]
preset = ["int4", "e2m1", "int2"]
[report]
title = "Tiny report"
"#,
    )
    .unwrap();
    host(&["sweep", "all", arg(&exp), "--jobs", "2"]).expect_code(0);
    let res = d.join("exp.results");
    let rows = gmse_rows(&res);
    assert_eq!(rows.len(), 3);

    // Default output folder: RESULTS_DIR/report.
    let r = host(&["report", arg(&res)]);
    r.expect_code(0);
    let out = res.join("report");
    assert!(r.stderr.contains("report.md"), "{}", r.stderr);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.starts_with("# Tiny report\n"), "{md}");

    // Every measured format has its table row with the measured bits and GMSE; the GMSE are
    // those of the known quantizers (absmax int4 ~0.0116, e2m1 ~0.0127, int2 ~0.119).
    let known = [("int4", 0.0116), ("e2m1", 0.0127), ("int2", 0.119)];
    for (f, want) in known {
        let row = rows.iter().find(|r| r["format"] == f).unwrap_or_else(|| panic!("no {f} in {rows:?}"));
        let (bits, gmse) = (row["bits"].as_f64().unwrap(), row["gmse"].as_f64().unwrap());
        assert!((gmse / want - 1.0).abs() < 0.04, "{f}: GMSE {gmse}, expected about {want}");
        let line = md.lines().find(|l| l.contains(&format!("| `{f}` |"))).unwrap_or_else(|| panic!("{f}: {md}"));
        assert!(line.contains(&format!("| scalar | {bits:.3} | {} ± ", sig(gmse, 4))), "{line}");
    }
    // int4 ranks first (least error), int2 last; int4 and int2 are on the Pareto front, e2m1
    // (same bits as int4, more error) is not.
    let table: Vec<&str> = md.lines().filter(|l| l.starts_with("| ") && l.contains('`')).collect();
    assert_eq!(table.len(), 3, "{md}");
    assert!(table[0].starts_with("| 1 | `int4` |") && table[0].ends_with("| yes |"), "{table:?}");
    assert!(table[1].starts_with("| 2 | `e2m1` |") && table[1].ends_with("|  |"), "{table:?}");
    assert!(table[2].starts_with("| 3 | `int2` |") && table[2].ends_with("| yes |"), "{table:?}");

    // No training and no fit: sentences, not errors, and no fit plots.
    assert!(md.contains("No training runs in this sweep."), "{md}");
    assert!(md.contains("No fit.json in the results folder"), "{md}");
    assert!(!out.join("plots/rho-vs-gmse.svg").exists());

    // The chart: linked relatively, well-formed, with its axes and references.
    assert!(md.contains("](plots/gmse-vs-bits-gaussian.svg)"), "{md}");
    let svg = std::fs::read_to_string(out.join("plots/gmse-vs-bits-gaussian.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let texts: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .map(|t| t.split_once('>').unwrap().1.split("</text>").next().unwrap().trim())
        .collect();
    for want in [rankplot::X_LABEL, rankplot::Y_LABEL, rankplot::PARETO, rankplot::LLOYD_MAX, rankplot::SHANNON] {
        assert!(texts.contains(&want), "{want:?} not in {texts:?}");
    }
    for f in ["int4", "e2m1", "int2", "GMSE vs bits per element, gaussian (3 formats)"] {
        assert!(texts.contains(&f), "{f:?} not in {texts:?}");
    }

    // --out elsewhere.
    let other = d.join("elsewhere");
    host(&["report", arg(&res), "--out", arg(&other)]).expect_code(0);
    assert_eq!(std::fs::read_to_string(other.join("report.md")).unwrap(), md);
    assert!(other.join("plots/gmse-vs-bits-gaussian.svg").is_file());
}

#[test]
fn uncollected_folder_is_an_error() {
    let d = scratch("empty");
    let r = host(&["report", arg(&d)]);
    r.expect_code(1);
    assert_eq!(
        r.stderr_lines(),
        [format!("host: error: {}: no results.jsonl; run `host sweep collect EXP.toml` first", d.display())]
    );
    assert!(!d.join("report").exists());
}
