//! The stable ABI between the trainer and an accelerator backend library (the CUDA backend,
//! `backends/cuda`, built as `libbackend_cuda.so`).
//!
//! This is the only module of the trainer that mentions `abi_stable` types; the library
//! exports [`AccelMod`] and the trainer drives it through [`crate::accel`]. The split of work:
//! the library owns device memory and runs the model's forward and backward pass, the global
//! gradient norm and AdamW; the trainer keeps everything that must match the CPU trainer
//! exactly (initialization, checkpoint tensors, data, the schedule, clipping, compressor seeds)
//! and runs weight formats on the host through the loaded plugin (a device-to-host copy of the
//! master weights, the plugin's compress and backward, host-to-device copies of the results).
//! Gradients of micro-batches are summed on the device ([`FfiSession::accumulate`]), in the
//! CPU trainer's order and operations.
//!
//! Versioning: [`ACCEL_ABI_VERSION`] is what abi_stable checks when the library is loaded.
//! Bump its minor version on every change to this file, so a library built against an older
//! interface is refused with one "rebuild" line instead of crashing.

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, RResult, RStr, RString};
use abi_stable::{StableAbi, declare_root_module_statics};

/// Interface version of the accelerator ABI (checked by abi_stable on load).
/// 0.2: `open`'s options name the matrix-product precision (`matmul`) instead of `tf32`.
/// 0.3: [`FfiSession::accumulate`] sums micro-batch gradients on the device.
/// 0.4: weight formats on the device (`open`'s `weights` option, [`FfiSession::weight_format`],
/// [`FfiSession::compress_weights`], [`FfiSession::weight_backward`]).
pub const ACCEL_ABI_VERSION: &str = "0.4.0";

/// Buffer ids of [`FfiSession::write`] and [`FfiSession::read`]: each holds one value per
/// parameter, in [`crate::model::ParamLayout`] order.
pub mod buf {
    /// Master parameters.
    pub const PARAMS: u8 = 0;
    /// Effective (compressed) parameters, used by a forward pass with `use_eff`.
    pub const EFF: u8 = 1;
    /// Gradients of the last backward pass.
    pub const GRADS: u8 = 2;
    /// AdamW first moments.
    pub const ADAM_M: u8 = 3;
    /// AdamW second moments.
    pub const ADAM_V: u8 = 4;
}

/// The root module an accelerator library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = AccelModRef)))]
#[sabi(missing_field(panic))]
#[doc(hidden)]
pub struct AccelMod {
    /// One line: library name and version, the CUDA version of its bindings, the kernel hash.
    pub version: extern "C" fn() -> RString,
    /// Opens the driver and the first device; the device's name, or one line saying what is
    /// missing (driver, device, cuBLAS, NVRTC).
    pub probe: extern "C" fn() -> RResult<RString, RString>,
    /// Opens a session for a model (`ModelConfig` as JSON) with options (JSON object,
    /// [`crate::accel::AccelOptions`]: `matmul`: `"fp32"`, `"tf32"` or `"bf16"`, the precision of
    /// the matrix products; an unknown one is refused; optionally `weights`: `{"kind": KIND,
    /// "params": TOML}`, the weight format ([`crate::compress::Compressor::native`]) for the
    /// library to run on the device if it has native kernels for it). Buffers start at zero;
    /// the trainer uploads parameters and moments.
    pub open: extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<FfiSessionBox, RString>,
    /// Runs every kernel on the device against the trainer's CPU kernels on seeded random
    /// inputs; a report, one line per kernel (`name max_abs_diff tolerance ok|FAIL`).
    pub check_kernels: extern "C" fn() -> RResult<RString, RString>,
    /// Compiles every kernel with NVRTC for the given architecture (e.g. `compute_90`),
    /// needing no GPU; one line per kernel.
    #[sabi(last_prefix_field)]
    pub compile_kernels: extern "C" fn(RStr<'_>) -> RResult<RString, RString>,
}

impl RootModule for AccelModRef {
    declare_root_module_statics! {AccelModRef}
    const BASE_NAME: &'static str = "backend_cuda";
    const NAME: &'static str = "accelerator backend";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ACCEL_ABI_VERSION);
}

// `#[sabi_trait]` expands to impls that rustc flags as `non_local_definitions` (see sdk/src/abi.rs).
#[allow(non_local_definitions)]
mod ffi {
    use abi_stable::sabi_trait;
    use abi_stable::std_types::{RResult, RSlice, RSliceMut, RString};

    /// One model on one device.
    #[sabi_trait]
    pub trait FfiSession: Send {
        /// The device, e.g. `NVIDIA H100 80GB HBM3 (sm_90)`.
        fn device_name(&self) -> RString;
        /// Copies `data` into buffer `which` ([`super::buf`]) from element `offset`.
        fn write(&mut self, which: u8, offset: u64, data: RSlice<'_, f32>) -> RResult<(), RString>;
        /// Copies buffer `which` from element `offset` into `out`.
        fn read(&self, which: u8, offset: u64, out: RSliceMut<'_, f32>) -> RResult<(), RString>;
        /// Forward pass over `tokens` (`n_seq x (ctx+1)` bytes, `1 <= n_seq <= batch`) with the
        /// effective (`use_eff`) or master parameters; the per-token losses (`n_seq * ctx`
        /// values, in row order), so the caller sums them exactly as the CPU trainer does.
        fn forward(
            &mut self,
            tokens: RSlice<'_, u8>,
            use_eff: bool,
            losses: RSliceMut<'_, f32>,
        ) -> RResult<(), RString>;
        /// Backward pass of the last forward pass: the gradient of the mean loss into `GRADS`.
        fn backward(&mut self) -> RResult<(), RString>;
        /// Global L2 norm of `GRADS`, summed in f64.
        fn grad_norm(&mut self) -> RResult<f64, RString>;
        /// One AdamW update (the CPU trainer's, `crate::optim`) with learning rate `lr`, 1-based
        /// update count `t` and gradient scale `scale` (clipping).
        fn adamw(&mut self, lr: f32, t: u64, scale: f32) -> RResult<(), RString>;
        /// Gradient accumulation on the device, after the backward pass of micro-batch `k` of
        /// `count`: `k = 0` copies `GRADS` into an accumulator, later ones add `GRADS` to it
        /// (`acc += g`, in micro-batch order), and after the last (`k = count - 1`) `GRADS`
        /// becomes `acc * inv` (`inv = 1 / count` in f32, from the caller): the operations of
        /// the CPU trainer's `Trainer::step`, element by element.
        fn accumulate(&mut self, k: u32, count: u32, inv: f32) -> RResult<(), RString>;
        /// The weight format the session runs on the device (one line, e.g. `int (native
        /// kernels)`), or empty when it has none: the trainer then compresses on the host.
        fn weight_format(&self) -> RString;
        /// With a weight format on the device: `EFF = PARAMS` with every block linear weight
        /// matrix compressed (and its straight-through mask kept on the device).
        fn compress_weights(&mut self) -> RResult<(), RString>;
        /// With a weight format on the device: the gradients of the block linear weights times
        /// the masks of the last [`compress_weights`](Self::compress_weights), element by
        /// element (the default straight-through backward).
        #[sabi(last_prefix_field)]
        fn weight_backward(&mut self) -> RResult<(), RString>;
    }
}
#[doc(hidden)]
pub use ffi::{FfiSession, FfiSession_TO};

/// A session across the boundary.
#[doc(hidden)]
pub type FfiSessionBox = FfiSession_TO<'static, RBox<()>>;

/// Name of the symbol abi_stable looks up.
#[doc(hidden)]
pub const ROOT_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Exports an accelerator library's root module. Put it once at the root of the `cdylib`:
/// `trainer::export_accel!(root);` where `root` is a `fn() -> AccelModRef`.
#[macro_export]
macro_rules! export_accel {
    ($root:path) => {
        const _: () = {
            use $crate::accel_abi::__private as p;
            extern "C" fn erased_root() -> p::RootModuleResult {
                p::__call_root_module_loader($root)
            }
            /// The library header abi_stable looks up by name.
            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            pub static LIB_HEADER: p::LibHeader = unsafe {
                p::LibHeader::from_constructor::<$crate::accel_abi::AccelModRef>(erased_root, p::CheckTypeLayout::Yes)
            };
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{__call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult};
}

/// Builds the root module from its functions (used by the library).
#[doc(hidden)]
pub fn root_module(m: AccelMod) -> AccelModRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    m.leak_into_prefix()
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_symbol_matches_abi_stable() {
        assert_eq!(super::ROOT_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
