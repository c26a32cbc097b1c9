//! Sparsity formats and the Gaussian-noise format, kinds `topk`, `nm` and `noise`.
//!
//! - `topk`: unstructured magnitude pruning. Per row (or per tensor) keep the
//!   `k = n - round(s * n)` values of largest `|x|`, zero the rest. Selection
//!   is `select_nth_unstable` on the magnitude bits (`|x|` as `u32`, which
//!   orders like the float magnitude), O(n) per row, no sort; among values
//!   equal to the k-th largest magnitude the ones with the lowest index are
//!   kept, so exactly `k` values survive.
//! - `nm`: N:M structured sparsity. In each group of `m` consecutive values
//!   along a row keep the `n` of largest `|x|` (ties: lowest index). A row's
//!   shorter last group keeps `min(n, len)`. 2:4 has a branch-free fast path
//!   (six comparisons per group, no sort); other groups of 4, 8 or 16 rank
//!   with unrolled `m^2` comparisons, any other `m` (up to 64) with a loop.
//! - `noise`: `x + sigma * eps` with `eps ~ N(0, 1)` drawn from a hash of
//!   `(seed, element index)` (Box-Muller on two 24-bit uniforms), and
//!   `sigma = sqrt(mse * mean(x^2))` over the row or tensor, so the expected
//!   relative MSE is `mse` (DESIGN.md 2.4). It predicts a scalar quantizer of
//!   the same GMSE, so its family is `scalar`.
//!
//! ## Backward masks (DESIGN.md 2.7, RBBM)
//!
//! The forward output is the same for every policy; only `t.mask` differs.
//! Notation for one selection unit (a row or the tensor for `topk`, a group
//! of `m` for `nm`): `RMS` is the root mean square of the row (of the tensor
//! for `topk` with `scope = "tensor"`), and `Tk` is the actual top-k
//! threshold, taken as the **largest pruned magnitude** of the unit (so with
//! distinct magnitudes `|x| > Tk` is exactly the kept set; `0` when nothing
//! is pruned).
//!
//! - `fw`: the gradient passes where the value is kept.
//! - `rms`: the gradient passes where `|x| > Tp`, `Tp = RMS * Phi^-1(0.5 + p)`.
//!   Reading of DESIGN.md: for Gaussian data `P(|x| > Tp) = 1 - 2p`, so the
//!   choice that passes the gradient on the same expected fraction as the
//!   forward pass keeps (`1 - s`) is `p = s / 2`, i.e. `Tp = RMS *
//!   Phi^-1((1 + s) / 2)`, the Gaussian prediction of the top-k threshold.
//!   That is the default (`p = -1` means "matched"); `p` in `[0, 0.5)` sets it
//!   explicitly. For `nm`, `s = 1 - n/m`.
//! - `banded-rms`: the gradient passes where `|x| < min(Tp, Tk)` or
//!   `|x| > max(Tp, Tk)`; none in the closed band between them.
//! - `area-banded-rms`: band `[Ta, Tk]`, `Ta = RMS * Phi^-1(Phi(Tk/RMS) -
//!   a * (Phi(Tk/RMS) - 0.5))`: the band covers the fraction `a` of the
//!   normal-CDF area between the median (0) and `Tk`. `a = 0` is an empty
//!   band (gradient everywhere but at `Tk`), `a = 1` blocks `[0, Tk]`.
//!
//! ## Bits
//!
//! Sparse formats count `kept fraction * value_bits` (default 16: kept values
//! stored in BF16) plus the index: `topk` counts a bitmap (1 bit per element)
//! or the entropy bound `log2 C(n, k) / n`; `nm` counts NVIDIA's hardware
//! encoding (`ceil(log2 m)` bits per kept value; 2:4 -> 1 bit per element) or
//! the entropy bound `log2 C(m, n) / m` (2:4 -> 0.646). All counts are exact
//! for the shape asked about (kept counts per row or tensor, a shorter last
//! group included). `noise` stores nothing; it reports the Shannon rate of
//! its MSE, `-0.5 log2(mse)`, as "equivalent bits".

use sdk::round::hash;
use sdk::{Bits, Error, Family, Format, Kind, Preset, Result, Shape, Tensor, gauss, rows};

// ---------------------------------------------------------------------------
// Backward masks.

/// A backward-mask policy.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Policy {
    Fw,
    Rms,
    Banded,
    AreaBanded,
}

/// The backward mask of a sparsifier.
#[derive(Debug, Clone, Copy)]
struct Backward {
    policy: Policy,
    /// `Phi^-1(0.5 + p)`: the RMS multiple of `Tp`.
    tp: f64,
    /// Area fraction `a` of `area-banded-rms`.
    area: f64,
    /// The `p` used (for labels).
    p: f64,
}

impl Backward {
    /// Reads the policy; `s` is the pruned fraction (for the matched `p = s / 2`).
    fn new(mask: &str, p: f64, a: f64, s: f64) -> Result<Self> {
        let policy = match mask {
            "fw" => Policy::Fw,
            "rms" => Policy::Rms,
            "banded-rms" => Policy::Banded,
            "area-banded-rms" => Policy::AreaBanded,
            other => {
                return Err(Error::param(
                    "mask",
                    format!("unknown mask \"{other}\" (use \"fw\", \"rms\", \"banded-rms\" or \"area-banded-rms\")"),
                ));
            }
        };
        let p = if p < 0.0 {
            s / 2.0
        } else if p < 0.5 {
            p
        } else {
            return Err(Error::param("p", format!("must be in [0, 0.5), or negative for s/2, got {p}")));
        };
        if !(0.0..=1.0).contains(&a) {
            return Err(Error::param("a", format!("must be in [0, 1], got {a}")));
        }
        Ok(Backward { policy, tp: gauss::inv_cdf(0.5 + p), area: a, p })
    }

    /// The band `(lo, hi)`: the gradient passes where `|x| < lo` or `|x| > hi`.
    /// Not used for `fw`.
    fn band(&self, rms: f32, tk: f32) -> (f32, f32) {
        let tp = (rms as f64 * self.tp) as f32;
        match self.policy {
            Policy::Fw | Policy::Rms => (0.0, tp),
            Policy::Banded => (tp.min(tk), tp.max(tk)),
            Policy::AreaBanded => {
                let rms = rms as f64;
                let z = if rms > 0.0 { tk as f64 / rms } else { 0.0 };
                let c = gauss::cdf(z);
                let ta = (rms * gauss::inv_cdf(c - self.area * (c - 0.5))) as f32;
                (ta.clamp(0.0, tk), tk)
            }
        }
    }

    fn name(&self) -> String {
        match self.policy {
            Policy::Fw => "fw".into(),
            Policy::Rms => format!("rms p={:.4}", self.p),
            Policy::Banded => format!("banded-rms p={:.4}", self.p),
            Policy::AreaBanded => format!("area-banded-rms a={}", self.area),
        }
    }
}

/// Writes the band mask: 1 where `|x| < lo` or `|x| > hi`, else 0.
#[inline]
fn band_mask(x: &[f32], m: &mut [f32], (lo, hi): (f32, f32)) {
    for (v, o) in x.iter().zip(m.iter_mut()) {
        let a = v.abs();
        *o = if a < lo || a > hi { 1.0 } else { 0.0 };
    }
}

/// Root mean square in `f64` accumulation, as `f32`.
fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (mean_square(x) as f32).sqrt()
}

/// `mean(x^2)`, summed in 8 `f32` lanes per block of 1024 and in `f64` across blocks.
fn mean_square(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let mut total = 0f64;
    for block in x.chunks(1024) {
        let mut acc = [0f32; 8];
        let mut it = block.chunks_exact(8);
        for c in &mut it {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += v * v;
            }
        }
        let rest: f32 = it.remainder().iter().map(|v| v * v).sum();
        total += acc.iter().map(|&a| a as f64).sum::<f64>() + rest as f64;
    }
    total / x.len() as f64
}

/// Magnitude key: `|x|` as its bit pattern, which orders like the magnitude (NaN largest).
#[inline(always)]
fn key(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

fn value_part(value_bits: u32) -> String {
    if value_bits == 16 { "kept values (BF16)".into() } else { format!("kept values ({value_bits}-bit)") }
}

/// `ln(n!)`: exact sum below 256, Stirling series above (relative error < 1e-15).
fn ln_factorial(n: usize) -> f64 {
    if n < 256 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    x * x.ln() - x + 0.5 * (std::f64::consts::TAU * x).ln() + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 / 1260.0))
}

/// `log2 C(n, k)`.
fn log2_binomial(n: usize, k: usize) -> f64 {
    if k == 0 || k >= n {
        return 0.0;
    }
    ((ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)) / std::f64::consts::LN_2).max(0.0)
}

// ---------------------------------------------------------------------------
// Kind `topk`.

sdk::params! {
    /// Parameters of unstructured magnitude (top-k) sparsity.
    pub struct TopkParams {
        /// Fraction of values pruned, in [0, 1); k = n - round(s n) values are kept per row (or tensor).
        sparsity: f64 = 0.5,
        /// Selection unit: "row" (top-k per row) or "tensor" (top-k over the whole tensor).
        scope: String = "row".to_string(),
        /// Backward mask: "fw", "rms", "banded-rms" or "area-banded-rms" (see the kind's doc).
        mask: String = "fw".to_string(),
        /// p of the RMS threshold Tp = RMS Phi^-1(0.5 + p), in [0, 0.5); negative = s/2 (same expected fraction as forward).
        p: f64 = -1.0,
        /// Fraction a of the normal-CDF area between the median and Tk covered by the area-banded-rms band, in [0, 1].
        a: f64 = 0.5,
        /// Bits counted per kept value (16 = BF16).
        value_bits: u32 = 16,
        /// Index encoding counted: "bitmap" (1 bit per element) or "entropy" (log2 C(n, k) / n, the minimum).
        index: String = "bitmap".to_string(),
    }
}

/// A built top-k sparsifier.
#[derive(Debug, Clone)]
pub struct TopK {
    sparsity: f64,
    tensor_scope: bool,
    backward: Backward,
    value_bits: u32,
    entropy_index: bool,
}

impl TopK {
    /// Values kept out of `n`.
    fn kept(&self, n: usize) -> usize {
        n - ((self.sparsity * n as f64).round() as usize).min(n)
    }

    /// Prunes one selection unit (`x` to `y`), writes its mask; `scratch` is reused.
    fn unit(&self, x: &[f32], y: &mut [f32], mask: Option<&mut [f32]>, scratch: &mut Scratch) {
        let n = x.len();
        if n == 0 {
            return;
        }
        let k = self.kept(n);
        // kth: the k-th largest key (u32::MAX keeps nothing, 0 keeps everything).
        let kth = if k == 0 {
            u32::MAX
        } else if k >= n {
            0
        } else {
            scratch.key_at_rank(x, n - k)
        };
        // Count keys above and equal to kth: usually exactly the ties we need.
        let (mut greater, mut equal) = (0usize, 0usize);
        for &v in x {
            let kv = key(v);
            greater += (kv > kth) as usize;
            equal += (kv == kth) as usize;
        }
        let need = k - greater.min(k);
        if equal == need {
            for (a, b) in x.iter().zip(y.iter_mut()) {
                *b = if key(*a) >= kth { *a } else { 0.0 };
            }
        } else {
            // Ties at the threshold: keep the first `need` of them.
            let mut left = need;
            for (a, b) in x.iter().zip(y.iter_mut()) {
                let kv = key(*a);
                let keep = kv > kth || (kv == kth && left > 0);
                if kv == kth && keep {
                    left -= 1;
                }
                *b = if keep { *a } else { 0.0 };
            }
        }
        if let Some(m) = mask {
            if self.backward.policy == Policy::Fw {
                kept_mask(x, m, kth, need, equal);
            } else {
                // Tk: the largest pruned magnitude (a pruned tie, or the largest key below kth).
                let tk = if k >= n {
                    0
                } else if equal > need {
                    kth
                } else {
                    x.iter().map(|&v| key(v)).filter(|&kv| kv < kth).max().unwrap_or(0)
                };
                band_mask(x, m, self.backward.band(rms(x), f32::from_bits(tk)));
            }
        }
    }
}

/// Reusable buffer of the top-k selection.
#[derive(Default)]
struct Scratch {
    keys: Vec<u32>,
}

impl Scratch {
    /// The key of ascending rank `r` (0-based) among the keys of `x`
    /// (`r < x.len()`): `select_nth_unstable` on a copy of the keys, O(n).
    /// (Measured: 3.2 ns per element on 4096-wide rows, against 7.3 for a
    /// 1024-bucket radix pre-selection, whose histogram increments on the
    /// few buckets Gaussian data hit serialize.)
    fn key_at_rank(&mut self, x: &[f32], r: usize) -> u32 {
        self.keys.clear();
        self.keys.extend(x.iter().map(|&v| key(v)));
        *self.keys.select_nth_unstable(r).1
    }
}

/// The `fw` mask of a top-k selection: 1 where kept.
fn kept_mask(x: &[f32], m: &mut [f32], kth: u32, need: usize, equal: usize) {
    if equal == need {
        for (a, o) in x.iter().zip(m.iter_mut()) {
            *o = if key(*a) >= kth { 1.0 } else { 0.0 };
        }
    } else {
        let mut left = need;
        for (a, o) in x.iter().zip(m.iter_mut()) {
            let kv = key(*a);
            let keep = kv > kth || (kv == kth && left > 0);
            if kv == kth && keep {
                left -= 1;
            }
            *o = if keep { 1.0 } else { 0.0 };
        }
    }
}

impl Format for TopK {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        let mut scratch = Scratch::default();
        if self.tensor_scope {
            self.unit(t.input, t.output, t.mask, &mut scratch);
        } else {
            for g in rows::tensor_groups(t, 0) {
                self.unit(g.input, g.output, g.mask, &mut scratch);
            }
        }
        Ok(())
    }

    fn bits(&self, shape: Shape) -> Bits {
        let n = if self.tensor_scope { shape.len() } else { shape.cols }.max(1);
        let k = self.kept(n);
        let b = Bits::default().plus(value_part(self.value_bits), k as f64 * self.value_bits as f64 / n as f64);
        if self.entropy_index {
            let unit = if self.tensor_scope { "tensor" } else { "row" };
            b.plus(format!("index (entropy bound log2 C({n},{k}) per {unit})"), log2_binomial(n, k) / n as f64)
        } else {
            b.plus("index (bitmap, 1 bit per element)", 1.0)
        }
    }

    fn family(&self) -> Family {
        Family::Sparse
    }

    fn label(&self) -> Option<String> {
        Some(format!(
            "top-k {} % sparse per {}, {}-bit values + {}, mask {}",
            100.0 * self.sparsity,
            if self.tensor_scope { "tensor" } else { "row" },
            self.value_bits,
            if self.entropy_index { "entropy-coded index" } else { "bitmap" },
            self.backward.name()
        ))
    }
}

/// Kind `topk`: unstructured magnitude sparsity.
pub struct TopkKind;

impl Kind for TopkKind {
    type Params = TopkParams;
    const NAME: &'static str = "topk";
    const DOC: &'static str = "Unstructured magnitude sparsity: per row (scope = \"row\") or per tensor keep the \
        k = n - round(s n) values of largest |x| (ties: lowest index), zero the rest; O(n) selection. Backward \
        masks (RBBM, DESIGN.md 2.7): fw = kept; rms = |x| > Tp, Tp = RMS Phi^-1(0.5 + p), p = s/2 by default \
        (same expected fraction as forward for Gaussian data); banded-rms = none in the band between Tp and Tk \
        (Tk = largest pruned magnitude); area-banded-rms = none in [Ta, Tk], the band covering the fraction a \
        of the normal-CDF area between the median and Tk. Bits: (k/n) value_bits (BF16 by default) plus the \
        index, a 1-bit-per-element bitmap (default) or the entropy bound log2 C(n, k) / n.";
    const PRESETS: &'static [Preset] = &[
        Preset::new("sparse50", "sparsity = 0.5", "50 % magnitude sparsity per row, BF16 values + bitmap"),
        Preset::new("sparse75", "sparsity = 0.75", "75 % magnitude sparsity per row, BF16 values + bitmap"),
    ];

    fn build(p: TopkParams) -> Result<Box<dyn Format>> {
        if !(0.0..1.0).contains(&p.sparsity) {
            return Err(Error::param("sparsity", format!("must be in [0, 1), got {}", p.sparsity)));
        }
        let tensor_scope = match p.scope.as_str() {
            "row" => false,
            "tensor" => true,
            other => {
                return Err(Error::param("scope", format!("unknown scope \"{other}\" (use \"row\" or \"tensor\")")));
            }
        };
        let entropy_index = match p.index.as_str() {
            "bitmap" => false,
            "entropy" => true,
            other => {
                return Err(Error::param(
                    "index",
                    format!("unknown index \"{other}\" (use \"bitmap\" or \"entropy\")"),
                ));
            }
        };
        if p.value_bits == 0 || p.value_bits > 64 {
            return Err(Error::param("value_bits", format!("must be 1..=64, got {}", p.value_bits)));
        }
        let backward = Backward::new(&p.mask, p.p, p.a, p.sparsity)?;
        Ok(Box::new(TopK { sparsity: p.sparsity, tensor_scope, backward, value_bits: p.value_bits, entropy_index }))
    }
}

// ---------------------------------------------------------------------------
// Kind `nm`.

sdk::params! {
    /// Parameters of N:M structured sparsity.
    pub struct NmParams {
        /// Values kept per group (1 <= n < m).
        n: usize = 2,
        /// Group length along a row (2..=64).
        m: usize = 4,
        /// Backward mask: "fw", "rms", "banded-rms" or "area-banded-rms" (Tk per group, RMS per row).
        mask: String = "fw".to_string(),
        /// p of the RMS threshold Tp = RMS Phi^-1(0.5 + p), in [0, 0.5); negative = s/2 with s = 1 - n/m.
        p: f64 = -1.0,
        /// Fraction a of the normal-CDF area between the median and Tk covered by the area-banded-rms band, in [0, 1].
        a: f64 = 0.5,
        /// Bits counted per kept value (16 = BF16).
        value_bits: u32 = 16,
        /// Index encoding counted: "hardware" (ceil(log2 m) bits per kept value, NVIDIA's) or "entropy" (log2 C(m, n) per group).
        index: String = "hardware".to_string(),
    }
}

/// Largest group length `nm` accepts.
const MAX_M: usize = 64;

/// A built N:M sparsifier.
#[derive(Debug, Clone)]
pub struct Nm {
    n: usize,
    m: usize,
    backward: Backward,
    value_bits: u32,
    entropy_index: bool,
}

/// Keeps the `keep` largest magnitudes of a group (ties: lowest index) by
/// ranking: O(len^2) branch-free comparisons. Writes the fw mask when given;
/// returns the largest pruned magnitude (0 when nothing is pruned).
#[inline]
fn nm_group(x: &[f32], y: &mut [f32], mask: Option<&mut [f32]>, keep: usize) -> f32 {
    let len = x.len();
    let mut keys = [0u32; MAX_M];
    for (k, &v) in keys.iter_mut().zip(x) {
        *k = key(v);
    }
    let keys = &keys[..len];
    let mut kept = [false; MAX_M];
    let mut tk = 0u32;
    for j in 0..len {
        let kj = keys[j];
        let mut rank = 0usize;
        for (i, &ki) in keys.iter().enumerate() {
            rank += (ki > kj || (ki == kj && i < j)) as usize;
        }
        kept[j] = rank < keep;
        if !kept[j] {
            tk = tk.max(kj);
        }
        y[j] = if kept[j] { x[j] } else { 0.0 };
    }
    if let Some(m) = mask {
        for (o, &k) in m.iter_mut().zip(&kept[..len]) {
            *o = if k { 1.0 } else { 0.0 };
        }
    }
    f32::from_bits(tk)
}

/// 2:4 without sorting: six comparisons rank the four magnitudes (the lower
/// index wins a tie); the two of rank 0 and 1 are kept.
#[inline(always)]
fn keep_2of4(x: &[f32; 4]) -> [bool; 4] {
    let [a, b, c, d] = x.map(key);
    // "i beats j" for i < j: key_i >= key_j.
    let ab = (a >= b) as u32;
    let ac = (a >= c) as u32;
    let ad = (a >= d) as u32;
    let bc = (b >= c) as u32;
    let bd = (b >= d) as u32;
    let cd = (c >= d) as u32;
    let ra = 3 - ab - ac - ad;
    let rb = ab + 2 - bc - bd;
    let rc = ac + bc + 1 - cd;
    let rd = ad + bd + cd;
    [ra < 2, rb < 2, rc < 2, rd < 2]
}

/// Keeps the `keep` largest magnitudes of a group of a fixed length `M` by
/// ranking (ties: lowest index); the loops unroll into `M^2` branch-free
/// comparisons.
#[inline(always)]
fn keep_ranked<const M: usize>(x: &[f32; M], keep: usize) -> [bool; M] {
    let keys = x.map(key);
    let mut out = [false; M];
    for j in 0..M {
        let mut rank = 0u32;
        for i in 0..M {
            rank += ((keys[i] > keys[j]) | ((keys[i] == keys[j]) & (i < j))) as u32;
        }
        out[j] = (rank as usize) < keep;
    }
    out
}

/// One row with groups of a fixed length `M`: full groups through `select`,
/// then a shorter tail through [`nm_group`] (keeping `min(keep, len)`).
#[inline(always)]
fn row_fixed<const M: usize>(
    x: &[f32],
    y: &mut [f32],
    mask: Option<&mut [f32]>,
    keep: usize,
    select: impl Fn(&[f32; M]) -> [bool; M],
) {
    let full = x.len() / M * M;
    match mask {
        None => {
            for (xs, ys) in x[..full].chunks_exact(M).zip(y[..full].chunks_exact_mut(M)) {
                let xs: &[f32; M] = xs.try_into().unwrap();
                let k = select(xs);
                for i in 0..M {
                    ys[i] = if k[i] { xs[i] } else { 0.0 };
                }
            }
            if full < x.len() {
                nm_group(&x[full..], &mut y[full..], None, keep);
            }
        }
        Some(m) => {
            for ((xs, ys), ms) in
                x[..full].chunks_exact(M).zip(y[..full].chunks_exact_mut(M)).zip(m[..full].chunks_exact_mut(M))
            {
                let xs: &[f32; M] = xs.try_into().unwrap();
                let k = select(xs);
                for i in 0..M {
                    ys[i] = if k[i] { xs[i] } else { 0.0 };
                    ms[i] = if k[i] { 1.0 } else { 0.0 };
                }
            }
            if full < x.len() {
                nm_group(&x[full..], &mut y[full..], Some(&mut m[full..]), keep);
            }
        }
    }
}

impl Nm {
    fn row(&self, x: &[f32], y: &mut [f32], mask: Option<&mut [f32]>) {
        let fw = self.backward.policy == Policy::Fw;
        if fw || mask.is_none() {
            let n = self.n;
            match self.m {
                4 if n == 2 => return row_fixed::<4>(x, y, mask, 2, keep_2of4),
                4 => return row_fixed::<4>(x, y, mask, n, |g| keep_ranked(g, n)),
                8 => return row_fixed::<8>(x, y, mask, n, |g| keep_ranked(g, n)),
                16 => return row_fixed::<16>(x, y, mask, n, |g| keep_ranked(g, n)),
                _ => {}
            }
        }
        match mask {
            Some(mk) if !fw => {
                let r = rms(x);
                for ((xs, ys), ms) in x.chunks(self.m).zip(y.chunks_mut(self.m)).zip(mk.chunks_mut(self.m)) {
                    let tk = nm_group(xs, ys, None, self.n);
                    band_mask(xs, ms, self.backward.band(r, tk));
                }
            }
            Some(mk) => {
                for ((xs, ys), ms) in x.chunks(self.m).zip(y.chunks_mut(self.m)).zip(mk.chunks_mut(self.m)) {
                    nm_group(xs, ys, Some(ms), self.n);
                }
            }
            None => {
                for (xs, ys) in x.chunks(self.m).zip(y.chunks_mut(self.m)) {
                    nm_group(xs, ys, None, self.n);
                }
            }
        }
    }
}

impl Format for Nm {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        for g in rows::tensor_groups(t, 0) {
            self.row(g.input, g.output, g.mask);
        }
        Ok(())
    }

    fn bits(&self, shape: Shape) -> Bits {
        let cols = shape.cols.max(1);
        let (full, rem) = (cols / self.m, cols % self.m);
        let kept_rem = self.n.min(rem);
        let kept = full * self.n + kept_rem;
        let b = Bits::default().plus(value_part(self.value_bits), kept as f64 * self.value_bits as f64 / cols as f64);
        let index_bits = |len: usize, keep: usize| -> f64 {
            if keep >= len {
                0.0
            } else if self.entropy_index {
                log2_binomial(len, keep)
            } else {
                (keep * (usize::BITS - (len - 1).leading_zeros()) as usize) as f64
            }
        };
        let index = (full as f64 * index_bits(self.m, self.n) + index_bits(rem, kept_rem)) / cols as f64;
        let what = if self.entropy_index {
            format!("index (entropy bound log2 C({},{}) per {})", self.m, self.n, self.m)
        } else {
            format!("index (hardware: {}-bit position per kept value)", usize::BITS - (self.m - 1).leading_zeros())
        };
        b.plus(what, index)
    }

    fn family(&self) -> Family {
        Family::Sparse
    }

    fn block_len(&self) -> Option<usize> {
        Some(self.m)
    }

    fn label(&self) -> Option<String> {
        Some(format!(
            "{}:{} sparsity, {}-bit values + {} index, mask {}",
            self.n,
            self.m,
            self.value_bits,
            if self.entropy_index { "entropy-coded" } else { "hardware" },
            self.backward.name()
        ))
    }
}

/// Kind `nm`: N:M structured sparsity.
pub struct NmKind;

impl Kind for NmKind {
    type Params = NmParams;
    const NAME: &'static str = "nm";
    const DOC: &'static str = "N:M structured sparsity: in each group of m consecutive values along a row keep \
        the n of largest |x| (ties: lowest index; a shorter last group keeps min(n, len)); 2:4 has a sort-free \
        fast path. Backward masks as for topk with s = 1 - n/m, Tk = largest pruned magnitude of the group, \
        RMS of the row. Bits: (n/m) value_bits (BF16 by default) plus the index: \"hardware\" = NVIDIA's \
        ceil(log2 m)-bit position per kept value (2:4: 1 bit per element), or \"entropy\" = log2 C(m, n) per \
        group (2:4: 0.646 bits per element).";
    const PRESETS: &'static [Preset] = &[
        Preset::new("sparse-2of4", "n = 2, m = 4", "2:4 sparsity, BF16 values + 2-bit hardware indices"),
        Preset::new("sparse-4of8", "n = 4, m = 8", "4:8 sparsity, BF16 values + 3-bit hardware indices"),
    ];

    fn build(p: NmParams) -> Result<Box<dyn Format>> {
        if !(2..=MAX_M).contains(&p.m) {
            return Err(Error::param("m", format!("must be 2..={MAX_M}, got {}", p.m)));
        }
        if p.n == 0 || p.n >= p.m {
            return Err(Error::param("n", format!("must be 1..m-1 = 1..={}, got {}", p.m - 1, p.n)));
        }
        let entropy_index = match p.index.as_str() {
            "hardware" => false,
            "entropy" => true,
            other => {
                return Err(Error::param(
                    "index",
                    format!("unknown index \"{other}\" (use \"hardware\" or \"entropy\")"),
                ));
            }
        };
        if p.value_bits == 0 || p.value_bits > 64 {
            return Err(Error::param("value_bits", format!("must be 1..=64, got {}", p.value_bits)));
        }
        let s = 1.0 - p.n as f64 / p.m as f64;
        let backward = Backward::new(&p.mask, p.p, p.a, s)?;
        Ok(Box::new(Nm { n: p.n, m: p.m, backward, value_bits: p.value_bits, entropy_index }))
    }
}

// ---------------------------------------------------------------------------
// Kind `noise`.

sdk::params! {
    /// Parameters of the Gaussian-noise format.
    pub struct NoiseParams {
        /// Target MSE relative to the mean square of the row (or tensor), in (0, 1).
        mse: f64 = 0.01,
        /// Unit whose mean square scales the noise: "row" or "tensor".
        scope: String = "row".to_string(),
    }
}

/// A built noise format.
#[derive(Debug, Clone)]
pub struct Noise {
    mse: f64,
    tensor_scope: bool,
}

/// `2^-24`.
const TWO_POW_M24: f32 = 1.0 / 16_777_216.0;

/// `ln x` for positive normal `x`, branch-free (vectorizes): exponent plus
/// an odd series in `t = (m - 1) / (m + 1)` for the mantissa `m` in
/// `[sqrt(1/2), sqrt(2))`; error below 1e-7 relative.
#[inline(always)]
fn ln_fast(x: f32) -> f32 {
    let bits = x.to_bits() as i32;
    let m = f32::from_bits(((bits & 0x007f_ffff) | 0x3f80_0000) as u32);
    let e = ((bits >> 23) - 127) as f32;
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { 0.5 * m } else { m };
    let e = if big { e + 1.0 } else { e };
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = 1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0))));
    e * std::f32::consts::LN_2 + 2.0 * t * series
}

/// `(sin, cos)` of `2 pi u` for `u` in `[0, 1)`, branch-free (vectorizes):
/// reduced to `[-pi/2, pi/2]`, then Taylor polynomials to degree 11 / 12
/// (error below 1e-7).
#[inline(always)]
fn sincos_turns(u: f32) -> (f32, f32) {
    use std::f32::consts::{FRAC_PI_2, PI, TAU};
    let a = if u >= 0.5 { u - 1.0 } else { u };
    let th = TAU * a; // [-pi, pi)
    let fold = th.abs() > FRAC_PI_2;
    let x = if fold { PI.copysign(th) - th } else { th };
    let x2 = x * x;
    let s = x
        * (1.0
            + x2 * (-1.0 / 6.0
                + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362_880.0 + x2 * (-1.0 / 39_916_800.0))))));
    let c = 1.0
        + x2 * (-0.5
            + x2 * (1.0 / 24.0
                + x2 * (-1.0 / 720.0
                    + x2 * (1.0 / 40_320.0 + x2 * (-1.0 / 3_628_800.0 + x2 * (1.0 / 479_001_600.0))))));
    (s, if fold { -c } else { c })
}

/// The two uniforms of a pair, as 24-bit integers: `(h >> 40, (h >> 16) mod 2^24)`.
#[inline(always)]
fn pair_bits(h: u64) -> (i32, i32) {
    ((h >> 40) as i32, ((h >> 16) & 0xff_ffff) as i32)
}

/// Box-Muller on the two 24-bit uniforms of a pair: `u1 = (a + 1) 2^-24` in
/// `(0, 1]` (so the radius is at most `sqrt(48 ln 2) = 5.77`; the truncated
/// tail has probability 8e-9) and `u2 = b 2^-24` in `[0, 1)`.
#[inline(always)]
fn box_muller(a: i32, b: i32) -> (f32, f32) {
    let u1 = (a as f32 + 1.0) * TWO_POW_M24;
    let u2 = b as f32 * TWO_POW_M24;
    let r = (-2.0 * ln_fast(u1)).sqrt();
    let (s, c) = sincos_turns(u2);
    (r * c, r * s)
}

/// The two standard normal values of pair `pair` under `seed`.
#[inline(always)]
fn normal_pair(seed: u64, pair: u64) -> (f32, f32) {
    let (a, b) = pair_bits(hash(seed, pair));
    box_muller(a, b)
}

/// Standard normal value for element `index` under `seed` (element `2j` takes
/// the cosine, `2j + 1` the sine of pair `j`).
#[inline]
fn normal(seed: u64, index: u64) -> f32 {
    let (c, s) = normal_pair(seed, index >> 1);
    if index & 1 == 0 { c } else { s }
}

/// Pairs per batch of [`add_noise`].
const BATCH: usize = 64;

/// `y = x + sigma * eps`, element `i` of `x` being element `first + i` of the
/// stream. Whole pairs go in batches: hashes first (scalar 64-bit
/// arithmetic), then Box-Muller over the batch (a loop that vectorizes).
fn add_noise(x: &[f32], y: &mut [f32], sigma: f32, seed: u64, first: u64) {
    let mut i = 0usize;
    let n = x.len();
    if n == 0 {
        return;
    }
    if first & 1 == 1 {
        y[0] = x[0] + sigma * normal(seed, first);
        i = 1;
    }
    let pairs = (n - i) / 2;
    let pair0 = (first + i as u64) >> 1;
    let (mut ua, mut ub) = ([0i32; BATCH], [0i32; BATCH]);
    let (mut zc, mut zs) = ([0f32; BATCH], [0f32; BATCH]);
    let mut p = 0usize;
    while p < pairs {
        let b = (pairs - p).min(BATCH);
        for j in 0..b {
            (ua[j], ub[j]) = pair_bits(hash(seed, pair0 + (p + j) as u64));
        }
        for j in 0..BATCH {
            (zc[j], zs[j]) = box_muller(ua[j], ub[j]);
        }
        let start = i + 2 * p;
        let xs = &x[start..start + 2 * b];
        let ys = &mut y[start..start + 2 * b];
        for (j, (xp, yp)) in xs.chunks_exact(2).zip(ys.chunks_exact_mut(2)).enumerate() {
            yp[0] = xp[0] + sigma * zc[j];
            yp[1] = xp[1] + sigma * zs[j];
        }
        p += b;
    }
    i += 2 * pairs;
    if i < n {
        y[i] = x[i] + sigma * normal(seed, first + i as u64);
    }
}

impl Format for Noise {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        let seed = t.seed;
        if self.tensor_scope {
            let sigma = (self.mse * mean_square(t.input)).sqrt() as f32;
            add_noise(t.input, t.output, sigma, seed, 0);
        } else {
            for g in rows::tensor_groups(t, 0) {
                let sigma = (self.mse * mean_square(g.input)).sqrt() as f32;
                add_noise(g.input, g.output, sigma, seed, g.offset as u64);
            }
        }
        // The mask stays open: noise injection trains straight through.
        Ok(())
    }

    fn bits(&self, _shape: Shape) -> Bits {
        Bits::default().plus("equivalent bits (Shannon rate for this MSE)", -0.5 * self.mse.log2())
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn stochastic(&self) -> bool {
        true
    }

    fn label(&self) -> Option<String> {
        Some(format!(
            "Gaussian noise, relative MSE {} per {}",
            self.mse,
            if self.tensor_scope { "tensor" } else { "row" }
        ))
    }
}

/// Kind `noise`: additive Gaussian noise of a target relative MSE.
pub struct NoiseKind;

impl Kind for NoiseKind {
    type Params = NoiseParams;
    const NAME: &'static str = "noise";
    const DOC: &'static str = "Additive Gaussian noise (DESIGN.md 2.4): x + sigma eps, eps ~ N(0, 1) seeded by \
        (seed, element index) so results do not depend on chunking, sigma = sqrt(mse mean(x^2)) over the row \
        or tensor, so the expected relative MSE is `mse`. Predicts a scalar quantizer of GMSE `mse` (family \
        scalar). Stores nothing: its bits are the Shannon rate of that MSE, -0.5 log2(mse). Gradient mask open.";
    const PRESETS: &'static [Preset] = &[
        Preset::new("noise-int4", "mse = 0.011543", "Gaussian noise at the GMSE of QuEST INT4 (0.011543)"),
        Preset::new("noise-1e-2", "mse = 0.01", "Gaussian noise of relative MSE 0.01"),
    ];

    fn build(p: NoiseParams) -> Result<Box<dyn Format>> {
        if !(p.mse > 0.0 && p.mse < 1.0) {
            return Err(Error::param("mse", format!("must be in (0, 1), got {}", p.mse)));
        }
        let tensor_scope = match p.scope.as_str() {
            "row" => false,
            "tensor" => true,
            other => {
                return Err(Error::param("scope", format!("unknown scope \"{other}\" (use \"row\" or \"tensor\")")));
            }
        };
        Ok(Box::new(Noise { mse: p.mse, tensor_scope }))
    }
}

sdk::export_plugin!(name: "sparse", kinds: [TopkKind, NmKind, NoiseKind]);

#[cfg(test)]
mod tests;
