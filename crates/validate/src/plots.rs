//! `host validate --plot DIR`: loss vs GMSE per model size (mean over seeds
//! with the seeds' SD as error bars) and held-out predicted vs observed loss.

use super::Validation;
use super::stats;
use super::study::{Class, Config};
use host_plot::{Axis, Chart, Point, Series, Style, render_svg};

/// Pixel size of every plot.
const SIZE: (u32, u32) = (900, 600);

/// A file-name-safe form of a size label.
fn slug(s: &str) -> String {
    let t: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    t.trim_matches('_').to_string()
}

/// Mean loss with a +-1 seed-SD error bar (none for a single seed).
fn point(x: f64, c: &Config) -> Point {
    let m = c.mean();
    match stats::sd(&c.losses) {
        Some(sd) => Point::with_err(x, m, m - sd, m + sd),
        None => Point::new(x, m),
    }
}

/// Every chart: (file name, SVG or why not).
pub fn plots(v: &Validation) -> Vec<(String, Result<String, String>)> {
    let mut out = vec![("loss-vs-gmse.svg".to_string(), all_sizes(v))];
    for (i, s) in v.study.sizes.iter().enumerate() {
        out.push((format!("loss-vs-gmse-{}.svg", slug(&s.label)), one_size(v, i)));
    }
    if v.held_out.is_ok() {
        out.push(("held-out.svg".to_string(), held_out(v)));
    }
    out
}

/// Palette index of a class, the same in every chart.
fn color(c: Class) -> usize {
    match c {
        Class::Scalar => 0,
        Class::Sparse => 1,
        Class::Vector => 2,
        Class::Other => 3,
        Class::Pair => 4,
        Class::None => 7,
    }
}

/// Weight-only compressed configurations (they have one GMSE).
fn weight_only(c: &Config) -> bool {
    c.class != Class::None && c.class != Class::Pair && c.w_gmse() > 0.0
}

fn all_sizes(v: &Validation) -> Result<String, String> {
    let st = &v.study;
    let mut chart = Chart::new(
        "mean validation loss vs GMSE per model size: scalar weight-only formats (bars: +-1 seed SD)",
        Axis::log("Gaussian MSE of the weight format"),
        Axis::linear("validation loss (mean over seeds)"),
    );
    for (i, s) in st.sizes.iter().enumerate() {
        let mut cs: Vec<&Config> = st.at(i).filter(|c| c.class == Class::Scalar && c.w_gmse() > 0.0).collect();
        cs.sort_by(|a, b| a.w_gmse().total_cmp(&b.w_gmse()));
        let pts: Vec<Point> = cs.iter().map(|c| point(c.w_gmse(), c)).collect();
        chart = chart.with_series(Series::from_points(s.label.clone(), Style::LineAndPoints, pts).with_color(i));
    }
    render_svg(&chart, SIZE.0, SIZE.1)
}

fn one_size(v: &Validation, i: usize) -> Result<String, String> {
    let st = &v.study;
    let size = &st.sizes[i];
    let mut chart = Chart::new(
        format!("{}: mean validation loss vs weight GMSE (bars: +-1 seed SD)", size.label),
        Axis::log("Gaussian MSE of the weight format"),
        Axis::linear("validation loss (mean over seeds)"),
    );
    let shown: Vec<&Config> = st.at(i).filter(|c| weight_only(c)).collect();
    let (lo, hi) = shown.iter().fold((f64::INFINITY, 0.0f64), |(a, b), c| (a.min(c.w_gmse()), b.max(c.w_gmse())));
    if let Some(base) = st.at(i).find(|c| c.class == Class::None)
        && lo.is_finite()
    {
        let m = base.mean();
        chart = chart.with_series(Series::line("uncompressed", [(lo / 1.5, m), (hi * 1.5, m)]).with_color(7));
    }
    for class in [Class::Scalar, Class::Sparse, Class::Vector, Class::Other] {
        let cs: Vec<&&Config> = shown.iter().filter(|c| c.class == class).collect();
        if cs.is_empty() {
            continue;
        }
        let pts: Vec<Point> = cs.iter().map(|c| point(c.w_gmse(), c)).collect();
        let s = Series::from_points(class.name(), Style::Points, pts)
            .with_color(color(class))
            .with_labels(cs.iter().map(|c| c.name()));
        chart = chart.with_series(s);
    }
    render_svg(&chart, SIZE.0, SIZE.1)
}

fn held_out(v: &Validation) -> Result<String, String> {
    let st = &v.study;
    let Ok(h) = &v.held_out else {
        return Err("no held-out predictions".into());
    };
    let mut chart = Chart::new(
        "held-out formats: loss predicted from GMSE by the law fitted without them",
        Axis::linear("observed validation loss (mean over seeds)"),
        Axis::linear("predicted validation loss (bars: +-2 seed SDs of the size)"),
    );
    let all: Vec<f64> =
        h.formats.iter().flat_map(|f| f.predictions.iter().flat_map(|p| [p.observed, p.predicted])).collect();
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    if lo.is_finite() {
        chart = chart.with_series(Series::line("predicted = observed", [(lo, lo), (hi, hi)]).with_color(7));
    }
    for class in Class::ALL {
        let mut pts = Vec::new();
        let mut labels = Vec::new();
        for f in h.formats.iter().filter(|f| f.class == class) {
            for p in &f.predictions {
                let sd = st.sizes[p.size].pooled.map(|x| x.sd);
                pts.push(match sd {
                    Some(sd) => {
                        Point::with_err(p.observed, p.predicted, p.predicted - 2.0 * sd, p.predicted + 2.0 * sd)
                    }
                    None => Point::new(p.observed, p.predicted),
                });
                labels.push(format!("{} {}", f.name, st.sizes[p.size].label));
            }
        }
        if !pts.is_empty() {
            chart = chart.with_series(
                Series::from_points(class.name(), Style::Points, pts).with_color(color(class)).with_labels(labels),
            );
        }
    }
    render_svg(&chart, SIZE.0, SIZE.1)
}
