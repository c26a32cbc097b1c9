//! Training-speed benchmark: tokens/s of forward + backward + AdamW on a
//! preset (default `bench-tiny`: batch 16 x ctx 128 = 2048 tokens per step),
//! plain and with a 4-bit weight compressor (16-level grid, per-32 absmax
//! scales) as a QAT example.
//!
//! `cargo run --release -p trainer --example bench -- --threads 2 --steps 30 [--preset bench-tiny] [--act] [--profile]`

use std::time::Instant;

use trainer::compress::Compressor;
use trainer::{TrainOptions, Trainer, preset};

/// Symmetric 4-bit integer grid (-8..=7) with one absmax scale per group of
/// 32 consecutive values along a row; deterministic rounding.
struct Int4Group32;

impl Compressor for Int4Group32 {
    fn compress(
        &self,
        input: &[f32],
        output: &mut [f32],
        _mask: &mut [f32],
        _rows: usize,
        _cols: usize,
        _seed: u64,
    ) -> Result<(), String> {
        for (i, o) in input.chunks(32).zip(output.chunks_mut(32)) {
            let amax = i.iter().fold(0f32, |m, &x| m.max(x.abs()));
            if amax == 0.0 {
                o.fill(0.0);
                continue;
            }
            let s = amax / 7.0;
            let inv = 1.0 / s;
            for (y, &x) in o.iter_mut().zip(i) {
                *y = (x * inv).round().clamp(-8.0, 7.0) * s;
            }
        }
        Ok(())
    }
}

/// CPU seconds (user + system) used by this process so far, from
/// /proc/self/stat (Linux; 0 elsewhere). On a busy machine, CPU time per step
/// with one thread approximates the wall time the step would take alone.
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some(rest) = s.rsplit_once(')').map(|r| r.1) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is index 0, utime 11, stime 12 (clock ticks, 100 Hz).
    (ticks(11) + ticks(12)) / 100.0
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize =
        arg(&args, "--threads").map(|s| s.parse().map_err(|_| "bad --threads")).transpose()?.unwrap_or(1);
    let steps: usize = arg(&args, "--steps").map(|s| s.parse().map_err(|_| "bad --steps")).transpose()?.unwrap_or(30);
    let name = arg(&args, "--preset").unwrap_or_else(|| "bench-tiny".into());
    let with_act = args.iter().any(|a| a == "--act");
    let profile = args.iter().any(|a| a == "--profile");
    let cfg = preset(&name)?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;
    let tok_per_step = cfg.batch * cfg.ctx;
    // Deterministic pseudo-text bytes.
    let mut x = 0x1234_5678u64;
    let data: Vec<u8> = (0..cfg.batch * (cfg.ctx + 1) * 8)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect();
    println!(
        "preset {name}: {} layers, d {}, heads {}, hidden {}, {} tokens/step, {} threads, {steps} timed steps",
        cfg.n_layer, cfg.d_model, cfg.n_head, cfg.d_hidden, tok_per_step, threads
    );
    let mut variants: Vec<(&str, TrainOptions)> = vec![
        ("plain", TrainOptions { seed: 1, total_steps: 1000, ..Default::default() }),
        (
            "qat-w4g32",
            TrainOptions { seed: 1, total_steps: 1000, weight: Some(Box::new(Int4Group32)), ..Default::default() },
        ),
    ];
    if with_act {
        variants.push((
            "qat-w4g32+a4g32",
            TrainOptions {
                seed: 1,
                total_steps: 1000,
                weight: Some(Box::new(Int4Group32)),
                act: Some(Box::new(Int4Group32)),
            },
        ));
    }
    // The variants' steps are interleaved (plain, qat, plain, qat, ...) so that
    // changing load on a shared machine affects all of them alike; CPU time is
    // accounted per variant.
    pool.install(|| -> Result<(), String> {
        let chunk = cfg.batch * (cfg.ctx + 1);
        let n_chunks = data.len() / chunk;
        let mut runs = Vec::new();
        for (label, opts) in variants {
            let mut t = Trainer::new(cfg.clone(), opts)?;
            for s in 0..3 {
                t.step(&data[(s % n_chunks) * chunk..][..chunk])?;
            }
            t.set_profiling(profile);
            runs.push((label, t, Vec::with_capacity(steps), 0.0f64, 0.0f32));
        }
        for s in 0..steps {
            for (_, t, times, cpu, last) in runs.iter_mut() {
                let c0 = cpu_seconds();
                let t0 = Instant::now();
                *last = t.step(&data[(s % n_chunks) * chunk..][..chunk])?.loss;
                times.push(t0.elapsed().as_secs_f64());
                *cpu += cpu_seconds() - c0;
            }
        }
        let mut plain_median = None;
        for (label, t, mut times, cpu, last) in runs {
            let total: f64 = times.iter().sum();
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let median = times[times.len() / 2];
            let base = *plain_median.get_or_insert(median);
            println!(
                "{label:>16}: mean {:6.1} ms/step ({:6.0} tok/s), median {:6.1} ms ({:6.0} tok/s, {:+5.1} % vs plain), best {:6.1} ms ({:6.0} tok/s); cpu {:6.1} ms/step; loss {last:.3}",
                1e3 * total / steps as f64,
                tok_per_step as f64 * steps as f64 / total,
                1e3 * median,
                tok_per_step as f64 / median,
                100.0 * (median / base - 1.0),
                1e3 * times[0],
                tok_per_step as f64 / times[0],
                1e3 * cpu / steps as f64,
            );
            if profile {
                let mut phases = t.profile();
                phases.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
                let sum: f64 = phases.iter().map(|p| p.1).sum();
                for (n, s) in phases {
                    println!("{:>30} {:7.2} ms/step {:5.1} %", n, 1e3 * s / steps as f64, 100.0 * s / sum);
                }
            }
        }
        Ok(())
    })
}
