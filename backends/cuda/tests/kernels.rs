//! Every CUDA C kernel compiles to PTX with NVRTC (no GPU needed). NVRTC comes from the
//! system or from `$HOST_CUDA_LIBS` (`.ci/run` installs the `nvidia-cuda-nvrtc` wheel into
//! `target/nvrtc` and points it there); without NVRTC the test prints why and passes, unless
//! `HOST_REQUIRE_NVRTC=1` (set by `.ci/run`) makes a missing NVRTC a failure.

use backend_cuda::{kernels, libs};

#[test]
fn every_kernel_compiles_to_ptx_with_nvrtc() {
    if let Err(e) = libs::ensure(&libs::NVRTC) {
        assert!(std::env::var("HOST_REQUIRE_NVRTC").as_deref() != Ok("1"), "HOST_REQUIRE_NVRTC=1 but {e}");
        eprintln!("SKIPPED: {e}");
        return;
    }
    // Ampere (the oldest architecture the backend targets) and Hopper (the H100 it is checked on).
    for arch in ["compute_80", "compute_90"] {
        let report = kernels::compile_all(arch).unwrap_or_else(|e| panic!("{e}"));
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), kernels::MODULES.len(), "{report}");
        eprintln!("{arch}:\n{report}");
    }
    let n: usize = kernels::MODULES.iter().map(|m| m.2.len()).sum();
    assert_eq!(n, 32, "kernel count changed: update this test and tools/gpu/check.sh");
}

#[test]
fn a_broken_kernel_is_reported_with_nvrtc_log() {
    if libs::ensure(&libs::NVRTC).is_err() {
        eprintln!("SKIPPED: NVRTC not found");
        return;
    }
    let e =
        kernels::compile("broken", "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }", "compute_80")
            .unwrap_err();
    assert!(e.starts_with("NVRTC failed on kernels/broken.cu for compute_80") && e.contains("undefined_name"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn cache_keys_are_stable() {
    // FNV-1a of fixed parts: the PTX cache on disk must keep its names across Rust releases.
    assert_eq!(kernels::fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
    assert_eq!(kernels::fnv1a(&["a"]), {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in [b'a', 0xff] {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    });
    assert_ne!(kernels::fnv1a(&["ab", "c"]), kernels::fnv1a(&["a", "bc"]));
}
