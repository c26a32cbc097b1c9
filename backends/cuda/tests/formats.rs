//! The native format kernels (`kernels/formats.cu` over `kernels/formats.cuh`), built for the
//! host by build.rs and driven by the same launch plans as on the GPU, against the plugins bit
//! for bit: every preset of kinds int, fp, raw, mx and nvfp4 that the kernels cover, plus
//! `formats::cases::{grids, EXTRA}`, on Gaussian tensors, outliers, zeros and all-zero rows,
//! subnormals, the whole float range, rounding midpoints, infinities and NaN. Outputs and masks
//! must be identical (NaN equal to NaN). `cuda-check formats` runs the same comparison on a GPU.
//!
//! The plugins are this package's dev-dependencies: cargo builds their libraries next to this
//! test's executable (`target/<profile>/deps`), and they are loaded from there through
//! `sdk::abi`, as `host` loads them.

use std::path::PathBuf;

use backend_cuda::formats::cases::{self, Plugins};
use backend_cuda::formats::{Native, host, native_supported_str, plan};

fn plugins() -> Plugins {
    let exe = std::env::current_exe().expect("the test's path");
    let dir: PathBuf = exe.parent().expect("the test's folder").to_path_buf();
    Plugins::load(&dir).unwrap_or_else(|e| panic!("{e} (cargo builds the plugins as dev-dependencies of backend-cuda)"))
}

/// Labels of the presets the kernels must cover.
const NATIVE_PRESETS: &[&str] = &[
    "int1",
    "int2",
    "int3",
    "int4",
    "int5",
    "int6",
    "int7",
    "int8",
    "int4-absmax-g32",
    "int4-absmax-g128",
    "e2m1",
    "e3m2",
    "e2m3",
    "e4m3",
    "e5m2",
    "e2m1-raw",
    "e2m3-raw",
    "e3m2-raw",
    "e4m3-raw",
    "e5m2-raw",
    "e8m0-raw",
    "mxfp4",
    "mxfp6-e2m3",
    "mxfp6-e3m2",
    "mxfp8-e4m3",
    "mxfp8-e5m2",
    "mxint8",
    "nvfp4",
];

#[test]
fn host_build_matches_the_plugins_bit_for_bit() {
    let plugins = plugins();
    let report = cases::check(&plugins, &mut |p, x| Ok(host::run(p, x))).unwrap();
    let text = report.text();
    println!("{text}");
    assert_eq!(report.failed(), 0, "the host build of the format kernels differs from the plugins:\n{text}");
    let covered: Vec<&str> = report.cases.iter().map(|c| c.label.as_str()).collect();
    for p in NATIVE_PRESETS {
        assert!(covered.contains(p), "preset {p} is not covered natively:\n{text}");
    }
    assert_eq!(covered.len(), NATIVE_PRESETS.len() + cases::grids().len() + cases::EXTRA.len(), "{text}");
    let (tensors, values) = report.totals();
    let per_case: usize = cases::tensors().iter().map(|t| t.data.len()).sum();
    assert_eq!(values, covered.len() * per_case);
    assert_eq!(tensors, covered.len() * cases::tensors().len());
    println!("compared {tensors} tensors, {values} values (and as many mask entries)");
}

#[test]
fn a_difference_is_found_and_located() {
    // The comparison itself: one output bit flipped, one mask entry changed.
    let plugins = plugins();
    let mut calls = 0;
    let report = cases::check(&plugins, &mut |p, x| {
        calls += 1;
        let (mut y, mut m) = host::run(p, x);
        if calls == 1 {
            y[5] = f32::from_bits(y[5].to_bits() ^ 1);
            m[9] = 1.0 - m[9];
        }
        Ok((y, m))
    })
    .unwrap();
    assert_eq!(report.failed(), 1);
    let c = &report.cases[0];
    assert_eq!((c.differ, c.mask_differ), (1, 1));
    assert!(c.max_abs_diff > 0.0 && c.max_abs_diff < 1e-5, "{}", c.max_abs_diff);
    let first = c.first.as_deref().unwrap();
    assert!(first.starts_with("gaussian 8x256 [0, 5]: input "), "{first}");
    assert!(report.text().contains("FAIL"));
}

#[test]
fn the_kernel_parameters_are_the_plugins_constants() {
    // INT4 RMS: QuEST's k_4 and half of 15 levels; INT4 absmax: qmax 7.
    match native_supported_str("int", "bits = 4").unwrap() {
        Native::Int { rms: true, group: 0, k, param } => {
            assert!((k - 2.513_9).abs() < 1e-3, "k_4 = {k}");
            assert_eq!(param, 7.5);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        native_supported_str("int", "bits = 4, rule = \"absmax\", group = 32").unwrap(),
        Native::Int { rms: false, group: 32, k: 7.0, param: 7.0 }
    );
    // FP4 E2M1: max 6, smallest normal 1, one mantissa bit, clip limit 6 + 2 / 2; its
    // Gaussian-optimal scale constant puts the top level near 2.9 standard deviations.
    match native_supported_str("fp", "e = 2, m = 1").unwrap() {
        Native::Fp { group: 0, c, max: 6.0, min_normal: 1.0, m: 1, clip: 7.0 } => {
            assert!((2.5..3.3).contains(&(c * 6.0)), "c = {c}")
        }
        other => panic!("{other:?}"),
    }
    // Raw E5M2 with ml_dtypes overflow: infinity beyond the range; E4M3: NaN.
    match native_supported_str("raw", "dtype = \"e5m2\", overflow = \"ml_dtypes\"").unwrap() {
        Native::Raw { e8m0: false, saturate: false, max: 57344.0, ovf, m: 2, .. } => assert_eq!(ovf, f32::INFINITY),
        other => panic!("{other:?}"),
    }
    match native_supported_str("raw", "overflow = \"ml_dtypes\"").unwrap() {
        Native::Raw { max: 448.0, ovf, .. } => assert!(ovf.is_nan()),
        other => panic!("{other:?}"),
    }
    // MXFP4: E2M1 elements (top binade 2, max 6 = 1.5 * 2^2), blocks of 32; MXINT8: k / 64.
    assert_eq!(
        native_supported_str("mx", "elem = \"e2m1\"").unwrap(),
        Native::Mx {
            block: 32,
            rule: 0,
            int8: false,
            emax: 2,
            max_frac: 0x40_0000,
            max: 6.0,
            min_normal: 1.0,
            emin: 0,
            m: 1,
            clip: 7.0
        }
    );
    match native_supported_str("mx", "elem = \"int8\", rule = \"mse\", block = 16").unwrap() {
        Native::Mx { block: 16, rule: 4, int8: true, emax: 0, max, clip, .. } => {
            assert_eq!((max, clip), (127.0 / 64.0, 127.5 / 64.0))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(native_supported_str("nvfp4", "").unwrap(), Native::Nvfp4 { block: 16 });
    // NVFP4 on 3 x 100 in blocks of 16: the tensor absmax over one 1024-chunk, one thread for
    // the tensor scale, 7 blocks per row (the last of 4 values), then every value.
    let p = plan(&Native::Nvfp4 { block: 16 }, 3, 100);
    let shape: Vec<_> = p.launches.iter().map(|l| (l.kernel, l.threads())).collect();
    assert_eq!(
        shape,
        [("qf_absmax_partial", 1), ("qf_nvfp4_tensor", 1), ("qf_nvfp4_scale", 21), ("qf_nvfp4_apply", 300)]
    );
    // The plan of a whole-row INT8 over rows of 2500: three sdk summation blocks per row.
    let p = plan(&native_supported_str("int", "bits = 8").unwrap(), 2, 2500);
    assert_eq!(p.launches.iter().map(|l| l.threads()).collect::<Vec<_>>(), [6, 2, 5000]);
}

#[test]
fn what_stays_on_the_plugin_path_is_said_in_one_line() {
    let cases = [
        ("int", "bits = 4, rule = \"mse\"", "int: rule \"mse\""),
        ("int", "bits = 4, hadamard = true", "int: the Hadamard rotation"),
        ("int", "bits = 4, stochastic = true", "int: stochastic rounding"),
        ("fp", "e = 2, m = 1, stochastic = true", "fp: stochastic rounding"),
        ("mx", "elem = \"e2m1\", stochastic = true", "mx: stochastic rounding"),
        ("nf4", "", "kind `nf4` has no native kernel"),
        ("vq", "", "kind `vq` has no native kernel"),
    ];
    for (kind, params, want) in cases {
        let e = native_supported_str(kind, params).unwrap_err();
        assert!(e.starts_with(want) && e.ends_with("(it stays on the plugin path)"), "{kind} {params}: {e}");
        assert!(!e.contains('\n'));
    }
    // Parameters the plugin refuses are refused too, naming the parameter.
    for (kind, params, want) in [
        ("int", "bits = 17", "`bits`"),
        ("int", "bits = 0", "`bits`"),
        ("int", "bits = 1, rule = \"absmax\"", "bits >= 2"),
        ("int", "rule = \"up\"", "unknown rule"),
        ("int", "bitz = 4", "unknown parameter `bitz`"),
        ("int", "group = -1", "`group`"),
        ("int", "scale_bits = 65", "`scale_bits`"),
        ("fp", "e = 8", "exponent bits"),
        ("fp", "e = 1, m = 2, variant = \"ieee\"", "no normal numbers"),
        ("fp", "variant = \"odd\"", "unknown variant"),
        ("fp", "e = 2, m = 1, group = 32, bits = 4", "unknown parameter `bits`"),
        ("raw", "dtype = \"e3m4\"", "`dtype`"),
        ("raw", "overflow = \"wrap\"", "`overflow`"),
        ("mx", "block = 0", "`block`"),
        ("mx", "elem = \"e3m3\"", "`elem`"),
        ("mx", "rule = \"up\"", "unknown rule"),
        ("nvfp4", "block = 0", "`block`"),
        ("nvfp4", "block = 16, scale = 2", "unknown parameter `scale`"),
    ] {
        let e = native_supported_str(kind, params).unwrap_err();
        assert!(e.contains(want), "{kind} {params}: {e}");
    }
}

/// A training run hands the library its weight format as `(kind, the full parameter table as
/// TOML)` (`host_train`'s `native_spec`, written by `toml::Table`'s `Display`): read back, every
/// preset's table gives the kernel parameters of its inline-table form, so a run selects the
/// same native kernels the bit-for-bit comparison above checks.
#[test]
fn weight_formats_as_toml_tables_give_the_same_kernels() {
    let p = plugins();
    let mut same = 0;
    for (kind, name, params) in p.presets() {
        let inline = native_supported_str(&kind, &params);
        let table = sdk::plugin::parse_inline_table(&params).unwrap();
        let text = table.to_string();
        let parsed = text.parse::<sdk::params::Table>().unwrap_or_else(|e| panic!("{name}: {text}: {e}"));
        let from_toml = backend_cuda::formats::native_supported(&kind, &parsed);
        assert_eq!(from_toml, inline, "{name}: {text}");
        same += inline.is_ok() as usize;
    }
    assert!(same >= NATIVE_PRESETS.len(), "{same} presets native");
}
