//! The session layer: plugins loaded, SPECs resolved, formats built and measured.
//!
//! Owns: turning plugin paths into loaded libraries ([`load`], [`load_or_search`]), a SPEC
//! (preset, kind with parameters, `A+B`, `outliers:...+B`) into a built [`Prepared`] format
//! ([`prepare`], [`prepare_one`]), the GMSE of SPECs at the default precision
//! ([`measure_specs`], [`measure_loaded`]), a file distribution's averaged bits
//! ([`average_bits`]) and the thread pool of a command ([`with_threads`]). Every verb gets its
//! formats through here.
//!
//! Never: prints, parses command lines, or knows any verb. Problems that do not stop the work
//! (a library that did not load, a SPEC that did not build) come back as a
//! [`Diagnostics`] value for the caller to report.

use std::path::PathBuf;

use sdk::Shape;

use crate::diag::Diagnostics;
use crate::dist::Dist;
use crate::engine::{self, Config, Subject};
use crate::format::{HostFormat, OutlierParams, Outliers, Then};
use crate::loader::{self, Loaded};
use crate::spec;

/// Loads the plugins at `paths`; one failure per path that did not load (and one warning per
/// stale build) in the diagnostics.
pub fn load(paths: &[PathBuf]) -> (Vec<Loaded>, Diagnostics) {
    load_found(loader::discover(paths))
}

fn load_found(found: loader::Found) -> (Vec<Loaded>, Diagnostics) {
    let mut d = Diagnostics::default();
    for w in &found.warnings {
        d.warning(w);
    }
    let (ok, bad) = loader::load_all(&found.files);
    for f in found.failures.iter().chain(&bad) {
        d.failure_with(f, f.detail.clone());
    }
    (ok, d)
}

/// Loads the plugins at `paths` (`--plugins`), or, when none are given, from the default search
/// places ([`loader::default_places`]: `./plugins` if it exists, else next to the host
/// executable, then `HOST_PLUGIN_PATH`). An error when nothing loads, naming every place looked in.
pub fn load_or_search(paths: &[PathBuf]) -> (Result<Vec<Loaded>, String>, Diagnostics) {
    if !paths.is_empty() {
        let (libs, d) = load(paths);
        if libs.is_empty() {
            let e = format!(
                "no plugin could be loaded from {} (build them with `cargo build --release`, or use --plugins PATH)",
                paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            );
            return (Err(e), d);
        }
        return (Ok(libs), d);
    }
    let searched = loader::search(&loader::default_places());
    let (libs, d) = load_found(searched.found);
    if libs.is_empty() {
        let e = format!(
            "no plugin could be loaded; looked in {} (build them with `cargo build --release`, set {} to folders \
             of plugin libraries, or pass --plugins PATH)",
            searched.looked.join("; "),
            loader::PLUGIN_PATH_VAR
        );
        return (Err(e), d);
    }
    (Ok(libs), d)
}

/// A format ready to measure.
pub struct Prepared {
    /// SPEC as given.
    pub spec: String,
    /// Plugin name (`a+b` for a composition).
    pub plugin: String,
    /// Kind name (`a+b` for a composition).
    pub kind: String,
    /// The built format.
    pub format: Box<dyn HostFormat>,
    /// What it says about itself for the measured shape.
    pub info: sdk::plugin::FormatInfo,
    /// For `A+B` (independent compressions): the SPECs of `A` and `B`, whose
    /// capacities the product rule multiplies (DESIGN.md 2.3).
    pub parts: Vec<String>,
}

/// One part of a SPEC, built: the format, its plugin name and its kind.
type Part = (Box<dyn HostFormat>, String, String);

fn build_part(libs: &[Loaded], part: &str) -> Result<Part, String> {
    let r = spec::resolve(libs, part)?;
    let lib = &libs[r.plugin];
    let plugin = lib.lib.info.name.clone();
    let f = lib
        .lib
        .instantiate(&r.kind, &r.params)
        .map_err(|e| format!("format `{part}` (plugin `{plugin}`, kind `{}`): {e}", r.kind))?;
    Ok((Box::new(f), plugin, r.kind))
}

/// Builds a SPEC: one part, `A+B`, or `outliers:...+B`.
fn build(libs: &[Loaded], s: &str) -> Result<Part, String> {
    let parts = spec::split_parts(s);
    let is_outliers = |p: &str| p.split(':').next().map(str::trim) == Some("outliers");
    match parts.as_slice() {
        [one] if is_outliers(one) => {
            Err(format!("format `{s}`: `outliers` needs a format for the rest, e.g. `outliers:p=0.01+int4`"))
        }
        [one] => build_part(libs, one),
        [a, b] if is_outliers(a) => {
            let table = spec::parse_overrides(a.split_once(':').map(|x| x.1).unwrap_or(""))
                .map_err(|e| format!("format `{s}`: {e}"))?;
            let p = <OutlierParams as sdk::Params>::from_table(&table)
                .map_err(|e| format!("format `{s}` (outliers): {e}"))?;
            if !(0.0..1.0).contains(&p.p) {
                return Err(format!("format `{s}` (outliers): parameter `p`: must be in [0, 1) (got {})", p.p));
            }
            let (inner, plugin, kind) = build_part(libs, b)?;
            let f = Outliers { fraction: p.p, value_bits: p.value_bits, inner };
            Ok((Box::new(f), format!("host+{plugin}"), format!("outliers+{kind}")))
        }
        [a, b] => {
            let (first, pa, ka) = build_part(libs, a)?;
            let (second, pb, kb) = build_part(libs, b)?;
            Ok((Box::new(Then { first, second }), format!("{pa}+{pb}"), format!("{ka}+{kb}")))
        }
        _ => Err(format!("format `{s}`: compose at most two formats (`A+B`)")),
    }
}

/// Resolves and builds the selected formats (every preset when `specs` is empty); one failure
/// per SPEC that did not build, in SPEC order.
pub fn prepare(libs: &[Loaded], specs: &[String], shape: Shape) -> (Vec<Prepared>, Diagnostics) {
    let specs: Vec<String> = if specs.is_empty() {
        loader::all_presets(libs).iter().map(|p| p.preset.name.clone()).collect()
    } else {
        specs.to_vec()
    };
    // Built in parallel (some formats build tables or train codebooks);
    // failures are reported in SPEC order.
    use rayon::prelude::*;
    let built: Vec<Result<Prepared, String>> = specs.par_iter().map(|s| prepare_one(libs, s, shape)).collect();
    let mut d = Diagnostics::default();
    let ok = built.into_iter().filter_map(|r| r.map_err(|e| d.failure(e)).ok()).collect();
    (ok, d)
}

/// Builds one SPEC and asks it about `shape`.
pub fn prepare_one(libs: &[Loaded], s: &str, shape: Shape) -> Result<Prepared, String> {
    let (format, plugin, kind) = build(libs, s)?;
    let info = format.info(shape).map_err(|e| format!("format `{s}` (plugin `{plugin}`, kind `{kind}`): {e}"))?;
    let bits = info.bits.total();
    if !(bits.is_finite() && bits > 0.0) {
        return Err(format!("format `{s}` (plugin `{plugin}`): reports {bits} bits per element; skipped"));
    }
    let parts = match spec::split_parts(s).as_slice() {
        [a, b] if !kind.starts_with("outliers+") => vec![a.to_string(), b.to_string()],
        _ => vec![],
    };
    Ok(Prepared { spec: s.trim().to_string(), plugin, kind, format, info, parts })
}

/// Measures the GMSE of each SPEC on Gaussian tensors at the default shape and precision
/// (for `host fit` runs that name formats but carry no GMSE).
/// The plugins are loaded with [`load_or_search`], whose diagnostics come back.
pub fn measure_specs(
    paths: &[PathBuf],
    specs: &[String],
    threads: Option<usize>,
) -> (Result<Measured, String>, Diagnostics) {
    let (libs, d) = load_or_search(paths);
    let r = libs
        .map_err(|e| format!("formats {} need their GMSE measured, but {e}", specs.join(", ")))
        .and_then(|libs| measure_loaded(&libs, specs, threads));
    (r, d)
}

/// GMSE, family and bits of each SPEC by its result (or error).
pub type Measured = std::collections::BTreeMap<String, Result<MeasuredFormat, String>>;

/// What measuring a format through the plugins gave.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredFormat {
    /// Gaussian MSE.
    pub gmse: f64,
    /// The plugin's family.
    pub family: String,
    /// Bits per element.
    pub bits: f64,
}

/// [`measure_specs`] with plugins already loaded.
pub fn measure_loaded(libs: &[Loaded], specs: &[String], threads: Option<usize>) -> Result<Measured, String> {
    let shape = Config::default().shape;
    let mut out = std::collections::BTreeMap::new();
    let mut prepared = Vec::new();
    for s in specs {
        match prepare_one(libs, s, shape) {
            Ok(p) => prepared.push(p),
            Err(e) => {
                out.insert(s.clone(), Err(e));
            }
        }
    }
    let cfg = Config::default();
    let subjects: Vec<&dyn Subject> = prepared.iter().map(|p| &p.format as &dyn Subject).collect();
    let outcomes = with_threads(threads, || engine::measure(&subjects, &cfg, &mut |_, _, _| {}))?;
    for (p, o) in prepared.iter().zip(outcomes) {
        let m = o.map(|m| MeasuredFormat {
            gmse: m.gmse,
            family: p.info.family.as_str().to_string(),
            bits: p.info.bits.total(),
        });
        out.insert(p.spec.clone(), m);
    }
    Ok(out)
}

/// Runs `f` on a pool of `threads` threads (or the global pool).
pub fn with_threads<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    match threads {
        None => Ok(f()),
        Some(0) => Err("--threads must be at least 1".into()),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().map_err(|e| e.to_string())?;
            Ok(pool.install(f))
        }
    }
}

/// For a file distribution: replaces each format's bits by their element-weighted mean over the
/// file's tensor shapes (parts matched by name), dropping with a failure a format that cannot
/// describe some shape. Otherwise a no-op.
pub fn average_bits(dist: &Dist, prepared: &mut Vec<Prepared>) -> Diagnostics {
    let mut d = Diagnostics::default();
    let Dist::File(f) = dist else { return d };
    prepared.retain_mut(|p| match crate::dist::mean_bits(&p.format, f) {
        Ok(bits) => {
            p.info.bits = bits;
            true
        }
        Err(e) => {
            d.failure(format!("format `{}` (plugin `{}`): {e}; skipped", p.spec, p.plugin));
            false
        }
    });
    d
}
