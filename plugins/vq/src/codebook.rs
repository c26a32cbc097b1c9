//! Codebooks that are MSE-optimal for `N(0, I_p)`, trained by Lloyd's
//! algorithm (k-means) on Gaussian samples, and the nearest-codeword search.
//!
//! Training is deterministic: a fixed seed per `(dim, bits)`, a fixed number
//! of samples per codeword, LBG splitting (start from the mean, split every
//! codeword in two along a seeded random direction, refine with Lloyd
//! iterations, repeat until `K` codewords) and fixed stopping rules (relative
//! distortion improvement below a tolerance or an iteration cap). It runs on
//! one thread, so the result never depends on the machine's thread count.
//! Trained codewords are rounded to BF16 (the codebook is counted as stored
//! in BF16). [`codebook`] builds each `(dim, bits)` once per process.
//!
//! Search: brute force over all codewords with `||c||² - 2 c·x` (precomputed
//! norms, blocks of 8 codewords in structure-of-arrays layout, a per-lane
//! running argmin that vectorizes). In 2 dimensions a candidate grid over
//! the codebook's disc lists, per cell, every codeword that can be nearest to
//! a point of the cell, and only those are evaluated with the same
//! arithmetic; the choice is identical to the brute-force one (tested).
//! Training uses Hamerly's bounds, which skip samples whose assignment
//! provably cannot change (the brute-force assignments up to `f32` near-ties;
//! the preset codebooks came out bit-identical to plain Lloyd).

use std::sync::OnceLock;

/// Vector dimensions supported.
pub const DIMS: [usize; 3] = [2, 4, 8];

/// Largest codebook size accepted.
pub const MAX_SIZE: usize = 1024;

/// Codewords per search block (lanes of the vectorized distance loop).
const LANES: usize = 8;

/// Training samples per codeword.
const SAMPLES_PER_WORD: usize = 256;

/// Fewest training samples (so tiny codebooks are trained on enough data).
const MIN_SAMPLES: usize = 1 << 15;

/// Lloyd iterations stop when the relative improvement of the training
/// distortion falls below this (intermediate LBG stages)...
const STAGE_TOL: f64 = 1e-3;
/// ... or after this many iterations.
const STAGE_ITERS: usize = 10;
/// The same two rules for the last stage (all `K` codewords).
const FINAL_TOL: f64 = 1e-4;
/// Iteration cap of the last stage.
const FINAL_ITERS: usize = 25;

/// Seed of the training samples (mixed with `dim` and `bits`).
const SEED: u64 = 0x5651_2d63_6f64_6562; // "VQ-codeb"

/// A codebook of `size = 2^(bits * dim)` codewords in `dim` dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Codebook {
    /// Vector dimension `p`.
    pub dim: usize,
    /// Bits per element `b`.
    pub bits: u32,
    /// Number of codewords `K = 2^(b p)`.
    pub size: usize,
    /// Codewords, row-major `K x p` (BF16-representable values).
    pub words: Vec<f32>,
    /// Outer radius: the largest codeword norm.
    pub radius: f32,
    /// Training-set distortion per element (after BF16 rounding).
    pub train_mse: f64,
    /// Search layout: blocks of [`LANES`] codewords, each `[norm²; LANES]`
    /// followed by `p` rows `[coordinate; LANES]`; padding codewords have
    /// infinite norm and are never chosen.
    search: Vec<f32>,
    /// `||c||²` of every codeword (the values the search layout holds).
    norms: Vec<f32>,
    /// Candidate lists for the 2-d search, when built.
    grid: Option<Grid>,
}

/// Smallest 2-d codebook that gets a candidate grid (smaller ones are
/// searched by brute force, which is as fast).
const GRID_MIN_SIZE: usize = 16;

/// Cells per side of the 2-d candidate grid, per square root of `K`.
const GRID_CELLS_PER_SQRT_K: usize = 4;

/// Slack on squared distances when listing candidates, far above the `f32`
/// rounding of `||c||² - 2 c·x` for any vector the grid covers.
const GRID_SLACK: f32 = 1e-3;

/// A square grid over `[-half, half]²`: each cell lists, in ascending order,
/// every codeword that can be the nearest one to a point of the cell
/// (`min dist²(c, cell) <= min over c' of max dist²(c', cell) + slack`).
/// Vectors outside the grid (or NaN) fall back to the brute-force search.
#[derive(Debug, Clone, PartialEq)]
struct Grid {
    half: f32,
    inv_h: f32,
    cells: usize,
    /// Start of each cell's list in `cand` (`cells² + 1` offsets).
    start: Vec<u32>,
    cand: Vec<u16>,
}

impl Grid {
    fn new(words: &[f32], radius: f32) -> Self {
        let size = words.len() / 2;
        let cells = GRID_CELLS_PER_SQRT_K * (size as f64).sqrt().ceil() as usize;
        let half = radius.max(1e-3);
        let h = 2.0 * half as f64 / cells as f64;
        let mut start = vec![0u32];
        let mut cand = Vec::new();
        let mut near = vec![0f64; size];
        for cy in 0..cells {
            for cx in 0..cells {
                let (x0, y0) = (-half as f64 + cx as f64 * h, -half as f64 + cy as f64 * h);
                let (x1, y1) = (x0 + h, y0 + h);
                let mut bound = f64::INFINITY;
                for k in 0..size {
                    let (a, b) = (words[2 * k] as f64, words[2 * k + 1] as f64);
                    let dx = (x0 - a).max(a - x1).max(0.0);
                    let dy = (y0 - b).max(b - y1).max(0.0);
                    near[k] = dx * dx + dy * dy;
                    let fx = (a - x0).abs().max((a - x1).abs());
                    let fy = (b - y0).abs().max((b - y1).abs());
                    bound = bound.min(fx * fx + fy * fy);
                }
                let limit = bound + GRID_SLACK as f64;
                cand.extend((0..size).filter(|&k| near[k] <= limit).map(|k| k as u16));
                start.push(cand.len() as u32);
            }
        }
        Grid { half, inv_h: (1.0 / h) as f32, cells, start, cand }
    }

    /// The candidate list of the cell holding `(x, y)`, if the grid covers it.
    #[inline(always)]
    fn candidates(&self, x: f32, y: f32) -> Option<&[u16]> {
        let u = (x + self.half) * self.inv_h;
        let v = (y + self.half) * self.inv_h;
        let n = self.cells as f32;
        if !(u >= 0.0 && u < n && v >= 0.0 && v < n) {
            return None;
        }
        let cell = (v as usize).min(self.cells - 1) * self.cells + (u as usize).min(self.cells - 1);
        Some(&self.cand[self.start[cell] as usize..self.start[cell + 1] as usize])
    }
}

/// Number of codewords for `dim` and `bits`, or `None` when `2^(b p)` overflows.
pub fn size(dim: usize, bits: u32) -> Option<usize> {
    let e = (dim as u32).checked_mul(bits)?;
    if e >= usize::BITS { None } else { Some(1usize << e) }
}

/// The cached codebook for `(dim, bits)`; built on first use.
///
/// # Panics
/// When `dim` is not 2, 4 or 8 or the codebook would exceed [`MAX_SIZE`].
pub fn codebook(dim: usize, bits: u32) -> &'static Codebook {
    const SLOTS: usize = 13; // bits 0..=12 (K <= 4096 needs b p <= 12)
    static CACHE: [OnceLock<Codebook>; 3 * SLOTS] = [const { OnceLock::new() }; 3 * SLOTS];
    let d = DIMS.iter().position(|&p| p == dim).unwrap_or_else(|| panic!("vq: dim {dim} is not 2, 4 or 8"));
    assert!(
        bits >= 1 && size(dim, bits).is_some_and(|k| k <= MAX_SIZE),
        "vq: 2^(bits * dim) must be at most {MAX_SIZE} (dim {dim}, bits {bits})"
    );
    CACHE[d * SLOTS + bits as usize].get_or_init(|| shipped(dim, bits).unwrap_or_else(|| build(dim, bits)))
}

/// The shipped codebook for `(dim, bits)`, when there is one: the presets'
/// codebooks, as [`build`] trains them (bit for bit, tested), so that a
/// process does not train them at every start.
pub fn shipped(dim: usize, bits: u32) -> Option<Codebook> {
    let &(_, _, mse, words) = crate::shipped::CODEBOOKS.iter().find(|c| c.0 == dim && c.1 == bits)?;
    let words = words.iter().map(|&h| f32::from_bits((h as u32) << 16)).collect();
    let mut cb = Codebook::from_words(dim, bits, words);
    cb.train_mse = f64::from_bits(mse);
    Some(cb)
}

/// Trains the codebook for `(dim, bits)` (no cache; deterministic).
pub fn build(dim: usize, bits: u32) -> Codebook {
    match dim {
        2 => train::<2>(bits),
        4 => train::<4>(bits),
        8 => train::<8>(bits),
        _ => panic!("vq: dim {dim} is not 2, 4 or 8"),
    }
}

/// Rounds to the nearest BF16 value, ties to even (finite inputs).
pub fn bf16(x: f32) -> f32 {
    let b = x.to_bits();
    let r = b.wrapping_add(0x7fff + ((b >> 16) & 1));
    f32::from_bits(r & 0xffff_0000)
}

impl Codebook {
    /// A codebook from row-major codewords (`K x dim`), with its search layout.
    pub fn from_words(dim: usize, bits: u32, words: Vec<f32>) -> Self {
        let mut cb = Self::plain(dim, bits, words);
        if dim == 2 && cb.size >= GRID_MIN_SIZE && cb.size <= 1 << 16 {
            cb.grid = Some(Grid::new(&cb.words, cb.radius));
        }
        cb
    }

    /// The codebook without the 2-d candidate grid (for training).
    fn plain(dim: usize, bits: u32, words: Vec<f32>) -> Self {
        let size = words.len() / dim;
        let blocks = size.div_ceil(LANES);
        let stride = (dim + 1) * LANES;
        let mut search = vec![0f32; blocks * stride];
        for j in 0..blocks * LANES {
            let (b, l) = (j / LANES, j % LANES);
            let blk = &mut search[b * stride..(b + 1) * stride];
            if j < size {
                let c = &words[j * dim..(j + 1) * dim];
                blk[l] = c.iter().map(|v| v * v).sum();
                for (k, &v) in c.iter().enumerate() {
                    blk[(k + 1) * LANES + l] = v;
                }
            } else {
                blk[l] = f32::INFINITY;
            }
        }
        let radius = words.chunks_exact(dim).map(|c| c.iter().map(|v| v * v).sum::<f32>()).fold(0f32, f32::max).sqrt();
        let norms = words.chunks_exact(dim).map(|c| c.iter().map(|v| v * v).sum()).collect();
        Codebook { dim, bits, size, words, radius, train_mse: f64::NAN, search, norms, grid: None }
    }

    /// True when the 2-d search uses the candidate grid.
    pub fn uses_grid(&self) -> bool {
        self.grid.is_some()
    }

    /// Codeword `k`.
    #[inline(always)]
    pub fn word(&self, k: usize) -> &[f32] {
        &self.words[k * self.dim..(k + 1) * self.dim]
    }

    /// Index of the codeword nearest to `x` (`dim == P`): the smallest index
    /// among those minimizing `||c||² - 2 c·x`, computed in `f32` as
    /// `((||c||² + c_0 (-2 x_0)) + c_1 (-2 x_1)) + ...`.
    #[inline(always)]
    pub fn nearest<const P: usize>(&self, x: &[f32; P]) -> usize {
        self.nearest_with::<P, false>(x)
    }

    /// [`Codebook::nearest`]; with `AVX2` (and a CPU that has it) the
    /// brute-force search runs on AVX2 registers ([`Codebook::brute_avx2`]),
    /// best inlined into a function compiled for AVX2.
    #[inline(always)]
    pub(crate) fn nearest_with<const P: usize, const AVX2: bool>(&self, x: &[f32; P]) -> usize {
        debug_assert_eq!(P, self.dim);
        let y: [f32; P] = std::array::from_fn(|d| -2.0 * x[d]);
        if P == 2
            && let Some(g) = &self.grid
            && let Some(cand) = g.candidates(x[0], x[1])
        {
            // The same arithmetic on the cell's candidates, in ascending order.
            let mut best = (f32::INFINITY, 0usize);
            for &k in cand {
                let k = k as usize;
                let d = self.norms[k] + self.words[2 * k] * y[0] + self.words[2 * k + 1] * y[1];
                if d < best.0 {
                    best = (d, k);
                }
            }
            return best.1;
        }
        #[cfg(target_arch = "x86_64")]
        if AVX2 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (a cached flag, checked just above).
            return unsafe { self.brute_avx2(&y) };
        }
        let mut best = [f32::INFINITY; LANES];
        let mut idx = [0u32; LANES];
        let stride = (P + 1) * LANES;
        for (j, blk) in self.search.chunks_exact(stride).enumerate() {
            let d = block_distances(blk, &y);
            let base = (j * LANES) as u32;
            for l in 0..LANES {
                let better = d[l] < best[l];
                best[l] = if better { d[l] } else { best[l] };
                idx[l] = if better { base + l as u32 } else { idx[l] };
            }
        }
        first_min(&best, &idx)
    }

    /// The brute-force search of [`Codebook::nearest`] in AVX2 intrinsics:
    /// the same `f32` operations per lane (`d = norm; d = d + c_k * y_k`) and
    /// the same selection, the smallest index among the smallest values.
    /// Block `j` is searched by chain `j mod CHAINS` (four independent chains,
    /// so the `P` dependent additions of one block overlap with the other
    /// chains' instead of stalling the loop); each chain keeps a lane's
    /// earlier codeword on a tie, tracked as its block number in an `f32`
    /// lane (exact below 2^24), and the chains are merged lane by lane with
    /// the tie rule.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn brute_avx2<const P: usize>(&self, y: &[f32; P]) -> usize {
        use std::arch::x86_64::*;
        const { assert!(LANES == 8) };
        const CHAINS: usize = 4;
        let stride = (P + 1) * LANES;
        let yv: [__m256; P] = std::array::from_fn(|k| _mm256_set1_ps(y[k]));
        let dist = |p: *const f32| {
            // SAFETY: `p` starts a block of `(P + 1) * 8` values.
            let mut d = unsafe { _mm256_loadu_ps(p) };
            for (k, &yk) in yv.iter().enumerate() {
                let c = unsafe { _mm256_loadu_ps(p.add((k + 1) * LANES)) };
                d = _mm256_add_ps(d, _mm256_mul_ps(c, yk));
            }
            d
        };
        let mut best = [_mm256_set1_ps(f32::INFINITY); CHAINS];
        // A chain that never improves keeps its first block number, so an
        // all-NaN search still answers codeword 0.
        let offset: [__m256; CHAINS] = std::array::from_fn(|c| _mm256_set1_ps(c as f32));
        let mut blk = offset;
        let mut j0 = _mm256_setzero_ps();
        let step = _mm256_set1_ps(CHAINS as f32);
        let mut keep = |c: usize, d: __m256, j: __m256| {
            let b = _mm256_cmp_ps::<_CMP_LT_OQ>(d, best[c]);
            best[c] = _mm256_blendv_ps(best[c], d, b);
            blk[c] = _mm256_blendv_ps(blk[c], j, b);
        };
        let mut groups = self.search.chunks_exact(CHAINS * stride);
        for g in &mut groups {
            let p = g.as_ptr();
            // SAFETY: `g` holds `CHAINS` blocks.
            let d: [__m256; CHAINS] = std::array::from_fn(|c| dist(unsafe { p.add(c * stride) }));
            for c in 0..CHAINS {
                keep(c, d[c], _mm256_add_ps(j0, offset[c]));
            }
            j0 = _mm256_add_ps(j0, step);
        }
        for (c, b) in groups.remainder().chunks_exact(stride).enumerate() {
            keep(c, dist(b.as_ptr()), _mm256_add_ps(j0, offset[c]));
        }
        // Per lane, a later chain wins when smaller, or equal with an earlier block.
        let (mut bb, mut bk) = (best[0], blk[0]);
        for c in 1..CHAINS {
            let take = _mm256_or_ps(
                _mm256_cmp_ps::<_CMP_LT_OQ>(best[c], bb),
                _mm256_and_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(best[c], bb), _mm256_cmp_ps::<_CMP_LT_OQ>(blk[c], bk)),
            );
            bb = _mm256_blendv_ps(bb, best[c], take);
            bk = _mm256_blendv_ps(bk, blk[c], take);
        }
        first_min_avx2(bb, bk)
    }

    /// Index of the codeword nearest to a partial vector `x` (`x.len() < dim`)
    /// in its first `x.len()` coordinates (plain squared distance; for the
    /// short last vector of a row).
    pub fn nearest_partial(&self, x: &[f32]) -> usize {
        let mut best = (f32::INFINITY, 0);
        for k in 0..self.size {
            let c = self.word(k);
            let d: f32 = x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
            if d < best.0 {
                best = (d, k);
            }
        }
        best.1
    }

    /// Squared error per element of this codebook on `vectors` (row-major, `P` per vector).
    pub fn mse<const P: usize>(&self, vectors: &[f32]) -> f64 {
        let mut total = 0f64;
        for v in vectors.chunks_exact(P) {
            let x: &[f32; P] = v.try_into().unwrap();
            let c = self.word(self.nearest::<P>(x));
            total += x.iter().zip(c).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
        }
        total / vectors.len().max(1) as f64
    }
}

/// [`first_min`] on AVX2 registers, without branches (which lane wins is unpredictable):
/// `best` holds each lane's smallest value (never NaN: only a smaller distance replaces
/// one), `blk` its block number; the codeword of lane `l` is `8 blk + l`. The smallest value
/// goes to every lane (three min steps), then the smallest codeword among the lanes equal to
/// it (three unsigned min steps).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn first_min_avx2(best: std::arch::x86_64::__m256, blk: std::arch::x86_64::__m256) -> usize {
    use std::arch::x86_64::*;
    const { assert!(LANES == 8) };
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // Block numbers are small whole numbers in f32: the conversion is exact.
    let idx = _mm256_add_epi32(_mm256_slli_epi32::<3>(_mm256_cvtps_epi32(blk)), lane);
    let m = _mm256_min_ps(best, _mm256_permute2f128_ps::<1>(best, best));
    let m = _mm256_min_ps(m, _mm256_shuffle_ps::<0b01_00_11_10>(m, m));
    let m = _mm256_min_ps(m, _mm256_shuffle_ps::<0b10_11_00_01>(m, m));
    let at_min = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_EQ_OQ>(best, m));
    let c = _mm256_blendv_epi8(_mm256_set1_epi32(-1), idx, at_min);
    let c = _mm256_min_epu32(c, _mm256_permute2x128_si256::<1>(c, c));
    let c = _mm256_min_epu32(c, _mm256_shuffle_epi32::<0b01_00_11_10>(c));
    let c = _mm256_min_epu32(c, _mm256_shuffle_epi32::<0b10_11_00_01>(c));
    _mm256_cvtsi256_si32(c) as u32 as usize
}

/// The smallest index among the lanes holding the smallest value.
#[inline(always)]
fn first_min(best: &[f32; LANES], idx: &[u32; LANES]) -> usize {
    let (mut b, mut i) = (best[0], idx[0]);
    for l in 1..LANES {
        if best[l] < b || (best[l] == b && idx[l] < i) {
            b = best[l];
            i = idx[l];
        }
    }
    i as usize
}

/// SplitMix64: a tiny deterministic generator for the training samples.
pub struct SplitMix(u64);

impl SplitMix {
    /// Generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Fills `x` with `N(0, 1)` samples (Box-Muller in `f64`).
    pub fn fill_gaussian(&mut self, x: &mut [f32]) {
        const TWO_POW_M53: f64 = 1.0 / (1u64 << 53) as f64;
        for pair in x.chunks_mut(2) {
            let u1 = ((self.next_u64() >> 11) as f64 + 1.0) * TWO_POW_M53; // (0, 1]
            let u2 = (self.next_u64() >> 11) as f64 * TWO_POW_M53;
            let r = (-2.0 * u1.ln()).sqrt();
            let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
            pair[0] = (r * c) as f32;
            if pair.len() == 2 {
                pair[1] = (r * s) as f32;
            }
        }
    }
    /// A random unit vector in `P` dimensions.
    fn direction<const P: usize>(&mut self) -> [f64; P] {
        let mut v = [0f32; P];
        self.fill_gaussian(&mut v);
        let n = v.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
        std::array::from_fn(|d| v[d] as f64 / n)
    }
}

/// Per-sample state of Hamerly's accelerated Lloyd iteration.
struct Bounds {
    /// Assigned codeword.
    assign: Vec<u32>,
    /// Upper bound on the distance to the assigned codeword.
    upper: Vec<f64>,
    /// Lower bound on the distance to every other codeword.
    lower: Vec<f64>,
}

/// `||c||² - 2 c·x` for the `LANES` codewords of one search block (laid out
/// as norms, then one row of `LANES` values per dimension); `y = -2 x`.
#[inline(always)]
fn block_distances<const P: usize>(blk: &[f32], y: &[f32; P]) -> [f32; LANES] {
    let mut d: [f32; LANES] = blk[..LANES].try_into().unwrap();
    for (k, &yk) in y.iter().enumerate() {
        let c: &[f32; LANES] = blk[(k + 1) * LANES..(k + 2) * LANES].try_into().unwrap();
        for l in 0..LANES {
            d[l] += c[l] * yk;
        }
    }
    d
}

impl Codebook {
    /// The two smallest values of `||c||² - 2 c·x` and the index of the
    /// smallest (same arithmetic and tie rule as [`Codebook::nearest`]).
    fn nearest_two<const P: usize>(&self, x: &[f32; P]) -> (usize, f32, f32) {
        let y: [f32; P] = std::array::from_fn(|d| -2.0 * x[d]);
        let mut b1 = [f32::INFINITY; LANES];
        let mut b2 = [f32::INFINITY; LANES];
        let mut idx = [0u32; LANES];
        let stride = (P + 1) * LANES;
        for (j, blk) in self.search.chunks_exact(stride).enumerate() {
            let d = block_distances(blk, &y);
            let base = (j * LANES) as u32;
            for l in 0..LANES {
                // b2 = min(b2, max(b1, d)); b1 = min(b1, d), as plain selects.
                let better = d[l] < b1[l];
                let hi = if better { b1[l] } else { d[l] };
                b2[l] = if hi < b2[l] { hi } else { b2[l] };
                b1[l] = if better { d[l] } else { b1[l] };
                idx[l] = if better { base + l as u32 } else { idx[l] };
            }
        }
        let (mut best, mut i, mut lane) = (b1[0], idx[0], 0);
        for l in 1..LANES {
            if b1[l] < best || (b1[l] == best && idx[l] < i) {
                (best, i, lane) = (b1[l], idx[l], l);
            }
        }
        let mut second = f32::INFINITY;
        for l in 0..LANES {
            second = second.min(b2[l]);
            if l != lane {
                second = second.min(b1[l]);
            }
        }
        (i as usize, best, second)
    }
}

/// Lloyd iterations (Hamerly's exact acceleration: a sample whose distance
/// bounds prove its assignment unchanged is not searched) until the relative
/// improvement of the distortion is below `tol` or after `iters` steps.
/// Each step assigns every sample to its nearest codeword and moves each
/// codeword to the mean of its cell; an empty cell takes over half of the
/// cell with the largest distortion. Returns the distortion per element of
/// the last assignment.
fn lloyd<const P: usize>(words: &mut [[f64; P]], samples: &[f32], rng: &mut SplitMix, tol: f64, iters: usize) -> f64 {
    let k = words.len();
    let n = samples.len() / P;
    let mut b = Bounds { assign: vec![0; n], upper: vec![f64::INFINITY; n], lower: vec![0.0; n] };
    let mut prev = f64::INFINITY;
    let mut dist = prev;
    let mut half_gap = vec![0f64; k];
    for it in 0..iters {
        let flat: Vec<f32> = words.iter().flat_map(|c| c.iter().map(|&v| v as f32)).collect();
        let cb = Codebook::plain(P, 0, flat);
        let cmax2 = (cb.radius as f64).powi(2);
        // Half the distance from each codeword to its nearest other codeword.
        for i in 0..k {
            let mut m = f64::INFINITY;
            for j in 0..k {
                if j != i {
                    let d2: f64 = (0..P).map(|d| (words[i][d] - words[j][d]).powi(2)).sum();
                    m = m.min(d2);
                }
            }
            half_gap[i] = 0.5 * m.sqrt();
        }
        let mut sums = vec![[0f64; P]; k];
        let mut counts = vec![0usize; k];
        let mut cell_err = vec![0f64; k];
        for (s, v) in samples.chunks_exact(P).enumerate() {
            let x: &[f32; P] = v.try_into().unwrap();
            let exact = |i: usize| -> f64 { (0..P).map(|d| (x[d] as f64 - words[i][d]).powi(2)).sum::<f64>().sqrt() };
            let mut a = b.assign[s] as usize;
            if it > 0 {
                let m = half_gap[a].max(b.lower[s]);
                if b.upper[s] > m {
                    b.upper[s] = exact(a);
                }
            }
            if it == 0 || b.upper[s] > half_gap[a].max(b.lower[s]) {
                let (i, _, second) = cb.nearest_two::<P>(x);
                let xx: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
                let slack = 1e-5 * (1.0 + xx + cmax2);
                a = i;
                b.assign[s] = i as u32;
                b.upper[s] = exact(i);
                b.lower[s] = (second as f64 + xx - slack).max(0.0).sqrt();
            }
            let c = &words[a];
            let mut e = 0f64;
            for d in 0..P {
                sums[a][d] += x[d] as f64;
                e += (x[d] as f64 - c[d]).powi(2);
            }
            counts[a] += 1;
            cell_err[a] += e;
        }
        dist = cell_err.iter().sum::<f64>() / samples.len() as f64;
        let old = words.to_vec();
        for i in 0..k {
            if counts[i] > 0 {
                words[i] = std::array::from_fn(|d| sums[i][d] / counts[i] as f64);
            }
        }
        for i in 0..k {
            if counts[i] == 0 {
                // Split the worst cell: first maximum, then forget its error so it is split once.
                let j = (0..k).fold(0, |j, m| if cell_err[m] > cell_err[j] { m } else { j });
                let delta = 0.1 * (cell_err[j] / (counts[j].max(1) * P) as f64).sqrt().max(1e-6);
                let e = rng.direction::<P>();
                let c = words[j];
                words[i] = std::array::from_fn(|d| c[d] + delta * e[d]);
                words[j] = std::array::from_fn(|d| c[d] - delta * e[d]);
                cell_err[j] = 0.0;
            }
        }
        // Move the bounds by how far the codewords moved.
        let moved: Vec<f64> =
            (0..k).map(|i| (0..P).map(|d| (words[i][d] - old[i][d]).powi(2)).sum::<f64>().sqrt()).collect();
        let (mut m1, mut m1i, mut m2) = (0f64, usize::MAX, 0f64);
        for (i, &m) in moved.iter().enumerate() {
            if m > m1 {
                (m2, m1, m1i) = (m1, m, i);
            } else if m > m2 {
                m2 = m;
            }
        }
        for s in 0..n {
            let a = b.assign[s] as usize;
            b.upper[s] += moved[a];
            b.lower[s] -= if a == m1i { m2 } else { m1 };
        }
        if prev.is_finite() && prev - dist <= tol * dist {
            break;
        }
        prev = dist;
    }
    dist
}

fn train<const P: usize>(bits: u32) -> Codebook {
    let k = size(P, bits).expect("codebook size");
    let mut rng = SplitMix::new(SEED ^ ((P as u64) << 32) ^ bits as u64);
    let n = (SAMPLES_PER_WORD * k).max(MIN_SAMPLES);
    let mut samples = vec![0f32; n * P];
    rng.fill_gaussian(&mut samples);

    let mut mean = [0f64; P];
    for v in samples.chunks_exact(P) {
        for d in 0..P {
            mean[d] += v[d] as f64;
        }
    }
    let mut words: Vec<[f64; P]> = vec![mean.map(|m| m / n as f64)];
    let mut dist = 1.0f64;
    while words.len() < k {
        let delta = 0.1 * dist.sqrt();
        let mut split = Vec::with_capacity(2 * words.len());
        for c in &words {
            let e = rng.direction::<P>();
            split.push(std::array::from_fn(|d| c[d] + delta * e[d]));
            split.push(std::array::from_fn(|d| c[d] - delta * e[d]));
        }
        words = split;
        let last = words.len() == k;
        let (tol, iters) = if last { (FINAL_TOL, FINAL_ITERS) } else { (STAGE_TOL, STAGE_ITERS) };
        dist = lloyd(&mut words, &samples, &mut rng, tol, iters);
    }
    let flat: Vec<f32> = words.iter().flat_map(|c| c.iter().map(|&v| bf16(v as f32))).collect();
    let mut cb = Codebook::from_words(P, bits, flat);
    cb.train_mse = cb.mse::<P>(&samples);
    cb
}
