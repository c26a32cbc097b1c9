//! Every kernel on the device against the trainer's CPU kernel (`trainer::kernels`,
//! `trainer::optim`) on seeded random inputs: one report line per kernel with the largest
//! absolute difference, the tolerance and `ok` or `FAIL`.
//!
//! Tolerances, relative to the largest reference value: 0 where the GPU does the CPU's
//! operations in the CPU's order (embedding, RoPE, AdamW: `--fmad=false`, IEEE division and
//! square root); 2e-6 for row reductions and `expf`/`logf` against the CPU's polynomial exp
//! (a few ulp); 1e-5 for cuBLAS products and the attention kernels (sums of up to a few
//! hundred products in another order); 1e-12 for the f64 gradient norm.
//!
//! The tensor-core products (`tf32`, `bf16`) are checked against the same fp32 references
//! within a band. Their inputs are rounded inside the product to p explicit mantissa bits
//! (TF32 10, BF16 7): relative input error uniform within +-u, u = 2^-(p+1) (within (-2u, 0]
//! if the hardware truncates). Over k products of independent zero-mean inputs the output
//! error has standard deviation sqrt(2/3) u sqrt(k) sx sw (truncation adds a bias of -2u times
//! the output: about 2.6 u sqrt(k) sx sw in all), and over ~2e4 outputs both the largest error
//! and the largest output are about 4.5 of their standard deviations, so max error / max |ref|
//! is about 0.8 u rounding and 2.6 u truncating (TF32: 4e-4 / 1.3e-3; BF16: 3.2e-3 / 1.0e-2).
//! Simulated on these very inputs (fp32 inputs rounded or truncated, exact sums) the three
//! products give at most 3.7e-4 / 8.5e-4 (TF32) and 2.4e-3 / 6.4e-3 (BF16). The upper bounds
//! are about 4.7x the truncating case (TF32 4e-3, BF16 3e-2); the lower bound, 1e-5 (the fp32
//! tolerance, 23x below the smallest simulated TF32 value), fails a product that silently ran
//! in fp32, so the check also shows that the precision reached cuBLAS.

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use trainer::backend::MatmulPrecision;
use trainer::kernels::{self as cpu, AttnShape};
use trainer::model::{NORM_EPS, ROPE_BASE, VOCAB};

use crate::gpu::{DG_CHUNK, DevBuf, Gpu, NORM_CHUNK};
use crate::session::group_rows;

struct Report {
    lines: Vec<String>,
    failed: usize,
}

impl Report {
    fn compare(&mut self, name: &str, got: &[f32], want: &[f32], rel_tol: f64) {
        self.compare_band(name, got, want, 0.0, rel_tol);
    }

    /// As `compare`, and the difference must also exceed `rel_min` (times the largest reference
    /// value): for products that must differ from fp32.
    fn compare_band(&mut self, name: &str, got: &[f32], want: &[f32], rel_min: f64, rel_tol: f64) {
        assert_eq!(got.len(), want.len(), "{name}: lengths");
        let scale = want.iter().fold(0f64, |m, &x| m.max((x as f64).abs())).max(1e-30);
        let diff = got.iter().zip(want).fold(0f64, |m, (&a, &b)| {
            let d = (a as f64 - b as f64).abs();
            if d.is_nan() { f64::INFINITY } else { m.max(d) }
        });
        let tol = rel_tol * scale;
        let ok = diff <= tol && diff >= rel_min * scale;
        if !ok {
            self.failed += 1;
        }
        let floor = if rel_min > 0.0 { format!("  at least {:.3e}", rel_min * scale) } else { String::new() };
        self.lines.push(format!(
            "{name:<22} max_abs_diff {diff:.3e}  tolerance {tol:.3e}{floor}  (max |ref| {scale:.3e})  {}",
            if ok { "ok" } else { "FAIL" }
        ));
    }
}

fn randn(n: usize, seed: u64, std: f64) -> Vec<f32> {
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let nd = Normal::new(0.0, std).expect("valid std");
    (0..n).map(|_| nd.sample(&mut rng) as f32).collect()
}

fn up<T: Copy>(g: &Gpu, v: &[T]) -> Result<DevBuf<T>, String> {
    let b = g.alloc::<T>(v.len())?;
    g.upload(b.ptr, v)?;
    Ok(b)
}

fn down(g: &Gpu, b: &DevBuf<f32>) -> Result<Vec<f32>, String> {
    let mut v = vec![0f32; b.len];
    g.download(&mut v, b.ptr)?;
    Ok(v)
}

/// Runs every check; `Err` when the device cannot run them, `Ok` with the report otherwise
/// (the last line says `all N kernels ok` or how many failed).
pub fn run() -> Result<String, String> {
    let mut g = Gpu::open(MatmulPrecision::Fp32)?;
    g.bind()?;
    let mut r = Report { lines: vec![format!("kernel checks on {}", g.name)], failed: 0 };
    // Awkward sizes on purpose: ctx and hd not multiples of 32, rows not a multiple of 64.
    let (n_seq, ctx, n_head, hd) = (3, 70, 2, 48);
    let (d, h) = (n_head * hd, 160);
    let rows = n_seq * ctx;
    let shape = AttnShape { n_seq, ctx, n_head, hd };

    // Matrix products (cuBLAS).
    let x = randn(rows * d, 1, 1.0);
    let w = randn(h * d, 2, 0.1);
    let dy = randn(rows * h, 3, 1.0);
    let (xb, wb, dyb) = (up(&g, &x)?, up(&g, &w)?, up(&g, &dy)?);
    let yb = g.alloc::<f32>(rows * h)?;
    g.linear_fwd(xb.ptr, wb.ptr, yb.ptr, rows, d, h)?;
    let mut y = vec![0f32; rows * h];
    cpu::linear_fwd(&x, &w, &mut y, rows, d, h);
    r.compare("linear_fwd (cuBLAS)", &down(&g, &yb)?, &y, 1e-5);
    let dxb = up(&g, &x)?;
    g.linear_bwd_x(dyb.ptr, wb.ptr, dxb.ptr, rows, d, h, true)?;
    let mut dx = x.clone();
    cpu::linear_bwd_x(&dy, &w, &mut dx, rows, d, h, true);
    r.compare("linear_bwd_x (cuBLAS)", &down(&g, &dxb)?, &dx, 1e-5);
    let dwb = g.alloc::<f32>(h * d)?;
    g.linear_bwd_w(dyb.ptr, xb.ptr, dwb.ptr, rows, d, h)?;
    let mut dw = vec![0f32; h * d];
    cpu::linear_bwd_w(&dy, &x, &mut dw, rows, d, h, false);
    r.compare("linear_bwd_w (cuBLAS)", &down(&g, &dwb)?, &dw, 1e-5);
    // The same products on tensor cores, against the same fp32 references (band: module docs).
    for (p, tol) in [(MatmulPrecision::Tf32, 4e-3), (MatmulPrecision::Bf16, 3e-2)] {
        g.set_matmul(p);
        let name = p.name();
        g.linear_fwd(xb.ptr, wb.ptr, yb.ptr, rows, d, h)?;
        r.compare_band(&format!("linear_fwd {name}"), &down(&g, &yb)?, &y, 1e-5, tol);
        g.upload(dxb.ptr, &x)?;
        g.linear_bwd_x(dyb.ptr, wb.ptr, dxb.ptr, rows, d, h, true)?;
        r.compare_band(&format!("linear_bwd_x {name}"), &down(&g, &dxb)?, &dx, 1e-5, tol);
        g.linear_bwd_w(dyb.ptr, xb.ptr, dwb.ptr, rows, d, h)?;
        r.compare_band(&format!("linear_bwd_w {name}"), &down(&g, &dwb)?, &dw, 1e-5, tol);
    }
    g.set_matmul(MatmulPrecision::Fp32);

    // Embedding.
    let tokens: Vec<u8> = (0..rows).map(|i| ((i * 37 + i * i) % 251) as u8).collect();
    let emb = randn(VOCAB * d, 4, 0.02);
    let (tb, eb, ob) = (up(&g, &tokens)?, up(&g, &emb)?, g.alloc::<f32>(rows * d)?);
    g.embedding_fwd(tb.ptr, eb.ptr, ob.ptr, rows, d)?;
    let mut xe = vec![0f32; rows * d];
    cpu::embedding_fwd(&tokens, &emb, &mut xe, d);
    r.compare("embedding_fwd", &down(&g, &ob)?, &xe, 0.0);
    let (order, start) = group_rows(&tokens);
    let (orb, stb, deb) = (up(&g, &order)?, up(&g, &start)?, g.alloc::<f32>(VOCAB * d)?);
    g.embedding_bwd(orb.ptr, stb.ptr, xb.ptr, deb.ptr, d)?;
    let mut demb = vec![0f32; VOCAB * d];
    cpu::embedding_bwd(&tokens, &x, &mut demb, d);
    r.compare("embedding_bwd", &down(&g, &deb)?, &demb, 0.0);

    // Gradient accumulation's element operations (`Session::accumulate`): a sum of three
    // micro-batch gradients in order, then the mean, as `Trainer::step` computes them.
    let parts: Vec<Vec<f32>> = (0..3).map(|k| randn(rows * d, 20 + k, 1.0)).collect();
    let accb = up(&g, &parts[0])?;
    for p in &parts[1..] {
        let pb = up(&g, p)?;
        g.add(accb.ptr, pb.ptr, p.len())?;
    }
    let inv = 1.0 / 3.0f32;
    g.scale(accb.ptr, inv, rows * d)?;
    let mut mean = parts[0].clone();
    for p in &parts[1..] {
        mean.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    mean.iter_mut().for_each(|a| *a *= inv);
    r.compare("add_inplace + scale_inplace (accumulation)", &down(&g, &accb)?, &mean, 0.0);

    // RMSNorm.
    let gain = randn(d, 5, 0.3).iter().map(|v| 1.0 + v).collect::<Vec<f32>>();
    let gb = up(&g, &gain)?;
    let (nb, rsb) = (g.alloc::<f32>(rows * d)?, g.alloc::<f32>(rows)?);
    g.rmsnorm_fwd(xb.ptr, gb.ptr, nb.ptr, rsb.ptr, rows, d, NORM_EPS)?;
    let (mut n1, mut rstd) = (vec![0f32; rows * d], vec![0f32; rows]);
    cpu::rmsnorm_fwd(&x, &gain, &mut n1, &mut rstd, d, NORM_EPS);
    r.compare("rmsnorm_fwd", &down(&g, &nb)?, &n1, 2e-6);
    r.compare("rmsnorm_fwd rstd", &down(&g, &rsb)?, &rstd, 2e-6);
    let dyn_ = randn(rows * d, 6, 1.0);
    let dynb = up(&g, &dyn_)?;
    let dres0 = randn(rows * d, 7, 1.0);
    let dresb = up(&g, &dres0)?;
    let (dgb, partb) = (g.alloc::<f32>(d)?, g.alloc::<f32>(rows.div_ceil(DG_CHUNK) * d)?);
    // The CPU's rstd on both sides, so the check isolates the backward kernel.
    let rstd_b = up(&g, &rstd)?;
    g.rmsnorm_bwd(xb.ptr, gb.ptr, rstd_b.ptr, dynb.ptr, dresb.ptr, dgb.ptr, partb.ptr, rows, d)?;
    let (mut dres, mut dg, mut part) = (dres0.clone(), vec![0f32; d], vec![0f32; rows.div_ceil(cpu::ROW_CHUNK) * d]);
    cpu::rmsnorm_bwd(&x, &gain, &rstd, &dyn_, &mut dres, &mut dg, &mut part, d);
    r.compare("rmsnorm_bwd dx", &down(&g, &dresb)?, &dres, 2e-6);
    r.compare("rmsnorm_bwd dg", &down(&g, &dgb)?, &dg, 2e-6);

    // RoPE with the layout change, both ways.
    let (cos, sin) = cpu::rope_table::<f32>(ctx, hd, ROPE_BASE);
    let (cb, sb) = (up(&g, &cos)?, up(&g, &sin)?);
    let qkv = randn(rows * 3 * d, 8, 1.0);
    let qkvb = up(&g, &qkv)?;
    let hmb = g.alloc::<f32>(cpu::heads_len(shape))?;
    g.rope(qkvb.ptr, hmb.ptr, cb.ptr, sb.ptr, n_seq, ctx, n_head, hd, false)?;
    let (mut qkv_c, mut hm) = (qkv.clone(), vec![0f32; cpu::heads_len(shape)]);
    cpu::rope_heads(&mut qkv_c, &mut hm, shape, &cos, &sin, false);
    r.compare("rope fwd", &down(&g, &hmb)?, &hm, 0.0);
    let dhm0 = randn(cpu::heads_len(shape), 9, 1.0);
    let dhm0b = up(&g, &dhm0)?;
    let dqkvb = g.alloc::<f32>(rows * 3 * d)?;
    g.rope(dqkvb.ptr, dhm0b.ptr, cb.ptr, sb.ptr, n_seq, ctx, n_head, hd, true)?;
    let (mut dqkv, mut dhm_c) = (vec![0f32; rows * 3 * d], dhm0.clone());
    cpu::rope_heads(&mut dqkv, &mut dhm_c, shape, &cos, &sin, true);
    r.compare("rope bwd", &down(&g, &dqkvb)?, &dqkv, 0.0);

    // Fused attention on the CPU's head-major q/k/v.
    let (attb, lseb) = (g.alloc::<f32>(rows * d)?, g.alloc::<f32>(n_seq * n_head * ctx)?);
    g.attn_fwd(hmb.ptr, attb.ptr, lseb.ptr, n_seq, ctx, n_head, hd)?;
    let (mut att, mut stats) = (vec![0f32; rows * d], vec![0f32; n_seq * n_head * ctx * 2]);
    cpu::attention_fwd(&hm, &mut att, &mut stats, shape);
    let att_gpu = down(&g, &attb)?;
    r.compare("attention fwd", &att_gpu, &att, 1e-5);
    let dout = randn(rows * d, 10, 1.0);
    let doutb = up(&g, &dout)?;
    let (deltab, dhmb) = (g.alloc::<f32>(n_seq * n_head * ctx)?, g.alloc::<f32>(cpu::heads_len(shape))?);
    g.attn_bwd(hmb.ptr, attb.ptr, lseb.ptr, doutb.ptr, deltab.ptr, dhmb.ptr, n_seq, ctx, n_head, hd)?;
    let mut dhm = vec![0f32; cpu::heads_len(shape)];
    cpu::attention_bwd(&hm, &stats, &dout, &mut dhm, shape);
    r.compare("attention bwd (dq dk dv)", &down(&g, &dhmb)?, &dhm, 1e-5);

    // SwiGLU.
    let ab = randn(rows * 2 * h, 11, 2.0);
    let abb = up(&g, &ab)?;
    let ub = g.alloc::<f32>(rows * h)?;
    g.swiglu_fwd(abb.ptr, ub.ptr, rows, h)?;
    let mut u = vec![0f32; rows * h];
    cpu::swiglu_fwd(&ab, &mut u, h);
    r.compare("swiglu fwd", &down(&g, &ub)?, &u, 2e-6);
    let dabb = g.alloc::<f32>(rows * 2 * h)?;
    g.swiglu_bwd(abb.ptr, dyb.ptr, dabb.ptr, rows, h)?;
    let mut dab = vec![0f32; rows * 2 * h];
    cpu::swiglu_bwd(&ab, &dy, &mut dab, h);
    r.compare("swiglu bwd", &down(&g, &dabb)?, &dab, 2e-6);

    // Cross-entropy.
    let logits = randn(rows * VOCAB, 12, 3.0);
    let lb = up(&g, &logits)?;
    let lossb = g.alloc::<f32>(rows)?;
    g.ce_fwd(lb.ptr, tb.ptr, lossb.ptr, rows)?;
    let mut losses = vec![0f32; rows];
    cpu::cross_entropy_fwd(&logits, &tokens, &mut losses, VOCAB);
    r.compare("cross-entropy fwd", &down(&g, &lossb)?, &losses, 2e-6);
    let scale = (1.0 / rows as f64) as f32;
    g.ce_bwd(lb.ptr, tb.ptr, rows, scale)?;
    let mut dl = logits.clone();
    cpu::cross_entropy_bwd(&mut dl, &tokens, VOCAB, scale);
    r.compare("cross-entropy bwd", &down(&g, &lb)?, &dl, 2e-6);

    // Gradient norm (f64) and AdamW, over more than one norm chunk.
    let n = NORM_CHUNK * 2 + 1234;
    let grads = randn(n, 13, 0.01);
    let gradb = up(&g, &grads)?;
    let normp = g.alloc::<f64>(n.div_ceil(NORM_CHUNK) + 1)?;
    let got = g.sumsq(gradb.ptr, n, &normp)?.sqrt();
    let want = trainer::optim::global_norm(&grads);
    r.compare("global grad norm", &[got as f32], &[want as f32], 1e-6);
    let params = randn(n, 14, 0.02);
    let m0 = randn(n, 15, 0.001);
    let v0: Vec<f32> = randn(n, 16, 0.001).iter().map(|x| x * x).collect();
    let (pb, mb, vb) = (up(&g, &params)?, up(&g, &m0)?, up(&g, &v0)?);
    let (lr, t, sc) = (1.3e-3f32, 7u64, 0.8f32);
    g.adamw(pb.ptr, gradb.ptr, mb.ptr, vb.ptr, n, lr, t, sc, true)?;
    let mut opt = trainer::optim::AdamW { m: m0.clone(), v: v0.clone() };
    let mut p_c = params.clone();
    opt.update(&mut p_c, &grads, &[(0..n, true)], lr, t, sc);
    r.compare("adamw params", &down(&g, &pb)?, &p_c, 0.0);
    r.compare("adamw m", &down(&g, &mb)?, &opt.m, 0.0);
    r.compare("adamw v", &down(&g, &vb)?, &opt.v, 0.0);

    let total = r.lines.len() - 1;
    r.lines.push(if r.failed == 0 {
        format!("all {total} kernel checks ok")
    } else {
        format!("{} of {total} kernel checks FAILED", r.failed)
    });
    Ok(r.lines.join("\n"))
}
