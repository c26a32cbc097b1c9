//! Vector quantization, kind `vq`.
//!
//! Per row: optionally rotate blocks of 128 values by the normalized Hadamard
//! matrix; divide by the row RMS (rounded to BF16, the stored scale); split
//! the row into `p`-dimensional vectors (`p = dim` = 2, 4 or 8); snap each to
//! the nearest of the `K = 2^(b p)` codewords of a codebook that is
//! MSE-optimal for `N(0, I_p)` (Lloyd / k-means on Gaussian samples, built
//! deterministically once per process, the presets' codebooks shipped
//! precomputed, see [`codebook`]); multiply back by
//! the scale and rotate back. A row whose length is not a multiple of `p`
//! ends with a short vector, snapped to the codeword nearest in its first
//! coordinates (it still stores a full index).
//!
//! Trust mask (QuEST-style): the gradient passes for the elements of a
//! vector whose RMS-normalized squared norm `||x/s||²` is at most `R²`,
//! `R` = the codebook's outer radius (largest codeword norm), and is
//! blocked (0) for the whole vector outside that ball. With
//! `hadamard = true` the test lives in the rotated basis, which an
//! element-wise mask cannot express: `compress` leaves the element-wise mask
//! open, and [`Format::backward`] applies the real one, `dL/dx = H^T (m(Hx)
//! * (H dL/dy))` with `m(Hx)` the ball test of the rotated vectors (as in
//! `plugins/int`, via [`sdk::hadamard::masked_backward`]).
//!
//! Bits per element: `b` per element for the codeword indices (`b p` bits
//! per vector; a short last vector costs a full index), a BF16 scale per
//! row, and the codebook (`K x p` BF16 values) amortized over the tensor.

pub mod codebook;
mod shipped;

use codebook::{Codebook, MAX_SIZE, bf16};
use sdk::{Bits, Error, Family, Format, Grad, Kind, Preset, Result, Shape, Tensor, hadamard, rows, scale};

sdk::params! {
    /// Parameters of vector quantization.
    pub struct VqParams {
        /// Vector dimension p: 2, 4 or 8.
        dim: usize = 2,
        /// Bits per element b; the codebook has K = 2^(b * dim) codewords (at most 1024: training cost grows as K^2; 256 codewords take well under a second, 1024 a few seconds, once per process).
        bits: u32 = 2,
        /// Rotate blocks of 128 values by the normalized Hadamard matrix before quantizing (and back after).
        hadamard: bool = true,
    }
}

/// A built vector quantizer.
#[derive(Debug, Clone)]
pub struct Vq {
    cb: &'static Codebook,
    hadamard: bool,
}

/// Quantizes one row in place with the codebook of dimension `P`; writes the
/// trust mask of the row when given one.
#[inline(always)]
fn quantize_row<const P: usize, const AVX2: bool>(cb: &Codebook, row: &mut [f32], mask: Option<&mut [f32]>) {
    let s = bf16(scale::rms(row));
    let inv = 1.0 / s;
    if !(s > 0.0 && inv.is_finite()) {
        // All zeros, or an RMS below the smallest normal float: stored as zeros.
        row.fill(0.0);
        return;
    }
    if let Some(m) = mask {
        let r2 = cb.radius * cb.radius;
        for (v, mv) in row.chunks(P).zip(m.chunks_mut(P)) {
            let n2: f32 = v.iter().map(|&a| (a * inv) * (a * inv)).sum();
            if n2 > r2 {
                mv.fill(0.0);
            }
        }
    }
    let mut it = row.chunks_exact_mut(P);
    for v in &mut it {
        let x: [f32; P] = std::array::from_fn(|d| v[d] * inv);
        let c = cb.word(cb.nearest_with::<P, AVX2>(&x));
        for d in 0..P {
            v[d] = c[d] * s;
        }
    }
    let tail = it.into_remainder();
    if !tail.is_empty() {
        let mut buf = [0f32; P];
        let x = &mut buf[..tail.len()];
        for (b, &a) in x.iter_mut().zip(tail.iter()) {
            *b = a * inv;
        }
        let c = cb.word(cb.nearest_partial(x));
        for (v, &cv) in tail.iter_mut().zip(c) {
            *v = cv * s;
        }
    }
}

impl Vq {
    #[inline(always)]
    fn row(&self, row: &mut [f32], mask: Option<&mut [f32]>) {
        self.row_with::<false>(row, mask)
    }

    /// [`Vq::row`]; `AVX2` selects the AVX2 search where the CPU has it.
    #[inline(always)]
    fn row_with<const AVX2: bool>(&self, row: &mut [f32], mask: Option<&mut [f32]>) {
        match self.cb.dim {
            2 => quantize_row::<2, AVX2>(self.cb, row, mask),
            4 => quantize_row::<4, AVX2>(self.cb, row, mask),
            8 => quantize_row::<8, AVX2>(self.cb, row, mask),
            d => unreachable!("dim {d}"),
        }
    }

    /// The compress loop (generic code, compiled twice: see [`Format::compress`]).
    #[inline(always)]
    fn compress_rows<const AVX2: bool>(&self, t: Tensor<'_>) -> Result<()> {
        let cols = t.shape.cols;
        if cols == 0 {
            return Ok(());
        }
        t.output.copy_from_slice(t.input);
        if self.hadamard {
            // The trust mask lives in the rotated basis: left open here,
            // applied by `backward`.
            for row in t.output.chunks_mut(cols) {
                hadamard::rotate(row, hadamard::BLOCK);
                self.row_with::<AVX2>(row, None);
                hadamard::unrotate(row, hadamard::BLOCK);
            }
        } else {
            match t.mask {
                Some(m) => {
                    for (row, mr) in t.output.chunks_mut(cols).zip(m.chunks_mut(cols)) {
                        self.row_with::<AVX2>(row, Some(mr));
                    }
                }
                None => {
                    for row in t.output.chunks_mut(cols) {
                        self.row_with::<AVX2>(row, None);
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Vq::compress_rows`] compiled for AVX2: the nearest-codeword search
    /// runs on eight lanes in one register instead of two SSE2 halves. Same
    /// operations in the same order (Rust never fuses a multiply and an add),
    /// so the same results (tested against the SSE2 build).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn compress_avx2(&self, t: Tensor<'_>) -> Result<()> {
        self.compress_rows::<true>(t)
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
thread_local! {
    /// Tests set this to run the baseline (SSE2) build on this thread.
    static FORCE_BASELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread must skip the AVX2 build (tests only).
#[cfg(target_arch = "x86_64")]
fn force_baseline() -> bool {
    #[cfg(test)]
    return FORCE_BASELINE.get();
    #[cfg(not(test))]
    false
}

impl Format for Vq {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && !force_baseline() {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { self.compress_avx2(t) };
        }
        self.compress_rows::<false>(t)
    }

    /// Without rotation, the default (the element-wise trust mask). With
    /// `hadamard = true`: `H^T (m * (H dL/dy))`, `m` the ball test of the
    /// rotated row's vectors, as the unrotated quantizer writes it for `H x`.
    fn backward(&self, g: Grad<'_>) -> Result<()> {
        if !self.hadamard {
            return sdk::mask_backward(self, g);
        }
        let (shape, n) = (g.shape, g.shape.len());
        if g.input.len() != n || g.grad.len() != n {
            return Err(Error::input(format!(
                "backward of a {shape} tensor needs {n} values, got input {} and gradient {}",
                g.input.len(),
                g.grad.len()
            )));
        }
        let cols = shape.cols;
        if cols == 0 {
            return Ok(());
        }
        let mut rotated = g.input.to_vec();
        let mut mask = vec![1.0; n];
        for (row, m) in rotated.chunks_mut(cols).zip(mask.chunks_mut(cols)) {
            hadamard::rotate(row, hadamard::BLOCK);
            self.row(row, Some(m));
        }
        hadamard::masked_backward(g.grad, &mask, cols, hadamard::BLOCK);
        Ok(())
    }

    fn bits(&self, shape: Shape) -> Bits {
        let (p, b) = (self.cb.dim, self.cb.bits as f64);
        let cols = shape.cols.max(1);
        let mut bits = Bits::elements(b);
        if !cols.is_multiple_of(p) {
            // The short last vector of each row stores a full index.
            let pad = (p - cols % p) as f64 * b / cols as f64;
            bits = bits.plus(format!("index padding of the short last vector, per row of {cols}"), pad);
        }
        bits.per_block("scale (BF16 row RMS)", 16.0, cols).per_tensor(
            format!("codebook ({} x {p} BF16)", self.cb.size),
            (self.cb.size * p * 16) as f64,
            shape,
        )
    }

    fn family(&self) -> Family {
        Family::Vector
    }

    fn block_len(&self) -> Option<usize> {
        Some(self.cb.dim)
    }

    fn label(&self) -> Option<String> {
        let mut s =
            format!("VQ dim {} {} bit/elem (K = {}), RMS scale per row", self.cb.dim, self.cb.bits, self.cb.size);
        if self.hadamard {
            s += " + Hadamard";
        }
        Some(s)
    }
}

/// Kind `vq`: vector quantization with Gaussian-optimal codebooks.
pub struct VqKind;

impl Kind for VqKind {
    type Params = VqParams;
    const NAME: &'static str = "vq";
    const DOC: &'static str = "Vector quantization. Per row: optional blocked Hadamard rotation (128), scale by the \
        row RMS (stored as BF16), split into dim-dimensional vectors (dim = 2, 4, 8), snap each to the nearest of \
        K = 2^(bits * dim) codewords of a codebook MSE-optimal for N(0, I_dim) (Lloyd / LBG k-means on Gaussian \
        samples, deterministic, built once per process), scale back, rotate back. Trust mask: gradient blocked \
        for vectors with ||x / rms||^2 > R^2, R = the codebook's outer radius (largest codeword norm); with \
        hadamard = true the test is on the rotated vectors and the backward applies it in the rotated basis, \
        H^T (mask * (H grad)). Bits: bits per element for the indices, \
        16 per row for the scale, K * dim * 16 per tensor for the BF16 codebook.";
    const PRESETS: &'static [Preset] = &[
        Preset::new("vq2-d2", "dim = 2, bits = 2", "VQ, 2-d vectors, 2 bits/elem (16 codewords), Hadamard + RMS"),
        Preset::new("vq3-d2", "dim = 2, bits = 3", "VQ, 2-d vectors, 3 bits/elem (64 codewords), Hadamard + RMS"),
        Preset::new("vq4-d2", "dim = 2, bits = 4", "VQ, 2-d vectors, 4 bits/elem (256 codewords), Hadamard + RMS"),
        Preset::new("vq2-d4", "dim = 4, bits = 2", "VQ, 4-d vectors, 2 bits/elem (256 codewords), Hadamard + RMS"),
        Preset::new("vq1-d8", "dim = 8, bits = 1", "VQ, 8-d vectors, 1 bit/elem (256 codewords), Hadamard + RMS"),
    ];

    fn build(p: VqParams) -> Result<Box<dyn Format>> {
        if !codebook::DIMS.contains(&p.dim) {
            return Err(Error::param("dim", format!("must be 2, 4 or 8, got {}", p.dim)));
        }
        if p.bits == 0 {
            return Err(Error::param("bits", "must be at least 1"));
        }
        match codebook::size(p.dim, p.bits) {
            Some(k) if k <= MAX_SIZE => {}
            _ => {
                return Err(Error::param(
                    "bits",
                    format!(
                        "the codebook would have 2^(bits * dim) = 2^{} codewords with dim = {}; at most {MAX_SIZE} \
                         (2^10) are supported",
                        p.bits as u64 * p.dim as u64,
                        p.dim
                    ),
                ));
            }
        }
        Ok(Box::new(Vq { cb: codebook::codebook(p.dim, p.bits), hadamard: p.hadamard }))
    }
}

sdk::export_plugin!(name: "vq", kinds: [VqKind]);

#[cfg(test)]
mod tests;
