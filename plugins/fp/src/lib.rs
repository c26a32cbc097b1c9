//! Minifloat formats ExMy, kind `fp`.
//!
//! Sign, `e` exponent bits, `m` mantissa bits, bias `2^(e-1) - 1`,
//! subnormals, round to nearest even, saturation to the largest finite value
//! ([`sdk::minifloat`]). Each row (or group) is divided by `c * RMS`, rounded
//! to the format, and multiplied back, where `c` is the Gaussian-MSE-optimal
//! scale of the format's value grid ([`sdk::gauss::optimal_scale`], computed
//! once per format). Trust mask: the gradient passes where the value was not
//! clipped (`|x| <= scale * (max + top_step / 2)`).

use std::sync::Mutex;

use sdk::grid::{clip_mask, map};
use sdk::minifloat::{Minifloat, Variant};
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
        for g in rows::tensor_groups(t, self.group) {
            let s = scale::rms_scale(g.input, self.c);
            map(g.input, g.output, self.format.quantizer(s));
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

    fn label(&self) -> Option<String> {
        let v = match self.format.variant() {
            Variant::Finite => "",
            Variant::NanOnly => " (OCP, NaN only)",
            Variant::Ieee => " (IEEE-like)",
        };
        let per = if self.group > 0 { format!("g{}", self.group) } else { "per row".to_string() };
        Some(format!("{}{v}, RMS-optimal scale {per}", self.format.name()))
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
        Ok(Box::new(Fp { format, c, gmse, group: p.group, scale_bits: p.scale_bits }))
    }
}

sdk::export_plugin!(name: "fp", kinds: [FpKind]);

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
}
