//! A reference accelerator on the CPU: the accelerator interface ([`crate::accel_abi`])
//! implemented in-process with the CPU trainer's own model, norm, AdamW and accumulation, so
//! that [`AccelTrainer`]'s side of a GPU run (initialization, uploads, weight formats through
//! the host, micro-batch accumulation calls, clipping, the schedule, evaluation, checkpoint
//! tensors and resumption) is tested here, without a GPU, against [`Trainer`] bit for bit.
//! What it cannot test is the device code itself: that is `cuda-check kernels` and `compare`
//! in `tools/gpu/check.sh`.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RSlice, RSliceMut, RStr, RString};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{AccelLib, AccelOptions, AccelTrainer};
use crate::accel_abi::{AccelMod, FfiSession, FfiSession_TO, FfiSessionBox, buf, root_module};
use crate::backend::{Backend, MatmulPrecision};
use crate::compress::Compressor;
use crate::model::{Model, ModelConfig, ParamKind};
use crate::optim::{self, AdamW};
use crate::train::{TrainOptions, Trainer, segments};

/// One model in host memory, driven through the session interface.
struct Session {
    model: Model<f32>,
    params: Vec<f32>,
    eff: Vec<f32>,
    grads: Vec<f32>,
    adam: AdamW,
    acc: Vec<f32>,
    segments: Vec<(std::ops::Range<usize>, bool)>,
    last_eff: bool,
    /// The weight format run "natively" (only kind `round`, [`round_format`]), and its masks.
    native: bool,
    mask: Vec<f32>,
}

impl Session {
    fn buffer(&mut self, which: u8) -> Result<&mut Vec<f32>, String> {
        Ok(match which {
            buf::PARAMS => &mut self.params,
            buf::EFF => &mut self.eff,
            buf::GRADS => &mut self.grads,
            buf::ADAM_M => &mut self.adam.m,
            buf::ADAM_V => &mut self.adam.v,
            w => return Err(format!("no buffer {w}")),
        })
    }
}

fn res<T>(r: Result<T, String>) -> RResult<T, RString> {
    r.map_err(RString::from).into()
}

impl FfiSession for Session {
    fn device_name(&self) -> RString {
        "CPU reference accelerator".into()
    }
    fn write(&mut self, which: u8, offset: u64, data: RSlice<'_, f32>) -> RResult<(), RString> {
        res(self.buffer(which).map(|b| b[offset as usize..][..data.len()].copy_from_slice(data.as_slice())))
    }
    fn read(&self, which: u8, offset: u64, mut out: RSliceMut<'_, f32>) -> RResult<(), RString> {
        let b = match which {
            buf::PARAMS => &self.params,
            buf::EFF => &self.eff,
            buf::GRADS => &self.grads,
            buf::ADAM_M => &self.adam.m,
            buf::ADAM_V => &self.adam.v,
            w => return RResult::RErr(format!("no buffer {w}").into()),
        };
        let n = out.len();
        out.as_mut_slice().copy_from_slice(&b[offset as usize..][..n]);
        RResult::ROk(())
    }
    fn forward(
        &mut self,
        tokens: RSlice<'_, u8>,
        use_eff: bool,
        mut losses: RSliceMut<'_, f32>,
    ) -> RResult<(), RString> {
        self.last_eff = use_eff;
        let p = if use_eff { &self.eff } else { &self.params };
        res(self.model.forward(p, tokens.as_slice(), None).map(|_| {
            losses.as_mut_slice().copy_from_slice(self.model.token_losses());
        }))
    }
    fn backward(&mut self) -> RResult<(), RString> {
        let p = if self.last_eff { &self.eff } else { &self.params };
        res(self.model.backward_with(p, &mut self.grads, None))
    }
    fn grad_norm(&mut self) -> RResult<f64, RString> {
        RResult::ROk(optim::global_norm(&self.grads))
    }
    fn adamw(&mut self, lr: f32, t: u64, scale: f32) -> RResult<(), RString> {
        self.adam.update(&mut self.params, &self.grads, &self.segments, lr, t, scale);
        RResult::ROk(())
    }
    fn weight_format(&self) -> RString {
        if self.native { "round (reference kernels)".into() } else { RString::new() }
    }
    fn compress_weights(&mut self) -> RResult<(), RString> {
        if !self.native {
            return RResult::RErr("no weight format on the device".into());
        }
        self.eff.clone_from(&self.params);
        for t in self.model.layout().tensors.iter().filter(|t| t.kind == ParamKind::Linear) {
            let r = t.range();
            round_format(&self.params[r.clone()], &mut self.eff[r.clone()], &mut self.mask[r]);
        }
        RResult::ROk(())
    }
    fn weight_backward(&mut self) -> RResult<(), RString> {
        for t in self.model.layout().tensors.iter().filter(|t| t.kind == ParamKind::Linear) {
            let r = t.range();
            self.grads[r.clone()].iter_mut().zip(&self.mask[r]).for_each(|(g, m)| *g *= m);
        }
        RResult::ROk(())
    }
    fn accumulate(&mut self, k: u32, count: u32, inv: f32) -> RResult<(), RString> {
        if k == 0 {
            self.acc.clone_from(&self.grads);
        } else {
            self.acc.iter_mut().zip(&self.grads).for_each(|(a, g)| *a += g);
        }
        if k + 1 == count {
            self.grads.iter_mut().zip(&self.acc).for_each(|(g, a)| *g = a * inv);
        }
        RResult::ROk(())
    }
}

extern "C" fn version() -> RString {
    "CPU reference accelerator".into()
}
extern "C" fn probe() -> RResult<RString, RString> {
    RResult::ROk("CPU reference accelerator".into())
}
extern "C" fn open(cfg: RStr<'_>, options: RStr<'_>) -> RResult<FfiSessionBox, RString> {
    res((|| {
        let cfg: ModelConfig = serde_json::from_str(cfg.as_str()).map_err(|e| e.to_string())?;
        let options: serde_json::Value = serde_json::from_str(options.as_str()).map_err(|e| e.to_string())?;
        let o = AccelOptions::from_json(&options)?;
        let native = super::weights_from_json(&options).is_some_and(|(kind, _)| kind == "round");
        if o.matmul != MatmulPrecision::Fp32 {
            return Err("the reference computes in fp32 only".to_string());
        }
        let model = Model::<f32>::new(&cfg)?;
        let n = model.layout().total;
        let segments = segments(model.layout());
        let s = Session {
            model,
            params: vec![0.0; n],
            eff: vec![0.0; n],
            grads: vec![0.0; n],
            adam: AdamW::new(n),
            acc: vec![0.0; n],
            segments,
            last_eff: false,
            native,
            mask: vec![1.0; n],
        };
        Ok(FfiSession_TO::from_value(s, TD_Opaque))
    })())
}
extern "C" fn no_kernels() -> RResult<RString, RString> {
    RResult::RErr("the reference accelerator has no kernels".into())
}
extern "C" fn no_compile(_: RStr<'_>) -> RResult<RString, RString> {
    RResult::RErr("the reference accelerator has no kernels".into())
}

fn reference() -> AccelLib {
    AccelLib {
        module: root_module(AccelMod { version, probe, open, check_kernels: no_kernels, compile_kernels: no_compile }),
    }
}

/// A seeded weight format with a real mask: stochastic rounding to a step of 1/64, clipped
/// to ±0.08 (about 2 standard deviations of the initial weights); the gradient passes inside
/// the clip range only. The rounding noise comes from the seed, so a backend that hands a
/// layer another seed gives other weights.
struct Dither;
impl Compressor for Dither {
    fn compress(
        &self,
        x: &[f32],
        y: &mut [f32],
        mask: &mut [f32],
        _: usize,
        _: usize,
        seed: u64,
    ) -> Result<(), String> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        for ((x, y), m) in x.iter().zip(y.iter_mut()).zip(mask.iter_mut()) {
            let c = x.clamp(-0.08, 0.08);
            *y = ((c * 64.0) + rng.random::<f32>()).floor() / 64.0;
            *m = if c == *x { 1.0 } else { 0.0 };
        }
        Ok(())
    }
}

/// A deterministic weight format with a real mask: round to a step of 1/64 after clipping to
/// ±0.08; the gradient passes inside the clip range only.
fn round_format(x: &[f32], y: &mut [f32], mask: &mut [f32]) {
    for ((x, y), m) in x.iter().zip(y.iter_mut()).zip(mask.iter_mut()) {
        let c = x.clamp(-0.08, 0.08);
        *y = (c * 64.0).round() / 64.0;
        *m = if c == *x { 1.0 } else { 0.0 };
    }
}

/// [`round_format`] as a compressor that names itself `kind` for the accelerator (the
/// reference runs kind `round` natively and declines any other).
struct Round(&'static str);
impl Compressor for Round {
    fn compress(&self, x: &[f32], y: &mut [f32], mask: &mut [f32], _: usize, _: usize, _: u64) -> Result<(), String> {
        round_format(x, y, mask);
        Ok(())
    }
    fn native(&self) -> Option<(String, String)> {
        Some((self.0.to_string(), String::new()))
    }
}

fn small(accum: usize) -> ModelConfig {
    ModelConfig {
        name: "small".into(),
        n_layer: 2,
        n_head: 2,
        d_model: 32,
        d_hidden: 64,
        ctx: 16,
        batch: 8,
        lr: 3e-3,
        accum,
    }
}

fn options(weight: bool) -> TrainOptions {
    TrainOptions {
        seed: 5,
        total_steps: 12,
        weight: weight.then(|| Box::new(Dither) as Box<dyn Compressor>),
        ..Default::default()
    }
}

/// Byte rows with short repeating patterns, from `seed`.
fn batch(cfg: &ModelConfig, rows: usize, seed: u64) -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut out = Vec::new();
    for _ in 0..rows {
        let period = rng.random_range(2..=5usize);
        let pat: Vec<u8> = (0..period).map(|_| rng.random_range(b'a'..=b'z')).collect();
        out.extend((0..cfg.ctx + 1).map(|i| pat[i % period]));
    }
    out
}

fn accel(cfg: &ModelConfig, weight: bool, state: Option<crate::backend::State>) -> AccelTrainer {
    let lib = reference();
    AccelTrainer::new(lib, "reference".into(), cfg.clone(), options(weight), AccelOptions::default(), state).unwrap()
}

/// Weight formats on the device: with `native_weights`, a format the library runs itself
/// (`round`) goes through `compress_weights` / `weight_backward` and gives the CPU trainer's
/// numbers and state bit for bit, with and without accumulation, and resumes on the CPU; a
/// format the library declines (`other`), or `native_weights` off, stays on the host path
/// with the same numbers; the device line says which.
#[test]
fn weight_formats_on_the_device_match_the_cpu_trainer() {
    let with = |kind: &'static str| TrainOptions { weight: Some(Box::new(Round(kind))), ..options(false) };
    for accum in [1, 2] {
        let cfg = small(accum);
        let want = trace(&mut Trainer::new(cfg.clone(), with("round")).unwrap(), &cfg, 5, 0);
        assert_ne!(want, trace(&mut Trainer::new(cfg.clone(), options(false)).unwrap(), &cfg, 5, 0));
        for (kind, native, on_device) in [("round", true, true), ("round", false, false), ("other", true, false)] {
            let o = AccelOptions { native_weights: native, ..Default::default() };
            let mut a = AccelTrainer::new(reference(), "reference".into(), cfg.clone(), with(kind), o, None).unwrap();
            let kernels = on_device.then_some("round (reference kernels)");
            assert_eq!(a.weight_kernels(), kernels, "{kind} {native}");
            assert_eq!(trace(&mut a, &cfg, 5, 0), want, "accum {accum}, {kind}, native {native}");
            let mut cpu = Trainer::new(cfg.clone(), with("round")).unwrap();
            trace(&mut cpu, &cfg, 5, 0);
            assert_eq!(Backend::state(&a).unwrap(), Backend::state(&cpu).unwrap());
        }
    }
}

/// `(loss, grad norm, lr)` bits of every step, then the evaluation loss's bits.
fn trace(b: &mut dyn Backend, cfg: &ModelConfig, steps: u64, first: u64) -> Vec<[u32; 3]> {
    let mut out = Vec::new();
    for s in first..first + steps {
        let st = b.step(&batch(cfg, cfg.batch, 100 + s)).unwrap();
        out.push([st.loss.to_bits(), st.grad_norm.to_bits(), st.lr.to_bits()]);
    }
    let e = b.eval_loss(&batch(cfg, 3 * cfg.batch / 2, 7)).unwrap();
    out.push([e.to_bits(), 0, 0]);
    out
}

/// The accelerator path gives the CPU trainer's numbers bit for bit: plain, with 4
/// micro-batches (accumulated through `accumulate`), and with a seeded weight format (masks
/// and seeds through the host); and the final parameters and moments are the same.
#[test]
fn accelerator_path_matches_the_cpu_trainer_bit_for_bit() {
    for (accum, weight) in [(1, false), (4, false), (1, true), (2, true)] {
        let cfg = small(accum);
        let mut cpu = Trainer::new(cfg.clone(), options(weight)).unwrap();
        let mut acc = accel(&cfg, weight, None);
        let (a, b) = (trace(&mut cpu, &cfg, 6, 0), trace(&mut acc, &cfg, 6, 0));
        assert_eq!(a, b, "accum {accum}, weight format {weight}");
        assert_eq!(Backend::state(&cpu).unwrap(), Backend::state(&acc).unwrap(), "accum {accum}, weight {weight}");
        assert_eq!(acc.step_index(), 6);
        // The weight format is not the identity (the comparison above means something).
        if weight {
            let plain = trace(&mut Trainer::new(cfg.clone(), options(false)).unwrap(), &cfg, 1, 0);
            assert_ne!(plain[0], a[0]);
        }
    }
}

/// Checkpoints cross between the backends: 3 steps on one, resumed on the other for 3 more,
/// equal to 6 steps on the CPU alone.
#[test]
fn runs_resume_across_backends() {
    let cfg = small(2);
    let mut whole = Trainer::new(cfg.clone(), options(true)).unwrap();
    let want = trace(&mut whole, &cfg, 6, 0);
    // CPU, then the accelerator.
    let mut cpu = Trainer::new(cfg.clone(), options(true)).unwrap();
    trace(&mut cpu, &cfg, 3, 0);
    let mut acc = accel(&cfg, true, Some((cpu.state(), 3)));
    let tail = trace(&mut acc, &cfg, 3, 3);
    assert_eq!(tail[..3], want[3..6]);
    assert_eq!(tail[3], want[6]);
    // The accelerator, then the CPU.
    let mut acc = accel(&cfg, true, None);
    trace(&mut acc, &cfg, 3, 0);
    let mut cpu = Trainer::restore(cfg.clone(), options(true), Backend::state(&acc).unwrap(), 3).unwrap();
    let tail = trace(&mut cpu, &cfg, 3, 3);
    assert_eq!(tail[..3], want[3..6]);
    assert_eq!(Backend::state(&cpu).unwrap(), Backend::state(&whole).unwrap());
}
