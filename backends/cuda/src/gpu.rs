//! The device: context, stream, cuBLAS handle, the compiled kernels, device buffers, and one
//! method per operation (each the GPU twin of a function in `trainer::kernels`).
//!
//! Buffers are raw device pointers ([`DevBuf`]) and every operation is queued on one stream,
//! so operations run in the order they are issued, as on the CPU.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublas::sys as blas;
use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, LaunchConfig, PushKernelArg, result};
use trainer::backend::MatmulPrecision;

use crate::{kernels, libs};

/// A device allocation of `len` values of `T` (freed on drop).
pub struct DevBuf<T> {
    /// Device address.
    pub ptr: CUdeviceptr,
    /// Element count.
    pub len: usize,
    ctx: Arc<CudaContext>,
    _t: std::marker::PhantomData<T>,
}

// SAFETY: a device address is plain data; all uses go through the owning stream.
unsafe impl<T> Send for DevBuf<T> {}

impl<T> DevBuf<T> {
    /// Address of element `i`.
    pub fn at(&self, i: usize) -> CUdeviceptr {
        debug_assert!(i <= self.len);
        self.ptr + (i * std::mem::size_of::<T>()) as u64
    }
}

impl<T> Drop for DevBuf<T> {
    fn drop(&mut self) {
        if self.len > 0 {
            let _ = self.ctx.bind_to_thread();
            // SAFETY: allocated by `malloc_sync` below and freed once.
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}

/// Elementwise launch shape: blocks of 256 over `n` items.
fn grid1(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (n.div_ceil(256).max(1) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// Rows per chunk of the RMSNorm gain-gradient partial sums (the CPU's `ROW_CHUNK`).
pub const DG_CHUNK: usize = trainer::kernels::ROW_CHUNK;
/// Values per chunk of the gradient-norm partial sums.
pub const NORM_CHUNK: usize = 1 << 16;
/// Largest head dimension of the attention kernels.
pub const MAX_HEAD_DIM: usize = 128;

/// The device and everything compiled for it.
pub struct Gpu {
    /// The context (primary context of device 0).
    pub ctx: Arc<CudaContext>,
    /// The one stream everything runs on.
    pub stream: Arc<CudaStream>,
    blas: blas::cublasHandle_t,
    /// Precision of the matrix products ([`Gpu::set_matmul`]).
    matmul: MatmulPrecision,
    funcs: HashMap<&'static str, CudaFunction>,
    _modules: Vec<Arc<CudaModule>>,
    /// `NAME (sm_XY)`.
    pub name: String,
}

// SAFETY: the cuBLAS handle is used from one thread at a time (the session is `&mut`), after
// binding the context to that thread.
unsafe impl Send for Gpu {}

impl Drop for Gpu {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: created in `open`, destroyed once.
        let _ = unsafe { cudarc::cublas::result::destroy_handle(self.blas) };
    }
}

/// An opened device: its context, name and compute capability (major, minor).
pub type Probed = (Arc<CudaContext>, String, (i32, i32));

/// Opens the driver and device 0; the device's name and compute capability, or one line
/// saying what is missing.
pub fn probe() -> Result<Probed, String> {
    libs::ensure(&libs::DRIVER)?;
    result::init().map_err(|e| format!("the NVIDIA driver failed to initialize ({e:?}): no usable GPU here"))?;
    let n = CudaContext::device_count().map_err(|e| format!("the NVIDIA driver cannot count devices: {e:?}"))?;
    if n < 1 {
        return Err("the NVIDIA driver is installed but sees no GPU (CUDA_VISIBLE_DEVICES?)".into());
    }
    let ctx = CudaContext::new(0).map_err(|e| format!("cannot open GPU 0: {e:?}"))?;
    let name = ctx.name().map_err(|e| format!("cannot query GPU 0: {e:?}"))?;
    let cc = ctx.compute_capability().map_err(|e| format!("cannot query GPU 0: {e:?}"))?;
    Ok((ctx, name, cc))
}

macro_rules! launch {
    ($gpu:expr, $name:literal, $cfg:expr $(, $arg:expr)* $(,)?) => {{
        let f = $gpu.func($name)?;
        let mut b = $gpu.stream.launch_builder(f);
        $( let a = $arg; b.arg(&a); )*
        // SAFETY: the argument list matches the kernel's signature in kernels/*.cu (checked
        // by the kernel tests), and every pointer is a live allocation of the needed size.
        unsafe { b.launch($cfg) }.map(|_| ()).map_err(|e| format!("kernel {} failed to launch: {e:?}", $name))
    }};
}

impl Gpu {
    /// Opens device 0, compiles (or loads from the cache) every kernel and creates cuBLAS;
    /// matrix products at `matmul` (see [`Gpu::set_matmul`]).
    pub fn open(matmul: MatmulPrecision) -> Result<Gpu, String> {
        let (ctx, name, (major, minor)) = probe()?;
        // All buffers are raw pointers on one stream: cudarc's per-buffer events are not needed.
        // SAFETY: no cudarc-managed buffer is shared between streams.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
        let mut funcs = HashMap::new();
        let mut modules = Vec::new();
        for (module, src, names) in kernels::MODULES {
            let ptx = kernels::ptx(module, src, arch)?;
            let m = ctx.load_module(ptx).map_err(|e| format!("cannot load kernels/{module}.cu on {name}: {e:?}"))?;
            for k in *names {
                let f = m.load_function(k).map_err(|e| format!("kernels/{module}.cu has no kernel {k}: {e:?}"))?;
                funcs.insert(*k, f);
            }
            modules.push(m);
        }
        libs::ensure(&libs::CUBLASLT)?;
        libs::ensure(&libs::CUBLAS)?;
        let handle =
            cudarc::cublas::result::create_handle().map_err(|e| format!("cannot create a cuBLAS handle: {e:?}"))?;
        // SAFETY: the handle was just created; the stream belongs to this context.
        unsafe {
            cudarc::cublas::result::set_stream(handle, stream.cu_stream() as blas::cudaStream_t)
                .map_err(|e| format!("cuBLAS: {e:?}"))?;
            // The default math mode: each product's precision is its compute type (`gemm`), so
            // the handle never lets a plain SGEMM use tensor cores.
            blas::cublasSetMathMode(handle, blas::cublasMath_t::CUBLAS_DEFAULT_MATH)
                .result()
                .map_err(|e| format!("cuBLAS: {e:?}"))?;
        }
        Ok(Gpu {
            ctx,
            stream,
            blas: handle,
            matmul,
            funcs,
            _modules: modules,
            name: format!("{name} (sm_{major}{minor})"),
        })
    }

    /// Sets the precision of the following matrix products: `fp32` is cuBLAS SGEMM
    /// (`CUBLAS_COMPUTE_32F`, no tensor cores); `tf32` and `bf16` are `cublasGemmEx` on the
    /// same fp32 buffers with `CUBLAS_COMPUTE_32F_FAST_TF32` / `CUBLAS_COMPUTE_32F_FAST_16BF`
    /// (tensor cores round the inputs inside the product; fp32 accumulation and output).
    pub fn set_matmul(&mut self, matmul: MatmulPrecision) {
        self.matmul = matmul;
    }

    /// The precision of the matrix products.
    pub fn matmul(&self) -> MatmulPrecision {
        self.matmul
    }

    fn func(&self, name: &'static str) -> Result<&CudaFunction, String> {
        self.funcs.get(name).ok_or_else(|| format!("kernel {name} was not loaded"))
    }

    /// Makes this context current on the calling thread.
    pub fn bind(&self) -> Result<(), String> {
        self.ctx.bind_to_thread().map_err(|e| format!("cannot use the GPU from this thread: {e:?}"))
    }

    /// Allocates `len` zeroed values.
    pub fn alloc<T>(&self, len: usize) -> Result<DevBuf<T>, String> {
        let bytes = len * std::mem::size_of::<T>();
        let ptr = if len == 0 {
            0
        } else {
            // SAFETY: plain allocation, freed by DevBuf's drop; zeroed before use.
            unsafe {
                let p = result::malloc_sync(bytes).map_err(|e| {
                    format!(
                        "out of GPU memory allocating {:.1} MiB ({e:?}); use a smaller model or batch",
                        bytes as f64 / 1048576.0
                    )
                })?;
                result::memset_d8_async(p, 0, bytes, self.stream.cu_stream()).map_err(|e| format!("{e:?}"))?;
                p
            }
        };
        Ok(DevBuf { ptr, len, ctx: self.ctx.clone(), _t: std::marker::PhantomData })
    }

    /// Copies `src` to device address `dst` (asynchronous; `src` must live until the next sync,
    /// which [`sync`](Self::sync) and every download do).
    pub fn upload<T>(&self, dst: CUdeviceptr, src: &[T]) -> Result<(), String> {
        if src.is_empty() {
            return Ok(());
        }
        // SAFETY: the caller passes an address with room for `src`.
        unsafe { result::memcpy_htod_async(dst, src, self.stream.cu_stream()) }
            .map_err(|e| format!("host-to-device copy failed: {e:?}"))?;
        // The host slice may be freed after return: wait for the copy.
        self.sync()
    }

    /// Copies from device address `src` into `dst`, waiting for everything queued before.
    pub fn download<T>(&self, dst: &mut [T], src: CUdeviceptr) -> Result<(), String> {
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: the caller passes an address holding `dst.len()` values.
        unsafe { result::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) }
            .map_err(|e| format!("device-to-host copy failed: {e:?}"))?;
        self.sync()
    }

    /// Copies `n` values of `T` between device addresses.
    pub fn copy<T>(&self, dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> Result<(), String> {
        // SAFETY: the caller passes addresses with room for n values.
        unsafe { result::memcpy_dtod_async(dst, src, n * std::mem::size_of::<T>(), self.stream.cu_stream()) }
            .map_err(|e| format!("device copy failed: {e:?}"))
    }

    /// Zeroes `n` values of `T` at `dst`.
    pub fn zero<T>(&self, dst: CUdeviceptr, n: usize) -> Result<(), String> {
        // SAFETY: the caller passes an address with room for n values.
        unsafe { result::memset_d8_async(dst, 0, n * std::mem::size_of::<T>(), self.stream.cu_stream()) }
            .map_err(|e| format!("device memset failed: {e:?}"))
    }

    /// Waits for everything queued; a kernel's failure shows here.
    pub fn sync(&self) -> Result<(), String> {
        self.stream.synchronize().map_err(|e| format!("the GPU reported an error: {e:?}"))
    }

    /// Column-major `C (m x n) = op(A) op(B) + beta C` on fp32 buffers, at the precision of
    /// [`Gpu::set_matmul`].
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        a: CUdeviceptr,
        lda: usize,
        b: CUdeviceptr,
        ldb: usize,
        beta: f32,
        c: CUdeviceptr,
        ldc: usize,
    ) -> Result<(), String> {
        let op = |t: bool| if t { blas::cublasOperation_t::CUBLAS_OP_T } else { blas::cublasOperation_t::CUBLAS_OP_N };
        let alpha = 1.0f32;
        let compute = match self.matmul {
            MatmulPrecision::Fp32 => None,
            MatmulPrecision::Tf32 => Some(blas::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32),
            MatmulPrecision::Bf16 => Some(blas::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_16BF),
        };
        let f32_t = blas::cudaDataType::CUDA_R_32F;
        // SAFETY: the callers below derive every size and leading dimension from the buffers'
        // row-major shapes; alpha and beta are host scalars (the handle's default pointer mode),
        // f32 as every compute type here (32F, 32F_FAST_*) scales in f32.
        unsafe {
            match compute {
                None => cudarc::cublas::result::sgemm(
                    self.blas,
                    op(ta),
                    op(tb),
                    m as i32,
                    n as i32,
                    k as i32,
                    &alpha,
                    a as *const f32,
                    lda as i32,
                    b as *const f32,
                    ldb as i32,
                    &beta,
                    c as *mut f32,
                    ldc as i32,
                ),
                Some(compute) => cudarc::cublas::result::gemm_ex(
                    self.blas,
                    op(ta),
                    op(tb),
                    m as i32,
                    n as i32,
                    k as i32,
                    (&alpha as *const f32).cast(),
                    a as *const std::ffi::c_void,
                    f32_t,
                    lda as i32,
                    b as *const std::ffi::c_void,
                    f32_t,
                    ldb as i32,
                    (&beta as *const f32).cast(),
                    c as *mut std::ffi::c_void,
                    f32_t,
                    ldc as i32,
                    compute,
                    blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                ),
            }
        }
        .map_err(|e| format!("cuBLAS {} GEMM ({m}x{n}x{k}) failed: {e:?}", self.matmul.name()))
    }

    /// `y (rows x out) = x (rows x in) W^T`, W row-major `out x in` (`kernels::linear_fwd`).
    pub fn linear_fwd(
        &self,
        x: CUdeviceptr,
        w: CUdeviceptr,
        y: CUdeviceptr,
        rows: usize,
        din: usize,
        dout: usize,
    ) -> Result<(), String> {
        // Column-major: Y^T (out x rows) = W (out x in, stored as in x out: op T) X^T (in x rows).
        self.gemm(true, false, dout, rows, din, w, din, x, din, 0.0, y, dout)
    }

    /// `dx (rows x in) [+]= dy (rows x out) W` (`kernels::linear_bwd_x`).
    #[allow(clippy::too_many_arguments)]
    pub fn linear_bwd_x(
        &self,
        dy: CUdeviceptr,
        w: CUdeviceptr,
        dx: CUdeviceptr,
        rows: usize,
        din: usize,
        dout: usize,
        accumulate: bool,
    ) -> Result<(), String> {
        // Column-major: dX^T (in x rows) = W^T (in x out, as stored) dY^T (out x rows).
        self.gemm(false, false, din, rows, dout, w, din, dy, dout, if accumulate { 1.0 } else { 0.0 }, dx, din)
    }

    /// `dW (out x in) = dy^T (out x rows) x (rows x in)` (`kernels::linear_bwd_w`).
    pub fn linear_bwd_w(
        &self,
        dy: CUdeviceptr,
        x: CUdeviceptr,
        dw: CUdeviceptr,
        rows: usize,
        din: usize,
        dout: usize,
    ) -> Result<(), String> {
        // Column-major: dW^T (in x out) = X^T (in x rows, as stored) dY (rows x out: op T of stored out x rows).
        self.gemm(false, true, din, dout, rows, x, din, dy, dout, 0.0, dw, din)
    }

    /// `x[r] = emb[tok[r]]`.
    pub fn embedding_fwd(
        &self,
        tok: CUdeviceptr,
        emb: CUdeviceptr,
        x: CUdeviceptr,
        rows: usize,
        d: usize,
    ) -> Result<(), String> {
        launch!(self, "embedding_fwd", grid1(rows * d), tok, emb, x, rows as i32, d as i32)
    }

    /// `demb[v] = sum of dx[r] over rows with token v` (rows grouped by token in `order`/`start`).
    pub fn embedding_bwd(
        &self,
        order: CUdeviceptr,
        start: CUdeviceptr,
        dx: CUdeviceptr,
        demb: CUdeviceptr,
        d: usize,
    ) -> Result<(), String> {
        let cfg =
            LaunchConfig { grid_dim: (d.div_ceil(128) as u32, 256, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        launch!(self, "embedding_bwd", cfg, order, start, dx, demb, d as i32)
    }

    /// `y += x` over `n` values.
    pub fn add(&self, y: CUdeviceptr, x: CUdeviceptr, n: usize) -> Result<(), String> {
        launch!(self, "add_inplace", grid1(n), y, x, n as i64)
    }

    /// `y *= s` over `n` values.
    pub fn scale(&self, y: CUdeviceptr, s: f32, n: usize) -> Result<(), String> {
        launch!(self, "scale_inplace", grid1(n), y, s, n as i64)
    }

    /// `y *= x` over `n` values, element by element.
    pub fn mul(&self, y: CUdeviceptr, x: CUdeviceptr, n: usize) -> Result<(), String> {
        launch!(self, "mul_inplace", grid1(n), y, x, n as i64)
    }

    /// Runs a format kernel plan ([`crate::formats::plan`]) with its input, output and mask at
    /// the given device addresses and its scratch buffers (plan buffers 3..) at `scratch`.
    pub fn run_plan(
        &self,
        plan: &crate::formats::Plan,
        io: [CUdeviceptr; 3],
        scratch: &[CUdeviceptr],
    ) -> Result<(), String> {
        use crate::formats::Arg;
        for l in &plan.launches {
            let f = self.func(l.kernel)?;
            let mut b = self.stream.launch_builder(f);
            for a in &l.args {
                match a {
                    Arg::Buf(i) if *i < 3 => b.arg(&io[*i]),
                    Arg::Buf(i) => b.arg(&scratch[*i - 3]),
                    Arg::Long(v) => b.arg(v),
                    Arg::Int(v) => b.arg(v),
                    Arg::Uint(v) => b.arg(v),
                    Arg::Float(v) => b.arg(v),
                };
            }
            let cfg = grid1(l.threads());
            // SAFETY: the plan lists each kernel's arguments in its order and types (the host
            // build of the same kernels runs the same plans in the tests), and the caller's
            // addresses hold the plan's buffer sizes.
            unsafe { b.launch(cfg) }.map_err(|e| format!("kernel {} failed to launch: {e:?}", l.kernel))?;
        }
        Ok(())
    }

    /// SwiGLU forward.
    pub fn swiglu_fwd(&self, ab: CUdeviceptr, u: CUdeviceptr, rows: usize, h: usize) -> Result<(), String> {
        launch!(self, "swiglu_fwd", grid1(rows * h), ab, u, rows as i32, h as i32)
    }

    /// SwiGLU backward.
    pub fn swiglu_bwd(
        &self,
        ab: CUdeviceptr,
        du: CUdeviceptr,
        dab: CUdeviceptr,
        rows: usize,
        h: usize,
    ) -> Result<(), String> {
        launch!(self, "swiglu_bwd", grid1(rows * h), ab, du, dab, rows as i32, h as i32)
    }

    /// Cross-entropy forward (vocabulary 256).
    pub fn ce_fwd(
        &self,
        logits: CUdeviceptr,
        tgt: CUdeviceptr,
        losses: CUdeviceptr,
        rows: usize,
    ) -> Result<(), String> {
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch!(self, "ce_fwd", cfg, logits, tgt, losses, rows as i32)
    }

    /// Cross-entropy backward in place.
    pub fn ce_bwd(&self, logits: CUdeviceptr, tgt: CUdeviceptr, rows: usize, scale: f32) -> Result<(), String> {
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch!(self, "ce_bwd", cfg, logits, tgt, rows as i32, scale)
    }

    fn row_block(d: usize) -> u32 {
        (d.div_ceil(32) * 32).clamp(32, 256) as u32
    }

    /// RMSNorm forward.
    #[allow(clippy::too_many_arguments)]
    pub fn rmsnorm_fwd(
        &self,
        x: CUdeviceptr,
        g: CUdeviceptr,
        y: CUdeviceptr,
        rstd: CUdeviceptr,
        rows: usize,
        d: usize,
        eps: f64,
    ) -> Result<(), String> {
        let cfg =
            LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (Self::row_block(d), 1, 1), shared_mem_bytes: 0 };
        let inv_d = (1.0 / d as f64) as f32;
        launch!(self, "rmsnorm_fwd", cfg, x, g, y, rstd, rows as i32, d as i32, inv_d, eps as f32)
    }

    /// RMSNorm backward: `dx +=` the input gradient, `dg =` the gain gradient; `partial` holds
    /// `ceil(rows / DG_CHUNK) * d` floats.
    #[allow(clippy::too_many_arguments)]
    pub fn rmsnorm_bwd(
        &self,
        x: CUdeviceptr,
        g: CUdeviceptr,
        rstd: CUdeviceptr,
        dy: CUdeviceptr,
        dx: CUdeviceptr,
        dg: CUdeviceptr,
        partial: CUdeviceptr,
        rows: usize,
        d: usize,
    ) -> Result<(), String> {
        let inv_d = (1.0 / d as f64) as f32;
        let cfg =
            LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (Self::row_block(d), 1, 1), shared_mem_bytes: 0 };
        launch!(self, "rmsnorm_bwd_dx", cfg, x, g, rstd, dy, dx, rows as i32, d as i32, inv_d)?;
        let chunks = rows.div_ceil(DG_CHUNK);
        let cfg = LaunchConfig {
            grid_dim: (d.div_ceil(128) as u32, chunks as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, "rmsnorm_dg_partial", cfg, x, rstd, dy, partial, rows as i32, d as i32, DG_CHUNK as i32)?;
        let cfg =
            LaunchConfig { grid_dim: (d.div_ceil(128) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        launch!(self, "sum_partials", cfg, partial, dg, chunks as i32, d as i32)
    }

    /// RoPE + head-major layout (`inverse`: the backward, hm -> qkv).
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &self,
        qkv: CUdeviceptr,
        hm: CUdeviceptr,
        cos: CUdeviceptr,
        sin: CUdeviceptr,
        n_seq: usize,
        ctx: usize,
        n_head: usize,
        hd: usize,
        inverse: bool,
    ) -> Result<(), String> {
        let pairs = n_seq * ctx * 3 * n_head * hd / 2;
        launch!(
            self,
            "rope",
            grid1(pairs),
            qkv,
            hm,
            cos,
            sin,
            n_seq as i32,
            ctx as i32,
            n_head as i32,
            hd as i32,
            inverse as i32
        )
    }

    fn attn_cfg(n_seq: usize, ctx: usize, n_head: usize, smem_floats: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (ctx.div_ceil(32) as u32, (n_seq * n_head) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: (smem_floats * 4) as u32,
        }
    }

    /// Fused causal attention forward: `out` (rows x d) and `lse` (n_seq * n_head * ctx).
    #[allow(clippy::too_many_arguments)]
    pub fn attn_fwd(
        &self,
        hm: CUdeviceptr,
        out: CUdeviceptr,
        lse: CUdeviceptr,
        n_seq: usize,
        ctx: usize,
        n_head: usize,
        hd: usize,
    ) -> Result<(), String> {
        let scale = (1.0 / (hd as f64).sqrt()) as f32;
        let cfg = Self::attn_cfg(n_seq, ctx, n_head, 32 * (2 * hd + 1));
        launch!(self, "attn_fwd", cfg, hm, out, lse, n_head as i32, ctx as i32, hd as i32, scale)
    }

    /// Fused causal attention backward into `dhm` (head-major dq | dk | dv); `delta` holds
    /// n_seq * n_head * ctx floats.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_bwd(
        &self,
        hm: CUdeviceptr,
        out: CUdeviceptr,
        lse: CUdeviceptr,
        dout: CUdeviceptr,
        delta: CUdeviceptr,
        dhm: CUdeviceptr,
        n_seq: usize,
        ctx: usize,
        n_head: usize,
        hd: usize,
    ) -> Result<(), String> {
        let scale = (1.0 / (hd as f64).sqrt()) as f32;
        let warps = n_seq * n_head * ctx;
        let cfg =
            LaunchConfig { grid_dim: (warps.div_ceil(8) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch!(self, "attn_bwd_delta", cfg, out, dout, delta, n_seq as i32, n_head as i32, ctx as i32, hd as i32)?;
        let cfg = Self::attn_cfg(n_seq, ctx, n_head, 32 * 2 * (hd + 1));
        launch!(self, "attn_bwd_dq", cfg, hm, dout, lse, delta, dhm, n_head as i32, ctx as i32, hd as i32, scale)?;
        let cfg = Self::attn_cfg(n_seq, ctx, n_head, 32 * 2 * (hd + 1) + 64);
        launch!(self, "attn_bwd_dkv", cfg, hm, dout, lse, delta, dhm, n_head as i32, ctx as i32, hd as i32, scale)
    }

    /// Sum of squares of `n` values at `g`, in f64 (`partial` holds `ceil(n / NORM_CHUNK) + 1`
    /// doubles; the last receives the total).
    pub fn sumsq(&self, g: CUdeviceptr, n: usize, partial: &DevBuf<f64>) -> Result<f64, String> {
        let chunks = n.div_ceil(NORM_CHUNK).max(1);
        let cfg = LaunchConfig { grid_dim: (chunks as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch!(self, "sumsq_partial", cfg, g, n as i64, partial.ptr, NORM_CHUNK as i32)?;
        let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch!(self, "sum_doubles", cfg, partial.ptr, chunks as i32, partial.at(chunks))?;
        let mut out = [0f64];
        self.download(&mut out, partial.at(chunks))?;
        Ok(out[0])
    }

    /// One AdamW update of `n` values (see `trainer::optim::AdamW::update`): `lr`, 1-based
    /// count `t`, gradient `scale`, `decay` (weight decay applies).
    #[allow(clippy::too_many_arguments)]
    pub fn adamw(
        &self,
        p: CUdeviceptr,
        g: CUdeviceptr,
        m: CUdeviceptr,
        v: CUdeviceptr,
        n: usize,
        lr: f32,
        t: u64,
        scale: f32,
        decay: bool,
    ) -> Result<(), String> {
        use trainer::optim::{BETA1, BETA2, EPS, WEIGHT_DECAY};
        let bc1 = 1.0 - (BETA1 as f64).powi(t.min(i32::MAX as u64) as i32);
        let bc2 = 1.0 - (BETA2 as f64).powi(t.min(i32::MAX as u64) as i32);
        let step = (lr as f64 / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        let wd = if decay { 1.0 - lr * WEIGHT_DECAY } else { 1.0 };
        launch!(
            self,
            "adamw",
            grid1(n),
            p,
            g,
            m,
            v,
            n as i64,
            wd,
            step,
            inv_sqrt_bc2,
            scale,
            BETA1,
            1.0 - BETA1,
            BETA2,
            1.0 - BETA2,
            EPS
        )
    }
}
