//! Minifloat formats ExMy, kind `fp`.
//!
//! Sign, `e` exponent bits, `m` mantissa bits, bias `2^(e-1) - 1`,
//! subnormals, round to nearest even, saturation to the largest finite value
//! ([`sdk::minifloat`]). Each row (or group) is divided by `c * RMS`, rounded
//! to the format, and multiplied back, where `c` is the Gaussian-MSE-optimal
//! scale of the format's value grid ([`sdk::gauss::optimal_scale`], computed
//! once per format). Trust mask: the gradient passes where the value was not
//! clipped (`|x| <= scale * (max + top_step / 2)`). Option: seeded
//! stochastic rounding (`stochastic = true`): each value rounds to one of
//! its two neighbouring representable values with probabilities that make
//! the result unbiased, using the counter-based uniform numbers of
//! [`sdk::round`] indexed by the element's position in the tensor (so the
//! result does not depend on how the tensor is split).
//!
//! Kind `raw`: values cast to a type exactly as ml_dtypes casts `float32`
//! to it and back, with no scale (module [`raw`]).

pub mod raw;

use std::sync::Mutex;

use sdk::grid::{clamp, clip_mask, map, map_indexed};
use sdk::minifloat::{Minifloat, Variant};
use sdk::round::{stochastic_with, uniform};
use sdk::{Bits, Error, Family, Format, Kind, Preset, Result, Shape, Tensor, gauss, rows, scale};

sdk::params! {
    /// Parameters of a minifloat format.
    pub struct FpParams {
        /// Exponent bits (1..=7).
        e: u32 = 2,
        /// Mantissa bits (0..=16).
        m: u32 = 1,
        /// Meaning of the top exponent code: "auto" (OCP: E4M3 is "nan", E5M2 is "ieee", the rest "finite"), "finite" (every code is a number), "nan" (only the all-ones code is NaN), "ieee" (the top exponent code is infinities and NaNs).
        variant: String = "auto".to_string(),
        /// Values sharing one scale along a row (0 = the whole row).
        group: usize = 0,
        /// Bits counted for each stored scale.
        scale_bits: u32 = 16,
        /// Seeded stochastic rounding (unbiased) instead of round-to-nearest-even.
        stochastic: bool = false,
    }
}

/// A built minifloat format.
#[derive(Debug, Clone)]
pub struct Fp {
    format: Minifloat,
    /// Scale = `c * RMS`.
    c: f32,
    /// Exact GMSE with a known RMS of 1.
    gmse: f64,
    group: usize,
    scale_bits: u32,
    stochastic: bool,
}

/// Stochastic rounding of `x / scale` to `f` (saturating), times `scale`,
/// with uniform number `u` in `[0, 1)`: rounds up to the next representable
/// magnitude with probability equal to the fractional position between the
/// two, so `E[q] = x` for `|x| <= scale * max`.
#[inline(always)]
fn stochastic_quantizer(f: &Minifloat, scale: f32, seed: u64) -> impl Fn(f32, u64) -> f32 + Copy + use<> {
    let (s, inv_s) =
        if scale > 0.0 && scale.is_finite() && (1.0 / scale).is_finite() { (scale, 1.0 / scale) } else { (0.0, 0.0) };
    let max = f.max();
    let min_normal = 2f32.powi(f.emin());
    let m = f.mantissa_bits();
    let inv_base = (254 + m) << 23;
    let m_bits = m << 23;
    move |x: f32, i: u64| {
        let v = clamp(x * inv_s, -max, max);
        // Spacing 2^(max(floor(log2 |v|), emin) - m), as in sdk::minifloat.
        let p = f32::from_bits(v.to_bits() & 0x7F80_0000);
        let p = if p < min_normal { min_normal } else { p };
        let inv = f32::from_bits(inv_base.wrapping_sub(p.to_bits()));
        let step = f32::from_bits(p.to_bits().wrapping_sub(m_bits));
        // |v * inv| <= 2^(m+1): floor(v * inv + u) is one of the two neighbours, both representable.
        stochastic_with(v * inv, uniform(seed, i)) * (step * s)
    }
}

impl Fp {
    /// The Gaussian-MSE-optimal scale constant and its GMSE.
    pub fn optimal(&self) -> (f32, f64) {
        (self.c, self.gmse)
    }
}

/// `(c, gmse)` of a format, computed once per `(e, m, variant)`.
fn optimal_constant(f: &Minifloat) -> (f32, f64) {
    type Key = (u32, u32, Variant);
    static CACHE: Mutex<Vec<(Key, (f32, f64))>> = Mutex::new(Vec::new());
    let key = (f.exponent_bits(), f.mantissa_bits(), f.variant());
    if let Some((_, v)) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(k, _)| *k == key) {
        return *v;
    }
    let levels: Vec<f64> = f.signed_values().iter().map(|&v| v as f64).collect();
    let (c, g) = gauss::optimal_scale(&levels);
    let v = (c as f32, g);
    CACHE.lock().unwrap_or_else(|e| e.into_inner()).push((key, v));
    v
}

impl Format for Fp {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        let seed = t.seed;
        for g in rows::tensor_groups(t, self.group) {
            let s = scale::rms_scale(g.input, self.c);
            if self.stochastic {
                map_indexed(g.input, g.output, g.offset as u64, stochastic_quantizer(&self.format, s, seed));
            } else {
                map(g.input, g.output, self.format.quantizer(s));
            }
            if let Some(m) = g.mask {
                clip_mask(g.input, m, self.format.clip_limit(s));
            }
        }
        Ok(())
    }

    fn bits(&self, shape: Shape) -> Bits {
        rows::grouped_bits(self.format.bits() as f64, self.scale_bits, shape.cols, self.group)
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn block_len(&self) -> Option<usize> {
        (self.group > 0).then_some(self.group)
    }

    fn stochastic(&self) -> bool {
        self.stochastic
    }

    fn label(&self) -> Option<String> {
        let v = match self.format.variant() {
            Variant::Finite => "",
            Variant::NanOnly => " (OCP, NaN only)",
            Variant::Ieee => " (IEEE-like)",
        };
        let per = if self.group > 0 { format!("g{}", self.group) } else { "per row".to_string() };
        let sr = if self.stochastic { ", stochastic rounding" } else { "" };
        Some(format!("{}{v}, RMS-optimal scale {per}{sr}", self.format.name()))
    }
}

/// Kind `fp`: minifloats ExMy with an RMS-optimal scale.
pub struct FpKind;

impl Kind for FpKind {
    type Params = FpParams;
    const NAME: &'static str = "fp";
    const DOC: &'static str = "Minifloat ExMy (bias 2^(e-1)-1, subnormals, round to nearest even, saturating; \
        E4M3 is OCP's with max 448, E5M2 IEEE-like with max 57344). Each row or group is scaled by c * RMS \
        with c the Gaussian-MSE-optimal scale of the grid; trust mask where values are not clipped.";
    const PRESETS: &'static [Preset] = &[
        Preset::new(
            "e2m1",
            "e = 2, m = 1",
            "FP4 E2M1 (values ±{0, .5, 1, 1.5, 2, 3, 4, 6}), RMS-optimal scale per row",
        ),
        Preset::new("e3m2", "e = 3, m = 2", "FP6 E3M2 (max 28), RMS-optimal scale per row"),
        Preset::new("e2m3", "e = 2, m = 3", "FP6 E2M3 (max 7.5), RMS-optimal scale per row"),
        Preset::new("e4m3", "e = 4, m = 3", "FP8 E4M3 (OCP, max 448), RMS-optimal scale per row"),
        Preset::new("e5m2", "e = 5, m = 2", "FP8 E5M2 (IEEE-like, max 57344), RMS-optimal scale per row"),
        Preset::new(
            "e2m1-sr",
            "e = 2, m = 1, stochastic = true",
            "FP4 E2M1, RMS-optimal scale per row, seeded stochastic rounding",
        ),
    ];

    fn build(p: FpParams) -> Result<Box<dyn Format>> {
        let format = match p.variant.as_str() {
            "auto" => Minifloat::standard(p.e, p.m)?,
            "finite" => Minifloat::new(p.e, p.m, Variant::Finite)?,
            "nan" => Minifloat::new(p.e, p.m, Variant::NanOnly)?,
            "ieee" => Minifloat::new(p.e, p.m, Variant::Ieee)?,
            other => {
                return Err(Error::param(
                    "variant",
                    format!("unknown variant \"{other}\" (use \"auto\", \"finite\", \"nan\" or \"ieee\")"),
                ));
            }
        };
        if p.scale_bits > 64 {
            return Err(Error::param("scale_bits", format!("must be 0..=64, got {}", p.scale_bits)));
        }
        let (c, gmse) = optimal_constant(&format);
        Ok(Box::new(Fp { format, c, gmse, group: p.group, scale_bits: p.scale_bits, stochastic: p.stochastic }))
    }
}

sdk::params! {
    /// Parameters of a raw cast.
    pub struct RawParams {
        /// Type cast to: "e2m1", "e2m3", "e3m2", "e4m3", "e5m2" or "e8m0" (ml_dtypes' float4_e2m1fn, float6_e2m3fn, float6_e3m2fn, float8_e4m3fn, float8_e5m2, float8_e8m0fnu).
        dtype: String = "e4m3".to_string(),
        /// Overflow: "saturate" (to the largest finite value; E8M0 keeps the sign beside its code and maps 0 to 2^-127) or "ml_dtypes" (exactly ml_dtypes: NaN or inf beyond the range, NaN for E8M0 of x <= 0; `host apply` writes and counts these, `host rank` refuses them: a GMSE would be NaN or inf).
        overflow: String = "saturate".to_string(),
    }
}

/// A built raw cast.
#[derive(Debug, Clone)]
pub struct Raw {
    cast: raw::RawCast,
}

impl Format for Raw {
    fn compress(&self, t: Tensor<'_>) -> Result<()> {
        rows::check(&t)?;
        self.cast.cast_slice(t.input, t.output);
        Ok(())
    }

    fn bits(&self, _shape: Shape) -> Bits {
        let ty = self.cast.ty();
        let b = Bits::elements(ty.bits() as f64);
        if ty == raw::RawType::E8M0 && self.cast.overflow() == raw::Overflow::Saturate {
            b.plus("sign (E8M0 is unsigned)", 1.0)
        } else {
            b
        }
    }

    fn family(&self) -> Family {
        Family::Scalar
    }

    fn label(&self) -> Option<String> {
        let ty = self.cast.ty();
        let how = match self.cast.overflow() {
            raw::Overflow::Saturate => "saturating",
            raw::Overflow::MlDtypes => "exact overflow",
        };
        Some(format!("{} raw cast as ml_dtypes.{} ({how}), no scale", ty.name().to_uppercase(), ty.ml_dtypes_name()))
    }
}

/// Kind `raw`: a value-for-value cast to a minifloat type, no scale.
pub struct RawKind;

impl Kind for RawKind {
    type Params = RawParams;
    const NAME: &'static str = "raw";
    const DOC: &'static str = "Raw cast to a minifloat type and back, no scale: bit for bit what ml_dtypes does \
        (round to nearest even; float4_e2m1fn, float6_e2m3fn, float6_e3m2fn, float8_e4m3fn, float8_e5m2, \
        float8_e8m0fnu), except that by default values beyond the range saturate where ml_dtypes gives NaN \
        (E4M3 beyond 464) or inf (E5M2 from 61440), and E8M0 (unsigned powers of two, no zero) keeps the sign \
        beside its 8-bit code (9 bits counted) with 0 mapped to 2^-127. Bits: the code only, no scale.";
    const PRESETS: &'static [Preset] = &[
        Preset::new("e2m1-raw", "dtype = \"e2m1\"", "FP4 E2M1 cast as is (ml_dtypes float4_e2m1fn), no scale"),
        Preset::new("e2m3-raw", "dtype = \"e2m3\"", "FP6 E2M3 cast as is (ml_dtypes float6_e2m3fn), no scale"),
        Preset::new("e3m2-raw", "dtype = \"e3m2\"", "FP6 E3M2 cast as is (ml_dtypes float6_e3m2fn), no scale"),
        Preset::new("e4m3-raw", "dtype = \"e4m3\"", "FP8 E4M3 cast as is (ml_dtypes float8_e4m3fn), no scale"),
        Preset::new("e5m2-raw", "dtype = \"e5m2\"", "FP8 E5M2 cast as is (ml_dtypes float8_e5m2), no scale"),
        Preset::new(
            "e8m0-raw",
            "dtype = \"e8m0\"",
            "E8M0 powers of two cast as is (ml_dtypes float8_e8m0fnu) plus a sign bit, no scale",
        ),
    ];

    fn build(p: RawParams) -> Result<Box<dyn Format>> {
        let ty = raw::RawType::from_name(&p.dtype).ok_or_else(|| {
            Error::param(
                "dtype",
                format!(
                    "unknown type \"{}\" (use \"e2m1\", \"e2m3\", \"e3m2\", \"e4m3\", \"e5m2\" or \"e8m0\")",
                    p.dtype
                ),
            )
        })?;
        let overflow = match p.overflow.as_str() {
            "saturate" => raw::Overflow::Saturate,
            "ml_dtypes" => raw::Overflow::MlDtypes,
            other => {
                return Err(Error::param(
                    "overflow",
                    format!("unknown overflow rule \"{other}\" (use \"saturate\" or \"ml_dtypes\")"),
                ));
            }
        };
        Ok(Box::new(Raw { cast: raw::RawCast::new(ty, overflow) }))
    }
}

sdk::export_plugin!(name: "fp", kinds: [FpKind, RawKind]);

#[cfg(test)]
mod tests {
    use super::*;
    use sdk::testing::{self, build, estimate_on, gaussian, gaussian_tensors, preset, run};

    const ORACLES: [(&str, f64); 5] =
        [("e2m1", 1.26849e-2), ("e3m2", 2.76611e-3), ("e2m3", 8.29147e-4), ("e4m3", 6.98750e-4), ("e5m2", 2.76557e-3)];

    #[test]
    fn conformance() {
        testing::check_kind::<FpKind>();
    }

    #[test]
    fn conformance_of_options() {
        for params in ["e = 3, m = 2, group = 32", "e = 4, m = 3, variant = \"ieee\"", "e = 1, m = 2", "e = 5, m = 10"]
        {
            let f = build::<FpKind>(params).unwrap();
            testing::check_format(params, &*f);
        }
    }

    #[test]
    fn bad_parameters() {
        assert!(build::<FpKind>("e = 9").err().unwrap().to_string().contains("`e`"));
        assert!(build::<FpKind>("m = 40").err().unwrap().to_string().contains("`m`"));
        assert!(build::<FpKind>("variant = \"fnuz\"").err().unwrap().to_string().contains("`variant`"));
        assert!(build::<FpKind>("e = 1, m = 1, variant = \"ieee\"").is_err());
    }

    /// Exact optimal-scale GMSE of each preset's grid (DESIGN.md 3), to the printed precision.
    #[test]
    fn exact_optimal_scale_oracles() {
        for (name, want) in ORACLES {
            let t = sdk::plugin::parse_inline_table(FpKind::PRESETS.iter().find(|p| p.name == name).unwrap().params);
            let p = <FpParams as sdk::Params>::from_table(&t.unwrap()).unwrap();
            let f = Minifloat::standard(p.e, p.m).unwrap();
            let (c, g) = optimal_constant(&f);
            println!(
                "{name}: optimal scale {c:.6} (outer level {:.4} RMS), exact GMSE {g:.6e} (oracle {want:e})",
                c * f.max()
            );
            assert!((g - want).abs() <= 5e-6 * want, "{name}: {g} vs {want}");
        }
        let (c, _) = optimal_constant(&Minifloat::standard(2, 1).unwrap());
        assert!((c - 0.48708).abs() < 5e-6, "{c}");
    }

    /// Scalar reference: divide by the scale, nearest representable value by
    /// scan (ties to the even code), multiply back.
    fn reference(x: &[f32], f: &Minifloat, c: f32) -> Vec<f32> {
        let vals = f.values();
        let rms = (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt() as f32;
        let s = c * rms;
        x.iter()
            .map(|&v| {
                let a = (v / s).abs();
                let mut best = 0;
                for (i, &w) in vals.iter().enumerate() {
                    let (d, db) = ((a - w).abs(), (a - vals[best]).abs());
                    if d < db || (d == db && i % 2 == 0) {
                        best = i;
                    }
                }
                vals[best].copysign(v) * s
            })
            .collect()
    }

    #[test]
    fn fast_path_matches_reference() {
        let shape = Shape::new(4, 512);
        let x = gaussian(shape.len(), 8);
        for (name, _) in ORACLES {
            let p = FpKind::PRESETS.iter().find(|p| p.name == name).unwrap();
            let t = sdk::plugin::parse_inline_table(p.params).unwrap();
            let p = <FpParams as sdk::Params>::from_table(&t).unwrap();
            let f = Minifloat::standard(p.e, p.m).unwrap();
            let (c, _) = optimal_constant(&f);
            let (y, _) = run(&*preset::<FpKind>(name), &x, shape, 0, false).unwrap();
            let r: Vec<f32> = x.chunks(shape.cols).flat_map(|row| reference(row, &f, c)).collect();
            let d = y.iter().zip(&r).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            println!("{name}: max |fast - reference| = {d:e}");
            assert!(d <= 1e-6, "{name}: {d}");
        }
    }

    #[test]
    fn mask_and_bits() {
        let shape = Shape::new(4, 1024);
        let x = gaussian(shape.len(), 2);
        let (y, m) = run(&*preset::<FpKind>("e2m1"), &x, shape, 0, true).unwrap();
        let m = m.unwrap();
        let closed = m.iter().filter(|&&v| v == 0.0).count();
        assert!(closed > 0);
        for ((&xi, &yi), &mi) in x.iter().zip(&y).zip(&m) {
            if mi == 0.0 {
                // Clipped: output at the top level, input beyond half a top step from it.
                assert!(xi.abs() > yi.abs() && (xi - yi).abs() > 0.0);
            }
        }
        let f = build::<FpKind>("e = 2, m = 1, group = 32").unwrap();
        assert_eq!(f.bits(Shape::new(1, 256)).total(), 4.5);
        assert_eq!(preset::<FpKind>("e4m3").bits(Shape::new(1, 4096)).total(), 8.0 + 16.0 / 4096.0);
        assert_eq!(preset::<FpKind>("e4m3").label().unwrap(), "E4M3 (OCP, NaN only), RMS-optimal scale per row");
    }

    /// Monte Carlo GMSE of the presets against the exact optimal-scale values
    /// (DESIGN.md 3). Tolerance: 3 standard errors of the mean of per-tensor
    /// values plus 0.5 % of the oracle (the row RMS is estimated from 4096
    /// values, a second-order effect at the optimal scale).
    #[test]
    fn gmse_oracles() {
        let shape = Shape::new(64, 4096);
        let tensors = gaussian_tensors(shape, 200..208);
        for (name, want) in ORACLES {
            estimate_on(&*preset::<FpKind>(name), shape, &tensors).assert_close(name, want);
        }
    }

    #[test]
    fn raw_conformance() {
        testing::check_kind::<RawKind>();
        assert!(build::<RawKind>("dtype = \"e3m4\"").err().unwrap().to_string().contains("`dtype`"));
        assert!(build::<RawKind>("overflow = \"wrap\"").err().unwrap().to_string().contains("`overflow`"));
    }

    /// Exact GMSE of a saturating raw cast: the nearest-level quantizer on
    /// the type's values with scale 1 (saturation is the nearest level too).
    fn raw_exact_gmse(ty: raw::RawType) -> f64 {
        let pos: Vec<f64> = ty.values().iter().map(|&v| v as f64).filter(|&v| v > 1e-30).collect();
        let mut l: Vec<f64> = pos.iter().rev().map(|v| -v).collect();
        if ty != raw::RawType::E8M0 {
            l.push(0.0);
        }
        l.extend(&pos);
        gauss::grid_mse(&l, 1.0)
    }

    /// Monte Carlo GMSE of the raw presets against the exact Gaussian
    /// integral of their grids; tolerance 3 standard errors + 0.5 %.
    #[test]
    fn raw_gmse() {
        let shape = Shape::new(16, 4096);
        let tensors = gaussian_tensors(shape, 400..416);
        for ty in raw::RawType::ALL {
            let want = raw_exact_gmse(ty);
            let name = format!("{}-raw", ty.name());
            estimate_on(&*preset::<RawKind>(&name), shape, &tensors).assert_close(&name, want);
        }
    }

    /// Through the plugin interface: the `raw` kind with `overflow =
    /// "ml_dtypes"` reproduces every golden line bit for bit (NaN by class).
    #[test]
    fn raw_kind_matches_golden() {
        let golden = [
            ("e2m1", include_str!("../golden/e2m1.txt")),
            ("e2m3", include_str!("../golden/e2m3.txt")),
            ("e3m2", include_str!("../golden/e3m2.txt")),
            ("e4m3", include_str!("../golden/e4m3.txt")),
            ("e5m2", include_str!("../golden/e5m2.txt")),
            ("e8m0", include_str!("../golden/e8m0.txt")),
        ];
        for (name, text) in golden {
            let (x, want): (Vec<f32>, Vec<f32>) = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| {
                    let (a, b) = l.split_once(' ').unwrap();
                    let h = |s: &str| f32::from_bits(u32::from_str_radix(s.trim(), 16).unwrap());
                    (h(a), h(b))
                })
                .unzip();
            let f = build::<RawKind>(&format!("dtype = \"{name}\", overflow = \"ml_dtypes\"")).unwrap();
            let (y, _) = run(&*f, &x, Shape::new(1, x.len()), 0, false).unwrap();
            let bad = y.iter().zip(&want).filter(|(a, b)| !((a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()));
            assert_eq!(bad.count(), 0, "{name}");
        }
    }

    #[test]
    fn raw_bits_and_labels() {
        let s = Shape::new(4, 4096);
        let bits: Vec<f64> = ["e2m1-raw", "e2m3-raw", "e3m2-raw", "e4m3-raw", "e5m2-raw", "e8m0-raw"]
            .iter()
            .map(|n| preset::<RawKind>(n).bits(s).total())
            .collect();
        assert_eq!(bits, [4.0, 6.0, 6.0, 8.0, 8.0, 9.0]);
        assert_eq!(build::<RawKind>("dtype = \"e8m0\", overflow = \"ml_dtypes\"").unwrap().bits(s).total(), 8.0);
        let l = preset::<RawKind>("e4m3-raw").label().unwrap();
        assert!(l.contains("float8_e4m3fn"), "{l}");
        // Saturation where ml_dtypes overflows.
        let x = [500.0f32, -1e6, 70000.0, 0.0];
        let (y, _) = run(&*preset::<RawKind>("e4m3-raw"), &x, Shape::new(1, 4), 0, false).unwrap();
        assert_eq!(y, [448.0, -448.0, 448.0, 0.0]);
        let (y, _) = run(&*preset::<RawKind>("e5m2-raw"), &x, Shape::new(1, 4), 0, false).unwrap();
        assert_eq!(y, [512.0, -57344.0, 57344.0, 0.0]);
        let (y, _) =
            run(&*preset::<RawKind>("e8m0-raw"), &[-3.0, 0.0, -0.0, 3e38], Shape::new(1, 4), 0, false).unwrap();
        assert_eq!(y, [-4.0, 2f32.powi(-127), -(2f32.powi(-127)), 2f32.powi(127)]);
    }

    /// Stochastic rounding: the mean of many roundings of a fixed value is
    /// the value (within 4 standard errors of a Bernoulli mean), every
    /// result is one of its two neighbours, and the output is a function of
    /// the seed and the element's position only.
    #[test]
    fn stochastic_rounding() {
        let f = preset::<FpKind>("e2m1-sr");
        assert!(f.stochastic());
        // The quantizer itself, at scale 1.
        let fmt = Minifloat::standard(2, 1).unwrap();
        let n = 200_000u64;
        for (v, lo, hi) in [(0.3f32, 0.0f32, 0.5f32), (2.6, 2.0, 3.0), (-4.5, -6.0, -4.0), (5.9, 4.0, 6.0)] {
            let q = stochastic_quantizer(&fmt, 1.0, 17);
            let mut sum = 0f64;
            for i in 0..n {
                let r = q(v, i);
                assert!(r == lo || r == hi, "{v}: {r}");
                sum += r as f64;
            }
            let mean = sum / n as f64;
            let p = ((v - lo) / (hi - lo)) as f64;
            let se = (hi - lo) as f64 * (p * (1.0 - p) / n as f64).sqrt();
            println!("stochastic E2M1 of {v}: mean {mean:.5} (standard error {se:.1e})");
            assert!((mean - v as f64).abs() <= 4.0 * se, "{v}: mean {mean}");
        }
        // Representable values and saturation are exact.
        let q = stochastic_quantizer(&fmt, 1.0, 3);
        assert!((0..1000).all(|i| q(1.5, i) == 1.5 && q(9.0, i) == 6.0 && q(-0.5, i) == -0.5));

        // Through the format: unbiased over a tensor, deterministic for a seed,
        // independent of the group split.
        let shape = Shape::new(8, 512);
        let x = gaussian(shape.len(), 5);
        let (a, _) = run(&*f, &x, shape, 42, false).unwrap();
        let (b, _) = run(&*f, &x, shape, 42, false).unwrap();
        let (c, _) = run(&*f, &x, shape, 43, false).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let bias: f64 = a.iter().zip(&x).map(|(q, v)| (q - v) as f64).sum::<f64>() / x.len() as f64;
        // Per-element error variance <= (top step * scale)^2 / 4; mean over 4096 values.
        assert!(bias.abs() < 0.02, "{bias}");
        // Same rows, compressed one row at a time with the right offsets: same values.
        let c = optimal_constant(&fmt).0;
        let rms_scale = |row: &[f32]| scale::rms_scale(row, c);
        for (r, row) in x.chunks(512).enumerate() {
            let q = stochastic_quantizer(&fmt, rms_scale(row), 42);
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(q(v, (r * 512 + j) as u64), a[r * 512 + j]);
            }
        }
    }

    /// Stochastic rounding costs about twice the GMSE of round-to-nearest at
    /// a fixed scale; it must be worse than RNE but finite and conforming.
    #[test]
    fn stochastic_gmse() {
        let shape = Shape::new(8, 4096);
        let tensors = gaussian_tensors(shape, 500..504);
        let sr = estimate_on(&*preset::<FpKind>("e2m1-sr"), shape, &tensors);
        let rne = estimate_on(&*preset::<FpKind>("e2m1"), shape, &tensors);
        println!("E2M1: stochastic {:.4e}, nearest {:.4e}", sr.mean, rne.mean);
        assert!(sr.mean > 1.5 * rne.mean && sr.mean < 4.0 * rne.mean);
        testing::check_format(
            "e = 4, m = 3, stochastic = true, group = 32",
            &*build::<FpKind>("e = 4, m = 3, stochastic = true, group = 32").unwrap(),
        );
    }
}
