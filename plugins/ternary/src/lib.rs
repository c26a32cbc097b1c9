//! Ternary and binary formats: kinds `bitnet`, `ternary` and `binary`.
//!
//! - `bitnet`: BitNet b1.58's absmean quantizer. `gamma = max(mean |x|, eps)`
//!   over the whole tensor (or each row), `q = clamp(round(x / gamma), -1, 1)
//!   * gamma` with round-to-nearest-even, as in the reference code
//!   (`scale = 1 / w.abs().mean().clamp(min=1e-5); (w * scale).round().clamp(-1, 1) / scale`).
//!   On `N(0, 1)` data `gamma -> E|x| = sqrt(2/pi)` and the GMSE is
//!   `0.263382` (DESIGN.md 3).
//! - `ternary`: levels `{-a, 0, a}` per row (or group) with the threshold and
//!   scale that minimize the squared error of that row (rule `mse`, exact:
//!   for a set of `k` nonzeros the best `a` is their mean magnitude and the
//!   error is `sum x^2 - (sum of the k largest |x|)^2 / k`, so the row's
//!   magnitudes are sorted once and `k` is scanned), or the fixed Gaussian-
//!   optimal grid `{-1, 0, 1} * 1.224006 * RMS` (rule `rms`, GMSE 0.19017,
//!   DESIGN.md 2.6; trust mask where `|x| <= 1.5 * step`).
//! - `binary`: `sign(x) * mean |x|` per row or per tensor (GMSE `1 - 2/pi`).
//!   A zero input maps to `+mean |x|` (`-0.0` to `-mean |x|`): one bit has no zero.
//!
//! Bits: ternary elements are counted as packed 5 trits per byte, 1.6 bits
//! (`3^5 = 243 <= 256`; the practical packing); parameter `packing` also
//! offers `"2-bit"` (2 bits, the simplest) and `"entropy"` (`log2 3 =
//! 1.585`, the bound). Binary elements cost 1 bit. Scales: 16 bits per row
//! (or group), 32 bits per tensor, unless `scale_bits` says otherwise.

use sdk::grid::{clamp, clip_mask, map};
use sdk::round::rne;
use sdk::{Bits, Error, Family, Format, Kind, Preset, Result, Shape, Tensor, gauss, rows};

/// Gaussian-MSE-optimal step of the grid `{-1, 0, 1}` (times the RMS), from
/// [`gauss::optimal_scale`] (DESIGN.md 2.6: 1.224006).
fn optimal_ternary_step() -> f64 {
    gauss::optimal_scale(&[-1.0, 0.0, 1.0]).0
}

/// Where one scale is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Tensor,
    Row,
}

fn parse_scope(s: &str) -> Result<Scope> {
    match s {
        "tensor" => Ok(Scope::Tensor),
        "row" => Ok(Scope::Row),
        other => Err(Error::param("scope", format!("unknown scope \"{other}\" (use \"tensor\" or \"row\")"))),
    }
}

/// Bits per trit for a packing name.
fn trit_bits(packing: &str) -> Result<(f64, &'static str)> {
    match packing {
        "5-per-byte" => Ok((1.6, "elements (ternary, 5 trits per byte)")),
        "2-bit" => Ok((2.0, "elements (ternary, 2 bits each)")),
        "entropy" => Ok((3f64.log2(), "elements (ternary, log2 3 bits: entropy bound)")),
        other => Err(Error::param(
            "packing",
            format!("unknown packing \"{other}\" (use \"5-per-byte\", \"2-bit\" or \"entropy\")"),
        )),
    }
}

/// Scale bits: `requested`, or 32 per tensor / 16 per row when 0.
fn scale_bits(requested: u32, scope: Scope) -> Result<u32> {
    match requested {
        0 => Ok(if scope == Scope::Tensor { 32 } else { 16 }),
        1..=64 => Ok(requested),
        _ => Err(Error::param("scale_bits", format!("must be 0..=64, got {requested}"))),
    }
}

fn scale_budget(b: Bits, scope: Scope, bits: u32, shape: Shape) -> Bits {
    match scope {
        Scope::Tensor => b.per_tensor(format!("scale ({bits}-bit)"), bits as f64, shape),
        Scope::Row => b.per_block(format!("scale ({bits}-bit)"), bits as f64, shape.cols.max(1)),
    }
}

/// `mean |x|` in `f64` (0 for an empty slice).
fn mean_abs(x: &[f32]) -> f64 {
    if x.is_empty() { 0.0 } else { sdk::scale::sum_abs(x) / x.len() as f64 }
}

/// The slices one scale is computed over: the whole tensor or each row.
fn scope_chunks(t: &Tensor<'_>, scope: Scope) -> usize {
    match scope {
        Scope::Tensor => t.input.len().max(1),
        Scope::Row => t.shape.cols.max(1),
    }
}

// ---------------------------------------------------------------------------
// bitnet

sdk::params! {
    /// Parameters of BitNet b1.58 absmean ternary.
    pub struct BitnetParams {
        /// Values sharing one absmean scale: "tensor" (BitNet) or "row".
        scope: String = "tensor".to_string(),
        /// Lower bound on the absmean scale (BitNet's clamp(min = 1e-5)).
        eps: f32 = 1e-5,
        /// Trit packing counted: "5-per-byte" (1.6 bits), "2-bit", or "entropy" (log2 3 = 1.585 bits).
        packing: String = "5-per-byte".to_string(),
        /// Bits counted per stored scale (0 = 32 for a per-tensor scale, 16 per row).
        scale_bits: u32 = 0,
    }
}

/// A built BitNet b1.58 quantizer.
#[derive(Debug, Clone)]
pub struct Bitnet {
    scope: Scope,
    eps: f32,
    trit_bits: f64,
    trit_what: &'static str,
    scale_bits: u32,
}

impl Format for Bitnet {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        let n = scope_chunks(&t, self.scope);
        for (x, y) in t.input.chunks(n).zip(t.output.chunks_mut(n)) {
            // As the reference: scale = 1 / clamp(mean|w|, eps); round(w * scale).clamp(-1, 1) / scale.
            let gamma = (mean_abs(x) as f32).max(self.eps);
            let s = 1.0 / gamma;
            map(x, y, |v| clamp(rne(v * s), -1.0, 1.0) / s);
        }
        Ok(())
    }

    fn bits(&self, shape: Shape) -> Bits {
        scale_budget(Bits::default().plus(self.trit_what, self.trit_bits), self.scope, self.scale_bits, shape)
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn label(&self) -> Option<String> {
        let per = if self.scope == Scope::Tensor { "per tensor" } else { "per row" };
        Some(format!("BitNet b1.58 absmean ternary {per}"))
    }
}

/// Kind `bitnet`: BitNet b1.58 absmean ternary.
pub struct BitnetKind;

impl Kind for BitnetKind {
    type Params = BitnetParams;
    const NAME: &'static str = "bitnet";
    const DOC: &'static str = "BitNet b1.58 absmean ternary: gamma = max(mean|x|, eps) over the tensor (or row), \
        q = clamp(round(x / gamma), -1, 1) * gamma (round to nearest even). Bits: trits packed 5 per byte \
        (1.6 bits) by default, plus one 32-bit scale per tensor (16-bit per row). Gradient passes everywhere.";
    const PRESETS: &'static [Preset] = &[Preset::new(
        "bitnet-ternary",
        "scope = \"tensor\"",
        "BitNet b1.58 absmean ternary, one scale per tensor (1.6 bits: 5 trits per byte)",
    )];

    fn build(p: BitnetParams) -> Result<Box<dyn Format>> {
        let scope = parse_scope(&p.scope)?;
        let (trit_bits, trit_what) = trit_bits(&p.packing)?;
        if !(p.eps > 0.0 && p.eps.is_finite()) {
            return Err(Error::param("eps", format!("must be positive and finite, got {}", p.eps)));
        }
        let scale_bits = scale_bits(p.scale_bits, scope)?;
        Ok(Box::new(Bitnet { scope, eps: p.eps, trit_bits, trit_what, scale_bits }))
    }
}

// ---------------------------------------------------------------------------
// ternary

sdk::params! {
    /// Parameters of ternary {-a, 0, a} per row or group.
    pub struct TernaryParams {
        /// Scale rule: "mse" (threshold and scale minimizing the group's squared error, exact) or "rms" (fixed Gaussian-optimal step 1.224006 * RMS, trust mask).
        rule: String = "mse".to_string(),
        /// Values sharing one scale along a row (0 = the whole row).
        group: usize = 0,
        /// Trit packing counted: "5-per-byte" (1.6 bits), "2-bit", or "entropy" (log2 3 = 1.585 bits).
        packing: String = "5-per-byte".to_string(),
        /// Bits counted per stored scale.
        scale_bits: u32 = 16,
    }
}

/// A built ternary format.
#[derive(Debug, Clone)]
pub struct Ternary {
    /// `Some(c)`: fixed step `c * RMS`; `None`: MSE-optimal per group.
    rms_step: Option<f32>,
    group: usize,
    trit_bits: f64,
    trit_what: &'static str,
    scale_bits: u32,
}

/// Scratch space for [`optimal_ternary`], reused across rows.
#[derive(Debug, Default)]
pub struct Scratch {
    keys: Vec<u32>,
    tmp: Vec<u32>,
}

/// The MSE-optimal ternary scale of `x`: `a` and the threshold `t` such that
/// `q(v) = a * sign(v)` for `|v| >= t` and 0 otherwise minimizes
/// `sum (v - q(v))^2`.
///
/// For a set of `k` nonzeros the best `a` is their mean magnitude and the
/// error is `sum v^2 - S_k^2 / k`, where `S_k` is the sum of the `k` largest
/// magnitudes, so sorting the magnitudes once and scanning `k` is exact.
/// When magnitudes tie at the chosen boundary, all of them are kept (and `a`
/// is their mean): the optimum up to that tie. Returns `(0, +inf)` for an
/// all-zero slice.
pub fn optimal_ternary(x: &[f32], scratch: &mut Scratch) -> (f32, f32) {
    let buf = &mut scratch.keys;
    buf.clear();
    // Non-negative floats sort like their bit patterns.
    buf.extend(x.iter().map(|v| v.abs().to_bits()));
    radix_sort(buf, &mut scratch.tmp);
    let mut best = 0f64;
    let mut best_k = 0usize;
    let mut sum = 0f64;
    for (i, &b) in buf.iter().rev().enumerate() {
        sum += f32::from_bits(b) as f64;
        let k = (i + 1) as f64;
        let gain = sum * sum / k;
        if gain > best {
            best = gain;
            best_k = i + 1;
        }
    }
    if best_k == 0 {
        return (0.0, f32::INFINITY);
    }
    let n = buf.len();
    let t_bits = buf[n - best_k];
    // Keep every magnitude tied with the boundary one.
    let first = buf.partition_point(|&b| b < t_bits);
    let kept = &buf[first..];
    let s: f64 = kept.iter().map(|&b| f32::from_bits(b) as f64).sum();
    ((s / kept.len() as f64) as f32, f32::from_bits(t_bits))
}

/// Sorts `keys` ascending: LSD radix sort, four passes of 8 bits (a pass
/// whose byte is the same for every key is skipped). About five times
/// faster than a comparison sort on rows of a few thousand values.
pub fn radix_sort(keys: &mut Vec<u32>, tmp: &mut Vec<u32>) {
    let n = keys.len();
    if n < 64 {
        keys.sort_unstable();
        return;
    }
    let mut hist = [[0usize; 256]; 4];
    for &k in keys.iter() {
        for (p, h) in hist.iter_mut().enumerate() {
            h[((k >> (8 * p)) & 0xFF) as usize] += 1;
        }
    }
    tmp.clear();
    tmp.resize(n, 0);
    for (p, h) in hist.iter().enumerate() {
        if h.contains(&n) {
            continue; // every key has the same byte here
        }
        let mut pos = [0usize; 256];
        let mut sum = 0;
        for (b, &c) in h.iter().enumerate() {
            pos[b] = sum;
            sum += c;
        }
        for &k in keys.iter() {
            let b = ((k >> (8 * p)) & 0xFF) as usize;
            tmp[pos[b]] = k;
            pos[b] += 1;
        }
        std::mem::swap(keys, tmp);
    }
}

impl Format for Ternary {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        let mut buf = Scratch::default();
        for g in rows::tensor_groups(t, self.group) {
            match self.rms_step {
                Some(c) => {
                    let step = sdk::scale::rms_scale(g.input, c);
                    let (s, inv) = if step > 0.0 && (1.0 / step).is_finite() { (step, 1.0 / step) } else { (0.0, 0.0) };
                    map(g.input, g.output, |v| clamp(rne(v * inv), -1.0, 1.0) * s);
                    if let Some(m) = g.mask {
                        clip_mask(g.input, m, 1.5 * s);
                    }
                }
                None => {
                    let (a, thr) = optimal_ternary(g.input, &mut buf);
                    map(g.input, g.output, |v| if v.abs() >= thr { a.copysign(v) } else { 0.0 });
                }
            }
        }
        Ok(())
    }

    fn bits(&self, shape: Shape) -> Bits {
        let mut b = rows::grouped_bits(self.trit_bits, self.scale_bits, shape.cols, self.group);
        b.parts[0].what = self.trit_what.to_string();
        b
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn block_len(&self) -> Option<usize> {
        (self.group > 0).then_some(self.group)
    }

    fn label(&self) -> Option<String> {
        let per = if self.group > 0 { format!("g{}", self.group) } else { "per row".to_string() };
        Some(match self.rms_step {
            Some(_) => format!("ternary, Gaussian-optimal step 1.224 RMS {per}"),
            None => format!("ternary, MSE-optimal threshold and scale {per}"),
        })
    }
}

/// Kind `ternary`: `{-a, 0, a}` with an MSE-optimal (or RMS-fixed) scale per row or group.
pub struct TernaryKind;

impl Kind for TernaryKind {
    type Params = TernaryParams;
    const NAME: &'static str = "ternary";
    const DOC: &'static str = "Ternary {-a, 0, a} per row or group. Rule \"mse\": threshold and scale minimizing \
        the group's squared error, exactly (sort magnitudes once, scan the number of nonzeros k maximizing \
        (sum of the k largest)^2 / k; a = their mean), gradient passes everywhere. Rule \"rms\": fixed \
        Gaussian-optimal step 1.224006 * RMS (GMSE 0.19017), trust mask where |x| <= 1.5 step. Bits: trits \
        packed 5 per byte (1.6 bits) by default, plus a 16-bit scale per group.";
    const PRESETS: &'static [Preset] = &[
        Preset::new(
            "ternary",
            "rule = \"mse\"",
            "ternary, MSE-optimal threshold and scale per row (1.6 bits: 5 trits per byte)",
        ),
        Preset::new(
            "ternary-rms",
            "rule = \"rms\"",
            "ternary, fixed Gaussian-optimal step 1.224 RMS per row (1.6 bits: 5 trits per byte)",
        ),
    ];

    fn build(p: TernaryParams) -> Result<Box<dyn Format>> {
        let rms_step = match p.rule.as_str() {
            "mse" => None,
            "rms" => Some(optimal_ternary_step() as f32),
            other => return Err(Error::param("rule", format!("unknown rule \"{other}\" (use \"mse\" or \"rms\")"))),
        };
        let (trit_bits, trit_what) = trit_bits(&p.packing)?;
        let scale_bits = scale_bits(p.scale_bits, Scope::Row)?;
        Ok(Box::new(Ternary { rms_step, group: p.group, trit_bits, trit_what, scale_bits }))
    }
}

// ---------------------------------------------------------------------------
// binary

sdk::params! {
    /// Parameters of binary sign(x) * mean |x|.
    pub struct BinaryParams {
        /// Values sharing one scale: "row" or "tensor".
        scope: String = "row".to_string(),
        /// Bits counted per stored scale (0 = 32 for a per-tensor scale, 16 per row).
        scale_bits: u32 = 0,
    }
}

/// A built binary format.
#[derive(Debug, Clone)]
pub struct Binary {
    scope: Scope,
    scale_bits: u32,
}

impl Format for Binary {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        let n = scope_chunks(&t, self.scope);
        for (x, y) in t.input.chunks(n).zip(t.output.chunks_mut(n)) {
            let a = mean_abs(x) as f32;
            map(x, y, |v| a.copysign(v));
        }
        Ok(())
    }

    fn bits(&self, shape: Shape) -> Bits {
        scale_budget(Bits::elements(1.0), self.scope, self.scale_bits, shape)
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn label(&self) -> Option<String> {
        let per = if self.scope == Scope::Tensor { "per tensor" } else { "per row" };
        Some(format!("binary sign(x) * mean|x| {per}"))
    }
}

/// Kind `binary`: `sign(x) * mean |x|`.
pub struct BinaryKind;

impl Kind for BinaryKind {
    type Params = BinaryParams;
    const NAME: &'static str = "binary";
    const DOC: &'static str = "Binary sign(x) * mean|x| per row or per tensor (the Gaussian-MSE-optimal 1-bit \
        quantizer, GMSE 1 - 2/pi). Bits: 1 per element plus a 16-bit scale per row (32-bit per tensor). \
        Gradient passes everywhere.";
    const PRESETS: &'static [Preset] =
        &[Preset::new("binary", "scope = \"row\"", "binary sign(x) * mean|x| per row (1 bit + 16-bit scale per row)")];

    fn build(p: BinaryParams) -> Result<Box<dyn Format>> {
        let scope = parse_scope(&p.scope)?;
        let scale_bits = scale_bits(p.scale_bits, scope)?;
        Ok(Box::new(Binary { scope, scale_bits }))
    }
}

sdk::export_plugin!(name: "ternary", kinds: [BitnetKind, TernaryKind, BinaryKind]);

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::testing::{self, build, estimate_on, gaussian, gaussian_tensors, gmse_on, preset, run};
    use std::f64::consts::PI;

    #[test]
    fn conformance() {
        testing::check_kind::<BitnetKind>();
        testing::check_kind::<TernaryKind>();
        testing::check_kind::<BinaryKind>();
    }

    #[test]
    fn conformance_of_options() {
        for p in ["scope = \"row\"", "packing = \"2-bit\", scale_bits = 16"] {
            testing::check_format(p, &*build::<BitnetKind>(p).unwrap());
        }
        for p in ["group = 32", "rule = \"rms\", group = 64", "packing = \"entropy\""] {
            testing::check_format(p, &*build::<TernaryKind>(p).unwrap());
        }
        testing::check_format("tensor", &*build::<BinaryKind>("scope = \"tensor\"").unwrap());
    }

    #[test]
    fn bad_parameters() {
        assert!(build::<BitnetKind>("scope = \"block\"").err().unwrap().to_string().contains("`scope`"));
        assert!(build::<BitnetKind>("eps = 0.0").err().unwrap().to_string().contains("`eps`"));
        assert!(build::<BitnetKind>("packing = \"3-bit\"").err().unwrap().to_string().contains("`packing`"));
        assert!(build::<TernaryKind>("rule = \"absmax\"").err().unwrap().to_string().contains("`rule`"));
        assert!(build::<BinaryKind>("scale_bits = 100").err().unwrap().to_string().contains("`scale_bits`"));
    }

    /// Exact Gaussian integrals behind the oracles (DESIGN.md 3 and 2.6).
    #[test]
    fn exact_oracles() {
        // BitNet with gamma = E|x| = sqrt(2/pi): levels {-1, 0, 1} * gamma, thresholds gamma / 2.
        let g = gauss::grid_mse(&[-1.0, 0.0, 1.0], gauss::SQRT_2_OVER_PI);
        println!("BitNet absmean ternary: exact GMSE {g:.7} (oracle 0.263382)");
        assert!((g - 0.263382).abs() <= 5e-7, "{g}");
        // Binary with a = sqrt(2/pi): 1 - 2/pi.
        let b = gauss::grid_mse(&[-1.0, 1.0], gauss::SQRT_2_OVER_PI);
        assert!((b - (1.0 - 2.0 / PI)).abs() < 1e-14 && (b - 0.3633802).abs() < 5e-8, "{b}");
        // Optimal-Gaussian ternary: step 1.224006, GMSE 0.19017.
        let (s, t) = gauss::optimal_scale(&[-1.0, 0.0, 1.0]);
        assert!((s - 1.224006).abs() < 5e-7 && (t - 0.19017).abs() < 5e-6, "{s} {t}");
    }

    /// Monte Carlo GMSE against the oracles. Tolerance (in `assert_close`):
    /// 3 standard errors of the mean of per-tensor values plus 0.5 % of the
    /// oracle (scales are estimated from finite rows / tensors).
    #[test]
    fn gmse_oracles() {
        let shape = Shape::new(32, 4096);
        let tensors = gaussian_tensors(shape, 300..308);
        estimate_on(&*preset::<BitnetKind>("bitnet-ternary"), shape, &tensors).assert_close("bitnet-ternary", 0.263382);
        estimate_on(&*preset::<BinaryKind>("binary"), shape, &tensors).assert_close("binary", 1.0 - 2.0 / PI);
        let bt = build::<BinaryKind>("scope = \"tensor\"").unwrap();
        estimate_on(&*bt, shape, &tensors).assert_close("binary per tensor", 1.0 - 2.0 / PI);
        estimate_on(&*preset::<TernaryKind>("ternary-rms"), shape, &tensors).assert_close("ternary-rms", 0.19017);
        let opt = estimate_on(&*preset::<TernaryKind>("ternary"), shape, &tensors);
        opt.assert_close("ternary (MSE-optimal per row)", 0.19017);
        // Per-row optimization beats the fixed Gaussian-optimal grid on every tensor.
        for (i, x) in tensors.iter().enumerate() {
            let a = gmse_on(&*preset::<TernaryKind>("ternary"), x, shape, i as u64);
            let b = gmse_on(&*preset::<TernaryKind>("ternary-rms"), x, shape, i as u64);
            assert!(a < b, "tensor {i}: optimal {a} vs fixed grid {b}");
        }
        println!("ternary: MSE-optimal per row {:.6} (exact Gaussian optimum of the fixed grid: 0.19017)", opt.mean);
    }

    /// Brute force: every threshold between distinct magnitudes, best scale for each.
    fn brute_force_error(x: &[f32]) -> f64 {
        let mut mags: Vec<f64> = x.iter().map(|v| v.abs() as f64).collect();
        mags.sort_by(f64::total_cmp);
        mags.dedup();
        let mut best = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
        for &t in &mags {
            let kept: Vec<f64> = x.iter().map(|v| v.abs() as f64).filter(|&m| m >= t).collect();
            let a = kept.iter().sum::<f64>() / kept.len() as f64;
            // Also try nearby scales: the mean is optimal, these must not be better.
            for aa in [a, a * 1.001, a * 0.999] {
                let e: f64 = x
                    .iter()
                    .map(|&v| {
                        let v = v as f64;
                        let q = if v.abs() >= t { aa.copysign(v) } else { 0.0 };
                        (v - q).powi(2)
                    })
                    .sum();
                best = best.min(e);
            }
        }
        best
    }

    #[test]
    fn optimal_ternary_is_exact() {
        let mut buf = Scratch::default();
        for (n, seed) in [(1usize, 1u64), (2, 2), (7, 3), (33, 4), (100, 5), (257, 6)] {
            let x = gaussian(n, seed);
            let (a, t) = optimal_ternary(&x, &mut buf);
            let err: f64 = x
                .iter()
                .map(|&v| {
                    let q = if v.abs() >= t { a.copysign(v) } else { 0.0 };
                    (v as f64 - q as f64).powi(2)
                })
                .sum();
            let bf = brute_force_error(&x);
            println!("n = {n}: error {err:.9} brute force {bf:.9}");
            assert!(err <= bf * (1.0 + 1e-6) + 1e-12, "n = {n}: {err} vs brute force {bf}");
        }
        // Ties and zeros.
        assert_eq!(optimal_ternary(&[0.0; 5], &mut buf).0, 0.0);
        let (a, t) = optimal_ternary(&[1.0, -1.0, 1.0, 0.0], &mut buf);
        assert_eq!((a, t), (1.0, 1.0));
        // Two clusters: {3, 3} and {1}: keep only the 3s (error 1) rather than all (mean 7/3: error 2.67).
        let (a, t) = optimal_ternary(&[3.0, -3.0, 1.0], &mut buf);
        assert_eq!((a, t), (3.0, 3.0));
    }

    #[test]
    fn radix_sort_sorts() {
        for (n, seed) in [(0usize, 0u64), (5, 1), (63, 2), (64, 3), (1000, 4), (4096, 5)] {
            let mut a: Vec<u32> = gaussian(n, seed).iter().map(|v| v.abs().to_bits()).collect();
            a.extend([0, 0, 7, 7, u32::MAX]);
            let mut b = a.clone();
            b.sort_unstable();
            radix_sort(&mut a, &mut Vec::new());
            assert_eq!(a, b, "n = {n}");
        }
        let mut same = vec![0x3F80_0000u32; 100];
        radix_sort(&mut same, &mut Vec::new());
        assert!(same.iter().all(|&k| k == 0x3F80_0000));
    }

    #[test]
    fn bitnet_matches_reference() {
        let shape = Shape::new(8, 300);
        let x = gaussian(shape.len(), 9);
        let (y, m) = run(&*preset::<BitnetKind>("bitnet-ternary"), &x, shape, 0, true).unwrap();
        let gamma = (x.iter().map(|v| v.abs() as f64).sum::<f64>() / x.len() as f64) as f32;
        let mut zeros = 0;
        for (&v, &q) in x.iter().zip(&y) {
            let want = (v / gamma).round_ties_even().clamp(-1.0, 1.0) * gamma;
            assert!((q - want).abs() <= 1e-6 * gamma, "{v}: {q} vs {want}");
            zeros += (q == 0.0) as usize;
        }
        // P(|x| < gamma / 2) = P(|x| < 0.399) = 0.31.
        let frac = zeros as f64 / x.len() as f64;
        assert!((frac - 0.31).abs() < 0.03, "{frac}");
        assert!(m.unwrap().iter().all(|&v| v == 1.0));
        // eps: an all-tiny tensor rounds to zero instead of dividing by ~0.
        let tiny = vec![1e-9f32; 16];
        let (y, _) = run(&*preset::<BitnetKind>("bitnet-ternary"), &tiny, Shape::new(1, 16), 0, false).unwrap();
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn binary_values() {
        let x = [1.0f32, -3.0, 0.5, 0.0, 2.0, -0.5];
        let (y, _) = run(&*preset::<BinaryKind>("binary"), &x, Shape::new(2, 3), 0, false).unwrap();
        assert_eq!(y, [1.5, -1.5, 1.5, 2.5 / 3.0, 2.5 / 3.0, -2.5 / 3.0]);
        let (y, _) = run(&*build::<BinaryKind>("scope = \"tensor\"").unwrap(), &x, Shape::new(2, 3), 0, false).unwrap();
        assert!(y.iter().zip(&x).all(|(q, v)| q.abs() == 7.0 / 6.0 && (v.is_sign_negative() == q.is_sign_negative())));
    }

    #[test]
    fn bits_accounting() {
        let s = Shape::new(64, 4096);
        assert_eq!(preset::<BitnetKind>("bitnet-ternary").bits(s).total(), 1.6 + 32.0 / (64.0 * 4096.0));
        assert_eq!(build::<BitnetKind>("scope = \"row\"").unwrap().bits(s).total(), 1.6 + 16.0 / 4096.0);
        assert_eq!(preset::<TernaryKind>("ternary").bits(s).total(), 1.6 + 16.0 / 4096.0);
        assert_eq!(build::<TernaryKind>("group = 64, packing = \"2-bit\"").unwrap().bits(s).total(), 2.25);
        let e = build::<TernaryKind>("packing = \"entropy\"").unwrap().bits(Shape::new(1, 1)).total();
        assert_eq!(e, 3f64.log2() + 16.0);
        assert_eq!(preset::<BinaryKind>("binary").bits(s).total(), 1.0 + 16.0 / 4096.0);
        let b = preset::<BitnetKind>("bitnet-ternary").bits(s);
        assert!(b.parts[0].what.contains("5 trits per byte") && b.parts[1].what.contains("per tensor"));
    }

    #[test]
    fn rms_rule_mask() {
        let shape = Shape::new(4, 1024);
        let x = gaussian(shape.len(), 3);
        let (y, m) = run(&*preset::<TernaryKind>("ternary-rms"), &x, shape, 0, true).unwrap();
        let m = m.unwrap();
        let closed = m.iter().filter(|&&v| v == 0.0).count();
        // Clipped beyond 1.5 * 1.224 = 1.836 RMS: about 6.6 %.
        let frac = closed as f64 / x.len() as f64;
        assert!((frac - 0.066).abs() < 0.015, "{frac}");
        for ((&v, &q), &mi) in x.iter().zip(&y).zip(&m) {
            if mi == 0.0 {
                assert!(v.abs() > 1.5 * q.abs());
            }
        }
    }
}
