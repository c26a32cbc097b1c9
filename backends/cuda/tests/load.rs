//! The library as `host` sees it: found next to the executable, loaded through the
//! accelerator ABI, reporting its version; without an NVIDIA driver every way in fails with one
//! line saying so.

use std::path::Path;

use backend_cuda::libs;
use trainer::accel::{self, AccelLib};
use trainer::backend::MatmulPrecision;
use trainer::device::{self, Device};
use trainer::model::preset;

fn driver_present() -> bool {
    libs::ensure(&libs::DRIVER).is_ok()
}

#[test]
fn library_loads_and_reports_its_interface_and_version() {
    // The test binary lives in target/<profile>/deps, next to the library cargo built for it.
    let path = accel::locate(None).expect("the library built with this test");
    assert_eq!(path.file_name().unwrap().to_str().unwrap(), accel::lib_file_name());
    let lib = AccelLib::load(&path).unwrap();
    let v = lib.version().unwrap();
    let want = format!(
        "backend-cuda {} (accelerator interface {}, CUDA 13.0 bindings, kernels {:016x})",
        env!("CARGO_PKG_VERSION"),
        trainer::accel_abi::ACCEL_ABI_VERSION,
        backend_cuda::kernels::sources_hash()
    );
    assert_eq!(v, want);
    // Loading twice gives the same library (abi_stable caches per file).
    assert_eq!(AccelLib::load(&path).unwrap().version().unwrap(), want);
}

#[test]
fn without_a_driver_the_error_is_one_line_naming_it() {
    if driver_present() {
        eprintln!("SKIPPED: an NVIDIA driver is present here (tools/gpu/check.sh covers this machine)");
        return;
    }
    let path = accel::locate(None).unwrap();
    let e = AccelLib::load(&path).unwrap().probe().unwrap_err();
    assert!(
        e.starts_with(
            "device cuda: cannot open the NVIDIA driver (libcuda) (libcuda.so.1, libcuda.so; searched the system path"
        ),
        "{e}"
    );
    assert!(e.ends_with("install the NVIDIA driver, or train with --device cpu"), "{e}");
    assert!(!e.contains('\n'));
    // The same line through the backend seam host uses.
    let cfg = preset("lm-20k").unwrap();
    let opts = trainer::TrainOptions { seed: 1, total_steps: 2, ..Default::default() };
    let e2 = device::create(Device::Cuda, cfg.clone(), opts, MatmulPrecision::Fp32, None).err().unwrap();
    assert_eq!(e2, e);
    // Every precision is a CUDA option: what is missing is still the driver.
    let opts = trainer::TrainOptions { seed: 1, total_steps: 2, ..Default::default() };
    assert_eq!(device::create(Device::Cuda, cfg, opts, MatmulPrecision::Bf16, None).err().unwrap(), e);
    assert_eq!(device::check(Device::Cuda).unwrap_err(), e);
}

#[test]
fn a_missing_library_is_one_line_naming_where() {
    let e = accel::locate(Some(Path::new("/nonexistent/libbackend_cuda.so"))).unwrap_err();
    assert_eq!(
        e,
        "device cuda: the given path points to /nonexistent/libbackend_cuda.so, which does not exist (build the library with `cargo build --release`)"
    );
    let dir = std::env::temp_dir();
    let e = accel::locate(Some(&dir)).unwrap_err();
    assert!(e.contains(&dir.join(accel::lib_file_name()).display().to_string()), "{e}");
}

#[test]
fn a_library_that_is_not_a_backend_is_refused_in_one_line() {
    // libc is a shared library without the abi_stable export.
    let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file());
    let Some(libc) = libc else {
        eprintln!("SKIPPED: no libc.so.6 at the usual places");
        return;
    };
    let e = AccelLib::load(libc).err().unwrap();
    assert_eq!(
        e,
        format!("device cuda: {} is not an accelerator backend library (no abi_stable export)", libc.display())
    );
}
