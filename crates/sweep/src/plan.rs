//! The plan: one job per GMSE measurement (one format x one distribution) and
//! one per training run, each with a stable content hash of its full
//! configuration, written to `DIR/manifest.json`.
//!
//! The hash is 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime
//! 0x100000001b3) over the bytes of the job's canonical JSON configuration
//! (objects with keys sorted, no whitespace, numbers as serde_json prints
//! them), written as 16 lowercase hex digits. The configuration holds
//! everything that determines the result: the SPEC, the plugins that build it
//! (name, version, SDK version) with the resolved kind and full parameter
//! table, the distribution, shape, precision and seed (and, for training,
//! the model, data, budget, seed and the GMSE-facts context of the record);
//! not the experiment's name or index, so the same job in two experiments
//! has the same hash. Plugin parameters are the kind's full table (documented
//! defaults included), and `versions` holds the host's and the trainer's
//! `RESULTS_VERSION`s, so a changed default or a changed trainer gives a new
//! hash. A job's *slot* is the hash of its configuration without `plugins`,
//! `versions` and `schema`: the job as the experiment file writes it. A result
//! whose slot matches a planned job but whose hash does not is *stale* (see
//! [`super::stale`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::exp::Experiment;
use host_core::loader::Loaded;
use host_core::spec;
use trainer::backend::MatmulPrecision;

/// Version of the job configuration schema (part of every hash).
pub const SCHEMA: u32 = 2;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Canonical JSON text: keys sorted at every level, no whitespace.
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // With serde_json's default map (sorted) this is the plain text; the
    // explicit sort keeps it canonical if `preserve_order` is ever enabled.
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(&sorted(v), &mut out);
    out
}

/// The job hash of a configuration: FNV-1a 64 of its canonical JSON, 16 hex digits.
pub fn job_hash(config: &Value) -> String {
    format!("{:016x}", fnv1a64(canonical(config).as_bytes()))
}

/// One job of the plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    /// Position in the plan, 0..n-1 (array task index).
    pub index: usize,
    /// Content hash of `config`.
    pub hash: String,
    /// `gmse` or `train`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short description for progress and status lines.
    pub what: String,
    /// The full configuration (what the hash covers).
    pub config: Value,
    /// The job as the experiment writes it (see [`slot`]); results of older code or plugin
    /// defaults share it.
    #[serde(default)]
    pub slot: String,
}

/// Keys of a configuration that say which code and parameters produced a result rather than
/// which job it is.
const IDENTITY_KEYS: [&str; 3] = ["plugins", "versions", "schema"];

/// The slot of a configuration: FNV-1a 64 of its canonical JSON without [`IDENTITY_KEYS`].
pub fn slot(config: &Value) -> String {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        for k in IDENTITY_KEYS {
            o.remove(k);
        }
    }
    job_hash(&c)
}

/// The code versions every job's configuration carries.
fn versions(train: bool) -> Value {
    let mut v = json!({"host": host_core::engine::RESULTS_VERSION});
    if train {
        v["trainer"] = json!(trainer::RESULTS_VERSION);
    }
    v
}

/// The whole plan (the manifest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Schema version.
    pub sweep: u32,
    /// Experiment name.
    pub name: String,
    /// The experiment file (absolute).
    pub experiment: PathBuf,
    /// The results folder (absolute).
    pub results: PathBuf,
    /// Plugin paths (absolute).
    pub plugins: Vec<PathBuf>,
    /// How job hashes are computed.
    pub hash: String,
    /// The experiment's `[report]` table, as JSON (for `host report`).
    pub report: Value,
    /// The jobs, in order.
    pub jobs: Vec<Job>,
}

/// Absolute form of `p` (relative to the current folder), without touching the file system.
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The default results folder: `<stem>.results` beside the experiment file.
pub fn default_results(exp: &Path) -> PathBuf {
    let stem = exp.file_stem().and_then(|s| s.to_str()).unwrap_or("experiment");
    exp.with_file_name(format!("{stem}.results"))
}

/// Identity of the plugins and resolved parameters behind `spec`.
fn identity(libs: &[Loaded], spec_text: &str, plugin_paths: &[PathBuf]) -> Result<Value, String> {
    let mut parts = Vec::new();
    for part in spec::split_parts(spec_text) {
        let head = part.split(':').next().unwrap_or("").trim();
        if head == "outliers" {
            let table = spec::parse_overrides(part.split_once(':').map(|x| x.1).unwrap_or(""))
                .map_err(|e| format!("format `{spec_text}`: {e}"))?;
            parts.push(json!({"plugin": "host", "version": env!("CARGO_PKG_VERSION"), "kind": "outliers",
                "params": serde_json::to_value(&table).map_err(|e| e.to_string())?}));
            continue;
        }
        let r = spec::resolve(libs, part).map_err(|e| {
            if libs.is_empty() {
                format!(
                    "{e} (no plugin could be loaded from {}; build them with `cargo build --release` or set `plugins`)",
                    plugin_paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                )
            } else {
                e
            }
        })?;
        let info = &libs[r.plugin].lib.info;
        let params = r.full_params(libs)?;
        parts.push(json!({
            "plugin": info.name, "version": info.version, "sdk_version": info.sdk_version,
            "kind": r.kind, "params": serde_json::to_value(&params).map_err(|e| e.to_string())?,
        }));
    }
    Ok(Value::Array(parts))
}

/// Identity of a `file:` distribution: its path, size and FNV-1a of its bytes.
fn dist_identity(name: &str) -> Result<Value, String> {
    match name.strip_prefix("file:") {
        None => Ok(Value::Null),
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("distribution `{name}`: {path}: {e}"))?;
            Ok(json!({"bytes": bytes.len(), "fnv1a64": format!("{:016x}", fnv1a64(&bytes))}))
        }
    }
}

/// The GMSE context of training records (`host train` measures its formats at the engine's
/// default configuration and converts with the built-in law).
fn facts_context() -> Value {
    let c = host_core::engine::Config::default();
    json!({"shape": format!("{}x{}", c.shape.rows, c.shape.cols), "dist": "gaussian", "seed": c.seed,
        "target_rse": c.target_rse, "max_samples": c.max_samples, "law": "default"})
}

/// Builds the plan of `exp` (read from `exp_path`) against the loaded plugins.
pub fn build(exp: &Experiment, exp_path: &Path, results: &Path, libs: &[Loaded]) -> Result<Manifest, String> {
    let plugin_paths: Vec<PathBuf> = exp.plugin_paths().iter().map(|p| absolute(p)).collect();
    let name = exp
        .name
        .clone()
        .unwrap_or_else(|| exp_path.file_stem().and_then(|s| s.to_str()).unwrap_or("experiment").to_string());
    let mut jobs: Vec<Job> = Vec::new();
    let mut push = |kind: &str, what: String, config: Value| {
        let hash = job_hash(&config);
        if !jobs.iter().any(|j| j.hash == hash) {
            let slot = slot(&config);
            jobs.push(Job { index: jobs.len(), hash, kind: kind.to_string(), what, config, slot });
        }
    };
    let g = &exp.gmse;
    let specs = exp.format_specs().map_err(|e| format!("{}: {e}", exp_path.display()))?;
    let mut dists = Vec::new();
    for d in &g.distributions {
        dists.push((d.0.clone(), dist_identity(&d.0)?));
    }
    for s in &specs {
        let plugins = identity(libs, s, &plugin_paths).map_err(|e| format!("{}: {e}", exp_path.display()))?;
        for (d, did) in &dists {
            let config = json!({
                "schema": SCHEMA, "type": "gmse", "format": s, "plugins": plugins, "dist": d, "dist_file": did,
                "shape": g.shape.to_string(), "seed": g.seed,
                "target_rse": if g.samples.is_some() { None } else { Some(g.target_rse.map(|x| x.0).unwrap_or(1e-3)) },
                "samples": g.samples, "max_samples": g.max_samples.unwrap_or(1 << 30),
                "round": host_core::engine::ROUND, "versions": versions(false),
            });
            push("gmse", format!("gmse {s} @ {d}"), config);
        }
    }
    if let Some(t) = &exp.train {
        let steps = t.steps.filter(|&s| s > 0);
        let tpps: Vec<Option<f64>> = match (steps, &t.tokens_per_param) {
            (Some(_), _) => vec![None],
            (None, Some(v)) if !v.is_empty() => v.iter().map(|x| Some(x.0)).collect(),
            (None, _) => vec![Some(20.0)],
        };
        let none = |s: &str| s.trim().is_empty() || s.trim() == "none";
        for m in &t.models {
            for tpp in &tpps {
                for f in &t.formats {
                    for af in &t.act_formats {
                        for seed in &t.seeds {
                            let mut ids = Vec::new();
                            for s in [f, af] {
                                ids.push(if none(s) {
                                    Value::Null
                                } else {
                                    identity(libs, s.trim(), &plugin_paths)
                                        .map_err(|e| format!("{}: [train]: {e}", exp_path.display()))?
                                });
                            }
                            let config = json!({
                                "schema": SCHEMA, "type": "train", "model": m.0,
                                "format": if none(f) { "none" } else { f.trim() },
                                "act_format": if none(af) { "none" } else { af.trim() },
                                "plugins": ids, "tokens_per_param": tpp, "steps": steps, "data": t.data.trim(),
                                "seed": seed, "lr": t.lr, "eval_every": t.eval_every.unwrap_or(200),
                                "eval_windows": t.eval_windows.unwrap_or(64),
                                "checkpoint_every": t.checkpoint_every.unwrap_or(100),
                                "facts": facts_context(), "versions": versions(true),
                            });
                            // Only a non-default device enters the configuration, so CPU jobs keep
                            // their hashes.
                            let mut config = config;
                            if let Some(d) = t.device.as_deref().map(str::trim).filter(|d| *d != "cpu") {
                                trainer::device::Device::parse(d)
                                    .map_err(|e| format!("{}: [train] {e}", exp_path.display()))?;
                                config["device"] = d.into();
                            }
                            // Likewise accumulation other than 1 (its losses differ by float
                            // rounding only, but a record says how it was made).
                            match t.accum {
                                Some(0) => {
                                    return Err(format!("{}: [train] accum must be at least 1", exp_path.display()));
                                }
                                Some(n) if n > 1 => config["accum"] = n.into(),
                                _ => {}
                            }
                            if let Some(t) = t.batch_tokens {
                                config["batch_tokens"] = t.into();
                            }
                            // Likewise a matrix-product precision other than fp32 (checked
                            // against the device when the experiment was read).
                            if let Some(m) = t
                                .matmul
                                .as_deref()
                                .map(MatmulPrecision::parse)
                                .transpose()
                                .map_err(|e| format!("{}: [train] {e}", exp_path.display()))?
                                && m != MatmulPrecision::Fp32
                            {
                                config["matmul"] = m.name().into();
                            }
                            let budget = match (steps, tpp) {
                                (Some(s), _) => format!("{s} steps"),
                                (None, Some(r)) => format!("{r} tok/param"),
                                (None, None) => String::new(),
                            };
                            let act = if none(af) { String::new() } else { format!(" act {}", af.trim()) };
                            push("train", format!("train {} {}{act}, {budget}, seed {seed}", m.0, f.trim()), config);
                        }
                    }
                }
            }
        }
    }
    let report = match &exp.report {
        Some(t) => serde_json::to_value(t).map_err(|e| e.to_string())?,
        None => Value::Null,
    };
    Ok(Manifest {
        sweep: SCHEMA,
        name,
        experiment: absolute(exp_path),
        results: absolute(results),
        plugins: plugin_paths,
        hash: "FNV-1a 64 of the canonical JSON of `config` (keys sorted, no whitespace), 16 hex digits".into(),
        report,
        jobs,
    })
}

impl Manifest {
    /// Reads `DIR/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e} (run `host sweep plan EXP.toml` first)", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: not a sweep manifest: {e}", path.display()))
    }

    /// Writes `DIR/manifest.json` atomically unless it already holds the same plan.
    pub fn write(&self, dir: &Path) -> Result<bool, String> {
        std::fs::create_dir_all(dir.join("jobs")).map_err(|e| format!("{}: {e}", dir.display()))?;
        if Manifest::read(dir).is_ok_and(|m| &m == self) {
            return Ok(false);
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        trainer::checkpoint::write_atomic(&dir.join("manifest.json"), format!("{text}\n").as_bytes())?;
        Ok(true)
    }

    /// Counts of jobs by type: (gmse, train).
    pub fn counts(&self) -> (usize, usize) {
        let g = self.jobs.iter().filter(|j| j.kind == "gmse").count();
        (g, self.jobs.len() - g)
    }
}
