//! `host bench`: GMSE Monte Carlo throughput through the plugin ABI.
//!
//! For each format and thread count it times the full engine (sampling,
//! plugin call, error accumulation) on a fixed sample count, measuring the
//! format alone, and reports samples per second. It also times the two parts
//! separately (the sampler alone, the plugin call alone on one tensor) so a
//! slow result can be attributed, and the engine on all formats at once
//! (common random numbers: one sampled tensor serves every format).

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use std::path::PathBuf;

use clap::Args;
use sdk::Shape;

use crate::engine::{self, Config, Subject};
use crate::sampler;
use crate::session::{load, prepare, with_threads};
use crate::spec::parse_shape;

/// `host bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Plugin libraries or folders, as for `rank`.
    #[arg(required_unless_present_any = ["fit", "train"])]
    pub paths: Vec<PathBuf>,
    /// Time training instead: tokens/s of this model preset (e.g. `bench-tiny`), plain and with
    /// each `-f` format on the weights (default int4-absmax-g32), per thread count. Paths default
    /// to the plugin search places of `host train`.
    #[arg(long, value_name = "PRESET")]
    pub train: Option<String>,
    /// Training steps timed per configuration (after one warm-up step); the median is reported.
    #[arg(long, default_value_t = 30)]
    pub steps: u64,
    /// Time `host fit` instead: a unified fit (A, B, F, C free; alpha, beta, E, L fixed at the
    /// paper's values) of this many synthetic runs, plus 1000 bootstrap resamples.
    #[arg(long, value_name = "RUNS")]
    pub fit: Option<usize>,
    /// Formats to time (default: int4-absmax-g32 and e2m1).
    #[arg(short, long = "format", value_name = "SPEC")]
    pub formats: Vec<String>,
    /// Thread counts to time, comma-separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Samples per measurement.
    #[arg(long, default_value_t = 1 << 26)]
    pub samples: u64,
    /// Shape of each Gaussian tensor.
    #[arg(long, default_value = "256x4096", value_parser = parse_shape)]
    pub shape: Shape,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One timing.
#[derive(Debug, Serialize)]
pub struct Timing {
    /// What was timed: a format SPEC, or `sampler`.
    pub what: String,
    /// `engine` (full GMSE measurement), `sampler`, or `plugin` (compress only).
    pub part: String,
    /// Threads used.
    pub threads: usize,
    /// Samples processed.
    pub samples: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Millions of samples per second.
    pub msamples_per_s: f64,
}

fn timing(what: &str, part: &str, threads: usize, samples: u64, seconds: f64) -> Timing {
    Timing {
        what: what.into(),
        part: part.into(),
        threads,
        samples,
        seconds,
        msamples_per_s: samples as f64 / seconds / 1e6,
    }
}

/// Times a unified fit with bootstrap on `runs` synthetic runs, once per thread count.
fn run_fit(a: &BenchArgs, runs: usize) -> Result<(), String> {
    use crate::fit::{self, FitArgs, LawKind};
    let truth = [15.44, 0.13, 355.5, 0.33, 1.3, 1.0, 0.41, 1.39];
    let data = fit::synthetic_runs(&truth, runs, 0.004, 1);
    let args = FitArgs {
        runs: "synthetic".into(),
        law: LawKind::Unified,
        map: None,
        filters: vec![],
        fix: Some("alpha=0.13,beta=0.33,E=1.3,L=1".into()),
        bound: None,
        delta: 1e-3,
        bootstrap: 1000,
        seed: 0,
        threads: None,
        no_compare: true,
        force: false,
        json: false,
        plot: None,
        write_law: None,
        plugins: vec![],
    };
    let mut out = Vec::new();
    for &threads in &a.threads {
        let t = Instant::now();
        let rep = with_threads(Some(threads), || fit::report::build(&args, &data))??;
        let seconds = t.elapsed().as_secs_f64();
        out.push(serde_json::json!({
            "what": format!("unified fit, {runs} runs, 1000 bootstrap resamples"),
            "threads": threads,
            "seconds": seconds,
            "starts": rep.main.fit.starts,
            "bootstrap_failed": rep.main.failed,
        }));
        if !a.json {
            println!(
                "unified fit of {runs} runs + 1000 bootstrap resamples, {threads} thread(s): {seconds:.3} s \
                 ({} starts, {} failed resamples)",
                rep.main.fit.starts, rep.main.failed
            );
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// Times training steps of `preset`: plain, then each format on the weights. Configurations
/// take turns step by step so that a change of machine load hits them alike.
fn run_train(a: &BenchArgs, preset: &str, verbose: bool) -> Result<(), String> {
    use trainer::data::{Data, Source};
    use trainer::train::{TrainOptions, Trainer};
    let cfg = trainer::model::preset(preset)?;
    let specs = if a.formats.is_empty() { vec!["int4-absmax-g32".to_string()] } else { a.formats.clone() };
    let (libs, d) = crate::session::load_or_search(&a.paths);
    d.report(verbose);
    let libs = libs?;
    let data = Data::open(&Source::parse("synthetic")?)?;
    let tokens = (cfg.batch * cfg.ctx) as f64;
    let mut out = Vec::new();
    for &threads in &a.threads {
        let mut runs: Vec<(String, Trainer)> = Vec::new();
        let opts = || TrainOptions { seed: 0, total_steps: a.steps + 1, ..TrainOptions::default() };
        runs.push(("plain".into(), Trainer::new(cfg.clone(), opts())?));
        for s in &specs {
            let c = crate::train::plugin_compressor(&libs, s, &cfg)?;
            runs.push((s.clone(), Trainer::new(cfg.clone(), TrainOptions { weight: Some(c), ..opts() })?));
        }
        let mut times = vec![Vec::new(); runs.len()];
        let mut batch = vec![0u8; cfg.batch * (cfg.ctx + 1)];
        with_threads(Some(threads), || -> Result<(), String> {
            for step in 0..=a.steps {
                data.fill_train_batch(step, cfg.batch, cfg.ctx, 0, &mut batch);
                for (i, (_, t)) in runs.iter_mut().enumerate() {
                    let t0 = Instant::now();
                    t.step(&batch)?;
                    if step > 0 {
                        times[i].push(t0.elapsed().as_secs_f64());
                    }
                }
            }
            Ok(())
        })??;
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let plain = median(&mut times[0].clone());
        for ((name, _), t) in runs.iter().zip(&mut times) {
            let m = median(t);
            let tps = tokens / m;
            out.push(serde_json::json!({"model": preset, "weights": name, "threads": threads,
                "median_step_seconds": m, "tokens_per_second": tps, "vs_plain": m / plain - 1.0}));
            if !a.json {
                println!(
                    "{preset}, {threads} thread(s), weights {name:<18} median {:7.1} ms/step  {:8.0} tok/s  {:+.1} % vs plain",
                    1e3 * m,
                    tps,
                    100.0 * (m / plain - 1.0)
                );
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// Runs the benchmark.
pub fn run(a: BenchArgs, verbose: bool) -> Result<(), String> {
    if let Some(runs) = a.fit {
        return run_fit(&a, runs);
    }
    if let Some(preset) = &a.train {
        return run_train(&a, preset, verbose);
    }
    let (libs, d) = load(&a.paths);
    d.report(verbose);
    let specs = if a.formats.is_empty() { vec!["int4-absmax-g32".into(), "e2m1".into()] } else { a.formats.clone() };
    let (prepared, d) = prepare(&libs, &specs, a.shape);
    d.report(verbose);
    if prepared.is_empty() {
        return Err("no format could be built; nothing to time".into());
    }
    let len = a.shape.len();
    let tensors = a.samples.div_ceil(len as u64).max(1);
    let samples = tensors * len as u64;
    let mut out = Vec::new();
    for &threads in &a.threads {
        // Warm-up: one tensor per format, so that first-touch page faults and
        // lazy tables are not timed.
        let cfg = Config { shape: a.shape, seed: 1, fixed_samples: Some(len as u64), ..Config::default() };
        for p in &prepared {
            let s: [&dyn Subject; 1] = [&p.format];
            with_threads(Some(threads), || engine::measure(&s, &cfg, &mut |_, _, _| {}))?;
        }
        let t = Instant::now();
        with_threads(Some(threads), || {
            (0..tensors).into_par_iter().for_each_init(
                || vec![0f32; len],
                |x, i| {
                    sampler::fill_normal(2, i, x);
                    std::hint::black_box(&x);
                },
            )
        })?;
        out.push(timing("sampler", "sampler", threads, samples, t.elapsed().as_secs_f64()));
        let cfg = Config { shape: a.shape, seed: 2, fixed_samples: Some(samples), ..Config::default() };
        for p in &prepared {
            let s: [&dyn Subject; 1] = [&p.format];
            let t = Instant::now();
            let r = with_threads(Some(threads), || engine::measure(&s, &cfg, &mut |_, _, _| {}))?;
            let dt = t.elapsed().as_secs_f64();
            if let Err(e) = &r[0] {
                return Err(format!("format `{}`: {e}", p.spec));
            }
            out.push(timing(&p.spec, "engine", threads, samples, dt));
            // Plugin call alone, on one tensor per task.
            let mut x = vec![0f32; len];
            sampler::fill_normal(3, 0, &mut x);
            let t = Instant::now();
            with_threads(Some(threads), || {
                (0..tensors).into_par_iter().try_for_each(|i| {
                    p.format.with_output(&x, a.shape, i, &mut |y| {
                        std::hint::black_box(y);
                    })
                })
            })??;
            out.push(timing(&p.spec, "plugin", threads, samples, t.elapsed().as_secs_f64()));
        }
        if prepared.len() > 1 {
            // How a ranking runs: every format on each sampled tensor. Counted
            // as format-samples (each format's samples added up).
            let all: Vec<&dyn Subject> = prepared.iter().map(|p| &p.format as &dyn Subject).collect();
            let t = Instant::now();
            with_threads(Some(threads), || engine::measure(&all, &cfg, &mut |_, _, _| {}))?;
            let what = format!("all {} formats, shared tensors", all.len());
            out.push(timing(&what, "engine", threads, samples * all.len() as u64, t.elapsed().as_secs_f64()));
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
    } else {
        let rows: Vec<Vec<String>> = out
            .iter()
            .map(|t| {
                vec![
                    t.what.clone(),
                    t.part.clone(),
                    t.threads.to_string(),
                    format!("{:.0}", t.samples as f64 / 1e6),
                    format!("{:.3}", t.seconds),
                    format!("{:.0}", t.msamples_per_s),
                ]
            })
            .collect();
        print!("{}", crate::output::table(&["what", "part", "threads", "M samples", "seconds", "M samples/s"], &rows));
        println!("# engine = sample + compress through the ABI + accumulate error (the GMSE throughput);");
        println!("# plugin = the compress call alone; sampler = Gaussian tensors alone. The machine is shared:");
        println!("# repeat a few times and compare rows of one run.");
    }
    Ok(())
}
