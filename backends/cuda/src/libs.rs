//! Finding the CUDA libraries before cudarc opens them.
//!
//! cudarc (dynamic loading) opens each library by name (`libcuda.so.1`, `libnvrtc.so.13`, ...)
//! through the system search path and panics when none is found. Here every library is first
//! looked for, by name and then by full path in the folders below, and kept open: the dynamic
//! loader then hands cudarc the already-open library (it matches a library's soname), so
//! libraries installed as Python packages (`nvidia-cuda-nvrtc`, `nvidia-cublas`) are found
//! without `LD_LIBRARY_PATH`. A missing library is one line naming it and where it was looked for.
//!
//! Folders searched after the system path: the entries of `$HOST_CUDA_LIBS` (colon-separated;
//! each folder itself and its `nvidia/*/lib` subfolders), then the `nvidia/*/lib` folders of the
//! Python site-packages in `$VIRTUAL_ENV`, `$CONDA_PREFIX`, `~/.local` and `/usr{,/local}/lib`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Environment variable with extra folders holding CUDA libraries.
pub const LIBS_ENV: &str = "HOST_CUDA_LIBS";

/// A library cudarc will open: what to call it in messages and the file names it accepts
/// (sonames, newest first).
pub struct Wanted {
    /// Name in messages.
    pub what: &'static str,
    /// File names tried.
    pub names: &'static [&'static str],
}

/// The NVIDIA driver.
pub const DRIVER: Wanted = Wanted { what: "the NVIDIA driver (libcuda)", names: &["libcuda.so.1", "libcuda.so"] };
/// NVRTC (the run-time CUDA C compiler).
pub const NVRTC: Wanted =
    Wanted { what: "NVRTC (libnvrtc)", names: &["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"] };
/// cuBLASLt, which cuBLAS needs.
pub const CUBLASLT: Wanted =
    Wanted { what: "cuBLASLt (libcublasLt)", names: &["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"] };
/// cuBLAS.
pub const CUBLAS: Wanted =
    Wanted { what: "cuBLAS (libcublas)", names: &["libcublas.so.13", "libcublas.so.12", "libcublas.so"] };

/// Folders searched after the system path, in order.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os(LIBS_ENV) {
        roots.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    let mut site = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var) {
            site.push(PathBuf::from(v).join("lib"));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        site.push(PathBuf::from(home).join(".local/lib"));
    }
    site.push("/usr/local/lib".into());
    site.push("/usr/lib".into());
    for lib in site {
        let Ok(rd) = std::fs::read_dir(&lib) else { continue };
        let mut pys: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3")))
            .collect();
        pys.sort();
        for py in pys {
            roots.push(py.join("site-packages"));
            roots.push(py.join("dist-packages"));
        }
    }
    let mut out = Vec::new();
    for r in roots {
        if !r.is_dir() {
            continue;
        }
        out.push(r.clone());
        // Wheels put libraries in site-packages/nvidia/<package>/lib (cu13: nvidia/cu13/lib).
        for base in [r.join("nvidia"), r.clone()] {
            if let Ok(rd) = std::fs::read_dir(&base) {
                let mut subs: Vec<PathBuf> =
                    rd.flatten().map(|e| e.path().join("lib")).filter(|p| p.is_dir()).collect();
                subs.sort();
                out.extend(subs);
            }
        }
    }
    out
}

/// Libraries opened so far (kept open for the life of the process).
static OPEN: Mutex<Vec<(&'static str, PathBuf)>> = Mutex::new(Vec::new());

fn try_open(file: &Path) -> Result<(), String> {
    // SAFETY: opening a CUDA library runs its initializers, which are sound to run; the
    // library is kept open (leaked) because cudarc and the driver keep pointers into it.
    match unsafe { libloading::Library::new(file) } {
        Ok(lib) => {
            std::mem::forget(lib);
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Opens `w` (once): by name through the system search path, then by full path in
/// [`search_dirs`]. The error is one line: what is missing and where it was looked for.
pub fn ensure(w: &Wanted) -> Result<PathBuf, String> {
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = open.iter().find(|(n, _)| *n == w.what) {
        return Ok(p.clone());
    }
    let mut last_err = String::new();
    for name in w.names {
        if try_open(Path::new(name)).is_ok() {
            open.push((w.what, PathBuf::from(name)));
            return Ok(PathBuf::from(name));
        }
    }
    let dirs = search_dirs();
    for d in &dirs {
        for name in w.names {
            let f = d.join(name);
            if f.is_file() {
                match try_open(&f) {
                    Ok(()) => {
                        open.push((w.what, f.clone()));
                        return Ok(f);
                    }
                    Err(e) => last_err = e,
                }
            }
        }
    }
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let hint = if w.names[0].starts_with("libcuda") {
        "install the NVIDIA driver, or train with --device cpu".to_string()
    } else {
        format!("install it (e.g. the Python package of the CUDA 13 libraries) or add its folder to {LIBS_ENV}")
    };
    Err(format!(
        "cannot open {} ({}; searched the system path{}{}): {hint}",
        w.what,
        w.names.join(", "),
        if shown.is_empty() { String::new() } else { " and ".into() },
        shown.join(", "),
    ) + &if last_err.is_empty() {
        String::new()
    } else {
        format!(" [last error: {}]", last_err.replace('\n', " "))
    })
}
