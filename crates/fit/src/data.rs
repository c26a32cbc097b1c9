//! Training runs in: CSV files, or the trainer's JSON run records (a
//! JSON-lines file, a JSON file, or a folder of them).
//!
//! Both become a [`Table`] of strings, and one reader turns a table into
//! [`Run`]s. Logical columns and the names tried for each when `--map` does
//! not name one:
//!
//! | key | default column names |
//! |---|---|
//! | `n` (non-embedding parameters) | `n`, `N`, `non_embedding_params` |
//! | `d` (training tokens) | `d`, `D`, `tokens` |
//! | `loss` | `loss`, `val_loss` |
//! | `w_gmse`, `a_gmse` | same name (empty = uncompressed, `na` = row skipped) |
//! | `w_format`, `a_format` | `w_format`, `format`; `a_format`, `act_format` (a SPEC; `none` = uncompressed) |
//! | `w_bits`, `a_bits` | same name (bits per element, for the precision law) |
//! | `family`, `w_family`, `a_family` | same name (capacity family; default `scalar`) |
//!
//! A format SPEC without a GMSE value is measured through the plugins.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One compressed tensor of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Comp {
    /// Gaussian MSE (NaN until measured when only a SPEC was given).
    pub gmse: f64,
    /// Bits per element, when known.
    pub bits: Option<f64>,
    /// Capacity family (`scalar`, `sparse`, `vector`, ...).
    pub family: String,
    /// Identity: the format SPEC, or `gmse=VALUE` when only a GMSE was given.
    pub format: String,
    /// Whether the family came from the data (a column) rather than a default.
    pub family_given: bool,
}

/// One training run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Non-embedding parameters.
    pub n: f64,
    /// Training tokens.
    pub d: f64,
    /// Observed loss.
    pub loss: f64,
    /// Weights' compression (None = uncompressed).
    pub w: Option<Comp>,
    /// Activations' compression (None = uncompressed).
    pub a: Option<Comp>,
}

impl Run {
    /// The compressed tensors.
    pub fn comps(&self) -> impl Iterator<Item = &Comp> {
        self.w.iter().chain(self.a.iter())
    }

    /// The compressed configuration, e.g. `W:int4 A:int8` (None when uncompressed).
    pub fn key(&self) -> Option<String> {
        let parts: Vec<String> = [("W", &self.w), ("A", &self.a)]
            .iter()
            .filter_map(|(t, c)| c.as_ref().map(|c| format!("{t}:{}", c.format)))
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// A run with only a weight GMSE (tests, synthetic data).
    pub fn simple(n: f64, d: f64, loss: f64, w_gmse: Option<f64>, a_gmse: Option<f64>) -> Run {
        let comp = |g: f64| Comp {
            gmse: g,
            bits: None,
            family: "scalar".into(),
            format: format!("gmse={g}"),
            family_given: false,
        };
        Run { n, d, loss, w: w_gmse.map(comp), a: a_gmse.map(comp) }
    }
}

/// Rows of strings under a header (CSV, or JSON records flattened).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Column names.
    pub headers: Vec<String>,
    /// Cells (missing = empty).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses CSV text with a header line.
    pub fn from_csv(text: &str) -> Result<Table, String> {
        let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let headers = rdr.headers().map_err(|e| e.to_string())?.iter().map(str::to_string).collect();
        let mut rows = Vec::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| e.to_string())?;
            rows.push(rec.iter().map(str::to_string).collect());
        }
        Ok(Table { headers, rows })
    }

    /// JSON objects (one per run): scalar fields become cells, `null` an empty cell.
    pub fn from_json(objects: &[serde_json::Value]) -> Result<Table, String> {
        let mut headers: Vec<String> = Vec::new();
        for o in objects {
            let map = o.as_object().ok_or("a run record is not a JSON object")?;
            for k in map.keys() {
                if !headers.contains(k) {
                    headers.push(k.clone());
                }
            }
        }
        let rows = objects
            .iter()
            .map(|o| {
                headers
                    .iter()
                    .map(|h| match &o[h] {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => s.clone(),
                        v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => v.to_string(),
                        _ => String::new(),
                    })
                    .collect()
            })
            .collect();
        Ok(Table { headers, rows })
    }

    /// Reads runs from `path`: a folder (every `*.json` / `*.jsonl` in it and every `result.json`
    /// below it, i.e. a folder of `host train` run folders; sorted by path), a
    /// `.json` / `.jsonl` file (JSON lines, or one object or an array of objects), or a CSV file.
    pub fn read(path: &Path) -> Result<Table, String> {
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let is_json = |p: &Path| p.extension().is_some_and(|e| e == "json" || e == "jsonl");
        if path.is_dir() {
            let mut files = Vec::new();
            collect_records(path, true, &mut files).map_err(err)?;
            files.sort();
            if files.is_empty() {
                return Err(format!(
                    "{}: no run records here (*.json / *.jsonl files, or result.json in subfolders)",
                    path.display()
                ));
            }
            let mut objects = Vec::new();
            for f in &files {
                objects.extend(json_objects(f)?);
            }
            return Table::from_json(&objects);
        }
        if is_json(path) {
            return Table::from_json(&json_objects(path)?);
        }
        let text = std::fs::read_to_string(path).map_err(err)?;
        Table::from_csv(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Run-record files under `dir`: at the top, every `*.json` / `*.jsonl`; below, `result.json`.
fn collect_records(dir: &Path, top: bool, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect_records(&p, false, out)?;
        } else if p.file_name().is_some_and(|n| n == "result.json")
            || (top && p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// The JSON objects of one file: an object, an array of objects, or JSON lines.
fn json_objects(path: &Path) -> Result<Vec<serde_json::Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    json_objects_in(path, &text)
}

impl Table {
    /// The runs of the JSON text `text` of file `path` (one object, an array
    /// of objects, or JSON lines), as [`Table::read`] reads a `.json` file.
    pub fn from_json_text(path: &Path, text: &str) -> Result<Table, String> {
        Table::from_json(&json_objects_in(path, text)?)
    }
}

/// [`json_objects`] of text already read.
fn json_objects_in(path: &Path, text: &str) -> Result<Vec<serde_json::Value>, String> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        return Ok(match v {
            serde_json::Value::Array(a) => a,
            v => vec![v],
        });
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: not a JSON run record: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Logical columns and the names tried for each by default.
const COLUMNS: [(&str, &[&str]); 12] = [
    ("n", &["n", "N", "non_embedding_params"]),
    ("d", &["d", "D", "tokens"]),
    ("loss", &["loss", "val_loss"]),
    ("w_gmse", &["w_gmse"]),
    ("a_gmse", &["a_gmse"]),
    ("w_format", &["w_format", "format"]),
    ("a_format", &["a_format", "act_format"]),
    ("w_bits", &["w_bits"]),
    ("a_bits", &["a_bits"]),
    ("family", &["family"]),
    ("w_family", &["w_family"]),
    ("a_family", &["a_family"]),
];

/// Runs read from a table plus warnings about skipped rows.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Usable runs (GMSE may be NaN for formats still to measure: see `pending`).
    pub runs: Vec<Run>,
    /// One line per kind of skipped row.
    pub warnings: Vec<String>,
    /// Format SPECs whose GMSE must be measured through the plugins.
    pub pending: BTreeSet<String>,
    /// Runs skipped because their format could not be built or measured (a failure, not a
    /// property of the data: the exit status says so).
    pub unmeasured: Option<String>,
    /// The table row each run was read from (same order as `runs`), so callers can read the
    /// row's other columns (seed, model, ...).
    pub rows: Vec<usize>,
}

pub(crate) fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got `{p}`"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Reads runs from a table. `map` renames logical columns (`n=COL,...`), `filters` are `COL=V1|V2`.
pub fn read_runs(table: &Table, map: Option<&str>, filters: &[String]) -> Result<Dataset, String> {
    let find = |name: &str| table.headers.iter().position(|h| h == name);
    let mut idx: BTreeMap<&str, usize> = BTreeMap::new();
    let keys: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let mut mapped: BTreeMap<&str, String> = BTreeMap::new();
    if let Some(m) = map {
        for (k, v) in parse_pairs(m)? {
            let key = keys
                .iter()
                .find(|x| **x == k)
                .ok_or_else(|| format!("--map: unknown key `{k}` (known: {})", keys.join(", ")))?;
            mapped.insert(key, v);
        }
    }
    for (key, defaults) in COLUMNS {
        if let Some(col) = mapped.get(key) {
            idx.insert(key, find(col).ok_or_else(|| format!("--map {key}={col}: no column `{col}`"))?);
        } else if let Some(i) = defaults.iter().find_map(|d| find(d)) {
            idx.insert(key, i);
        }
    }
    for key in ["n", "d", "loss"] {
        if !idx.contains_key(key) {
            let tried = COLUMNS.iter().find(|c| c.0 == key).map(|c| c.1.join(", ")).unwrap_or_default();
            return Err(format!("no column for `{key}` (tried {tried}); name it with --map {key}=COLUMN"));
        }
    }
    let mut conds = Vec::new();
    for f in filters {
        let (c, vs) = f.split_once('=').ok_or_else(|| format!("--where: expected COL=V1|V2, got `{f}`"))?;
        let col = find(c.trim()).ok_or_else(|| format!("--where: no column `{}`", c.trim()))?;
        conds.push((col, vs.split('|').map(|v| v.trim().to_string()).collect::<Vec<_>>()));
    }
    let (mut na, mut dead, mut bad) = (0usize, 0usize, 0usize);
    let mut runs = Vec::new();
    let mut rows = Vec::new();
    let mut pending = BTreeSet::new();
    for (row_index, row) in table.rows.iter().enumerate() {
        if !conds.iter().all(|(i, vs)| vs.iter().any(|v| row.get(*i).map(String::as_str) == Some(v.as_str()))) {
            continue;
        }
        let cell = |k: &str| idx.get(k).and_then(|&i| row.get(i)).map(|s| s.trim()).unwrap_or("");
        let num = |k: &str| cell(k).parse::<f64>().ok().filter(|x| x.is_finite() && *x > 0.0);
        let (Some(n), Some(d), Some(loss)) = (num("n"), num("d"), num("loss")) else {
            bad += 1;
            continue;
        };
        let mut comp = |t: &str| -> Result<Option<Comp>, ()> {
            let spec = cell(&format!("{t}_format")).to_string();
            let spec = (!spec.is_empty() && spec != "none").then_some(spec);
            let gmse = match cell(&format!("{t}_gmse")) {
                "" => None,
                s => Some(s.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).ok_or(())?),
            };
            let fam = [cell(&format!("{t}_family")), cell("family")].into_iter().find(|s| !s.is_empty());
            let bits = cell(&format!("{t}_bits")).parse::<f64>().ok().filter(|b| b.is_finite() && *b > 0.0);
            let format = match (&spec, gmse) {
                (Some(s), _) => s.clone(),
                (None, Some(g)) => format!("gmse={g}"),
                (None, None) => return Ok(None),
            };
            if gmse.is_none() {
                pending.insert(format.clone());
            }
            Ok(Some(Comp {
                gmse: gmse.unwrap_or(f64::NAN),
                bits,
                family: fam.unwrap_or("scalar").to_string(),
                format,
                family_given: fam.is_some(),
            }))
        };
        let (Ok(w), Ok(a)) = (comp("w"), comp("a")) else {
            na += 1;
            continue;
        };
        let run = Run { n, d, loss, w, a };
        if run.comps().any(|c| c.gmse >= 1.0) {
            dead += 1;
            continue;
        }
        runs.push(run);
        rows.push(row_index);
    }
    let mut warnings = Vec::new();
    if na > 0 {
        warnings.push(format!("skipped {na} rows with unusable GMSE (`na` or not a number)"));
    }
    if dead > 0 {
        warnings.push(format!("skipped {dead} rows with GMSE >= 1 (rho = 0: the law cannot predict them)"));
    }
    if bad > 0 {
        warnings.push(format!("skipped {bad} rows without a positive N, D and loss"));
    }
    Ok(Dataset { runs, warnings, pending, unmeasured: None, rows })
}

/// What measuring a format through the plugins gave (the session layer's type).
pub use host_core::session::MeasuredFormat as Measured;

impl Dataset {
    /// Fills in measured formats; drops runs whose format could not be measured or has GMSE >= 1.
    pub fn fill(&mut self, measured: &BTreeMap<String, Result<Measured, String>>) {
        let mut failed = BTreeSet::new();
        let mut dead = 0;
        let mut keep = Vec::with_capacity(self.runs.len());
        for r in &mut self.runs {
            keep.push(fill_run(r, measured, &mut failed, &mut dead));
        }
        let mut k = keep.iter();
        self.runs.retain(|_| *k.next().unwrap_or(&true));
        let mut k = keep.iter();
        self.rows.retain(|_| *k.next().unwrap_or(&true));
        if !failed.is_empty() {
            let list: Vec<String> = failed.into_iter().collect();
            self.unmeasured = Some(format!("skipped runs whose format could not be measured: {}", list.join(", ")));
        }
        if dead > 0 {
            self.warnings.push(format!("skipped {dead} runs whose measured GMSE is >= 1"));
        }
        self.pending.clear();
    }
}

/// Fills the measured GMSE into `r`; false when the run must be dropped.
fn fill_run(
    r: &mut Run,
    measured: &BTreeMap<String, Result<Measured, String>>,
    failed: &mut BTreeSet<String>,
    dead: &mut usize,
) -> bool {
    for c in r.w.iter_mut().chain(r.a.iter_mut()) {
        if !c.gmse.is_nan() {
            continue;
        }
        match measured.get(&c.format) {
            Some(Ok(m)) => {
                c.gmse = m.gmse;
                if !c.family_given {
                    c.family = m.family.clone();
                }
                c.bits = c.bits.or(Some(m.bits));
            }
            Some(Err(e)) => {
                failed.insert(format!("`{}` ({e})", c.format));
                return false;
            }
            None => {
                failed.insert(format!("`{}` (not measured)", c.format));
                return false;
            }
        }
    }
    if r.comps().any(|c| c.gmse >= 1.0) {
        *dead += 1;
        return false;
    }
    true
}
