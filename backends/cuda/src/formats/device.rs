//! The format kernels on the GPU: `kernels/formats.cu` compiled with NVRTC (the module
//! `formats` of [`kernels::MODULES`], `--fmad=false`), driven by a [`Plan`].

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use super::{Arg, Buf, INPUT, MASK, OUTPUT, Plan};
use crate::{gpu, kernels};

/// The compiled format kernels on device 0.
pub struct FormatKernels {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    funcs: HashMap<&'static str, CudaFunction>,
    _module: Arc<CudaModule>,
    /// `NAME (sm_XY)`.
    pub name: String,
}

enum DevBuf {
    F32(CudaSlice<f32>),
    F64(CudaSlice<f64>),
    I32(CudaSlice<i32>),
}

fn err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> String + '_ {
    move |e| format!("{what}: {e:?}")
}

impl FormatKernels {
    /// Opens device 0 and compiles (or loads from the cache) `kernels/formats.cu`.
    pub fn open() -> Result<FormatKernels, String> {
        let (ctx, name, (major, minor)) = gpu::probe()?;
        let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
        let (module, src, names) = kernels::MODULES
            .iter()
            .find(|m| m.0 == "formats")
            .expect("the formats module is listed in kernels::MODULES");
        let ptx = kernels::ptx(module, src, arch)?;
        let m = ctx.load_module(ptx).map_err(|e| format!("cannot load kernels/formats.cu on {name}: {e:?}"))?;
        let mut funcs = HashMap::new();
        for k in *names {
            let f = m.load_function(k).map_err(|e| format!("kernels/formats.cu has no kernel {k}: {e:?}"))?;
            funcs.insert(*k, f);
        }
        let stream = ctx.default_stream();
        Ok(FormatKernels { ctx, stream, funcs, _module: m, name: format!("{name} (sm_{major}{minor})") })
    }

    /// Runs `plan` on `input`: the output and the mask, copied back. Output and mask start as
    /// NaN, so a value no kernel writes shows as a difference.
    pub fn run(&self, plan: &Plan, input: &[f32]) -> Result<(Vec<f32>, Vec<f32>), String> {
        if plan.launches.is_empty() {
            return Ok((vec![0.0; input.len()], vec![1.0; input.len()]));
        }
        self.ctx.bind_to_thread().map_err(err("cannot use the GPU from this thread"))?;
        let s = &self.stream;
        let mut bufs = Vec::with_capacity(plan.bufs.len());
        for (i, b) in plan.bufs.iter().enumerate() {
            let d = match *b {
                Buf::F32(_) if i == INPUT => DevBuf::F32(s.clone_htod(input).map_err(err("copy to the GPU"))?),
                Buf::F32(n) => DevBuf::F32(s.clone_htod(&vec![f32::NAN; n.max(1)]).map_err(err("copy to the GPU"))?),
                Buf::F64(n) => DevBuf::F64(s.alloc_zeros::<f64>(n.max(1)).map_err(err("GPU allocation"))?),
                Buf::I32(n) => DevBuf::I32(s.alloc_zeros::<i32>(n.max(1)).map_err(err("GPU allocation"))?),
            };
            bufs.push(d);
        }
        if plan.bufs.first() != Some(&Buf::F32(input.len())) {
            return Err(format!("the plan's input buffer does not hold {} values", input.len()));
        }
        for l in &plan.launches {
            let f = self.funcs.get(l.kernel).ok_or_else(|| format!("kernel {} was not loaded", l.kernel))?;
            let mut b = s.launch_builder(f);
            for a in &l.args {
                match a {
                    Arg::Buf(i) => match &bufs[*i] {
                        DevBuf::F32(d) => b.arg(d),
                        DevBuf::F64(d) => b.arg(d),
                        DevBuf::I32(d) => b.arg(d),
                    },
                    Arg::Long(v) => b.arg(v),
                    Arg::Int(v) => b.arg(v),
                    Arg::Uint(v) => b.arg(v),
                    Arg::Float(v) => b.arg(v),
                };
            }
            let n = l.threads();
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(256).max(1) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the arguments are in the kernel's order with its types (the same plan runs
            // the host build of these kernels, whose C signatures are the kernels' own), and the
            // plan sizes every buffer for the threads that index it.
            unsafe { b.launch(cfg) }.map_err(|e| format!("kernel {} failed: {e:?}", l.kernel))?;
        }
        let down = |i: usize| match &bufs[i] {
            DevBuf::F32(d) => s.clone_dtoh(d).map_err(err("copy from the GPU")),
            _ => Err("output and mask are float buffers".to_string()),
        };
        let (mut out, mut mask) = (down(OUTPUT)?, down(MASK)?);
        out.truncate(input.len());
        mask.truncate(input.len());
        Ok((out, mask))
    }
}
