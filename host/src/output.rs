//! Rendering rankings and plugin listings: aligned tables, JSON, CSV.

use crate::rank::Row;

/// Renders rows as an aligned text table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            // Text columns left-aligned, numbers right-aligned.
            let numeric = c.chars().next().is_some_and(|ch| ch.is_ascii_digit() || ch == '-' || ch == '.');
            let pad = w - c.chars().count();
            if numeric && i != 1 {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A number in scientific notation with `digits` significant digits: `1.154e-2`.
pub fn sci(v: f64, digits: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return format!("{v}");
    }
    format!("{:.*e}", digits.saturating_sub(1), v)
}

/// The ranking as a human-readable table (with a `loss` column when the rows have a
/// predicted loss).
pub fn ranking_table(rows: &[Row]) -> String {
    let show_loss = rows.iter().any(|r| r.predicted_loss.is_some());
    let mut headers = vec![
        "rank",
        "format",
        "family",
        "bits",
        "GMSE ± se",
        "tensors",
        "rho ± err",
        "rho/bit",
        "vs LM",
        "front",
        "P(>next)",
    ];
    if show_loss {
        headers.insert(8, "loss");
    }
    let law_ci = rows.iter().any(|r| r.rho_law_ci68.is_some());
    if law_ci {
        headers.insert(7, "rho 68 % (law)");
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let err = ((r.rho_high - r.rho_low) / 2.0).abs();
            let mut cells = vec![
                r.rank.to_string(),
                r.format.clone(),
                if r.family_fallback { format!("{}*", r.family) } else { r.family.clone() },
                format!("{:.3}", r.bits_per_element),
                format!("{} ± {}{}", sci(r.gmse, 5), sci(r.gmse_stderr, 2), if r.reached_target { "" } else { " !" }),
                r.tensors.to_string(),
                format!("{:.4} ± {:.4}", r.rho, err),
                format!("{:.4}", r.rho_per_bit),
                format!("{:.3}", r.gmse_vs_lloyd_max),
                if r.pareto { "*".into() } else { String::new() },
                r.confidence_vs_next.map(|c| format!("{:.1}%", 100.0 * c)).unwrap_or_default(),
            ];
            if show_loss {
                cells.insert(8, r.predicted_loss.map(|l| format!("{l:.4}")).unwrap_or_default());
            }
            if law_ci {
                cells.insert(7, r.rho_law_ci68.map(|(a, b)| format!("[{a:.4}, {b:.4}]")).unwrap_or_default());
            }
            cells
        })
        .collect();
    table(&headers, &body)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// The ranking as CSV (one row per format; the bit breakdown as `what=bits;...`).
pub fn ranking_csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "rank,format,plugin,kind,family,bits_per_element,bits_breakdown,gmse,gmse_stderr,samples,tensors,reached_target,rho,rho_low,rho_high,rho_per_bit,lloyd_max_gmse,gmse_vs_lloyd_max,pareto,predicted_loss,confidence_vs_next,rho_law_lo68,rho_law_hi68,rho_law_lo95,rho_law_hi95\n",
    );
    let opt = |v: Option<f64>| v.map(|x| format!("{x:e}")).unwrap_or_default();
    for r in rows {
        let breakdown: Vec<String> = r.bits_breakdown.iter().map(|b| format!("{}={}", b.what, b.bits)).collect();
        let cells = [
            r.rank.to_string(),
            csv_field(&r.format),
            csv_field(&r.plugin),
            csv_field(&r.kind),
            r.family.clone(),
            format!("{}", r.bits_per_element),
            csv_field(&breakdown.join(";")),
            format!("{:e}", r.gmse),
            format!("{:e}", r.gmse_stderr),
            r.samples.to_string(),
            r.tensors.to_string(),
            r.reached_target.to_string(),
            format!("{}", r.rho),
            format!("{}", r.rho_low),
            format!("{}", r.rho_high),
            format!("{}", r.rho_per_bit),
            format!("{:e}", r.lloyd_max_gmse),
            format!("{}", r.gmse_vs_lloyd_max),
            r.pareto.to_string(),
            opt(r.predicted_loss),
            opt(r.confidence_vs_next),
            opt(r.rho_law_ci68.map(|c| c.0)),
            opt(r.rho_law_ci68.map(|c| c.1)),
            opt(r.rho_law_ci95.map(|c| c.0)),
            opt(r.rho_law_ci95.map(|c| c.1)),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(&["rank", "format"], &[vec!["1".into(), "int4".into()], vec!["10".into(), "e2m1".into()]]);
        assert_eq!(t, "rank  format\n   1  int4\n  10  e2m1\n");
    }

    #[test]
    fn sci_notation() {
        assert_eq!(sci(0.011543, 5), "1.1543e-2");
        assert_eq!(sci(0.0, 3), "0");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
