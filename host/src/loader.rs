//! Finding plugin libraries on disk and loading them, one failure at a time.
//!
//! A path may be a built library (`libplugin_int.so`), a folder of built
//! libraries, a plugin crate (a folder with `Cargo.toml` whose library is
//! looked up in the Cargo target folder), or a folder of such crates (the
//! repository's `plugins/`). A file that fails to load becomes one
//! [`LoadFailure`]; the others still load.

use std::path::{Path, PathBuf};

use sdk::abi::{Library, LoadError};
use sdk::plugin::{KindInfo, PresetInfo};

/// A library that loaded.
pub struct Loaded {
    /// Where it came from.
    pub path: PathBuf,
    /// The library.
    pub lib: Library,
}

/// A path that did not give a plugin, with the one line to show.
#[derive(Debug)]
pub struct LoadFailure {
    /// The file or folder involved.
    pub path: PathBuf,
    /// One line: what went wrong and what to do.
    pub message: String,
    /// Longer report for `-v`, if any.
    pub detail: Option<String>,
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// File-name suffix of shared libraries on this platform.
pub const DYLIB_SUFFIX: &str = std::env::consts::DLL_SUFFIX;

fn is_dylib(p: &Path) -> bool {
    p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(DYLIB_SUFFIX))
}

/// Everything that was found under the given paths.
#[derive(Default)]
pub struct Found {
    /// Library files to load, in a stable order.
    pub files: Vec<PathBuf>,
    /// Paths that gave no library.
    pub failures: Vec<LoadFailure>,
}

/// Expands user paths into library files.
pub fn discover(paths: &[PathBuf]) -> Found {
    let mut found = Found::default();
    for p in paths {
        discover_one(p, &mut found, true);
    }
    let mut seen = std::collections::HashSet::new();
    found.files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));
    found
}

fn fail(found: &mut Found, path: &Path, message: impl Into<String>) {
    found.failures.push(LoadFailure { path: path.to_path_buf(), message: message.into(), detail: None });
}

fn discover_one(p: &Path, found: &mut Found, top: bool) {
    if p.is_file() {
        if is_dylib(p) || top {
            found.files.push(p.to_path_buf());
        }
        return;
    }
    if !p.is_dir() {
        fail(found, p, "no such file or folder");
        return;
    }
    if p.join("Cargo.toml").is_file() {
        match crate_library(p) {
            Ok(Some(lib)) => found.files.push(lib),
            Ok(None) => {}
            Err(msg) => fail(found, p, msg),
        }
        return;
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(p) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => return fail(found, p, format!("cannot read folder: {e}")),
    };
    entries.sort();
    let before = (found.files.len(), found.failures.len());
    for e in entries {
        if is_dylib(&e) || (e.is_dir() && e.join("Cargo.toml").is_file()) {
            discover_one(&e, found, false);
        }
    }
    if top && (found.files.len(), found.failures.len()) == before {
        fail(found, p, format!("no plugin libraries (*{DYLIB_SUFFIX}) or plugin crates in this folder"));
    }
}

/// The built library of the plugin crate in `dir`, `Ok(None)` when the crate
/// is not a `cdylib` (nothing to load), an error when it is not built.
fn crate_library(dir: &Path) -> Result<Option<PathBuf>, String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| format!("cannot read Cargo.toml: {e}"))?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("bad Cargo.toml: {}", e.message()))?;
    let lib = doc.get("lib").and_then(|v| v.as_table());
    let is_cdylib = lib
        .and_then(|l| l.get("crate-type"))
        .and_then(|v| v.as_array())
        .is_some_and(|a| a.iter().any(|t| t.as_str() == Some("cdylib")));
    if !is_cdylib {
        return Ok(None);
    }
    let package = doc.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()).unwrap_or("");
    let name = lib.and_then(|l| l.get("name")).and_then(|n| n.as_str()).unwrap_or(package).replace('-', "_");
    let file = format!("{}{name}{DYLIB_SUFFIX}", std::env::consts::DLL_PREFIX);
    let candidates = target_dirs(dir);
    for d in &candidates {
        let f = d.join(&file);
        if f.is_file() {
            return Ok(Some(f));
        }
    }
    Err(format!("plugin crate not built ({file} not found): run `cargo build --release`"))
}

/// Folders where Cargo puts built libraries, most likely first: next to this
/// executable, `$CARGO_TARGET_DIR`, and `target/` above the crate.
fn target_dirs(crate_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(d) = exe.parent()
    {
        out.push(d.to_path_buf());
        // Test binaries live in target/<profile>/deps.
        if d.ends_with("deps")
            && let Some(up) = d.parent()
        {
            out.push(up.to_path_buf());
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        out.push(PathBuf::from(&t).join("release"));
        out.push(PathBuf::from(t).join("debug"));
    }
    let abs = crate_dir.canonicalize().unwrap_or_else(|_| crate_dir.to_path_buf());
    for anc in abs.ancestors() {
        let t = anc.join("target");
        if t.is_dir() {
            out.push(t.join("release"));
            out.push(t.join("debug"));
        }
    }
    out
}

/// Loads every library; failures are collected, never fatal.
pub fn load_all(files: &[PathBuf]) -> (Vec<Loaded>, Vec<LoadFailure>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for f in files {
        match Library::load(f) {
            Ok(lib) => ok.push(Loaded { path: f.clone(), lib }),
            Err(e) => bad.push(LoadFailure {
                path: f.clone(),
                message: e.to_string(),
                detail: LoadError::detail(&e).map(str::to_string),
            }),
        }
    }
    (ok, bad)
}

/// A kind of a loaded plugin.
pub struct KindRef<'a> {
    /// The plugin library.
    pub plugin: &'a Loaded,
    /// The kind.
    pub kind: &'a KindInfo,
}

/// A preset of a loaded plugin.
pub struct PresetRef<'a> {
    /// The kind it belongs to.
    pub kind: KindRef<'a>,
    /// The preset.
    pub preset: &'a PresetInfo,
}

/// Looks up a kind by name across plugins (first plugin wins).
pub fn find_kind<'a>(libs: &'a [Loaded], name: &str) -> Option<KindRef<'a>> {
    libs.iter()
        .flat_map(|p| p.lib.info.kinds.iter().map(move |k| KindRef { plugin: p, kind: k }))
        .find(|k| k.kind.name == name)
}

/// Every preset of every plugin, in load order.
pub fn all_presets(libs: &[Loaded]) -> Vec<PresetRef<'_>> {
    libs.iter()
        .flat_map(|p| {
            p.lib.info.kinds.iter().flat_map(move |k| {
                k.presets.iter().map(move |pr| PresetRef { kind: KindRef { plugin: p, kind: k }, preset: pr })
            })
        })
        .collect()
}

/// Looks up a preset by name across plugins (first plugin wins).
pub fn find_preset<'a>(libs: &'a [Loaded], name: &str) -> Option<PresetRef<'a>> {
    all_presets(libs).into_iter().find(|p| p.preset.name == name)
}
