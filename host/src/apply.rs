//! `host apply`: a format on real tensors (`.safetensors` or `.npy`).
//!
//! Each usable tensor of the file (see [`crate::tensorio`]: floating point,
//! finite, 2-D or more, seen by the format as `[product of leading dims, last
//! dim]`) is compressed and decompressed once through the plugin ABI, with the
//! gradient mask, and reported:
//!
//! - `mse`: mean of (y - x)^2;
//! - `rel_mse`: mse / mean of x^2 (the normalized MSE; comparable with GMSE,
//!   which is measured at unit variance);
//! - `sqnr_db`: 10 log10(mean of x^2 / mse) = -10 log10(rel_mse);
//! - `max_abs_err`: the largest |y - x|;
//! - `nonfinite`: how many outputs are NaN or infinite. A format may produce
//!   them on purpose (the raw casts with `overflow = "ml_dtypes"` give NaN or
//!   inf beyond the type's range, exactly as ml_dtypes does): they are written
//!   to `--output` as they are and counted here, and `mse`, `rel_mse`,
//!   `sqnr_db` and `max_abs_err` are over the elements whose output is finite
//!   (mean square of x over the same elements); the table then gets a
//!   `non-finite` column and a note saying so. An error over every element
//!   would be NaN or infinite and say nothing about the values in range;
//!   the count says how many left it;
//! - `clipped`: fraction of elements whose gradient mask is 0, i.e. that the
//!   format saturated (formats that write no mask report 0);
//! - `zeroed`: fraction of the nonzero inputs whose output is exactly 0
//!   (flushed to zero: underflow, pruning);
//! - `bits_per_element`: the format's own accounting for that tensor's 2-D
//!   shape (element bits plus every scale and metadata).
//!
//! The text table adds a total row over all reported tensors, weighted by
//! elements: mse = all squared errors / all elements, rel_mse = all squared
//! errors / all squared inputs (so sqnr_db = -10 log10(rel_mse) holds there
//! too), bits, clipped and zeroed are element-weighted means (zeroed over the
//! nonzero inputs), max_abs_err the maximum. In JSON an infinite SQNR (exact
//! output) and the relative values of an all-zero tensor are `null`.
//!
//! A tensor that cannot be used is reported on one warning line and skipped;
//! the others are still reported. Stochastic formats draw their randomness from
//! `--seed` and the tensor's position in the file, so results do not depend on
//! `--tensor`.

use std::path::PathBuf;

use clap::Args;
use ndarray::{Array2, ArrayView2};
use sdk::Shape;
use serde::Serialize;

use crate::format::HostFormat;
use crate::output::{sci, table};
use crate::sampler;
use crate::session::{Prepared, load, prepare};
use crate::tensorio::{self, Tensor};

/// `host apply`.
#[derive(Args, Debug)]
#[command(after_help = "Columns (JSON keys in brackets): MSE [mse] = mean of (y - x)^2; rel MSE [rel_mse] = MSE / \
    mean of x^2 (compare with GMSE); SQNR dB [sqnr_db] = -10 log10(rel MSE); max |err| [max_abs_err]; clipped = \
    fraction with gradient mask 0; zeroed = fraction of nonzero inputs that became exactly 0; non-finite \
    [nonfinite] = how many outputs are NaN or inf. A format may give NaN or inf on purpose (raw casts with \
    overflow = \"ml_dtypes\", e.g. -f 'raw:dtype=e4m3,overflow=ml_dtypes', beyond the type's range): such \
    outputs are written to --output as they are and counted, and MSE, rel MSE, SQNR and max |err| are computed \
    over the finite outputs only (the table then shows the non-finite column and says so).")]
pub struct ApplyArgs {
    /// Plugin libraries, folders of them, plugin crates, or folders of crates (e.g. `plugins/`).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The format to apply: a preset, a kind with parameters, or a preset with overrides (as for `rank`).
    #[arg(short, long = "format", value_name = "SPEC")]
    pub format: String,
    /// Tensor file: `.safetensors` (every tensor, one row each) or `.npy`.
    #[arg(short, long, value_name = "FILE")]
    pub input: PathBuf,
    /// Only this tensor of the file.
    #[arg(long, value_name = "NAME")]
    pub tensor: Option<String>,
    /// Write the compressed-then-decompressed tensors (F32) here: `.safetensors`, or `.npy` for one tensor.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write the gradient mask (1 = gradient passes, 0 = saturated) here: `.npy` for one tensor, or `.safetensors`.
    #[arg(long, value_name = "FILE")]
    pub mask: Option<PathBuf>,
    /// Print a JSON array (one object per tensor) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seed of stochastic formats.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The report on one tensor.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Tensor name.
    pub tensor: String,
    /// Its shape as stored.
    pub shape: Vec<usize>,
    /// The format SPEC.
    pub format: String,
    /// Elements.
    pub elements: u64,
    /// Bits per element for this tensor's 2-D shape.
    pub bits_per_element: f64,
    /// Mean squared error.
    pub mse: f64,
    /// MSE / mean square of the input.
    pub rel_mse: f64,
    /// 10 log10(mean square / MSE).
    pub sqnr_db: f64,
    /// Largest absolute error.
    pub max_abs_err: f64,
    /// Outputs that are NaN or infinite (the error columns are over the others).
    pub nonfinite: u64,
    /// Fraction of elements with gradient mask 0.
    pub clipped: f64,
    /// Fraction of nonzero inputs whose output is exactly 0.
    pub zeroed: f64,
}

/// Raw sums of one tensor (totals add these up).
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    elements: u64,
    squared_error: f64,
    squared_input: f64,
    max_abs_err: f64,
    nonfinite: u64,
    masked: u64,
    nonzero: u64,
    zeroed: u64,
    bits: f64, // bits per element x elements
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.elements += o.elements;
        self.squared_error += o.squared_error;
        self.squared_input += o.squared_input;
        self.max_abs_err = self.max_abs_err.max(o.max_abs_err);
        self.nonfinite += o.nonfinite;
        self.masked += o.masked;
        self.nonzero += o.nonzero;
        self.zeroed += o.zeroed;
        self.bits += o.bits;
    }

    fn row(&self, tensor: &str, shape: Vec<usize>, format: &str) -> Row {
        let n = self.elements as f64;
        let mse = self.squared_error / (self.elements - self.nonfinite) as f64;
        let rel_mse = self.squared_error / self.squared_input;
        Row {
            tensor: tensor.into(),
            shape,
            format: format.into(),
            elements: self.elements,
            bits_per_element: self.bits / n,
            mse,
            rel_mse,
            sqnr_db: -10.0 * rel_mse.log10(),
            max_abs_err: self.max_abs_err,
            nonfinite: self.nonfinite,
            clipped: self.masked as f64 / n,
            zeroed: if self.nonzero > 0 { self.zeroed as f64 / self.nonzero as f64 } else { 0.0 },
        }
    }
}

/// Compares input and output (and mask); errors over the finite outputs.
fn sums(x: &[f32], y: &[f32], mask: &[f32], bits: f64) -> Sums {
    let mut s = Sums { elements: x.len() as u64, bits: bits * x.len() as f64, ..Sums::default() };
    s.nonfinite = y.iter().filter(|v| !v.is_finite()).count() as u64;
    if s.nonfinite == 0 {
        s.squared_error = crate::engine::squared_error(x, y);
        s.squared_input = x.iter().map(|&v| v as f64 * v as f64).sum();
    } else {
        let (fx, fy): (Vec<f32>, Vec<f32>) = x.iter().zip(y).filter(|(_, b)| b.is_finite()).unzip();
        s.squared_error = crate::engine::squared_error(&fx, &fy);
        s.squared_input = fx.iter().map(|&v| v as f64 * v as f64).sum();
    }
    for (&a, &b) in x.iter().zip(y) {
        if b.is_finite() {
            s.max_abs_err = s.max_abs_err.max((b as f64 - a as f64).abs());
        }
        if a != 0.0 {
            s.nonzero += 1;
            if b == 0.0 {
                s.zeroed += 1;
            }
        }
    }
    s.masked = mask.iter().filter(|&&m| m == 0.0).count() as u64;
    s
}

/// One tensor, as the 2-D view a format sees, through the format: (sums, output, mask), the
/// output and mask with the view's shape.
fn apply_one(p: &Prepared, x: ArrayView2<f32>, seed: u64) -> Result<(Sums, Array2<f32>, Array2<f32>), String> {
    let shape = Shape::new(x.nrows(), x.ncols());
    let bits = p.format.info(shape)?.bits.total();
    if !(bits.is_finite() && bits > 0.0) {
        return Err(format!("reports {bits} bits per element for a {shape} tensor"));
    }
    // Formats take row-major slices (the plugin ABI); a tensor read from a file is one.
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("standard layout is contiguous");
    let mut out = None;
    p.format.run(x, shape, seed, true, &mut |y, mask| {
        let mask = mask.map(<[f32]>::to_vec).unwrap_or_else(|| vec![1.0; y.len()]);
        out = Some((y.to_vec(), mask));
    })?;
    let (y, mask) = out.ok_or("returned no output")?;
    if y.len() != x.len() || mask.len() != x.len() {
        return Err(format!("returned {} values and {} mask values for {} inputs", y.len(), mask.len(), x.len()));
    }
    let sums = sums(x, &y, &mask, bits);
    let dim = (shape.rows, shape.cols);
    let array = |v| Array2::from_shape_vec(dim, v).expect("length checked above");
    Ok((sums, array(y), array(mask)))
}

fn fmt_row(r: &Row, nonfinite: bool) -> Vec<String> {
    let shape = r.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    let mut cells = vec![
        r.tensor.clone(),
        if shape.is_empty() { "-".into() } else { shape },
        format!("{:.4}", r.bits_per_element),
        sci(r.mse, 4),
        sci(r.rel_mse, 4),
        format!("{:.2}", r.sqnr_db),
        sci(r.max_abs_err, 4),
        format!("{:.4}%", 100.0 * r.clipped),
        format!("{:.4}%", 100.0 * r.zeroed),
    ];
    if nonfinite {
        cells.push(r.nonfinite.to_string());
    }
    cells
}

/// Runs `host apply`.
pub fn run(a: ApplyArgs, verbose: bool) -> Result<(), String> {
    let file = a.input.as_path();
    let read = tensorio::read(file)?;
    if let (Some(out), Some(m)) = (&a.output, &a.mask)
        && out == m
    {
        return Err("--output and --mask name the same file".into());
    }
    for p in a.output.iter().chain(&a.mask) {
        tensorio::Container::of(p)?;
    }
    // (position in file, tensor) of the selected tensors a format can take (2-D views).
    let mut usable: Vec<(usize, Tensor)> = Vec::new();
    let mut names = Vec::new();
    for (i, (name, t)) in read.tensors.into_iter().enumerate() {
        names.push(name.clone());
        if a.tensor.as_ref().is_some_and(|want| *want != name) {
            continue;
        }
        match t.and_then(|t| t.matrix_view(file).map(drop).map(|_| t)) {
            Ok(t) => usable.push((i, t)),
            Err(e) => crate::diag::fail(format!("{e}; skipped")),
        }
    }
    if let Some(want) = &a.tensor
        && !names.contains(want)
    {
        return Err(format!(
            "`{}` has no tensor `{want}`; it has: {}",
            file.display(),
            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    if usable.is_empty() {
        return Err(format!("`{}`: no usable tensor to apply the format to", file.display()));
    }
    let (libs, d) = load(&a.paths);
    d.report(verbose);
    if libs.is_empty() {
        return Err("no plugin could be loaded from the given paths".into());
    }
    let first = usable[0].1.matrix_view(file)?;
    let (prepared, d) = prepare(&libs, std::slice::from_ref(&a.format), Shape::new(first.nrows(), first.ncols()));
    d.report(verbose);
    let Some(p) = prepared.into_iter().next() else {
        return Err(format!("format `{}` could not be built", a.format));
    };

    let mut rows = Vec::new();
    let mut total = Sums::default();
    let mut outputs = Vec::new();
    let mut masks = Vec::new();
    for (i, t) in &usable {
        let seed = sampler::tensor_seed(a.seed ^ 0x5EED, *i as u64);
        let view = t.matrix_view(file)?;
        let shape = Shape::new(view.nrows(), view.ncols());
        match apply_one(&p, view, seed) {
            Ok((s, y, m)) => {
                rows.push(s.row(&t.name, t.shape.clone(), &p.spec));
                total.add(&s);
                // Written back with the tensor's shape as stored (the 2-D view collapsed the
                // leading dimensions; row-major order is the same).
                let back = |a: Array2<f32>| Tensor {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    data: a.into_raw_vec_and_offset().0,
                };
                if a.output.is_some() {
                    outputs.push(back(y));
                }
                if a.mask.is_some() {
                    masks.push(back(m));
                }
            }
            Err(e) => crate::diag::fail(format!(
                "`{}`: tensor `{}` ({shape}): format `{}` (plugin `{}`): {e}; skipped",
                file.display(),
                t.name,
                p.spec,
                p.plugin
            )),
        }
    }
    if rows.is_empty() {
        return Err(format!("format `{}` failed on every tensor of `{}`", p.spec, file.display()));
    }
    if let Some(out) = &a.output {
        tensorio::write(out, &outputs)?;
    }
    if let Some(m) = &a.mask {
        tensorio::write(m, &masks)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "# format `{}` (plugin `{}`, kind `{}`) on {} tensor(s) of `{}`, seed {}",
        p.spec,
        p.plugin,
        p.kind,
        rows.len(),
        file.display(),
        a.seed
    );
    let nonfinite = total.nonfinite > 0;
    let mut body: Vec<Vec<String>> = rows.iter().map(|r| fmt_row(r, nonfinite)).collect();
    if rows.len() > 1 {
        let mut r = fmt_row(&total.row("(total)", vec![], &p.spec), nonfinite);
        r[1] = format!("{} el.", total.elements);
        body.push(r);
    }
    let mut headers = vec!["tensor", "shape", "bits", "MSE", "rel MSE", "SQNR dB", "max |err|", "clipped", "zeroed"];
    if nonfinite {
        headers.push("non-finite");
    }
    print!("{}", table(&headers, &body));
    if nonfinite {
        println!(
            "# non-finite: outputs that are NaN or inf ({} of {} elements; written to --output as they are); \
             MSE, rel MSE, SQNR and max |err| are over the finite outputs only.",
            total.nonfinite, total.elements
        );
    }
    println!("# rel MSE = MSE / mean square of the tensor (compare with GMSE); SQNR dB = -10 log10(rel MSE);");
    println!("# clipped: gradient mask 0 (saturated); zeroed: nonzero inputs that became exactly 0.");
    if rows.len() > 1 {
        println!("# (total): over all elements (rel MSE = all squared errors / all squared inputs).");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_row_formulas() {
        let x = [1.0f32, -2.0, 0.0, 0.5, 3.0, -0.25];
        let y = [1.0f32, -1.5, 0.0, 0.0, 2.0, 0.0];
        let mask = [1.0f32, 1.0, 1.0, 1.0, 0.0, 1.0];
        let s = sums(&x, &y, &mask, 4.25);
        let r = s.row("w", vec![2, 3], "int4");
        let se = 0.25 + 0.25 + 1.0 + 0.0625;
        let ss = 1.0 + 4.0 + 0.25 + 9.0 + 0.0625;
        assert!((r.mse - se / 6.0).abs() < 1e-12);
        assert!((r.rel_mse - se / ss).abs() < 1e-12);
        assert!((r.sqnr_db - 10.0 * (ss / se).log10()).abs() < 1e-9);
        assert_eq!(r.max_abs_err, 1.0);
        assert_eq!(r.clipped, 1.0 / 6.0);
        assert_eq!(r.zeroed, 2.0 / 5.0);
        assert_eq!(r.bits_per_element, 4.25);

        let mut t = Sums::default();
        t.add(&s);
        t.add(&sums(&[2.0, 2.0], &[2.0, 1.0], &[1.0, 1.0], 8.0));
        let r = t.row("(total)", vec![], "int4");
        assert_eq!(r.elements, 8);
        assert!((r.rel_mse - (se + 1.0) / (ss + 8.0)).abs() < 1e-12);
        assert!((r.bits_per_element - (6.0 * 4.25 + 16.0) / 8.0).abs() < 1e-12);
        assert_eq!(r.max_abs_err, 1.0);
        assert_eq!(r.nonfinite, 0);
    }

    /// NaN and inf outputs are counted; the error columns are over the others.
    #[test]
    fn nonfinite_outputs_are_counted_and_left_out_of_the_error() {
        let x = [1.0f32, 500.0, -2.0, 70000.0, 0.5];
        let y = [1.0f32, f32::NAN, -1.5, f32::INFINITY, 0.0];
        let s = sums(&x, &y, &[1.0; 5], 8.0);
        let r = s.row("w", vec![5], "raw");
        assert_eq!(r.nonfinite, 2);
        assert_eq!(r.elements, 5);
        let (se, ss) = (0.25 + 0.25, 1.0 + 4.0 + 0.25);
        assert_eq!(r.mse, se / 3.0);
        assert!((r.rel_mse - se / ss).abs() < 1e-15);
        assert_eq!(r.max_abs_err, 0.5);
        assert_eq!(r.zeroed, 1.0 / 5.0);
        let mut t = Sums::default();
        t.add(&s);
        t.add(&sums(&[2.0], &[f32::NEG_INFINITY], &[1.0], 8.0));
        let r = t.row("(total)", vec![], "raw");
        assert_eq!((r.nonfinite, r.elements), (3, 6));
        assert_eq!(r.mse, se / 3.0);
        // Every output non-finite: no error to report (null in JSON).
        assert!(sums(&[1.0], &[f32::NAN], &[1.0], 8.0).row("w", vec![1], "raw").mse.is_nan());
    }
}
