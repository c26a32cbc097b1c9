//! The backend seam: what `host train` and the sweep runner drive.
//!
//! A [`Backend`] runs training steps and evaluations of one model and hands out its full state
//! for checkpoints. The built-in [`Trainer`] (CPU) is one; an accelerator backend (the CUDA
//! library of issue 13, loaded at run time) is another. Callers never know which one runs:
//! they build it with [`crate::device::create`] from a [`crate::device::Device`], and
//! checkpoints hold the same tensors whichever backend wrote them, so a run can resume on
//! another device. (This module names no backend but the CPU one; `device` picks among them.)

use crate::train::{StepStats, Trainer};

pub use crate::checkpoint::Tensors;

/// The state of a run: its tensors and the step count.
pub type State = (Tensors, u64);

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
