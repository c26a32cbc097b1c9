//! The conformance kit: what every plugin checks in a one-line test, and
//! helpers for Monte Carlo GMSE tests against oracle values.
//!
//! ```
//! # use sdk::*;
//! # struct Id;
//! # impl Format for Id {
//! #     fn compress(&self, t: Tensor<'_>) -> Result<()> { t.output.copy_from_slice(t.input); Ok(()) }
//! #     fn bits(&self, _: Shape) -> Bits { Bits::elements(32.0) }
//! # }
//! # struct IdKind;
//! # impl Kind for IdKind {
//! #     type Params = ();
//! #     const NAME: &'static str = "id";
//! #     const DOC: &'static str = "identity";
//! #     const PRESETS: &'static [Preset] = &[Preset::new("fp32", "", "FP32")];
//! #     fn build(_: ()) -> Result<Box<dyn Format>> { Ok(Box::new(Id)) }
//! # }
//! // In the plugin crate: #[test] fn conformance() { ... }
//! sdk::testing::check_kind::<IdKind>();
//! let f = sdk::testing::preset::<IdKind>("fp32");
//! assert_eq!(sdk::testing::gmse(&*f, Shape::new(4, 64), 1), 0.0);
//! ```
//!
//! [`check_kind`] runs [`check_format`] on every preset of a kind, on its
//! default parameters and across the declared range of each integer
//! parameter (`#[range(1..=16)]` in [`params!`](macro@crate::params));
//! [`check_kind_with`] adds parameter sets of the author's choice
//! (`check_kind_with::<K>(&["bits = 6", "bits = 2, group = 32"])`). A
//! failure panics with a message naming the preset or parameters and what is
//! wrong.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::params::Params;
use crate::plugin::{Kind, parse_inline_table};
use crate::{Family, Format, Grad, Result, Shape, Tensor};

/// Shape of the conformance kit's test tensor.
pub const SHAPE: Shape = Shape::new(16, 256);

/// Fills `x` with i.i.d. `N(0, 1)` samples that depend only on `seed`
/// (xoshiro256++ and the Box-Muller transform, in `f64`).
pub fn fill_gaussian(x: &mut [f32], seed: u64) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    const TWO_POW_M53: f64 = 1.0 / (1u64 << 53) as f64;
    for pair in x.chunks_mut(2) {
        let u1 = ((rng.next_u64() >> 11) as f64 + 1.0) * TWO_POW_M53; // (0, 1]
        let u2 = (rng.next_u64() >> 11) as f64 * TWO_POW_M53; // [0, 1)
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        pair[0] = (r * c) as f32;
        if pair.len() == 2 {
            pair[1] = (r * s) as f32;
        }
    }
}

/// `n` i.i.d. `N(0, 1)` samples that depend only on `seed`.
pub fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut x = vec![0.0; n];
    fill_gaussian(&mut x, seed);
    x
}

/// Runs `format` on `input` of `shape` with `seed`: the output, and the mask
/// when `want_mask` (it starts filled with `1.0`, as the host passes it).
pub fn run(
    format: &dyn Format,
    input: &[f32],
    shape: Shape,
    seed: u64,
    want_mask: bool,
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let mut output = vec![0.0; input.len()];
    let mut mask = want_mask.then(|| vec![1.0; input.len()]);
    format.compress(Tensor { input, output: &mut output, mask: mask.as_deref_mut(), shape, seed })?;
    Ok((output, mask))
}

/// Runs `format`'s [`backward`](Format::backward) on input `x` of `shape`
/// with `seed`: `dL/dx` for the upstream gradient `grad` (`dL/dy`), with the
/// forward pass's `mask` when given.
pub fn backward(
    format: &dyn Format,
    input: &[f32],
    grad: &[f32],
    shape: Shape,
    seed: u64,
    mask: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let mut g = grad.to_vec();
    format.backward(Grad { input, grad: &mut g, mask, shape, seed })?;
    Ok(g)
}

/// `Σ (a - b)²` in `f64`.
pub fn sq_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum()
}

/// Mean squared error of `format` on one `N(0, 1)` tensor of `shape` drawn with `seed`.
///
/// # Panics
/// When the format fails on it.
pub fn gmse(format: &dyn Format, shape: Shape, seed: u64) -> f64 {
    let x = gaussian(shape.len(), seed);
    gmse_on(format, &x, shape, seed)
}

/// Mean squared error of `format` on the tensor `x` of `shape`.
///
/// # Panics
/// When the format fails on it.
pub fn gmse_on(format: &dyn Format, x: &[f32], shape: Shape, seed: u64) -> f64 {
    let (y, _) =
        run(format, x, shape, seed, false).unwrap_or_else(|e| panic!("compress failed on a {shape} tensor: {e}"));
    sq_diff(x, &y) / x.len().max(1) as f64
}

/// A Monte Carlo GMSE estimate from several tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Mean of the per-tensor GMSEs.
    pub mean: f64,
    /// Standard error of the mean, from the spread of the per-tensor values.
    pub stderr: f64,
    /// Number of tensors.
    pub tensors: usize,
}

impl Estimate {
    /// The estimate from per-tensor values.
    pub fn from_values(v: &[f64]) -> Self {
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        Estimate { mean, stderr: (var / n.max(1) as f64).sqrt(), tensors: n }
    }

    /// Panics unless `|mean - expected| <= 3 stderr + 0.5 % of expected`
    /// (the slack covers the small bias of scales estimated from the data,
    /// e.g. a row RMS from a finite row, and Monte Carlo error in oracles
    /// that are themselves Monte Carlo values).
    pub fn assert_close(&self, name: &str, expected: f64) {
        let tol = 3.0 * self.stderr + 0.005 * expected.abs();
        let diff = self.mean - expected;
        println!(
            "{name}: GMSE {:.6e} ± {:.1e} (oracle {expected:.6e}, diff {:+.3} %, tolerance {:.3} %)",
            self.mean,
            self.stderr,
            100.0 * diff / expected,
            100.0 * tol / expected
        );
        assert!(
            diff.abs() <= tol,
            "{name}: GMSE {:.6e} ± {:.1e} from {} tensors, oracle {expected:.6e} (tolerance {tol:.2e})",
            self.mean,
            self.stderr,
            self.tensors
        );
    }
}

/// `N(0, 1)` tensors of `shape`, one per seed (generate once, measure many formats).
pub fn gaussian_tensors(shape: Shape, seeds: Range<u64>) -> Vec<Vec<f32>> {
    seeds.map(|s| gaussian(shape.len(), s)).collect()
}

/// GMSE estimate of `format` over `tensors` of `shape` (tensor `i` compressed with seed `i`).
pub fn estimate_on(format: &dyn Format, shape: Shape, tensors: &[Vec<f32>]) -> Estimate {
    let v: Vec<f64> = tensors.iter().enumerate().map(|(i, x)| gmse_on(format, x, shape, i as u64)).collect();
    Estimate::from_values(&v)
}

/// GMSE estimate of `format` over one fresh tensor of `shape` per seed.
pub fn estimate(format: &dyn Format, shape: Shape, seeds: Range<u64>) -> Estimate {
    let v: Vec<f64> = seeds.map(|s| gmse(format, shape, s)).collect();
    Estimate::from_values(&v)
}

/// Builds kind `K` from parameters written as a TOML inline-table body (`"bits = 3"`).
pub fn build<K: Kind>(params: &str) -> Result<Box<dyn Format>> {
    let table = parse_inline_table(params)?;
    K::build(K::Params::from_table(&table)?)
}

/// Builds the preset `name` of kind `K`.
///
/// # Panics
/// When `K` has no such preset or it does not build.
pub fn preset<K: Kind>(name: &str) -> Box<dyn Format> {
    let p = K::PRESETS
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("kind `{}` has no preset `{name}`", K::NAME));
    build::<K>(p.params).unwrap_or_else(|e| panic!("preset `{name}` ({}) does not build: {e}", p.params))
}

/// Runs [`check_format`] on every preset of `K`, on its default parameters
/// and across the declared range of each integer parameter, and checks that
/// preset names are unique and that parameters survive a round trip through
/// TOML. The same as [`check_kind_with`] with no extra parameter sets.
///
/// # Panics
/// With a message naming the preset or parameters and the failed check.
pub fn check_kind<K: Kind>() {
    check_kind_with::<K>(&[] as &[&str]);
}

/// Most values of one declared range that [`check_kind_with`] builds.
pub const RANGE_VALUES: usize = 64;

/// The values of `min..=max` that [`check_kind_with`] builds: every value
/// when there are at most [`RANGE_VALUES`], else [`RANGE_VALUES`] values
/// spread evenly from `min` to `max` (both included).
pub fn range_values(min: i128, max: i128) -> Vec<i128> {
    if max < min {
        return Vec::new();
    }
    let n = max - min + 1;
    let k = RANGE_VALUES as i128;
    if n <= k {
        return (min..=max).collect();
    }
    let mut v: Vec<i128> = (0..k).map(|i| min + i * (n - 1) / (k - 1)).collect();
    v.dedup();
    v
}

/// [`check_kind`] plus parameter sets of the author's choice, each written
/// as a TOML inline-table body (`"bits = 6"`, `"bits = 2, group = 32"`);
/// keys left out take their defaults.
///
/// Checked, each with [`check_format`] (which names the preset or the
/// parameters in its failure message):
/// - every preset (names unique, parameters parse, are accepted and survive
///   a TOML round trip) and the default parameters;
/// - every parameter set in `extra`, which must parse, be accepted and build;
/// - for each integer parameter that declares a range in
///   [`params!`](macro@crate::params) (`#[range(1..=16)]`), the format built
///   at each value of [`range_values`] (every value of a range of at most
///   [`RANGE_VALUES`]) with the other parameters at their defaults: each
///   must build; and the values just outside the range must be refused with
///   an error (not a panic).
///
/// A range is a promise that every value in it builds with the other
/// parameters at their defaults; constraints between parameters (e.g. a
/// rule that needs `bits >= 2`) are the author's to test through `extra`.
///
/// ```
/// # use sdk::*;
/// sdk::params! {
///     /// Parameters.
///     pub struct P {
///         /// Bits (1..=8).
///         #[range(1..=8)]
///         bits: u32 = 4,
///         /// Group (0 = row).
///         group: usize = 0,
///     }
/// }
/// # struct Id;
/// # impl Format for Id {
/// #     fn compress(&self, t: Tensor<'_>) -> Result<()> { t.output.copy_from_slice(t.input); Ok(()) }
/// #     fn bits(&self, _: Shape) -> Bits { Bits::elements(32.0) }
/// # }
/// struct K;
/// impl Kind for K {
///     type Params = P;
///     const NAME: &'static str = "k";
///     const DOC: &'static str = "identity with parameters";
///     const PRESETS: &'static [Preset] = &[];
///     fn build(_: P) -> Result<Box<dyn Format>> { Ok(Box::new(Id)) }
/// }
/// // Builds bits = 1..=8 (the declared range) and the two extra sets.
/// sdk::testing::check_kind_with::<K>(&["bits = 6", "bits = 2, group = 32"]);
/// ```
///
/// # Panics
/// With a message naming the preset or parameters and the failed check.
pub fn check_kind_with<K: Kind>(extra: &[impl AsRef<str>]) {
    let mut names: Vec<&str> = K::PRESETS.iter().map(|p| p.name).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        panic!("kind `{}`: preset `{}` is declared twice", K::NAME, w[0]);
    }
    let check_params = |what: &str, params: &str| {
        let table = parse_inline_table(params).unwrap_or_else(|e| panic!("{what}: parameters do not parse: {e}"));
        let params = K::Params::from_table(&table).unwrap_or_else(|e| panic!("{what}: parameters rejected: {e}"));
        if let Err(e) = K::Params::from_table(&params.to_table()) {
            panic!("{what}: parameters do not survive a TOML round trip: {e}");
        }
        named(what, || {
            let f = K::build(params).unwrap_or_else(|e| panic!("{what}: does not build: {e}"));
            check_format(what, &*f);
        });
    };
    for p in K::PRESETS {
        check_params(&format!("preset `{}` of kind `{}` ({})", p.name, K::NAME, p.params), p.params);
    }
    let what = format!("kind `{}` with default parameters", K::NAME);
    named(&what, || {
        let f = K::build(K::Params::default()).unwrap_or_else(|e| panic!("{what}: does not build: {e}"));
        check_format(&what, &*f);
    });
    for params in extra {
        let params = params.as_ref();
        check_params(&format!("kind `{}` with parameters `{params}`", K::NAME), params);
    }
    for r in K::Params::ranges() {
        let (name, min, max) = (r.name, r.min, r.max);
        if max < min {
            panic!("kind `{}`: parameter `{name}` declares the empty range {min}..={max}", K::NAME);
        }
        for v in range_values(min, max) {
            let what = format!("kind `{}` with `{name} = {v}` (declared range {min}..={max})", K::NAME);
            check_params(&what, &format!("{name} = {v}"));
        }
        for v in [min - 1, max + 1] {
            let built = std::panic::catch_unwind(|| {
                let table = parse_inline_table(&format!("{name} = {v}")).ok()?;
                let p = K::Params::from_table(&table).ok()?;
                Some(K::build(p).is_ok())
            });
            match built {
                Err(_) => panic!(
                    "kind `{}`: `{name} = {v}` (outside {min}..={max}) panicked instead of being refused",
                    K::NAME
                ),
                Ok(Some(true)) => {
                    panic!("kind `{}`: `{name} = {v}` is outside the declared range {min}..={max} but builds", K::NAME)
                }
                Ok(_) => {}
            }
        }
    }
}

/// Runs `f`; a panic whose message does not name `what` (a panic inside the
/// plugin's own code) is raised again with `what` in front.
fn named(what: &str, f: impl FnOnce()) {
    if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        match msg {
            Some(m) if m.contains(what) => std::panic::resume_unwind(e),
            Some(m) => panic!("{what}: panicked: {m}"),
            None => panic!("{what}: panicked"),
        }
    }
}

/// Checks one built format; `name` goes into failure messages.
///
/// On a seeded `N(0, 1)` tensor of [`SHAPE`] (and a few more inputs):
/// - compress succeeds and every output value is finite, also for a single
///   row, an all-zero tensor, and the tensor scaled by `1e-4` and `1e4`;
/// - the same seed gives bit-identical output; a format that is not
///   [`stochastic`](Format::stochastic) gives the same output for another seed;
/// - GMSE is below 1.5 (and the relative error below 1.5 for the scaled inputs);
/// - a requested mask has only values in `[0, 1]`, and asking for it does
///   not change the output;
/// - the [backward](Format::backward) succeeds on a Gaussian upstream
///   gradient and gives finite values, also for the all-zero tensor, the
///   same with and without the forward pass's mask handed to it, and the
///   same for two calls;
/// - near-idempotence, for [`Family::Scalar`] formats that are not
///   stochastic: compressing the output again moves it by at most a quarter
///   of the first pass's squared error. Exact idempotence is not required:
///   a scale derived from the data's RMS changes when the data is replaced
///   by its quantized values (whose RMS differs), so RMS-scaled grids move
///   slightly on a second pass; absmax-scaled grids reproduce themselves;
/// - the bit budget is finite and positive for several shapes, every part is
///   finite and non-negative; a declared block length is positive; a label,
///   if any, is not empty.
///
/// # Panics
/// With a message naming `name` and the failed check.
pub fn check_format(name: &str, f: &dyn Format) {
    let fail = |what: String| -> ! { panic!("conformance of {name}: {what}") };
    let shape = SHAPE;
    let x = gaussian(shape.len(), 1);
    let compress = |input: &[f32], shape: Shape, seed: u64, mask: bool| {
        run(f, input, shape, seed, mask)
            .unwrap_or_else(|e| fail(format!("compress failed on a {shape} tensor (seed {seed}): {e}")))
    };
    let finite = |y: &[f32], what: &str| {
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            fail(format!("output[{i}] = {} is not finite ({what})", y[i]));
        }
    };

    // Output and error.
    let (y, _) = compress(&x, shape, 7, false);
    finite(&y, "N(0,1) input");
    let mse = sq_diff(&x, &y) / x.len() as f64;
    if mse.is_nan() || mse >= 1.5 {
        fail(format!("GMSE {mse} on N(0,1) data (must be < 1.5)"));
    }

    // Determinism.
    let (y2, _) = compress(&x, shape, 7, false);
    if !same_bits(&y, &y2) {
        fail("two calls with the same seed gave different outputs".into());
    }
    if !f.stochastic() {
        let (y3, _) = compress(&x, shape, 8, false);
        if !same_bits(&y, &y3) {
            fail("stochastic() is false but the output depends on the seed".into());
        }
    }

    // Mask.
    let (ym, mask) = compress(&x, shape, 7, true);
    let mask = mask.expect("mask");
    if mask.len() != x.len() {
        fail(format!("mask has {} values for {}", mask.len(), x.len()));
    }
    if let Some(i) = mask.iter().position(|m| !(0.0..=1.0).contains(m)) {
        fail(format!("mask[{i}] = {} is outside [0, 1]", mask[i]));
    }
    if !same_bits(&y, &ym) {
        fail("asking for a mask changed the output".into());
    }

    // Backward.
    let g = gaussian(shape.len(), 2);
    let back = |input: &[f32], mask: Option<&[f32]>, what: &str| {
        let d = backward(f, input, &g, shape, 7, mask)
            .unwrap_or_else(|e| fail(format!("backward failed on a {shape} tensor ({what}): {e}")));
        if d.len() != g.len() {
            fail(format!("backward returned {} values for {} ({what})", d.len(), g.len()));
        }
        if let Some(i) = d.iter().position(|v| !v.is_finite()) {
            fail(format!("backward gave dL/dx[{i}] = {} ({what})", d[i]));
        }
        d
    };
    let d = back(&x, None, "N(0,1) input, no mask given");
    if !same_bits(&d, &back(&x, None, "N(0,1) input, second call")) {
        fail("two backward calls with the same input and seed gave different gradients".into());
    }
    if !same_bits(&d, &back(&x, Some(&mask[..]), "N(0,1) input with the forward mask")) {
        fail("backward gave a different gradient when handed the forward pass's mask".into());
    }

    // Near-idempotence.
    if f.family() == Family::Scalar && !f.stochastic() {
        let (z, _) = compress(&y, shape, 7, false);
        finite(&z, "its own output as input");
        let moved = sq_diff(&z, &y);
        let first = sq_diff(&y, &x);
        let energy = sq_diff(&x, &vec![0.0; x.len()]);
        if moved > 0.25 * first + 1e-9 * energy {
            fail(format!(
                "not idempotent: compressing the output again moved it by {:.3e} per element (first pass error {:.3e})",
                moved / x.len() as f64,
                first / x.len() as f64
            ));
        }
    }

    // Other inputs that every format must accept.
    let one_row = Shape::new(1, 256);
    let (y1, _) = compress(&x[..256], one_row, 7, false);
    finite(&y1, "a single row");
    let zeros = vec![0.0; shape.len()];
    let (yz, mz) = compress(&zeros, shape, 7, true);
    finite(&yz, "an all-zero tensor");
    let dz = back(&zeros, None, "an all-zero tensor");
    if !same_bits(&dz, &back(&zeros, mz.as_deref(), "an all-zero tensor with the forward mask")) {
        fail("backward gave a different gradient on an all-zero tensor when handed the forward pass's mask".into());
    }
    for k in [1e-4f32, 1e4] {
        let xs: Vec<f32> = x.iter().map(|v| v * k).collect();
        let (ys, _) = compress(&xs, shape, 7, false);
        finite(&ys, &format!("N(0,1) input times {k:e}"));
        let rel = sq_diff(&xs, &ys) / sq_diff(&xs, &zeros);
        if rel.is_nan() || rel >= 1.5 {
            fail(format!("relative error {rel} on N(0,1) input times {k:e} (must be < 1.5)"));
        }
    }

    // Bits and self-description.
    for s in [shape, Shape::new(1, 4096), Shape::new(64, 64), Shape::new(1, 1)] {
        let b = f.bits(s);
        let total = b.total();
        if !(total.is_finite() && total > 0.0) {
            fail(format!("bits per element for a {s} tensor: {total} (must be finite and > 0)"));
        }
        if let Some(p) = b.parts.iter().find(|p| !(p.bits.is_finite() && p.bits >= 0.0)) {
            fail(format!("bit budget part `{}` for a {s} tensor is {}", p.what, p.bits));
        }
    }
    if f.block_len() == Some(0) {
        fail("block_len() is Some(0)".into());
    }
    if f.label().is_some_and(|l| l.trim().is_empty()) {
        fail("label() is an empty string".into());
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bits, Error, Preset};

    #[test]
    fn gaussian_moments() {
        let x = gaussian(200_001, 3);
        let n = x.len() as f64;
        let m1 = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let m2 = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n;
        let m4 = x.iter().map(|&v| (v as f64).powi(4)).sum::<f64>() / n;
        assert!(m1.abs() < 0.01 && (m2 - 1.0).abs() < 0.01 && (m4 - 3.0).abs() < 0.06, "{m1} {m2} {m4}");
        assert_eq!(gaussian(10, 5), gaussian(10, 5));
        assert_ne!(gaussian(10, 5), gaussian(10, 6));
    }

    #[test]
    fn estimates() {
        let e = Estimate::from_values(&[1.0, 2.0, 3.0]);
        assert_eq!((e.mean, e.tensors), (2.0, 3));
        assert!((e.stderr - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        e.assert_close("test", 2.005);
    }

    /// Broken on purpose: 0 seed-dependent output, 1 mask outside [0, 1],
    /// 2 not idempotent, 3 NaN backward, 4 backward that depends on whether
    /// the mask is handed over.
    struct Bad(u8);
    impl Format for Bad {
        fn compress(&self, t: Tensor<'_>) -> Result<()> {
            match self.0 {
                0 => t.output.iter_mut().zip(t.input).for_each(|(y, x)| *y = x + (t.seed % 3) as f32 * 0.01),
                1 => {
                    t.output.copy_from_slice(t.input);
                    if let Some(m) = t.mask {
                        m[0] = 2.0;
                    }
                }
                2 => t.output.iter_mut().zip(t.input).for_each(|(y, x)| *y = x * 0.9),
                _ => t.output.copy_from_slice(t.input),
            }
            Ok(())
        }
        fn backward(&self, g: Grad<'_>) -> Result<()> {
            match self.0 {
                3 => g.grad[5] = f32::NAN,
                4 if g.mask.is_some() => g.grad[0] *= 0.5,
                _ => crate::mask_backward(self, g)?,
            }
            Ok(())
        }
        fn bits(&self, _: Shape) -> Bits {
            Bits::elements(4.0)
        }
        fn family(&self) -> Family {
            Family::Scalar
        }
    }
    struct BadKind;
    impl Kind for BadKind {
        type Params = ();
        const NAME: &'static str = "bad";
        const DOC: &'static str = "broken on purpose";
        const PRESETS: &'static [Preset] = &[];
        fn build(_: ()) -> Result<Box<dyn Format>> {
            Err(Error::Other("nope".into()))
        }
    }

    fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let e = std::panic::catch_unwind(f).expect_err("should fail");
        e.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    /// Clamps to [-1, 1]; mask closed outside.
    struct Clip;
    impl Format for Clip {
        fn compress(&self, t: Tensor<'_>) -> Result<()> {
            for (y, x) in t.output.iter_mut().zip(t.input) {
                *y = x.clamp(-1.0, 1.0);
            }
            if let Some(m) = t.mask {
                crate::grid::clip_mask(t.input, m, 1.0);
            }
            Ok(())
        }
        fn bits(&self, _: Shape) -> Bits {
            Bits::elements(32.0)
        }
    }

    #[test]
    fn default_backward_is_the_mask_times_the_gradient() {
        let shape = Shape::new(4, 64);
        let x = gaussian(shape.len(), 11);
        let g = gaussian(shape.len(), 12);
        let (_, mask) = run(&Clip, &x, shape, 0, true).unwrap();
        let mask = mask.unwrap();
        let want: Vec<f32> = g.iter().zip(&mask).map(|(a, m)| a * m).collect();
        // About 32 % of N(0,1) values lie outside [-1, 1]: the mask closes some.
        assert!(mask.contains(&0.0) && mask.contains(&1.0));
        for given in [None, Some(&mask[..])] {
            let d = backward(&Clip, &x, &g, shape, 0, given).unwrap();
            assert!(same_bits(&d, &want), "mask given: {}", given.is_some());
        }
        // A mask handed over is used as it is (an optimization the caller vouches for).
        let ones = vec![1.0; shape.len()];
        assert!(same_bits(&backward(&Clip, &x, &g, shape, 0, Some(&ones)).unwrap(), &g));
        // Wrong lengths are an error, not a panic.
        let e = backward(&Clip, &x[..10], &g, shape, 0, None).unwrap_err().to_string();
        assert!(e.contains("4x64") && e.contains("input 10"), "{e}");
        check_format("clip", &Clip);
    }

    crate::params! {
        /// Parameters of the kinds that break at `bits = 6`.
        pub struct SixParams {
            /// Bits (1..=16).
            #[range(1..=16)]
            bits: u32 = 4,
            /// Group (0 = row).
            group: usize = 0,
        }
    }
    crate::params! {
        /// The same without a declared range.
        pub struct SixParamsNoRange {
            /// Bits.
            bits: u32 = 4,
            /// Group (0 = row).
            group: usize = 0,
        }
    }
    /// Panics when built with `bits = 6` (a table sized for powers of two, say).
    fn six(bits: u32) -> Result<Box<dyn Format>> {
        assert!(bits != 6, "index out of bounds: the len is 6 but the index is 6");
        Ok(Box::new(Clip))
    }
    struct SixKind;
    impl Kind for SixKind {
        type Params = SixParams;
        const NAME: &'static str = "six";
        const DOC: &'static str = "panics at bits = 6";
        const PRESETS: &'static [Preset] = &[Preset::new("six4", "bits = 4", "fine")];
        fn build(p: SixParams) -> Result<Box<dyn Format>> {
            six(p.bits)
        }
    }
    struct SixNoRangeKind;
    impl Kind for SixNoRangeKind {
        type Params = SixParamsNoRange;
        const NAME: &'static str = "six-no-range";
        const DOC: &'static str = "panics at bits = 6";
        const PRESETS: &'static [Preset] = &[Preset::new("six4", "bits = 4", "fine")];
        fn build(p: SixParamsNoRange) -> Result<Box<dyn Format>> {
            six(p.bits)
        }
    }

    #[test]
    fn declared_ranges_and_extra_sets_catch_a_panic_at_bits_6() {
        // The presets and defaults alone (bits = 4) miss it: the declared range finds it.
        let e = panic_message(check_kind::<SixKind>);
        assert!(e.contains("kind `six` with `bits = 6` (declared range 1..=16)"), "{e}");
        // Without a range, presets and defaults pass; an extra set finds it.
        check_kind::<SixNoRangeKind>();
        check_kind_with::<SixNoRangeKind>(&["bits = 5", "bits = 7, group = 32"]);
        let e = panic_message(|| check_kind_with::<SixNoRangeKind>(&["bits = 2, group = 32", "bits = 6"]));
        assert!(e.contains("kind `six-no-range` with parameters `bits = 6`"), "{e}");
        // Extra sets must be accepted.
        let e = panic_message(|| check_kind_with::<SixNoRangeKind>(&["bitz = 6"]));
        assert!(e.contains("`bitz = 6`") && e.contains("parameters rejected"), "{e}");
        // The range is enforced by the reader.
        let e = build::<SixKind>("bits = 17").err().unwrap().to_string();
        assert!(e.contains("`bits`") && e.contains("1..=16") && e.contains("got 17"), "{e}");
        assert_eq!(SixParams::ranges(), [crate::params::ParamRange { name: "bits", min: 1, max: 16 }]);
        assert!(SixParamsNoRange::ranges().is_empty());
    }

    #[test]
    fn range_values_cover_small_ranges_and_spread_over_large_ones() {
        assert_eq!(range_values(1, 16), (1..=16).collect::<Vec<_>>());
        assert_eq!(range_values(-2, 2), [-2, -1, 0, 1, 2]);
        assert_eq!(range_values(3, 3), [3]);
        assert!(range_values(3, 2).is_empty());
        let v = range_values(0, 1 << 20);
        assert_eq!(v.len(), RANGE_VALUES);
        assert_eq!((v[0], v[RANGE_VALUES - 1]), (0, 1 << 20));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(range_values(0, 64).len(), RANGE_VALUES); // 65 values: spread, both ends kept
    }

    #[test]
    fn catches_broken_formats() {
        assert!(panic_message(|| check_format("x", &Bad(0))).contains("depends on the seed"));
        assert!(panic_message(|| check_format("x", &Bad(1))).contains("outside [0, 1]"));
        assert!(panic_message(|| check_format("x", &Bad(2))).contains("not idempotent"));
        let nan = panic_message(|| check_format("x", &Bad(3)));
        assert!(nan.contains("backward gave dL/dx[5] = NaN"), "{nan}");
        assert!(panic_message(|| check_format("x", &Bad(4))).contains("handed the forward pass's mask"));
        assert!(panic_message(check_kind::<BadKind>).contains("default parameters"));
    }
}
