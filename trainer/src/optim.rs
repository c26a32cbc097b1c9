//! AdamW, global-norm gradient clipping and the learning-rate schedule.

use rayon::prelude::*;

/// AdamW first-moment decay.
pub const BETA1: f32 = 0.9;
/// AdamW second-moment decay.
pub const BETA2: f32 = 0.95;
/// AdamW epsilon.
pub const EPS: f32 = 1e-8;
/// Decoupled weight decay, applied to every matrix (the block linear layers,
/// the token embedding and the output head, as nanoGPT does for all 2-D
/// tensors) and never to RMSNorm gains.
pub const WEIGHT_DECAY: f32 = 0.1;
/// Gradient clipping threshold on the global L2 norm.
pub const CLIP_NORM: f64 = 1.0;
/// Fraction of the run spent in linear warm-up.
pub const WARMUP_FRAC: f64 = 0.1;
/// The cosine decays to this fraction of the peak learning rate.
pub const MIN_LR_FRAC: f64 = 0.1;

/// Learning rate at 0-based `step` of a `total_steps` run with peak `peak`:
/// linear warm-up over the first 10 % of the steps (`peak * (step+1)/warmup`),
/// then cosine decay from `peak` to 10 % of `peak` at the last step; steps past
/// the end stay at 10 %.
pub fn lr_at(step: u64, total_steps: u64, peak: f32) -> f32 {
    let total = total_steps.max(1) as f64;
    let warmup = (WARMUP_FRAC * total).ceil().max(1.0);
    let s = step as f64;
    let peak = peak as f64;
    let lr = if s < warmup {
        peak * (s + 1.0) / warmup
    } else {
        let span = (total - warmup).max(1.0);
        let progress = ((s - warmup) / span).min(1.0);
        let min = MIN_LR_FRAC * peak;
        min + 0.5 * (peak - min) * (1.0 + (std::f64::consts::PI * progress).cos())
    };
    lr as f32
}

/// Chunk of the deterministic partial sums (independent of thread count).
const CHUNK: usize = 1 << 14;

/// Global L2 norm of `g`, summed in f64 over fixed chunks combined in order
/// (bit-identical for any number of threads).
pub fn global_norm(g: &[f32]) -> f64 {
    let partial: Vec<f64> =
        g.par_chunks(CHUNK).map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).collect();
    partial.iter().sum::<f64>().sqrt()
}

/// Adam moments for a flat parameter vector.
#[derive(Clone, Debug)]
pub struct AdamW {
    /// First moments.
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
}

impl AdamW {
    /// Zero moments for `n` parameters.
    pub fn new(n: usize) -> AdamW {
        AdamW { m: vec![0.0; n], v: vec![0.0; n] }
    }

    /// One AdamW update of `params[range]` for every `(range, decay)` segment.
    /// `t` is the 1-based update count (bias correction), `grad_scale`
    /// multiplies the gradients first (clipping).
    pub fn update(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        segments: &[(std::ops::Range<usize>, bool)],
        lr: f32,
        t: u64,
        grad_scale: f32,
    ) {
        let bc1 = 1.0 - (BETA1 as f64).powi(t.min(i32::MAX as u64) as i32);
        let bc2 = 1.0 - (BETA2 as f64).powi(t.min(i32::MAX as u64) as i32);
        let step = (lr as f64 / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        for (r, decay) in segments {
            let wd = if *decay { 1.0 - lr * WEIGHT_DECAY } else { 1.0 };
            let p = &mut params[r.clone()];
            let g = &grads[r.clone()];
            let m = &mut self.m[r.clone()];
            let v = &mut self.v[r.clone()];
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| {
                    for i in 0..p.len() {
                        let gi = g[i] * grad_scale;
                        m[i] = BETA1 * m[i] + (1.0 - BETA1) * gi;
                        v[i] = BETA2 * v[i] + (1.0 - BETA2) * gi * gi;
                        let denom = v[i].sqrt() * inv_sqrt_bc2 + EPS;
                        p[i] = p[i] * wd - step * m[i] / denom;
                    }
                });
        }
    }
}
