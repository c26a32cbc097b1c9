//! One model on the device: buffers, the forward and backward pass (the GPU twin of
//! `trainer::model::Model`), the gradient norm and AdamW.

use abi_stable::std_types::{RResult, RSlice, RSliceMut, RString};
use cudarc::driver::sys::CUdeviceptr;
use trainer::accel_abi::{FfiSession, buf};
use trainer::backend::MatmulPrecision;
use trainer::model::{ModelConfig, NORM_EPS, ParamKind, ParamLayout, ROPE_BASE, VOCAB};

use crate::formats::device::PlanBuf;
use crate::formats::{Plan, native_supported, plan};
use crate::gpu::{DG_CHUNK, DevBuf, Gpu, MAX_HEAD_DIM, NORM_CHUNK};
use crate::guarded;

/// The weight format on the device: one kernel plan per block linear weight matrix (offset,
/// plan, scratch) and the masks of the last compression.
struct NativeWeights {
    /// `KIND (native kernels)`.
    name: String,
    tensors: Vec<(usize, Plan, Vec<PlanBuf>)>,
    mask: DevBuf<f32>,
}

impl NativeWeights {
    /// The plans of format `kind` with parameter table `params` (TOML) for every block linear
    /// weight of `layout`, or `None` when the native kernels do not cover the format (the
    /// trainer then compresses on the host).
    fn new(gpu: &Gpu, layout: &ParamLayout, kind: &str, params: &str) -> Result<Option<NativeWeights>, String> {
        let Ok(table) = params.parse::<sdk::params::Table>() else { return Ok(None) };
        let Ok(native) = native_supported(kind, &table) else { return Ok(None) };
        let mut tensors = Vec::new();
        for t in layout.tensors.iter().filter(|t| t.kind == ParamKind::Linear) {
            let p = plan(&native, t.shape[0], t.shape[1]);
            let scratch = p.bufs[3..].iter().map(|&b| PlanBuf::alloc(gpu, b)).collect::<Result<Vec<_>, _>>()?;
            tensors.push((t.offset, p, scratch));
        }
        Ok(Some(NativeWeights {
            name: format!("{kind} (native kernels)"),
            tensors,
            mask: gpu.alloc::<f32>(layout.total)?,
        }))
    }
}

/// The rows of `inputs` grouped by token, in row order (`order`), token `v`'s rows at
/// `start[v]..start[v + 1]`: what the embedding backward needs to add them in the CPU's order.
pub fn group_rows(inputs: &[u8]) -> (Vec<i32>, Vec<i32>) {
    let mut start = vec![0i32; VOCAB + 1];
    for &t in inputs {
        start[t as usize + 1] += 1;
    }
    for v in 0..VOCAB {
        start[v + 1] += start[v];
    }
    let mut fill = start.clone();
    let mut order = vec![0i32; inputs.len()];
    for (r, &t) in inputs.iter().enumerate() {
        order[fill[t as usize] as usize] = r as i32;
        fill[t as usize] += 1;
    }
    (order, start)
}

/// Saved activations of one block (as `BlockActs` in trainer/src/model.rs).
struct Block {
    x_in: DevBuf<f32>,
    rstd1: DevBuf<f32>,
    n1: DevBuf<f32>,
    hm: DevBuf<f32>,
    lse: DevBuf<f32>,
    att: DevBuf<f32>,
    h: DevBuf<f32>,
    rstd2: DevBuf<f32>,
    n2: DevBuf<f32>,
    ab: DevBuf<f32>,
    u: DevBuf<f32>,
}

/// A model's buffers on the device.
pub struct Session {
    gpu: Gpu,
    cfg: ModelConfig,
    layout: ParamLayout,
    params: DevBuf<f32>,
    eff: DevBuf<f32>,
    grads: DevBuf<f32>,
    m: DevBuf<f32>,
    v: DevBuf<f32>,
    cos: DevBuf<f32>,
    sin: DevBuf<f32>,
    blocks: Vec<Block>,
    xf: DevBuf<f32>,
    rstdf: DevBuf<f32>,
    nf: DevBuf<f32>,
    logits: DevBuf<f32>,
    losses: DevBuf<f32>,
    dres: DevBuf<f32>,
    dn: DevBuf<f32>,
    qkv: DevBuf<f32>,
    dhm: DevBuf<f32>,
    datt: DevBuf<f32>,
    dab: DevBuf<f32>,
    du: DevBuf<f32>,
    delta: DevBuf<f32>,
    partial: DevBuf<f32>,
    norm_partial: DevBuf<f64>,
    inputs: DevBuf<u8>,
    targets: DevBuf<u8>,
    order: DevBuf<i32>,
    start: DevBuf<i32>,
    /// Rows and parameter vector of the last forward pass (the backward pass needs them).
    last: Option<(usize, bool)>,
    /// Sum of the micro-batch gradients of this step ([`Session::accumulate`]); allocated on
    /// first use, so runs without accumulation do not pay for it.
    acc: Option<DevBuf<f32>>,
    /// The weight format run on the device, when `open` was given one the kernels cover.
    weights: Option<NativeWeights>,
}

impl Session {
    /// Allocates every buffer for `cfg` (batch `cfg.batch`); matrix products at `matmul`;
    /// `weights`: the weight format `(kind, parameter table as TOML)` to run on the device if
    /// the native kernels cover it.
    pub fn open(cfg: ModelConfig, matmul: MatmulPrecision, weights: Option<(&str, &str)>) -> Result<Session, String> {
        cfg.validate()?;
        if cfg.head_dim() > MAX_HEAD_DIM {
            return Err(format!(
                "model config '{}': head dimension {} is above the CUDA backend's limit of {MAX_HEAD_DIM}; use more heads",
                cfg.name,
                cfg.head_dim()
            ));
        }
        let gpu = Gpu::open(matmul)?;
        gpu.bind()?;
        let layout = ParamLayout::new(&cfg);
        let (d, hdn, rows, n) = (cfg.d_model, cfg.d_hidden, cfg.batch * cfg.ctx, layout.total);
        let f = |len: usize| gpu.alloc::<f32>(len);
        let mut blocks = Vec::new();
        for _ in 0..cfg.n_layer {
            blocks.push(Block {
                x_in: f(rows * d)?,
                rstd1: f(rows)?,
                n1: f(rows * d)?,
                hm: f(rows * 3 * d)?,
                lse: f(rows * cfg.n_head)?,
                att: f(rows * d)?,
                h: f(rows * d)?,
                rstd2: f(rows)?,
                n2: f(rows * d)?,
                ab: f(rows * 2 * hdn)?,
                u: f(rows * hdn)?,
            });
        }
        let (cos_h, sin_h) = trainer::kernels::rope_table::<f32>(cfg.ctx, cfg.head_dim(), ROPE_BASE);
        let cos = f(cos_h.len())?;
        let sin = f(sin_h.len())?;
        gpu.upload(cos.ptr, &cos_h)?;
        gpu.upload(sin.ptr, &sin_h)?;
        let s = Session {
            params: f(n)?,
            eff: f(n)?,
            grads: f(n)?,
            m: f(n)?,
            v: f(n)?,
            cos,
            sin,
            blocks,
            xf: f(rows * d)?,
            rstdf: f(rows)?,
            nf: f(rows * d)?,
            logits: f(rows * VOCAB)?,
            losses: f(rows)?,
            dres: f(rows * d)?,
            dn: f(rows * d)?,
            qkv: f(rows * 3 * d)?,
            dhm: f(rows * 3 * d)?,
            datt: f(rows * d)?,
            dab: f(rows * 2 * hdn)?,
            du: f(rows * hdn)?,
            delta: f(rows * cfg.n_head)?,
            partial: f(rows.div_ceil(DG_CHUNK) * d.max(hdn))?,
            norm_partial: gpu.alloc::<f64>(n.div_ceil(NORM_CHUNK) + 1)?,
            inputs: gpu.alloc::<u8>(rows)?,
            targets: gpu.alloc::<u8>(rows)?,
            order: gpu.alloc::<i32>(rows)?,
            start: gpu.alloc::<i32>(VOCAB + 1)?,
            last: None,
            acc: None,
            weights: match weights {
                Some((kind, params)) => NativeWeights::new(&gpu, &layout, kind, params)?,
                None => None,
            },
            gpu,
            cfg,
            layout,
        };
        s.gpu.sync()?;
        Ok(s)
    }

    /// The device's name.
    pub fn device_name(&self) -> &str {
        &self.gpu.name
    }

    fn buffer(&self, which: u8) -> Result<&DevBuf<f32>, String> {
        Ok(match which {
            buf::PARAMS => &self.params,
            buf::EFF => &self.eff,
            buf::GRADS => &self.grads,
            buf::ADAM_M => &self.m,
            buf::ADAM_V => &self.v,
            other => return Err(format!("unknown buffer id {other}")),
        })
    }

    fn range_check(&self, which: u8, offset: u64, len: usize) -> Result<CUdeviceptr, String> {
        let b = self.buffer(which)?;
        let off = offset as usize;
        if off.checked_add(len).is_none_or(|end| end > b.len) {
            return Err(format!("buffer {which}: {len} values at offset {off} exceed its {} values", b.len));
        }
        Ok(b.at(off))
    }

    /// Copies host values into a buffer.
    pub fn write(&mut self, which: u8, offset: u64, data: &[f32]) -> Result<(), String> {
        self.gpu.bind()?;
        let dst = self.range_check(which, offset, data.len())?;
        self.gpu.upload(dst, data)
    }

    /// Copies a buffer's values to the host.
    pub fn read(&self, which: u8, offset: u64, out: &mut [f32]) -> Result<(), String> {
        self.gpu.bind()?;
        let src = self.range_check(which, offset, out.len())?;
        self.gpu.download(out, src)
    }

    /// Forward pass; per-token losses into `losses_out`.
    pub fn forward(&mut self, tokens: &[u8], use_eff: bool, losses_out: &mut [f32]) -> Result<(), String> {
        self.gpu.bind()?;
        let cfg = &self.cfg;
        let (ctx, d, hdn, nh, hd) = (cfg.ctx, cfg.d_model, cfg.d_hidden, cfg.n_head, cfg.head_dim());
        let row_len = ctx + 1;
        if tokens.is_empty() || !tokens.len().is_multiple_of(row_len) || tokens.len() / row_len > cfg.batch {
            return Err(format!(
                "token buffer of {} bytes is not 1..={} rows of ctx+1 = {row_len} bytes",
                tokens.len(),
                cfg.batch
            ));
        }
        let n_seq = tokens.len() / row_len;
        let rows = n_seq * ctx;
        if losses_out.len() != rows {
            return Err(format!("forward: {} loss slots for {rows} tokens", losses_out.len()));
        }
        let mut inputs = Vec::with_capacity(rows);
        let mut targets = Vec::with_capacity(rows);
        for r in tokens.chunks(row_len) {
            inputs.extend_from_slice(&r[..ctx]);
            targets.extend_from_slice(&r[1..]);
        }
        let (order, start) = group_rows(&inputs);
        let g = &self.gpu;
        g.upload(self.inputs.ptr, &inputs)?;
        g.upload(self.targets.ptr, &targets)?;
        g.upload(self.order.ptr, &order)?;
        g.upload(self.start.ptr, &start)?;
        let lay = &self.layout;
        let p = if use_eff { &self.eff } else { &self.params };
        g.embedding_fwd(self.inputs.ptr, p.at(lay.emb), self.blocks[0].x_in.ptr, rows, d)?;
        for l in 0..cfg.n_layer {
            let off = lay.blocks[l];
            let b = &self.blocks[l];
            let x_next = if l + 1 < cfg.n_layer { self.blocks[l + 1].x_in.ptr } else { self.xf.ptr };
            g.rmsnorm_fwd(b.x_in.ptr, p.at(off.attn_norm), b.n1.ptr, b.rstd1.ptr, rows, d, NORM_EPS)?;
            g.linear_fwd(b.n1.ptr, p.at(off.wqkv), self.qkv.ptr, rows, d, 3 * d)?;
            g.rope(self.qkv.ptr, b.hm.ptr, self.cos.ptr, self.sin.ptr, n_seq, ctx, nh, hd, false)?;
            g.attn_fwd(b.hm.ptr, b.att.ptr, b.lse.ptr, n_seq, ctx, nh, hd)?;
            g.linear_fwd(b.att.ptr, p.at(off.wo), b.h.ptr, rows, d, d)?;
            g.add(b.h.ptr, b.x_in.ptr, rows * d)?;
            g.rmsnorm_fwd(b.h.ptr, p.at(off.mlp_norm), b.n2.ptr, b.rstd2.ptr, rows, d, NORM_EPS)?;
            g.linear_fwd(b.n2.ptr, p.at(off.w13), b.ab.ptr, rows, d, 2 * hdn)?;
            g.swiglu_fwd(b.ab.ptr, b.u.ptr, rows, hdn)?;
            g.linear_fwd(b.u.ptr, p.at(off.w2), x_next, rows, hdn, d)?;
            g.add(x_next, b.h.ptr, rows * d)?;
        }
        g.rmsnorm_fwd(self.xf.ptr, p.at(lay.final_norm), self.nf.ptr, self.rstdf.ptr, rows, d, NORM_EPS)?;
        g.linear_fwd(self.nf.ptr, p.at(lay.head), self.logits.ptr, rows, d, VOCAB)?;
        g.ce_fwd(self.logits.ptr, self.targets.ptr, self.losses.ptr, rows)?;
        g.download(losses_out, self.losses.ptr)?;
        self.last = Some((n_seq, use_eff));
        Ok(())
    }

    /// Backward pass of the last forward pass into `GRADS`.
    pub fn backward(&mut self) -> Result<(), String> {
        self.gpu.bind()?;
        let (n_seq, use_eff) = self.last.take().ok_or("backward without a forward pass")?;
        let cfg = &self.cfg;
        let (ctx, d, hdn, nh, hd) = (cfg.ctx, cfg.d_model, cfg.d_hidden, cfg.n_head, cfg.head_dim());
        let rows = n_seq * ctx;
        let g = &self.gpu;
        let lay = &self.layout;
        let p = if use_eff { &self.eff } else { &self.params };
        let gr = &self.grads;
        g.ce_bwd(self.logits.ptr, self.targets.ptr, rows, (1.0 / rows as f64) as f32)?;
        g.linear_bwd_w(self.logits.ptr, self.nf.ptr, gr.at(lay.head), rows, d, VOCAB)?;
        g.linear_bwd_x(self.logits.ptr, p.at(lay.head), self.dn.ptr, rows, d, VOCAB, false)?;
        g.zero::<f32>(self.dres.ptr, rows * d)?;
        let (dres, dn, part) = (self.dres.ptr, self.dn.ptr, self.partial.ptr);
        g.rmsnorm_bwd(
            self.xf.ptr,
            p.at(lay.final_norm),
            self.rstdf.ptr,
            dn,
            dres,
            gr.at(lay.final_norm),
            part,
            rows,
            d,
        )?;
        for l in (0..cfg.n_layer).rev() {
            let off = lay.blocks[l];
            let b = &self.blocks[l];
            g.linear_bwd_w(dres, b.u.ptr, gr.at(off.w2), rows, hdn, d)?;
            g.linear_bwd_x(dres, p.at(off.w2), self.du.ptr, rows, hdn, d, false)?;
            g.swiglu_bwd(b.ab.ptr, self.du.ptr, self.dab.ptr, rows, hdn)?;
            g.linear_bwd_w(self.dab.ptr, b.n2.ptr, gr.at(off.w13), rows, d, 2 * hdn)?;
            g.linear_bwd_x(self.dab.ptr, p.at(off.w13), dn, rows, d, 2 * hdn, false)?;
            g.rmsnorm_bwd(b.h.ptr, p.at(off.mlp_norm), b.rstd2.ptr, dn, dres, gr.at(off.mlp_norm), part, rows, d)?;
            g.linear_bwd_w(dres, b.att.ptr, gr.at(off.wo), rows, d, d)?;
            g.linear_bwd_x(dres, p.at(off.wo), self.datt.ptr, rows, d, d, false)?;
            g.attn_bwd(
                b.hm.ptr,
                b.att.ptr,
                b.lse.ptr,
                self.datt.ptr,
                self.delta.ptr,
                self.dhm.ptr,
                n_seq,
                ctx,
                nh,
                hd,
            )?;
            g.rope(self.qkv.ptr, self.dhm.ptr, self.cos.ptr, self.sin.ptr, n_seq, ctx, nh, hd, true)?;
            g.linear_bwd_w(self.qkv.ptr, b.n1.ptr, gr.at(off.wqkv), rows, d, 3 * d)?;
            g.linear_bwd_x(self.qkv.ptr, p.at(off.wqkv), dn, rows, d, 3 * d, false)?;
            g.rmsnorm_bwd(b.x_in.ptr, p.at(off.attn_norm), b.rstd1.ptr, dn, dres, gr.at(off.attn_norm), part, rows, d)?;
        }
        g.embedding_bwd(self.order.ptr, self.start.ptr, dres, gr.at(lay.emb), d)?;
        g.sync()
    }

    /// Global L2 norm of the gradients.
    pub fn grad_norm(&mut self) -> Result<f64, String> {
        self.gpu.bind()?;
        Ok(self.gpu.sumsq(self.grads.ptr, self.layout.total, &self.norm_partial)?.sqrt())
    }

    /// Micro-batch `k` of `count` into the accumulator; after the last, `GRADS = acc * inv`
    /// (as `Trainer::step`: `g = g0; g += g1; ...; g *= inv`).
    pub fn accumulate(&mut self, k: u32, count: u32, inv: f32) -> Result<(), String> {
        if count < 2 || k >= count {
            return Err(format!("accumulate: micro-batch {k} of {count} (needs 0 <= k < count, count >= 2)"));
        }
        self.gpu.bind()?;
        let n = self.layout.total;
        if self.acc.is_none() {
            self.acc = Some(self.gpu.alloc::<f32>(n)?);
        }
        let acc = self.acc.as_ref().expect("allocated above").ptr;
        if k == 0 {
            self.gpu.copy::<f32>(acc, self.grads.ptr, n)?;
        } else {
            self.gpu.add(acc, self.grads.ptr, n)?;
        }
        if k + 1 == count {
            self.gpu.copy::<f32>(self.grads.ptr, acc, n)?;
            self.gpu.scale(self.grads.ptr, inv, n)?;
        }
        self.gpu.sync()
    }

    /// `EFF = PARAMS`, then every block linear weight compressed by the native kernels into
    /// `EFF` and its mask.
    pub fn compress_weights(&mut self) -> Result<(), String> {
        let w = self.weights.as_ref().ok_or("no weight format on the device")?;
        self.gpu.bind()?;
        self.gpu.copy::<f32>(self.eff.ptr, self.params.ptr, self.layout.total)?;
        for (off, p, scratch) in &w.tensors {
            let io = [self.params.at(*off), self.eff.at(*off), w.mask.at(*off)];
            let s: Vec<CUdeviceptr> = scratch.iter().map(PlanBuf::ptr).collect();
            self.gpu.run_plan(p, io, &s)?;
        }
        self.gpu.sync()
    }

    /// The block linear weights' gradients times their masks (the straight-through backward).
    pub fn weight_backward(&mut self) -> Result<(), String> {
        let w = self.weights.as_ref().ok_or("no weight format on the device")?;
        self.gpu.bind()?;
        for t in self.layout.tensors.iter().filter(|t| t.kind == ParamKind::Linear) {
            self.gpu.mul(self.grads.at(t.offset), w.mask.at(t.offset), t.len())?;
        }
        self.gpu.sync()
    }

    /// One AdamW update, tensor by tensor (norm gains without weight decay).
    pub fn adamw(&mut self, lr: f32, t: u64, scale: f32) -> Result<(), String> {
        self.gpu.bind()?;
        for ti in &self.layout.tensors {
            let o = ti.offset;
            let decay = ti.kind != ParamKind::Norm;
            self.gpu.adamw(
                self.params.at(o),
                self.grads.at(o),
                self.m.at(o),
                self.v.at(o),
                ti.len(),
                lr,
                t,
                scale,
                decay,
            )?;
        }
        self.gpu.sync()
    }
}

impl FfiSession for Session {
    fn device_name(&self) -> RString {
        self.gpu.name.clone().into()
    }
    fn write(&mut self, which: u8, offset: u64, data: RSlice<'_, f32>) -> RResult<(), RString> {
        guarded("copying to the GPU", || Session::write(self, which, offset, data.as_slice()))
    }
    fn read(&self, which: u8, offset: u64, mut out: RSliceMut<'_, f32>) -> RResult<(), RString> {
        guarded("copying from the GPU", || Session::read(self, which, offset, out.as_mut_slice()))
    }
    fn forward(
        &mut self,
        tokens: RSlice<'_, u8>,
        use_eff: bool,
        mut losses: RSliceMut<'_, f32>,
    ) -> RResult<(), RString> {
        guarded("running the forward pass", || {
            Session::forward(self, tokens.as_slice(), use_eff, losses.as_mut_slice())
        })
    }
    fn backward(&mut self) -> RResult<(), RString> {
        guarded("running the backward pass", || Session::backward(self))
    }
    fn grad_norm(&mut self) -> RResult<f64, RString> {
        guarded("computing the gradient norm", || Session::grad_norm(self))
    }
    fn adamw(&mut self, lr: f32, t: u64, scale: f32) -> RResult<(), RString> {
        guarded("updating the parameters", || Session::adamw(self, lr, t, scale))
    }
    fn accumulate(&mut self, k: u32, count: u32, inv: f32) -> RResult<(), RString> {
        guarded("accumulating gradients", || Session::accumulate(self, k, count, inv))
    }
    fn weight_format(&self) -> RString {
        self.weights.as_ref().map_or_else(RString::new, |w| w.name.clone().into())
    }
    fn compress_weights(&mut self) -> RResult<(), RString> {
        guarded("compressing the weights", || Session::compress_weights(self))
    }
    fn weight_backward(&mut self) -> RResult<(), RString> {
        guarded("masking the weight gradients", || Session::weight_backward(self))
    }
}
