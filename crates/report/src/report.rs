//! `host report RESULTS_DIR`: a Markdown report of a `host sweep` results folder.
//!
//! Writes `OUT/report.md` (default `OUT` = `RESULTS_DIR/report`) and the SVG charts it links
//! to (relative links under `OUT/plots/`): per distribution, GMSE against bits per element
//! ([`rankplot::rank_chart`]: the formats, the Pareto front, Lloyd-Max and the Shannon bound);
//! rho against GMSE with the fitted law and loss against N per format (copied from the
//! results folder's `plots/` when the sweep fitted a law). Then the tables: the ranking per
//! distribution, the fit (parameters with 68/95 % intervals, RMSE, the law comparison,
//! warnings) and the training runs. Missing parts are skipped with a sentence.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use crate::rankplot;
use host_core::engine::Measurement;
use host_core::law::Law;
use host_core::rank::{self, By, Entry, Row};
use host_plot::render_svg;

/// The fit's charts copied from the results folder's `plots/`, with their captions.
pub const FIT_PLOTS: [(&str, &str); 2] = [
    ("rho-vs-gmse.svg", "Capacity rho against GMSE, with the fitted law and its band"),
    ("loss-vs-n.svg", "Loss against non-embedding parameters N, per format"),
];

/// `host report`.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Results folder written by `host sweep` (with results.jsonl).
    pub results: PathBuf,
    /// Output folder for report.md and its plots (default: RESULTS_DIR/report).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Runs `host report`.
pub fn run(a: &ReportArgs, _verbose: bool) -> Result<(), String> {
    let out = a.out.clone().unwrap_or_else(|| a.results.join("report"));
    let md = write(&a.results, &out)?;
    eprintln!("host: report: wrote {}", md.display());
    Ok(())
}

/// Reads `results/results.jsonl`: one JSON object per non-empty line.
pub fn read_rows(results: &Path) -> Result<Vec<Value>, String> {
    let path = results.join("results.jsonl");
    if !path.is_file() {
        return Err(format!("{}: no results.jsonl; run `host sweep collect EXP.toml` first", results.display()));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| {
            format!("{} line {}: {e}; rerun `host sweep collect EXP.toml` to rewrite it", path.display(), i + 1)
        })?;
        rows.push(v);
    }
    Ok(rows)
}

/// The ranked GMSE rows per distribution, distributions in order of first appearance. Rows
/// without a finite `bits` or `gmse` are left out. Ranked by capacity with the default law.
pub fn ranked_by_distribution(rows: &[Value]) -> Vec<(String, Vec<Row>)> {
    let mut groups: Vec<(String, Vec<Entry>)> = Vec::new();
    for r in rows.iter().filter(|r| r["type"] == "gmse") {
        let (Some(bits), Some(gmse)) = (r["bits"].as_f64(), r["gmse"].as_f64()) else { continue };
        if !bits.is_finite() || !gmse.is_finite() {
            continue;
        }
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let dist = r["distribution"].as_str().unwrap_or("unknown").to_string();
        let e = Entry {
            format: s("format"),
            plugin: s("plugin"),
            kind: s("kind"),
            family: if r["family"].is_string() { s("family") } else { "scalar".into() },
            label: r["label"].as_str().map(str::to_string),
            bits,
            bits_parts: vec![],
            parts: vec![],
            m: Measurement {
                gmse,
                stderr: r["stderr"].as_f64().unwrap_or(f64::INFINITY),
                per_tensor: vec![],
                samples: r["samples"].as_u64().unwrap_or(0),
                reached_target: r["reached_target"].as_bool().unwrap_or(true),
            },
        };
        match groups.iter_mut().find(|(d, _)| *d == dist) {
            Some((_, v)) => v.push(e),
            None => groups.push((dist, vec![e])),
        }
    }
    let law = Law::default_law();
    groups.into_iter().map(|(d, e)| (d, rank::rank(e, &law, By::Rho, None))).collect()
}

/// A file-name-safe form of a distribution name (ASCII letters, digits, `-`; others `_`).
pub fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// `x` with `n` significant digits (plain notation for 1e-4 <= |x| < 1e6, else scientific).
pub fn sig(x: f64, n: usize) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let e = x.abs().log10().floor() as i32;
    if (-4..6).contains(&e) {
        format!("{:.*}", (n as i32 - 1 - e).max(0) as usize, x)
    } else {
        format!("{:.*e}", n.saturating_sub(1), x)
    }
}

/// A Markdown table cell: `|` escaped, newlines flattened.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A code span for a table cell.
fn code(s: &str) -> String {
    format!("`{}`", cell(s))
}

/// The report's title: `[report] title` of the manifest, else its name, else the folder's name.
fn title(results: &Path) -> String {
    let m: Option<Value> =
        std::fs::read_to_string(results.join("manifest.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let from = |k: &Value| k.as_str().filter(|s| !s.trim().is_empty()).map(str::to_string);
    m.as_ref()
        .and_then(|m| from(&m["report"]["title"]).or_else(|| from(&m["name"])))
        .or_else(|| results.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "sweep".into())
}

/// Writes `out/report.md` and `out/plots/*.svg` for the results folder `results`; returns the
/// path of `report.md`.
pub fn write(results: &Path, out: &Path) -> Result<PathBuf, String> {
    let rows = read_rows(results)?;
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| {
        format!("--out {}: cannot create {}: {e}; check that it is writable", out.display(), plots.display())
    })?;
    let save = |name: &str, bytes: &[u8]| {
        let p = plots.join(name);
        std::fs::write(&p, bytes).map_err(|e| format!("--out: cannot write {}: {e}", p.display()))
    };
    let ranked = ranked_by_distribution(&rows);
    let mut md = format!("# {}\n\nReport of the sweep results in `{}`.\n\n", title(results), results.display());

    // Plots.
    md += "## GMSE against bits per element\n\n";
    if ranked.is_empty() {
        md += "No GMSE measurements in this sweep.\n\n";
    }
    for (dist, r) in &ranked {
        let name = format!("gmse-vs-bits-{}.svg", slug(dist));
        let t = format!("GMSE vs bits per element, {dist} ({} format{})", r.len(), if r.len() == 1 { "" } else { "s" });
        let svg = render_svg(&rankplot::rank_chart(r, &t), rankplot::SIZE.0, rankplot::SIZE.1)
            .map_err(|e| format!("plot {name}: {e}"))?;
        save(&name, svg.as_bytes())?;
        let _ = writeln!(md, "![{t}](plots/{name})\n");
    }
    md += &fit_title("Fitted law", results);
    for (name, caption) in FIT_PLOTS {
        let src = results.join("plots").join(name);
        match std::fs::read(&src) {
            Ok(bytes) => {
                save(name, &bytes)?;
                let _ = writeln!(md, "![{caption}](plots/{name})\n");
            }
            Err(_) => {
                let _ = writeln!(md, "No `plots/{name}` in the results folder (the sweep fitted no law): skipped.\n");
            }
        }
    }

    // Tables.
    md += "## Ranking per distribution\n\n";
    if ranked.is_empty() {
        md += "No GMSE measurements in this sweep.\n\n";
    }
    for (dist, r) in &ranked {
        let _ = writeln!(md, "### {dist}\n");
        md += "| rank | format | family | bits | GMSE ± se | rho | Pareto |\n";
        md += "|---:|---|---|---:|---|---:|:---:|\n";
        for row in r {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.3} | {} ± {} | {} | {} |",
                row.rank,
                code(&row.format),
                cell(&row.family),
                row.bits_per_element,
                sig(row.gmse, 4),
                sig(row.gmse_stderr, 2),
                sig(row.rho, 4),
                if row.pareto { "yes" } else { "" }
            );
        }
        md.push('\n');
    }
    md += &fit_section(results)?;
    md += &training_section(&rows);

    let path = out.join("report.md");
    std::fs::write(&path, md).map_err(|e| format!("--out: cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// An interval `[a, b]` from a JSON pair, `fixed` for fixed parameters, else `-`.
fn interval(v: &Value, fixed: bool) -> String {
    match (v[0].as_f64(), v[1].as_f64()) {
        (Some(a), Some(b)) => format!("[{}, {}]", sig(a, 4), sig(b, 4)),
        _ if fixed => "fixed".into(),
        _ => "-".into(),
    }
}

/// A fit heading: `## {title}`, marked NOT IDENTIFIED with the reasons when fit.json says the
/// fit is not a result (its RMSE far above the seed noise, or absurd parameter values).
fn fit_title(title: &str, results: &Path) -> String {
    let f: Option<Value> =
        std::fs::read_to_string(results.join("fit.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    match f {
        Some(f) if f["identified"] == Value::Bool(false) => {
            let why: Vec<&str> =
                f["not_identified"].as_array().into_iter().flatten().filter_map(|w| w.as_str()).collect();
            format!("## {title}: NOT IDENTIFIED\n\nThis fit is not a result: {}.\n\n", cell(&why.join("; ")))
        }
        _ => format!("## {title}\n\n"),
    }
}

/// The fit's tables from `results/fit.json`, or a sentence when there is none.
fn fit_section(results: &Path) -> Result<String, String> {
    let mut md = fit_title("Fit", results);
    let path = results.join("fit.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        md += "No fit.json in the results folder (the experiment has no `[fit]`, or no training run finished): skipped.\n\n";
        return Ok(md);
    };
    let f: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: {e}; rerun `host sweep collect EXP.toml` to rewrite it", path.display()))?;
    if let Some(e) = f["error"].as_str() {
        let _ = writeln!(md, "The fit failed: {}\n", cell(e));
        return Ok(md);
    }
    let _ = writeln!(
        md,
        "Law `{}` fitted to {} runs{}; RMSE {}.\n",
        f["law"].as_str().unwrap_or("?"),
        f["runs"],
        f["form"].as_str().map(|s| format!(" ({})", cell(s))).unwrap_or_default(),
        f["rmse"].as_f64().map_or("-".into(), |x| sig(x, 4))
    );
    if let Some(params) = f["params"].as_object() {
        md += "| parameter | value | 68 % interval | 95 % interval |\n|---|---:|---|---|\n";
        for (name, p) in params {
            let fixed = p["fixed"].as_bool().unwrap_or(false);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                cell(name),
                p["value"].as_f64().map_or("-".into(), |x| sig(x, 4)),
                interval(&p["ci68"], fixed),
                interval(&p["ci95"], fixed)
            );
        }
        md.push('\n');
    }
    match f["comparison"].as_array() {
        Some(c) if !c.is_empty() => {
            md += "Law comparison:\n\n| law | free parameters | objective | RMSE | note |\n|---|---:|---:|---:|---|\n";
            for r in c {
                let n = |k: &str| r[k].as_f64().map_or("-".into(), |x| sig(x, 4));
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    cell(r["law"].as_str().unwrap_or("?")),
                    r["free"],
                    n("objective"),
                    n("rmse"),
                    cell(r["note"].as_str().unwrap_or(""))
                );
            }
            md.push('\n');
        }
        _ => md += "No law comparison in fit.json.\n\n",
    }
    match f["warnings"].as_array() {
        Some(w) if !w.is_empty() => {
            md += "Warnings:\n\n";
            for x in w {
                let _ = writeln!(md, "- {}", x.as_str().map_or_else(|| x.to_string(), |s| s.replace('\n', " ")));
            }
            md.push('\n');
        }
        _ => md += "No warnings.\n\n",
    }
    Ok(md)
}

/// The training runs' table, or a sentence when there are none.
fn training_section(rows: &[Value]) -> String {
    let mut md = String::from("## Training runs\n\n");
    let train: Vec<&Value> = rows.iter().filter(|r| r["type"] == "train").collect();
    if train.is_empty() {
        md += "No training runs in this sweep.\n\n";
        return md;
    }
    md += "| model | format | N | tokens | val loss |\n|---|---|---:|---:|---:|\n";
    for r in train {
        let n = |k: &str| r[k].as_f64().map_or("-".into(), |x| sig(x, 4));
        let mut format = r["format"].as_str().unwrap_or("?").to_string();
        if let Some(a) = r["act_format"].as_str().filter(|a| !a.is_empty() && *a != "none") {
            format += &format!(" (activations {a})");
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            cell(r["model"].as_str().unwrap_or("?")),
            code(&format),
            n("non_embedding_params"),
            n("tokens"),
            n("val_loss")
        );
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A fresh folder under the target directory (beside the test binary).
    fn scratch(name: &str) -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let d = exe.parent().unwrap().join("test-report-unit").join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn gmse(format: &str, dist: &str, bits: f64, gmse: f64, stderr: f64) -> Value {
        json!({"type": "gmse", "format": format, "distribution": dist, "plugin": "p", "kind": "k",
               "family": "scalar", "bits": bits, "gmse": gmse, "stderr": stderr, "samples": 1048576})
    }

    /// A results folder with three Gaussian rows, one Laplace row, one training run, a
    /// manifest with a report title, and (when `fit`) a fit.json and the fit's plots.
    fn folder(name: &str, fit: bool) -> PathBuf {
        let d = scratch(name);
        let rows = [
            gmse("int4", "gaussian", 4.004, 0.01154, 2.0e-5),
            gmse("e2m1", "gaussian", 4.004, 0.0127, 3.0e-5),
            gmse("int2", "gaussian", 2.004, 0.1189, 1.0e-4),
            gmse("int4", "laplace", 4.004, 0.0175, 4.0e-5),
            json!({"type": "train", "model": "lm-50k", "format": "int4", "act_format": "none",
                   "non_embedding_params": 55536, "tokens": 28672, "val_loss": 4.1266}),
        ];
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(d.join("results.jsonl"), text).unwrap();
        std::fs::write(d.join("manifest.json"), json!({"name": "n", "report": {"title": "My sweep"}}).to_string())
            .unwrap();
        if fit {
            let f = json!({"law": "unified", "form": "f", "runs": 4, "rmse": 0.0123,
                "params": {"alpha": {"value": 0.13, "fixed": true, "ci68": null, "ci95": null},
                           "A": {"value": 406.4, "fixed": false, "ci68": [400.0, 410.0], "ci95": [390.0, 420.0]}},
                "comparison": [{"law": "chinchilla", "free": 2, "objective": 0.0015, "rmse": 0.49, "note": ""}],
                "warnings": ["F is not identified"]});
            std::fs::write(d.join("fit.json"), f.to_string()).unwrap();
            std::fs::create_dir_all(d.join("plots")).unwrap();
            for (n, _) in FIT_PLOTS {
                std::fs::write(d.join("plots").join(n), format!("<svg>{n}</svg>\n")).unwrap();
            }
        }
        d
    }

    /// The texts of an SVG's `<text>` elements.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .map(|t| t.split_once('>').unwrap().1.split("</text>").next().unwrap().trim().to_string())
            .collect()
    }

    #[test]
    fn report_has_tables_links_and_plots() {
        let d = folder("full", true);
        let out = d.join("report");
        let md_path = write(&d, &out).unwrap();
        assert_eq!(md_path, out.join("report.md"));
        let md = std::fs::read_to_string(&md_path).unwrap();
        assert!(md.starts_with("# My sweep\n"), "{md}");
        // Ranking by rho = GMSE order; int4 and int2 are on the front, e2m1 (same bits as int4,
        // more error) is not. Numbers as written, GMSE to 4 and se to 2 significant digits.
        let g = md.find("### gaussian").unwrap();
        let l = md.find("### laplace").unwrap();
        let gauss = &md[g..l];
        let line = |f: &str| gauss.lines().find(|x| x.contains(&format!("`{f}`"))).unwrap().to_string();
        assert!(line("int4").starts_with("| 1 | `int4` | scalar | 4.004 | 0.01154 ± 2.0e-5 |"), "{gauss}");
        assert!(line("int4").ends_with("| yes |"), "{gauss}");
        // rho is the default law's capacity of the measured GMSE (4 significant digits).
        let rho = Law::default_law().rho("scalar", 0.01154);
        assert!(line("int4").contains(&format!("| {} |", sig(rho, 4))), "{gauss}");
        assert!(rho > 0.8 && rho < 0.84, "{rho}");
        assert!(line("e2m1").starts_with("| 2 | `e2m1` | scalar | 4.004 | 0.01270 ± 3.0e-5 |"), "{gauss}");
        assert!(line("e2m1").ends_with("|  |"), "{gauss}");
        assert!(line("int2").starts_with("| 3 | `int2` | scalar | 2.004 | 0.1189 ± 0.00010 |"), "{gauss}");
        assert!(line("int2").ends_with("| yes |"), "{gauss}");
        assert!(md[l..].contains("| 1 | `int4` | scalar | 4.004 | 0.01750 ± 4.0e-5 |"), "{md}");
        // Fit and training tables.
        assert!(md.contains("| alpha | 0.1300 | fixed | fixed |"), "{md}");
        assert!(md.contains("| A | 406.4 | [400.0, 410.0] | [390.0, 420.0] |"), "{md}");
        assert!(md.contains("RMSE 0.01230"), "{md}");
        assert!(md.contains("| chinchilla | 2 | 0.001500 | 0.4900 |  |"), "{md}");
        assert!(md.contains("- F is not identified"), "{md}");
        assert!(md.contains("| lm-50k | `int4` | 55536 | 28672 | 4.127 |"), "{md}");
        // Plots: linked relatively, the charts first, and every linked file exists.
        let links: Vec<&str> =
            md.match_indices("](plots/").map(|(i, _)| md[i + 2..].split(')').next().unwrap()).collect();
        assert_eq!(
            links,
            [
                "plots/gmse-vs-bits-gaussian.svg",
                "plots/gmse-vs-bits-laplace.svg",
                "plots/rho-vs-gmse.svg",
                "plots/loss-vs-n.svg"
            ]
        );
        assert!(md.find("](plots/").unwrap() < md.find("## Ranking").unwrap());
        for l in &links {
            assert!(out.join(l).is_file(), "{l}");
        }
        // The fit's plots are copied as they are.
        assert_eq!(std::fs::read_to_string(out.join("plots/loss-vs-n.svg")).unwrap(), "<svg>loss-vs-n.svg</svg>\n");
        // The charts are well-formed SVG with the axis labels and the references.
        let svg = std::fs::read_to_string(out.join("plots/gmse-vs-bits-gaussian.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let t = texts(&svg);
        for want in [rankplot::X_LABEL, rankplot::Y_LABEL, rankplot::PARETO, rankplot::LLOYD_MAX, rankplot::SHANNON] {
            assert!(t.iter().any(|x| x == want), "{want:?} not in {t:?}");
        }
        for want in ["int4", "e2m1", "int2", "GMSE vs bits per element, gaussian (3 formats)"] {
            assert!(t.iter().any(|x| x == want), "{want:?} not in {t:?}");
        }
    }

    #[test]
    fn missing_parts_are_sentences() {
        let d = folder("nofit", false);
        // Only GMSE rows: no training, no fit, no fit plots.
        let text = std::fs::read_to_string(d.join("results.jsonl")).unwrap();
        let gmse_only: String = text.lines().filter(|l| !l.contains("\"train\"")).map(|l| format!("{l}\n")).collect();
        std::fs::write(d.join("results.jsonl"), gmse_only).unwrap();
        std::fs::remove_file(d.join("manifest.json")).unwrap();
        let md = std::fs::read_to_string(write(&d, &d.join("r")).unwrap()).unwrap();
        assert!(md.starts_with("# nofit\n"), "{md}");
        assert!(md.contains("No `plots/rho-vs-gmse.svg` in the results folder"), "{md}");
        assert!(md.contains("No fit.json in the results folder"), "{md}");
        assert!(md.contains("No training runs in this sweep."), "{md}");
        assert!(!d.join("r/plots/loss-vs-n.svg").exists());
        // A failed fit is reported as such.
        std::fs::write(d.join("fit.json"), r#"{"error": "too few runs"}"#).unwrap();
        let md = std::fs::read_to_string(write(&d, &d.join("r")).unwrap()).unwrap();
        assert!(md.contains("The fit failed: too few runs"), "{md}");
    }

    #[test]
    fn errors_are_one_line() {
        let d = scratch("empty");
        let e = write(&d, &d.join("r")).unwrap_err();
        assert_eq!(e, format!("{}: no results.jsonl; run `host sweep collect EXP.toml` first", d.display()));
        std::fs::write(d.join("results.jsonl"), "{}\nnot json\n").unwrap();
        let e = write(&d, &d.join("r")).unwrap_err();
        assert!(e.contains("results.jsonl line 2") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn numbers_and_names() {
        assert_eq!(sig(0.01154, 4), "0.01154");
        assert_eq!(sig(406.4, 4), "406.4");
        assert_eq!(sig(55536.0, 4), "55536");
        assert_eq!(sig(2.5e7, 3), "2.50e7");
        assert_eq!(sig(3e-6, 2), "3.0e-6");
        assert_eq!(sig(f64::INFINITY, 2), "-");
        assert_eq!(slug("file:w.safetensors"), "file_w_safetensors");
        assert_eq!(cell("a|b"), "a\\|b");
    }
}
