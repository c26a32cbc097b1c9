//! The experiment file (TOML): formats (presets, SPECs, or a kind with a
//! parameter grid), distributions, GMSE precision, an optional training grid,
//! an optional fit and free-form report options.
//!
//! Unknown keys and bad values are errors with the line and column of the
//! offending text (`EXP.toml: line L, column C: ...`): every section denies
//! unknown fields, and values that must parse (shapes, distributions, model
//! presets, laws) are checked while deserializing, where TOML knows the span.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use toml::Value;
use trainer::backend::MatmulPrecision;
use trainer::device::Device;

/// A string or a list of strings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Many(pub Vec<String>);

impl<'de> Deserialize<'de> for Many {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        match OneOrMany::deserialize(d) {
            Ok(OneOrMany::One(s)) => Ok(Many(vec![s])),
            Ok(OneOrMany::Many(v)) => Ok(Many(v)),
            Err(_) => Err(de::Error::custom("expected a string or a list of strings")),
        }
    }
}

/// A tensor shape `ROWSxCOLS`, checked while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeText(pub usize, pub usize);

impl<'de> Deserialize<'de> for ShapeText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_shape(&s).map_err(de::Error::custom)
    }
}

impl std::fmt::Display for ShapeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.0, self.1)
    }
}

/// Parses `ROWSxCOLS` (both positive).
pub fn parse_shape(s: &str) -> Result<ShapeText, String> {
    let (r, c) = s.split_once(['x', 'X']).ok_or_else(|| format!("shape `{s}` is not ROWSxCOLS (e.g. 256x4096)"))?;
    let r: usize = r.trim().parse().map_err(|_| format!("shape `{s}`: bad row count `{r}`"))?;
    let c: usize = c.trim().parse().map_err(|_| format!("shape `{s}`: bad column count `{c}`"))?;
    if r == 0 || c == 0 {
        return Err(format!("shape `{s}`: rows and columns must be positive"));
    }
    Ok(ShapeText(r, c))
}

/// A distribution name accepted by `--dist` (checked while reading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistName(pub String);

impl<'de> Deserialize<'de> for DistName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        // `file:` distributions are read (and checked) when planned, not here.
        if !t.starts_with("file:") {
            host_core::dist::Dist::parse(t, &mut host_core::diag::Diagnostics::default()).map_err(de::Error::custom)?;
        }
        Ok(DistName(t.to_string()))
    }
}

/// A positive finite number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Positive(pub f64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = f64::deserialize(d)?;
        if !(x > 0.0 && x.is_finite()) {
            return Err(de::Error::custom(format!("must be a positive number (got {x})")));
        }
        Ok(Positive(x))
    }
}

/// A model preset name (checked against the trainer's presets while reading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName(pub String);

impl<'de> Deserialize<'de> for ModelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        trainer::model::preset(s.trim()).map_err(de::Error::custom)?;
        Ok(ModelName(s.trim().to_string()))
    }
}

/// A law name for `host fit --law` (checked while reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LawName(pub host_fit::LawKind);

impl<'de> Deserialize<'de> for LawName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        <host_fit::LawKind as clap::ValueEnum>::from_str(s.trim(), true).map(LawName).map_err(|_| {
            de::Error::custom(format!(
                "unknown law `{s}`; use chinchilla, unified, logistic, logistic10, decoupled or precision"
            ))
        })
    }
}

/// The whole experiment file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Name (default: the file stem).
    #[serde(default)]
    pub name: Option<String>,
    /// Plugin paths (relative to the current folder; default `["plugins"]`).
    #[serde(default)]
    pub plugins: Option<Vec<PathBuf>>,
    /// How GMSE is measured.
    #[serde(default)]
    pub gmse: Gmse,
    /// Format families.
    #[serde(default)]
    pub formats: Vec<FormatGroup>,
    /// Optional training grid.
    #[serde(default)]
    pub train: Option<Train>,
    /// Optional scaling-law fit of the training runs.
    #[serde(default)]
    pub fit: Option<Fit>,
    /// Free-form options for the report (kept as given).
    #[serde(default)]
    pub report: Option<toml::Table>,
}

/// `[gmse]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gmse {
    /// Distributions (`--dist` names).
    #[serde(default = "default_dists")]
    pub distributions: Vec<DistName>,
    /// Tensor shape.
    #[serde(default = "default_shape")]
    pub shape: ShapeText,
    /// Target relative standard error (default 1e-3 unless `samples`).
    #[serde(default)]
    pub target_rse: Option<Positive>,
    /// Fixed sample count per measurement.
    #[serde(default)]
    pub samples: Option<u64>,
    /// Sample cap.
    #[serde(default)]
    pub max_samples: Option<u64>,
    /// Seed of the tensors.
    #[serde(default)]
    pub seed: u64,
}

impl Default for Gmse {
    fn default() -> Self {
        Gmse {
            distributions: default_dists(),
            shape: default_shape(),
            target_rse: None,
            samples: None,
            max_samples: None,
            seed: 0,
        }
    }
}

fn default_dists() -> Vec<DistName> {
    vec![DistName("gaussian".into())]
}

fn default_shape() -> ShapeText {
    ShapeText(256, 4096)
}

/// One `[[formats]]` table: presets / SPECs, or a kind with a parameter grid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatGroup {
    /// Presets or whole SPECs (`int4`, `int4:group=32`, `sparse50+int4`).
    #[serde(default)]
    pub preset: Option<Many>,
    /// A kind whose parameters `params` sets.
    #[serde(default)]
    pub kind: Option<String>,
    /// Parameters; a list is a grid axis (cartesian product over the axes). A list meant as one
    /// value is written as a list of one list: `levels = [[1, 2]]`.
    #[serde(default)]
    pub params: Option<toml::Table>,
    /// Combinations to drop: each table drops every combination that has all its key = value pairs.
    #[serde(default)]
    pub exclude: Vec<toml::Table>,
    /// SPECs prepended with `+` to each format of the group (e.g. `sparse50` gives `sparse50+int4`).
    #[serde(default)]
    pub before: Option<Many>,
    /// SPECs appended with `+` to each format of the group (e.g. `int4` gives `outliers:p=0.01+int4`).
    #[serde(default)]
    pub then: Option<Many>,
}

/// `[train]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    /// Model presets.
    pub models: Vec<ModelName>,
    /// Tokens per non-embedding parameter (ignored when `steps` is set).
    #[serde(default)]
    pub tokens_per_param: Option<Vec<Positive>>,
    /// Weight format SPECs (`none` = plain training).
    #[serde(default = "default_none")]
    pub formats: Vec<String>,
    /// Activation format SPECs.
    #[serde(default = "default_none")]
    pub act_formats: Vec<String>,
    /// Run seeds.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Data source (`host train --data`).
    #[serde(default = "default_data")]
    pub data: String,
    /// Train exactly this many steps (for tests; 0 or absent = from tokens per parameter).
    #[serde(default)]
    pub steps: Option<u64>,
    /// Peak learning rate (default: the preset's).
    #[serde(default)]
    pub lr: Option<f32>,
    /// Evaluation interval in steps.
    #[serde(default)]
    pub eval_every: Option<u64>,
    /// Validation windows.
    #[serde(default)]
    pub eval_windows: Option<usize>,
    /// Checkpoint interval in steps.
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    /// Where to train: `cpu` (default) or `cuda` (`host train --device`).
    #[serde(default)]
    pub device: Option<String>,
    /// Gradient accumulation: micro-batches per step (`host train --accum`; default 1).
    #[serde(default)]
    pub accum: Option<usize>,
    /// Tokens per optimizer step (`host train --batch-tokens`; default: the preset's batch).
    #[serde(default)]
    pub batch_tokens: Option<usize>,
    /// Precision of the matrix products: `fp32` (default), or `tf32` / `bf16` with
    /// `device = "cuda"` (`host train --matmul`).
    #[serde(default)]
    pub matmul: Option<String>,
}

fn default_none() -> Vec<String> {
    vec!["none".into()]
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

fn default_data() -> String {
    "synthetic".into()
}

/// `[fit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fit {
    /// Law.
    #[serde(default = "default_law")]
    pub law: LawName,
    /// Fixed parameters, `alpha=0.13,beta=0.33,...`.
    #[serde(default)]
    pub fix: Option<String>,
    /// Bounds, `L=0.5:1.5,...`.
    #[serde(default)]
    pub bound: Option<String>,
    /// Bootstrap resamples.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Bootstrap seed.
    #[serde(default)]
    pub seed: u64,
    /// Huber threshold.
    #[serde(default)]
    pub delta: Option<Positive>,
    /// Fit even when an identifiability check refuses.
    #[serde(default)]
    pub force: bool,
    /// Skip the comparison laws.
    #[serde(default)]
    pub no_compare: bool,
}

fn default_law() -> LawName {
    LawName(host_fit::LawKind::Unified)
}

fn default_bootstrap() -> usize {
    200
}

/// Line and column (1-based) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// Formats a TOML error as one line: `FILE: line L, column C: message`.
fn one_line(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let (l, c) = line_col(text, span.start);
            format!("{}: line {l}, column {c}: {msg}", path.display())
        }
        None => format!("{}: {msg}", path.display()),
    }
}

impl Experiment {
    /// Parses experiment text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Experiment, String> {
        let e: Experiment = toml::from_str(text).map_err(|e| one_line(path, text, &e))?;
        let at = |needle: &str| -> String {
            match text.find(needle) {
                Some(o) => {
                    let (l, c) = line_col(text, o);
                    format!("{}: line {l}, column {c}", path.display())
                }
                None => path.display().to_string(),
            }
        };
        if e.gmse.target_rse.is_some() && e.gmse.samples.is_some() {
            return Err(format!("{}: [gmse] give target_rse or samples, not both", at("samples")));
        }
        if e.gmse.samples == Some(0) {
            return Err(format!("{}: [gmse] samples must be at least 1", at("samples")));
        }
        if e.gmse.distributions.is_empty() {
            return Err(format!("{}: [gmse] distributions is empty; name at least one", at("distributions")));
        }
        for (i, g) in e.formats.iter().enumerate() {
            match (&g.preset, &g.kind) {
                (None, None) => {
                    return Err(format!("{}: [[formats]] #{} needs `preset` or `kind`", at("[[formats]]"), i + 1));
                }
                (Some(_), Some(_)) => {
                    return Err(format!("{}: [[formats]] #{}: give `preset` or `kind`, not both", at("kind"), i + 1));
                }
                (Some(_), None) if g.params.is_some() || !g.exclude.is_empty() => {
                    return Err(format!(
                        "{}: [[formats]] #{}: `params` and `exclude` go with `kind` (a preset takes overrides in its SPEC: `int4:group=32`)",
                        at("params"),
                        i + 1
                    ));
                }
                _ => {}
            }
        }
        if let Some(t) = &e.train {
            for (what, v) in [
                ("models", t.models.len()),
                ("formats", t.formats.len()),
                ("act_formats", t.act_formats.len()),
                ("seeds", t.seeds.len()),
            ] {
                if v == 0 {
                    return Err(format!("{}: [train] {what} is empty", at(what)));
                }
            }
            if t.steps.is_some_and(|s| s > 0) && t.tokens_per_param.as_ref().is_some_and(|v| v.len() > 1) {
                return Err(format!(
                    "{}: [train] with `steps` set, tokens_per_param has no effect; give one value or none",
                    at("tokens_per_param")
                ));
            }
            if t.lr.is_some_and(|lr| !(lr > 0.0 && lr.is_finite())) {
                return Err(format!("{}: [train] lr must be positive", at("lr")));
            }
            for (what, v) in [("eval_every", t.eval_every), ("checkpoint_every", t.checkpoint_every)] {
                if v == Some(0) {
                    return Err(format!("{}: [train] {what} must be at least 1", at(what)));
                }
            }
            if t.eval_windows == Some(0) {
                return Err(format!("{}: [train] eval_windows must be at least 1", at("eval_windows")));
            }
            if let Some(m) = &t.matmul {
                let m = MatmulPrecision::parse(m).map_err(|e| format!("{}: [train] {e}", at("matmul")))?;
                // An unknown device is reported by the plan; a known one must support the precision.
                let device = Device::parse(t.device.as_deref().unwrap_or("cpu"));
                if let Ok(d) = device {
                    trainer::device::supports(d, m).map_err(|e| format!("{}: [train] {e}", at("matmul")))?;
                }
            }
        }
        if e.formats.is_empty() && e.train.is_none() {
            return Err(format!("{}: no [[formats]] and no [train]: nothing to run", path.display()));
        }
        Ok(e)
    }

    /// Reads and parses an experiment file.
    pub fn read(path: &Path) -> Result<Experiment, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Experiment::parse(path, &text)
    }

    /// Plugin paths (default `plugins`).
    pub fn plugin_paths(&self) -> Vec<PathBuf> {
        self.plugins.clone().unwrap_or_else(|| vec![PathBuf::from("plugins")])
    }

    /// Every GMSE format SPEC, in file order, without duplicates.
    pub fn format_specs(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, g) in self.formats.iter().enumerate() {
            for s in expand_group(g).map_err(|e| format!("[[formats]] #{}: {e}", i + 1))? {
                if seen.insert(s.clone()) {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }
}

/// A TOML value as SPEC text (`parse_overrides` reads it back as the same value).
pub fn spec_value(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let bare = !s.is_empty()
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s != "true"
                && s != "false"
                && s != "inf"
                && s != "nan";
            if bare { s.clone() } else { Value::String(s.clone()).to_string() }
        }
        Value::Float(f) if f.fract() == 0.0 && f.is_finite() => format!("{f:.1}"),
        Value::Float(f) => format!("{f}"),
        other => other.to_string(),
    }
}

/// Whether two TOML values are equal, integers and floats compared as numbers.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Integer(x), Value::Float(y)) | (Value::Float(y), Value::Integer(x)) => (*x as f64) == *y,
        _ => a == b,
    }
}

/// Most SPECs one `[[formats]]` table may expand to (a grid beyond it is
/// almost certainly a mistake, and would exhaust memory before running).
pub const MAX_SPECS: usize = 100_000;

/// The SPECs of one `[[formats]]` table.
pub fn expand_group(g: &FormatGroup) -> Result<Vec<String>, String> {
    let base: Vec<String> = match (&g.preset, &g.kind) {
        (Some(p), _) => p.0.iter().map(|s| s.trim().to_string()).collect(),
        (None, Some(kind)) => {
            let kind = kind.trim();
            if kind.is_empty() || kind.contains([':', '+', ',']) {
                return Err(format!("kind `{kind}` must be a bare kind name (parameters go in `params`)"));
            }
            let params = g.params.clone().unwrap_or_default();
            let axes: Vec<(String, Vec<Value>)> = params
                .into_iter()
                .map(|(k, v)| match v {
                    Value::Array(a) => (k, a),
                    one => (k, vec![one]),
                })
                .collect();
            for (k, vs) in &axes {
                if vs.is_empty() {
                    return Err(format!("params.{k} is an empty list: no combination"));
                }
            }
            for ex in &g.exclude {
                for k in ex.keys() {
                    if !axes.iter().any(|(a, _)| a == k) {
                        return Err(format!("exclude names `{k}`, which is not in params"));
                    }
                }
            }
            let n = axes.iter().try_fold(1usize, |n, (_, vs)| n.checked_mul(vs.len()));
            if n.is_none_or(|n| n > MAX_SPECS) {
                let sizes: Vec<String> = axes.iter().map(|(k, vs)| format!("{k}: {}", vs.len())).collect();
                return Err(format!(
                    "params expand to more than {MAX_SPECS} combinations ({}); split the table or give fewer values",
                    sizes.join(", ")
                ));
            }
            // Cartesian product, last axis fastest (keys in sorted order).
            let mut combos: Vec<Vec<(String, Value)>> = vec![vec![]];
            for (k, vs) in &axes {
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        vs.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push((k.clone(), v.clone()));
                            c
                        })
                    })
                    .collect();
            }
            combos
                .into_iter()
                .filter(|c| {
                    !g.exclude.iter().any(|ex| ex.iter().all(|(k, v)| c.iter().any(|(ck, cv)| ck == k && same(cv, v))))
                })
                .map(|c| {
                    if c.is_empty() {
                        kind.to_string()
                    } else {
                        let pairs: Vec<String> = c.iter().map(|(k, v)| format!("{k}={}", spec_value(v))).collect();
                        format!("{kind}:{}", pairs.join(","))
                    }
                })
                .collect()
        }
        (None, None) => return Err("needs `preset` or `kind`".into()),
    };
    let befores = g.before.as_ref().map(|b| b.0.clone()).unwrap_or_else(|| vec![String::new()]);
    let thens = g.then.as_ref().map(|b| b.0.clone()).unwrap_or_else(|| vec![String::new()]);
    let total = base.len().checked_mul(befores.len()).and_then(|n| n.checked_mul(thens.len()));
    if total.is_none_or(|n| n > MAX_SPECS) {
        return Err(format!(
            "{} SPECs x {} `before` x {} `then` is more than {MAX_SPECS} formats; split the table",
            base.len(),
            befores.len(),
            thens.len()
        ));
    }
    let mut out = Vec::new();
    for b in &befores {
        for s in &base {
            for t in &thens {
                let mut spec = s.clone();
                if !b.trim().is_empty() {
                    spec = format!("{}+{spec}", b.trim());
                }
                if !t.trim().is_empty() {
                    spec = format!("{spec}+{}", t.trim());
                }
                out.push(spec);
            }
        }
    }
    Ok(out)
}
