//! The native format kernels against the plugins, bit for bit: the parameter sets (every
//! preset of the plugins' kinds, plus [`EXTRA`]), the test tensors ([`tensors`]), and the
//! comparison ([`check`]), with the kernels run by whichever executor the caller passes: the
//! host build (`tests/formats.rs`) or the GPU (`cuda-check formats`).
//!
//! The reference is the plugin libraries themselves (`libplugin_int.so`, `libplugin_fp.so`,
//! `libplugin_block.so`), loaded through `sdk::abi` as `host` loads them.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use sdk::Shape;
use sdk::abi::{Buffers, Library, RemoteFormat};

use super::{Plan, native_supported_str, plan};

/// The plugin libraries of the built-in formats (crate names).
pub const PLUGINS: &[&str] = &["plugin_int", "plugin_fp", "plugin_block"];

/// Parameter sets checked besides the presets and [`grids`]: `(kind, params)`.
pub const EXTRA: &[(&str, &str)] = &[
    ("int", "bits = 1, group = 32"),
    ("int", "bits = 4, rule = \"absmax\", group = 20"),
    ("int", "bits = 7, group = 20"),
    ("int", "bits = 8, group = 5000"),
    ("int", "bits = 8, group = 128, rule = \"absmax\", scale_bits = 8"),
    ("int", "bits = 12"),
    ("int", "bits = 16, rule = \"absmax\""),
    ("int", "bits = 16, group = 64"),
    ("fp", "e = 2, m = 1, group = 16"),
    ("fp", "e = 4, m = 3, group = 20, variant = \"ieee\""),
    ("fp", "e = 5, m = 2, variant = \"finite\""),
    ("fp", "e = 3, m = 2, variant = \"nan\""),
    ("fp", "e = 3, m = 0"),
    ("fp", "e = 1, m = 3, group = 64"),
    ("fp", "e = 4, m = 7, scale_bits = 8"),
    ("fp", "e = 5, m = 6, group = 5000"),
    ("fp", "e = 6, m = 2"),
    ("raw", "dtype = \"e2m1\", overflow = \"ml_dtypes\""),
    ("raw", "dtype = \"e2m3\", overflow = \"ml_dtypes\""),
    ("raw", "dtype = \"e3m2\", overflow = \"ml_dtypes\""),
    ("raw", "dtype = \"e4m3\", overflow = \"ml_dtypes\""),
    ("raw", "dtype = \"e5m2\", overflow = \"ml_dtypes\""),
    ("raw", "dtype = \"e8m0\", overflow = \"ml_dtypes\""),
    ("mx", "elem = \"e2m1\", rule = \"ceil\""),
    ("mx", "elem = \"e2m1\", rule = \"nearest\""),
    ("mx", "elem = \"e2m1\", rule = \"nosat\""),
    ("mx", "elem = \"e2m1\", rule = \"mse\""),
    ("mx", "elem = \"e2m3\", rule = \"ceil\""),
    ("mx", "elem = \"e2m3\", rule = \"nearest\""),
    ("mx", "elem = \"e2m3\", rule = \"nosat\""),
    ("mx", "elem = \"e2m3\", rule = \"mse\""),
    ("mx", "elem = \"e3m2\", rule = \"ceil\""),
    ("mx", "elem = \"e3m2\", rule = \"nearest\""),
    ("mx", "elem = \"e3m2\", rule = \"nosat\""),
    ("mx", "elem = \"e3m2\", rule = \"mse\""),
    ("mx", "elem = \"e4m3\", rule = \"ceil\""),
    ("mx", "elem = \"e4m3\", rule = \"nearest\""),
    ("mx", "elem = \"e4m3\", rule = \"nosat\""),
    ("mx", "elem = \"e4m3\", rule = \"mse\""),
    ("mx", "elem = \"e5m2\", rule = \"ceil\""),
    ("mx", "elem = \"e5m2\", rule = \"nearest\""),
    ("mx", "elem = \"e5m2\", rule = \"nosat\""),
    ("mx", "elem = \"e5m2\", rule = \"mse\""),
    ("mx", "elem = \"int8\", rule = \"ceil\""),
    ("mx", "elem = \"int8\", rule = \"nearest\""),
    ("mx", "elem = \"int8\", rule = \"nosat\""),
    ("mx", "elem = \"int8\", rule = \"mse\""),
    ("mx", "elem = \"e2m1\", block = 16"),
    ("mx", "elem = \"e2m1\", block = 64"),
    ("mx", "elem = \"e4m3\", block = 20"),
    ("mx", "elem = \"int8\", block = 16, rule = \"mse\""),
    ("mx", "elem = \"e5m2\", block = 300"),
    ("mx", "elem = \"e3m2\", rule = \"nearest\", block = 64"),
    ("mx", "elem = \"e2m3\", block = 2048, rule = \"mse\""),
    ("nvfp4", "block = 32"),
    ("nvfp4", "block = 24"),
    ("nvfp4", "block = 7"),
    ("nvfp4", "block = 4096"),
];

/// Grids of parameters checked besides the presets: int with bits 2..=8, rules rms and
/// absmax, one scale per row or per 32, 64 or 128 values; the five OCP minifloats of kind fp
/// per 32, 64 and 128 values. Presets among them are left out (checked as presets).
pub fn grids() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for bits in 2..=8 {
        for rule in ["rms", "absmax"] {
            for group in [0, 32, 64, 128] {
                let preset =
                    (rule == "rms" && group == 0) || (bits == 4 && rule == "absmax" && group >= 32 && group != 64);
                if !preset {
                    out.push(("int", format!("bits = {bits}, rule = \"{rule}\", group = {group}")));
                }
            }
        }
    }
    for (e, m) in [(2, 1), (2, 3), (3, 2), (4, 3), (5, 2)] {
        for group in [32, 64, 128] {
            out.push(("fp", format!("e = {e}, m = {m}, group = {group}")));
        }
    }
    out
}

/// A matrix the formats are run on.
pub struct TestTensor {
    /// What it holds.
    pub label: &'static str,
    /// Rows.
    pub rows: usize,
    /// Values per row.
    pub cols: usize,
    /// Row-major values.
    pub data: Vec<f32>,
}

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let nd = Normal::new(0.0f32, 1.0).expect("unit normal");
    (0..n).map(|_| nd.sample(&mut rng)).collect()
}

/// The test matrices: Gaussian ones of several shapes (rows not a multiple of the block and
/// group lengths, rows longer than sdk's 1024-value summation blocks), outliers, zeros and
/// all-zero rows, tiny and subnormal values, magnitudes over the whole float range, values on
/// the grids' rounding midpoints, and infinities and NaN (one row of them beside a normal row).
pub fn tensors() -> Vec<TestTensor> {
    let t = |label, rows, cols, data: Vec<f32>| {
        assert_eq!(data.len(), rows * cols, "{label}");
        TestTensor { label, rows, cols, data }
    };
    let mut out = vec![
        t("gaussian 8x256", 8, 256, gaussian(8 * 256, 1)),
        t("gaussian 3x100", 3, 100, gaussian(300, 2)),
        t("gaussian 2x2500", 2, 2500, gaussian(5000, 3)),
        t("gaussian 5x37", 5, 37, gaussian(185, 4)),
    ];
    let mut x = gaussian(4 * 320, 5);
    for (i, v) in x.iter_mut().enumerate() {
        if i % 41 == 7 {
            *v *= 60.0;
        }
    }
    x[3] = 1.0e4;
    x[700] = -3.0e4;
    out.push(t("outliers 4x320", 4, 320, x));
    let mut x = gaussian(6 * 64, 6);
    for (i, v) in x.iter_mut().enumerate() {
        let row = i / 64;
        if row == 1 || row == 4 {
            *v = 0.0;
        } else if row == 2 {
            *v = -0.0;
        } else if i % 5 == 0 {
            *v = 0.0;
        }
    }
    out.push(t("zeros 6x64 (all-zero rows)", 6, 64, x));
    let mut x = gaussian(4 * 96, 7);
    for (i, v) in x.iter_mut().enumerate() {
        *v *= match i / 96 {
            0 => 1.0e-39,
            1 => 1.0e-44,
            2 if i % 2 == 0 => 1.0e-30,
            2 => 1.0e-41,
            _ => 1.2e-38,
        };
    }
    out.push(t("tiny and subnormal 4x96", 4, 96, x));
    let g = gaussian(2 * 160, 8);
    let x = (0..320)
        .map(|i| {
            let e = -149 + (i * 277 / 320) as i32;
            let frac = 1.0 + (g[i].abs() as f64).fract();
            let v = (frac * 2f64.powi(e)) as f32;
            let v = if v.is_finite() { v } else { f32::MAX };
            if i % 3 == 1 { -v } else { v }
        })
        .collect();
    out.push(t("whole float range 2x160", 2, 160, x));
    let x = (0..400).map(|k| (k as f32 - 200.0) * 0.125).collect();
    out.push(t("grid midpoints 4x100", 4, 100, x));
    let mut x = gaussian(2 * 48, 9);
    let specials = [
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::MAX,
        -f32::MAX,
        f32::MIN_POSITIVE,
        1.0e-45,
        464.0,
        -61440.0,
        448.0,
        1.5 * 2f32.powi(127),
        6.5,
        -7.75,
    ];
    x[..specials.len()].copy_from_slice(&specials);
    out.push(t("inf and NaN 2x48", 2, 48, x));
    out
}

/// The plugin libraries of the built-in formats.
pub struct Plugins {
    libs: Vec<(PathBuf, Library)>,
}

fn lib_file(dir: &Path, crate_name: &str) -> PathBuf {
    dir.join(format!("{}{crate_name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}

impl Plugins {
    /// Loads [`PLUGINS`] from `dir`.
    pub fn load(dir: &Path) -> Result<Plugins, String> {
        let mut libs = Vec::new();
        for name in PLUGINS {
            let path = lib_file(dir, name);
            let lib = Library::load(&path).map_err(|e| format!("cannot load the plugin {}: {e}", path.display()))?;
            libs.push((path, lib));
        }
        Ok(Plugins { libs })
    }

    /// Every preset of every kind of the libraries: `(kind, preset, params)`.
    pub fn presets(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (_, lib) in &self.libs {
            for k in &lib.info.kinds {
                for p in &k.presets {
                    out.push((k.name.clone(), p.name.clone(), p.params.clone()));
                }
            }
        }
        out
    }

    /// The plugin's format `kind` with `params` (a TOML inline-table body).
    pub fn format(&self, kind: &str, params: &str) -> Result<RemoteFormat, String> {
        let t = sdk::plugin::parse_inline_table(params).map_err(|e| e.to_string())?;
        let (path, lib) = self
            .libs
            .iter()
            .find(|(_, l)| l.info.kinds.iter().any(|k| k.name == kind))
            .ok_or_else(|| format!("no plugin library has kind `{kind}`"))?;
        lib.instantiate(kind, &t).map_err(|e| format!("{}: {kind} {{ {params} }}: {e}", path.display()))
    }
}

/// One parameter set to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The preset's name, or `kind:params`.
    pub label: String,
    /// Kind.
    pub kind: String,
    /// Parameters (TOML inline-table body).
    pub params: String,
}

/// Every preset of the plugins, then [`grids`] and [`EXTRA`].
pub fn cases(plugins: &Plugins) -> Vec<Case> {
    let mut out: Vec<Case> =
        plugins.presets().into_iter().map(|(kind, label, params)| Case { label, kind, params }).collect();
    let extra = grids().into_iter().chain(EXTRA.iter().map(|&(k, p)| (k, p.to_string())));
    out.extend(extra.map(|(kind, params)| Case { label: format!("{kind}:{params}"), kind: kind.to_string(), params }));
    out
}

/// The comparison of one parameter set over every test tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The case's label.
    pub label: String,
    /// Tensors compared.
    pub tensors: usize,
    /// Values compared (outputs; as many mask entries).
    pub values: usize,
    /// Outputs that differ (NaN equals NaN, whatever its bits).
    pub differ: usize,
    /// Mask entries that differ.
    pub mask_differ: usize,
    /// Largest absolute difference of the outputs (infinite where one side is NaN).
    pub max_abs_diff: f64,
    /// The first difference: tensor, index, input, both outputs and masks.
    pub first: Option<String>,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The cases the kernels cover, compared.
    pub cases: Vec<CaseResult>,
    /// The cases they do not cover, with the reason.
    pub unsupported: Vec<(String, String)>,
}

impl Report {
    /// Cases with any difference.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| c.differ + c.mask_differ > 0).count()
    }

    /// Tensors and values compared in all.
    pub fn totals(&self) -> (usize, usize) {
        self.cases.iter().fold((0, 0), |(t, v), c| (t + c.tensors, v + c.values))
    }

    /// One line per case (max abs difference, differing values), the unsupported cases, a summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.cases {
            s += &format!(
                "{:<52} {:>3} tensors {:>7} values  max |diff| {:.3e}  {} outputs and {} mask entries differ  {}\n",
                c.label,
                c.tensors,
                c.values,
                c.max_abs_diff,
                c.differ,
                c.mask_differ,
                if c.differ + c.mask_differ == 0 { "ok" } else { "FAIL" }
            );
            if let Some(f) = &c.first {
                s += &format!("    first difference: {f}\n");
            }
        }
        for (label, why) in &self.unsupported {
            s += &format!("{label:<52} not native: {why}\n");
        }
        let (t, v) = self.totals();
        s += &format!(
            "{} formats compared bit for bit over {t} tensors and {v} values ({} not native); {}\n",
            self.cases.len(),
            self.unsupported.len(),
            if self.failed() == 0 { "all identical".to_string() } else { format!("{} FAILED", self.failed()) }
        );
        s
    }
}

/// Bit-for-bit equality; NaN equals NaN whatever its sign and payload (the GPU's NaN is not
/// the CPU's).
pub fn same(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// What an executor of [`Plan`]s returns: the output and the mask.
pub type Compressed = Result<(Vec<f32>, Vec<f32>), String>;

/// Runs every case on every tensor through the plugin and through `native` (an executor of
/// [`Plan`]s: the host build or the GPU) and compares outputs and masks.
pub fn check(plugins: &Plugins, native: &mut dyn FnMut(&Plan, &[f32]) -> Compressed) -> Result<Report, String> {
    let tensors = tensors();
    let mut report = Report::default();
    let mut bufs = Buffers::default();
    for case in cases(plugins) {
        let f = match native_supported_str(&case.kind, &case.params) {
            Ok(f) => f,
            Err(why) => {
                report.unsupported.push((case.label, why));
                continue;
            }
        };
        let reference = plugins.format(&case.kind, &case.params)?;
        let mut r = CaseResult {
            label: case.label.clone(),
            tensors: 0,
            values: 0,
            differ: 0,
            mask_differ: 0,
            max_abs_diff: 0.0,
            first: None,
        };
        for t in &tensors {
            let shape = Shape::new(t.rows, t.cols);
            reference.compress(&t.data, shape, 0, &mut bufs, true).map_err(|e| format!("{}: {e}", case.label))?;
            let (y, m) = native(&plan(&f, t.rows, t.cols), &t.data).map_err(|e| format!("{}: {e}", case.label))?;
            let (yr, mr) = (bufs.output(), bufs.mask());
            if y.len() != yr.len() || m.len() != mr.len() {
                return Err(format!("{} on {}: the kernels returned {} values", case.label, t.label, y.len()));
            }
            for i in 0..y.len() {
                let (out_ok, mask_ok) = (same(y[i], yr[i]), same(m[i], mr[i]));
                if !out_ok {
                    r.differ += 1;
                    let d = (y[i] as f64 - yr[i] as f64).abs();
                    r.max_abs_diff = r.max_abs_diff.max(if d.is_nan() { f64::INFINITY } else { d });
                }
                if !mask_ok {
                    r.mask_differ += 1;
                }
                if !(out_ok && mask_ok) && r.first.is_none() {
                    let x = t.data[i];
                    r.first = Some(format!(
                        "{} [{}, {}]: input {x:e} ({:08x}); plugin {:e} ({:08x}) mask {}; native {:e} ({:08x}) mask {}",
                        t.label,
                        i / t.cols,
                        i % t.cols,
                        x.to_bits(),
                        yr[i],
                        yr[i].to_bits(),
                        mr[i],
                        y[i],
                        y[i].to_bits(),
                        m[i]
                    ));
                }
            }
            r.tensors += 1;
            r.values += y.len();
        }
        report.cases.push(r);
    }
    Ok(report)
}
