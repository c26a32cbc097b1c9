//! `cuda-check`: the checks that need a GPU, run by `tools/gpu/check.sh` from binaries built
//! on a machine without one. Everything goes through the library as `host` loads it
//! (`trainer::accel`: next to this executable, or `$HOST_CUDA_BACKEND`).
//!
//! - `cuda-check probe`: the library's version and the device;
//! - `cuda-check kernels`: every kernel against its CPU reference (max abs difference);
//! - `cuda-check compare [MODEL] [STEPS]`: CPU and CUDA runs from one seed (losses within 1e-3
//!   relative at every step) and resumption across backends (CPU -> CUDA and CUDA -> CPU);
//! - `cuda-check precision [MODEL] [STEPS]`: CUDA runs at fp32, TF32 and BF16 from one seed; the
//!   TF32 and BF16 validation losses within a sanity band (2 % and 5 %) of fp32's;
//! - `cuda-check speed`: training tokens per second for three sizes, with the matrix products
//!   in fp32, TF32 and BF16 (`--matmul`);
//! - `cuda-check formats [PLUGIN_DIR]`: the native kernels of the built-in formats against the
//!   plugins (`libplugin_{int,fp,block}.so` from PLUGIN_DIR, default: this executable's folder),
//!   bit for bit, on the cases `tests/formats.rs` runs on the host build (per format the largest
//!   absolute difference and the number of differing values); this subcommand runs the
//!   kernels through the crate directly, not through a training session.
//!
//! Exit status 1 with one line on any failure.

use std::process::ExitCode;
use std::time::Instant;

use trainer::accel::{self, AccelOptions, AccelTrainer};
use trainer::backend::{Backend, MatmulPrecision, State};
use trainer::data::{Data, Source};
use trainer::device::Device;
use trainer::model::{ModelConfig, preset};
use trainer::{TrainOptions, device};

const SEED: u64 = 3;
/// Largest relative loss difference between the CPU and CUDA backends (step by step).
const REL_TOL: f64 = 1e-3;

fn opts(total: u64) -> TrainOptions {
    TrainOptions { seed: SEED, total_steps: total, ..Default::default() }
}

fn cuda(
    cfg: &ModelConfig,
    total: u64,
    matmul: MatmulPrecision,
    state: Option<State>,
) -> Result<Box<dyn Backend>, String> {
    let (lib, name) = accel::open_cuda(None)?;
    let accel_opts = AccelOptions { matmul, native_weights: accel::native_weights_from_env() };
    Ok(Box::new(AccelTrainer::new(lib, name, cfg.clone(), opts(total), accel_opts, state)?))
}

fn run(b: &mut dyn Backend, data: &Data, cfg: &ModelConfig, until: u64) -> Result<Vec<f32>, String> {
    let mut out = Vec::new();
    while b.step_index() < until {
        let batch = data.train_batch(b.step_index(), cfg.batch, cfg.ctx, SEED);
        out.push(b.step(&batch)?.loss);
    }
    Ok(out)
}

fn max_rel(a: &[f32], b: &[f32]) -> (f64, usize) {
    a.iter().zip(b).enumerate().fold((0.0, 0), |(m, at), (i, (&x, &y))| {
        let r = ((x as f64 - y as f64) / (y as f64).abs().max(1e-12)).abs();
        if r > m || r.is_nan() { (if r.is_nan() { f64::INFINITY } else { r }, i) } else { (m, at) }
    })
}

fn compare(model: &str, steps: u64, accum: usize) -> Result<(), String> {
    let cfg = ModelConfig { accum, ..preset(model)? };
    cfg.validate()?;
    let data = Data::open(&Source::default())?;
    let val = data.val_batches(16, cfg.ctx);
    let t0 = Instant::now();
    let mut c = device::create(Device::Cpu, cfg.clone(), opts(steps), MatmulPrecision::Fp32, None)?;
    let cpu = run(c.as_mut(), &data, &cfg, steps)?;
    let cpu_val = c.eval_loss(&val)?;
    let cpu_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut g = cuda(&cfg, steps, MatmulPrecision::Fp32, None)?;
    let gpu = run(g.as_mut(), &data, &cfg, steps)?;
    let gpu_val = g.eval_loss(&val)?;
    let gpu_s = t0.elapsed().as_secs_f64();
    let (rel, at) = max_rel(&gpu, &cpu);
    let vrel = ((gpu_val - cpu_val) / cpu_val).abs() as f64;
    println!(
        "compare {model}, {steps} steps, accum {accum}: loss cpu {:.5} -> {:.5}, cuda {:.5} -> {:.5}; max relative difference {rel:.2e} (step {at}); validation cpu {cpu_val:.5} cuda {gpu_val:.5} ({vrel:.2e}); {cpu_s:.1} s on CPU, {gpu_s:.1} s on GPU",
        cpu[0],
        cpu[cpu.len() - 1],
        gpu[0],
        gpu[gpu.len() - 1]
    );
    if rel > REL_TOL || vrel > REL_TOL {
        return Err(format!("CPU and CUDA losses differ by more than {REL_TOL} (relative)"));
    }
    // Resume across backends at the half-way point; the continuation must follow the CPU curve.
    let half = steps / 2;
    for (first, second) in [(Device::Cpu, Device::Cuda), (Device::Cuda, Device::Cpu)] {
        let mut a = match first {
            Device::Cpu => device::create(Device::Cpu, cfg.clone(), opts(steps), MatmulPrecision::Fp32, None)?,
            Device::Cuda => cuda(&cfg, steps, MatmulPrecision::Fp32, None)?,
        };
        run(a.as_mut(), &data, &cfg, half)?;
        let state = (a.state()?, a.step_index());
        let mut b = match second {
            Device::Cpu => device::create(Device::Cpu, cfg.clone(), opts(steps), MatmulPrecision::Fp32, Some(state))?,
            Device::Cuda => cuda(&cfg, steps, MatmulPrecision::Fp32, Some(state))?,
        };
        let rest = run(b.as_mut(), &data, &cfg, steps)?;
        let (rel, at) = max_rel(&rest, &cpu[half as usize..]);
        println!(
            "resume {} -> {} at step {half}: max relative difference to the CPU run {rel:.2e} (step {})",
            first.name(),
            second.name(),
            half as usize + at
        );
        if rel > REL_TOL {
            return Err(format!("resuming {} -> {} departs from the CPU run", first.name(), second.name()));
        }
    }
    Ok(())
}

/// Validation loss bands of tensor-core training against fp32 (relative): a sanity band, not a
/// tolerance derived from error analysis. TF32 keeps 10 mantissa bits and BF16 7 in each
/// product; over a short run of a small model either moves the loss by well under these, while a
/// broken path (wrong compute type, garbage products) moves it by far more or makes it NaN.
const PRECISION_BAND: [(MatmulPrecision, f64); 2] = [(MatmulPrecision::Tf32, 0.02), (MatmulPrecision::Bf16, 0.05)];

/// Trains `model` for `steps` on the CUDA backend at fp32, TF32 and BF16 from one seed and
/// compares the TF32 and BF16 runs with fp32: every loss finite, validation loss within
/// [`PRECISION_BAND`]; the largest per-step relative difference is printed for information.
fn precision(model: &str, steps: u64) -> Result<(), String> {
    let cfg = preset(model)?;
    let data = Data::open(&Source::default())?;
    let val = data.val_batches(16, cfg.ctx);
    let mut g = cuda(&cfg, steps, MatmulPrecision::Fp32, None)?;
    let base = run(g.as_mut(), &data, &cfg, steps)?;
    let base_val = g.eval_loss(&val)?;
    println!(
        "precision {model}, {steps} steps: fp32 loss {:.5} -> {:.5}, validation {base_val:.5}",
        base[0],
        base[base.len() - 1]
    );
    let mut bad = Vec::new();
    for (m, band) in PRECISION_BAND {
        let mut g = cuda(&cfg, steps, m, None)?;
        let losses = run(g.as_mut(), &data, &cfg, steps)?;
        let v = g.eval_loss(&val)?;
        let (rel, at) = max_rel(&losses, &base);
        let vrel = ((v - base_val) / base_val).abs() as f64;
        let ok = losses.iter().all(|l| l.is_finite()) && vrel <= band;
        println!(
            "  {}: loss {:.5} -> {:.5}, validation {v:.5} ({vrel:.2e} from fp32, band {band}); largest per-step difference {rel:.2e} (step {at}) {}",
            m.name(),
            losses[0],
            losses[losses.len() - 1],
            if ok { "ok" } else { "FAIL" }
        );
        if !ok {
            bad.push(m.name());
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{} training departs from fp32 beyond its band", bad.join(" and ")))
    }
}

/// The three sizes of the speed table: `(name, n_layer, n_head, d_model, d_hidden, ctx, batch)`.
/// Mirrored in tools/gpu/torch_speed.py.
pub const SIZES: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("gpu-10m", 6, 6, 384, 1024, 512, 32),
    ("gpu-30m", 8, 8, 512, 1536, 1024, 16),
    ("gpu-85m", 12, 12, 768, 2048, 1024, 8),
];

fn speed() -> Result<(), String> {
    println!(
        "{:<9} {:>12} {:>6} {:>6} {:>12} {:>12} {:>12}",
        "size", "non-emb", "ctx", "batch", "fp32 tok/s", "tf32 tok/s", "bf16 tok/s"
    );
    for &(name, l, nh, d, h, ctx, batch) in SIZES {
        let cfg = ModelConfig {
            name: name.into(),
            n_layer: l,
            n_head: nh,
            d_model: d,
            d_hidden: h,
            ctx,
            batch,
            lr: 1e-3,
            accum: 1,
        };
        let tokens: Vec<u8> = (0..batch * (ctx + 1)).map(|i| (i * 131 % 251) as u8).collect();
        let mut tps = Vec::new();
        for matmul in MatmulPrecision::ALL {
            let mut g = cuda(&cfg, 100, matmul, None)?;
            for _ in 0..3 {
                g.step(&tokens)?;
            }
            let n = 10;
            let t0 = Instant::now();
            for _ in 0..n {
                g.step(&tokens)?;
            }
            tps.push((n * batch * ctx) as f64 / t0.elapsed().as_secs_f64());
        }
        println!(
            "{name:<9} {:>12} {ctx:>6} {batch:>6} {:>12.0} {:>12.0} {:>12.0}",
            cfg.non_embedding_params(),
            tps[0],
            tps[1],
            tps[2]
        );
    }
    Ok(())
}

fn formats(dir: Option<&String>) -> Result<(), String> {
    use backend_cuda::formats::{cases, device::FormatKernels};
    let dir = match dir {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
            .ok_or("cannot find this executable's folder")?,
    };
    let plugins = cases::Plugins::load(&dir)?;
    let t0 = Instant::now();
    let k = FormatKernels::open()?;
    println!("format kernels on {} (compiled or loaded in {:.1} s)", k.name, t0.elapsed().as_secs_f64());
    let report = cases::check(&plugins, &mut |p, x| k.run(p, x))?;
    print!("{}", report.text());
    match report.failed() {
        0 => Ok(()),
        n => Err(format!("{n} formats differ from their plugin on the GPU")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("probe") => accel::locate(None).and_then(|p| {
            let lib = accel::AccelLib::load(&p)?;
            println!("{}: {}", p.display(), lib.version()?);
            println!("device: {}", lib.probe()?);
            Ok(())
        }),
        Some("kernels") => accel::open_cuda(None).and_then(|(lib, _)| {
            let report = lib.check_kernels()?;
            println!("{report}");
            if report.contains("FAIL") { Err("some kernels differ from their CPU reference".into()) } else { Ok(()) }
        }),
        Some("compare") => {
            let model = args.get(1).map(String::as_str).unwrap_or("lm-1m");
            let steps = args.get(2).map_or(Ok(200), |s| s.parse::<u64>()).map_err(|e| format!("STEPS: {e}"));
            let accum = args.get(3).map_or(Ok(1), |s| s.parse::<usize>()).map_err(|e| format!("ACCUM: {e}"));
            steps.and_then(|s| accum.and_then(|a| compare(model, s, a)))
        }
        Some("precision") => {
            let model = args.get(1).map(String::as_str).unwrap_or("lm-1m");
            let steps = args.get(2).map_or(Ok(100), |s| s.parse::<u64>()).map_err(|e| format!("STEPS: {e}"));
            steps.and_then(|s| precision(model, s))
        }
        Some("speed") => speed(),
        Some("formats") => formats(args.get(1)),
        _ => {
            Err("usage: cuda-check probe | kernels | compare [MODEL] [STEPS] [ACCUM] | precision [MODEL] [STEPS] | speed | formats [PLUGIN_DIR]"
                .into())
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cuda-check: {e}");
            ExitCode::FAILURE
        }
    }
}
