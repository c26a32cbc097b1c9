//! Finding plugin libraries on disk and loading them, one failure at a time.
//!
//! A path may be a built library (`libplugin_int.so`), a folder of built
//! libraries, a plugin crate (a folder with `Cargo.toml` whose library is
//! looked up in the Cargo target folder), or a folder of such crates (the
//! repository's `plugins/`). A file that fails to load becomes one
//! [`LoadFailure`]; the others still load. A crate's library that is older
//! than any of the crate's sources (`Cargo.toml`, `src/**`) is still loaded,
//! with a one-line warning ("stale build").
//!
//! The host loads exactly the paths it is given, plus, for the verbs whose
//! `--plugins` is optional, the default search places of [`default_places`];
//! it never builds or fetches anything.

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
    /// Remarks that are not failures (one line each): stale builds of plugin crates.
    pub warnings: Vec<String>,
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
            Ok(Some(lib)) => {
                if let Some(src) = newer_source(p, &lib) {
                    found.warnings.push(format!(
                        "{}: stale build: {} is newer than {} (run cargo build --release)",
                        p.display(),
                        src.strip_prefix(p).unwrap_or(&src).display(),
                        lib.display()
                    ));
                }
                found.files.push(lib)
            }
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

/// The newest of the crate's sources (`Cargo.toml`, every file under `src/`) when it was
/// modified after `lib`, else `None` (also when a time cannot be read).
fn newer_source(crate_dir: &Path, lib: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(lib).and_then(|m| m.modified()).ok()?;
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut consider = |p: PathBuf| {
        if let Ok(t) = std::fs::metadata(&p).and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(n, _)| t > *n)
        {
            newest = Some((t, p));
        }
    };
    consider(crate_dir.join("Cargo.toml"));
    let mut stack = vec![crate_dir.join("src")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => consider(p),
                _ => {}
            }
        }
    }
    newest.filter(|(t, _)| *t > built).map(|(_, p)| p)
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

/// The environment variable naming extra plugin places (colon-separated), searched after the
/// default place by the verbs whose `--plugins` is optional (`train`, `fit`, `bench --train`).
pub const PLUGIN_PATH_VAR: &str = "HOST_PLUGIN_PATH";

/// A place the default plugin search looks in.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// The file or folder.
    pub path: PathBuf,
    /// Why it is searched, for messages (`next to the host executable`).
    pub why: String,
}

/// Where plugins are looked for when a verb's `--plugins` is not given: `./plugins` when that
/// folder exists, else the folder holding the `host` executable (where `cargo build --release`
/// puts the `libplugin_*` libraries, e.g. `target/release/`), then every path of
/// `HOST_PLUGIN_PATH` (colon-separated; empty entries skipped).
pub fn default_places() -> Vec<Place> {
    let exe_dir = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf));
    places_from(Path::new("plugins").is_dir(), exe_dir, std::env::var_os(PLUGIN_PATH_VAR))
}

/// [`default_places`] from its inputs.
fn places_from(cwd_plugins: bool, exe_dir: Option<PathBuf>, var: Option<std::ffi::OsString>) -> Vec<Place> {
    // `./plugins` is listed even when missing, so that an error can say it was looked for.
    let mut out = vec![Place { path: PathBuf::from("plugins"), why: "in the current folder".into() }];
    if !cwd_plugins && let Some(d) = exe_dir {
        out.push(Place { path: d, why: "next to the host executable".into() });
    }
    if let Some(v) = var {
        for p in std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()) {
            out.push(Place { path: p, why: PLUGIN_PATH_VAR.into() });
        }
    }
    out
}

/// What searching the default places found.
#[derive(Default)]
pub struct Searched {
    /// Libraries to load (each once), failures and warnings within the places that had any.
    pub found: Found,
    /// One entry per place: where, why, and what was there.
    pub looked: Vec<String>,
}

/// Searches `places` in order. A place that holds no plugin (missing, empty, not a plugin) is
/// only noted in `looked`; the failures inside a place that holds some are kept (e.g. one crate
/// of `./plugins` not built).
pub fn search(places: &[Place]) -> Searched {
    let mut out = Searched::default();
    let mut seen = std::collections::HashSet::new();
    for place in places {
        let what = format!("{} ({})", place.path.display(), place.why);
        if !place.path.exists() {
            out.looked.push(format!("{what}: no such file or folder"));
            continue;
        }
        let here = discover(std::slice::from_ref(&place.path));
        if here.files.is_empty() {
            let why: Vec<String> = here.failures.iter().map(|f| f.message.clone()).collect();
            out.looked
                .push(format!("{what}: {}", if why.is_empty() { "nothing to load".into() } else { why.join("; ") }));
            continue;
        }
        out.looked.push(format!("{what}: {} libraries", here.files.len()));
        for f in here.files {
            if seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())) {
                out.found.files.push(f);
            }
        }
        out.found.failures.extend(here.failures);
        out.found.warnings.extend(here.warnings);
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
            // Another kind of abi_stable library (the CUDA backend beside the host binary, found
            // by a folder search): not a plugin, and not a failure either.
            Err(LoadError::OtherLibrary(_)) => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// A fresh folder under the system's temporary folder.
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("host-loader-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn touch(p: &Path, t: SystemTime) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        if !p.exists() {
            std::fs::write(p, "x").unwrap();
        }
        std::fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
    }

    /// A plugin crate `x` with a (fake) built library in its own `target/release`.
    fn fake_crate(dir: &Path, t: SystemTime) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"plugin-x\"\n[lib]\ncrate-type = [\"cdylib\"]\n")
            .unwrap();
        touch(&dir.join("Cargo.toml"), t);
        touch(&dir.join("src/lib.rs"), t);
        touch(&dir.join("src/deep/inner.rs"), t);
        let lib = dir.join("target/release").join(format!("{}plugin_x{DYLIB_SUFFIX}", std::env::consts::DLL_PREFIX));
        touch(&lib, t + Duration::from_secs(10));
        lib
    }

    #[test]
    fn stale_build_is_one_warning_naming_the_newer_source() {
        let d = scratch("stale");
        let t = SystemTime::now() - Duration::from_secs(3600);
        let lib = fake_crate(&d, t);
        let found = discover(std::slice::from_ref(&d));
        assert_eq!(found.files, std::slice::from_ref(&lib));
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
        // A source deep under src/ changed after the build.
        touch(&d.join("src/deep/inner.rs"), t + Duration::from_secs(20));
        let found = discover(std::slice::from_ref(&d));
        assert_eq!(found.files, std::slice::from_ref(&lib), "a stale library still loads");
        assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
        let w = &found.warnings[0];
        assert!(w.contains("stale build") && w.contains("run cargo build --release"), "{w}");
        assert!(
            w.contains(&format!("src{}deep{}inner.rs", std::path::MAIN_SEPARATOR, std::path::MAIN_SEPARATOR)),
            "{w}"
        );
        assert!(w.contains(&lib.display().to_string()) && !w.contains('\n'), "{w}");
        // Cargo.toml counts too; files outside src/ do not.
        touch(&d.join("src/deep/inner.rs"), t);
        touch(&d.join("README.md"), t + Duration::from_secs(30));
        assert!(discover(std::slice::from_ref(&d)).warnings.is_empty());
        touch(&d.join("Cargo.toml"), t + Duration::from_secs(30));
        let w = discover(std::slice::from_ref(&d)).warnings;
        assert!(w.len() == 1 && w[0].contains("Cargo.toml is newer"), "{w:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn default_places_in_order() {
        let exe = PathBuf::from("/opt/host/bin");
        let var = Some(std::ffi::OsString::from("/a::/b/c"));
        let paths = |v: Vec<Place>| v.into_iter().map(|p| p.path).collect::<Vec<_>>();
        // ./plugins exists: it, then HOST_PLUGIN_PATH (empty entries skipped).
        assert_eq!(
            paths(places_from(true, Some(exe.clone()), var.clone())),
            ["plugins", "/a", "/b/c"].map(PathBuf::from)
        );
        // It does not: still listed (an error says it was looked for), then next to the executable.
        let p = places_from(false, Some(exe.clone()), var);
        assert_eq!(paths(p.clone()), ["plugins", "/opt/host/bin", "/a", "/b/c"].map(PathBuf::from));
        assert_eq!(p[1].why, "next to the host executable");
        assert_eq!(p[2].why, PLUGIN_PATH_VAR);
        assert_eq!(paths(places_from(false, Some(exe), None)), ["plugins", "/opt/host/bin"].map(PathBuf::from));
    }

    #[test]
    fn search_notes_every_place_and_keeps_each_library_once() {
        let d = scratch("search");
        let lib = fake_crate(&d.join("crate"), SystemTime::now() - Duration::from_secs(60));
        std::fs::create_dir_all(d.join("empty")).unwrap();
        let place = |p: PathBuf, why: &str| Place { path: p, why: why.into() };
        let places = [
            place(d.join("missing"), "in the current folder"),
            place(d.join("empty"), "next to the host executable"),
            place(d.join("crate"), PLUGIN_PATH_VAR),
            place(lib.clone(), PLUGIN_PATH_VAR),
        ];
        let s = search(&places);
        assert_eq!(s.found.files, std::slice::from_ref(&lib), "the same library through two places is kept once");
        assert!(s.found.failures.is_empty(), "places without plugins are notes, not failures");
        assert_eq!(s.looked.len(), 4, "{:?}", s.looked);
        assert!(s.looked[0].contains("missing (in the current folder): no such file or folder"), "{:?}", s.looked);
        assert!(s.looked[1].contains("empty (next to the host executable): no plugin libraries"), "{:?}", s.looked);
        assert!(s.looked[2].ends_with(": 1 libraries"), "{:?}", s.looked);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
