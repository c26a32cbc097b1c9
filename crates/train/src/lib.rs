//! `host-train`. Owns: a format SPEC wrapped as the trainer's `Compressor`, and the `host
//! train` run (loop, checkpoints, resume, metrics, record). Never: implements model math (the
//! `trainer` crate does), builds formats other than through `host_core::session`, or depends
//! on `host-fit`, `host-sweep` or the binary.
//!
//! `host train`: a Llama-style byte-level model trained over a format plugin
//! (quantization-aware, straight-through), on the built-in synthetic data or
//! on files.
//!
//! The trainer crate knows nothing of plugins: here a format SPEC (the same
//! syntax as `host rank`) becomes a [`trainer::compress::Compressor`]. The
//! run writes into `--out` (default `runs/<model>-<format>-s<seed>`):
//! `checkpoint.safetensors` (parameters, Adam moments and the run's
//! progress, rewritten atomically every `--checkpoint-every` steps),
//! `metrics.jsonl` (one line per logged step and per evaluation), and
//! `result.json` (the final record, the same object `--json` prints; `host
//! fit` reads these). `--resume` continues from the checkpoint and ends with
//! exactly the losses of an uninterrupted run.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use sdk::Shape;
use serde_json::{Value, json};
use trainer::backend::{Backend, MatmulPrecision};
use trainer::compress::Compressor;
use trainer::data::{Data, Source};
use trainer::device::{self, Device};
use trainer::model::{self, ModelConfig};
use trainer::train::TrainOptions;

use host_core::format::HostFormat;
use host_core::law::Law;
use host_core::session::{load_or_search, prepare_one, with_threads};

/// `host train`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Model size preset: `bench-tiny` (speed reference) or the ladder `lm-50k` ... `lm-3m`
    /// (`host train --list-models` prints them).
    #[arg(long, default_value = "lm-200k")]
    pub model: String,
    /// Weight format SPEC (as for `host rank`), applied to every linear layer's weights in the
    /// forward pass; embeddings and head stay full precision. `none` = plain training.
    #[arg(long, default_value = "none", value_name = "SPEC")]
    pub format: String,
    /// Activation format SPEC, applied to the input of every linear layer.
    #[arg(long, default_value = "none", value_name = "SPEC")]
    pub act_format: String,
    /// Data budget in tokens per non-embedding parameter.
    #[arg(long, default_value_t = 20.0, value_name = "R", conflicts_with = "steps")]
    pub tokens_per_param: f64,
    /// Train exactly this many steps instead.
    #[arg(long, value_name = "S")]
    pub steps: Option<u64>,
    /// `synthetic` (Zipf-distributed facts with a known irreducible loss; default),
    /// `synthetic:facts=K,alpha=A,seed=S`, or a text/byte file or folder of files.
    #[arg(long, default_value = "synthetic", value_name = "SOURCE")]
    pub data: String,
    /// Run seed: initialization, data order and stochastic formats.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: RAYON_NUM_THREADS, else all cores). Losses do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output folder (default `runs/<model>-<format>-s<seed>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in `--out` from its checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Print the final record as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Peak learning rate (default: the preset's).
    #[arg(long)]
    pub lr: Option<f32>,
    /// Evaluate on the validation windows every this many steps (and at the end).
    #[arg(long, default_value_t = 200)]
    pub eval_every: u64,
    /// Validation windows of `ctx + 1` bytes.
    #[arg(long, default_value_t = 64)]
    pub eval_windows: usize,
    /// Write a checkpoint every this many steps (and at the end).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
    /// Plugins providing the formats (repeatable). Default: `./plugins` if that folder exists,
    /// else the folder holding the host executable (where `cargo build --release` puts the
    /// plugin libraries), then the folders in HOST_PLUGIN_PATH (colon-separated).
    #[arg(long, value_name = "PATH")]
    pub plugins: Vec<PathBuf>,
    /// Law for the rho of the formats in the record: a law file or a shipped law's name
    /// (default: the built-in law).
    #[arg(long, value_name = "FILE|NAME")]
    pub law: Option<PathBuf>,
    /// Print the model presets (sizes, non-embedding parameters, learning rates) and exit.
    #[arg(long)]
    pub list_models: bool,
    /// Where to train: `cpu` (the built-in trainer) or `cuda` (the GPU backend library; says in
    /// one line what is missing when it cannot run).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Gradient accumulation: run each step's batch in this many equal micro-batches and average
    /// their gradients (activation memory of one micro-batch; the same batch and schedule). Must
    /// divide the preset's batch. CPU only for now.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub accum: usize,
    /// Tokens per optimizer step (batch x ctx): sets the batch to T / ctx sequences instead of
    /// the preset's. Must be a multiple of the preset's context.
    #[arg(long, value_name = "T")]
    pub batch_tokens: Option<usize>,
    /// Precision of the linear layers' matrix products on the CUDA backend: `fp32` (plain
    /// SGEMM), `tf32` or `bf16` (tensor cores round each product's inputs to TF32 / BF16;
    /// fp32 accumulation). Weights, gradients and optimizer state stay fp32 with every choice.
    /// The CPU backend supports only `fp32`. CUDA run records name it (`matmul`).
    #[arg(long, default_value = "fp32", value_name = "PRECISION")]
    pub matmul: String,
}

/// The `--list-models` table.
fn model_table() -> String {
    let mut s = format!(
        "{:<11} {:>6} {:>5} {:>6} {:>7} {:>5} {:>6} {:>9} {:>10}\n",
        "preset", "layers", "heads", "width", "hidden", "ctx", "batch", "lr", "N (non-emb)"
    );
    for name in trainer::model::preset_names() {
        if let Ok(c) = model::preset(name) {
            s += &format!(
                "{:<11} {:>6} {:>5} {:>6} {:>7} {:>5} {:>6} {:>9.1e} {:>10}\n",
                c.name,
                c.n_layer,
                c.n_head,
                c.d_model,
                c.d_hidden,
                c.ctx,
                c.batch,
                c.lr,
                c.non_embedding_params()
            );
        }
    }
    s
}

/// A plugin format as the trainer's compressor.
struct PluginCompressor {
    spec: String,
    format: Box<dyn HostFormat>,
    /// `(kind, parameter table as TOML)` when `spec` is one format of a shipped plugin.
    native: Option<(String, String)>,
}

/// Plugins whose kinds an accelerator may run natively (`backends/cuda/src/formats`, checked
/// against these plugins bit for bit).
const NATIVE_PLUGINS: [&str; 3] = ["int", "fp", "block"];

/// `(kind, full parameter table as TOML)` of `spec` when it is a single format (no composition)
/// of one of [`NATIVE_PLUGINS`] (the preset's parameters, then the SPEC's overrides; the
/// accelerator fills in the defaults and decides whether it has kernels for it).
pub fn native_spec(libs: &[host_core::loader::Loaded], spec: &str) -> Option<(String, String)> {
    let s = spec.trim();
    if s.contains('+') || s.starts_with("outliers:") {
        return None;
    }
    let r = host_core::spec::resolve(libs, s).ok()?;
    NATIVE_PLUGINS.contains(&libs[r.plugin].lib.info.name.as_str()).then(|| (r.kind, r.params.to_string()))
}

impl Compressor for PluginCompressor {
    fn compress(
        &self,
        input: &[f32],
        output: &mut [f32],
        mask: &mut [f32],
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> Result<(), String> {
        self.format
            .run(input, Shape::new(rows, cols), seed, true, &mut |y, m| {
                output.copy_from_slice(y);
                if let Some(m) = m {
                    mask.copy_from_slice(m);
                }
            })
            .map_err(|e| format!("format `{}`: {e}", self.spec))
    }

    /// The format's own straight-through backward (`sdk::Format::backward`:
    /// the element-wise mask unless the format says otherwise, e.g. a trust
    /// mask in a rotated basis), handed the forward pass's mask.
    fn backward(
        &self,
        input: &[f32],
        mask: &[f32],
        grad: &mut [f32],
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> Result<(), String> {
        self.format
            .backward(input, Shape::new(rows, cols), seed, Some(mask), grad)
            .map_err(|e| format!("format `{}`: {e}", self.spec))
    }

    fn native(&self) -> Option<(String, String)> {
        self.native.clone()
    }
}

/// The weight compressor of `spec` for a model of `cfg`, checked on its weight shapes.
pub fn plugin_compressor(
    libs: &[host_core::loader::Loaded],
    spec: &str,
    cfg: &ModelConfig,
) -> Result<Box<dyn Compressor>, String> {
    compressor(libs, spec, &weight_shapes(cfg))?.ok_or_else(|| "no format given".to_string())
}

/// The weight shapes a model of `cfg` hands to a weight compressor.
fn weight_shapes(cfg: &ModelConfig) -> Vec<(String, usize, usize)> {
    let (d, h) = (cfg.d_model, cfg.d_hidden);
    vec![
        ("attention weights (q, k, v, o)".to_string(), d, d),
        ("MLP w1/w3".to_string(), h, d),
        ("MLP w2".to_string(), d, h),
    ]
}

/// What the record says about one format.
#[derive(Debug, Clone, Default)]
struct FormatFacts {
    gmse: Option<f64>,
    family: Option<String>,
    bits: Option<f64>,
    rho: Option<f64>,
}

fn is_none(spec: &str) -> bool {
    spec.trim().is_empty() || spec.trim() == "none"
}

/// Builds the compressor for `spec` and checks it on every shape it will see.
fn compressor(
    libs: &[host_core::loader::Loaded],
    spec: &str,
    shapes: &[(String, usize, usize)],
) -> Result<Option<Box<dyn Compressor>>, String> {
    if is_none(spec) {
        return Ok(None);
    }
    let p = prepare_one(libs, spec, Shape::new(shapes[0].1, shapes[0].2))?;
    for (name, rows, cols) in shapes {
        p.format.info(Shape::new(*rows, *cols)).map_err(|e| {
            format!("format `{spec}` fails on {name} ({rows}x{cols}): {e}; choose a format whose block fits")
        })?;
    }
    let native = native_spec(libs, spec);
    Ok(Some(Box::new(PluginCompressor { spec: spec.trim().to_string(), format: p.format, native })))
}

fn facts(
    spec: &str,
    libs: &[host_core::loader::Loaded],
    threads: Option<usize>,
    law: &Law,
) -> Result<FormatFacts, String> {
    if is_none(spec) {
        return Ok(FormatFacts::default());
    }
    let m = host_core::session::measure_loaded(libs, &[spec.to_string()], threads)?;
    let m = m[spec].clone().map_err(|e| format!("format `{spec}`: {e}"))?;
    let rho = law.rho(&m.family, m.gmse);
    Ok(FormatFacts { gmse: Some(m.gmse), family: Some(m.family), bits: Some(m.bits), rho: Some(rho) })
}

/// The folder name of a run.
fn default_out(a: &TrainArgs) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
    };
    let mut name = format!("{}-{}", a.model, clean(&a.format));
    if !is_none(&a.act_format) {
        name += &format!("-a{}", clean(&a.act_format));
    }
    PathBuf::from("runs").join(format!("{name}-s{}", a.seed))
}

/// What a checkpoint must match to be resumed.
fn identity(a: &TrainArgs, cfg: &ModelConfig, data: &Data, total: u64) -> Value {
    json!({
        "model": cfg, "format": a.format.trim(), "act_format": a.act_format.trim(), "seed": a.seed,
        "data": data.id(), "total_steps": total,
    })
}

/// Names the precision of the matrix products in a run record (`matmul`) on every device that
/// has a choice: the CPU computes in fp32 only, and its records keep their columns.
fn name_matmul(record: &mut Value, device: Device, matmul: MatmulPrecision) {
    if device != Device::Cpu {
        record["matmul"] = matmul.name().into();
    }
}

/// Appends one JSON line to `path`.
fn append_line(path: &Path, v: &Value) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{v}").map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `host train` and prints the outcome.
pub fn run(a: TrainArgs, verbose: bool) -> Result<(), String> {
    if a.list_models {
        print!("{}", model_table());
        return Ok(());
    }
    let result = execute(&a, verbose)?;
    if a.json {
        println!("{}", serde_json::to_string(&result).map_err(|e| e.to_string())?);
    } else {
        let f = |k: &str| result[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{} ({} non-embedding params), format {}{}: {} steps, {} tokens",
            result["model"].as_str().unwrap_or(""),
            result["non_embedding_params"],
            a.format.trim(),
            if is_none(&a.act_format) { String::new() } else { format!(", activations {}", a.act_format.trim()) },
            result["steps"],
            result["tokens"]
        );
        println!(
            "train loss {:.4}, validation loss {:.4} nats/byte{}; {:.0} tokens/s; run in {}",
            f("train_loss"),
            f("val_loss"),
            result["irreducible_loss"].as_f64().map(|v| format!(" (irreducible {v:.4})")).unwrap_or_default(),
            f("tokens_per_second"),
            result["out"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Trains (or resumes) one run as `a` says and returns its record (also written to
/// `OUT/result.json`). Progress goes to stderr when it is a terminal.
pub fn execute(a: &TrainArgs, verbose: bool) -> Result<Value, String> {
    let a = a.clone();
    let device = Device::parse(&a.device)?;
    let matmul = MatmulPrecision::parse(&a.matmul)?;
    device::supports(device, matmul)?;
    device::check(device)?;
    let mut cfg = model::preset(&a.model)?;
    if let Some(lr) = a.lr {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(format!("--lr must be positive (got {lr})"));
        }
        cfg.lr = lr;
    }
    if let Some(t) = a.batch_tokens {
        if t == 0 || !t.is_multiple_of(cfg.ctx) {
            return Err(format!(
                "--batch-tokens {t}: must be a positive multiple of the context of '{}' ({} tokens)",
                cfg.name, cfg.ctx
            ));
        }
        cfg.batch = t / cfg.ctx;
    }
    cfg.accum = a.accum;
    cfg.validate().map_err(|e| format!("--accum {}: {e}", a.accum))?;
    let source = Source::parse(&a.data)?;
    let data = Data::open(&source)?;
    data.check_context(cfg.ctx)?;
    let n = cfg.non_embedding_params();
    let tokens_per_step = (cfg.batch * cfg.ctx) as u64;
    let total = match a.steps {
        Some(0) => return Err("--steps must be at least 1".into()),
        Some(s) => s,
        None => {
            if !(a.tokens_per_param > 0.0 && a.tokens_per_param.is_finite()) {
                return Err(format!("--tokens-per-param must be positive (got {})", a.tokens_per_param));
            }
            ((a.tokens_per_param * n as f64) / tokens_per_step as f64).ceil().max(1.0) as u64
        }
    };
    if a.eval_every == 0 || a.checkpoint_every == 0 || a.eval_windows == 0 {
        return Err("--eval-every, --checkpoint-every and --eval-windows must be at least 1".into());
    }
    let law = match &a.law {
        Some(p) => Law::load(p)?,
        None => Law::default_law(),
    };
    let out = a.out.clone().unwrap_or_else(|| default_out(&a));
    let ckpt = out.join("checkpoint.safetensors");
    let metrics = out.join("metrics.jsonl");
    let id = identity(&a, &cfg, &data, total);

    // Formats: built from the plugins, checked on every weight shape.
    let (w_comp, a_comp, w_facts, a_facts) = if is_none(&a.format) && is_none(&a.act_format) {
        (None, None, FormatFacts::default(), FormatFacts::default())
    } else {
        let (libs, d) = load_or_search(&a.plugins);
        d.report(verbose);
        let libs = libs?;
        let ashapes = vec![
            // Activations are compressed one micro-batch at a time.
            ("attention and MLP inputs".to_string(), cfg.micro_batch() * cfg.ctx, cfg.d_model),
            ("MLP w2 input".to_string(), cfg.micro_batch() * cfg.ctx, cfg.d_hidden),
        ];
        let w = compressor(&libs, &a.format, &weight_shapes(&cfg))?;
        let act = compressor(&libs, &a.act_format, &ashapes)?;
        let wf = facts(&a.format, &libs, a.threads, &law)?;
        let af = facts(&a.act_format, &libs, a.threads, &law)?;
        (w, act, wf, af)
    };

    std::fs::create_dir_all(&out).map_err(|e| format!("--out {}: {e}", out.display()))?;
    let opts = TrainOptions { seed: a.seed, total_steps: total, weight: w_comp, act: a_comp };
    let (mut t, mut losses, mut prior_seconds) = if a.resume {
        let (tensors, meta) = trainer::checkpoint::load(&ckpt)
            .map_err(|e| format!("--resume: {e} (no checkpoint to resume in {})", out.display()))?;
        if meta["identity"] != id {
            return Err(format!(
                "--resume: the checkpoint in {} belongs to a different run ({}); use another --out or the same options",
                out.display(),
                meta["identity"]
            ));
        }
        let step = meta["step"].as_u64().ok_or("--resume: checkpoint has no step")?;
        let losses: Vec<f32> = serde_json::from_value(meta["losses"].clone()).map_err(|e| e.to_string())?;
        let t = device::create(device, cfg.clone(), opts, matmul, Some((tensors, step)))?;
        (t, losses, meta["seconds"].as_f64().unwrap_or(0.0))
    } else {
        if ckpt.exists() {
            return Err(format!(
                "{} already holds a run; pass --resume to continue it, or choose another --out",
                out.display()
            ));
        }
        let _ = std::fs::remove_file(&metrics);
        (device::create(device, cfg.clone(), opts, matmul, None)?, Vec::new(), 0.0)
    };
    let val = data.val_batches(a.eval_windows, cfg.ctx);
    let start_step = t.step_index();
    let result = with_threads(a.threads, || -> Result<Value, String> {
        let bar = progress(total, start_step);
        let started = Instant::now();
        let mut batch = vec![0u8; cfg.batch * (cfg.ctx + 1)];
        let mut val_loss = None;
        let save = |t: &dyn Backend, losses: &[f32], seconds: f64| {
            let meta = json!({ "identity": id, "step": t.step_index(), "losses": losses, "seconds": seconds });
            trainer::checkpoint::save(&ckpt, &t.state()?, &meta)
        };
        while t.step_index() < total {
            let step = t.step_index();
            data.fill_train_batch(step, cfg.batch, cfg.ctx, a.seed, &mut batch);
            let s = match t.step(&batch) {
                Ok(s) => s,
                Err(e) => {
                    if let Some(b) = &bar {
                        b.abandon();
                    }
                    let kept = if step > start_step || a.resume { "; the last checkpoint is kept" } else { "" };
                    let _ = append_line(&metrics, &json!({"step": step, "error": e}));
                    return Err(format!("{e} (run in {}{kept})", out.display()));
                }
            };
            losses.push(s.loss);
            let done = t.step_index();
            let elapsed = started.elapsed().as_secs_f64();
            let tps = (done - start_step) as f64 * tokens_per_step as f64 / elapsed.max(1e-9);
            if let Some(b) = &bar {
                b.set_position(done);
                b.set_message(format!("loss {:.4}  {:.0} tok/s", s.loss, tps));
            }
            if done % 10 == 0 || done == total {
                let line = json!({"step": done, "loss": s.loss, "lr": s.lr, "grad_norm": s.grad_norm,
                    "tokens": done * tokens_per_step, "tokens_per_second": tps});
                append_line(&metrics, &line)?;
            }
            if done % a.eval_every == 0 || done == total {
                let v = t.eval_loss(&val)?;
                val_loss = Some(v);
                append_line(&metrics, &json!({"step": done, "val_loss": v}))?;
            }
            if done % a.checkpoint_every == 0 || done == total {
                save(t.as_ref(), &losses, prior_seconds + elapsed)?;
            }
        }
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let val_loss = match val_loss {
            Some(v) => v,
            None => t.eval_loss(&val)?,
        };
        // Train loss: mean of the last 10 % of steps (at least one), less noisy than the last batch.
        let tail = (losses.len() / 10).max(1);
        let train_loss = losses[losses.len() - tail..].iter().map(|&l| l as f64).sum::<f64>() / tail as f64;
        prior_seconds += elapsed;
        let steps_run = t.step_index() - start_step;
        let mut record = json!({
            "device": t.device(),
            "model": cfg.name,
            "format": a.format.trim(),
            "act_format": a.act_format.trim(),
            "non_embedding_params": n,
            "total_params": cfg.total_params(),
            "tokens": total * tokens_per_step,
            "steps": total,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "final_step_loss": losses.last().copied(),
            "irreducible_loss": data.irreducible_loss(cfg.ctx),
            "data": data.describe(),
            "tokens_per_second": if elapsed > 0.0 { steps_run as f64 * tokens_per_step as f64 / elapsed } else { 0.0 },
            "wall_seconds": prior_seconds,
            "seed": a.seed,
            "lr": cfg.lr,
            "threads": rayon::current_num_threads(),
            "w_gmse": w_facts.gmse, "w_family": w_facts.family, "w_bits": w_facts.bits, "w_rho": w_facts.rho,
            "a_gmse": a_facts.gmse, "a_family": a_facts.family, "a_bits": a_facts.bits, "a_rho": a_facts.rho,
            "law": law.name,
            "out": out.display().to_string(),
        });
        // Only accumulation other than 1 is recorded, so records of plain runs keep their columns.
        if cfg.accum != 1 {
            record["accum"] = cfg.accum.into();
        }
        if a.batch_tokens.is_some() {
            record["batch_tokens"] = (cfg.batch * cfg.ctx).into();
        }
        name_matmul(&mut record, device, matmul);
        if let Some(k) = t.weight_kernels() {
            // Only when a backend ran its own weight kernels, so other records keep their columns.
            record["weight_kernels"] = k.into();
        }
        Ok(record)
    })??;
    let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    trainer::checkpoint::write_atomic(&out.join("result.json"), format!("{text}\n").as_bytes())?;
    Ok(result)
}

fn progress(total: u64, at: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(total);
    b.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta}]")
            .ok()?,
    );
    b.set_position(at);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_records_name_the_matmul_precision_and_cpu_records_keep_their_columns() {
        let base = json!({"model": "lm-20k", "val_loss": 1.5});
        let mut cpu = base.clone();
        name_matmul(&mut cpu, Device::Cpu, MatmulPrecision::Fp32);
        assert_eq!(cpu, base);
        for (p, name) in
            [(MatmulPrecision::Fp32, "fp32"), (MatmulPrecision::Tf32, "tf32"), (MatmulPrecision::Bf16, "bf16")]
        {
            let mut r = base.clone();
            name_matmul(&mut r, Device::Cuda, p);
            assert_eq!(r, json!({"model": "lm-20k", "val_loss": 1.5, "matmul": name}));
        }
    }
}
