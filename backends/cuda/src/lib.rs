//! The CUDA trainer backend: a library `host` loads at run time (`--device cuda`, see
//! `trainer::accel`) that trains the trainer's models on an NVIDIA GPU.
//!
//! - [`libs`]: finds the driver, NVRTC and cuBLAS (system path, `$HOST_CUDA_LIBS`, Python wheels);
//! - [`kernels`]: the CUDA C sources (`kernels/*.cu`), NVRTC compilation and its cache;
//! - [`gpu`]: device buffers and one method per operation (cuBLAS for matrix products);
//! - [`session`]: a model's forward and backward pass, gradient norm and AdamW;
//! - [`check`]: every kernel against the trainer's CPU kernels, on the device;
//! - [`formats`]: native kernels of the built-in formats (int, fp, raw, MX, NVFP4), checked
//!   bit for bit against the plugins (host build here, the GPU in `cuda-check formats`).
//!
//! The exported interface is `trainer::accel_abi` (abi_stable); every exported call runs
//! under `catch_unwind`, so a panic (cudarc panics when a library it needs is missing) comes
//! back as an error line instead of aborting the host.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};
use trainer::accel_abi::{AccelMod, AccelModRef, FfiSession_TO, FfiSessionBox};
use trainer::model::ModelConfig;

pub mod check;
pub mod formats;
pub mod gpu;
pub mod kernels;
pub mod libs;
pub mod session;

/// CUDA version of the bindings (cudarc feature).
pub const CUDA_BINDINGS: &str = "13.0";

thread_local! {
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning an error or a panic into an error line.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> RResult<T, RString> {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // This library has its own copy of std: the hook only silences panics raised here.
        std::panic::set_hook(Box::new(|info| {
            let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
            PANIC_AT.with(|p| *p.borrow_mut() = at);
        }));
    });
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e.replace('\n', " ").into()),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            let at = PANIC_AT.with(|p| p.borrow_mut().take()).map(|a| format!(" at {a}")).unwrap_or_default();
            RResult::RErr(format!("panicked while {what}: {}{at}", msg.replace('\n', " ")).into())
        }
    }
}

/// The library's one-line version.
pub fn version_line() -> String {
    format!(
        "backend-cuda {} (accelerator interface {}, CUDA {CUDA_BINDINGS} bindings, kernels {:016x})",
        env!("CARGO_PKG_VERSION"),
        trainer::accel_abi::ACCEL_ABI_VERSION,
        kernels::sources_hash()
    )
}

extern "C" fn version() -> RString {
    version_line().into()
}

extern "C" fn probe() -> RResult<RString, RString> {
    guarded("probing the GPU", || {
        let (_, name, (major, minor)) = gpu::probe()?;
        libs::ensure(&libs::NVRTC)?;
        libs::ensure(&libs::CUBLASLT)?;
        libs::ensure(&libs::CUBLAS)?;
        Ok(RString::from(format!("{name} (sm_{major}{minor})")))
    })
}

extern "C" fn open(cfg: RStr<'_>, options: RStr<'_>) -> RResult<FfiSessionBox, RString> {
    guarded("opening a session", || {
        let cfg: ModelConfig = serde_json::from_str(cfg.as_str()).map_err(|e| format!("bad model config: {e}"))?;
        let opts: serde_json::Value =
            serde_json::from_str(options.as_str()).map_err(|e| format!("bad options: {e}"))?;
        let weights = trainer::accel::weights_from_json(&opts);
        let opts = trainer::accel::AccelOptions::from_json(&opts)?;
        let s = session::Session::open(cfg, opts.matmul, weights.as_ref().map(|(k, p)| (k.as_str(), p.as_str())))?;
        Ok(FfiSession_TO::from_value(s, TD_Opaque))
    })
}

extern "C" fn check_kernels() -> RResult<RString, RString> {
    guarded("checking the kernels", || check::run().map(RString::from))
}

extern "C" fn compile_kernels(arch: RStr<'_>) -> RResult<RString, RString> {
    guarded("compiling the kernels", || {
        let arch: &'static str = Box::leak(arch.as_str().to_string().into_boxed_str());
        kernels::compile_all(arch).map(RString::from)
    })
}

fn root() -> AccelModRef {
    trainer::accel_abi::root_module(AccelMod { version, probe, open, check_kernels, compile_kernels })
}

trainer::export_accel!(root);
