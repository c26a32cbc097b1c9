//! Finite-difference gradient checks, in f64, of every layer kernel and of the
//! whole model: the exact code used for training, instantiated at f64.
//!
//! Tolerance: central differences with h = 1e-6 have truncation error
//! O(h^2 * f''') ~ 1e-12 and rounding error ~ 1e-16 * S / h, where S (~10
//! here) is the magnitude of the terms summed into the scalar objective:
//! ~1e-9 absolute (measured: at most 4.3e-9). A right analytic gradient
//! therefore agrees to ~1e-9 absolute; a wrong one (missing term, wrong sign,
//! wrong index) is off by O(1) relative. We require
//! |a - n| <= 1e-6 * max(|a|, |n|) + 1e-8.

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use trainer::kernels::{self, AttnShape};
use trainer::model::{Model, ModelConfig, ParamLayout, VOCAB};

const H: f64 = 1e-6;

fn randn(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            z * scale
        })
        .collect()
}

/// Checks `analytic` against central differences of `f` at `x` on the given
/// coordinates (all when `coords` is None). Returns the max relative error.
fn check(name: &str, x: &[f64], analytic: &[f64], coords: Option<Vec<usize>>, mut f: impl FnMut(&[f64]) -> f64) -> f64 {
    let coords = coords.unwrap_or_else(|| (0..x.len()).collect());
    let mut xp = x.to_vec();
    let (mut worst, mut worst_abs) = (0.0f64, 0.0f64);
    for &i in &coords {
        let orig = xp[i];
        xp[i] = orig + H;
        let fp = f(&xp);
        xp[i] = orig - H;
        let fm = f(&xp);
        xp[i] = orig;
        let num = (fp - fm) / (2.0 * H);
        let a = analytic[i];
        let err = (a - num).abs();
        let tol = 1e-6 * a.abs().max(num.abs()) + 1e-8;
        assert!(err <= tol, "{name}: coordinate {i}: analytic {a:e} vs numeric {num:e} (err {err:e})");
        worst_abs = worst_abs.max(err);
        if a.abs().max(num.abs()) > 1e-3 {
            worst = worst.max(err / a.abs().max(num.abs()));
        }
    }
    println!(
        "{name}: {} coordinates, max abs error {worst_abs:.1e}, max relative error {worst:.1e} (where |g| > 1e-3)",
        coords.len()
    );
    worst
}

fn dotv(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn gradcheck_embedding() {
    let (d, tokens) = (4, [3u8, 0, 3, 7, 1]);
    let emb = randn(8 * d, 1, 1.0);
    let r = randn(tokens.len() * d, 2, 1.0);
    let f = |e: &[f64]| {
        let mut x = vec![0.0; tokens.len() * d];
        kernels::embedding_fwd(&tokens, e, &mut x, d);
        dotv(&x, &r)
    };
    let mut g = vec![0.0; emb.len()];
    kernels::embedding_bwd(&tokens, &r, &mut g, d);
    check("embedding", &emb, &g, None, f);
}

#[test]
fn gradcheck_rmsnorm() {
    let (rows, d) = (70, 6); // more than one ROW_CHUNK of rows
    let x = randn(rows * d, 3, 1.0);
    let g = randn(d, 4, 1.0);
    let r = randn(rows * d, 5, 1.0);
    let fwd = |x: &[f64], g: &[f64]| {
        let mut y = vec![0.0; rows * d];
        let mut rs = vec![0.0; rows];
        kernels::rmsnorm_fwd(x, g, &mut y, &mut rs, d, 1e-5);
        (dotv(&y, &r), rs)
    };
    let (_, rstd) = fwd(&x, &g);
    let mut dx = vec![0.0; rows * d];
    let mut dg = vec![0.0; d];
    let mut partial = vec![0.0; rows.div_ceil(kernels::ROW_CHUNK) * d];
    kernels::rmsnorm_bwd(&x, &g, &rstd, &r, &mut dx, &mut dg, &mut partial, d);
    check("rmsnorm dx", &x, &dx, None, |x| fwd(x, &g).0);
    check("rmsnorm dg", &g, &dg, None, |g| fwd(&x, g).0);
}

#[test]
fn gradcheck_linear() {
    let (rows, din, dout) = (9, 5, 7);
    let x = randn(rows * din, 6, 1.0);
    let w = randn(dout * din, 7, 1.0);
    let r = randn(rows * dout, 8, 1.0);
    let fwd = |x: &[f64], w: &[f64]| {
        let mut y = vec![0.0; rows * dout];
        kernels::linear_fwd(x, w, &mut y, rows, din, dout);
        dotv(&y, &r)
    };
    let mut dx = vec![0.0; rows * din];
    let mut dw = vec![0.0; dout * din];
    kernels::linear_bwd_x(&r, &w, &mut dx, rows, din, dout, false);
    kernels::linear_bwd_w(&r, &x, &mut dw, rows, din, dout, false);
    check("linear dx", &x, &dx, None, |x| fwd(x, &w));
    check("linear dw", &w, &dw, None, |w| fwd(&x, w));
    // Accumulating variants add to what is there.
    let mut acc = vec![1.0; dout * din];
    kernels::linear_bwd_w(&r, &x, &mut acc, rows, din, dout, true);
    for (a, b) in acc.iter().zip(&dw) {
        assert!((a - (b + 1.0)).abs() < 1e-12);
    }
}

#[test]
fn gradcheck_rope() {
    let (ctx, n_head, hd, stride, col0) = (5, 2, 6, 15, 2);
    let rows = 2 * ctx;
    let (cos, sin) = kernels::rope_table::<f64>(ctx, hd, 10000.0);
    let x = randn(rows * stride, 9, 1.0);
    let r = randn(rows * stride, 10, 1.0);
    let fwd = |x: &[f64]| {
        let mut y = x.to_vec();
        kernels::rope(&mut y, stride, col0, n_head, hd, ctx, &cos, &sin, false);
        dotv(&y, &r)
    };
    // Backward: inverse rotation of the upstream gradient; untouched columns pass through.
    let mut g = r.clone();
    kernels::rope(&mut g, stride, col0, n_head, hd, ctx, &cos, &sin, true);
    check("rope", &x, &g, None, fwd);
    // Position 0 is the identity rotation; rope followed by its inverse is the identity.
    let mut y = x.clone();
    kernels::rope(&mut y, stride, col0, n_head, hd, ctx, &cos, &sin, false);
    assert_eq!(&y[..stride], &x[..stride]);
    kernels::rope(&mut y, stride, col0, n_head, hd, ctx, &cos, &sin, true);
    for (a, b) in y.iter().zip(&x) {
        assert!((a - b).abs() < 1e-14);
    }
}

/// Head-major layout of a row-major qkv without rotation (cos 1, sin 0).
fn to_heads<T: kernels::Float>(qkv: &[T], s: AttnShape) -> Vec<T> {
    let half = s.ctx * s.hd / 2;
    let (cos, sin) = (vec![T::ONE; half], vec![T::ZERO; half]);
    let mut hm = vec![T::ZERO; kernels::heads_len(s)];
    kernels::rope_heads(&mut qkv.to_vec(), &mut hm, s, &cos, &sin, false);
    hm
}

#[test]
fn gradcheck_attention() {
    let s = AttnShape { n_seq: 2, ctx: 6, n_head: 2, hd: 4 };
    let d = s.n_head * s.hd;
    let rows = s.n_seq * s.ctx;
    let hm = randn(kernels::heads_len(s), 11, 1.0);
    let r = randn(rows * d, 12, 1.0);
    let fwd = |h: &[f64]| {
        let mut out = vec![0.0; rows * d];
        let mut stats = vec![0.0; s.n_seq * s.n_head * s.ctx * 2];
        kernels::attention_fwd(h, &mut out, &mut stats, s);
        (dotv(&out, &r), stats)
    };
    let (_, stats) = fwd(&hm);
    let mut g = vec![f64::NAN; hm.len()];
    kernels::attention_bwd(&hm, &stats, &r, &mut g, s);
    check("attention (incl. softmax)", &hm, &g, None, |h| fwd(h).0);
}

#[test]
fn gradcheck_rope_heads() {
    let s = AttnShape { n_seq: 2, ctx: 5, n_head: 2, hd: 6 };
    let (d, rows) = (s.n_head * s.hd, s.n_seq * s.ctx);
    let (cos, sin) = kernels::rope_table::<f64>(s.ctx, s.hd, 10000.0);
    let qkv = randn(rows * 3 * d, 18, 1.0);
    let r = randn(kernels::heads_len(s), 19, 1.0);
    let fwd = |x: &[f64]| {
        let mut hm = vec![0.0; r.len()];
        kernels::rope_heads(&mut x.to_vec(), &mut hm, s, &cos, &sin, false);
        (dotv(&hm, &r), hm)
    };
    let mut g = vec![f64::NAN; qkv.len()];
    kernels::rope_heads(&mut g, &mut r.clone(), s, &cos, &sin, true);
    check("rope + head-major layout", &qkv, &g, None, |x| fwd(x).0);
    // Against the plain in-place rope followed by the layout change.
    let mut rotated = qkv.clone();
    kernels::rope(&mut rotated, 3 * d, 0, 2 * s.n_head, s.hd, s.ctx, &cos, &sin, false);
    let expect = to_heads(&rotated, s);
    let diff = fwd(&qkv).1.iter().zip(&expect).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert_eq!(diff, 0.0, "rope_heads differs from rope + layout change");
}

#[test]
fn attention_optimized_matches_reference() {
    let s = AttnShape { n_seq: 3, ctx: 17, n_head: 3, hd: 10 };
    let d = s.n_head * s.hd;
    let rows = s.n_seq * s.ctx;
    let qkv = randn(rows * 3 * d, 13, 1.5);
    let reference = kernels::attention_fwd_reference(&qkv, s);
    let mut out = vec![0.0; rows * d];
    let mut stats = vec![0.0; s.n_seq * s.n_head * s.ctx * 2];
    kernels::attention_fwd(&to_heads(&qkv, s), &mut out, &mut stats, s);
    let diff64 = out.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let q32: Vec<f32> = qkv.iter().map(|&x| x as f32).collect();
    let mut out32 = vec![0f32; rows * d];
    let mut stats32 = vec![0f32; stats.len()];
    kernels::attention_fwd(&to_heads(&q32, s), &mut out32, &mut stats32, s);
    let diff32 = out32.iter().zip(&reference).map(|(&a, b)| (a as f64 - b).abs()).fold(0.0, f64::max);
    println!("attention optimized vs reference: max abs diff f64 {diff64:.2e}, f32 {diff32:.2e}");
    // f64: only summation order differs (~1e-16 per op). f32: inputs are
    // rounded to f32 (rel 6e-8), exp_f32 is within 1e-7 relative, and
    // |outputs| <= max|v| ~ 6, so ~1e-6.
    assert!(diff64 < 1e-12, "f64 diff {diff64}");
    assert!(diff32 < 1e-5, "f32 diff {diff32}");
}

#[test]
fn gradcheck_swiglu() {
    let (rows, h) = (7, 5);
    let ab = randn(rows * 2 * h, 14, 2.0);
    let r = randn(rows * h, 15, 1.0);
    let fwd = |ab: &[f64]| {
        let mut u = vec![0.0; rows * h];
        kernels::swiglu_fwd(ab, &mut u, h);
        dotv(&u, &r)
    };
    let mut g = vec![0.0; ab.len()];
    kernels::swiglu_bwd(&ab, &r, &mut g, h);
    check("swiglu", &ab, &g, None, fwd);
}

#[test]
fn gradcheck_cross_entropy() {
    let (rows, v) = (5, 11);
    let logits = randn(rows * v, 16, 3.0);
    let targets = [0u8, 10, 3, 3, 7];
    let scale = 0.37;
    let fwd = |z: &[f64]| {
        let mut l = vec![0.0; rows];
        kernels::cross_entropy_fwd(z, &targets, &mut l, v);
        scale * l.iter().sum::<f64>()
    };
    let mut g = logits.clone();
    kernels::cross_entropy_bwd(&mut g, &targets, v, scale);
    check("cross-entropy", &logits, &g, None, fwd);
    // Value: uniform logits give ln(v).
    let mut l = vec![0.0; 1];
    kernels::cross_entropy_fwd(&vec![0.5; v], &[2], &mut l, v);
    assert!((l[0] - (v as f64).ln()).abs() < 1e-14);
}

fn tiny_config() -> ModelConfig {
    ModelConfig {
        name: "tiny".into(),
        n_layer: 2,
        n_head: 2,
        d_model: 8,
        d_hidden: 12,
        ctx: 5,
        batch: 2,
        lr: 1e-3,
        accum: 1,
    }
}

#[test]
fn gradcheck_whole_model() {
    let cfg = tiny_config();
    let layout = ParamLayout::new(&cfg);
    // Larger-than-default init so that every path carries signal.
    let mut params = layout.init::<f64>(&cfg, 42);
    let noise = randn(params.len(), 17, 0.3);
    for (p, n) in params.iter_mut().zip(&noise) {
        *p += n;
    }
    let tokens: Vec<u8> = (0..cfg.batch * (cfg.ctx + 1)).map(|i| ((i * 37 + 11) % VOCAB) as u8).collect();
    let mut model = Model::<f64>::new(&cfg).unwrap();
    model.forward(&params, &tokens, None).unwrap();
    let mut grads = vec![f64::NAN; params.len()];
    model.backward(&params, &mut grads);
    // Every non-embedding coordinate, plus the embedding rows of the tokens
    // used and a few head rows (the others have zero/unused gradients).
    let mut coords = Vec::new();
    for t in &layout.tensors {
        match t.name.as_str() {
            "tok_emb" => {
                for tok in [11usize, 48, 85] {
                    coords.extend(t.offset + tok * cfg.d_model..t.offset + (tok + 1) * cfg.d_model);
                }
                // An unused token's row must have exactly zero gradient.
                assert!(grads[t.offset..t.offset + cfg.d_model].iter().all(|&g| g == 0.0));
            }
            "head" => coords.extend((t.offset..t.offset + t.len()).step_by(13)),
            _ => coords.extend(t.range()),
        }
    }
    let mut m2 = Model::<f64>::new(&cfg).unwrap();
    check("whole model", &params, &grads, Some(coords), |p| m2.forward(p, &tokens, None).unwrap());
}

#[test]
fn fast_exp_accuracy() {
    // The f32 exp used by softmax, SiLU and cross-entropy vs the exact value.
    let mut worst = 0.0f64;
    let mut x = -87.0f32;
    while x <= 88.0 {
        let exact = (x as f64).exp();
        let rel = ((kernels::exp_f32(x) as f64) - exact).abs() / exact;
        worst = worst.max(rel);
        x += 0.001;
    }
    println!("exp_f32: max relative error {worst:.2e} on [-87, 88]");
    // f32 has 2^-24 = 6e-8 relative spacing; the Cephes polynomial is within
    // ~2 ulp, so 3e-7 bounds it with margin.
    assert!(worst < 3e-7, "{worst}");
    assert!(kernels::exp_f32(f32::NAN).is_nan());
    assert_eq!(kernels::exp_f32(0.0), 1.0);
}
