//! `host validate`'s text report and JSON object.

use serde_json::{Value, json};

use super::Validation;
use super::sections::{Correlation, FitSettings};
use super::stats::Estimate;

fn opt(x: Option<f64>) -> Value {
    x.filter(|v| v.is_finite()).map_or(Value::Null, |v| json!(v))
}

fn pair(c: Option<(f64, f64)>) -> Value {
    c.map_or(Value::Null, |(a, b)| json!([a, b]))
}

fn est_json(e: &Estimate) -> Value {
    json!({"value": opt(e.value), "ci68": pair(e.ci68), "ci95": pair(e.ci95)})
}

fn section<T>(r: &Result<T, String>, f: impl FnOnce(&T) -> Value) -> Value {
    match r {
        Ok(v) => f(v),
        Err(e) => json!({"error": e}),
    }
}

fn corr_json(c: &Result<Correlation, String>) -> Value {
    section(
        c,
        |c| json!({"configs": c.configs, "spearman": est_json(&c.spearman), "kendall_tau_b": est_json(&c.kendall)}),
    )
}

fn settings_json(s: &FitSettings) -> Value {
    json!({
        "fix": s.fix,
        "fix_source": if s.user { "--fix" } else { "default" },
        "fixed_because": s.why.iter().map(|(k, w)| json!({"param": k, "why": w})).collect::<Vec<_>>(),
        "bound": s.bound,
        "delta": s.delta,
        "bootstrap": s.bootstrap,
        "seed": s.seed,
    })
}

/// The `--json` object.
pub fn json(v: &Validation) -> Value {
    let st = &v.study;
    let size_name = |i: usize| st.sizes[i].label.clone();
    let sizes: Vec<Value> = st
        .sizes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "size": s.label, "model": s.model, "n": s.n, "d": s.d, "data": s.data,
                "configs": st.at(i).count(), "runs": st.at(i).map(|c| c.losses.len()).sum::<usize>(),
                "seed_sd": s.pooled.map(|p| p.sd), "seed_sd_dof": s.pooled.map(|p| p.dof),
            })
        })
        .collect();
    let configs: Vec<Value> = st
        .configs
        .iter()
        .map(|c| {
            json!({
                "size": size_name(c.size), "config": c.name(), "format": c.format, "act_format": c.act,
                "class": c.class.name(),
                "w_gmse": c.w.as_ref().map(|x| x.gmse), "a_gmse": c.a.as_ref().map(|x| x.gmse),
                "w_family": c.w.as_ref().map(|x| x.family.clone()), "a_family": c.a.as_ref().map(|x| x.family.clone()),
                "rho": opt(c.rho), "seeds": c.seeds, "losses": c.losses, "mean_loss": c.mean(),
                "sd": super::stats::sd(&c.losses),
            })
        })
        .collect();
    let correlations = section(&v.correlations, |sc| {
        json!(
            sc.iter()
                .map(|c| json!({
                    "size": size_name(c.size),
                    "resamples": c.resamples,
                    "gmse_vs_loss": corr_json(&c.gmse),
                    "rho_vs_loss": corr_json(&c.rho),
                    "order_breaks": c.breaks.iter().map(|b| json!({
                        "lower_gmse": b.lower, "higher_gmse": b.higher, "gmse": [b.gmse.0, b.gmse.1],
                        "mean_loss": [b.loss.0, b.loss.1], "loss_diff": b.loss.0 - b.loss.1,
                        "se": opt(b.se), "z": opt(b.z),
                    })).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        )
    });
    let law = section(&v.law, |r| {
        let mut j = r.to_json();
        if let Some(o) = j.as_object_mut() {
            o.remove("residuals");
        }
        j
    });
    let held_out = section(&v.held_out, |h| {
        json!({
            "unit": "seed SD pooled over the configurations of each model size",
            "start": if h.warm { "section b's optimum" } else { "grid of starts" },
            "formats": h.formats.iter().map(|f| json!({
                "config": f.name, "class": f.class.name(), "fitted_on_runs": f.fitted_on, "error": f.error,
                "predictions": f.predictions.iter().map(|p| json!({
                    "size": size_name(p.size), "observed": p.observed, "seeds": p.seeds, "predicted": p.predicted,
                    "error": p.error, "error_sd": opt(p.z),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "per_class": h.summary.iter().map(|s| json!({
                "class": s.class.name(), "formats": s.formats, "predicted": s.predicted,
                "formats_within_2sd": s.formats_within_2sd,
                "formats_with_sd": s.formats_with_sd,
                "fraction_formats_within_2sd": if s.formats_with_sd > 0 { json!(s.formats_within_2sd as f64 / s.formats_with_sd as f64) } else { Value::Null },
                "predictions": s.predictions, "predictions_within_2sd": s.within_2sd,
                "fraction_predictions_within_2sd": if s.predictions > 0 { json!(s.within_2sd as f64 / s.predictions as f64) } else { Value::Null },
            })).collect::<Vec<_>>(),
        })
    });
    let factorization = section(&v.factorization, |f| {
        json!({
            "resamples": f.resamples,
            "checks": f.rows.iter().map(|r| json!({
                "config": r.key, "kind": r.kind, "implied": est_json(&r.implied), "product": est_json(&r.product),
                "ratio": est_json(&r.ratio),
                "parts": r.parts.iter().map(|(k, x)| json!({"config": k, "implied": x})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    });
    let noise = section(&v.noise, |ps| {
        json!(
            ps.iter()
                .map(|p| json!({
                    "size": size_name(p.size), "noise": p.noise, "quantizer": p.quantizer,
                    "gmse": [p.gmse.0, p.gmse.1], "mean_loss": [p.loss.0, p.loss.1], "seeds": [p.seeds.0, p.seeds.1],
                    "loss_diff": p.diff, "se": opt(p.se), "z": opt(p.z),
                }))
                .collect::<Vec<_>>()
        )
    });
    let (lo, hi) = st.seed_range();
    json!({
        "runs": st.runs.len(),
        "rows_read": st.rows_read,
        "seeds_per_config": [lo, hi],
        "data_sets": st.data_sets,
        "rho_source": st.rho_source,
        "warnings": st.warnings,
        "bootstrap": v.settings.bootstrap,
        "seed": v.settings.seed,
        "sections": v.sections().iter().map(|(l, n, w)| (format!("{l}_{n}"), match w {
            None => json!("ok"),
            Some(w) => json!(w),
        })).collect::<serde_json::Map<_, _>>(),
        "sizes": sizes,
        "configs": configs,
        "correlations": correlations,
        "law_fit": json!({"settings": settings_json(&v.settings), "report": law}),
        "held_out": held_out,
        "factorization": factorization,
        "noise_vs_quantizer": noise,
        "exit_code": v.exit_code(),
    })
}

fn signed(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite()).map_or("-".into(), |v| format!("{v:+.4}"))
}

fn est_text(e: &Estimate) -> String {
    let iv = |c: Option<(f64, f64)>| c.map_or("-".to_string(), |(a, b)| format!("[{a:+.3}, {b:+.3}]"));
    format!("{}  68 % {}  95 % {}", signed(e.value), iv(e.ci68), iv(e.ci95))
}

fn rho_text(e: &Estimate) -> String {
    let iv = |c: Option<(f64, f64)>| c.map_or("-".to_string(), |(a, b)| format!("[{a:.4}, {b:.4}]"));
    match e.value {
        Some(v) => format!("{v:.4} {} {}", iv(e.ci68), iv(e.ci95)),
        None => "-".into(),
    }
}

/// The text report.
pub fn text(v: &Validation) -> String {
    let st = &v.study;
    let (lo, hi) = st.seed_range();
    let seeds = if lo == hi { format!("{lo}") } else { format!("{lo}-{hi}") };
    let mut s = format!(
        "# host validate: {} runs ({} configurations at {} model sizes, {seeds} seeds each) from {} rows\n",
        st.runs.len(),
        st.configs.len(),
        st.sizes.len(),
        st.rows_read
    );
    for (i, d) in st.data_sets.iter().enumerate() {
        let d = if d.is_empty() { "(no data column)" } else { d.as_str() };
        if st.data_sets.len() > 1 {
            s += &format!("# data {}: {d}\n", i + 1);
        } else {
            s += &format!("# data: {d}\n");
        }
    }
    s += &format!("# rho: {}\n", st.rho_source);
    s += "# seed SD: pooled over the configurations of a model size (dof = runs - configurations)\n";

    s += &format!("\n{:<16} {:>11} {:>11} {:>7} {:>5} {:>16}\n", "size", "N", "D", "configs", "runs", "seed SD (dof)");
    for (i, z) in st.sizes.iter().enumerate() {
        let sd = z.pooled.map_or("-".into(), |p| format!("{:.5} ({})", p.sd, p.dof));
        let runs: usize = st.at(i).map(|c| c.losses.len()).sum();
        s += &format!("{:<16} {:>11.4e} {:>11.4e} {:>7} {:>5} {:>16}\n", z.label, z.n, z.d, st.at(i).count(), runs, sd);
    }

    s += "\nconfigurations (mean loss over seeds, SD of its seeds):\n";
    s += &format!(
        "{:<16} {:<30} {:<7} {:>11} {:>11} {:>7} {:>5} {:>9} {:>8}\n",
        "size", "config", "class", "GMSE W", "GMSE A", "rho", "seeds", "mean", "SD"
    );
    for c in &st.configs {
        let g = |x: &Option<host_fit::data::Comp>| x.as_ref().map_or("-".into(), |c| format!("{:.4e}", c.gmse));
        let sd = super::stats::sd(&c.losses).map_or("-".into(), |x| format!("{x:.5}"));
        s += &format!(
            "{:<16} {:<30} {:<7} {:>11} {:>11} {:>7} {:>5} {:>9.5} {:>8}\n",
            st.sizes[c.size].label,
            c.name(),
            c.class.name(),
            g(&c.w),
            g(&c.a),
            c.rho.map_or("-".into(), |r| format!("{r:.4}")),
            c.losses.len(),
            c.mean(),
            sd
        );
    }

    s += &format!(
        "\na. GMSE and rho against the mean trained loss, per model size \
         (intervals: {} bootstrap resamples of the seeds within each configuration, seed {})\n",
        v.settings.bootstrap, v.settings.seed
    );
    match &v.correlations {
        Err(e) => s += &format!("   not computed: {e}\n"),
        Ok(all) => {
            for c in all {
                s += &format!("{}:\n", st.sizes[c.size].label);
                let block = |r: &Result<Correlation, String>, what: &str, sign: &str| match r {
                    Err(e) => format!("  {what}: not computed: {e}\n"),
                    Ok(c) => format!(
                        "  {what}, {} configs (expected {sign}):\n    Spearman     {}\n    Kendall tau-b {}\n",
                        c.configs,
                        est_text(&c.spearman),
                        est_text(&c.kendall)
                    ),
                };
                s += &block(&c.gmse, "GMSE vs loss, scalar weight-only", "+");
                s += &block(&c.rho, "rho vs loss, all", "-");
                if c.resamples == 0 {
                    s += "  (no intervals: no configuration has two seeds)\n";
                }
                if c.gmse.is_ok() {
                    if c.breaks.is_empty() {
                        s += "  GMSE order: every pair of scalar formats keeps it in loss\n";
                    } else {
                        s += "  GMSE order broken (higher loss at lower GMSE; in SE = seed SD * sqrt(1/n1 + 1/n2)):\n";
                        for b in &c.breaks {
                            s += &format!(
                                "    {} (GMSE {:.3e}, loss {:.5}) vs {} (GMSE {:.3e}, loss {:.5}): {:+.5} = {} SE\n",
                                b.lower,
                                b.gmse.0,
                                b.loss.0,
                                b.higher,
                                b.gmse.1,
                                b.loss.1,
                                b.loss.0 - b.loss.1,
                                b.z.map_or("-".into(), |z| format!("{z:+.2}"))
                            );
                        }
                    }
                }
            }
        }
    }

    let set = &v.settings;
    s += &format!(
        "\nb. the unified law refitted on these runs ({} bootstrap resamples over runs, seed {})\n",
        set.bootstrap, set.seed
    );
    match (&set.fix, set.user) {
        (None, true) => s += "fixed: nothing (--fix none)\n",
        (None, false) => s += "fixed: nothing (the runs identify every parameter by the default rules)\n",
        (Some(f), true) => s += &format!("fixed (--fix): {f}\n"),
        (Some(_), false) => {
            s += "fixed by default (--fix overrides; --fix none fixes nothing):\n";
            for (k, w) in &set.why {
                s += &format!("  {k}: {w}\n");
            }
        }
    }
    match &v.law {
        Err(e) => s += &format!("   not computed: {e}\n"),
        Ok(r) => {
            s += &r.summary_text();
            if !r.warnings.is_empty() {
                s += "fitter warnings:\n";
                for w in &r.warnings {
                    s += &format!("  {w}\n");
                }
            }
        }
    }

    s += "\nc. held-out prediction: each format left out in turn (all sizes and seeds), the unified law fitted \
          on the rest\n   (fixed as in b, no bootstrap), its loss predicted from its GMSE alone; error = predicted - \
          observed mean,\n   in seed SDs pooled per model size\n";
    match &v.held_out {
        Err(e) => s += &format!("   not computed: {e}\n"),
        Ok(h) => {
            s += if h.warm {
                "   (each fit: one L-BFGS run started from b's optimum)\n"
            } else {
                "   (each fit: host fit's grid of starts, as b was not fitted)\n"
            };
            s += &format!(
                "{:<30} {:<7} {:<16} {:>9} {:>9} {:>9} {:>8}\n",
                "config", "class", "size", "observed", "predicted", "error", "error/SD"
            );
            for f in &h.formats {
                if let Some(e) = &f.error {
                    s += &format!("{:<30} {:<7} not predicted: {e}\n", f.name, f.class.name());
                    continue;
                }
                for p in &f.predictions {
                    s += &format!(
                        "{:<30} {:<7} {:<16} {:>9.5} {:>9.5} {:>+9.5} {:>8}\n",
                        f.name,
                        f.class.name(),
                        st.sizes[p.size].label,
                        p.observed,
                        p.predicted,
                        p.error,
                        p.z.map_or("-".into(), |z| format!("{z:+.2}"))
                    );
                }
            }
            s += "within 2 seed SDs, per family:\n";
            s += &format!(
                "{:<7} {:>8} {:>10} {:>26} {:>26}\n",
                "class", "formats", "predicted", "formats (sizes with SD)", "predictions"
            );
            for c in &h.summary {
                let frac = |k: usize, n: usize| {
                    if n == 0 { "-".to_string() } else { format!("{k} of {n} ({:.0} %)", 100.0 * k as f64 / n as f64) }
                };
                s += &format!(
                    "{:<7} {:>8} {:>10} {:>26} {:>26}\n",
                    c.class.name(),
                    c.formats,
                    c.predicted,
                    frac(c.formats_within_2sd, c.formats_with_sd),
                    frac(c.within_2sd, c.predictions)
                );
            }
        }
    }

    s += "\nd. factorization (DESIGN.md 2.3): implied rho of W+A pairs and compositions A+B (decoupled fit) vs the \
          product of\n   the implied rho of their parts; value, 68 % and 95 % intervals\n";
    match &v.factorization {
        Err(e) => s += &format!("   not computed: {e}\n"),
        Ok(f) => {
            s += &format!("   ({} bootstrap resamples of the decoupled fit)\n", f.resamples);
            for r in &f.rows {
                let parts: Vec<String> = r.parts.iter().map(|(k, x)| format!("{k} {x:.4}")).collect();
                s += &format!(
                    "  {} [{}]: implied {}\n      product {} ({})\n      ratio   {}\n",
                    r.key,
                    r.kind,
                    rho_text(&r.implied),
                    rho_text(&r.product),
                    parts.join(" x "),
                    rho_text(&r.ratio)
                );
            }
        }
    }

    s += "\ne. noise injection vs the weight-only quantizer of closest GMSE at the same model size\n   (diff = \
          loss noise - loss quantizer; SE = seed SD * sqrt(1/n1 + 1/n2))\n";
    match &v.noise {
        Err(e) => s += &format!("   not computed: {e}\n"),
        Ok(ps) => {
            s += &format!(
                "{:<16} {:<22} {:>10} {:<18} {:>10} {:>9} {:>9} {:>9} {:>7}\n",
                "size", "noise", "GMSE", "quantizer", "GMSE", "loss n", "loss q", "diff", "diff/SE"
            );
            for p in ps {
                s += &format!(
                    "{:<16} {:<22} {:>10.4e} {:<18} {:>10.4e} {:>9.5} {:>9.5} {:>+9.5} {:>7}\n",
                    st.sizes[p.size].label,
                    p.noise,
                    p.gmse.0,
                    p.quantizer,
                    p.gmse.1,
                    p.loss.0,
                    p.loss.1,
                    p.diff,
                    p.z.map_or("-".into(), |z| format!("{z:+.2}"))
                );
            }
        }
    }
    s
}
