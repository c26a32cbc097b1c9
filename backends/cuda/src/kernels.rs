//! The CUDA C kernels: sources (`kernels/*.cu`, built into the library), NVRTC compilation at
//! first use, and a cache of the PTX keyed by a hash of source, options and architecture.
//!
//! Cache: `$HOST_CUDA_CACHE`, else `$XDG_CACHE_HOME/host-cuda`, else `~/.cache/host-cuda`
//! (one `<hash>.ptx` file per module); a cache that cannot be written is skipped silently
//! (the PTX is then compiled once per process).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::libs;

/// Helpers prepended to every module.
const COMMON: &str = include_str!("../kernels/common.cuh");

/// `(module, source, kernels it defines)`.
pub const MODULES: &[(&str, &str, &[&str])] = &[
    (
        "elementwise",
        include_str!("../kernels/elementwise.cu"),
        &[
            "embedding_fwd",
            "embedding_bwd",
            "add_inplace",
            "scale_inplace",
            "mul_inplace",
            "swiglu_fwd",
            "swiglu_bwd",
            "ce_fwd",
            "ce_bwd",
        ],
    ),
    (
        "norm",
        include_str!("../kernels/norm.cu"),
        &["rmsnorm_fwd", "rmsnorm_bwd_dx", "rmsnorm_dg_partial", "sum_partials"],
    ),
    ("rope", include_str!("../kernels/rope.cu"), &["rope"]),
    (
        "attention",
        include_str!("../kernels/attention.cu"),
        &["attn_fwd", "attn_bwd_delta", "attn_bwd_dq", "attn_bwd_dkv"],
    ),
    ("optim", include_str!("../kernels/optim.cu"), &["sumsq_partial", "sum_doubles", "adamw"]),
    // The built-in formats (src/formats): the header with their math, then the kernels.
    (
        "formats",
        concat!(include_str!("../kernels/formats.cuh"), "\n", include_str!("../kernels/formats.cu")),
        &[
            "qf_sumsq_partial",
            "qf_group_scale",
            "qf_int_apply",
            "qf_fp_apply",
            "qf_raw_apply",
            "qf_mx_exponent",
            "qf_mx_apply",
            "qf_absmax_partial",
            "qf_nvfp4_tensor",
            "qf_nvfp4_scale",
            "qf_nvfp4_apply",
        ],
    ),
];

/// NVRTC options of every module (besides the architecture): no FMA contraction, so
/// products and sums round as in the CPU trainer; IEEE division and square root.
pub const OPTIONS: &[&str] = &["--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--std=c++17"];

/// 64-bit FNV-1a: a stable hash for cache keys (std's hasher may change between releases).
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Hash of every kernel source and the options (reported in the library's version line).
pub fn sources_hash() -> u64 {
    let mut parts = vec![COMMON];
    for (name, src, _) in MODULES {
        parts.push(name);
        parts.push(src);
    }
    parts.extend_from_slice(OPTIONS);
    fnv1a(&parts)
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("HOST_CUDA_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("host-cuda"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/host-cuda"))
}

/// The full source of `module` as NVRTC sees it.
pub fn full_source(src: &str) -> String {
    format!("{COMMON}\n{src}")
}

/// Compiles `src` (a module of [`MODULES`]) for `arch` (e.g. `compute_90`) with NVRTC; the
/// error carries NVRTC's log.
pub fn compile(name: &str, src: &str, arch: &'static str) -> Result<String, String> {
    libs::ensure(&libs::NVRTC)?;
    let opts = CompileOptions {
        arch: Some(arch),
        options: OPTIONS.iter().map(|s| s.to_string()).collect(),
        name: Some(format!("{name}.cu")),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(full_source(src), opts)
        .map_err(|e| format!("NVRTC failed on kernels/{name}.cu for {arch}: {}", one_line_log(&format!("{e:?}"))))?;
    Ok(ptx.to_src())
}

fn one_line_log(s: &str) -> String {
    s.replace("\\n", " | ").replace('\n', " | ")
}

/// PTX of `module` for `arch`, from memory, the disk cache, or NVRTC.
pub fn ptx(name: &str, src: &str, arch: &'static str) -> Result<Ptx, String> {
    static MEM: Mutex<Option<HashMap<u64, String>>> = Mutex::new(None);
    let mut parts = vec![COMMON, src, arch];
    parts.extend_from_slice(OPTIONS);
    let key = fnv1a(&parts);
    let mut mem = MEM.lock().unwrap_or_else(|e| e.into_inner());
    let mem = mem.get_or_insert_with(HashMap::new);
    if let Some(p) = mem.get(&key) {
        return Ok(Ptx::from_src(p.clone()));
    }
    let file = cache_dir().map(|d| d.join(format!("{name}-{key:016x}.ptx")));
    let text = match file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        Some(t) => t,
        None => {
            let t = compile(name, src, arch)?;
            if let Some(f) = &file {
                let _ = std::fs::create_dir_all(f.parent().expect("cache file has a folder"));
                let tmp = f.with_extension(format!("tmp{}", std::process::id()));
                if std::fs::write(&tmp, &t).is_ok() {
                    let _ = std::fs::rename(&tmp, f);
                }
            }
            t
        }
    };
    mem.insert(key, text.clone());
    Ok(Ptx::from_src(text))
}

/// Compiles every module for `arch` (no GPU needed): one line per module with its kernels.
pub fn compile_all(arch: &'static str) -> Result<String, String> {
    let mut out = String::new();
    for (name, src, kernels) in MODULES {
        let ptx = compile(name, src, arch)?;
        for k in *kernels {
            if !ptx.contains(&format!(".entry {k}(")) {
                return Err(format!("kernels/{name}.cu compiled but defines no kernel `{k}`"));
            }
        }
        out.push_str(&format!("{name}: {} ({} bytes of PTX)\n", kernels.join(", "), ptx.len()));
    }
    Ok(out)
}
