//! Native kernels of the built-in formats (`kernels/formats.cu` over `kernels/formats.cuh`):
//! `compress` (output and straight-through mask) of kinds `int`, `fp`, `raw`, `mx` and `nvfp4`
//! on a row-major matrix, bit for bit what the plugins compute.
//!
//! - [`native_supported`]: a kind and its parameters to the kernel parameters ([`Native`]), or
//!   the reason the combination stays on the plugin path (stochastic rounding, the MSE-searched
//!   scales, Hadamard rotation, NF4, ...);
//! - [`plan`]: the launches that compress one matrix (kernels, order, arguments), shared by
//!   both executors: [`host`] runs the kernels' bodies compiled for the CPU (build.rs), and
//!   [`device`] runs them on the GPU;
//! - [`cases`]: the parameter sets and tensors both checks use, and the comparison with the
//!   plugins (`tests/formats.rs` on the host, `cuda-check formats` on a GPU).
//!
//! Constants the kernels take as arguments (the Gaussian-optimal RMS multipliers, the minifloat
//! layouts) come from `sdk`, computed exactly as the plugins compute them.

pub mod cases;
pub mod device;
pub mod host;

use sdk::minifloat::{Minifloat, Variant};
use sdk::params::{Table, Value};

/// Kernel parameters of a built-in format the native kernels cover.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Native {
    /// Kind `int`: symmetric INT-k, one scale per group of `group` values along a row (0 = the
    /// row). `rms`: QuEST's mid-rise grid with outer level `k * rms` and `param` = half the
    /// level count minus one half; else the mid-tread grid with step `absmax / k`, `k` =
    /// `param` = `2^(bits-1) - 1`.
    Int {
        /// RMS rule (else absmax).
        rms: bool,
        /// Values per scale along a row (0 = the whole row).
        group: usize,
        /// `k_b` (RMS rule) or `qmax` (absmax rule).
        k: f32,
        /// `(2^bits - 1) / 2` (RMS rule) or `qmax` (absmax rule).
        param: f32,
    },
    /// Kind `fp`: minifloat ExMy with scale `c * rms` per group.
    Fp {
        /// Values per scale along a row (0 = the whole row).
        group: usize,
        /// The Gaussian-MSE-optimal scale constant of the grid.
        c: f32,
        /// Largest finite value.
        max: f32,
        /// `2^emin`.
        min_normal: f32,
        /// Mantissa bits.
        m: u32,
        /// `max + top_step / 2` (the clip limit at scale 1).
        clip: f32,
    },
    /// Kind `raw`: ml_dtypes' cast to a minifloat type and back, no scale.
    Raw {
        /// E8M0 (powers of two) instead of a sign-exponent-mantissa type.
        e8m0: bool,
        /// Overflow rule "saturate" (else "ml_dtypes").
        saturate: bool,
        /// Largest finite value.
        max: f32,
        /// Inputs are clamped to this before rounding.
        limit: f32,
        /// Result for values that round above `max`.
        ovf: f32,
        /// Result bits for a NaN input (before the input's sign).
        nan_bits: u32,
        /// `2^emin`.
        min_normal: f32,
        /// Mantissa bits.
        m: u32,
    },
    /// Kind `mx`: OCP MX, blocks of `block` values with an E8M0 scale.
    Mx {
        /// Values per block along a row.
        block: usize,
        /// Exponent rule: 0 floor, 1 ceil, 2 nearest, 3 nosat, 4 mse.
        rule: i32,
        /// MXINT8 elements (else a minifloat).
        int8: bool,
        /// Exponent of the element type's top binade.
        emax: i32,
        /// Fraction bits of `max / 2^emax`.
        max_frac: u32,
        /// Largest element value.
        max: f32,
        /// Minifloat elements: `2^emin`.
        min_normal: f32,
        /// Minifloat elements: exponent of the smallest normal.
        emin: i32,
        /// Minifloat elements: mantissa bits.
        m: u32,
        /// Element magnitude beyond which a value is clipped (at scale 1).
        clip: f32,
    },
    /// Kind `nvfp4`: E2M1 in blocks of `block` with E4M3 block scales and an FP32 tensor scale.
    Nvfp4 {
        /// Values per block along a row.
        block: usize,
    },
}

/// Reads the parameters of a kind: typed values with defaults; unknown keys are errors.
struct Params<'a> {
    kind: &'a str,
    t: &'a Table,
    known: Vec<&'static str>,
}

impl<'a> Params<'a> {
    fn new(kind: &'a str, t: &'a Table) -> Self {
        Params { kind, t, known: Vec::new() }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.t.get(key)
    }

    fn int(&mut self, key: &'static str, default: i64) -> Result<i64, String> {
        let kind = self.kind;
        match self.get(key) {
            None => Ok(default),
            Some(Value::Integer(v)) => Ok(*v),
            Some(v) => Err(format!("{kind}: `{key}` must be an integer, got {v}")),
        }
    }

    fn uint(&mut self, key: &'static str, default: u32, max: u32) -> Result<u32, String> {
        let v = self.int(key, default as i64)?;
        u32::try_from(v)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| format!("{}: `{key}` must be 0..={max}, got {v}", self.kind))
    }

    fn size(&mut self, key: &'static str, default: usize) -> Result<usize, String> {
        let v = self.int(key, default as i64)?;
        usize::try_from(v).map_err(|_| format!("{}: `{key}` must be at least 0, got {v}", self.kind))
    }

    fn string(&mut self, key: &'static str, default: &str) -> Result<String, String> {
        let kind = self.kind;
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(format!("{kind}: `{key}` must be a string, got {v}")),
        }
    }

    fn flag(&mut self, key: &'static str) -> Result<bool, String> {
        let kind = self.kind;
        match self.get(key) {
            None => Ok(false),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(v) => Err(format!("{kind}: `{key}` must be true or false, got {v}")),
        }
    }

    /// Refuses keys that were not read.
    fn done(self) -> Result<(), String> {
        match self.t.keys().find(|k| !self.known.contains(&k.as_str())) {
            Some(k) => Err(format!("{}: unknown parameter `{k}`", self.kind)),
            None => Ok(()),
        }
    }
}

/// `2^e` exactly, `e` in `-149..=127` (the kernels' `qf_pow2`).
pub fn pow2(e: i32) -> f32 {
    assert!((-149..=127).contains(&e), "pow2({e})");
    if e >= -126 { f32::from_bits(((e + 127) as u32) << 23) } else { f32::from_bits(1u32 << (e + 149)) }
}

fn minifloat(e: i64, m: i64, variant: Variant) -> Result<Minifloat, String> {
    let (e, m) = (u32::try_from(e).map_err(|_| "bad e".to_string())?, u32::try_from(m).map_err(|_| "bad m")?);
    Minifloat::new(e, m, variant).map_err(|e| e.to_string())
}

fn not_native(kind: &str, what: &str) -> String {
    format!("{kind}: {what} has no native kernel (it stays on the plugin path)")
}

/// The kernel parameters of format `kind` with `params` (a plugin's parameter table, e.g. a
/// preset's), or why the native kernels do not cover it: a kind or an option they do not
/// implement (the line says which), or parameters the plugin itself would refuse.
pub fn native_supported(kind: &str, params: &Table) -> Result<Native, String> {
    let mut p = Params::new(kind, params);
    let native = match kind {
        "int" => {
            let bits = p.uint("bits", 4, 16)?;
            let rule = p.string("rule", "rms")?;
            let group = p.size("group", 0)?;
            let (hadamard, stochastic) = (p.flag("hadamard")?, p.flag("stochastic")?);
            p.uint("scale_bits", 16, 64)?;
            if bits < 1 {
                return Err("int: `bits` must be 1..=16, got 0".into());
            }
            if hadamard {
                return Err(not_native(kind, "the Hadamard rotation (hadamard = true)"));
            }
            if stochastic {
                return Err(not_native(kind, "stochastic rounding"));
            }
            match rule.as_str() {
                "rms" => {
                    let k = sdk::gauss::optimal_uniform(bits).0 as f32;
                    Native::Int { rms: true, group, k, param: ((1u32 << bits) - 1) as f32 * 0.5 }
                }
                "absmax" if bits >= 2 => {
                    let q = ((1u32 << (bits - 1)) - 1) as f32;
                    Native::Int { rms: false, group, k: q, param: q }
                }
                "absmax" => return Err("int: rule \"absmax\" needs bits >= 2".into()),
                "mse" => return Err(not_native(kind, "rule \"mse\" (a search over 100 steps per group)")),
                other => return Err(format!("int: unknown rule \"{other}\"")),
            }
        }
        "fp" => {
            let (e, m) = (p.int("e", 2)?, p.int("m", 1)?);
            let variant = match p.string("variant", "auto")?.as_str() {
                "auto" => match (e, m) {
                    (4, 3) => Variant::NanOnly,
                    (5, 2) => Variant::Ieee,
                    _ => Variant::Finite,
                },
                "finite" => Variant::Finite,
                "nan" => Variant::NanOnly,
                "ieee" => Variant::Ieee,
                other => return Err(format!("fp: unknown variant \"{other}\"")),
            };
            let f = minifloat(e, m, variant)?;
            let group = p.size("group", 0)?;
            p.uint("scale_bits", 16, 64)?;
            if p.flag("stochastic")? {
                return Err(not_native(kind, "stochastic rounding"));
            }
            // The plugin's constant: sdk's Gaussian-MSE-optimal scale of the signed values.
            let levels: Vec<f64> = f.signed_values().iter().map(|&v| v as f64).collect();
            let c = sdk::gauss::optimal_scale(&levels).0 as f32;
            Native::Fp {
                group,
                c,
                max: f.max(),
                min_normal: pow2(f.emin()),
                m: f.mantissa_bits(),
                clip: f.clip_limit(1.0),
            }
        }
        "raw" => {
            let dtype = p.string("dtype", "e4m3")?;
            // (mantissa bits, exponent of the smallest normal, largest value) of ml_dtypes' types.
            let (m, emin, max) = match dtype.as_str() {
                "e2m1" => (1, 0, 6.0),
                "e2m3" => (3, 0, 7.5),
                "e3m2" => (2, -2, 28.0),
                "e4m3" => (3, -6, 448.0),
                "e5m2" => (2, -14, 57344.0),
                "e8m0" => (0, -127, f32::from_bits(0x7F00_0000)),
                other => return Err(format!("raw: unknown type \"{other}\" in `dtype`")),
            };
            let saturate = match p.string("overflow", "saturate")?.as_str() {
                "saturate" => true,
                "ml_dtypes" => false,
                other => return Err(format!("raw: unknown overflow rule \"{other}\" in `overflow`")),
            };
            let (small, e8m0) = (["e2m1", "e2m3", "e3m2"].contains(&dtype.as_str()), dtype == "e8m0");
            Native::Raw {
                e8m0,
                saturate,
                max,
                limit: if e8m0 { f32::MAX } else { 4.0 * max },
                ovf: if saturate || small {
                    max
                } else if dtype == "e5m2" {
                    f32::INFINITY
                } else {
                    f32::NAN
                },
                // ml_dtypes' "NaN" of a type without NaN is the code of -0.
                nan_bits: if small { 0x8000_0000 } else { f32::NAN.to_bits() },
                min_normal: pow2(emin),
                m,
            }
        }
        "mx" => {
            let elem = p.string("elem", "e2m1")?;
            let block = p.size("block", 32)?;
            let rule = match p.string("rule", "floor")?.as_str() {
                "floor" => 0,
                "ceil" => 1,
                "nearest" => 2,
                "nosat" => 3,
                "mse" => 4,
                other => return Err(format!("mx: unknown rule \"{other}\"")),
            };
            if block == 0 {
                return Err("mx: `block` must be at least 1".into());
            }
            if p.flag("stochastic")? {
                return Err(not_native(kind, "stochastic rounding"));
            }
            let (e, m) = match elem.as_str() {
                "e2m1" => (2, 1),
                "e2m3" => (2, 3),
                "e3m2" => (3, 2),
                "e4m3" => (4, 3),
                "e5m2" => (5, 2),
                "int8" => (0, 0),
                other => return Err(format!("mx: unknown element type \"{other}\" in `elem`")),
            };
            let (int8, emax, max, clip, emin, m, min_normal) = if e == 0 {
                // MXINT8: k / 64, |k| <= 127; clip limit 127.5 / 64.
                let step = 1.0f32 / 64.0;
                (true, 0, 127.0 * step, 127.5 * step, 0, 0, 1.0)
            } else {
                let f = Minifloat::standard(e, m).map_err(|e| e.to_string())?;
                (false, f.emax(), f.max(), f.clip_limit(1.0), f.emin(), f.mantissa_bits(), pow2(f.emin()))
            };
            Native::Mx { block, rule, int8, emax, max_frac: max.to_bits() & 0x7f_ffff, max, min_normal, emin, m, clip }
        }
        "nvfp4" => {
            let block = p.size("block", 16)?;
            if block == 0 {
                return Err("nvfp4: `block` must be at least 1".into());
            }
            Native::Nvfp4 { block }
        }
        other => return Err(format!("kind `{other}` has no native kernel (it stays on the plugin path)")),
    };
    p.done()?;
    Ok(native)
}

/// [`native_supported`] for a parameter list written as the body of a TOML inline table
/// (`bits = 4, rule = "absmax"`, as the plugins' presets write them).
pub fn native_supported_str(kind: &str, params: &str) -> Result<Native, String> {
    let t = sdk::plugin::parse_inline_table(params).map_err(|e| e.to_string())?;
    native_supported(kind, &t)
}

/// A buffer of a [`Plan`]: element type and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buf {
    /// `float`.
    F32(usize),
    /// `double`.
    F64(usize),
    /// `int`.
    I32(usize),
}

/// Buffer 0 of every plan: the input matrix.
pub const INPUT: usize = 0;
/// Buffer 1: the output.
pub const OUTPUT: usize = 1;
/// Buffer 2: the straight-through mask.
pub const MASK: usize = 2;

/// A kernel argument, in the kernel's parameter order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg {
    /// A buffer of the plan (a pointer).
    Buf(usize),
    /// `long`.
    Long(i64),
    /// `int`.
    Int(i32),
    /// `unsigned int`.
    Uint(u32),
    /// `float`.
    Float(f32),
}

/// One kernel launch: `args[0]` is `Long(n)`, the number of threads.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// Kernel name (in `kernels/formats.cu`).
    pub kernel: &'static str,
    /// Arguments in the kernel's order.
    pub args: Vec<Arg>,
}

impl Launch {
    /// Number of threads.
    pub fn threads(&self) -> usize {
        match self.args.first() {
            Some(Arg::Long(n)) => *n as usize,
            _ => panic!("launch of {}: the first argument must be the thread count", self.kernel),
        }
    }
}

/// The launches that compress one `rows x cols` matrix: buffers (0 input, 1 output, 2 mask,
/// then scratch) and kernels in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Buffers.
    pub bufs: Vec<Buf>,
    /// Launches, run in order.
    pub launches: Vec<Launch>,
}

/// Effective group length (`sdk::rows::group_len`): `group`, or `cols` when 0 or larger.
fn group_len(cols: usize, group: usize) -> usize {
    if group == 0 || group > cols { cols } else { group }
}

/// Values per partial sum of squares (sdk's 1024-value blocks).
const SUM_BLOCK: usize = 1024;

/// `qf_sumsq_partial` + `qf_group_scale`: one scale per group (`k * rms`, or `absmax / k`).
fn group_scales(p: &mut Plan, rows: usize, cols: usize, glen: usize, rms: bool, k: f32) -> (usize, i64, i64) {
    let gpr = cols.div_ceil(glen);
    let groups = rows * gpr;
    let bpg = if rms { glen.div_ceil(SUM_BLOCK) } else { 1 };
    let partial = p.bufs.len();
    p.bufs.push(Buf::F64(groups * bpg));
    let (c, gl, gp, bp) = (cols as i64, glen as i64, gpr as i64, bpg as i64);
    if rms {
        p.launches.push(Launch {
            kernel: "qf_sumsq_partial",
            args: vec![
                Arg::Long((groups * bpg) as i64),
                Arg::Buf(INPUT),
                Arg::Long(c),
                Arg::Long(gl),
                Arg::Long(gp),
                Arg::Long(bp),
                Arg::Buf(partial),
            ],
        });
    }
    let scale = p.bufs.len();
    p.bufs.push(Buf::F32(groups));
    p.launches.push(Launch {
        kernel: "qf_group_scale",
        args: vec![
            Arg::Long(groups as i64),
            Arg::Buf(INPUT),
            Arg::Long(c),
            Arg::Long(gl),
            Arg::Long(gp),
            Arg::Long(bp),
            Arg::Buf(partial),
            Arg::Int(if rms { 0 } else { 1 }),
            Arg::Float(k),
            Arg::Buf(scale),
        ],
    });
    (scale, gl, gp)
}

/// The launches of format `f` on a `rows x cols` matrix.
pub fn plan(f: &Native, rows: usize, cols: usize) -> Plan {
    let n = rows * cols;
    let mut p = Plan { bufs: vec![Buf::F32(n), Buf::F32(n), Buf::F32(n)], launches: Vec::new() };
    if n == 0 {
        return p;
    }
    let head = [Arg::Long(n as i64), Arg::Buf(INPUT), Arg::Buf(OUTPUT), Arg::Buf(MASK), Arg::Long(cols as i64)];
    match *f {
        Native::Int { rms, group, k, param } => {
            let (scale, gl, gp) = group_scales(&mut p, rows, cols, group_len(cols, group), rms, k);
            let mut args = head.to_vec();
            args.extend([
                Arg::Long(gl),
                Arg::Long(gp),
                Arg::Buf(scale),
                Arg::Int(if rms { 0 } else { 1 }),
                Arg::Float(param),
            ]);
            p.launches.push(Launch { kernel: "qf_int_apply", args });
        }
        Native::Fp { group, c, max, min_normal, m, clip } => {
            let (scale, gl, gp) = group_scales(&mut p, rows, cols, group_len(cols, group), true, c);
            let mut args = head.to_vec();
            args.extend([
                Arg::Long(gl),
                Arg::Long(gp),
                Arg::Buf(scale),
                Arg::Float(max),
                Arg::Float(min_normal),
                Arg::Uint(m),
                Arg::Float(clip),
            ]);
            p.launches.push(Launch { kernel: "qf_fp_apply", args });
        }
        Native::Raw { e8m0, saturate, max, limit, ovf, nan_bits, min_normal, m } => {
            let mut args = head[..4].to_vec();
            args.extend([
                Arg::Int(e8m0 as i32),
                Arg::Int(saturate as i32),
                Arg::Float(max),
                Arg::Float(limit),
                Arg::Float(ovf),
                Arg::Uint(nan_bits),
                Arg::Float(min_normal),
                Arg::Uint(m),
            ]);
            p.launches.push(Launch { kernel: "qf_raw_apply", args });
        }
        Native::Mx { block, rule, int8, emax, max_frac, max, min_normal, emin, m, clip } => {
            let glen = group_len(cols, block);
            let gpr = cols.div_ceil(glen);
            let exps = p.bufs.len();
            p.bufs.push(Buf::I32(rows * gpr));
            let (gl, gp, i8) = (Arg::Long(glen as i64), Arg::Long(gpr as i64), Arg::Int(int8 as i32));
            let elem = [Arg::Float(max), Arg::Float(min_normal), Arg::Int(emin), Arg::Int(emax), Arg::Uint(m)];
            let mut args = vec![Arg::Long((rows * gpr) as i64), Arg::Buf(INPUT), Arg::Long(cols as i64), gl, gp];
            args.extend([Arg::Int(rule), i8]);
            args.extend(elem);
            args.extend([Arg::Uint(max_frac), Arg::Buf(exps)]);
            p.launches.push(Launch { kernel: "qf_mx_exponent", args });
            let mut args = head.to_vec();
            args.extend([gl, gp, Arg::Buf(exps), i8]);
            args.extend(elem);
            args.push(Arg::Float(clip));
            p.launches.push(Launch { kernel: "qf_mx_apply", args });
        }
        Native::Nvfp4 { block } => {
            let (glen, chunks) = (group_len(cols, block), n.div_ceil(SUM_BLOCK));
            let gpr = cols.div_ceil(glen);
            let (partial, s, to_code, sb) = (p.bufs.len(), p.bufs.len() + 1, p.bufs.len() + 2, p.bufs.len() + 3);
            p.bufs.extend([Buf::F32(chunks), Buf::F32(1), Buf::F64(1), Buf::F32(rows * gpr)]);
            let (gl, gp) = (Arg::Long(glen as i64), Arg::Long(gpr as i64));
            p.launches.extend([
                Launch {
                    kernel: "qf_absmax_partial",
                    args: vec![Arg::Long(chunks as i64), Arg::Buf(INPUT), Arg::Long(n as i64), Arg::Buf(partial)],
                },
                Launch {
                    kernel: "qf_nvfp4_tensor",
                    args: vec![
                        Arg::Long(1),
                        Arg::Buf(partial),
                        Arg::Long(chunks as i64),
                        Arg::Buf(s),
                        Arg::Buf(to_code),
                    ],
                },
                Launch {
                    kernel: "qf_nvfp4_scale",
                    args: vec![
                        Arg::Long((rows * gpr) as i64),
                        Arg::Buf(INPUT),
                        Arg::Long(cols as i64),
                        gl,
                        gp,
                        Arg::Buf(s),
                        Arg::Buf(to_code),
                        Arg::Buf(sb),
                    ],
                },
            ]);
            let mut args = head.to_vec();
            args.extend([gl, gp, Arg::Buf(sb)]);
            p.launches.push(Launch { kernel: "qf_nvfp4_apply", args });
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow2_is_exact() {
        for e in -149..=127 {
            assert_eq!(pow2(e) as f64, 2f64.powi(e), "2^{e}");
        }
    }

    #[test]
    fn plans_cover_every_value_once() {
        let f = native_supported_str("int", "bits = 4, group = 32").unwrap();
        let p = plan(&f, 3, 100);
        // 4 groups per row (32, 32, 32, 4), one 1024-block each.
        let names: Vec<_> = p.launches.iter().map(|l| (l.kernel, l.threads())).collect();
        assert_eq!(names, [("qf_sumsq_partial", 12), ("qf_group_scale", 12), ("qf_int_apply", 300)]);
        assert_eq!(p.bufs[3..], [Buf::F64(12), Buf::F32(12)]);
        // A whole row of 2500: three 1024-blocks per row.
        let f = native_supported_str("int", "bits = 3").unwrap();
        let p = plan(&f, 2, 2500);
        assert_eq!(p.launches[0].threads(), 6);
        assert!(plan(&f, 0, 7).launches.is_empty());
    }
}
