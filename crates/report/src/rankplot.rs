//! `host rank --plot`: the ranked formats on a chart of GMSE against bits per element.
//!
//! One point series per format family (error bars: GMSE ± one standard error, each point
//! labelled with its format), the Pareto front of (bits, GMSE), and two references: the
//! Lloyd-Max curve ([`rank::lloyd_max_at`], the best scalar quantizer per element) and
//! Shannon's rate-distortion bound of a unit Gaussian, `D(R) = 2^(-2R) = 4^-R`, which no
//! format at `R` bits per element can beat.

use std::path::Path;

use host_core::rank::{self, Row};
use host_plot::{Axis, Chart, Point, Series, Style, render_svg};

/// Name of the Pareto front series.
pub const PARETO: &str = "Pareto front";
/// Name of the Lloyd-Max series.
pub const LLOYD_MAX: &str = "Lloyd-Max";
/// Name of the Shannon bound series.
pub const SHANNON: &str = "Shannon bound";
/// Horizontal axis label.
pub const X_LABEL: &str = "bits per element";
/// Vertical axis label.
pub const Y_LABEL: &str = "Gaussian MSE (GMSE)";
/// Size of the SVG written by [`write`], in pixels.
pub const SIZE: (u32, u32) = (1000, 680);
/// Spacing of the Lloyd-Max and Shannon curves' points, in bits. Both curves are straight
/// on the chart's log-linear axes between whole bits (Lloyd-Max is interpolated log-linearly,
/// Shannon is exponential), so this only has to hit the whole bits; a finer grid would only
/// add zigzag from rounding every point to whole pixels.
pub const GRID_STEP: f64 = 0.125;

/// Families listed first, in this order; other families follow alphabetically.
const KNOWN_FAMILIES: [&str; 3] = ["scalar", "sparse", "vector"];
/// Palette colours of the families (in the order above), then of the three lines.
const FAMILY_COLORS: [usize; 7] = [0, 2, 4, 5, 6, 8, 9];
const PARETO_COLOR: usize = 1;
const LLOYD_MAX_COLOR: usize = 3;
const SHANNON_COLOR: usize = 7;

/// Shannon's distortion-rate function of a unit Gaussian: `D(R) = 4^-R`.
pub fn shannon_bound(bits: f64) -> f64 {
    4f64.powf(-bits)
}

/// The bits of the reference curves, increasing: from `min(0.5, fewest bits)` to the most bits
/// of `rows` (0.5 to 8 when no row has finite positive bits), through every multiple of
/// [`GRID_STEP`] in between.
pub fn grid(rows: &[Row]) -> Vec<f64> {
    let bits = rows.iter().map(|r| r.bits_per_element).filter(|b| b.is_finite() && *b > 0.0);
    let (lo, hi) = bits.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), b| (l.min(b), h.max(b)));
    let (lo, hi) = if hi.is_finite() { (lo.min(0.5), hi.max(lo.min(0.5) + 0.5)) } else { (0.5, 8.0) };
    let inner =
        ((lo / GRID_STEP).floor() as i64 + 1..=(hi / GRID_STEP).ceil() as i64 - 1).map(|k| k as f64 * GRID_STEP);
    std::iter::once(lo).chain(inner).chain(std::iter::once(hi)).collect()
}

/// The families of `rows` in chart order: scalar, sparse, vector, then the others by name.
fn families(rows: &[Row]) -> Vec<&str> {
    let mut f: Vec<&str> = rows.iter().map(|r| r.family.as_str()).collect();
    let key = |s: &str| (KNOWN_FAMILIES.iter().position(|k| *k == s).unwrap_or(KNOWN_FAMILIES.len()), s.to_string());
    f.sort_by_key(|s| key(s));
    f.dedup();
    f
}

/// The chart of `rows` (log GMSE against linear bits per element), with the series, in
/// drawing order: [`SHANNON`], [`LLOYD_MAX`] (both over [`grid`]), [`PARETO`] (the rows with
/// `pareto`, by bits), then one labelled point series per family (named after it), with
/// error bars `gmse ± gmse_stderr` where the standard error is finite and positive.
pub fn rank_chart(rows: &[Row], title: &str) -> Chart {
    let g = grid(rows);
    let mut chart = Chart::new(title, Axis::linear(X_LABEL), Axis::log(Y_LABEL))
        .with_series(Series::line(SHANNON, g.iter().map(|&b| (b, shannon_bound(b)))).with_color(SHANNON_COLOR))
        .with_series(
            Series::line(LLOYD_MAX, g.iter().map(|&b| (b, rank::lloyd_max_at(b)))).with_color(LLOYD_MAX_COLOR),
        );
    let mut front: Vec<&Row> = rows.iter().filter(|r| r.pareto).collect();
    front.sort_by(|a, b| a.bits_per_element.total_cmp(&b.bits_per_element).then(b.gmse.total_cmp(&a.gmse)));
    chart = chart.with_series(
        Series::new(PARETO, Style::Line, front.iter().map(|r| (r.bits_per_element, r.gmse))).with_color(PARETO_COLOR),
    );
    for (i, fam) in families(rows).into_iter().enumerate() {
        let members: Vec<&Row> = rows.iter().filter(|r| r.family == fam).collect();
        let points = members
            .iter()
            .map(|r| {
                let (x, y, e) = (r.bits_per_element, r.gmse, r.gmse_stderr);
                if e.is_finite() && e > 0.0 { Point::with_err(x, y, y - e, y + e) } else { Point::new(x, y) }
            })
            .collect();
        chart = chart.with_series(
            Series::from_points(fam, Style::Points, points)
                .with_labels(members.iter().map(|r| r.format.as_str()))
                .with_color(FAMILY_COLORS[i % FAMILY_COLORS.len()]),
        );
    }
    chart
}

/// Writes the chart of `rows` as an SVG file of [`SIZE`] to `path`.
pub fn write(rows: &[Row], path: &Path) -> Result<(), String> {
    if rows.is_empty() {
        return Err(format!("--plot {}: no ranked formats to plot", path.display()));
    }
    let title = format!("GMSE vs bits per element, {} format{}", rows.len(), if rows.len() == 1 { "" } else { "s" });
    let svg =
        render_svg(&rank_chart(rows, &title), SIZE.0, SIZE.1).map_err(|e| format!("--plot {}: {e}", path.display()))?;
    std::fs::write(path, svg).map_err(|e| {
        format!("--plot: cannot write {}: {e}; check that its folder exists and is writable", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use host_core::engine::Measurement;
    use host_core::law::Law;
    use host_core::rank::{By, Entry};

    fn entry(name: &str, family: &str, bits: f64, gmse: f64, stderr: f64) -> Entry {
        Entry {
            format: name.into(),
            plugin: "p".into(),
            kind: "k".into(),
            family: family.into(),
            label: None,
            bits,
            bits_parts: vec![],
            parts: vec![],
            // Two tensors around `gmse`; `stderr` is taken as given by `rank`.
            m: Measurement {
                gmse,
                stderr,
                samples: 2048,
                per_tensor: vec![gmse * 0.99, gmse * 1.01],
                reached_target: true,
            },
        }
    }

    /// Scalar int4 and e2m1 (near their real GMSE), a sparse, a vector and an unknown family.
    fn rows() -> Vec<Row> {
        let entries = vec![
            entry("int4", "scalar", 4.25, 0.0110, 1e-5),
            entry("e2m1", "scalar", 4.0, 0.0130, 1e-5),
            entry("sparse50", "sparse", 8.5, 0.3000, 1e-3),
            entry("vq2", "vector", 2.0, 0.1000, 1e-4),
            entry("odd<&>", "mystery", 6.0, 0.0500, f64::INFINITY),
        ];
        rank::rank(entries, &Law::default_law(), By::Rho, None)
    }

    fn series<'a>(c: &'a Chart, name: &str) -> &'a Series {
        c.series.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no series {name:?}"))
    }

    #[test]
    fn chart_has_families_front_and_references() {
        let rows = rows();
        let c = rank_chart(&rows, "t");
        let names: Vec<&str> = c.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [SHANNON, LLOYD_MAX, PARETO, "scalar", "sparse", "vector", "mystery"]);
        assert!(!c.x.log && c.y.log);
        assert_eq!((c.x.label.as_str(), c.y.label.as_str()), (X_LABEL, Y_LABEL));

        // Family points: bits, GMSE, error bars of ± stderr, labelled by format.
        let scalar = series(&c, "scalar");
        assert_eq!(scalar.style, Style::Points);
        assert_eq!(scalar.labels, ["int4", "e2m1"]); // rank order: int4 has the lower GMSE
        assert_eq!(scalar.points[0], Point::with_err(4.25, 0.0110, 0.0110 - 1e-5, 0.0110 + 1e-5));
        assert_eq!(scalar.points[1], Point::with_err(4.0, 0.0130, 0.0130 - 1e-5, 0.0130 + 1e-5));
        assert_eq!(series(&c, "sparse").labels, ["sparse50"]);
        // An infinite standard error (a single tensor) draws no error bar.
        assert_eq!(series(&c, "mystery").points, [Point::new(6.0, 0.05)]);

        // Pareto front: e2m1 (4.0 bits) and int4 (4.25, less error) and vq2 (2.0); sparse50 and
        // odd (more bits and more error than int4) are dominated. Sorted by bits.
        let front: Vec<(f64, f64)> = series(&c, PARETO).points.iter().map(|p| (p.x, p.y)).collect();
        assert_eq!(front, [(2.0, 0.1), (4.0, 0.013), (4.25, 0.011)]);
        assert_eq!(series(&c, PARETO).style, Style::Line);

        // References over 0.5 .. 8.5 bits (the rows span 2 .. 8.5).
        let lm = series(&c, LLOYD_MAX);
        let sh = series(&c, SHANNON);
        // 0.5, 0.625, ..., 8.5: 65 points.
        assert_eq!(lm.points.len(), 65);
        assert_eq!((lm.points[0].x, lm.points[64].x), (0.5, 8.5));
        for (p, q) in lm.points.iter().zip(&sh.points) {
            assert_eq!(p.x, q.x);
            assert_eq!(p.y, rank::lloyd_max_at(p.x));
            // 4^-x computed independently; equal to rounding.
            assert!((q.y - (-2.0 * q.x * std::f64::consts::LN_2).exp()).abs() <= 1e-14 * q.y, "{q:?}");
            // The bound lies below the best scalar quantizer everywhere.
            assert!(q.y < p.y, "{p:?} {q:?}");
        }
        // Spot values: Lloyd-Max at 4 bits is 0.009501 (the known table value), Shannon 4^-4.
        let at4 = lm.points.iter().position(|p| (p.x - 4.0).abs() < 1e-12).expect("4 bits on the grid");
        assert!((lm.points[at4].y - 0.0095010).abs() < 1e-6);
        assert!((sh.points[at4].y - 1.0 / 256.0).abs() < 1e-15);
    }

    #[test]
    fn grid_spans_the_rows() {
        let mut rows = rows();
        // At least 0.5 .. max, and lower when a format has fewer bits; ends not on the step
        // are kept as they are.
        rows[0].bits_per_element = 0.3;
        rows[2].bits_per_element = 8.55;
        let g = grid(&rows);
        assert_eq!((g[0], g[1], g[2]), (0.3, 0.375, 0.5));
        assert_eq!(&g[g.len() - 2..], [8.5, 8.55]);
        assert!(g.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= GRID_STEP));
        // Every whole bit is on the grid (where Lloyd-Max has its kinks).
        assert!((1..=8).all(|b| g.contains(&(b as f64))));
        assert_eq!(grid(&[]).first(), Some(&0.5));
        assert_eq!(grid(&[]).last(), Some(&8.0));
    }

    #[test]
    fn svg_has_axes_names_and_labels() {
        let rows = rows();
        let svg = render_svg(&rank_chart(&rows, "Ranked"), SIZE.0, SIZE.1).unwrap();
        if let Some(dir) = std::env::var_os("HOST_PLOT_DIR") {
            std::fs::write(Path::new(&dir).join("rankplot-unit.svg"), &svg).unwrap();
        }
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .map(|t| t.split_once('>').unwrap().1.split("</text>").next().unwrap().trim())
            .collect();
        for want in ["Ranked", X_LABEL, Y_LABEL, SHANNON, LLOYD_MAX, PARETO, "scalar", "sparse", "vector", "mystery"] {
            assert_eq!(texts.iter().filter(|t| **t == want).count(), 1, "{want:?} not once in {texts:?}");
        }
        // Each format name once, as a point label (escaped).
        for want in ["int4", "e2m1", "sparse50", "vq2", "odd&lt;&amp;&gt;"] {
            assert_eq!(texts.iter().filter(|t| **t == want).count(), 1, "{want:?} not once in {texts:?}");
        }
    }

    #[test]
    fn write_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("rankplot-{}", std::process::id()));
        let e = write(&rows(), &dir.join("missing/x.svg")).unwrap_err();
        assert!(e.contains("missing/x.svg") && e.contains("cannot write"), "{e}");
        assert!(write(&[], Path::new("x.svg")).unwrap_err().contains("no ranked formats"));
    }
}
