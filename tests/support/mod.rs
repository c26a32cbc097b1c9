//! Helpers of the end-to-end tests: where things are, building the plugins
//! and fixtures on first use (once per test process; Cargo's own lock
//! serializes concurrent builds across processes), and running `host`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn root() -> PathBuf {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    host.parent().expect("host/ has a parent").to_path_buf()
}

/// The `host` binary Cargo built for this test.
pub fn host_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_host"))
}

/// `target/<profile>` of this build (where `host` lives).
fn profile_dir() -> PathBuf {
    host_exe().parent().expect("host has a folder").to_path_buf()
}

/// The Cargo target folder of this build.
pub fn target_dir() -> PathBuf {
    profile_dir().parent().expect("target/<profile> has a parent").to_path_buf()
}

/// Where the fixtures and the example plugin are built: `target/fixtures`.
pub fn fixtures_target() -> PathBuf {
    target_dir().join("fixtures")
}

/// Cargo arguments selecting this build's profile.
fn profile_args() -> Vec<String> {
    match profile_dir().file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => vec![],
        Some("release") => vec!["--release".into()],
        Some(other) => vec!["--profile".into(), other.into()],
    }
}

fn cargo_exe() -> String {
    std::env::var("CARGO").ok().or_else(|| option_env!("CARGO").map(str::to_string)).unwrap_or_else(|| "cargo".into())
}

/// Gives the stand-alone workspace in `dir` the repository's `Cargo.lock` when
/// it has none yet (same dependency versions, no registry query; Cargo trims it).
fn seed_lockfile(dir: &Path) {
    let lock = dir.join("Cargo.lock");
    if !lock.exists() {
        let _ = std::fs::copy(root().join("Cargo.lock"), lock);
    }
}

/// Runs cargo with `args` in the repository root; panics with its output on failure.
pub fn cargo(args: &[String], what: &str) {
    let start = std::time::Instant::now();
    let out = Command::new(cargo_exe())
        .args(args)
        .current_dir(root())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(
        out.status.success(),
        "building {what} failed: cargo {}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("[e2e] built {what} in {:.1} s", start.elapsed().as_secs_f64());
}

fn lib_file(dir: &Path, crate_name: &str) -> PathBuf {
    let name = crate_name.replace('-', "_");
    dir.join(format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}

/// The library file of shipped plugin `lib` (e.g. `plugin_int`) in this
/// build's profile folder (call [`shipped_plugins`] first).
pub fn shipped_library(lib: &str) -> PathBuf {
    lib_file(&profile_dir(), lib)
}

/// A shipped plugin crate.
pub struct Shipped {
    /// Package name (for `cargo -p`).
    pub package: String,
    /// Library crate name (its file is `lib<name>.so`).
    pub lib: String,
    /// Its folder.
    pub dir: PathBuf,
}

/// The shipped plugin crates (`plugins/*/Cargo.toml`), in folder order.
pub fn shipped_packages() -> Vec<Shipped> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root().join("plugins")) else { return out };
    let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: bad Cargo.toml: {e}", dir.display()));
        if let Some(package) = doc.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()) {
            let lib = doc.get("lib").and_then(|l| l.get("name")).and_then(|n| n.as_str()).unwrap_or(package);
            out.push(Shipped { package: package.to_string(), lib: lib.to_string(), dir });
        }
    }
    out
}

/// Newest modification time of the files under `path` (skipping `target/`).
fn newest_mtime(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "target")
        .filter_map(|e| newest_mtime(&e.path()))
        .max()
}

/// Makes sure the shipped plugins (`plugins/*`) are built for this profile,
/// next to `host`, where `host rank plugins/` looks for them.
///
/// `cargo test --workspace` has already built them; building them again with
/// `-p` would select other features of their dependencies and, as a `cdylib`'s
/// file name carries no hash, overwrite the workspace build's libraries (and
/// the next `cargo test` would rebuild them back). So cargo is only run when a
/// library is missing or older than its sources, the SDK's, or the manifests.
pub fn shipped_plugins() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let root = root();
        let packages = shipped_packages();
        assert!(!packages.is_empty(), "no plugin crates under plugins/");
        let shared = [root.join("sdk"), root.join("Cargo.toml"), root.join("Cargo.lock")];
        let stale = packages.iter().any(|p| {
            let built = std::fs::metadata(lib_file(&profile_dir(), &p.lib)).and_then(|m| m.modified()).ok();
            let sources = shared.iter().chain(std::iter::once(&p.dir)).filter_map(|p| newest_mtime(p)).max();
            match (built, sources) {
                (Some(b), Some(s)) => b < s,
                _ => true,
            }
        });
        if !stale {
            return;
        }
        let mut args: Vec<String> = vec!["build".into(), "--quiet".into(), "--lib".into()];
        args.extend(profile_args());
        args.push("--target-dir".into());
        args.push(target_dir().display().to_string());
        for p in &packages {
            args.push("-p".into());
            args.push(p.package.clone());
        }
        cargo(&args, "the shipped plugins");
    });
}

/// The built fixture libraries.
pub struct Fixtures {
    /// `panicky-boom` panics in compress, `panicky-fine` works.
    pub panicky: PathBuf,
    /// `nan-output` writes a NaN.
    pub nan_output: PathBuf,
    /// `wrong-length` returns half the values, `wrong-length-fine` works.
    pub wrong_length: PathBuf,
    /// A shared library without the SDK export.
    pub not_a_plugin: PathBuf,
}

/// Builds `tests/fixtures` (release, into `target/fixtures`) once.
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let manifest = root().join("tests/fixtures/Cargo.toml");
        seed_lockfile(&root().join("tests/fixtures"));
        let args: Vec<String> = vec![
            "build".into(),
            "--quiet".into(),
            "--release".into(),
            "--manifest-path".into(),
            manifest.display().to_string(),
            "--target-dir".into(),
            fixtures_target().display().to_string(),
        ];
        cargo(&args, "the fixture plugins");
        let dir = fixtures_target().join("release");
        let f = Fixtures {
            panicky: lib_file(&dir, "fixture-panicky"),
            nan_output: lib_file(&dir, "fixture-nan-output"),
            wrong_length: lib_file(&dir, "fixture-wrong-length"),
            not_a_plugin: lib_file(&dir, "fixture-not-a-plugin"),
        };
        for p in [&f.panicky, &f.nan_output, &f.wrong_length, &f.not_a_plugin] {
            assert!(p.is_file(), "fixture not built: {}", p.display());
        }
        f
    })
}

/// The SDK version a changed interface would get: the host's, minor bumped.
pub fn bumped_sdk_version() -> String {
    let v: Vec<u64> = sdk::SDK_VERSION.split('.').map(|p| p.parse().expect("numeric SDK version")).collect();
    format!("{}.{}.0", v[0], v[1] + 1)
}

/// Writes `bytes` to `path` unless it already holds them (keeps mtimes, so
/// Cargo does not rebuild the patched SDK on every run).
fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return;
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn copy_tree(from: &Path, to: &Path) {
    let rd = std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
    for e in rd {
        let e = e.expect("directory entry");
        let (src, name) = (e.path(), e.file_name());
        if name == "target" {
            continue;
        }
        if src.is_dir() {
            copy_tree(&src, &to.join(&name));
        } else {
            let bytes = std::fs::read(&src).unwrap_or_else(|e| panic!("cannot read {}: {e}", src.display()));
            write_if_changed(&to.join(&name), &bytes);
        }
    }
}

/// The anchor in `sdk/src/abi.rs` after which the patch adds a method.
const ABI_ANCHOR: &str = "pub trait FfiFormat: Send + Sync {";
/// The interface change: one more method in the boundary trait.
const ABI_PATCH: &str = "
        /// Added by the end-to-end tests: an interface change.
        fn e2e_interface_change(&self) -> u32 {
            2
        }
";

/// A plugin built against a patched copy of the SDK with one method added
/// to the ABI trait, and its version bumped (see [`bumped_sdk_version`]) when
/// `bump_version`. The copy is written under `target/fixtures/<name>-src`
/// (never committed), with a workspace manifest derived from the repository's.
pub fn changed_interface_plugin(bump_version: bool) -> &'static PathBuf {
    static BUMPED: OnceLock<PathBuf> = OnceLock::new();
    static SAME: OnceLock<PathBuf> = OnceLock::new();
    let (cell, name, version) = if bump_version {
        (&BUMPED, "fixture-incompatible", bumped_sdk_version())
    } else {
        (&SAME, "fixture-changed-abi", sdk::SDK_VERSION.to_string())
    };
    cell.get_or_init(|| {
        let work = fixtures_target().join(format!("{name}-src"));
        let root = root();

        // The SDK, copied and patched.
        copy_tree(&root.join("sdk"), &work.join("sdk"));
        let abi = std::fs::read_to_string(root.join("sdk/src/abi.rs")).expect("read sdk/src/abi.rs");
        assert!(
            abi.contains(ABI_ANCHOR),
            "sdk/src/abi.rs no longer contains `{ABI_ANCHOR}`: update the interface patch in tests/support/mod.rs"
        );
        let patched = abi.replacen(ABI_ANCHOR, &format!("{ABI_ANCHOR}{ABI_PATCH}"), 1);
        write_if_changed(&work.join("sdk/src/abi.rs"), patched.as_bytes());
        let mut sdk_manifest: toml::Table = std::fs::read_to_string(root.join("sdk/Cargo.toml"))
            .expect("read sdk/Cargo.toml")
            .parse()
            .expect("sdk/Cargo.toml parses");
        sdk_manifest.remove("dev-dependencies");
        sdk_manifest["package"]
            .as_table_mut()
            .expect("[package]")
            .insert("version".into(), toml::Value::String(version.clone()));
        write_if_changed(&work.join("sdk/Cargo.toml"), toml::to_string(&sdk_manifest).unwrap().as_bytes());

        // A workspace around it with the repository's shared settings.
        let root_manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
            .expect("read Cargo.toml")
            .parse()
            .expect("Cargo.toml parses");
        let ws = root_manifest["workspace"].as_table().expect("[workspace]");
        let mut new_ws = toml::Table::new();
        new_ws.insert("resolver".into(), "3".into());
        new_ws.insert("members".into(), toml::Value::Array(vec!["sdk".into(), "plugin".into()]));
        if let Some(p) = ws.get("package") {
            new_ws.insert("package".into(), p.clone());
        }
        let mut deps = ws.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
        let mut sdk_dep = toml::Table::new();
        sdk_dep.insert("path".into(), "sdk".into());
        deps.insert("sdk".into(), toml::Value::Table(sdk_dep));
        new_ws.insert("dependencies".into(), toml::Value::Table(deps));
        let mut manifest = toml::Table::new();
        manifest.insert("workspace".into(), toml::Value::Table(new_ws));
        let header = "# Written by the end-to-end tests (tests/support/mod.rs); do not edit.\n";
        write_if_changed(
            &work.join("Cargo.toml"),
            format!("{header}{}", toml::to_string(&manifest).unwrap()).as_bytes(),
        );
        seed_lockfile(&work);

        // The plugin, against the patched SDK.
        let lib_rs = toml::Value::String(root.join("tests/fixtures/incompatible/lib.rs").display().to_string());
        let plugin_manifest = format!(
            "{header}[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\npath = {lib_rs}\n\n[dependencies]\nsdk.workspace = true\n"
        );
        write_if_changed(&work.join("plugin/Cargo.toml"), plugin_manifest.as_bytes());

        let args: Vec<String> = vec![
            "build".into(),
            "--quiet".into(),
            "--release".into(),
            "--manifest-path".into(),
            work.join("Cargo.toml").display().to_string(),
            "--target-dir".into(),
            fixtures_target().display().to_string(),
            "-p".into(),
            name.into(),
        ];
        cargo(&args, &format!("a plugin against a patched SDK {version}"));
        let lib = lib_file(&fixtures_target().join("release"), name);
        assert!(lib.is_file(), "not built: {}", lib.display());
        lib
    })
}

/// The example plugin, built (release) into `target/fixtures`, its own tests
/// (the conformance kit) run first.
pub fn example_plugin() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let manifest = root().join("examples/minimal-plugin/Cargo.toml");
        seed_lockfile(&root().join("examples/minimal-plugin"));
        for verb in ["test", "build"] {
            let args: Vec<String> = vec![
                verb.into(),
                "--quiet".into(),
                "--release".into(),
                "--manifest-path".into(),
                manifest.display().to_string(),
                "--target-dir".into(),
                fixtures_target().display().to_string(),
            ];
            cargo(&args, &format!("examples/minimal-plugin (cargo {verb})"));
        }
        let lib = lib_file(&fixtures_target().join("release"), "minimal-plugin");
        assert!(lib.is_file(), "not built: {}", lib.display());
        lib
    })
}

/// What one `host` run gave.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub cmd: String,
    /// Exit code (the run panics if `host` died from a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }

    /// Stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("{}: stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.cmd, self.stdout, self.stderr)
        })
    }

    /// Asserts the exit code, showing everything on failure.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "{}: exit code {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
            self.cmd, self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Runs `host` in the repository root with `args` and extra environment.
pub fn host_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(host_exe());
    c.args(args).current_dir(root()).env_remove("RAYON_NUM_THREADS");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run host");
    let cmd = format!("host {}", args.join(" "));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The host never dies: no signal (abort, segfault), only 0, 1 or 2 (the exit status in the
    // README: done, nothing done, something failed while the rest was printed).
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("{cmd}: host was killed by a signal ({:?})\nstderr:\n{stderr}", out.status));
    assert!((0..=2).contains(&code), "{cmd}: exit code {code}, expected 0, 1 or 2\nstderr:\n{stderr}");
    Run { cmd, code, stdout, stderr }
}

/// Runs `host` in the repository root with `args`.
pub fn host(args: &[&str]) -> Run {
    host_env(args, &[])
}

/// The rows of a `host rank --json` output, by format spec.
pub fn rows_by_format(run: &Run) -> std::collections::BTreeMap<String, serde_json::Value> {
    let v = run.json();
    let rows = v.as_array().unwrap_or_else(|| panic!("{}: JSON is not an array", run.cmd));
    rows.iter().map(|r| (r["format"].as_str().expect("format is a string").to_string(), r.clone())).collect()
}

/// A number field of a JSON row.
#[track_caller]
pub fn num(row: &serde_json::Value, key: &str) -> f64 {
    row[key].as_f64().unwrap_or_else(|| panic!("field `{key}` missing or not a number in {row}"))
}

/// A path as a `&str` argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A fresh, empty folder `target/<group>/<name>` for one test (emptied if a run before left it).
pub fn scratch(group: &str, name: &str) -> PathBuf {
    let d = target_dir().join(group).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes an experiment file `exp.toml` with `text` into `dir` and returns its path.
pub fn write_experiment(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("exp.toml");
    std::fs::write(&p, text).unwrap();
    p
}
