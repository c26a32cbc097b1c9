//! Numeric kernels: the [`Float`] abstraction (f32 for training, f64 for
//! gradient checks), matrix products through the `gemm` crate, and the
//! forward/backward kernels of every layer.
//!
//! Layout conventions: activations are row-major `rows x features` with one
//! row per token (`rows = n_seq * ctx`, sequence-major). Linear weights are
//! row-major `out x in` (PyTorch's `Linear.weight`), so `y = x W^T`.
//!
//! Determinism: every reduction here runs in a fixed order that does not depend
//! on the number of rayon threads (partial sums over fixed-size row chunks,
//! combined sequentially; `gemm` splits work over output blocks only, never
//! over the reduction dimension), so results are bit-identical for any thread
//! count.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

use rayon::prelude::*;

use crate::compress::Compressor;

/// The floating-point types the layers are written for: `f32` (training) and
/// `f64` (finite-difference gradient checks run the very same code).
pub trait Float:
    Copy
    + Send
    + Sync
    + Default
    + Debug
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Conversion from f64 (rounding for f32).
    fn from_f64(x: f64) -> Self;
    /// Conversion to f64 (exact).
    fn to_f64(self) -> f64;
    /// e^x.
    fn exp(self) -> Self;
    /// e^x as used by the layers: a branch-free, vectorizable polynomial
    /// approximation for f32 (within 2 ulp of `f32::exp` on [-87, 88]; NaN
    /// propagates) and the exact `exp` for f64.
    fn fexp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Larger of the two (NaN-propagation unspecified).
    fn max(self, other: Self) -> Self;
    /// Whether the value is finite.
    fn is_finite(self) -> bool;
    /// Runs a compressor on a slice of this type (f64 goes through f32 buffers).
    fn compress(
        c: &dyn Compressor,
        input: &[Self],
        output: &mut [Self],
        mask: &mut [Self],
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> Result<(), String>;
    /// Runs a compressor's [`backward`](Compressor::backward) on slices of
    /// this type (f64 goes through f32 buffers, as in `compress`).
    fn compress_backward(
        c: &dyn Compressor,
        input: &[Self],
        mask: &[Self],
        grad: &mut [Self],
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> Result<(), String>;
}

// The constants and methods that forward to the type's own (identical for f32 and f64).
macro_rules! forward_std {
    ($t:ident) => {
        const ZERO: Self = 0.0;
        const ONE: Self = 1.0;
        #[inline(always)]
        fn exp(self) -> Self {
            $t::exp(self)
        }
        #[inline(always)]
        fn ln(self) -> Self {
            $t::ln(self)
        }
        #[inline(always)]
        fn sqrt(self) -> Self {
            $t::sqrt(self)
        }
        #[inline(always)]
        fn max(self, other: Self) -> Self {
            $t::max(self, other)
        }
        #[inline(always)]
        fn is_finite(self) -> bool {
            $t::is_finite(self)
        }
    };
}

impl Float for f32 {
    forward_std!(f32);
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn fexp(self) -> Self {
        exp_f32(self)
    }
    fn compress(
        c: &dyn Compressor,
        input: &[f32],
        output: &mut [f32],
        mask: &mut [f32],
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> Result<(), String> {
        mask.fill(1.0);
        c.compress(input, output, mask, rows, cols, seed)
    }
    fn compress_backward(
        c: &dyn Compressor,
        input: &[f32],
        mask: &[f32],
        grad: &mut [f32],
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> Result<(), String> {
        c.backward(input, mask, grad, rows, cols, seed)
    }
}

impl Float for f64 {
    forward_std!(f64);
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn fexp(self) -> Self {
        f64::exp(self)
    }
    fn compress(
        c: &dyn Compressor,
        input: &[f64],
        output: &mut [f64],
        mask: &mut [f64],
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> Result<(), String> {
        let inp: Vec<f32> = input.iter().map(|&x| x as f32).collect();
        let mut out = vec![0f32; inp.len()];
        let mut m = vec![1f32; inp.len()];
        c.compress(&inp, &mut out, &mut m, rows, cols, seed)?;
        for (o, &v) in output.iter_mut().zip(&out) {
            *o = v as f64;
        }
        for (o, &v) in mask.iter_mut().zip(&m) {
            *o = v as f64;
        }
        Ok(())
    }
    fn compress_backward(
        c: &dyn Compressor,
        input: &[f64],
        mask: &[f64],
        grad: &mut [f64],
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> Result<(), String> {
        let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let mut g = to32(grad);
        c.backward(&to32(input), &to32(mask), &mut g, rows, cols, seed)?;
        for (o, &v) in grad.iter_mut().zip(&g) {
            *o = v as f64;
        }
        Ok(())
    }
}

/// Branch-free e^x for f32 (Cephes `expf` polynomial, Cody-Waite range
/// reduction, magic-number rounding): only adds, multiplies, min/max and
/// bit operations, so loops over it vectorize.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    // Selects, not `clamp`/`as i32` (which compile to scalar code): a NaN
    // fails both comparisons and propagates.
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    // The low mantissa bits of t hold the integer n (|n| <= 127).
    let ni = t.to_bits().wrapping_sub(0x4B40_0000);
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(ni.wrapping_add(127) << 23)
}

/// Whether the CPU runs the AVX2 versions of the elementwise kernels.
#[inline(always)]
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines a kernel function twice — plain and compiled with AVX2 — and
/// dispatches at run time. The arithmetic is the same (Rust never contracts
/// `a * b + c` into an FMA), so results are bit-identical either way; only the
/// vector width changes.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident<$T:ident: Float>($($a:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[inline(always)]
        fn $name<$T: Float>($($a: $ty),*) {
            $(#[$m])*
            #[inline(always)]
            fn inner<$T: Float>($($a: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            $(#[$m])*
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<$T: Float>($($a: $ty),*) {
                inner($($a),*)
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the CPU features were detected at run time.
                return unsafe { avx2($($a),*) };
            }
            inner($($a),*)
        }
    };
}

/// A raw pointer that may cross threads; used where parallel tasks write
/// disjoint, strided regions of one buffer (attention heads).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole wrapper).
    #[inline(always)]
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

fn parallelism(work: usize) -> gemm::Parallelism {
    let n = rayon::current_num_threads();
    if n > 1 && work >= 1 << 16 { gemm::Parallelism::Rayon(n) } else { gemm::Parallelism::None }
}

/// General product `dst (m x n) = [dst +] A (m x k) * B (k x n)` where every
/// operand is given with explicit (row stride, column stride). Bounds are
/// checked against the slices before calling into `gemm`.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_strides: (usize, usize),
    accumulate: bool,
    a: &[T],
    a_strides: (usize, usize),
    b: &[T],
    b_strides: (usize, usize),
) {
    matmul_impl(m, n, k, dst, dst_strides, accumulate, a, a_strides, b, b_strides, true)
}

/// [`matmul`] on the calling thread only (for use inside parallel tasks).
#[allow(clippy::too_many_arguments)]
pub fn matmul_serial<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_strides: (usize, usize),
    accumulate: bool,
    a: &[T],
    a_strides: (usize, usize),
    b: &[T],
    b_strides: (usize, usize),
) {
    matmul_impl(m, n, k, dst, dst_strides, accumulate, a, a_strides, b, b_strides, false)
}

#[allow(clippy::too_many_arguments)]
fn matmul_impl<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_strides: (usize, usize),
    accumulate: bool,
    a: &[T],
    a_strides: (usize, usize),
    b: &[T],
    b_strides: (usize, usize),
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |r: usize, c: usize, s: (usize, usize)| (r.saturating_sub(1)) * s.0 + (c.saturating_sub(1)) * s.1;
    assert!(last(m, n, dst_strides) < dst.len(), "matmul: dst too small");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[i * dst_strides.0 + j * dst_strides.1] = T::ZERO;
                }
            }
        }
        return;
    }
    assert!(last(m, k, a_strides) < a.len(), "matmul: lhs too small");
    assert!(last(k, n, b_strides) < b.len(), "matmul: rhs too small");
    // SAFETY: all accessed indices were bounds-checked above; dst does not
    // alias a or b (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_strides.1 as isize,
            dst_strides.0 as isize,
            accumulate,
            a.as_ptr(),
            a_strides.1 as isize,
            a_strides.0 as isize,
            b.as_ptr(),
            b_strides.1 as isize,
            b_strides.0 as isize,
            if accumulate { T::ONE } else { T::ZERO },
            T::ONE,
            false,
            false,
            false,
            if par { parallelism(m * n * k) } else { gemm::Parallelism::None },
        );
    }
}

/// Linear forward `y (rows x out) = x (rows x in) W^T`, `W` is `out x in`.
pub fn linear_fwd<T: Float>(x: &[T], w: &[T], y: &mut [T], rows: usize, d_in: usize, d_out: usize) {
    matmul(rows, d_out, d_in, y, (d_out, 1), false, x, (d_in, 1), w, (1, d_in));
}

/// Linear input gradient `dx (rows x in) [+]= dy (rows x out) W`.
pub fn linear_bwd_x<T: Float>(
    dy: &[T],
    w: &[T],
    dx: &mut [T],
    rows: usize,
    d_in: usize,
    d_out: usize,
    accumulate: bool,
) {
    matmul(rows, d_in, d_out, dx, (d_in, 1), accumulate, dy, (d_out, 1), w, (d_in, 1));
}

/// Linear weight gradient `dW (out x in) [+]= dy^T x`.
pub fn linear_bwd_w<T: Float>(
    dy: &[T],
    x: &[T],
    dw: &mut [T],
    rows: usize,
    d_in: usize,
    d_out: usize,
    accumulate: bool,
) {
    matmul(d_out, d_in, rows, dw, (d_in, 1), accumulate, dy, (1, d_out), x, (d_in, 1));
}

/// Token embedding lookup: `x[t] = emb[tokens[t]]`.
pub fn embedding_fwd<T: Float>(tokens: &[u8], emb: &[T], x: &mut [T], d: usize) {
    for (t, &tok) in tokens.iter().enumerate() {
        let tok = tok as usize;
        x[t * d..(t + 1) * d].copy_from_slice(&emb[tok * d..(tok + 1) * d]);
    }
}

/// Embedding backward: `demb[tokens[t]] += dx[t]` (sequential, deterministic).
pub fn embedding_bwd<T: Float>(tokens: &[u8], dx: &[T], demb: &mut [T], d: usize) {
    for (t, &tok) in tokens.iter().enumerate() {
        let tok = tok as usize;
        for (g, &v) in demb[tok * d..(tok + 1) * d].iter_mut().zip(&dx[t * d..(t + 1) * d]) {
            *g += v;
        }
    }
}

/// Rows per task in row-parallel kernels; also the fixed chunk of the
/// deterministic partial sums (independent of the thread count).
pub const ROW_CHUNK: usize = 64;

/// RMSNorm forward: `y = x * rstd * g`, `rstd = 1/sqrt(mean(x^2) + eps)`.
pub fn rmsnorm_fwd<T: Float>(x: &[T], g: &[T], y: &mut [T], rstd: &mut [T], d: usize, eps: f64) {
    let eps = T::from_f64(eps);
    let inv_d = T::from_f64(1.0 / d as f64);
    y.par_chunks_mut(ROW_CHUNK * d).zip(rstd.par_chunks_mut(ROW_CHUNK)).enumerate().for_each(|(c, (yc, rc))| {
        let xc = &x[c * ROW_CHUNK * d..c * ROW_CHUNK * d + yc.len()];
        rmsnorm_fwd_rows(xc, g, yc, rc, d, eps, inv_d)
    });
}

multiversion! {
fn rmsnorm_fwd_rows<T: Float>(x: &[T], g: &[T], y: &mut [T], rstd: &mut [T], d: usize, eps: T, inv_d: T) {
    for ((yr, rs), xr) in y.chunks_exact_mut(d).zip(rstd.iter_mut()).zip(x.chunks_exact(d)) {
        let s = T::ONE / (sum_sq(xr) * inv_d + eps).sqrt();
        *rs = s;
        for ((o, &v), &gg) in yr.iter_mut().zip(xr).zip(g) {
            *o = v * s * gg;
        }
    }
}
}

/// Sum of squares with 8 interleaved accumulators (vectorizes; fixed order).
#[inline(always)]
fn sum_sq<T: Float>(a: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut it = a.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            acc[l] += c[l] * c[l];
        }
    }
    let mut s = T::ZERO;
    for &v in it.remainder() {
        s += v * v;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s
}

/// Dot product with 8 interleaved accumulators (vectorizes; fixed order).
#[inline(always)]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut ia = a.chunks_exact(8);
    let mut ib = b.chunks_exact(8);
    for (x, y) in (&mut ia).zip(&mut ib) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = T::ZERO;
    for (&x, &y) in ia.remainder().iter().zip(ib.remainder()) {
        s += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s
}

/// RMSNorm backward. `dx += ...` (accumulates into the residual gradient);
/// `dg` is overwritten. `partial` is scratch of at least
/// `ceil(rows/ROW_CHUNK) * d` elements.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_bwd<T: Float>(
    x: &[T],
    g: &[T],
    rstd: &[T],
    dy: &[T],
    dx: &mut [T],
    dg: &mut [T],
    partial: &mut [T],
    d: usize,
) {
    let rows = rstd.len();
    let n_chunks = rows.div_ceil(ROW_CHUNK);
    let inv_d = T::from_f64(1.0 / d as f64);
    dx.par_chunks_mut(ROW_CHUNK * d).zip(partial[..n_chunks * d].par_chunks_mut(d)).enumerate().for_each(
        |(c, (dxc, pc))| {
            let (r0, n) = (c * ROW_CHUNK, dxc.len());
            let (xc, dyc) = (&x[r0 * d..r0 * d + n], &dy[r0 * d..r0 * d + n]);
            let rc = &rstd[r0..r0 + n / d];
            rmsnorm_bwd_rows(xc, g, rc, dyc, dxc, pc, d, inv_d)
        },
    );
    dg.fill(T::ZERO);
    for c in 0..n_chunks {
        for (o, &v) in dg.iter_mut().zip(&partial[c * d..(c + 1) * d]) {
            *o += v;
        }
    }
}

multiversion! {
#[allow(clippy::too_many_arguments)]
fn rmsnorm_bwd_rows<T: Float>(x: &[T], g: &[T], rstd: &[T], dy: &[T], dx: &mut [T], pc: &mut [T], d: usize, inv_d: T) {
    pc.fill(T::ZERO);
    let rows = x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)).zip(rstd);
    for (((xr, dyr), dxr), &s) in rows {
        let mut acc = [T::ZERO; 8];
        for i in 0..d {
            acc[i % 8] += dyr[i] * g[i] * xr[i];
        }
        let dot = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for i in 0..d {
            pc[i] += dyr[i] * xr[i] * s;
        }
        let k = dot * s * s * s * inv_d;
        for i in 0..d {
            dxr[i] += dyr[i] * g[i] * s - xr[i] * k;
        }
    }
}
}

/// Table of RoPE angles: `cos[p * half + i]`, `sin[..]` for position `p` and
/// pair `i` with frequency `base^(-2i/hd)`.
pub fn rope_table<T: Float>(ctx: usize, hd: usize, base: f64) -> (Vec<T>, Vec<T>) {
    let half = hd / 2;
    let mut cos = vec![T::ZERO; ctx * half];
    let mut sin = vec![T::ZERO; ctx * half];
    for p in 0..ctx {
        for i in 0..half {
            let freq = base.powf(-2.0 * i as f64 / hd as f64);
            let a = p as f64 * freq;
            cos[p * half + i] = T::from_f64(a.cos());
            sin[p * half + i] = T::from_f64(a.sin());
        }
    }
    (cos, sin)
}

/// Rotary embedding, in place, on `n_head` heads of size `hd` starting at
/// column `col0` of each row of `buf` (row stride `stride`). Pairs are
/// interleaved `(2i, 2i+1)`; the position of row `t` is `t % ctx`.
/// `inverse` rotates by the negative angle, which is the backward pass
/// (the rotation is orthogonal).
#[allow(clippy::too_many_arguments)]
pub fn rope<T: Float>(
    buf: &mut [T],
    stride: usize,
    col0: usize,
    n_head: usize,
    hd: usize,
    ctx: usize,
    cos: &[T],
    sin: &[T],
    inverse: bool,
) {
    buf.par_chunks_mut(stride * ROW_CHUNK)
        .enumerate()
        .for_each(|(c, bc)| rope_rows(bc, c * ROW_CHUNK, stride, col0, n_head, hd, ctx, cos, sin, inverse));
}

multiversion! {
#[allow(clippy::too_many_arguments)]
fn rope_rows<T: Float>(
    bc: &mut [T],
    row0: usize,
    stride: usize,
    col0: usize,
    n_head: usize,
    hd: usize,
    ctx: usize,
    cos: &[T],
    sin: &[T],
    inverse: bool,
) {
    let half = hd / 2;
    for (r, row) in bc.chunks_exact_mut(stride).enumerate() {
        let p = (row0 + r) % ctx;
        let cs = &cos[p * half..(p + 1) * half];
        let sn = &sin[p * half..(p + 1) * half];
        for h in 0..n_head {
            let v = &mut row[col0 + h * hd..col0 + (h + 1) * hd];
            for ((pair, &c), &s) in v.chunks_exact_mut(2).zip(cs).zip(sn) {
                let s = if inverse { -s } else { s };
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0 * c - x1 * s;
                pair[1] = x0 * s + x1 * c;
            }
        }
    }
}
}

/// Shapes of a causal attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Sequences.
    pub n_seq: usize,
    /// Tokens per sequence.
    pub ctx: usize,
    /// Heads.
    pub n_head: usize,
    /// Head dimension.
    pub hd: usize,
}

impl AttnShape {
    fn d(&self) -> usize {
        self.n_head * self.hd
    }
}

/// Unchecked single-threaded product on raw pointers (same conventions as
/// [`matmul`]); used inside per-(sequence, head) tasks.
///
/// # Safety
/// All indices implied by the shapes and strides must be in bounds, and `dst`
/// must not overlap `a` or `b` or be written by another thread meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_raw<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_strides: (usize, usize),
    a: *const T,
    a_strides: (usize, usize),
    b: *const T,
    b_strides: (usize, usize),
    beta: T,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_strides.1 as isize,
            dst_strides.0 as isize,
            false,
            a,
            a_strides.1 as isize,
            a_strides.0 as isize,
            b,
            b_strides.1 as isize,
            b_strides.0 as isize,
            T::ZERO,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Size of the head-major q/k/v buffer: `n_seq x n_head x 3 x ctx x hd`.
pub fn heads_len(s: AttnShape) -> usize {
    s.n_seq * s.n_head * 3 * s.ctx * s.hd
}

/// Rotary embedding fused with the layout change to head-major: reads `qkv`
/// (`rows x 3d`, rows = tokens, columns q | k | v) and writes `hm`
/// (`n_seq x n_head x 3 x ctx x hd`, each (sequence, head) block holding q,
/// k, v contiguous), rotating q and k by their position (interleaved pairs
/// `(2i, 2i+1)`, angle table from [`rope_table`]). With `inverse`, the reverse
/// map: reads `hm` (gradients), rotates back and writes `qkv` — the backward
/// pass (the rotation is orthogonal and the layout change a permutation).
#[allow(clippy::too_many_arguments)]
pub fn rope_heads<T: Float>(qkv: &mut [T], hm: &mut [T], s: AttnShape, cos: &[T], sin: &[T], inverse: bool) {
    let (ctx, hd, d) = (s.ctx, s.hd, s.d());
    let seq_hm = s.n_head * 3 * ctx * hd;
    let qkv = &mut qkv[..s.n_seq * ctx * 3 * d];
    let hm = &mut hm[..s.n_seq * seq_hm];
    qkv.par_chunks_mut(ctx * 3 * d)
        .zip(hm.par_chunks_mut(seq_hm))
        .for_each(|(rows, heads)| rope_heads_seq(rows, heads, s.n_head, hd, ctx, cos, sin, inverse));
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn rope_heads_seq<T: Float>(
        rows: &mut [T],
        heads: &mut [T],
        n_head: usize,
        hd: usize,
        ctx: usize,
        cos: &[T],
        sin: &[T],
        inverse: bool,
    ) {
        let (d, half) = (n_head * hd, hd / 2);
        for p in 0..ctx {
            let cs = &cos[p * half..(p + 1) * half];
            let sn = &sin[p * half..(p + 1) * half];
            let row = &mut rows[p * 3 * d..(p + 1) * 3 * d];
            for part in 0..3 {
                for h in 0..n_head {
                    let r = &mut row[part * d + h * hd..part * d + (h + 1) * hd];
                    let o = ((h * 3 + part) * ctx + p) * hd;
                    let hv = &mut heads[o..o + hd];
                    let (src, dst): (&[T], &mut [T]) = if inverse { (hv, r) } else { (r, hv) };
                    if part == 2 {
                        dst.copy_from_slice(src);
                        continue;
                    }
                    for (((o2, i2), &c), &s) in dst.chunks_exact_mut(2).zip(src.chunks_exact(2)).zip(cs).zip(sn) {
                        let s = if inverse { -s } else { s };
                        o2[0] = i2[0] * c - i2[1] * s;
                        o2[1] = i2[0] * s + i2[1] * c;
                    }
                }
            }
        }
    }
}

/// Causal multi-head attention forward on the head-major `hm` (see
/// [`rope_heads`]): writes `out` (`rows x d`) and `stats`
/// (`n_seq x n_head x ctx x 2`: per query row the score maximum and the
/// inverse softmax denominator, from which the backward pass recomputes the
/// probabilities exactly). Scale `1/sqrt(hd)`. Parallel over (sequence,
/// head); per task two small `gemm` products (S = Q K^T, O = P V) on
/// contiguous, cache-resident blocks. The masked upper triangle of S is
/// computed and discarded.
pub fn attention_fwd<T: Float>(hm: &[T], out: &mut [T], stats: &mut [T], s: AttnShape) {
    let (ctx, hd, d) = (s.ctx, s.hd, s.d());
    let scale = T::from_f64(1.0 / (hd as f64).sqrt());
    let out_ptr = SendPtr(out.as_mut_ptr());
    assert!(out.len() >= s.n_seq * ctx * d && hm.len() >= heads_len(s));
    stats[..s.n_seq * s.n_head * ctx * 2].par_chunks_mut(ctx * 2).enumerate().for_each_init(
        || vec![T::ZERO; ctx * ctx + ctx * hd],
        |scratch, (bh, st)| {
            let (b, h) = (bh / s.n_head, bh % s.n_head);
            let blk = &hm[bh * 3 * ctx * hd..(bh + 1) * 3 * ctx * hd];
            let (q, kv) = blk.split_at(ctx * hd);
            let (k, v) = kv.split_at(ctx * hd);
            let (pm, o) = scratch.split_at_mut(ctx * ctx);
            matmul_nt(ctx, ctx, hd, pm, q, k, scale);
            causal_softmax_rows(pm, st, ctx);
            matmul_serial(ctx, hd, ctx, o, (hd, 1), false, pm, (ctx, 1), v, (hd, 1));
            for (t, orow) in o.chunks_exact(hd).enumerate() {
                // SAFETY: task (b, h) is the only writer of rows b*ctx.. and
                // columns h*hd.. of `out`; bounds asserted above.
                unsafe {
                    let dst = out_ptr.get().add((b * ctx + t) * d + h * hd);
                    std::ptr::copy_nonoverlapping(orow.as_ptr(), dst, hd);
                }
            }
        },
    );
}

/// `dst (m x n) = scale * A (m x k) B^T` with B stored `n x k`, all contiguous,
/// single-threaded.
fn matmul_nt<T: Float>(m: usize, n: usize, k: usize, dst: &mut [T], a: &[T], b: &[T], scale: T) {
    assert!(dst.len() >= m * n && a.len() >= m * k && b.len() >= n * k);
    // SAFETY: bounds asserted above; distinct borrows do not alias.
    unsafe { matmul_raw(m, n, k, dst.as_mut_ptr(), (n, 1), a.as_ptr(), (k, 1), b.as_ptr(), (1, k), scale) }
}

/// Causal attention backward: from `dout` (`rows x d`) computes `dhm`
/// (head-major like `hm`, overwritten; gradients w.r.t. the rotated q and k
/// and v). Recomputes P from `stats` (bit-identical to the forward pass), then
/// `dP = dO V^T`, `dS = P * (dP - rowsum(P * dP)) * scale`, `dQ = dS K`,
/// `dK = dS^T Q`, `dV = P^T dO` as small `gemm` products per (sequence, head).
pub fn attention_bwd<T: Float>(hm: &[T], stats: &[T], dout: &[T], dhm: &mut [T], s: AttnShape) {
    let (ctx, hd, d) = (s.ctx, s.hd, s.d());
    let scale = T::from_f64(1.0 / (hd as f64).sqrt());
    assert!(dout.len() >= s.n_seq * ctx * d && hm.len() >= heads_len(s));
    assert!(stats.len() >= s.n_seq * s.n_head * ctx * 2);
    dhm[..heads_len(s)].par_chunks_mut(3 * ctx * hd).enumerate().for_each_init(
        || vec![T::ZERO; 2 * ctx * ctx + ctx * hd],
        |scratch, (bh, dblk)| {
            let (b, h) = (bh / s.n_head, bh % s.n_head);
            let blk = &hm[bh * 3 * ctx * hd..(bh + 1) * 3 * ctx * hd];
            let (q, kv) = blk.split_at(ctx * hd);
            let (k, v) = kv.split_at(ctx * hd);
            let (dq, dkv) = dblk.split_at_mut(ctx * hd);
            let (dk, dv) = dkv.split_at_mut(ctx * hd);
            let st = &stats[bh * ctx * 2..(bh + 1) * ctx * 2];
            let (pm, rest) = scratch.split_at_mut(ctx * ctx);
            let (ds, d_o) = rest.split_at_mut(ctx * ctx);
            matmul_nt(ctx, ctx, hd, pm, q, k, scale);
            causal_probs_rows(pm, st, ctx);
            for (t, row) in d_o.chunks_exact_mut(hd).enumerate() {
                let r = (b * ctx + t) * d + h * hd;
                row.copy_from_slice(&dout[r..r + hd]);
            }
            matmul_nt(ctx, ctx, hd, ds, d_o, v, T::ONE);
            softmax_bwd_rows(pm, ds, ctx, scale);
            matmul_serial(ctx, hd, ctx, dq, (hd, 1), false, ds, (ctx, 1), k, (hd, 1));
            matmul_serial(ctx, hd, ctx, dk, (hd, 1), false, ds, (1, ctx), q, (hd, 1));
            matmul_serial(ctx, hd, ctx, dv, (hd, 1), false, pm, (1, ctx), d_o, (hd, 1));
        },
    );
}

multiversion! {
    /// Row-wise causal softmax in place on a `ctx x ctx` score block: row `i`
    /// keeps columns `0..=i`, the rest become exactly 0. Saves (max, 1/sum)
    /// per row in `st`.
    fn causal_softmax_rows<T: Float>(pm: &mut [T], st: &mut [T], ctx: usize) {
        for (i, (row, sr)) in pm.chunks_exact_mut(ctx).zip(st.chunks_exact_mut(2)).enumerate() {
            let (p, masked) = row.split_at_mut(i + 1);
            masked.fill(T::ZERO);
            let mx = max8(p);
            for x in p.iter_mut() {
                *x = (*x - mx).fexp();
            }
            let inv = T::ONE / sum8(p);
            for x in p.iter_mut() {
                *x *= inv;
            }
            sr[0] = mx;
            sr[1] = inv;
        }
    }
}

multiversion! {
    /// Recomputes the probabilities of [`causal_softmax_rows`] from the
    /// scores and the saved (max, 1/sum): the same operations, so the same bits.
    fn causal_probs_rows<T: Float>(pm: &mut [T], st: &[T], ctx: usize) {
        for (i, (row, sr)) in pm.chunks_exact_mut(ctx).zip(st.chunks_exact(2)).enumerate() {
            let (p, masked) = row.split_at_mut(i + 1);
            masked.fill(T::ZERO);
            let (mx, inv) = (sr[0], sr[1]);
            for x in p.iter_mut() {
                *x = (*x - mx).fexp() * inv;
            }
        }
    }
}

multiversion! {
    /// `ds <- P * (dP - rowsum(P * dP)) * scale` on a causal block (`ds` holds dP).
    fn softmax_bwd_rows<T: Float>(pm: &[T], ds: &mut [T], ctx: usize, scale: T) {
        for (i, (pr, row)) in pm.chunks_exact(ctx).zip(ds.chunks_exact_mut(ctx)).enumerate() {
            let (p, r) = (&pr[..=i], &mut row[..=i]);
            let sum = dot(p, r);
            for (x, &pj) in r.iter_mut().zip(p) {
                *x = pj * (*x - sum) * scale;
            }
            row[i + 1..].fill(T::ZERO);
        }
    }
}

/// Reference causal attention forward: full score matrix with an explicit
/// mask, no tricks, sequential. Kept to check [`attention_fwd`].
pub fn attention_fwd_reference(qkv: &[f64], s: AttnShape) -> Vec<f64> {
    let (ctx, hd, d) = (s.ctx, s.hd, s.d());
    let mut out = vec![0.0; s.n_seq * ctx * d];
    for b in 0..s.n_seq {
        for h in 0..s.n_head {
            let q = |t: usize, e: usize| qkv[(b * ctx + t) * 3 * d + h * hd + e];
            let k = |t: usize, e: usize| qkv[(b * ctx + t) * 3 * d + d + h * hd + e];
            let v = |t: usize, e: usize| qkv[(b * ctx + t) * 3 * d + 2 * d + h * hd + e];
            for i in 0..ctx {
                let mut sc = vec![f64::NEG_INFINITY; ctx];
                for (j, scj) in sc.iter_mut().enumerate() {
                    if j <= i {
                        *scj = (0..hd).map(|e| q(i, e) * k(j, e)).sum::<f64>() / (hd as f64).sqrt();
                    }
                }
                let mx = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let ex: Vec<f64> = sc.iter().map(|&x| (x - mx).exp()).collect();
                let z: f64 = ex.iter().sum();
                for e in 0..hd {
                    out[(b * ctx + i) * d + h * hd + e] = (0..ctx).map(|j| ex[j] / z * v(j, e)).sum();
                }
            }
        }
    }
    out
}

#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    T::ONE / (T::ONE + (-x).fexp())
}

/// SwiGLU forward: `ab` is `rows x 2h` (a = x W1^T | b = x W3^T),
/// `u = silu(a) * b` is `rows x h`.
pub fn swiglu_fwd<T: Float>(ab: &[T], u: &mut [T], h: usize) {
    u.par_chunks_mut(h * ROW_CHUNK).enumerate().for_each(|(c, uc)| {
        let abc = &ab[c * ROW_CHUNK * 2 * h..c * ROW_CHUNK * 2 * h + 2 * uc.len()];
        swiglu_fwd_rows(abc, uc, h)
    });
}

multiversion! {
fn swiglu_fwd_rows<T: Float>(ab: &[T], u: &mut [T], h: usize) {
    for (ur, abr) in u.chunks_exact_mut(h).zip(ab.chunks_exact(2 * h)) {
        let (a, b) = abr.split_at(h);
        for ((o, &a), &b) in ur.iter_mut().zip(a).zip(b) {
            *o = a * sigmoid(a) * b;
        }
    }
}
}

/// SwiGLU backward: `dab` (`rows x 2h`, overwritten) from `du` (`rows x h`).
pub fn swiglu_bwd<T: Float>(ab: &[T], du: &[T], dab: &mut [T], h: usize) {
    dab.par_chunks_mut(2 * h * ROW_CHUNK).enumerate().for_each(|(c, dc)| {
        let abc = &ab[c * ROW_CHUNK * 2 * h..c * ROW_CHUNK * 2 * h + dc.len()];
        let duc = &du[c * ROW_CHUNK * h..c * ROW_CHUNK * h + dc.len() / 2];
        swiglu_bwd_rows(abc, duc, dc, h)
    });
}

multiversion! {
fn swiglu_bwd_rows<T: Float>(ab: &[T], du: &[T], dab: &mut [T], h: usize) {
    for ((dr, abr), g) in dab.chunks_exact_mut(2 * h).zip(ab.chunks_exact(2 * h)).zip(du.chunks_exact(h)) {
        let (a, b) = abr.split_at(h);
        let (da, db) = dr.split_at_mut(h);
        for i in 0..h {
            let sg = sigmoid(a[i]);
            let silu = a[i] * sg;
            db[i] = g[i] * silu;
            da[i] = g[i] * b[i] * sg * (T::ONE + a[i] * (T::ONE - sg));
        }
    }
}
}

/// Cross-entropy forward: `losses[r] = logsumexp(logits[r]) - logits[r][target[r]]`.
pub fn cross_entropy_fwd<T: Float>(logits: &[T], targets: &[u8], losses: &mut [T], v: usize) {
    losses.par_chunks_mut(ROW_CHUNK).enumerate().for_each(|(c, lc)| {
        let r0 = c * ROW_CHUNK;
        let (zc, tc) = (&logits[r0 * v..(r0 + lc.len()) * v], &targets[r0..r0 + lc.len()]);
        let mut buf = vec![T::ZERO; v];
        ce_fwd_rows(zc, tc, lc, &mut buf, v)
    });
}

multiversion! {
    fn ce_fwd_rows<T: Float>(zc: &[T], tc: &[u8], lc: &mut [T], buf: &mut [T], v: usize) {
        for ((l, z), &t) in lc.iter_mut().zip(zc.chunks_exact(v)).zip(tc) {
            let mx = max8(z);
            for (b, &x) in buf.iter_mut().zip(z) {
                *b = (x - mx).fexp();
            }
            *l = mx + sum8(buf).ln() - z[t as usize];
        }
    }
}

multiversion! {
    fn ce_bwd_rows<T: Float>(lc: &mut [T], tc: &[u8], v: usize, scale: T) {
        for (z, &t) in lc.chunks_exact_mut(v).zip(tc) {
            let mx = max8(z);
            for x in z.iter_mut() {
                *x = (*x - mx).fexp();
            }
            let k = scale / sum8(z);
            for x in z.iter_mut() {
                *x *= k;
            }
            z[t as usize] -= scale;
        }
    }
}

/// Maximum with 8 interleaved lanes (vectorizes; max is exact, so the order
/// does not matter for the value).
#[inline(always)]
fn max8<T: Float>(z: &[T]) -> T {
    let mut acc = [z[0]; 8];
    let mut it = z.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = acc[0];
    for &x in acc.iter().chain(it.remainder()) {
        m = if x > m { x } else { m };
    }
    m
}

/// Sum with 8 interleaved accumulators (vectorizes; fixed order).
#[inline(always)]
fn sum8<T: Float>(z: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut it = z.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    let mut s = T::ZERO;
    for &x in it.remainder() {
        s += x;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s
}

/// Cross-entropy backward in place: `logits[r] <- scale * (softmax(logits[r]) - onehot(target[r]))`.
pub fn cross_entropy_bwd<T: Float>(logits: &mut [T], targets: &[u8], v: usize, scale: T) {
    logits.par_chunks_mut(v * ROW_CHUNK).enumerate().for_each(|(c, lc)| {
        let tc = &targets[c * ROW_CHUNK..c * ROW_CHUNK + lc.len() / v];
        ce_bwd_rows(lc, tc, v, scale)
    });
}

/// `x *= mask` elementwise (straight-through gradient of a compressor).
pub fn mul_mask<T: Float>(x: &mut [T], mask: &[T]) {
    x.par_chunks_mut(1 << 14).zip(mask.par_chunks(1 << 14)).for_each(|(xc, mc)| {
        for (a, &m) in xc.iter_mut().zip(mc) {
            *a *= m;
        }
    });
}

/// `y += x` elementwise.
pub fn add_assign<T: Float>(y: &mut [T], x: &[T]) {
    y.par_chunks_mut(1 << 14).zip(x.par_chunks(1 << 14)).for_each(|(yc, xc)| {
        for (a, &b) in yc.iter_mut().zip(xc) {
            *a += b;
        }
    });
}
