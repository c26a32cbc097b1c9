//! The backend seam: what `host train` and the sweep runner drive.
//!
//! A [`Backend`] runs training steps and evaluations of one model and hands out its full state
//! for checkpoints. The built-in [`Trainer`] (CPU) is one; an accelerator backend (the CUDA
//! library of issue 13, loaded at run time) is another. Callers never know which one runs:
//! they build it with [`create`] from a [`Device`], and checkpoints hold the same tensors
//! whichever backend wrote them, so a run can resume on another device.

use crate::accel::{self, AccelOptions, AccelTrainer};
use crate::model::ModelConfig;
use crate::train::{StepStats, TrainOptions, Trainer};

/// Checkpoint tensors: `(name, shape, values)`.
pub type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

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

/// Where training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The built-in CPU trainer.
    #[default]
    Cpu,
    /// An NVIDIA GPU through the CUDA backend library.
    Cuda,
}

impl Device {
    /// Parses `cpu` or `cuda`.
    pub fn parse(s: &str) -> Result<Device, String> {
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            other => Err(format!("device `{other}`: expected `cpu` or `cuda`")),
        }
    }

    /// The name used in records and experiment files.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

/// Whether `device` can train here; the error is one line (starting `device cuda: ` for CUDA)
/// saying what is missing: the backend library (not built, or not where it was looked for),
/// the NVIDIA driver, a device, cuBLAS or NVRTC. See [`crate::accel`] for where the library
/// is looked for.
pub fn check(device: Device) -> Result<(), String> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda => accel::open_cuda(None).map(|_| ()),
    }
}

/// Builds the backend of `device` for `cfg`, fresh or resumed from `state`.
pub fn create(
    device: Device,
    cfg: ModelConfig,
    opts: TrainOptions,
    state: Option<State>,
) -> Result<Box<dyn Backend>, String> {
    match device {
        Device::Cpu => Ok(Box::new(match state {
            Some((tensors, step)) => Trainer::restore(cfg, opts, tensors, step)?,
            None => Trainer::new(cfg, opts)?,
        })),
        Device::Cuda => {
            let (lib, name) = accel::open_cuda(None)?;
            Ok(Box::new(AccelTrainer::new(lib, name, cfg, opts, AccelOptions::default(), state)?))
        }
    }
}
