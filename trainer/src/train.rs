//! The training loop step: optional weight compression (QAT), forward,
//! backward (through the compressors' straight-through backward), clipping,
//! AdamW.
//!
//! Threads: everything parallel runs on the current rayon pool (the caller
//! may `pool.install(|| ...)`). Losses are bit-identical for any thread count.

use std::time::Instant;

use rayon::prelude::*;

use crate::checkpoint::Tensors;
use crate::compress::Compressor;
use crate::model::{self, ActHook, Model, ModelConfig, ParamKind, ParamLayout};
use crate::optim::{self, AdamW};

/// Options of a training run.
///
/// Compressor seeds: the weight compressor of tensor `i` (its index in
/// [`ParamLayout::tensors`]) at step `s` gets
/// `derive_seed(seed, s, i, 1)`; the activation compressor of input `j`
/// (0: q/k/v, 1: wo, 2: w1/w3, 3: w2) of block `l` gets
/// `derive_seed(derive_seed(seed, s, u64::MAX, 2), 0, l, 100 + j)`
/// ([`model::derive_seed`], a splitmix64 chain). Evaluation uses
/// `s = step | 1 << 32`, so it never reuses a training seed.
#[derive(Default)]
pub struct TrainOptions {
    /// Run seed (initialization and compressor seeds).
    pub seed: u64,
    /// Planned number of steps (drives the learning-rate schedule).
    pub total_steps: u64,
    /// Weight compressor, applied to every block linear weight (`wq wk wv wo
    /// w1 w3 w2`, seen as `out_features x in_features`) before each forward.
    pub weight: Option<Box<dyn Compressor>>,
    /// Activation compressor, applied to the input of every block linear
    /// layer (`tokens x features`; the shared q/k/v input and the shared
    /// w1/w3 input are compressed once each).
    pub act: Option<Box<dyn Compressor>>,
}

/// What one step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean cross-entropy of the batch (nats per token) before the update.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Learning rate used.
    pub lr: f32,
}

/// Tensor-kind tags mixed into compressor seeds.
pub(crate) const SEED_WEIGHT: u64 = 1;
const SEED_ACT: u64 = 2;
pub(crate) const SEED_EVAL: u64 = 1 << 32;

/// The initial parameters of a run with `seed` (shared by every backend, so a seed gives the
/// same start on any device).
pub fn init_params(cfg: &ModelConfig, layout: &ParamLayout, seed: u64) -> Vec<f32> {
    layout.init::<f32>(cfg, model::mix64(seed ^ 0x1417))
}

/// The AdamW segments of a layout: every tensor's range, decayed unless it is a norm gain.
pub(crate) fn segments(layout: &ParamLayout) -> Vec<(std::ops::Range<usize>, bool)> {
    layout.tensors.iter().map(|t| (t.range(), t.kind != ParamKind::Norm)).collect()
}

/// Copies checkpoint tensors (`param.*`, `adam_m.*`, `adam_v.*`, as [`Trainer::state`] names
/// them) into `params`, `m` and `v`; every tensor must be present with its shape.
pub(crate) fn unpack_state(
    layout: &ParamLayout,
    tensors: Tensors,
    params: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<(), String> {
    let mut seen = vec![[false; 3]; layout.tensors.len()];
    for (name, array) in tensors {
        let (which, base) = if let Some(b) = name.strip_prefix("param.") {
            (0, b)
        } else if let Some(b) = name.strip_prefix("adam_m.") {
            (1, b)
        } else if let Some(b) = name.strip_prefix("adam_v.") {
            (2, b)
        } else {
            return Err(format!("checkpoint tensor '{name}' is not param.*, adam_m.* or adam_v.*"));
        };
        let idx = layout
            .tensors
            .iter()
            .position(|p| p.name == base)
            .ok_or_else(|| format!("checkpoint tensor '{name}' does not exist in this model config"))?;
        let info = &layout.tensors[idx];
        if array.shape() != info.shape.as_slice() {
            return Err(format!(
                "checkpoint tensor '{name}' has shape {:?}, the model expects {:?}",
                array.shape(),
                info.shape
            ));
        }
        let dst = match which {
            0 => &mut *params,
            1 => &mut *m,
            _ => &mut *v,
        };
        info.view_mut(dst).assign(&array);
        seen[idx][which] = true;
    }
    for (i, s) in seen.iter().enumerate() {
        for (w, pre) in ["param", "adam_m", "adam_v"].iter().enumerate() {
            if !s[w] {
                return Err(format!("checkpoint lacks tensor '{pre}.{}'", layout.tensors[i].name));
            }
        }
    }
    Ok(())
}

/// The checkpoint tensors of `params`, `m` and `v` (see [`Trainer::state`]): each tensor's view
/// in the flat buffers, copied out.
pub(crate) fn pack_state(layout: &ParamLayout, params: &[f32], m: &[f32], v: &[f32]) -> Tensors {
    let mut out = Vec::new();
    for (pre, src) in [("param", params), ("adam_m", m), ("adam_v", v)] {
        for t in &layout.tensors {
            out.push((format!("{pre}.{}", t.name), t.view(src).to_owned()));
        }
    }
    out
}

/// Writes the compressed weights of `params` into `eff` and their masks into `wmask` (every
/// block linear weight through `comp` with its seed; other tensors copied). Tensors run in
/// parallel.
pub(crate) fn compress_weights(
    comp: &dyn Compressor,
    seed: u64,
    layout: &ParamLayout,
    params: &[f32],
    eff: &mut [f32],
    wmask: &mut [f32],
    step_seed: u64,
) -> Result<(), String> {
    // Split eff and wmask into per-tensor slices (tensors are in order).
    let mut jobs = Vec::new();
    let (mut eff, mut mask): (&mut [f32], &mut [f32]) = (eff, wmask);
    let mut pos = 0;
    for (i, t) in layout.tensors.iter().enumerate() {
        let (e, erest) = std::mem::take(&mut eff).split_at_mut(t.len());
        let (m, mrest) = std::mem::take(&mut mask).split_at_mut(t.len());
        eff = erest;
        mask = mrest;
        debug_assert_eq!(pos, t.offset);
        pos += t.len();
        jobs.push((i, t, e, m));
    }
    let results: Vec<Result<(), String>> = jobs
        .into_par_iter()
        .map(|(i, t, e, m)| {
            let src = &params[t.range()];
            if t.kind != ParamKind::Linear {
                e.copy_from_slice(src);
                return Ok(());
            }
            let (rows, cols) = (t.shape[0], t.shape[1]);
            m.fill(1.0);
            let s = model::derive_seed(seed, step_seed, i as u64, SEED_WEIGHT);
            comp.compress(src, e, m, rows, cols, s)
                .map_err(|err| format!("format failed on layer {} ({rows}x{cols}): {err}", t.name))
        })
        .collect();
    results.into_iter().collect()
}

/// Turns the gradient of the compressed linear weights (in `grads`) into the gradient of the
/// master weights: `comp`'s backward per tensor, with the input, mask and seed of
/// [`compress_weights`] at `step_seed`. Tensors run in parallel.
pub(crate) fn weight_backward(
    comp: &dyn Compressor,
    seed: u64,
    layout: &ParamLayout,
    params: &[f32],
    mask: &[f32],
    grads: &mut [f32],
    step_seed: u64,
) -> Result<(), String> {
    let mut jobs = Vec::new();
    let mut grads: &mut [f32] = grads;
    for (i, t) in layout.tensors.iter().enumerate() {
        let (g, rest) = std::mem::take(&mut grads).split_at_mut(t.len());
        grads = rest;
        if t.kind == ParamKind::Linear {
            jobs.push((i, t, g));
        }
    }
    let results: Vec<Result<(), String>> = jobs
        .into_par_iter()
        .map(|(i, t, g)| {
            let (rows, cols) = (t.shape[0], t.shape[1]);
            let s = model::derive_seed(seed, step_seed, i as u64, SEED_WEIGHT);
            comp.backward(&params[t.range()], &mask[t.range()], g, rows, cols, s)
                .map_err(|err| format!("format failed in the backward of layer {} ({rows}x{cols}): {err}", t.name))
        })
        .collect();
    results.into_iter().collect()
}

/// Checks that `tokens` is a whole, non-empty number of `ctx + 1`-byte rows (`what` names the
/// call in the error). Shared by every backend.
pub(crate) fn check_tokens(cfg: &ModelConfig, tokens: &[u8], what: &str) -> Result<(), String> {
    let row = cfg.ctx + 1;
    if tokens.is_empty() || !tokens.len().is_multiple_of(row) {
        return Err(format!(
            "{what}: token buffer of {} bytes is not a whole number of rows of ctx+1 = {row} bytes",
            tokens.len()
        ));
    }
    Ok(())
}

/// Checks that `tokens` is exactly one training batch: `batch x (ctx + 1)` bytes.
pub(crate) fn check_step_tokens(cfg: &ModelConfig, tokens: &[u8]) -> Result<(), String> {
    check_tokens(cfg, tokens, "training step")?;
    let want = cfg.batch * (cfg.ctx + 1);
    if tokens.len() != want {
        return Err(format!(
            "training step: got {} bytes, need batch x (ctx+1) = {} x {} = {want}",
            tokens.len(),
            cfg.batch,
            cfg.ctx + 1
        ));
    }
    Ok(())
}

/// A model, its parameters, optimizer state and options.
pub struct Trainer {
    cfg: ModelConfig,
    opts: TrainOptions,
    layout: ParamLayout,
    model: Model<f32>,
    params: Vec<f32>,
    /// Effective (compressed) parameters; only used with a weight compressor.
    eff: Vec<f32>,
    wmask: Vec<f32>,
    grads: Vec<f32>,
    /// Gradient of one micro-batch, added into `grads` (only with `accum > 1`).
    micro_grads: Vec<f32>,
    adam: AdamW,
    step: u64,
    segments: Vec<(std::ops::Range<usize>, bool)>,
}

impl Trainer {
    /// A fresh run: parameters initialized from `opts.seed`.
    pub fn new(cfg: ModelConfig, opts: TrainOptions) -> Result<Trainer, String> {
        let model = Model::<f32>::new(&cfg)?;
        let layout = model.layout().clone();
        let params = init_params(&cfg, &layout, opts.seed);
        let n = layout.total;
        let segments = segments(&layout);
        let has_w = opts.weight.is_some();
        let cfg_accum = cfg.accum;
        Ok(Trainer {
            cfg,
            opts,
            layout,
            model,
            params,
            eff: if has_w { vec![0.0; n] } else { Vec::new() },
            wmask: if has_w { vec![1.0; n] } else { Vec::new() },
            grads: vec![0.0; n],
            micro_grads: if cfg_accum > 1 { vec![0.0; n] } else { Vec::new() },
            adam: AdamW::new(n),
            step: 0,
            segments,
        })
    }

    /// Resumes a run from [`state`](Self::state) tensors and the step count;
    /// the continuation is bit-identical to an uninterrupted run.
    pub fn restore(cfg: ModelConfig, opts: TrainOptions, tensors: Tensors, step: u64) -> Result<Trainer, String> {
        let mut t = Trainer::new(cfg, opts)?;
        unpack_state(&t.layout, tensors, &mut t.params, &mut t.adam.m, &mut t.adam.v)?;
        t.step = step;
        Ok(t)
    }

    /// All parameters and both Adam moments: `(name, array)` with names `param.<t>`,
    /// `adam_m.<t>`, `adam_v.<t>` (`<t>` e.g. `blocks.0.wq`) and the tensor's shape.
    pub fn state(&self) -> Tensors {
        pack_state(&self.layout, &self.params, &self.adam.m, &self.adam.v)
    }

    /// Turns per-phase timing on (cleared) or off; see [`profile`](Self::profile).
    pub fn set_profiling(&mut self, on: bool) {
        self.model.set_profiling(on);
    }

    /// Accumulated seconds per phase since profiling was turned on.
    pub fn profile(&self) -> Vec<(String, f64)> {
        self.model.prof.phases.iter().map(|(n, t)| (n.to_string(), *t)).collect()
    }

    /// Steps done so far.
    pub fn step_index(&self) -> u64 {
        self.step
    }

    /// The config.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The parameter layout.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// The master (uncompressed) parameters.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Writes compressed weights into `eff`/`wmask` (no-op without a weight
    /// compressor). Linear weights are compressed in parallel.
    fn compress_weights(&mut self, step_seed: u64) -> Result<(), String> {
        let Some(comp) = self.opts.weight.as_deref() else { return Ok(()) };
        compress_weights(comp, self.opts.seed, &self.layout, &self.params, &mut self.eff, &mut self.wmask, step_seed)
    }

    /// Turns the gradient of the compressed linear weights into the gradient
    /// of the master weights: the weight compressor's backward, per tensor,
    /// with the input, mask and seed of [`compress_weights`](Self::compress_weights)
    /// at `step_seed`. Tensors run in parallel.
    fn weight_backward(&mut self, step_seed: u64) -> Result<(), String> {
        let Some(comp) = self.opts.weight.as_deref() else { return Ok(()) };
        weight_backward(comp, self.opts.seed, &self.layout, &self.params, &self.wmask, &mut self.grads, step_seed)
    }

    /// One training step on `tokens` (`batch x (ctx+1)` bytes), in `accum` micro-batches of
    /// `batch / accum` rows whose gradients are averaged (one pass when `accum` is 1). On a
    /// non-finite loss or gradient, returns an error and leaves the state untouched.
    pub fn step(&mut self, tokens: &[u8]) -> Result<StepStats, String> {
        check_step_tokens(&self.cfg, tokens)?;
        let step = self.step;
        let t0 = Instant::now();
        self.compress_weights(step)?;
        self.model.prof.add("weight compression", t0);
        let eff: &[f32] = if self.opts.weight.is_some() { &self.eff } else { &self.params };
        let accum = self.cfg.accum;
        let mut loss = 0.0f64;
        for (k, micro) in tokens.chunks(self.cfg.micro_batch() * (self.cfg.ctx + 1)).enumerate() {
            // Micro-batch k's activation noise stream; k = 0 is the stream of a whole-batch step.
            let act_seed = model::derive_seed(self.opts.seed, step, u64::MAX - k as u64, SEED_ACT);
            let hook = self.opts.act.as_deref().map(|comp| ActHook { comp, seed: act_seed });
            let l = self.model.forward(eff, micro, hook.as_ref())?;
            if !l.is_finite() {
                return Err(format!("loss became NaN at step {step}; lower the learning rate or check the format"));
            }
            loss += l;
            if k == 0 {
                self.model.backward_with(eff, &mut self.grads, hook.as_ref())?;
            } else {
                self.model.backward_with(eff, &mut self.micro_grads, hook.as_ref())?;
                self.grads.iter_mut().zip(&self.micro_grads).for_each(|(g, m)| *g += m);
            }
        }
        if accum > 1 {
            // The mean over micro-batches of equal size: the gradient of the batch's mean loss.
            let inv = 1.0 / accum as f32;
            self.grads.iter_mut().for_each(|g| *g *= inv);
            loss /= accum as f64;
        }
        let t0 = Instant::now();
        self.weight_backward(step)?;
        let norm = optim::global_norm(&self.grads);
        if !norm.is_finite() {
            return Err(format!("gradient became NaN at step {step}; lower the learning rate or check the format"));
        }
        let scale = if norm > optim::CLIP_NORM { (optim::CLIP_NORM / (norm + 1e-6)) as f32 } else { 1.0 };
        let lr = optim::lr_at(step, self.opts.total_steps, self.cfg.lr);
        self.model.prof.add("weight backward + grad norm", t0);
        let t0 = Instant::now();
        self.adam.update(&mut self.params, &self.grads, &self.segments, lr, step + 1, scale);
        self.model.prof.add("adamw", t0);
        self.step += 1;
        Ok(StepStats { loss: loss as f32, grad_norm: norm as f32, lr })
    }

    /// Mean cross-entropy (nats per token) of `tokens` (any number of rows of
    /// `ctx+1` bytes), forward only, with the weights compressed as in
    /// training (and the activation compressor applied).
    pub fn eval_loss(&mut self, tokens: &[u8]) -> Result<f32, String> {
        check_tokens(&self.cfg, tokens, "evaluation")?;
        let row = self.cfg.ctx + 1;
        let step_seed = self.step | SEED_EVAL;
        self.compress_weights(step_seed)?;
        let act_seed = model::derive_seed(self.opts.seed, step_seed, u64::MAX, SEED_ACT);
        let hook = self.opts.act.as_deref().map(|comp| ActHook { comp, seed: act_seed });
        let eff: &[f32] = if self.opts.weight.is_some() { &self.eff } else { &self.params };
        let mut total = 0.0f64;
        let mut n = 0usize;
        for chunk in tokens.chunks(self.cfg.micro_batch() * row) {
            let rows = chunk.len() / row * self.cfg.ctx;
            total += self.model.forward(eff, chunk, hook.as_ref())? * rows as f64;
            n += rows;
        }
        let loss = total / n as f64;
        if !loss.is_finite() {
            return Err(format!(
                "evaluation loss became NaN after step {}; lower the learning rate or check the format",
                self.step
            ));
        }
        Ok(loss as f32)
    }
}
