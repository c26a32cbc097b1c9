//! `host fit --plot DIR`: rho vs GMSE (implied rho with error bars, the fitted
//! curve with its bootstrap band) and loss vs N per configuration.

use std::collections::BTreeMap;

use super::model::LawKind;
use super::report::Report;
use super::solve::intervals;
use host_plot::{Axis, Chart, Point, Series, Style, render_svg};

/// Pixel size of every plot.
const SIZE: (u32, u32) = (900, 600);

/// Points of a log-spaced grid from `lo` to `hi`.
fn log_grid(lo: f64, hi: f64, n: usize) -> impl Iterator<Item = f64> {
    let (a, b) = (lo.ln(), hi.ln());
    (0..n).map(move |i| (a + (b - a) * i as f64 / (n - 1) as f64).exp())
}

/// Both plots: (file name, SVG).
pub fn plots(r: &Report) -> Result<Vec<(String, String)>, String> {
    Ok(vec![("rho-vs-gmse.svg".into(), rho_vs_gmse(r)?), ("loss-vs-n.svg".into(), loss_vs_n(r)?)])
}

fn rho_vs_gmse(r: &Report) -> Result<String, String> {
    let m = &r.main;
    let layout = &m.setup.layout;
    let mut chart = Chart::new(
        format!("capacity vs Gaussian MSE: {} law ({} runs)", layout.law.name(), r.runs.len()),
        Axis::log("Gaussian MSE (GMSE)"),
        Axis::linear("capacity rho").with_range(0.0, 1.05),
    );
    let gmses: Vec<f64> = r.runs.iter().flat_map(|x| x.comps().map(|c| c.gmse)).filter(|g| *g > 0.0).collect();
    let lo = gmses.iter().copied().fold(f64::INFINITY, f64::min).min(1e-3) / 2.0;
    let mut families: Vec<String> = r.runs.iter().flat_map(|x| x.comps().map(|c| c.family.clone())).collect();
    families.sort();
    families.dedup();
    let fam_color = |f: &str| families.iter().position(|x| x == f).unwrap_or(0);
    if matches!(layout.law, LawKind::Unified | LawKind::Logistic | LawKind::Logistic10) {
        for fam in &layout.families {
            let grid: Vec<f64> = log_grid(lo, 0.999, 120).collect();
            let curve = grid.iter().map(|&g| (g, layout.rho_of(&m.fit.params, fam, g, None)));
            let band = grid.iter().filter_map(|&g| {
                let v = m.samples.iter().map(|s| layout.rho_of(s, fam, g, None)).collect();
                intervals(v).map(|(c68, _)| (g, c68.0, c68.1))
            });
            chart = chart.with_series(
                Series::line(format!("{} law, {fam} (68 % band)", layout.law.name()), curve)
                    .with_band(band)
                    .with_color(fam_color(fam)),
            );
        }
    }
    let mut single: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    let mut paired = Vec::new();
    for i in &r.implied {
        let err = |p: f64| {
            i.implied_ci68.map_or(Point::new(i.comps[0].2, p), |(a, b)| Point::with_err(i.comps[0].2, p, a, b))
        };
        match i.comps.as_slice() {
            [(_, fam, _)] => single.entry(fam.clone()).or_default().push(err(i.implied)),
            [(_, _, gw), (_, _, ga)] if (gw - ga).abs() <= 1e-12 * gw.abs() => {
                let s = i.implied.sqrt();
                let p = match i.implied_ci68 {
                    Some((a, b)) => Point::with_err(*gw, s, a.max(0.0).sqrt(), b.sqrt()),
                    None => Point::new(*gw, s),
                };
                paired.push(p);
            }
            _ => {}
        }
    }
    for (fam, pts) in single {
        chart = chart.with_series(
            Series::from_points(format!("implied rho, {fam} (decoupled fit, 68 %)"), Style::Points, pts)
                .with_color(fam_color(&fam)),
        );
    }
    if !paired.is_empty() {
        let s = Series::from_points("sqrt(implied rho), W and A at equal GMSE", Style::Points, paired);
        chart = chart.with_series(s.with_color(families.len()));
    }
    render_svg(&chart, SIZE.0, SIZE.1)
}

fn loss_vs_n(r: &Report) -> Result<String, String> {
    let m = &r.main;
    let layout = &m.setup.layout;
    let mut chart = Chart::new(
        format!("loss vs N: observed (points) and the {} law (lines)", layout.law.name()),
        Axis::log("non-embedding parameters N"),
        Axis::log("loss"),
    );
    let mut by_key: BTreeMap<String, Vec<&super::data::Run>> = BTreeMap::new();
    for run in &r.runs {
        by_key.entry(run.key().unwrap_or_else(|| "uncompressed".into())).or_default().push(run);
    }
    for (k, (key, runs)) in by_key.into_iter().enumerate() {
        let mut tpp: Vec<f64> = runs.iter().map(|x| x.d / x.n).collect();
        tpp.sort_by(f64::total_cmp);
        let ratio = tpp[tpp.len() / 2];
        let proto = runs[0];
        let (lo, hi) = runs.iter().fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x.n), b.max(x.n)));
        let line: Vec<(f64, f64)> = log_grid(lo, hi.max(lo * 1.01), 40)
            .map(|n| {
                let run = super::data::Run { n, d: ratio * n, ..proto.clone() };
                let pre = layout.precompute(std::slice::from_ref(&run));
                (n, layout.predict(&m.fit.params, &pre[0], None))
            })
            .collect();
        chart = chart.with_series(Series::points(key.clone(), runs.iter().map(|x| (x.n, x.loss))).with_color(k));
        chart = chart.with_series(Series::line(format!("{key}: law, D = {ratio:.0} N"), line).with_color(k));
    }
    render_svg(&chart, SIZE.0, SIZE.1)
}
