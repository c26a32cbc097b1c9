//! The backend seam: what `host train` and the sweep runner drive.
//!
//! A [`Backend`] runs training steps and evaluations of one model and hands out its full state
//! for checkpoints. The built-in [`Trainer`] (CPU) is one; an accelerator backend (the CUDA
//! library of issue 13, loaded at run time) is another. Callers never know which one runs:
//! they build it with [`crate::device::create`] from a [`crate::device::Device`], and
//! checkpoints hold the same tensors whichever backend wrote them, so a run can resume on
//! another device. (This module names no backend but the CPU one; `device` picks among them.)
//!
//! [`MatmulPrecision`] is what a run asks of a backend's matrix products: the CPU trainer has
//! only `fp32`; the CUDA backend also runs the linear layers' products on tensor cores (`tf32`,
//! `bf16`) while weights, gradients and optimizer state stay fp32.

use crate::train::{StepStats, Trainer};

pub use crate::checkpoint::Tensors;

/// The state of a run: its tensors and the step count.
pub type State = (Tensors, u64);

/// Precision of the matrix products of the linear layers (`--matmul`, `matmul = "..."`).
///
/// Every choice keeps fp32 data: master weights, activations, gradients and AdamW moments are
/// stored in fp32 and every product accumulates in fp32; `tf32` and `bf16` only let the
/// tensor cores round the products' fp32 inputs to TF32 (10 explicit mantissa bits) or BF16
/// (7) inside each product. The CPU backend computes in fp32 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    /// Plain fp32 products (SGEMM; the CPU trainer's only choice).
    #[default]
    Fp32,
    /// TF32 tensor-core products, fp32 accumulation.
    Tf32,
    /// BF16 tensor-core products, fp32 accumulation.
    Bf16,
}

impl MatmulPrecision {
    /// Every precision, default first.
    pub const ALL: [MatmulPrecision; 3] = [MatmulPrecision::Fp32, MatmulPrecision::Tf32, MatmulPrecision::Bf16];

    /// Parses `fp32`, `tf32` or `bf16`; the error is one line listing them.
    pub fn parse(s: &str) -> Result<MatmulPrecision, String> {
        let s = s.trim();
        MatmulPrecision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("matmul precision `{s}`: expected `fp32`, `tf32` or `bf16`"))
    }

    /// The name used on the command line, in experiment files, options and records.
    pub fn name(self) -> &'static str {
        match self {
            MatmulPrecision::Fp32 => "fp32",
            MatmulPrecision::Tf32 => "tf32",
            MatmulPrecision::Bf16 => "bf16",
        }
    }
}

/// A training backend.
pub trait Backend: Send {
    /// Short name for records (`cpu`, `cuda`).
    fn device(&self) -> &str;
    /// One optimizer step on `tokens` (`batch x (ctx + 1)` bytes); returns its statistics.
    fn step(&mut self, tokens: &[u8]) -> Result<StepStats, String>;
    /// Mean validation loss over `tokens` (whole windows of `ctx + 1` bytes).
    fn eval_loss(&mut self, tokens: &[u8]) -> Result<f32, String>;
    /// Steps taken so far.
    fn step_index(&self) -> u64;
    /// Parameters and optimizer moments, as [`Trainer::state`] names them (an accelerator
    /// copies them from the device, which can fail).
    fn state(&self) -> Result<Tensors, String>;
    /// The weight format's kernels when the backend runs them itself instead of the format's
    /// own code (e.g. `int (native kernels)` on a GPU); `None` (the default): the format's
    /// `compress` and `backward`, as on the CPU.
    fn weight_kernels(&self) -> Option<&str> {
        None
    }
}

impl Backend for Trainer {
    fn device(&self) -> &str {
        "cpu"
    }
    fn step(&mut self, tokens: &[u8]) -> Result<StepStats, String> {
        Trainer::step(self, tokens)
    }
    fn eval_loss(&mut self, tokens: &[u8]) -> Result<f32, String> {
        Trainer::eval_loss(self, tokens)
    }
    fn step_index(&self) -> u64 {
        Trainer::step_index(self)
    }
    fn state(&self) -> Result<Tensors, String> {
        Ok(Trainer::state(self))
    }
}
