//! The training runs of a validation study, grouped: model sizes (data set,
//! model, tokens), configurations (size, weight format, activation format)
//! and their seeds.
//!
//! Rows are read with `host_fit`'s readers (the same column names, `--map`
//! and `--where` as `host fit`); this module only adds what `host fit` does
//! not need: the row's model, seed, data set, recorded rho and stale flag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use host_core::law::Law;
use host_fit::data::Comp;
use host_fit::{Run, Table, read_runs};

use super::stats::{self, Pooled};

/// What a configuration compresses, for the per-family summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Uncompressed (`format = none`, no activation format).
    None,
    /// Weights only, scalar family (noise and compositions excluded).
    Scalar,
    /// Weights only, sparse family (compositions excluded).
    Sparse,
    /// Weights only, vector family.
    Vector,
    /// Weights only: noise injection, compositions `A+B`, other families.
    Other,
    /// Weights and activations (an activation format other than `none`).
    Pair,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 6] = [Class::None, Class::Scalar, Class::Sparse, Class::Vector, Class::Other, Class::Pair];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Class::None => "none",
            Class::Scalar => "scalar",
            Class::Sparse => "sparse",
            Class::Vector => "vector",
            Class::Other => "other",
            Class::Pair => "W+A",
        }
    }
}

/// Whether `spec` is the noise-injection format (kind `noise`, presets `noise-*`).
pub fn is_noise(spec: &str) -> bool {
    let s = spec.trim();
    s == "noise" || s.starts_with("noise:") || s.starts_with("noise-")
}

/// Whether `spec` is a composition `A+B`.
pub fn is_composition(spec: &str) -> bool {
    host_core::spec::split_parts(spec).len() > 1
}

/// The class of a configuration.
fn classify(w: Option<&Comp>, a: Option<&Comp>) -> Class {
    match (w, a) {
        (_, Some(_)) => Class::Pair,
        (None, None) => Class::None,
        (Some(w), None) if is_noise(&w.format) || is_composition(&w.format) => Class::Other,
        (Some(w), None) => match w.family.as_str() {
            "scalar" => Class::Scalar,
            "sparse" => Class::Sparse,
            "vector" => Class::Vector,
            _ => Class::Other,
        },
    }
}

/// One model size: runs of one model on one data set with one token budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Size {
    /// Data set (the records' `data`; empty when there is no such column).
    pub data: String,
    /// Model (the records' `model`, else `N=...`).
    pub model: String,
    /// Non-embedding parameters.
    pub n: f64,
    /// Training tokens.
    pub d: f64,
    /// Name in reports (model, with D and the data set's number where needed to tell sizes apart).
    pub label: String,
    /// Seed SD pooled over this size's configurations (None when no configuration has 2 seeds).
    pub pooled: Option<Pooled>,
}

/// One configuration at one size, with its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Index into [`Study::sizes`].
    pub size: usize,
    /// Weights' format (`none` when uncompressed).
    pub format: String,
    /// Activations' format (`none` when uncompressed).
    pub act: String,
    /// Its class.
    pub class: Class,
    /// Weights' compression (of the first run).
    pub w: Option<Comp>,
    /// Activations' compression (of the first run).
    pub a: Option<Comp>,
    /// rho of the configuration (weights x activations) from the study's rho source.
    pub rho: Option<f64>,
    /// Validation loss per seed.
    pub losses: Vec<f64>,
    /// The seeds, as written in the records.
    pub seeds: Vec<String>,
}

impl Config {
    /// The configuration's name across sizes: the weight format, or `W:.. A:..` with an
    /// activation format (as `host fit` keys it).
    pub fn name(&self) -> String {
        match (self.format.as_str(), self.act.as_str()) {
            (w, "none") => w.to_string(),
            ("none", a) => format!("A:{a}"),
            (w, a) => format!("W:{w} A:{a}"),
        }
    }

    /// Mean loss over seeds.
    pub fn mean(&self) -> f64 {
        stats::mean(&self.losses)
    }

    /// Weights' GMSE (0 when uncompressed).
    pub fn w_gmse(&self) -> f64 {
        self.w.as_ref().map_or(0.0, |c| c.gmse)
    }

    /// A run standing for this configuration at its size with loss `loss`.
    pub fn run(&self, size: &Size, loss: f64) -> Run {
        Run { n: size.n, d: size.d, loss, w: self.w.clone(), a: self.a.clone() }
    }
}

/// The runs of a study and their grouping.
#[derive(Debug, Clone)]
pub struct Study {
    /// Every usable run (one per configuration and seed).
    pub runs: Vec<Run>,
    /// Model sizes, ordered by data set, N, D.
    pub sizes: Vec<Size>,
    /// Configurations, ordered by size, class, weights' GMSE, name.
    pub configs: Vec<Config>,
    /// The distinct data sets (sizes refer to them by `data`).
    pub data_sets: Vec<String>,
    /// Where the configurations' rho comes from.
    pub rho_source: String,
    /// Rows read from the inputs (all types).
    pub rows_read: usize,
    /// One line per kind of skipped or notable row.
    pub warnings: Vec<String>,
}

/// How to read a study.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// `--map` of `host fit`.
    pub map: Option<String>,
    /// `--where COL=V1|V2`.
    pub filters: Vec<String>,
    /// A law for rho (instead of the records' `w_rho` / `a_rho`).
    pub law: Option<(PathBuf, Law)>,
    /// Leave out rows marked `stale`.
    pub drop_stale: bool,
}

/// The table of one input: a results folder's `results.jsonl`, or a file.
fn read_input(path: &Path) -> Result<Table, String> {
    if path.is_dir() {
        let f = path.join("results.jsonl");
        if !f.is_file() {
            return Err(format!(
                "{}: no results.jsonl here (run `host sweep collect EXP.toml` first, or pass a .jsonl / .csv file)",
                path.display()
            ));
        }
        return Table::read(&f);
    }
    if !path.exists() {
        return Err(format!("{}: no such file or folder", path.display()));
    }
    Table::read(path)
}

/// Tables with the union of their columns (missing cells empty).
fn merge(tables: Vec<Table>) -> Table {
    let mut headers: Vec<String> = Vec::new();
    for t in &tables {
        for h in &t.headers {
            if !headers.contains(h) {
                headers.push(h.clone());
            }
        }
    }
    let mut rows = Vec::new();
    for t in tables {
        let idx: Vec<Option<usize>> = headers.iter().map(|h| t.headers.iter().position(|x| x == h)).collect();
        for r in t.rows {
            rows.push(idx.iter().map(|i| i.and_then(|i| r.get(i).cloned()).unwrap_or_default()).collect());
        }
    }
    Table { headers, rows }
}

/// Keeps rows matching `keep`; returns how many were dropped.
fn retain_rows(t: &mut Table, col: &str, keep: impl Fn(&str) -> bool) -> usize {
    let Some(i) = t.headers.iter().position(|h| h == col) else {
        return 0;
    };
    let before = t.rows.len();
    t.rows.retain(|r| keep(r.get(i).map_or("", |s| s.trim())));
    before - t.rows.len()
}

/// Sorts and labels sizes: the model name, plus `D=...` when one model has several token
/// budgets and `[data K]` (1-based into `data_sets`) when there are several data sets.
fn label_sizes(sizes: &mut [Size], data_sets: &[String]) {
    let keys: Vec<(String, String)> = sizes.iter().map(|s| (s.data.clone(), s.model.clone())).collect();
    for s in sizes.iter_mut() {
        let mut label = s.model.clone();
        if keys.iter().filter(|k| k.0 == s.data && k.1 == s.model).count() > 1 {
            label += &format!(" D={:.3e}", s.d);
        }
        if data_sets.len() > 1 {
            let k = data_sets.iter().position(|d| *d == s.data).unwrap_or(0) + 1;
            label += &format!(" [data {k}]");
        }
        s.label = label;
    }
}

impl Study {
    /// Reads the training rows of `inputs` and groups them.
    pub fn read(inputs: &[PathBuf], opts: &ReadOptions) -> Result<Study, String> {
        let tables = inputs.iter().map(|p| read_input(p)).collect::<Result<Vec<_>, _>>()?;
        Study::from_table(merge(tables), &list_paths(inputs), opts)
    }

    /// Groups the training rows of `table` (`origin` names it in errors).
    pub fn from_table(mut table: Table, origin: &str, opts: &ReadOptions) -> Result<Study, String> {
        let rows_read = table.rows.len();
        let mut warnings = Vec::new();
        // Sweep results hold GMSE rows too; `host train` records have no `type`.
        let other = retain_rows(&mut table, "type", |t| t.is_empty() || t == "train");
        let stale = if opts.drop_stale {
            let n = retain_rows(&mut table, "stale", |s| s != "true");
            if n > 0 {
                warnings.push(format!("left out {n} stale results (--drop-stale)"));
            }
            0
        } else {
            let i = table.headers.iter().position(|h| h == "stale");
            i.map_or(0, |i| table.rows.iter().filter(|r| r.get(i).is_some_and(|s| s == "true")).count())
        };
        if stale > 0 {
            warnings.push(format!(
                "{stale} stale results included (computed by older code or plugin defaults; --drop-stale leaves them out)"
            ));
        }
        if table.rows.is_empty() {
            return Err(format!(
                "no training rows in {origin} ({rows_read} rows, {other} of another type): \
                 validate needs `host train` records (type = train) with N, D and loss"
            ));
        }
        let data = read_runs(&table, opts.map.as_deref(), &opts.filters)?;
        warnings.extend(data.warnings.iter().cloned());
        let col = |name: &str| table.headers.iter().position(|h| h == name);
        let (c_model, c_seed, c_data) = (col("model"), col("seed"), col("data"));
        let (c_wrho, c_arho) = (col("w_rho"), col("a_rho"));
        if c_seed.is_none() {
            warnings.push("no `seed` column: every row counts as its own seed".into());
        }
        let cell = |row: usize, c: Option<usize>| c.and_then(|i| table.rows[row].get(i)).map(|s| s.trim().to_string());
        let num =
            |row: usize, c: Option<usize>| cell(row, c).and_then(|s| s.parse::<f64>().ok()).filter(|x| x.is_finite());

        let mut unmeasured = BTreeMap::<String, usize>::new();
        let mut size_index: BTreeMap<(String, String, u64), usize> = BTreeMap::new();
        let mut sizes: Vec<Size> = Vec::new();
        let mut config_index: BTreeMap<(usize, String, String), usize> = BTreeMap::new();
        let mut configs: Vec<Config> = Vec::new();
        let mut recorded_rho: Vec<Option<f64>> = Vec::new();
        let mut runs = Vec::new();
        let mut duplicates = 0usize;
        let mut mixed = std::collections::BTreeSet::new();
        for (run, &row) in data.runs.iter().zip(&data.rows) {
            if let Some(c) = run.comps().find(|c| c.gmse.is_nan()) {
                *unmeasured.entry(c.format.clone()).or_default() += 1;
                continue;
            }
            let data_set = cell(row, c_data).unwrap_or_default();
            let model = cell(row, c_model).filter(|m| !m.is_empty()).unwrap_or_else(|| format!("N={:.4e}", run.n));
            let seed = cell(row, c_seed).filter(|s| !s.is_empty()).unwrap_or_else(|| format!("row {row}"));
            let key = (data_set.clone(), model.clone(), run.d.to_bits());
            let size = *size_index.entry(key).or_insert_with(|| {
                sizes.push(Size { data: data_set, model, n: run.n, d: run.d, label: String::new(), pooled: None });
                sizes.len() - 1
            });
            let fmt = |c: &Option<Comp>| c.as_ref().map_or("none".to_string(), |c| c.format.clone());
            let (format, act) = (fmt(&run.w), fmt(&run.a));
            let ci = *config_index.entry((size, format.clone(), act.clone())).or_insert_with(|| {
                configs.push(Config {
                    size,
                    format,
                    act,
                    class: classify(run.w.as_ref(), run.a.as_ref()),
                    w: run.w.clone(),
                    a: run.a.clone(),
                    rho: None,
                    losses: Vec::new(),
                    seeds: Vec::new(),
                });
                let part = |c: &Option<Comp>, r: Option<f64>| if c.is_some() { r } else { Some(1.0) };
                let rec = part(&run.w, num(row, c_wrho)).zip(part(&run.a, num(row, c_arho))).map(|(w, a)| w * a);
                recorded_rho.push(rec);
                configs.len() - 1
            });
            let c = &mut configs[ci];
            let differs = |x: &Option<Comp>, y: &Option<Comp>| match (x, y) {
                (Some(x), Some(y)) => (x.gmse - y.gmse).abs() > 1e-6 * x.gmse.abs().max(y.gmse.abs()),
                _ => false,
            };
            if differs(&c.w, &run.w) || differs(&c.a, &run.a) {
                mixed.insert(c.name());
            }
            if c.seeds.contains(&seed) {
                duplicates += 1;
                continue;
            }
            c.seeds.push(seed);
            c.losses.push(run.loss);
            runs.push(run.clone());
        }
        if !unmeasured.is_empty() {
            let list: Vec<String> = unmeasured.iter().map(|(f, n)| format!("`{f}` ({n})")).collect();
            warnings.push(format!(
                "skipped runs without a recorded GMSE: {} (collect them with a current host, or map a GMSE column)",
                list.join(", ")
            ));
        }
        if !mixed.is_empty() {
            let list: Vec<String> = mixed.into_iter().collect();
            warnings.push(format!(
                "runs of {} record different GMSE values for the same format; the first run's is used \
                 (name formats by SPEC, or map a column that tells them apart)",
                list.join(", ")
            ));
        }
        if duplicates > 0 {
            warnings.push(format!("skipped {duplicates} rows repeating a (configuration, seed) already read"));
        }
        if runs.is_empty() {
            return Err(format!(
                "no usable training runs in {origin} after the filters ({} warnings: {})",
                warnings.len(),
                warnings.join("; ")
            ));
        }
        // rho: the law given, else the records' own, else the default law.
        let rho_source = match &opts.law {
            Some((path, law)) => {
                for c in &mut configs {
                    c.rho = Some(c.w.iter().chain(c.a.iter()).map(|x| law.rho(&x.family, x.gmse)).product());
                }
                format!("law {} ({})", law.name, path.display())
            }
            None if recorded_rho.iter().all(Option::is_some) => {
                for (c, r) in configs.iter_mut().zip(&recorded_rho) {
                    c.rho = *r;
                }
                "the records' w_rho x a_rho".to_string()
            }
            None => {
                let law = Law::default_law();
                for c in &mut configs {
                    c.rho = Some(c.w.iter().chain(c.a.iter()).map(|x| law.rho(&x.family, x.gmse)).product());
                }
                format!("the default law {} (the records lack w_rho / a_rho)", law.name)
            }
        };
        let mut data_sets: Vec<String> = sizes.iter().map(|s| s.data.clone()).collect();
        data_sets.sort();
        data_sets.dedup();
        // Order sizes by (data set, N, D) and renumber the configurations.
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&sizes[a], &sizes[b]);
            x.data.cmp(&y.data).then(x.n.total_cmp(&y.n)).then(x.d.total_cmp(&y.d)).then(x.model.cmp(&y.model))
        });
        let mut new_index = vec![0; sizes.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let mut sizes: Vec<Size> = order.iter().map(|&i| sizes[i].clone()).collect();
        for c in &mut configs {
            c.size = new_index[c.size];
        }
        configs.sort_by(|a, b| {
            a.size
                .cmp(&b.size)
                .then(a.class.cmp(&b.class))
                .then(a.w_gmse().total_cmp(&b.w_gmse()))
                .then(a.name().cmp(&b.name()))
        });
        label_sizes(&mut sizes, &data_sets);
        for (i, s) in sizes.iter_mut().enumerate() {
            s.pooled = stats::pooled_sd(configs.iter().filter(|c| c.size == i).map(|c| c.losses.as_slice()));
        }
        Ok(Study { runs, sizes, configs, data_sets, rho_source, rows_read, warnings })
    }

    /// Configurations of size `s`.
    pub fn at(&self, s: usize) -> impl Iterator<Item = &Config> {
        self.configs.iter().filter(move |c| c.size == s)
    }

    /// The configurations' names (across sizes), in order of first appearance by class and GMSE.
    pub fn names(&self) -> Vec<(String, Class)> {
        let mut out: Vec<(String, Class, f64)> = Vec::new();
        for c in &self.configs {
            let name = c.name();
            if !out.iter().any(|(n, _, _)| *n == name) {
                out.push((name, c.class, c.w_gmse()));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.total_cmp(&b.2)).then(a.0.cmp(&b.0)));
        out.into_iter().map(|(n, c, _)| (n, c)).collect()
    }

    /// Seeds per configuration: (fewest, most).
    pub fn seed_range(&self) -> (usize, usize) {
        self.configs.iter().fold((usize::MAX, 0), |(lo, hi), c| (lo.min(c.losses.len()), hi.max(c.losses.len())))
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
