//! The model: a decoder-only, byte-level (vocabulary 256) Llama-style
//! transformer with a hand-written backward pass.
//!
//! Token embedding, `n_layer` blocks of
//! `[RMSNorm -> causal multi-head attention with RoPE (base 10000) -> residual;
//! RMSNorm -> SwiGLU MLP (w1, w3 gate/up, w2 down) -> residual]`, final RMSNorm,
//! untied output head. Linear layers have no bias.
//!
//! All parameters live in one flat vector laid out by [`ParamLayout`]; `wq`,
//! `wk`, `wv` are adjacent (so they form one `3d x d` matrix for a single
//! product) and so are `w1`, `w3` (one `2h x d` matrix).

use std::time::Instant;

use ndarray::{ArrayView2, ArrayViewD, ArrayViewMutD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::compress::Compressor;
use crate::kernels::{self, AttnShape, Float};

/// Vocabulary size (bytes).
pub const VOCAB: usize = 256;
/// RMSNorm epsilon.
pub const NORM_EPS: f64 = 1e-5;
/// RoPE base.
pub const ROPE_BASE: f64 = 10000.0;

/// Size and training hyper-parameters of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Preset name (informational).
    #[serde(default)]
    pub name: String,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads (`d_model / n_head` must be even: RoPE rotates pairs).
    pub n_head: usize,
    /// Residual width.
    pub d_model: usize,
    /// SwiGLU hidden width.
    pub d_hidden: usize,
    /// Context length (tokens per training sequence).
    pub ctx: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Micro-batches per optimizer step (gradient accumulation): a step runs its `batch`
    /// sequences `batch / accum` at a time and averages their gradients, so the activation
    /// memory is that of `batch / accum` sequences. 1 (the default, left out of records and job
    /// hashes) is one pass over the whole batch.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub accum: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// The named presets: `(name, n_layer, n_head, d_model, d_hidden, lr)`; all
/// use context 128 and batch 16. `bench-tiny` is the speed reference; the
/// `lm-*` ladder spans about 10K to 3M non-embedding parameters (the name
/// gives the rounded count; smaller models take larger learning rates).
pub const PRESETS: &[(&str, usize, usize, usize, usize, f32)] = &[
    ("bench-tiny", 4, 4, 128, 384, 2e-3),
    ("lm-10k", 2, 2, 24, 36, 3.6e-3),
    ("lm-20k", 2, 2, 32, 56, 3.3e-3),
    ("lm-50k", 2, 3, 48, 128, 3e-3),
    ("lm-100k", 2, 4, 64, 176, 2.7e-3),
    ("lm-200k", 4, 4, 64, 176, 2.4e-3),
    ("lm-500k", 4, 3, 96, 288, 2e-3),
    ("lm-1m", 4, 4, 144, 384, 1.6e-3),
    ("lm-2m", 6, 5, 160, 432, 1.3e-3),
    ("lm-3m", 7, 6, 192, 512, 1e-3),
];

/// One GPU preset: `(name, n_layer, n_head, d_model, d_hidden, ctx, batch, lr)`.
pub type GpuPreset = (&'static str, usize, usize, usize, usize, usize, usize, f32);

/// GPU-sized presets: `(name, n_layer, n_head, d_model, d_hidden, ctx, batch, lr)`, about 10M
/// to 300M non-embedding parameters (the name gives the rounded count) at contexts 512-1024,
/// head dimension 64, batches of 32K-128K tokens (`--accum` splits them into micro-batches
/// that fit a device). Made for the CUDA backend; the CPU trainer runs them too, slowly.
pub const GPU_PRESETS: &[GpuPreset] = &[
    ("gpu-10m", 6, 6, 384, 1024, 512, 64, 6e-4),
    ("gpu-30m", 9, 8, 512, 1536, 1024, 32, 6e-4),
    ("gpu-100m", 13, 12, 768, 2304, 1024, 64, 4e-4),
    ("gpu-300m", 22, 16, 1024, 3072, 1024, 128, 3e-4),
];

/// Every preset name, CPU ladder first.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.0).chain(GPU_PRESETS.iter().map(|p| p.0)).collect()
}

/// Looks up a named preset (see [`PRESETS`] and [`GPU_PRESETS`]).
pub fn preset(name: &str) -> Result<ModelConfig, String> {
    let cfg = |name: &str, n_layer, n_head, d_model, d_hidden, ctx, batch, lr| ModelConfig {
        name: name.to_string(),
        n_layer,
        n_head,
        d_model,
        d_hidden,
        ctx,
        batch,
        lr,
        accum: 1,
    };
    if let Some(p) = PRESETS.iter().find(|p| p.0 == name) {
        return Ok(cfg(p.0, p.1, p.2, p.3, p.4, 128, 16, p.5));
    }
    if let Some(p) = GPU_PRESETS.iter().find(|p| p.0 == name) {
        return Ok(cfg(p.0, p.1, p.2, p.3, p.4, p.5, p.6, p.7));
    }
    Err(format!("unknown model preset '{name}'; choose one of {}", preset_names().join(", ")))
}

impl ModelConfig {
    /// Checks that the sizes are usable.
    pub fn validate(&self) -> Result<(), String> {
        let n = &self.name;
        if self.n_layer == 0 || self.n_head == 0 || self.d_model == 0 || self.d_hidden == 0 {
            return Err(format!("model config '{n}': n_layer, n_head, d_model and d_hidden must be positive"));
        }
        if self.ctx == 0 || self.batch == 0 {
            return Err(format!("model config '{n}': ctx and batch must be positive"));
        }
        if self.accum == 0 || !self.batch.is_multiple_of(self.accum) {
            return Err(format!(
                "model config '{n}': accum {} must be a divisor of batch {} (micro-batches of equal size)",
                self.accum, self.batch
            ));
        }
        if !self.d_model.is_multiple_of(self.n_head) {
            return Err(format!(
                "model config '{n}': d_model {} is not a multiple of n_head {}",
                self.d_model, self.n_head
            ));
        }
        let hd = self.d_model / self.n_head;
        if !hd.is_multiple_of(2) || hd > 256 {
            return Err(format!("model config '{n}': head dimension {hd} must be even and at most 256"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("model config '{n}': lr {} must be a positive number", self.lr));
        }
        Ok(())
    }

    /// Sequences per forward/backward pass: `batch / accum`.
    pub fn micro_batch(&self) -> usize {
        self.batch / self.accum.max(1)
    }

    /// Head dimension.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head
    }

    /// Parameters except the token embedding and the output head
    /// (attention, MLP and norm weights), as in scaling-law papers.
    pub fn non_embedding_params(&self) -> usize {
        let (d, h) = (self.d_model, self.d_hidden);
        self.n_layer * (4 * d * d + 3 * d * h + 2 * d) + d
    }

    /// All parameters.
    pub fn total_params(&self) -> usize {
        self.non_embedding_params() + 2 * VOCAB * self.d_model
    }
}

/// What a parameter tensor is, for weight decay and compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Token embedding (`256 x d`).
    Embedding,
    /// RMSNorm gain (`d`).
    Norm,
    /// A linear layer inside a block (`out x in`): compressed in QAT.
    Linear,
    /// Output head (`256 x d`).
    Head,
}

/// One tensor in the flat parameter vector.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// Name, e.g. `blocks.0.wq`.
    pub name: String,
    /// Shape (`[out, in]` for matrices).
    pub shape: Vec<usize>,
    /// Offset in the flat vector.
    pub offset: usize,
    /// Kind.
    pub kind: ParamKind,
}

impl ParamInfo {
    /// Element count.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Index range in the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
    /// This tensor inside a flat buffer of the layout (parameters, gradients, Adam moments),
    /// as an array view with its shape. Panics if `buf` is shorter than the layout.
    pub fn view<'a, T>(&self, buf: &'a [T]) -> ArrayViewD<'a, T> {
        ArrayViewD::from_shape(IxDyn(&self.shape), &buf[self.range()]).expect("a tensor's range holds its shape")
    }
    /// [`view`](Self::view), mutable.
    pub fn view_mut<'a, T>(&self, buf: &'a mut [T]) -> ArrayViewMutD<'a, T> {
        ArrayViewMutD::from_shape(IxDyn(&self.shape), &mut buf[self.range()]).expect("a tensor's range holds its shape")
    }
    /// A matrix (`out x in`) inside a flat buffer, as a 2-D view; `None` for a 1-D tensor.
    pub fn matrix<'a, T>(&self, buf: &'a [T]) -> Option<ArrayView2<'a, T>> {
        self.view(buf).into_dimensionality().ok()
    }
}

/// Offsets of one block's tensors.
#[derive(Clone, Copy, Debug)]
pub struct BlockOffsets {
    /// Attention RMSNorm gain.
    pub attn_norm: usize,
    /// `wq` (then `wk`, `wv` contiguous).
    pub wqkv: usize,
    /// `wo`.
    pub wo: usize,
    /// MLP RMSNorm gain.
    pub mlp_norm: usize,
    /// `w1` (then `w3` contiguous).
    pub w13: usize,
    /// `w2`.
    pub w2: usize,
}

/// The flat parameter layout.
#[derive(Clone, Debug)]
pub struct ParamLayout {
    /// Every tensor in order.
    pub tensors: Vec<ParamInfo>,
    /// Per-block offsets.
    pub blocks: Vec<BlockOffsets>,
    /// Embedding offset.
    pub emb: usize,
    /// Final norm offset.
    pub final_norm: usize,
    /// Head offset.
    pub head: usize,
    /// Total element count.
    pub total: usize,
}

impl ParamLayout {
    /// Builds the layout for a config.
    pub fn new(cfg: &ModelConfig) -> ParamLayout {
        let (d, h) = (cfg.d_model, cfg.d_hidden);
        let mut tensors = Vec::new();
        let mut off = 0;
        let mut push = |name: String, shape: Vec<usize>, kind: ParamKind| {
            let o = off;
            off += shape.iter().product::<usize>();
            tensors.push(ParamInfo { name, shape, offset: o, kind });
            o
        };
        let emb = push("tok_emb".into(), vec![VOCAB, d], ParamKind::Embedding);
        let mut blocks = Vec::new();
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("blocks.{l}.{s}");
            let attn_norm = push(p("attn_norm"), vec![d], ParamKind::Norm);
            let wqkv = push(p("wq"), vec![d, d], ParamKind::Linear);
            push(p("wk"), vec![d, d], ParamKind::Linear);
            push(p("wv"), vec![d, d], ParamKind::Linear);
            let wo = push(p("wo"), vec![d, d], ParamKind::Linear);
            let mlp_norm = push(p("mlp_norm"), vec![d], ParamKind::Norm);
            let w13 = push(p("w1"), vec![h, d], ParamKind::Linear);
            push(p("w3"), vec![h, d], ParamKind::Linear);
            let w2 = push(p("w2"), vec![d, h], ParamKind::Linear);
            blocks.push(BlockOffsets { attn_norm, wqkv, wo, mlp_norm, w13, w2 });
        }
        let final_norm = push("final_norm".into(), vec![d], ParamKind::Norm);
        let head = push("head".into(), vec![VOCAB, d], ParamKind::Head);
        ParamLayout { tensors, blocks, emb, final_norm, head, total: off }
    }

    /// Initial parameters: matrices ~ N(0, 0.02), output projections (`wo`,
    /// `w2`) scaled by `1/sqrt(2 n_layer)` (GPT-2), norm gains 1.
    pub fn init<T: Float>(&self, cfg: &ModelConfig, seed: u64) -> Vec<T> {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut p = vec![T::ZERO; self.total];
        let out_scale = 1.0 / (2.0 * cfg.n_layer as f64).sqrt();
        for t in &self.tensors {
            let std = match t.kind {
                ParamKind::Norm => {
                    p[t.range()].fill(T::ONE);
                    continue;
                }
                ParamKind::Linear if t.name.ends_with(".wo") || t.name.ends_with(".w2") => 0.02 * out_scale,
                _ => 0.02,
            };
            let normal = Normal::new(0.0, std).expect("valid std");
            for x in &mut p[t.range()] {
                *x = T::from_f64(normal.sample(&mut rng));
            }
        }
        p
    }
}

/// 64-bit mixer (splitmix64 finalizer) used to derive seeds.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Seed for one compressor call: mixes (run seed, step, layer, tensor).
pub fn derive_seed(run_seed: u64, step: u64, layer: u64, which: u64) -> u64 {
    mix64(mix64(mix64(mix64(run_seed) ^ step) ^ layer) ^ which)
}

/// Activation compression hook for a forward pass.
pub struct ActHook<'a> {
    /// The compressor.
    pub comp: &'a dyn Compressor,
    /// Base seed for this pass (already mixed with the step); per-call seeds
    /// add the layer and the input index.
    pub seed: u64,
}

/// Which linear-layer input an activation compressor is applied to. The
/// q/k/v products share one input and so do w1/w3: each shared input is
/// compressed once.
const ACT_INPUTS: [&str; 4] = ["wq/wk/wv", "wo", "w1/w3", "w2"];

/// Accumulated wall time per phase (enabled with [`Model::set_profiling`]).
#[derive(Default, Debug, Clone)]
pub struct Prof {
    enabled: bool,
    /// `(phase, seconds)` in first-seen order.
    pub phases: Vec<(&'static str, f64)>,
}

impl Prof {
    /// Adds the time since `t0` to `name` (no-op when disabled).
    #[inline]
    pub fn add(&mut self, name: &'static str, t0: std::time::Instant) {
        if !self.enabled {
            return;
        }
        let dt = t0.elapsed().as_secs_f64();
        match self.phases.iter_mut().find(|p| p.0 == name) {
            Some(p) => p.1 += dt,
            None => self.phases.push((name, dt)),
        }
    }
}

/// Saved activations of one block.
struct BlockActs<T> {
    x_in: Vec<T>,
    rstd1: Vec<T>,
    n1: Vec<T>,
    /// Rotated q, k and v, head-major (see `kernels::rope_heads`).
    hm: Vec<T>,
    /// Softmax (max, 1/sum) per query row.
    stats: Vec<T>,
    att: Vec<T>,
    h: Vec<T>,
    rstd2: Vec<T>,
    n2: Vec<T>,
    ab: Vec<T>,
    u: Vec<T>,
    /// With an activation compressor: the straight-through masks it wrote
    /// and the inputs it was given, one per compressed input (see `ACT_INPUTS`).
    masks: Vec<Vec<T>>,
    act_in: Vec<Vec<T>>,
}

/// The model's compute state: RoPE tables and every activation/gradient
/// buffer, allocated once for `batch / accum` sequences (one micro-batch).
pub struct Model<T: Float> {
    cfg: ModelConfig,
    layout: ParamLayout,
    cos: Vec<T>,
    sin: Vec<T>,
    blocks: Vec<BlockActs<T>>,
    xf: Vec<T>,
    rstdf: Vec<T>,
    nf: Vec<T>,
    logits: Vec<T>,
    losses: Vec<T>,
    // Backward scratch.
    dres: Vec<T>,
    dn: Vec<T>,
    qkv: Vec<T>,
    dqkv: Vec<T>,
    dhm: Vec<T>,
    datt: Vec<T>,
    dab: Vec<T>,
    du: Vec<T>,
    partial: Vec<T>,
    inputs: Vec<u8>,
    targets: Vec<u8>,
    n_seq: usize,
    has_masks: bool,
    /// Whether the last forward pass compressed activations (its masks apply).
    last_masked: bool,
    /// Phase timings.
    pub prof: Prof,
}

impl<T: Float> Model<T> {
    /// Allocates all buffers for `cfg` (validated first).
    pub fn new(cfg: &ModelConfig) -> Result<Model<T>, String> {
        cfg.validate()?;
        let mb = cfg.micro_batch();
        let (d, h, rows) = (cfg.d_model, cfg.d_hidden, mb * cfg.ctx);
        let z = |n: usize| vec![T::ZERO; n];
        let blocks = (0..cfg.n_layer)
            .map(|_| BlockActs {
                x_in: z(rows * d),
                rstd1: z(rows),
                n1: z(rows * d),
                hm: z(rows * 3 * d),
                stats: z(mb * cfg.n_head * cfg.ctx * 2),
                att: z(rows * d),
                h: z(rows * d),
                rstd2: z(rows),
                n2: z(rows * d),
                ab: z(rows * 2 * h),
                u: z(rows * h),
                masks: Vec::new(),
                act_in: Vec::new(),
            })
            .collect();
        let (cos, sin) = kernels::rope_table(cfg.ctx, cfg.head_dim(), ROPE_BASE);
        Ok(Model {
            cfg: cfg.clone(),
            layout: ParamLayout::new(cfg),
            cos,
            sin,
            blocks,
            xf: z(rows * d),
            rstdf: z(rows),
            nf: z(rows * d),
            logits: z(rows * VOCAB),
            losses: z(rows),
            dres: z(rows * d),
            dn: z(rows * d),
            qkv: z(rows * 3 * d),
            dqkv: z(rows * 3 * d),
            dhm: z(rows * 3 * d),
            datt: z(rows * d),
            dab: z(rows * 2 * h),
            du: z(rows * h),
            partial: z(rows.div_ceil(kernels::ROW_CHUNK) * d),
            inputs: Vec::with_capacity(rows),
            targets: Vec::with_capacity(rows),
            n_seq: 0,
            has_masks: false,
            last_masked: false,
            prof: Prof::default(),
        })
    }

    /// The config.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Turns per-phase timing on or off (and clears it).
    pub fn set_profiling(&mut self, on: bool) {
        self.prof = Prof { enabled: on, phases: Vec::new() };
    }

    /// The parameter layout.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// Per-token cross-entropy of the last forward pass (`n_seq * ctx` values, row order);
    /// [`forward`](Self::forward) returns their mean.
    pub fn token_losses(&self) -> &[T] {
        &self.losses[..self.n_seq * self.cfg.ctx]
    }

    /// Logits of the last forward pass (`rows x 256`, rows = n_seq * ctx).
    pub fn logits(&self) -> &[T] {
        &self.logits[..self.n_seq * self.cfg.ctx * VOCAB]
    }

    /// Forward pass over `tokens` (`n_seq x (ctx+1)` bytes, `1 <= n_seq <=
    /// batch / accum`): inputs are the first `ctx` bytes of each row, targets the last
    /// `ctx`. Returns the mean cross-entropy (nats per token). `params` is the
    /// flat vector of effective (possibly compressed) parameters.
    pub fn forward(&mut self, params: &[T], tokens: &[u8], act: Option<&ActHook>) -> Result<f64, String> {
        let cfg = &self.cfg;
        let (ctx, d, h) = (cfg.ctx, cfg.d_model, cfg.d_hidden);
        if params.len() != self.layout.total {
            return Err(format!("parameter vector has {} values, the model needs {}", params.len(), self.layout.total));
        }
        let row_len = ctx + 1;
        if tokens.is_empty() || !tokens.len().is_multiple_of(row_len) || tokens.len() / row_len > cfg.micro_batch() {
            return Err(format!(
                "token buffer of {} bytes is not 1..={} rows of ctx+1 = {} bytes",
                tokens.len(),
                cfg.micro_batch(),
                row_len
            ));
        }
        let n_seq = tokens.len() / row_len;
        self.n_seq = n_seq;
        let rows = n_seq * ctx;
        self.inputs.clear();
        self.targets.clear();
        for r in tokens.chunks(row_len) {
            self.inputs.extend_from_slice(&r[..ctx]);
            self.targets.extend_from_slice(&r[1..]);
        }
        if act.is_some() && !self.has_masks {
            let widths = [d, d, d, h];
            for b in &mut self.blocks {
                b.masks = widths.iter().map(|&w| vec![T::ZERO; cfg.micro_batch() * ctx * w]).collect();
                b.act_in = b.masks.clone();
            }
            self.has_masks = true;
        }
        self.last_masked = act.is_some();
        let shape = AttnShape { n_seq, ctx, n_head: cfg.n_head, hd: cfg.head_dim() };
        let lay = &self.layout;
        // Residual stream: x_in of block l+1 is h + mlp of block l; final goes to xf.
        let t0 = Instant::now();
        kernels::embedding_fwd(&self.inputs, &params[lay.emb..lay.emb + VOCAB * d], &mut self.blocks[0].x_in, d);
        self.prof.add("fwd embedding", t0);
        let n_layer = cfg.n_layer;
        for l in 0..n_layer {
            let off = lay.blocks[l];
            let (cur, rest) = self.blocks.split_at_mut(l + 1);
            let b = &mut cur[l];
            let x_next: &mut [T] = if l + 1 < n_layer { &mut rest[0].x_in } else { &mut self.xf };
            // Attention.
            let g1 = &params[off.attn_norm..off.attn_norm + d];
            let t0 = Instant::now();
            compressed_input(act, l, 0, rows, d, &mut b.masks, &mut b.act_in, &mut b.n1, |y| {
                kernels::rmsnorm_fwd(&b.x_in[..rows * d], g1, y, &mut b.rstd1[..rows], d, NORM_EPS)
            })?;
            self.prof.add("fwd rmsnorm", t0);
            let wqkv = &params[off.wqkv..off.wqkv + 3 * d * d];
            let t0 = Instant::now();
            kernels::linear_fwd(&b.n1[..rows * d], wqkv, &mut self.qkv[..rows * 3 * d], rows, d, 3 * d);
            self.prof.add("fwd matmul", t0);
            let t0 = Instant::now();
            kernels::rope_heads(&mut self.qkv, &mut b.hm, shape, &self.cos, &self.sin, false);
            self.prof.add("fwd rope", t0);
            let (hm, stats) = (&b.hm, &mut b.stats);
            let t0 = Instant::now();
            compressed_input(act, l, 1, rows, d, &mut b.masks, &mut b.act_in, &mut b.att, |y| {
                kernels::attention_fwd(hm, y, stats, shape)
            })?;
            self.prof.add("fwd attention", t0);
            let wo = &params[off.wo..off.wo + d * d];
            let t0 = Instant::now();
            kernels::linear_fwd(&b.att[..rows * d], wo, &mut b.h[..rows * d], rows, d, d);
            self.prof.add("fwd matmul", t0);
            let t0 = Instant::now();
            kernels::add_assign(&mut b.h[..rows * d], &b.x_in[..rows * d]);
            self.prof.add("fwd residual", t0);
            // MLP.
            let g2 = &params[off.mlp_norm..off.mlp_norm + d];
            let t0 = Instant::now();
            compressed_input(act, l, 2, rows, d, &mut b.masks, &mut b.act_in, &mut b.n2, |y| {
                kernels::rmsnorm_fwd(&b.h[..rows * d], g2, y, &mut b.rstd2[..rows], d, NORM_EPS)
            })?;
            self.prof.add("fwd rmsnorm", t0);
            let w13 = &params[off.w13..off.w13 + 2 * h * d];
            let t0 = Instant::now();
            kernels::linear_fwd(&b.n2[..rows * d], w13, &mut b.ab[..rows * 2 * h], rows, d, 2 * h);
            self.prof.add("fwd matmul", t0);
            let ab = &b.ab;
            let t0 = Instant::now();
            compressed_input(act, l, 3, rows, h, &mut b.masks, &mut b.act_in, &mut b.u, |y| {
                kernels::swiglu_fwd(ab, y, h)
            })?;
            self.prof.add("fwd swiglu", t0);
            let w2 = &params[off.w2..off.w2 + d * h];
            let t0 = Instant::now();
            kernels::linear_fwd(&b.u[..rows * h], w2, &mut x_next[..rows * d], rows, h, d);
            self.prof.add("fwd matmul", t0);
            let t0 = Instant::now();
            kernels::add_assign(&mut x_next[..rows * d], &b.h[..rows * d]);
            self.prof.add("fwd residual", t0);
        }
        let gf = &params[lay.final_norm..lay.final_norm + d];
        let t0 = Instant::now();
        kernels::rmsnorm_fwd(&self.xf[..rows * d], gf, &mut self.nf[..rows * d], &mut self.rstdf[..rows], d, NORM_EPS);
        self.prof.add("fwd rmsnorm", t0);
        let head = &params[lay.head..lay.head + VOCAB * d];
        let t0 = Instant::now();
        kernels::linear_fwd(&self.nf[..rows * d], head, &mut self.logits[..rows * VOCAB], rows, d, VOCAB);
        self.prof.add("fwd matmul", t0);
        let t0 = Instant::now();
        kernels::cross_entropy_fwd(&self.logits[..rows * VOCAB], &self.targets, &mut self.losses[..rows], VOCAB);
        self.prof.add("fwd cross-entropy", t0);
        let sum: f64 = self.losses[..rows].iter().map(|x| x.to_f64()).sum();
        Ok(sum / rows as f64)
    }

    /// Backward pass of the last [`forward`](Self::forward): writes the
    /// gradient of the mean loss w.r.t. every parameter into `grads`
    /// (overwritten). `params` must be the vector the forward pass used. With
    /// an activation compressor the straight-through masks it wrote are
    /// applied element-wise (the default [`Compressor::backward`]); use
    /// [`backward_with`](Self::backward_with) to run the compressor's own.
    pub fn backward(&mut self, params: &[T], grads: &mut [T]) {
        self.backward_with(params, grads, None).expect("element-wise masks cannot fail");
    }

    /// [`backward`](Self::backward), with the activation hook the forward
    /// pass used: the gradient of each compressed linear-layer input goes
    /// through the compressor's [`backward`](Compressor::backward) (same
    /// input, mask and seed as in the forward pass). With `act = None` after
    /// a forward pass that compressed activations, the saved masks are
    /// applied element-wise. Fails only when the compressor's backward does.
    pub fn backward_with(&mut self, params: &[T], grads: &mut [T], act: Option<&ActHook>) -> Result<(), String> {
        let cfg = &self.cfg;
        let (ctx, d, h, hd) = (cfg.ctx, cfg.d_model, cfg.d_hidden, cfg.head_dim());
        let rows = self.n_seq * ctx;
        let lay = &self.layout;
        let shape = AttnShape { n_seq: self.n_seq, ctx, n_head: cfg.n_head, hd };
        let masked = self.last_masked;
        // Head and final norm.
        let logits = &mut self.logits[..rows * VOCAB];
        let t0 = Instant::now();
        kernels::cross_entropy_bwd(logits, &self.targets, VOCAB, T::from_f64(1.0 / rows as f64));
        self.prof.add("bwd cross-entropy", t0);
        let head = &params[lay.head..lay.head + VOCAB * d];
        let t0 = Instant::now();
        kernels::linear_bwd_w(
            logits,
            &self.nf[..rows * d],
            &mut grads[lay.head..lay.head + VOCAB * d],
            rows,
            d,
            VOCAB,
            false,
        );
        self.prof.add("bwd matmul", t0);
        let t0 = Instant::now();
        kernels::linear_bwd_x(logits, head, &mut self.dn[..rows * d], rows, d, VOCAB, false);
        self.prof.add("bwd matmul", t0);
        let dres = &mut self.dres[..rows * d];
        dres.fill(T::ZERO);
        let gf = &params[lay.final_norm..lay.final_norm + d];
        let t0 = Instant::now();
        kernels::rmsnorm_bwd(
            &self.xf[..rows * d],
            gf,
            &self.rstdf[..rows],
            &self.dn[..rows * d],
            dres,
            &mut grads[lay.final_norm..lay.final_norm + d],
            &mut self.partial,
            d,
        );
        self.prof.add("bwd rmsnorm", t0);
        for l in (0..cfg.n_layer).rev() {
            let off = lay.blocks[l];
            let b = &self.blocks[l];
            // MLP: x_next = h + u W2^T.
            let du = &mut self.du[..rows * h];
            let t0 = Instant::now();
            kernels::linear_bwd_w(dres, &b.u[..rows * h], &mut grads[off.w2..off.w2 + d * h], rows, h, d, false);
            self.prof.add("bwd matmul", t0);
            let t0 = Instant::now();
            kernels::linear_bwd_x(dres, &params[off.w2..off.w2 + d * h], du, rows, h, d, false);
            self.prof.add("bwd matmul", t0);
            let t0 = Instant::now();
            if masked {
                act_backward(act, b, l, 3, rows, h, du)?;
            }
            self.prof.add("bwd act mask", t0);
            let dab = &mut self.dab[..rows * 2 * h];
            let t0 = Instant::now();
            kernels::swiglu_bwd(&b.ab[..rows * 2 * h], du, dab, h);
            self.prof.add("bwd swiglu", t0);
            let dn = &mut self.dn[..rows * d];
            let w13 = off.w13..off.w13 + 2 * h * d;
            let t0 = Instant::now();
            kernels::linear_bwd_w(dab, &b.n2[..rows * d], &mut grads[w13.clone()], rows, d, 2 * h, false);
            self.prof.add("bwd matmul", t0);
            let t0 = Instant::now();
            kernels::linear_bwd_x(dab, &params[w13], dn, rows, d, 2 * h, false);
            self.prof.add("bwd matmul", t0);
            let t0 = Instant::now();
            if masked {
                act_backward(act, b, l, 2, rows, d, dn)?;
            }
            self.prof.add("bwd act mask", t0);
            let g2 = off.mlp_norm..off.mlp_norm + d;
            let (pg, gg) = (&params[g2.clone()], &mut grads[g2]);
            let t0 = Instant::now();
            kernels::rmsnorm_bwd(&b.h[..rows * d], pg, &b.rstd2[..rows], dn, dres, gg, &mut self.partial, d);
            self.prof.add("bwd rmsnorm", t0);
            // Attention: h = x_in + att Wo^T.
            let datt = &mut self.datt[..rows * d];
            let t0 = Instant::now();
            kernels::linear_bwd_w(dres, &b.att[..rows * d], &mut grads[off.wo..off.wo + d * d], rows, d, d, false);
            self.prof.add("bwd matmul", t0);
            let t0 = Instant::now();
            kernels::linear_bwd_x(dres, &params[off.wo..off.wo + d * d], datt, rows, d, d, false);
            self.prof.add("bwd matmul", t0);
            let t0 = Instant::now();
            if masked {
                act_backward(act, b, l, 1, rows, d, datt)?;
            }
            self.prof.add("bwd act mask", t0);
            let dqkv = &mut self.dqkv[..rows * 3 * d];
            let t0 = Instant::now();
            kernels::attention_bwd(&b.hm, &b.stats, datt, &mut self.dhm, shape);
            self.prof.add("bwd attention", t0);
            let t0 = Instant::now();
            kernels::rope_heads(dqkv, &mut self.dhm, shape, &self.cos, &self.sin, true);
            self.prof.add("bwd rope", t0);
            let wqkv = off.wqkv..off.wqkv + 3 * d * d;
            let t0 = Instant::now();
            kernels::linear_bwd_w(dqkv, &b.n1[..rows * d], &mut grads[wqkv.clone()], rows, d, 3 * d, false);
            self.prof.add("bwd matmul", t0);
            let t0 = Instant::now();
            kernels::linear_bwd_x(dqkv, &params[wqkv], dn, rows, d, 3 * d, false);
            self.prof.add("bwd matmul", t0);
            let t0 = Instant::now();
            if masked {
                act_backward(act, b, l, 0, rows, d, dn)?;
            }
            self.prof.add("bwd act mask", t0);
            let g1 = off.attn_norm..off.attn_norm + d;
            let (pg, gg) = (&params[g1.clone()], &mut grads[g1]);
            let t0 = Instant::now();
            kernels::rmsnorm_bwd(&b.x_in[..rows * d], pg, &b.rstd1[..rows], dn, dres, gg, &mut self.partial, d);
            self.prof.add("bwd rmsnorm", t0);
        }
        let demb = &mut grads[lay.emb..lay.emb + VOCAB * d];
        demb.fill(T::ZERO);
        let t0 = Instant::now();
        kernels::embedding_bwd(&self.inputs, dres, demb, d);
        self.prof.add("bwd embedding", t0);
        Ok(())
    }
}

/// The straight-through backward of compressed input `which` of block
/// `layer`: with the hook, the compressor's own backward on the saved input
/// and mask with the forward pass's seed; without, the saved mask
/// element-wise.
fn act_backward<T: Float>(
    act: Option<&ActHook>,
    b: &BlockActs<T>,
    layer: usize,
    which: usize,
    rows: usize,
    cols: usize,
    grad: &mut [T],
) -> Result<(), String> {
    let n = rows * cols;
    let mask = &b.masks[which][..n];
    match act {
        None => {
            kernels::mul_mask(grad, mask);
            Ok(())
        }
        Some(hook) => {
            let seed = act_seed(hook, layer, which);
            T::compress_backward(hook.comp, &b.act_in[which][..n], mask, grad, rows, cols, seed).map_err(|e| {
                format!(
                    "activation format failed in the backward of layer blocks.{layer}.{} ({rows}x{cols}): {e}",
                    ACT_INPUTS[which]
                )
            })
        }
    }
}

/// Seed of the activation compressor on input `which` of block `layer`.
fn act_seed(hook: &ActHook, layer: usize, which: usize) -> u64 {
    derive_seed(hook.seed, 0, layer as u64, 100 + which as u64)
}

/// Computes a linear layer's input with `f` (writing `rows x cols` values),
/// then, with an activation hook, compresses it (input and mask saved for
/// backward).
#[allow(clippy::too_many_arguments)]
fn compressed_input<T: Float>(
    act: Option<&ActHook>,
    layer: usize,
    which: usize,
    rows: usize,
    cols: usize,
    masks: &mut [Vec<T>],
    inputs: &mut [Vec<T>],
    dst: &mut [T],
    f: impl FnOnce(&mut [T]),
) -> Result<(), String> {
    let n = rows * cols;
    match act {
        None => {
            f(&mut dst[..n]);
            Ok(())
        }
        Some(hook) => {
            let input = &mut inputs[which][..n];
            f(input);
            let seed = act_seed(hook, layer, which);
            T::compress(hook.comp, input, &mut dst[..n], &mut masks[which][..n], rows, cols, seed).map_err(|e| {
                format!(
                    "activation format failed on the input of layer blocks.{layer}.{} ({rows}x{cols}): {e}",
                    ACT_INPUTS[which]
                )
            })
        }
    }
}
