//! Micro-benchmark of the matrix products of one `bench-tiny` step (best of
//! N runs, GFLOP/s), to see how far each shape is from the kernel's peak.
//!
//! `cargo run --release -p trainer --example kernels -- --threads 1`

use std::time::Instant;

use trainer::kernels;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize =
        args.iter().position(|a| a == "--threads").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let rows = 2048;
    // (label, d_in, d_out)
    let shapes = [("qkv", 128, 384), ("wo", 128, 128), ("w13", 128, 768), ("w2", 384, 128), ("head", 128, 256)];
    pool.install(|| {
        let best = |f: &mut dyn FnMut()| {
            let mut b = f64::MAX;
            for _ in 0..20 {
                let t = Instant::now();
                f();
                b = b.min(t.elapsed().as_secs_f64());
            }
            b * 1e3
        };
        let (d, h) = (128, 384);
        for (m, n, k) in [(128, 128, 32), (128, 32, 128), (128, 128, 128)] {
            let a = vec![0.5f32; m * k];
            let b = vec![0.25f32; k * n];
            let mut c = vec![0f32; m * n];
            let t = best(&mut || {
                for _ in 0..64 {
                    kernels::matmul(m, n, k, &mut c, (n, 1), false, &a, (k, 1), &b, (n, 1));
                }
            }) / 64.0;
            println!("gemm {m}x{n}x{k}: {:.1} us, {:.1} GFLOP/s", t * 1e3, 2.0 * (m * n * k) as f64 / t / 1e6);
        }
        let ab: Vec<f32> = (0..rows * 2 * h).map(|i| ((i % 17) as f32 - 8.0) * 0.3).collect();
        let mut u = vec![0f32; rows * h];
        let mut dab = vec![0f32; rows * 2 * h];
        println!("swiglu fwd {:.2} ms", best(&mut || kernels::swiglu_fwd(&ab, &mut u, h)));
        println!("swiglu bwd {:.2} ms", best(&mut || kernels::swiglu_bwd(&ab, &u, &mut dab, h)));
        let s = kernels::AttnShape { n_seq: 16, ctx: 128, n_head: 4, hd: 32 };
        let hm: Vec<f32> = (0..kernels::heads_len(s)).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
        let mut out = vec![0f32; rows * d];
        let mut stats = vec![0f32; 16 * 4 * 128 * 2];
        let mut dhm = vec![0f32; hm.len()];
        println!("attention fwd {:.2} ms", best(&mut || kernels::attention_fwd(&hm, &mut out, &mut stats, s)));
        let dout = out.clone();
        println!("attention bwd {:.2} ms", best(&mut || kernels::attention_bwd(&hm, &stats, &dout, &mut dhm, s)));
        let (cos, sin) = kernels::rope_table::<f32>(128, 32, 10000.0);
        let mut qkv = vec![0.5f32; rows * 3 * d];
        let mut hm2 = hm.clone();
        println!("rope+layout {:.2} ms", best(&mut || kernels::rope_heads(&mut qkv, &mut hm2, s, &cos, &sin, false)));
        let mut logits: Vec<f32> = (0..rows * 256).map(|i| ((i % 7) as f32 - 3.0) * 0.2).collect();
        let targets = vec![3u8; rows];
        let mut losses = vec![0f32; rows];
        println!("ce fwd {:.2} ms", best(&mut || kernels::cross_entropy_fwd(&logits, &targets, &mut losses, 256)));
        println!("ce bwd {:.2} ms", best(&mut || kernels::cross_entropy_bwd(&mut logits, &targets, 256, 1e-3)));
        for (label, din, dout) in shapes {
            let x = vec![0.5f32; rows * din];
            let w = vec![0.25f32; dout * din];
            let mut y = vec![0f32; rows * dout];
            let mut dx = vec![0f32; rows * din];
            let mut dw = vec![0f32; dout * din];
            let flops = 2.0 * (rows * din * dout) as f64;
            let best = |f: &mut dyn FnMut()| {
                let mut b = f64::MAX;
                for _ in 0..20 {
                    let t = Instant::now();
                    f();
                    b = b.min(t.elapsed().as_secs_f64());
                }
                b
            };
            let tf = best(&mut || kernels::linear_fwd(&x, &w, &mut y, rows, din, dout));
            let tx = best(&mut || kernels::linear_bwd_x(&y, &w, &mut dx, rows, din, dout, false));
            let tw = best(&mut || kernels::linear_bwd_w(&y, &x, &mut dw, rows, din, dout, false));
            println!(
                "{label:>5} ({rows}x{din} -> {dout}): fwd {:6.1} GFLOP/s ({:.2} ms), bwd x {:6.1}, bwd w {:6.1}",
                flops / tf / 1e9,
                tf * 1e3,
                flops / tx / 1e9,
                flops / tw / 1e9
            );
        }
    });
}
