//! `host-plot`: plain chart data in, an SVG document out. Used by `host-fit`, `host-report`
//! and `host-validate`.
//!
//! Owns: chart layout on top of plotters (log axes, ticks, clipping, label placement). Never:
//! knows formats, laws, runs or any other `host-*` crate; reads or writes no file.
//!
//! Small SVG charts: plain data in ([`Chart`]), an SVG document out ([`render_svg`]).
//!
//! Used by `host fit` (data points with error bars and the fitted law with its
//! confidence band), and meant for `host report` / `host rank --plot`.
//!
//! Drawing is done by `plotters`' SVG backend. It is built without a font
//! backend (no `ttf`, no `ab_glyph`), so plotters uses its "naive" font module:
//! text extents are only *estimated* for layout, and every label is written as
//! an SVG `<text>` element that the viewer renders with its own fonts. Nothing
//! needs system fonts or fontconfig, neither at build time nor at run time.
//!
//! Log axes are handled here, not by plotters' `LogCoord`: values are mapped to
//! `log10` before drawing and the tick labels are written back in data units.
//! That keeps one coordinate type for all four lin/log combinations and gives
//! usable ticks on log axes that span less than a decade (where plotters' own
//! log ticks can come out empty). Everything is clipped to the plotting area
//! here as well, since the SVG backend does not clip.
//!
//! What plotters draws: the caption, axes, mesh, tick labels, polygons (bands),
//! paths (lines), error bars, markers and the legend box. What is written here,
//! because plotters 0.3 has no equivalent: the tick values and their labels
//! (decade and 1-2-5 ticks on short log ranges, significant-digit labels),
//! clipping of lines and bands at the plotting area (plotters moves out-of-range
//! points onto the edge instead, plotters-rs/plotters#429 and #622), the choice
//! of the legend corner that covers the fewest points, and the placement of point
//! labels where they overlap the fewest labels, markers, lines and the legend.

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A chart: a title, two axes and the data series drawn on them.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Caption drawn above the plotting area.
    pub title: String,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// Series, drawn in order (later ones on top); each gets the next palette colour.
    pub series: Vec<Series>,
}

/// One axis of a [`Chart`].
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Axis description, drawn next to the axis.
    pub label: String,
    /// Logarithmic (base 10) scale. Values `<= 0` cannot be shown on it and are skipped.
    pub log: bool,
    /// Shown range `(lo, hi)` in data units, `lo < hi` (both `> 0` on a log axis);
    /// `None`: the range of the data plus a 5 % margin on each side.
    /// Data outside an explicit range is clipped.
    pub range: Option<(f64, f64)>,
}

/// A named data series of a [`Chart`].
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Name shown in the legend.
    pub name: String,
    /// How the points are drawn.
    pub style: Style,
    /// Data points. Lines join them in the given order; points with a NaN or
    /// infinite coordinate, or a non-positive one on a log axis, are skipped
    /// (a line then joins the neighbours of the skipped point).
    pub points: Vec<Point>,
    /// `(x, y_lo, y_hi)`, sorted by `x`: a translucent band in the series colour,
    /// drawn beneath all lines and points (e.g. a confidence band). May be empty;
    /// fewer than two valid entries draw nothing.
    /// Entries with a non-finite value are skipped; on a log y axis a
    /// non-positive `y_lo` is drawn at the bottom edge and a non-positive `y_hi`
    /// skips the entry.
    pub band: Vec<(f64, f64, f64)>,
    /// Palette index to draw with instead of the series' position (gives a data series and
    /// the curve fitted to it one colour).
    pub color: Option<usize>,
    /// Text labels of the points: `labels[i]` is written next to `points[i]`. May be shorter
    /// than `points` or empty (no labels); an empty string labels nothing. Labels of skipped or
    /// clipped points are not drawn. Each label is placed beside its point where it covers the
    /// fewest other labels, markers, error bars, lines and the legend (see [`render_svg`]).
    pub labels: Vec<String>,
}

/// One data point of a [`Series`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Horizontal coordinate.
    pub x: f64,
    /// Vertical coordinate.
    pub y: f64,
    /// Vertical error bar `(lo, hi)` as absolute y values (not offsets from `y`).
    /// On a log y axis a non-positive `lo` is drawn down to the bottom edge.
    pub y_err: Option<(f64, f64)>,
}

/// How a [`Series`] is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Markers only (and error bars where given).
    Points,
    /// A polyline through the points, no markers (error bars still drawn where given).
    Line,
    /// A polyline with a marker at each point.
    LineAndPoints,
}

impl Chart {
    /// A chart with no series yet; add some with [`Chart::with_series`].
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        Chart { title: title.into(), x, y, series: Vec::new() }
    }

    /// Appends a series (builder style).
    pub fn with_series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }
}

impl Axis {
    /// A linear axis with its range taken from the data.
    pub fn linear(label: impl Into<String>) -> Self {
        Axis { label: label.into(), log: false, range: None }
    }

    /// A base-10 logarithmic axis with its range taken from the data.
    pub fn log(label: impl Into<String>) -> Self {
        Axis { label: label.into(), log: true, range: None }
    }

    /// Sets an explicit shown range `(lo, hi)` in data units (builder style).
    pub fn with_range(mut self, lo: f64, hi: f64) -> Self {
        self.range = Some((lo, hi));
        self
    }
}

impl Series {
    /// A series of the given style from plain `(x, y)` pairs, without band.
    pub fn new(name: impl Into<String>, style: Style, xy: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Series {
            name: name.into(),
            style,
            points: xy.into_iter().map(|(x, y)| Point::new(x, y)).collect(),
            band: Vec::new(),
            color: None,
            labels: Vec::new(),
        }
    }

    /// A [`Style::Points`] series from `(x, y)` pairs.
    pub fn points(name: impl Into<String>, xy: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Series::new(name, Style::Points, xy)
    }

    /// A [`Style::Line`] series from `(x, y)` pairs.
    pub fn line(name: impl Into<String>, xy: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Series::new(name, Style::Line, xy)
    }

    /// A series of the given style from [`Point`]s (which may carry error bars).
    pub fn from_points(name: impl Into<String>, style: Style, points: Vec<Point>) -> Self {
        Series { name: name.into(), style, points, band: Vec::new(), color: None, labels: Vec::new() }
    }

    /// Draws with palette colour `i` (builder style); see [`Series::color`].
    pub fn with_color(mut self, i: usize) -> Self {
        self.color = Some(i);
        self
    }

    /// Sets the shaded band `(x, y_lo, y_hi)` (builder style); see [`Series::band`].
    pub fn with_band(mut self, band: impl IntoIterator<Item = (f64, f64, f64)>) -> Self {
        self.band = band.into_iter().collect();
        self
    }

    /// Sets the point labels, one per point in order (builder style); see [`Series::labels`].
    pub fn with_labels<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.labels = labels.into_iter().map(Into::into).collect();
        self
    }
}

impl Point {
    /// A point without error bar.
    pub fn new(x: f64, y: f64) -> Self {
        Point { x, y, y_err: None }
    }

    /// A point with a vertical error bar from `lo` to `hi` (absolute y values).
    pub fn with_err(x: f64, y: f64, lo: f64, hi: f64) -> Self {
        Point { x, y, y_err: Some((lo, hi)) }
    }
}

/// Series colours, in order (the "Tableau 10" palette); series `i` gets `PALETTE[i % 10]`.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Smallest accepted `width` / `height` of [`render_svg`], in pixels.
pub const MIN_SIZE: (u32, u32) = (200, 150);

/// Renders `chart` as a standalone SVG document of `width` x `height` pixels.
///
/// Point labels ([`Series::labels`]) are `<text>` elements in a darker shade of their series'
/// colour. Each goes to the first of a few spots around its marker (right, left, above, below,
/// then diagonally and further out) that is inside the plotting area and overlaps nothing; where
/// every spot overlaps something, to the spot with the least overlap (weighted: other labels and
/// the legend most, then markers and error bars, then lines crossing it). Text widths are
/// estimated (0.62 em per character), as the viewer's font is unknown here.
///
/// Errors (one line, naming the chart's title): a size below [`MIN_SIZE`], an
/// invalid explicit axis range, or nothing drawable (no series, or every point
/// and band entry skipped as NaN/infinite/non-positive on a log axis).
pub fn render_svg(chart: &Chart, width: u32, height: u32) -> Result<String, String> {
    let title = &chart.title;
    if width < MIN_SIZE.0 || height < MIN_SIZE.1 {
        return Err(format!(
            "plot '{title}': size {width}x{height} is too small; use at least {}x{} pixels",
            MIN_SIZE.0, MIN_SIZE.1
        ));
    }
    let prepared: Vec<Prepared> = chart.series.iter().map(|s| prepare(s, &chart.x, &chart.y)).collect();
    let n_drawable: usize = prepared.iter().map(|p| p.points.len() + p.band.len()).sum();
    if n_drawable == 0 {
        let n_points: usize = chart.series.iter().map(|s| s.points.len() + s.band.len()).sum();
        return Err(format!(
            "plot '{title}': nothing to draw ({} series, {n_points} points/band entries, none finite{}); \
             check the data",
            chart.series.len(),
            if chart.x.log || chart.y.log { " and positive on the log axes" } else { "" }
        ));
    }
    let xr = axis_range(&chart.x, "x", title, prepared.iter().flat_map(|p| p.xs()))?;
    let yr = axis_range(&chart.y, "y", title, prepared.iter().flat_map(|p| p.ys()))?;
    let xt = ticks(xr, chart.x.log);
    let yt = ticks(yr, chart.y.log);

    let mut svg = String::new();
    draw(chart, &prepared, (xr, &xt), (yr, &yt), width, height, &mut svg)
        .map_err(|e| format!("plot '{title}': drawing failed: {e}"))?;
    Ok(svg)
}

/// A point in axis space (`log10` of the value on a log axis).
type Xy = (f64, f64);

/// A series mapped to axis space, invalid entries dropped.
struct Prepared {
    /// `(x, y, err)`, err = `(lo, hi)` with `lo = -inf` for "down to the bottom edge".
    points: Vec<(f64, f64, Option<Xy>)>,
    /// `(x, lo, hi)`, `lo = -inf` for "down to the bottom edge".
    band: Vec<(f64, f64, f64)>,
    /// `(x, y, text)` of the labelled points among `points`.
    labels: Vec<(f64, f64, String)>,
}

impl Prepared {
    fn xs(&self) -> impl Iterator<Item = f64> + '_ {
        self.points.iter().map(|p| p.0).chain(self.band.iter().map(|b| b.0))
    }
    fn ys(&self) -> impl Iterator<Item = f64> + '_ {
        let pts = self.points.iter().flat_map(|&(_, y, e)| {
            let (lo, hi) = e.unwrap_or((y, y));
            [y, lo, hi]
        });
        pts.chain(self.band.iter().flat_map(|b| [b.1, b.2])).filter(|v| v.is_finite())
    }
}

/// Maps a value to axis space; `None` if it cannot be shown.
fn to_axis(v: f64, log: bool) -> Option<f64> {
    if !v.is_finite() {
        None
    } else if log {
        (v > 0.0).then(|| v.log10())
    } else {
        Some(v)
    }
}

/// Like [`to_axis`] for a lower bound: a non-positive value on a log axis maps to `-inf`.
fn to_axis_lo(v: f64, log: bool) -> Option<f64> {
    if log && v <= 0.0 { Some(f64::NEG_INFINITY) } else { to_axis(v, log) }
}

fn prepare(s: &Series, x: &Axis, y: &Axis) -> Prepared {
    let mut labels = Vec::new();
    let points = s
        .points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let px = to_axis(p.x, x.log)?;
            let py = to_axis(p.y, y.log)?;
            let err = p.y_err.and_then(|(lo, hi)| {
                let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                Some((to_axis_lo(lo, y.log)?, to_axis(hi, y.log)?))
            });
            if let Some(t) = s.labels.get(i).filter(|t| !t.is_empty()) {
                labels.push((px, py, t.clone()));
            }
            Some((px, py, err))
        })
        .collect();
    let band = s
        .band
        .iter()
        .filter_map(|&(bx, lo, hi)| {
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            Some((to_axis(bx, x.log)?, to_axis_lo(lo, y.log)?, to_axis(hi, y.log)?))
        })
        .collect();
    Prepared { points, band, labels }
}

/// The shown range of an axis in axis space.
fn axis_range(axis: &Axis, which: &str, title: &str, data: impl Iterator<Item = f64>) -> Result<Xy, String> {
    if let Some((lo, hi)) = axis.range {
        let bad = || {
            format!(
                "plot '{title}': {which} axis range ({lo}, {hi}) is invalid; it needs finite lo < hi{}",
                if axis.log { ", both > 0 on a log axis" } else { "" }
            )
        };
        let (l, h) = (to_axis(lo, axis.log).ok_or_else(bad)?, to_axis(hi, axis.log).ok_or_else(bad)?);
        if l >= h {
            return Err(bad());
        }
        return Ok((l, h));
    }
    let (lo, hi) = data.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !(lo.is_finite() && hi.is_finite()) {
        // Only happens for an axis whose data are all "down to the edge" bounds; cannot occur
        // for x, and for y every drawable entry has a finite y or y_hi. Keep a sane default.
        return Ok(if axis.log { (-1.0, 1.0) } else { (0.0, 1.0) });
    }
    let (a, b) = if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()) {
        // A single value: half a decade (log), else 10 % of the value (1 for 0) on each side.
        let half = if axis.log {
            0.5
        } else if lo == 0.0 {
            1.0
        } else {
            lo.abs() * 0.1
        };
        (lo - half, hi + half)
    } else {
        let m = 0.05 * (hi - lo);
        (lo - m, hi + m)
    };
    if !(a.is_finite() && b.is_finite() && a < b) {
        return Err(format!(
            "plot '{title}': the {which} data span [{lo:e}, {hi:e}] is too wide to draw; set the {which} axis \
             range or use a log axis"
        ));
    }
    Ok((a, b))
}

/// Tick marks of one axis, in axis space, and their labels in data units.
struct Ticks {
    bold: Vec<f64>,
    light: Vec<f64>,
    labels: Vec<String>,
}

impl Ticks {
    fn label(&self, v: f64) -> String {
        let i = self.bold.iter().enumerate().min_by(|a, b| (a.1 - v).abs().total_cmp(&(b.1 - v).abs()));
        i.map(|(i, _)| self.labels[i].clone()).unwrap_or_default()
    }
}

fn ticks((lo, hi): Xy, log: bool) -> Ticks {
    if !log {
        let (vals, labels) = linear_ticks(lo, hi);
        return Ticks { bold: vals, light: Vec::new(), labels };
    }
    let (dlo, dhi) = ((lo - 1e-9).ceil() as i64, (hi + 1e-9).floor() as i64);
    let inside = |t: f64| t >= lo - 1e-12 && t <= hi + 1e-12;
    if dhi - dlo + 1 >= 3 {
        // At least three decades: decade ticks (every `stride`-th one if there are many).
        let stride = ((dhi - dlo + 1) as f64 / 8.0).ceil().max(1.0) as i64;
        let bold: Vec<i64> = (dlo..=dhi).filter(|d| d.rem_euclid(stride) == 0).collect();
        let light: Vec<f64> = if stride == 1 {
            (dlo - 1..=dhi)
                .flat_map(|d| (2..=9).map(move |m| (m as f64).log10() + d as f64))
                .filter(|&t| inside(t))
                .collect()
        } else {
            (dlo..=dhi).filter(|d| d.rem_euclid(stride) != 0).map(|d| d as f64).collect()
        };
        let sci = bold.iter().any(|d| !(-3..=4).contains(d));
        let labels = bold.iter().map(|&d| if sci { format!("1e{d}") } else { fmt_sig(10f64.powi(d as i32)) }).collect();
        return Ticks { bold: bold.iter().map(|&d| d as f64).collect(), light, labels };
    }
    // Less than three decades: 1-2-5 or 1..9 times powers of ten, else linear ticks in data units.
    for mantissas in [&[1.0, 2.0, 5.0][..], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..]] {
        let vals: Vec<f64> = (lo.floor() as i64..=hi.ceil() as i64)
            .flat_map(|d| mantissas.iter().map(move |m| m * 10f64.powi(d as i32)))
            .filter(|v| inside(v.log10()))
            .collect();
        if vals.len() >= 3 {
            let labels = fmt_sig_all(&vals);
            return Ticks { bold: vals.iter().map(|v| v.log10()).collect(), light: Vec::new(), labels };
        }
    }
    let (vals, labels) = linear_ticks(10f64.powf(lo), 10f64.powf(hi));
    let keep: Vec<usize> = (0..vals.len()).filter(|&i| vals[i] > 0.0).collect();
    Ticks {
        bold: keep.iter().map(|&i| vals[i].log10()).collect(),
        light: Vec::new(),
        labels: keep.iter().map(|&i| labels[i].clone()).collect(),
    }
}

/// "Nice" ticks (steps of 1, 2, 2.5 or 5 times a power of ten, about 6 of them) in `[lo, hi]`.
fn linear_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<String>) {
    let raw = (hi - lo) / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let (m, extra_digit) = match norm {
        n if n < 1.5 => (1.0, 0),
        n if n < 2.25 => (2.0, 0),
        n if n < 3.5 => (2.5, 1),
        n if n < 7.5 => (5.0, 0),
        _ => (10.0, 0),
    };
    let step = m * mag;
    let (k0, k1) = ((lo / step - 1e-9).ceil() as i64, (hi / step + 1e-9).floor() as i64);
    let vals: Vec<f64> = (k0..=k1).map(|k| k as f64 * step).collect();
    let maxabs = lo.abs().max(hi.abs());
    let labels = vals
        .iter()
        .map(|&v| {
            if v.abs() < step * 1e-6 {
                "0".to_string()
            } else if (1e-3..1e6).contains(&maxabs) && step >= 1e-4 {
                let decimals = (-(step.log10().floor()) as i64 + extra_digit).max(0) as usize;
                format!("{v:.decimals$}")
            } else {
                let p = ((maxabs.log10().floor() - step.log10().floor()) as i64 + extra_digit).clamp(0, 15) as usize;
                trim_exp(&format!("{v:.p$e}"))
            }
        })
        .collect();
    (vals, labels)
}

/// [`fmt_sig`] of each value, but all in scientific notation if any one needs it.
fn fmt_sig_all(vals: &[f64]) -> Vec<String> {
    if vals.iter().all(|v| (1e-3..1e5).contains(&v.abs())) {
        vals.iter().map(|&v| fmt_sig(v)).collect()
    } else {
        vals.iter().map(|&v| trim_exp(&format!("{v:.2e}"))).collect()
    }
}

/// `v` with up to 3 significant digits, trailing zeros trimmed; scientific outside `[1e-3, 1e5)`.
fn fmt_sig(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if (1e-3..1e5).contains(&a) {
        let decimals = (2 - a.log10().floor() as i64).max(0) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
    } else {
        trim_exp(&format!("{v:.2e}"))
    }
}

/// `"2.50e-7"` -> `"2.5e-7"`, `"1.00e3"` -> `"1e3"`.
fn trim_exp(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) if m.contains('.') => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
        _ => s.to_string(),
    }
}

/// Clips segment `p`-`q` to the box (Liang-Barsky); returns the clipped ends and their parameters.
fn clip_segment(p: Xy, q: Xy, (x0, x1): Xy, (y0, y1): Xy) -> Option<(Xy, Xy, f64, f64)> {
    let (dx, dy) = (q.0 - p.0, q.1 - p.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (den, num) in [(-dx, p.0 - x0), (dx, x1 - p.0), (-dy, p.1 - y0), (dy, y1 - p.1)] {
        if den == 0.0 {
            if num < 0.0 {
                return None;
            }
        } else {
            let t = num / den;
            if den < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    (t0 <= t1).then_some(((p.0 + t0 * dx, p.1 + t0 * dy), (p.0 + t1 * dx, p.1 + t1 * dy), t0, t1))
}

/// Clips a polyline to the box; returns the visible pieces.
fn clip_polyline(pts: &[Xy], xr: Xy, yr: Xy) -> Vec<Vec<Xy>> {
    fn flush(runs: &mut Vec<Vec<Xy>>, cur: &mut Vec<Xy>) {
        let run = std::mem::take(cur);
        if run.len() >= 2 {
            runs.push(run);
        }
    }
    let mut runs = Vec::new();
    let mut cur: Vec<Xy> = Vec::new();
    for w in pts.windows(2) {
        match clip_segment(w[0], w[1], xr, yr) {
            None => flush(&mut runs, &mut cur),
            Some((a, b, t0, t1)) => {
                if t0 > 0.0 || cur.is_empty() {
                    flush(&mut runs, &mut cur);
                    cur.push(a);
                }
                cur.push(b);
                if t1 < 1.0 {
                    flush(&mut runs, &mut cur);
                }
            }
        }
    }
    flush(&mut runs, &mut cur);
    runs
}

/// Clips a polygon to the box (Sutherland-Hodgman). `-inf` coordinates are clamped first.
fn clip_polygon(poly: &[Xy], (x0, x1): Xy, (y0, y1): Xy) -> Vec<Xy> {
    let mut out: Vec<Xy> = poly.iter().map(|&(x, y)| (x.clamp(x0 - 1.0, x1 + 1.0), y.max(y0 - 1.0))).collect();
    // Each edge: inside test and intersection of segment a-b with the edge line.
    let edges: [(usize, f64, bool); 4] = [(0, x0, true), (0, x1, false), (1, y0, true), (1, y1, false)];
    for (axis, c, keep_above) in edges {
        let input = std::mem::take(&mut out);
        let coord = |p: Xy| if axis == 0 { p.0 } else { p.1 };
        let inside = |p: Xy| if keep_above { coord(p) >= c } else { coord(p) <= c };
        let cut = |a: Xy, b: Xy| {
            let t = (c - coord(a)) / (coord(b) - coord(a));
            (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
        };
        for i in 0..input.len() {
            let (a, b) = (input[(i + input.len() - 1) % input.len()], input[i]);
            match (inside(a), inside(b)) {
                (true, true) => out.push(b),
                (true, false) => out.push(cut(a, b)),
                (false, true) => {
                    out.push(cut(a, b));
                    out.push(b);
                }
                (false, false) => {}
            }
        }
    }
    out
}

/// The legend corner with the fewest data points near it.
fn legend_corner(prepared: &[Prepared], (x0, x1): Xy, (y0, y1): Xy) -> SeriesLabelPosition {
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let count = |right: bool, upper: bool| {
        let fx = |x: f64| (x - x0) / (x1 - x0);
        let fy = |y: f64| (y - y0) / (y1 - y0);
        let near = |x: f64, y: f64| {
            let (u, v) = (fx(x), fy(y));
            (if right { u > 0.55 } else { u < 0.45 }) && (if upper { v > 0.55 } else { v < 0.45 })
        };
        prepared
            .iter()
            .map(|p| {
                p.points.iter().filter(|q| near(q.0, q.1)).count()
                    + p.band.iter().filter(|b| near(b.0, b.2) || near(b.0, b.1)).count()
            })
            .sum::<usize>()
    };
    // Stable: ties keep the earlier corner (upper right first).
    corners.into_iter().min_by_key(|&(_, r, u)| count(r, u)).map(|c| c.0).unwrap_or(SeriesLabelPosition::UpperRight)
}

/// A plotters axis in axis space whose tick marks and labels come from [`Ticks`].
struct AxisCoord<'a> {
    linear: RangedCoordf64,
    ticks: &'a Ticks,
}

impl Ranged for AxisCoord<'_> {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() { self.ticks.light.clone() } else { self.ticks.bold.clone() }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.linear.range()
    }
}

impl ValueFormatter<f64> for AxisCoord<'_> {
    fn format_ext(&self, value: &f64) -> String {
        self.ticks.label(*value)
    }
}

/// Font size of the legend (plotters units; the SVG `font-size` is this / 1.24).
const LEGEND_FONT: f64 = 13.0;
/// Font size of the point labels.
const LABEL_FONT: f64 = 12.0;

/// A box in pixels, `(x0, y0, x1, y1)` with `x0 <= x1`, `y0 <= y1`.
type PxBox = (f64, f64, f64, f64);

/// Area of the intersection of two boxes.
fn overlap(a: PxBox, b: PxBox) -> f64 {
    let w = (a.2.min(b.2) - a.0.max(b.0)).max(0.0);
    let h = (a.3.min(b.3) - a.1.max(b.1)).max(0.0);
    w * h
}

/// What a point label should not cover, in pixels.
struct Obstacles {
    /// The plotting area (labels stay inside).
    area: PxBox,
    /// The legend box.
    legend: PxBox,
    /// Markers and error bars.
    marks: Vec<PxBox>,
    /// Polylines.
    lines: Vec<Vec<Xy>>,
    /// The labels placed so far.
    labels: Vec<PxBox>,
}

/// Box of a label of `chars` characters for a point at pixel `(px, py)`: the spot around the
/// point that covers the least of `o` (see [`render_svg`]).
fn place_label(o: &Obstacles, (px, py): Xy, chars: usize) -> PxBox {
    let em = LABEL_FONT / 1.24;
    let (w, h) = (0.62 * em * chars as f64, em);
    const PAD: f64 = 4.0;
    let (g, d) = (5.0, 2.0);
    let spots = [
        (px + g, py - h / 2.0),
        (px - g - w, py - h / 2.0),
        (px - w / 2.0, py - g - h),
        (px - w / 2.0, py + g),
        (px + d, py - g - h),
        (px + d, py + g),
        (px - d - w, py - g - h),
        (px - d - w, py + g),
        (px + g, py - 1.5 * h - d),
        (px + g, py + 0.5 * h + d),
        (px - g - w, py - 1.5 * h - d),
        (px - g - w, py + 0.5 * h + d),
        (px - w / 2.0, py - g - 2.0 * h - d),
        (px - w / 2.0, py + g + h + d),
    ];
    let cost = |b: PxBox| {
        let outside = (b.2 - b.0) * (b.3 - b.1) - overlap(b, o.area);
        // Labels keep a gap of `PAD` px to each other.
        let padded = (b.0 - PAD, b.1 - PAD, b.2 + PAD, b.3 + PAD);
        let on_labels: f64 = o.labels.iter().map(|&l| overlap(padded, l)).sum::<f64>() + overlap(b, o.legend);
        let on_marks: f64 = o.marks.iter().map(|&m| overlap(b, m)).sum();
        let crossing = o
            .lines
            .iter()
            .filter(|l| l.windows(2).any(|s| clip_segment(s[0], s[1], (b.0, b.2), (b.1, b.3)).is_some()))
            .count();
        100.0 * outside + 20.0 * on_labels + 4.0 * on_marks + 300.0 * crossing as f64
    };
    let boxes = spots.iter().map(|&(x, y)| (x, y, x + w, y + h));
    // Ties (e.g. all free) keep the earlier, preferred spot; a small bias per rank breaks near-ties.
    boxes.enumerate().map(|(i, b)| (cost(b) + 0.5 * i as f64, b)).min_by(|a, b| a.0.total_cmp(&b.0)).unwrap().1
}

/// Draws the point labels of all series (see [`render_svg`]) on `root`, in pixels.
fn draw_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    ctx: &ChartContext<DB, Cartesian2d<AxisCoord, AxisCoord>>,
    chart: &Chart,
    prepared: &[Prepared],
    (xr, yr): (Xy, Xy),
    corner: &SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    if prepared.iter().all(|p| p.labels.is_empty()) {
        return Ok(());
    }
    let in_box = |x: f64, y: f64| x >= xr.0 && x <= xr.1 && y >= yr.0 && y <= yr.1;
    let px = |x: f64, y: f64| {
        let (a, b) = ctx.backend_coord(&(x, y));
        (a as f64, b as f64)
    };
    let (ax, ay) = ctx.plotting_area().get_pixel_range();
    let area = (ax.start as f64, ay.start as f64, ax.end as f64, ay.end as f64);
    // The legend box, computed as plotters lays it out (margin 10, 30 px of legend symbol,
    // 5 px from the corner, text extents estimated by its font module).
    let font: TextStyle = ("sans-serif", LEGEND_FONT).into();
    let mut names = MultiLineText::<_, String>::new((0, 0), &font);
    for (s, p) in chart.series.iter().zip(prepared) {
        let empty = p.points.is_empty() && p.band.is_empty();
        names.push_line(if empty { format!("{} (no data)", s.name) } else { s.name.clone() });
    }
    let (tw, th) = names.estimate_dimension().unwrap_or((0, 0));
    let (lw, lh) = ((tw + 50) as f64, (th + 20) as f64);
    let (aw, ah) = (area.2 - area.0, area.3 - area.1);
    let lx = if matches!(corner, SeriesLabelPosition::UpperLeft | SeriesLabelPosition::LowerLeft) {
        5.0
    } else {
        aw - lw - 5.0
    };
    let ly = if matches!(corner, SeriesLabelPosition::UpperLeft | SeriesLabelPosition::UpperRight) {
        5.0
    } else {
        ah - lh - 5.0
    };
    let legend = (area.0 + lx, area.1 + ly, area.0 + lx + lw, area.1 + ly + lh);

    let mut o = Obstacles { area, legend, marks: Vec::new(), lines: Vec::new(), labels: Vec::new() };
    for (s, p) in chart.series.iter().zip(prepared) {
        if matches!(s.style, Style::Line | Style::LineAndPoints) {
            let xy: Vec<Xy> = p.points.iter().map(|q| (q.0, q.1)).collect();
            for run in clip_polyline(&xy, xr, yr) {
                o.lines.push(run.iter().map(|&(x, y)| px(x, y)).collect());
            }
        }
        for &(x, y, e) in p.points.iter().filter(|q| in_box(q.0, q.1)) {
            let (cx, cy) = px(x, y);
            if matches!(s.style, Style::Points | Style::LineAndPoints) {
                o.marks.push((cx - 4.0, cy - 4.0, cx + 4.0, cy + 4.0));
            }
            if let Some((lo, hi)) = e {
                let (top, bottom) = (px(x, hi.min(yr.1)).1, px(x, lo.max(yr.0)).1);
                o.marks.push((cx - 3.0, top.min(bottom), cx + 3.0, top.max(bottom)));
            }
        }
    }
    for (i, p) in prepared.iter().enumerate() {
        let (r, g, b) = PALETTE[chart.series[i].color.unwrap_or(i) % PALETTE.len()];
        let shade = |c: u8| (c as f64 * 0.7).round() as u8;
        let dark = RGBColor(shade(r), shade(g), shade(b));
        let style =
            TextStyle::from(("sans-serif", LABEL_FONT).into_font()).color(&dark).pos(Pos::new(HPos::Left, VPos::Top));
        for (x, y, text) in p.labels.iter().filter(|l| in_box(l.0, l.1)) {
            let b = place_label(&o, px(*x, *y), text.chars().count());
            o.labels.push(b);
            root.draw(&Text::new(text.as_str(), (b.0.round() as i32, b.1.round() as i32), style.clone()))?;
        }
    }
    Ok(())
}

fn draw(
    chart: &Chart,
    prepared: &[Prepared],
    (xr, xt): (Xy, &Ticks),
    (yr, yt): (Xy, &Ticks),
    width: u32,
    height: u32,
    svg: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    // plotters' naive font estimates 0.7 * size / 1.24^2 px per character: 5.5 px at size 12.
    let widest = yt.labels.iter().map(|l| l.len()).max().unwrap_or(1) as u32;
    let y_area = (widest * 7 + 36).min(width / 3);
    let mut ctx = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(y_area)
        .build_cartesian_2d(
            AxisCoord { linear: (xr.0..xr.1).into(), ticks: xt },
            AxisCoord { linear: (yr.0..yr.1).into(), ticks: yt },
        )?;
    ctx.configure_mesh()
        .x_desc(chart.x.label.as_str())
        .y_desc(chart.y.label.as_str())
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 12))
        .light_line_style(RGBAColor(0, 0, 0, 0.05))
        .bold_line_style(RGBAColor(0, 0, 0, 0.15))
        .draw()?;

    let colour = |i: usize| {
        let (r, g, b) = PALETTE[chart.series[i].color.unwrap_or(i) % PALETTE.len()];
        RGBColor(r, g, b)
    };
    let in_box = |x: f64, y: f64| x >= xr.0 && x <= xr.1 && y >= yr.0 && y <= yr.1;

    // Bands first, so that every line and marker lies on top of them.
    for (i, p) in prepared.iter().enumerate() {
        if p.band.len() < 2 {
            continue;
        }
        let mut poly: Vec<Xy> = p.band.iter().map(|b| (b.0, b.1)).collect();
        poly.extend(p.band.iter().rev().map(|b| (b.0, b.2)));
        let poly = clip_polygon(&poly, xr, yr);
        if poly.len() >= 3 {
            ctx.draw_series(std::iter::once(Polygon::new(poly, colour(i).mix(0.2).filled())))?;
        }
    }

    for (i, (s, p)) in chart.series.iter().zip(prepared).enumerate() {
        let c = colour(i);
        let line_style = c.stroke_width(2);
        let has_line = matches!(s.style, Style::Line | Style::LineAndPoints);
        let has_marker = matches!(s.style, Style::Points | Style::LineAndPoints);
        if has_line {
            let xy: Vec<Xy> = p.points.iter().map(|q| (q.0, q.1)).collect();
            let runs = clip_polyline(&xy, xr, yr);
            ctx.draw_series(runs.into_iter().map(|r| PathElement::new(r, line_style)))?;
        }
        let errs = p.points.iter().filter_map(|&(x, y, e)| {
            let (lo, hi) = e?;
            in_box(x, y).then(|| ErrorBar::new_vertical(x, lo.max(yr.0), y, hi.min(yr.1), c.stroke_width(1), 6))
        });
        ctx.draw_series(errs)?;
        if has_marker {
            let marks = p.points.iter().filter(|q| in_box(q.0, q.1)).map(|q| Circle::new((q.0, q.1), 3, c.filled()));
            ctx.draw_series(marks)?;
        }
        // The legend entry, on an empty series so that its order follows `chart.series`.
        let name =
            if p.points.is_empty() && p.band.is_empty() { format!("{} (no data)", s.name) } else { s.name.clone() };
        let anno = ctx.draw_series(std::iter::empty::<Circle<Xy, i32>>())?;
        anno.label(name);
        match s.style {
            Style::Points => anno.legend(move |(x, y)| Circle::new((x + 10, y), 3, c.filled())),
            Style::Line => anno.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))),
            Style::LineAndPoints => anno.legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (20, 0)], c.stroke_width(2))
                    + Circle::new((10, 0), 3, c.filled())
            }),
        };
    }
    let corner = legend_corner(prepared, xr, yr);
    draw_labels(&root, &ctx, chart, prepared, (xr, yr), &corner)?;
    ctx.configure_series_labels()
        .position(corner)
        .label_font(("sans-serif", LEGEND_FONT))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `doc` as XML (a well-formed document with one root, through `roxmltree`) and
    /// returns the trimmed, unescaped text contents of its elements.
    fn check_xml(doc: &str) -> Result<Vec<String>, String> {
        let d = roxmltree::Document::parse(doc).map_err(|e| e.to_string())?;
        Ok(d.descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text().map(str::trim).filter(|t| !t.is_empty()).map(String::from))
            .collect())
    }

    /// Writes `$HOST_PLOT_DIR/plot-NAME.svg` when that variable is set, for looking at the charts.
    fn dump(name: &str, svg: &str) {
        if let Some(dir) = std::env::var_os("HOST_PLOT_DIR") {
            std::fs::write(std::path::Path::new(&dir).join(format!("plot-{name}.svg")), svg).unwrap();
        }
    }

    fn count(doc: &str, pat: &str) -> usize {
        doc.matches(pat).count()
    }

    fn basic() -> Chart {
        Chart::new("Loss vs steps", Axis::linear("training step"), Axis::linear("validation loss"))
            .with_series(Series::points("measured", [(1.0, 3.0), (2.0, 2.5), (3.0, 2.2), (4.0, 2.1)]))
            .with_series(Series::line("fit", (0..=40).map(|i| (1.0 + i as f64 * 0.075, 2.0 + 1.0 / (1.0 + i as f64)))))
    }

    #[test]
    fn basic_chart_is_well_formed_and_labelled() {
        let svg = render_svg(&basic(), 640, 480).unwrap();
        dump("basic", &svg);
        assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let texts = check_xml(&svg).unwrap();
        for want in ["Loss vs steps", "training step", "validation loss", "measured", "fit"] {
            assert!(texts.iter().any(|t| t == want), "no <text> {want:?} in {texts:?}");
        }
        // Two distinct palette colours are used.
        assert!(svg.contains("#1F77B4") && svg.contains("#FF7F0E"), "palette colours missing");
        // 4 markers plus the legend marker of "measured".
        assert_eq!(count(&svg, "<circle"), 5);
        // Tick labels: linear x from 0.95 to 4.15 -> steps of 0.5 from 1.0 to 4.0.
        for t in ["1.0", "2.5", "4.0"] {
            assert!(texts.iter().any(|x| x == t), "tick {t} missing in {texts:?}");
        }
    }

    #[test]
    fn names_and_title_are_escaped() {
        let c = Chart::new("a < b & \"c\"", Axis::linear("x <1>"), Axis::linear("y & z"))
            .with_series(Series::points("s<&>", [(0.0, 1.0), (1.0, 2.0)]));
        let svg = render_svg(&c, 400, 300).unwrap();
        let texts = check_xml(&svg).unwrap();
        // Escaped in the document, so they parse back to the strings given.
        for want in ["a < b & \"c\"", "x <1>", "y & z", "s<&>"] {
            assert!(texts.iter().any(|t| t == want), "no <text> {want:?} in {texts:?}");
        }
    }

    fn loglog() -> Chart {
        // A power law with ±20 % error bars, the fit, and a band of ±30 % around the fit.
        let law = |n: f64| 5.0 * n.powf(-0.3);
        let data: Vec<Point> = [1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6]
            .iter()
            .map(|&n| Point::with_err(n, law(n) * 1.05, law(n) * 0.8, law(n) * 1.2))
            .collect();
        let grid: Vec<f64> = (0..=60).map(|i| 10f64.powf(2.8 + i as f64 * 0.06)).collect();
        Chart::new("Scaling law", Axis::log("parameters N"), Axis::log("loss"))
            .with_series(Series::from_points("runs", Style::Points, data))
            .with_series(
                Series::line("fit L = 5 N^-0.3", grid.iter().map(|&n| (n, law(n))))
                    .with_band(grid.iter().map(|&n| (n, law(n) * 0.7, law(n) * 1.3))),
            )
    }

    #[test]
    fn log_log_with_error_bars_and_band() {
        let svg = render_svg(&loglog(), 800, 560).unwrap();
        let texts = check_xml(&svg).unwrap();
        for want in ["Scaling law", "parameters N", "loss", "runs", "fit L = 5 N^-0.3"] {
            assert!(texts.iter().any(|t| t == want), "no <text> {want:?} in {texts:?}");
        }
        // x spans 10^2.8 .. 10^6.4 plus margins: decade ticks 1e3 .. 1e6 (all scientific,
        // as 1e5 and 1e6 need it).
        for t in ["1e3", "1e4", "1e5", "1e6"] {
            assert!(texts.iter().any(|x| x == t), "tick {t} missing in {texts:?}");
        }
        // Error bars: 3 lines each (2 caps + the bar) for 7 points, plus a centre circle each;
        // 7 markers + 7 error-bar circles + 1 legend circle.
        assert_eq!(count(&svg, "<circle"), 15);
        // The band: one translucent polygon in the fit colour.
        let band: Vec<&str> = svg.lines().filter(|l| l.starts_with("<polygon")).collect();
        assert_eq!(band.len(), 1, "{band:?}");
        assert!(band[0].contains("#FF7F0E") && band[0].contains("opacity=\"0.2\""), "{}", band[0]);
        // The band comes before (beneath) the fit line.
        let fit_line = svg.lines().position(|l| l.starts_with("<polyline") && l.contains("#FF7F0E")).unwrap();
        let (pb, pl) = (svg.lines().position(|l| l.starts_with("<polygon")).unwrap(), fit_line);
        assert!(pb < pl, "band drawn after the line");
        dump("example", &svg);
    }

    #[test]
    fn bad_points_are_skipped() {
        let pts = vec![
            Point::new(1.0, 1.0),
            Point::new(f64::NAN, 1.0),
            Point::new(2.0, f64::INFINITY),
            Point::new(-1.0, 2.0),                // x <= 0 on the log x axis
            Point::new(3.0, 0.0),                 // y <= 0 on the log y axis
            Point::with_err(4.0, 2.0, -1.0, 3.0), // lo <= 0: bar drawn to the bottom edge
            Point::new(5.0, 3.0),
        ];
        let c = Chart::new("bad", Axis::log("x"), Axis::log("y"))
            .with_series(Series::from_points("s", Style::Points, pts))
            .with_series(Series::points("all bad", [(f64::NAN, 1.0), (0.0, 1.0)]));
        let svg = render_svg(&c, 400, 300).unwrap();
        dump("bad", &svg);
        let texts = check_xml(&svg).unwrap();
        assert!(texts.iter().any(|t| t == "all bad (no data)"), "{texts:?}");
        // 3 markers + 1 error-bar circle + 1 legend circle per series.
        assert_eq!(count(&svg, "<circle"), 3 + 1 + 2);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "non-finite coordinate leaked");

        // Same points on linear axes: only the NaN and the infinite ones are skipped
        // (also in "all bad", whose (0, 1) is now valid).
        let mut lin = c.clone();
        lin.x.log = false;
        lin.y.log = false;
        let svg = render_svg(&lin, 400, 300).unwrap();
        check_xml(&svg).unwrap();
        // 5 + 1 markers, 1 error-bar circle, 2 legend circles.
        assert_eq!(count(&svg, "<circle"), 5 + 1 + 1 + 2);
    }

    #[test]
    fn empty_and_invalid_charts_are_errors() {
        let empty = Chart::new("empty", Axis::linear("x"), Axis::linear("y"));
        let e = render_svg(&empty, 400, 300).unwrap_err();
        assert!(e.contains("'empty'") && e.contains("nothing to draw"), "{e}");
        let all_bad = empty.clone().with_series(Series::points("s", [(f64::NAN, 1.0), (1.0, f64::INFINITY)]));
        assert!(render_svg(&all_bad, 400, 300).unwrap_err().contains("nothing to draw"));
        let neg_log =
            Chart::new("neg", Axis::log("x"), Axis::linear("y")).with_series(Series::points("s", [(-1.0, 1.0)]));
        assert!(render_svg(&neg_log, 400, 300).unwrap_err().contains("positive on the log axes"));
        let ok = basic();
        assert!(render_svg(&ok, 100, 300).unwrap_err().contains("too small"));
        let mut bad_range = ok.clone();
        bad_range.y.range = Some((2.0, 1.0));
        assert!(render_svg(&bad_range, 400, 300).unwrap_err().contains("y axis range"));
        let mut bad_log = ok.clone();
        bad_log.x = Axis::log("x").with_range(0.0, 10.0);
        assert!(render_svg(&bad_log, 400, 300).unwrap_err().contains("x axis range"));
    }

    #[test]
    fn degenerate_data() {
        // A single point on each kind of axis renders, with the value inside the range.
        for (xlog, ylog) in [(false, false), (true, true)] {
            let mut c =
                Chart::new("one", Axis::linear("x"), Axis::linear("y")).with_series(Series::points("p", [(3.0, 0.5)]));
            c.x.log = xlog;
            c.y.log = ylog;
            let svg = render_svg(&c, 300, 200).unwrap();
            check_xml(&svg).unwrap();
            assert_eq!(count(&svg, "<circle"), 2);
        }
        let zero =
            Chart::new("zero", Axis::linear("x"), Axis::linear("y")).with_series(Series::points("p", [(0.0, 0.0)]));
        check_xml(&render_svg(&zero, 300, 200).unwrap()).unwrap();
        // Values near f64::MAX: the linear span overflows -> an error, not a panic.
        let huge = Chart::new("huge", Axis::linear("x"), Axis::linear("y"))
            .with_series(Series::points("p", [(-1e308, 1.0), (1e308, 2.0)]));
        let e = render_svg(&huge, 300, 200).unwrap_err();
        assert!(e.contains("too wide"), "{e}");
        // ... but they are fine on a log axis.
        let mut huge_log = huge.clone();
        huge_log.series[0].points[0].x = 1e-308;
        huge_log.x.log = true;
        check_xml(&render_svg(&huge_log, 300, 200).unwrap()).unwrap();
    }

    #[test]
    fn explicit_range_clips() {
        // A line from (0,0) to (10,10) shown in [2,4]x[2,4]: one clipped piece, no marker outside.
        let c = Chart::new("clip", Axis::linear("x").with_range(2.0, 4.0), Axis::linear("y").with_range(2.0, 4.0))
            .with_series(Series::new("s", Style::LineAndPoints, (0..=10).map(|i| (i as f64, i as f64))))
            .with_series(
                Series::line("band", [(0.0, 3.0), (10.0, 3.0)]).with_band([(0.0, 0.0, 10.0), (10.0, 0.0, 10.0)]),
            );
        let svg = render_svg(&c, 400, 300).unwrap();
        check_xml(&svg).unwrap();
        dump("clip", &svg);
        // Markers at 2, 3, 4 plus the legend marker.
        assert_eq!(count(&svg, "<circle"), 4);
        // The band clipped to the box: a 4-corner polygon.
        let poly = svg.lines().find(|l| l.starts_with("<polygon")).unwrap();
        assert_eq!(poly.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split_whitespace().count(), 4);
        assert_eq!(
            clip_polyline(&[(0.0, 0.0), (10.0, 10.0)], (2.0, 4.0), (2.0, 4.0)),
            vec![vec![(2.0, 2.0), (4.0, 4.0)]]
        );
        // A polyline leaving and re-entering the box gives two pieces.
        let runs = clip_polyline(&[(0.0, 3.0), (3.0, 3.0), (3.0, 9.0), (3.5, 3.0), (9.0, 3.0)], (2.0, 4.0), (2.0, 4.0));
        assert_eq!(runs.len(), 2, "{runs:?}");
    }

    /// The `(x, y, fill, text)` of the `<text>` elements of `svg` whose fill is `fill`.
    fn texts_filled<'a>(svg: &'a str, fill: &str) -> Vec<(f64, f64, &'a str)> {
        let attr = |tag: &str, name: &str| -> f64 {
            tag.split(&format!(" {name}=\"")).nth(1).unwrap().split('"').next().unwrap().parse().unwrap()
        };
        svg.split("<text")
            .skip(1)
            .filter(|t| t.split_once('>').unwrap().0.contains(&format!("fill=\"{fill}\"")))
            .map(|t| {
                let (tag, rest) = t.split_once('>').unwrap();
                (attr(tag, "x"), attr(tag, "y"), rest.split("</text>").next().unwrap().trim())
            })
            .collect()
    }

    #[test]
    fn point_labels() {
        // Three points a few pixels apart, one that cannot be shown (0 on the log axis), one far.
        let pts = [(1.0, 1.0), (1.01, 1.0), (1.02, 1.0), (2.0, 0.0), (3.0, 10.0)];
        let c = Chart::new("labels", Axis::linear("x"), Axis::log("y"))
            .with_series(Series::points("s", pts).with_labels(["a<b", "bbbbbb", "", "skipped", "far"]))
            .with_series(Series::line("l", [(1.0, 2.0), (3.0, 2.0)]));
        let svg = render_svg(&c, 500, 400).unwrap();
        dump("labels", &svg);
        check_xml(&svg).unwrap();
        // Labels in 0.7 x the series colour #1F77B4 = (31, 119, 180) -> (22, 83, 126); the empty
        // label and that of the skipped point are not drawn.
        let labels = texts_filled(&svg, "#16537E");
        let names: Vec<&str> = labels.iter().map(|l| l.2).collect();
        assert_eq!(names, ["a&lt;b", "bbbbbb", "far"]);
        // Estimated boxes (0.62 em per character, 1 em high; em = 12 / 1.24 px) do not overlap,
        // and each lies within 3 em of its point.
        let em = LABEL_FONT / 1.24;
        let boxes: Vec<PxBox> = labels
            .iter()
            .map(|&(x, y, t)| (x, y, x + 0.62 * em * t.replace("&lt;", "<").len() as f64, y + em))
            .collect();
        for i in 0..boxes.len() {
            for j in 0..i {
                assert_eq!(overlap(boxes[i], boxes[j]), 0.0, "{:?} and {:?}", labels[i], labels[j]);
            }
        }
        // Without labels the output is what it was: no extra <text>.
        let mut plain = c.clone();
        plain.series[0].labels.clear();
        assert!(texts_filled(&render_svg(&plain, 500, 400).unwrap(), "#16537E").is_empty());
    }

    #[test]
    fn label_placement_avoids_obstacles() {
        let o = |labels: Vec<PxBox>, lines: Vec<Vec<Xy>>| Obstacles {
            area: (0.0, 0.0, 400.0, 300.0),
            legend: (300.0, 0.0, 400.0, 60.0),
            marks: vec![(96.0, 96.0, 104.0, 104.0)],
            lines,
            labels,
        };
        let em = LABEL_FONT / 1.24;
        // Free: to the right of the point, centred vertically.
        let b = place_label(&o(vec![], vec![]), (100.0, 100.0), 4);
        assert_eq!((b.0, b.1), (105.0, 100.0 - em / 2.0));
        // Something on the right: to the left.
        let b = place_label(&o(vec![(104.0, 90.0, 160.0, 110.0)], vec![]), (100.0, 100.0), 4);
        assert!(b.2 <= 96.0, "{b:?}");
        // A horizontal line through the point: above or below it, not across it.
        let line = vec![vec![(0.0, 100.0), (400.0, 100.0)]];
        let b = place_label(&o(vec![], line), (100.0, 100.0), 4);
        assert!(b.3 < 100.0 || b.1 > 100.0, "{b:?}");
        // At the right edge: inside the plotting area.
        let b = place_label(&o(vec![], vec![]), (398.0, 200.0), 6);
        assert!(b.2 <= 400.0, "{b:?}");
        // Under the legend: moved off it.
        let b = place_label(&o(vec![], vec![]), (310.0, 65.0), 4);
        assert_eq!(overlap(b, (300.0, 0.0, 400.0, 60.0)), 0.0, "{b:?}");
    }

    #[test]
    fn tick_labels() {
        assert_eq!(fmt_sig(0.00123456), "0.00123");
        assert_eq!(fmt_sig(2.5e-7), "2.5e-7");
        assert_eq!(fmt_sig(1e6), "1e6");
        assert_eq!(fmt_sig(12.0), "12");
        assert_eq!(fmt_sig_all(&[0.02, 0.05, 0.1]), ["0.02", "0.05", "0.1"]);
        assert_eq!(fmt_sig_all(&[2e4, 5e4, 1e5]), ["2e4", "5e4", "1e5"]);
        // Decades: plain from 0.001 to 10000, else all scientific.
        assert_eq!(ticks((-3.1, 4.1), true).labels, ["0.001", "0.01", "0.1", "1", "10", "100", "1000", "10000"]);
        assert_eq!(ticks((2.9, 6.1), true).labels, ["1e3", "1e4", "1e5", "1e6"]);
        // Less than a decade on a log axis (2 .. 8): 1-2-5 ticks give only 2 and 5, so 1..9 is used.
        let t = ticks((2f64.log10(), 8f64.log10()), true);
        assert_eq!(t.labels, ["2", "3", "4", "5", "6", "7", "8"]);
        // A very narrow log range falls back to linear ticks in data units.
        let t = ticks((1.10f64.log10(), 1.20f64.log10()), true);
        assert!(t.labels.len() >= 3 && t.labels.iter().all(|l| l.starts_with("1.1") || l == "1.20"), "{:?}", t.labels);
        // Many decades: at most 8 labelled decades.
        let t = ticks((-30.0, 10.0), true);
        assert!(t.bold.len() <= 8 && t.bold.len() >= 4, "{:?}", t.labels);
        // Linear: no float noise in labels.
        let (_, l) = linear_ticks(0.0, 0.3);
        assert_eq!(l, ["0", "0.05", "0.10", "0.15", "0.20", "0.25", "0.30"]);
        let (_, l) = linear_ticks(0.0, 3e7);
        assert!(l.iter().all(|s| !s.contains("000000")), "{l:?}");
    }
}
