//! Turning measurements into a ranking: capacity, equal-memory and loss
//! orderings, the Pareto front, the Lloyd-Max reference, and how sure the
//! ordering is (paired per-tensor differences, which common random numbers
//! make far tighter than each format's own error bar).

use serde::Serialize;

use crate::engine::Measurement;
use crate::law::Law;

/// What to order by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// Capacity rho (equal parameter count); higher is better.
    Rho,
    /// rho per bit of storage (equal memory); higher is better.
    RhoPerBit,
    /// Predicted loss at --params N --tokens D; lower is better.
    Loss,
}

/// Standard errors from fewer tensors than this are flagged (`host rank` warns): with `n`
/// tensors the standard error is itself uncertain by about `1/sqrt(2(n-1))` (27 % at 8).
pub const FEW_TENSORS: usize = 16;

/// The model size and data of the predicted loss (`By::Loss` orders by it; with the other
/// orderings it is shown beside them).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Non-embedding parameters.
    pub params: f64,
    /// Training tokens.
    pub tokens: f64,
}

/// One part of a bit budget, for output.
#[derive(Debug, Clone, Serialize)]
pub struct BitsRow {
    /// What is stored.
    pub what: String,
    /// Bits per element.
    pub bits: f64,
}

/// Input for one format.
pub struct Entry {
    /// SPEC as the user gave it (or the preset name).
    pub format: String,
    /// Plugin name.
    pub plugin: String,
    /// Kind name.
    pub kind: String,
    /// Family name.
    pub family: String,
    /// Optional label from the format.
    pub label: Option<String>,
    /// Bits per element, total.
    pub bits: f64,
    /// The parts of `bits`.
    pub bits_parts: Vec<BitsRow>,
    /// For a composition `A+B`: each part's SPEC, family and GMSE measured alone.
    pub parts: Vec<(String, String, f64)>,
    /// Its measurement.
    pub m: Measurement,
}

/// A part of a composition, measured alone.
#[derive(Debug, Clone, Serialize)]
pub struct PartRow {
    /// The part's SPEC.
    pub format: String,
    /// Its family.
    pub family: String,
    /// Its GMSE alone.
    pub gmse: f64,
    /// Its capacity alone.
    pub rho: f64,
}

/// One ranked format, as printed and as serialized to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// 1-based rank.
    pub rank: usize,
    /// SPEC or preset name.
    pub format: String,
    /// Plugin that provides it.
    pub plugin: String,
    /// Kind name.
    pub kind: String,
    /// Family whose capacity curve was used.
    pub family: String,
    /// True when the law has no curve for the family and `scalar` was used.
    pub family_fallback: bool,
    /// Label from the format, if it gave one.
    pub label: Option<String>,
    /// Bits per element, metadata included.
    pub bits_per_element: f64,
    /// The parts of the bit budget.
    pub bits_breakdown: Vec<BitsRow>,
    /// Gaussian MSE.
    pub gmse: f64,
    /// Its standard error.
    pub gmse_stderr: f64,
    /// Samples (elements) measured.
    pub samples: u64,
    /// Tensors measured: the standard error (and `confidence_vs_next`) rests on this many
    /// per-tensor values.
    pub tensors: usize,
    /// Whether the target relative standard error was reached.
    pub reached_target: bool,
    /// Capacity.
    pub rho: f64,
    /// rho at GMSE + one standard error.
    pub rho_low: f64,
    /// rho at GMSE - one standard error.
    pub rho_high: f64,
    /// 68 % interval of rho over the law's own uncertainty (bootstrap samples of a law written
    /// by `host fit --write-law`); None for laws without samples.
    pub rho_law_ci68: Option<(f64, f64)>,
    /// 95 % interval of rho over the law's uncertainty.
    pub rho_law_ci95: Option<(f64, f64)>,
    /// rho / bits per element.
    pub rho_per_bit: f64,
    /// Lloyd-Max GMSE at the same bits per element.
    pub lloyd_max_gmse: f64,
    /// gmse / lloyd_max_gmse (1 = as good as the optimal scalar grid).
    pub gmse_vs_lloyd_max: f64,
    /// On the Pareto front of (bits, GMSE).
    pub pareto: bool,
    /// Predicted loss at the budget given (`--params N --tokens D`), whatever the ordering.
    pub predicted_loss: Option<f64>,
    /// Probability that this format truly ranks above the next one.
    pub confidence_vs_next: Option<f64>,
    /// For a composition `A+B`: the parts measured alone.
    pub parts: Vec<PartRow>,
    /// For a composition: rho(A) * rho(B), the product rule of DESIGN.md 2.3,
    /// to set beside `rho` (from the composition's own GMSE).
    pub rho_product: Option<f64>,
}

/// Lloyd-Max GMSE at a possibly fractional bit count: exact at whole bits,
/// log-linear between them (with 1.0 at 0 bits), 6.02 dB per bit beyond 8.
pub fn lloyd_max_at(bits: f64) -> f64 {
    if bits.is_nan() || bits <= 0.0 {
        return 1.0;
    }
    let at = |b: u32| if b == 0 { 1.0 } else { sdk::gauss::lloyd_max_gmse(b) };
    if bits >= 8.0 {
        return at(8) * 4f64.powf(-(bits - 8.0));
    }
    let lo = bits.floor() as u32;
    let frac = bits - lo as f64;
    (at(lo).ln() * (1.0 - frac) + at(lo + 1).ln() * frac).exp()
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// Ranks `entries` by `by` under `law`.
pub fn rank(entries: Vec<Entry>, law: &Law, by: By, budget: Option<Budget>) -> Vec<Row> {
    // Ranking key per tensor: higher is better.
    let key = |e: &Entry, gmse: f64| -> f64 {
        let rho = law.rho(&e.family, gmse);
        match by {
            By::Rho => rho,
            By::RhoPerBit => rho / e.bits,
            By::Loss => {
                let b = budget.expect("loss ranking needs a budget");
                -law.loss(b.params, b.tokens, rho)
            }
        }
    };
    let mut order: Vec<usize> = (0..entries.len()).collect();
    let keys: Vec<f64> = entries.iter().map(|e| key(e, e.m.gmse)).collect();
    // Ties (same key) are broken by lower GMSE, then fewer bits, then name.
    order.sort_by(|&a, &b| {
        let (ea, eb) = (&entries[a], &entries[b]);
        keys[b]
            .total_cmp(&keys[a])
            .then(ea.m.gmse.total_cmp(&eb.m.gmse))
            .then(ea.bits.total_cmp(&eb.bits))
            .then(ea.format.cmp(&eb.format))
    });
    // Formats whose bits are an equivalent rate rather than storage (the
    // noise predictor) are never on the front and never push others off it.
    let stored = |e: &Entry| !e.bits_parts.iter().any(|p| p.what.starts_with("equivalent"));
    let pareto: Vec<bool> = entries
        .iter()
        .map(|e| {
            stored(e)
                && !entries
                    .iter()
                    .filter(|o| stored(o))
                    .any(|o| o.bits <= e.bits && o.m.gmse <= e.m.gmse && (o.bits < e.bits || o.m.gmse < e.m.gmse))
        })
        .collect();
    let confidence = |a: &Entry, b: &Entry| -> Option<f64> {
        let m = a.m.per_tensor.len().min(b.m.per_tensor.len());
        if m < 2 {
            return None;
        }
        let d: Vec<f64> = (0..m).map(|t| key(a, a.m.per_tensor[t]) - key(b, b.m.per_tensor[t])).collect();
        let mean = d.iter().sum::<f64>() / m as f64;
        let var = d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1) as f64;
        let se = (var / m as f64).sqrt();
        let diff = key(a, a.m.gmse) - key(b, b.m.gmse);
        Some(if se > 0.0 {
            normal_cdf(diff / se)
        } else if diff > 0.0 {
            1.0
        } else {
            0.5
        })
    };
    let mut rows = Vec::with_capacity(entries.len());
    for (pos, &i) in order.iter().enumerate() {
        let e = &entries[i];
        let (fam, fallback) = law.family(&e.family);
        let rho = fam.capacity.rho(e.m.gmse);
        let lm = lloyd_max_at(e.bits);
        let law_ci = law.rho_samples(&e.family, e.m.gmse).and_then(crate::law::intervals);
        rows.push(Row {
            rank: pos + 1,
            format: e.format.clone(),
            plugin: e.plugin.clone(),
            kind: e.kind.clone(),
            family: e.family.clone(),
            family_fallback: fallback,
            label: e.label.clone(),
            bits_per_element: e.bits,
            bits_breakdown: e.bits_parts.clone(),
            gmse: e.m.gmse,
            gmse_stderr: e.m.stderr,
            samples: e.m.samples,
            tensors: e.m.per_tensor.len(),
            reached_target: e.m.reached_target,
            rho,
            rho_low: fam.capacity.rho(e.m.gmse + e.m.stderr),
            rho_high: fam.capacity.rho((e.m.gmse - e.m.stderr).max(0.0)),
            rho_law_ci68: law_ci.map(|c| c.0),
            rho_law_ci95: law_ci.map(|c| c.1),
            rho_per_bit: rho / e.bits,
            lloyd_max_gmse: lm,
            gmse_vs_lloyd_max: e.m.gmse / lm,
            pareto: pareto[i],
            predicted_loss: budget.map(|b| law.loss(b.params, b.tokens, rho)),
            confidence_vs_next: order.get(pos + 1).and_then(|&j| confidence(e, &entries[j])),
            parts: e
                .parts
                .iter()
                .map(|(format, family, gmse)| PartRow {
                    format: format.clone(),
                    family: family.clone(),
                    gmse: *gmse,
                    rho: law.rho(family, *gmse),
                })
                .collect(),
            rho_product: (e.parts.len() == 2).then(|| e.parts.iter().map(|(_, f, g)| law.rho(f, *g)).product()),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::Shape;

    fn entry(name: &str, bits: f64, per_tensor: Vec<f64>) -> Entry {
        let n = per_tensor.len() as f64;
        let gmse = per_tensor.iter().sum::<f64>() / n;
        Entry {
            format: name.into(),
            plugin: "p".into(),
            kind: "k".into(),
            family: "scalar".into(),
            label: None,
            bits,
            bits_parts: vec![],
            parts: vec![],
            m: Measurement { gmse, stderr: 1e-4, samples: 0, per_tensor, reached_target: true },
        }
    }

    #[test]
    fn lloyd_max_reference_points() {
        assert_eq!(lloyd_max_at(0.0), 1.0);
        assert!((lloyd_max_at(4.0) - 0.0095010).abs() < 1e-6);
        let mid = lloyd_max_at(4.5);
        assert!((mid - (0.0095010f64 * 2.5047e-3).sqrt()).abs() < 1e-6, "{mid}");
        assert!((lloyd_max_at(9.0) - 4.1185e-5 / 4.0).abs() < 1e-8);
        let _ = Shape::new(1, 1);
    }

    #[test]
    fn orders_pareto_and_confidence() {
        let law = Law::default_law();
        let a = entry("a", 4.0, vec![0.0110, 0.0112, 0.0111]);
        let b = entry("b", 4.5, vec![0.0120, 0.0122, 0.0121]);
        let c = entry("c", 3.0, vec![0.0400, 0.0410, 0.0405]);
        let rows = rank(vec![b, c, a], &law, By::Rho, None);
        let names: Vec<_> = rows.iter().map(|r| r.format.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // b has more bits and more error than a: dominated.
        assert_eq!(rows.iter().map(|r| r.pareto).collect::<Vec<_>>(), [true, false, true]);
        assert!(rows[0].confidence_vs_next.unwrap() > 0.999);
        assert!(rows[2].confidence_vs_next.is_none());
        // Equal memory: c's rho per bit beats the others'.
        let rows = rank(
            vec![entry("a", 4.0, vec![0.011, 0.0112]), entry("c", 3.0, vec![0.04, 0.041])],
            &law,
            By::RhoPerBit,
            None,
        );
        assert_eq!(rows[0].format, "c");
    }

    /// A budget gives the predicted loss whatever the ordering; the order stays that of `by`.
    #[test]
    fn predicted_loss_beside_any_ordering() {
        let law = Law::default_law();
        let b = Budget { params: 1e8, tokens: 1e10 };
        let entries = || vec![entry("a", 4.0, vec![0.011, 0.0112, 0.0111]), entry("c", 3.0, vec![0.04, 0.041, 0.0405])];
        for by in [By::Rho, By::RhoPerBit, By::Loss] {
            let rows = rank(entries(), &law, by, Some(b));
            for r in &rows {
                let want = law.loss(1e8, 1e10, law.rho("scalar", r.gmse));
                assert_eq!(r.predicted_loss, Some(want), "{by:?} {}", r.format);
                assert_eq!(r.tensors, 3);
            }
            let names: Vec<_> = rows.iter().map(|r| r.format.as_str()).collect();
            assert_eq!(names, if by == By::RhoPerBit { ["c", "a"] } else { ["a", "c"] }, "{by:?}");
        }
        assert!(rank(entries(), &law, By::Rho, None).iter().all(|r| r.predicted_loss.is_none()));
    }
}
