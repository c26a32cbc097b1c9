//! The format kernels on the GPU: `kernels/formats.cu` compiled with NVRTC (the module
//! `formats` of [`kernels::MODULES`](crate::kernels::MODULES), `--fmad=false`, loaded with
//! every other module by [`Gpu::open`]), driven by a [`Plan`] through [`Gpu::run_plan`], the
//! launcher a training session uses for its weight format too.

use cudarc::driver::sys::CUdeviceptr;
use trainer::backend::MatmulPrecision;

use super::{Buf, INPUT, MASK, OUTPUT, Plan};
use crate::gpu::{DevBuf, Gpu};

/// The compiled kernels on device 0, for running plans on host data.
pub struct FormatKernels {
    gpu: Gpu,
    /// `NAME (sm_XY)`.
    pub name: String,
}

/// A plan buffer ([`Buf`]) on the device, zeroed; alive as long as the value.
pub enum PlanBuf {
    /// `float`.
    F32(DevBuf<f32>),
    /// `double`.
    F64(DevBuf<f64>),
    /// `int`.
    I32(DevBuf<i32>),
}

impl PlanBuf {
    /// Allocates `b` (at least one value) on `gpu`.
    pub fn alloc(gpu: &Gpu, b: Buf) -> Result<PlanBuf, String> {
        Ok(match b {
            Buf::F32(n) => PlanBuf::F32(gpu.alloc(n.max(1))?),
            Buf::F64(n) => PlanBuf::F64(gpu.alloc(n.max(1))?),
            Buf::I32(n) => PlanBuf::I32(gpu.alloc(n.max(1))?),
        })
    }

    /// Its device address.
    pub fn ptr(&self) -> CUdeviceptr {
        match self {
            PlanBuf::F32(b) => b.ptr,
            PlanBuf::F64(b) => b.ptr,
            PlanBuf::I32(b) => b.ptr,
        }
    }
}

impl FormatKernels {
    /// Opens device 0 and compiles (or loads from the cache) the kernels.
    pub fn open() -> Result<FormatKernels, String> {
        let gpu = Gpu::open(MatmulPrecision::Fp32)?;
        let name = gpu.name.clone();
        Ok(FormatKernels { gpu, name })
    }

    /// Runs `plan` on `input`: the output and the mask, copied back. Output and mask start as
    /// NaN, so a value no kernel writes shows as a difference.
    pub fn run(&self, plan: &Plan, input: &[f32]) -> Result<(Vec<f32>, Vec<f32>), String> {
        if plan.launches.is_empty() {
            return Ok((vec![0.0; input.len()], vec![1.0; input.len()]));
        }
        if plan.bufs.first() != Some(&Buf::F32(input.len())) {
            return Err(format!("the plan's input buffer does not hold {} values", input.len()));
        }
        let g = &self.gpu;
        g.bind()?;
        let held = plan.bufs.iter().map(|&b| PlanBuf::alloc(g, b)).collect::<Result<Vec<_>, _>>()?;
        // Float buffers start as NaN (the host build's start too), the input as `input`.
        for (i, (b, h)) in plan.bufs.iter().zip(&held).enumerate() {
            match *b {
                Buf::F32(_) if i == INPUT => g.upload(h.ptr(), input)?,
                Buf::F32(n) => g.upload(h.ptr(), &vec![f32::NAN; n])?,
                Buf::F64(_) | Buf::I32(_) => {}
            }
        }
        let io = [held[INPUT].ptr(), held[OUTPUT].ptr(), held[MASK].ptr()];
        let scratch: Vec<_> = held[3..].iter().map(PlanBuf::ptr).collect();
        g.run_plan(plan, io, &scratch)?;
        let (mut out, mut mask) = (vec![0f32; input.len()], vec![0f32; input.len()]);
        g.download(&mut out, io[OUTPUT])?;
        g.download(&mut mask, io[MASK])?;
        Ok((out, mask))
    }
}
