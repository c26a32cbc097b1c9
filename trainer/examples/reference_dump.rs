//! Writes everything an independent implementation needs to replay one
//! `host train` run exactly, and what our trainer computed on it, for
//! `tools/reference/train_torch.py` (the PyTorch reference) to compare.
//!
//! ```text
//! cargo run --release -p trainer --example reference_dump -- \
//!     --model lm-200k --data data/shakespeare --seed 0 --out runs/ref-s0 \
//!     [--tokens-per-param 20 | --steps S] [--eval-windows 64] [--threads 1] [--train]
//! ```
//!
//! Files written to `--out`:
//! - `meta.json`: the model config, seed, total steps, eval windows, and the
//!   optimizer constants (`trainer::optim`).
//! - `init.safetensors`: the step-0 parameters (tensor names as in
//!   `ParamLayout`, e.g. `blocks.0.wq`, shapes `[out, in]`), the exact
//!   parameters `host train --seed S` starts from.
//! - `batches.u8`: the training batch of every step, `total x batch x (ctx+1)`
//!   bytes, the exact batches `host train --seed S` sees.
//! - `val.u8`: the validation windows (`eval_windows x (ctx+1)` bytes).
//! - `grads0.safetensors`: the gradient of the mean loss at step 0 on batch
//!   0 in f32 (the training path) and in f64 (`f64.` prefix; exact `exp`),
//!   plus `meta.json` fields `loss0_f32` and `loss0_f64`.
//! - with `--train`: `rust_run.json`, the run itself (`Trainer` exactly as
//!   `host train` drives it): per-step loss, gradient norm and learning rate,
//!   and the final validation loss.
//!
//! Batches are dumped rather than re-implemented in Python so the comparison
//! exercises the model and optimizer only; the sampler is tested in Rust
//! (`trainer/tests/data.rs`).

use std::path::PathBuf;

use serde_json::json;
use trainer::data::{Data, Source};
use trainer::model::Model;
use trainer::{TrainOptions, Trainer, optim, preset};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn parse<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match arg(args, name) {
        Some(s) => s.parse().map_err(|_| format!("bad value {s:?} for {name}")),
        None => Ok(default),
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let model = arg(&args, "--model").unwrap_or_else(|| "lm-200k".into());
    let data_spec = arg(&args, "--data").ok_or("pass --data (e.g. data/shakespeare)")?;
    let seed: u64 = parse(&args, "--seed", 0)?;
    let tpp: f64 = parse(&args, "--tokens-per-param", 20.0)?;
    let eval_windows: usize = parse(&args, "--eval-windows", 64)?;
    let threads: usize = parse(&args, "--threads", 1)?;
    let out = PathBuf::from(arg(&args, "--out").ok_or("pass --out DIR")?);
    let train = args.iter().any(|a| a == "--train");
    let mut cfg = preset(&model)?;
    if let Some(lr) = arg(&args, "--lr") {
        cfg.lr = lr.parse().map_err(|_| format!("bad --lr {lr:?}"))?;
    }
    let data = Data::open(&Source::parse(&data_spec)?)?;
    data.check_context(cfg.ctx)?;
    // The same step count as `host train` (crates/train/src/lib.rs).
    let tokens_per_step = (cfg.batch * cfg.ctx) as u64;
    let total: u64 = match arg(&args, "--steps") {
        Some(s) => s.parse().map_err(|_| format!("bad --steps {s:?}"))?,
        None => ((tpp * cfg.non_embedding_params() as f64) / tokens_per_step as f64).ceil().max(1.0) as u64,
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("--out {}: {e}", out.display()))?;
    let w = cfg.ctx + 1;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;
    pool.install(|| -> Result<(), String> {
        let opts = || TrainOptions { seed, total_steps: total, ..Default::default() };
        let mut t = Trainer::new(cfg.clone(), opts())?;
        let layout = t.layout().clone();
        let named = |v: &[f32], prefix: &str| -> trainer::checkpoint::Tensors {
            layout.tensors.iter().map(|p| (format!("{prefix}{}", p.name), p.view(v).to_owned())).collect()
        };
        trainer::checkpoint::save(&out.join("init.safetensors"), &named(t.params(), ""), &json!({}))?;

        let mut batches = vec![0u8; total as usize * cfg.batch * w];
        for (s, b) in batches.chunks_exact_mut(cfg.batch * w).enumerate() {
            data.fill_train_batch(s as u64, cfg.batch, cfg.ctx, seed, b);
        }
        std::fs::write(out.join("batches.u8"), &batches).map_err(|e| e.to_string())?;
        let val = data.val_batches(eval_windows, cfg.ctx);
        std::fs::write(out.join("val.u8"), &val).map_err(|e| e.to_string())?;

        // Step-0 gradients, f32 (training path) and f64 (exact exp, f64 sums).
        let b0 = &batches[..cfg.batch * w];
        let mut m32 = Model::<f32>::new(&cfg)?;
        let mut g32 = vec![0f32; layout.total];
        let loss32 = m32.forward(t.params(), b0, None)?;
        m32.backward(t.params(), &mut g32);
        let p64: Vec<f64> = t.params().iter().map(|&x| x as f64).collect();
        let mut m64 = Model::<f64>::new(&cfg)?;
        let mut g64 = vec![0f64; layout.total];
        let loss64 = m64.forward(&p64, b0, None)?;
        m64.backward(&p64, &mut g64);
        let g64_as32: Vec<f32> = g64.iter().map(|&x| x as f32).collect();
        let mut grads = named(&g32, "");
        grads.extend(named(&g64_as32, "f64."));
        trainer::checkpoint::save(&out.join("grads0.safetensors"), &grads, &json!({}))?;

        let meta = json!({
            "model": cfg, "seed": seed, "total_steps": total, "eval_windows": val.len() / w,
            "data": data_spec, "tokens_per_param": tpp,
            "non_embedding_params": cfg.non_embedding_params(),
            "optim": {
                "beta1": optim::BETA1, "beta2": optim::BETA2, "eps": optim::EPS,
                "weight_decay": optim::WEIGHT_DECAY, "clip_norm": optim::CLIP_NORM,
                "warmup_frac": optim::WARMUP_FRAC, "min_lr_frac": optim::MIN_LR_FRAC,
            },
            "loss0_f32": loss32, "loss0_f64": loss64,
        });
        let text = serde_json::to_string_pretty(&meta).map_err(|e| e.to_string())?;
        std::fs::write(out.join("meta.json"), text).map_err(|e| e.to_string())?;
        println!("wrote {} ({} steps, {} validation windows)", out.display(), total, val.len() / w);

        if train {
            let (mut loss, mut gnorm, mut lr) = (Vec::new(), Vec::new(), Vec::new());
            for b in batches.chunks_exact(cfg.batch * w) {
                let s = t.step(b)?;
                loss.push(s.loss);
                gnorm.push(s.grad_norm);
                lr.push(s.lr);
            }
            let val_loss = t.eval_loss(&val)?;
            let rec = json!({"loss": loss, "grad_norm": gnorm, "lr": lr, "val_loss": val_loss});
            std::fs::write(out.join("rust_run.json"), rec.to_string()).map_err(|e| e.to_string())?;
            println!("trained {total} steps: val_loss {val_loss:.5}");
        }
        Ok(())
    })
}
