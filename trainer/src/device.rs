//! Where training runs: the [`Device`] of a run, whether it can train here ([`check`]) and the
//! [`Backend`] that trains on it ([`create`]). The only module that knows every backend.

use crate::accel::{self, AccelOptions, AccelTrainer};
use crate::backend::{Backend, State};
use crate::model::ModelConfig;
use crate::train::{TrainOptions, Trainer};

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
