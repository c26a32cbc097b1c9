//! The fuzz targets' bodies: one function per input parser of the host,
//! called through the `host` library's public paths. Each takes arbitrary
//! bytes and must return (an `Ok` or a clear `Err`), never panic, hang or
//! allocate without bound.
//!
//! Shared by the cargo-fuzz targets in `fuzz_targets/` (nightly, libFuzzer)
//! and by the stable regression test `host/tests/fuzz_corpus.rs`, which
//! feeds every file of `corpus/<target>/` and `regressions/<target>/` to
//! the same function (it includes this file with `#[path]`).

use std::path::Path;

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target: its name (the folder under `corpus/` and `regressions/`)
/// and its body.
pub const TARGETS: [(&str, Body); 7] = [
    ("spec", spec),
    ("experiment", experiment),
    ("law", law),
    ("npy", npy),
    ("safetensors", safetensors),
    ("fit_csv", fit_csv),
    ("fit_json", fit_json),
];

/// Text targets see the input as UTF-8 (lossily: every input is tried).
fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A format SPEC: its composition parts and each part's `key=value` list,
/// then resolution (against no plugins: always an error, never a panic).
pub fn spec(data: &[u8]) {
    let s = text(data);
    for part in host::spec::split_parts(&s) {
        if let Some((_, rest)) = part.split_once(':') {
            let _ = host::spec::parse_overrides(rest);
        }
    }
    let _ = host::spec::parse_overrides(&s);
    assert!(host::spec::resolve(&[], &s).is_err(), "a SPEC resolved without plugins");
}

/// An experiment file (`host sweep`): parse, then expand its format grids.
pub fn experiment(data: &[u8]) {
    let s = text(data);
    if let Ok(e) = host::sweep::exp::Experiment::parse(Path::new("fuzz.toml"), &s) {
        let _ = e.format_specs();
        let _ = e.plugin_paths();
    }
}

/// A law file: parse, then evaluate the capacity and loss of each family.
pub fn law(data: &[u8]) {
    let s = text(data);
    if let Ok(l) = host::law::Law::parse(&s, "fuzz") {
        for family in ["scalar", "vector", "sparse", "other"] {
            for gmse in [0.0, 1e-3, 0.5, 1.0, 10.0] {
                let rho = l.rho(family, gmse);
                let _ = l.rho_samples(family, gmse);
                let _ = l.loss(1e6, 1e9, rho);
            }
        }
    }
}

/// Reads `data` as the tensor file `name` and views each tensor as a matrix.
fn tensors(name: &str, data: &[u8]) {
    let path = Path::new(name);
    if let Ok(r) = host::tensorio::read_bytes(path, data) {
        for (_, t) in r.tensors {
            if let Ok(t) = t {
                let _ = t.matrix(path);
            }
        }
    }
}

/// A `.npy` file.
pub fn npy(data: &[u8]) {
    tensors("fuzz.npy", data);
}

/// A `.safetensors` file.
pub fn safetensors(data: &[u8]) {
    tensors("fuzz.safetensors", data);
}

/// Run records as CSV (`host fit`, `host validate`): the table, then the runs.
pub fn fit_csv(data: &[u8]) {
    if let Ok(t) = host::fit::data::Table::from_csv(&text(data)) {
        let _ = host::fit::data::read_runs(&t, None, &[]);
    }
}

/// Run records as JSON (an object, an array, or JSON lines): the table, then the runs.
pub fn fit_json(data: &[u8]) {
    if let Ok(t) = host::fit::data::Table::from_json_text(Path::new("fuzz.json"), &text(data)) {
        let _ = host::fit::data::read_runs(&t, None, &[]);
    }
}
