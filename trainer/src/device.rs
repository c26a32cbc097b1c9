//! Where training runs: the [`Device`] of a run, whether it can train here ([`check`]) and the
//! [`Backend`] that trains on it ([`create`]). The only module that knows every backend.

use crate::accel::{self, AccelOptions, AccelTrainer};
use crate::backend::{Backend, MatmulPrecision, State};
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

/// Whether `device` computes matrix products at `matmul`: the CPU trainer only in fp32 (a
/// one-line error otherwise), the CUDA backend at every [`MatmulPrecision`].
pub fn supports(device: Device, matmul: MatmulPrecision) -> Result<(), String> {
    match (device, matmul) {
        (Device::Cpu, MatmulPrecision::Fp32) | (Device::Cuda, _) => Ok(()),
        (Device::Cpu, p) => Err(format!(
            "matmul precision `{}` needs device cuda: the CPU trainer computes matrix products in fp32 only (use `fp32`, or train with device `cuda`)",
            p.name()
        )),
    }
}

/// Builds the backend of `device` for `cfg` with matrix products at `matmul` (see
/// [`supports`]), fresh or resumed from `state`.
pub fn create(
    device: Device,
    cfg: ModelConfig,
    opts: TrainOptions,
    matmul: MatmulPrecision,
    state: Option<State>,
) -> Result<Box<dyn Backend>, String> {
    supports(device, matmul)?;
    match device {
        Device::Cpu => Ok(Box::new(match state {
            Some((tensors, step)) => Trainer::restore(cfg, opts, tensors, step)?,
            None => Trainer::new(cfg, opts)?,
        })),
        Device::Cuda => {
            let (lib, name) = accel::open_cuda(None)?;
            let accel_opts = AccelOptions { matmul, native_weights: accel::native_weights_from_env() };
            Ok(Box::new(AccelTrainer::new(lib, name, cfg, opts, accel_opts, state)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_names_parse_back_and_unknown_ones_list_the_valid() {
        assert_eq!(MatmulPrecision::default(), MatmulPrecision::Fp32);
        let names: Vec<&str> = MatmulPrecision::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["fp32", "tf32", "bf16"]);
        for p in MatmulPrecision::ALL {
            assert_eq!(MatmulPrecision::parse(p.name()), Ok(p));
            assert_eq!(MatmulPrecision::parse(&format!(" {} ", p.name())), Ok(p));
        }
        for bad in ["fp16", "TF32", "", "bfloat16"] {
            assert_eq!(
                MatmulPrecision::parse(bad).unwrap_err(),
                format!("matmul precision `{bad}`: expected `fp32`, `tf32` or `bf16`")
            );
        }
    }

    #[test]
    fn the_cpu_refuses_tensor_core_precisions_in_one_line() {
        assert_eq!(supports(Device::Cpu, MatmulPrecision::Fp32), Ok(()));
        for p in MatmulPrecision::ALL {
            assert_eq!(supports(Device::Cuda, p), Ok(()));
        }
        for p in [MatmulPrecision::Tf32, MatmulPrecision::Bf16] {
            let e = supports(Device::Cpu, p).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "matmul precision `{}` needs device cuda: the CPU trainer computes matrix products in fp32 only (use `fp32`, or train with device `cuda`)",
                    p.name()
                )
            );
            // `create` refuses before building anything.
            let cfg = crate::model::preset("lm-20k").unwrap();
            let opts = TrainOptions { seed: 1, total_steps: 2, ..Default::default() };
            assert_eq!(create(Device::Cpu, cfg, opts, p, None).err().unwrap(), e);
        }
    }
}
