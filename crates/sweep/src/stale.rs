//! Stale results: a result in `DIR/jobs/` whose job is still planned (same
//! [slot](super::plan::slot)) but whose full configuration hash differs,
//! because the host's or the trainer's `RESULTS_VERSION`, a plugin's
//! version or a parameter default changed since it was computed.
//!
//! Stale results are never used silently: `sweep status` lists them with what
//! changed, `sweep run` computes the job again under its new hash (the old
//! file stays, for comparison), and `--keep-stale` on `run`, `collect` and
//! `all` keeps them instead (collected rows then carry `stale = true`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::plan::{Job, Manifest, slot};

/// A stale result of one planned job.
#[derive(Debug, Clone)]
pub struct Stale {
    /// The old result's hash.
    pub hash: String,
    /// The whole old result file.
    pub record: Value,
    /// What differs between the old configuration and the planned one (JSON paths with both
    /// values), at most a few entries.
    pub changed: Vec<String>,
}

/// Stale results by the index of the planned job they belong to.
#[derive(Debug, Default)]
pub struct StaleIndex(pub BTreeMap<usize, Stale>);

impl StaleIndex {
    /// Scans `DIR/jobs/` for finished results that are not results of a planned hash but share
    /// a planned job's slot. When several old results share a slot, the newest file wins.
    pub fn scan(m: &Manifest) -> StaleIndex {
        let planned: BTreeSet<&str> = m.jobs.iter().map(|j| j.hash.as_str()).collect();
        let by_slot: BTreeMap<String, &Job> = m.jobs.iter().map(|j| (slot_of(j), j)).collect();
        let mut found: BTreeMap<usize, (std::time::SystemTime, Stale)> = BTreeMap::new();
        let Ok(rd) = std::fs::read_dir(m.results.join("jobs")) else { return StaleIndex::default() };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(hash) = name.strip_suffix(".json") else { continue };
            if hash.contains('.') || planned.contains(hash) {
                continue;
            }
            let Some(record) = read_json(&e.path()) else { continue };
            if record["hash"].as_str() != Some(hash) || record.get("result").is_none() {
                continue;
            }
            let Some(job) = by_slot.get(&slot(&record["config"])) else { continue };
            let when = e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
            if found.get(&job.index).is_some_and(|(t, _)| *t >= when) {
                continue;
            }
            let changed = diff(&record["config"], &job.config, "", 3);
            found.insert(job.index, (when, Stale { hash: hash.to_string(), record, changed }));
        }
        StaleIndex(found.into_iter().map(|(i, (_, s))| (i, s)).collect())
    }

    /// The stale result of planned job `index`, if any.
    pub fn get(&self, index: usize) -> Option<&Stale> {
        self.0.get(&index)
    }
}

/// The slot of a planned job (manifests written before slots existed have none stored).
fn slot_of(j: &Job) -> String {
    if j.slot.is_empty() { slot(&j.config) } else { j.slot.clone() }
}

fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

/// Up to `max` differences between `old` and `new` as `path: old -> new` (a missing value
/// prints as `-`).
pub fn diff(old: &Value, new: &Value, path: &str, max: usize) -> Vec<String> {
    fn walk(old: Option<&Value>, new: Option<&Value>, path: &str, out: &mut Vec<String>, max: usize) {
        if out.len() >= max || old == new {
            return;
        }
        let show = |v: Option<&Value>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
        match (old, new) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    walk(a.get(k), b.get(k), &join(k), out, max);
                }
            }
            (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(Some(x), Some(y), &format!("{path}[{i}]"), out, max);
                }
            }
            _ => out.push(format!("{path}: {} -> {}", show(old), show(new))),
        }
    }
    let mut out = Vec::new();
    walk(Some(old), Some(new), path, &mut out, max);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_names_changed_leaves() {
        let old = json!({"versions": {"host": 1, "trainer": 1}, "plugins": [{"params": {"bits": 4}}], "seed": 0});
        let new = json!({"versions": {"host": 1, "trainer": 2}, "plugins": [{"params": {"bits": 4, "scale_bits": 16}}],
            "seed": 0});
        assert_eq!(diff(&old, &new, "", 5), ["plugins[0].params.scale_bits: - -> 16", "versions.trainer: 1 -> 2"]);
        assert_eq!(diff(&old, &new, "", 1).len(), 1);
        assert!(diff(&old, &old, "", 5).is_empty());
    }

    #[test]
    fn slot_ignores_code_identity_only() {
        let a = json!({"schema": 1, "format": "int4", "seed": 0, "plugins": [1], "versions": {"host": 1}});
        let b = json!({"schema": 2, "format": "int4", "seed": 0, "plugins": [2], "versions": {"host": 2}});
        let c = json!({"schema": 2, "format": "int4", "seed": 1, "plugins": [2], "versions": {"host": 2}});
        assert_eq!(slot(&a), slot(&b));
        assert_ne!(slot(&b), slot(&c));
    }
}
