//! Reference CPU trainer: Llama-style byte-level language models with a
//! hand-written backward pass, AdamW, and quantization-aware training over any
//! [`compress::Compressor`].
//!
//! - [`backend`]: the seam `host train` drives ([`backend::Backend`]; the CPU trainer is one).
//! - [`accel`], [`accel_abi`]: the CUDA backend, a library loaded at run time, and its stable ABI.
//! - [`model`]: configuration, presets, parameter layout, forward/backward.
//! - [`kernels`]: the per-layer kernels (generic over f32/f64) and `gemm` products.
//! - [`optim`]: AdamW, gradient clipping, learning-rate schedule.
//! - [`train`]: [`train::Trainer`], one training step with QAT hooks, evaluation,
//!   checkpoint state.

#![deny(missing_docs)]

pub mod accel;
pub mod accel_abi;
pub mod backend;
pub mod checkpoint;
pub mod compress;
pub mod data;
pub mod device;
pub mod kernels;
pub mod model;
pub mod optim;
pub mod train;

pub use model::{ModelConfig, PRESETS, preset};

/// Version of the trainer's numerical results. Bump it in any change that alters the losses of
/// a run with the same configuration and seed (a kernel, the initialization, the optimizer, the
/// schedule, batch sampling, data splits). Sweep job hashes include it, so results of an older
/// trainer are reported as stale instead of being silently reused. The golden run in
/// `tests/golden.rs` fails when losses change without a bump.
pub const RESULTS_VERSION: u32 = 1;
pub use train::{StepStats, TrainOptions, Trainer};
