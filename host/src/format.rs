//! Formats as the host runs them: a format from a plugin, or a composition.
//!
//! SPEC `A+B` composes two formats (see [`crate::spec`]):
//! - [`Then`]: `A` first (typically a sparsifier), then `B` re-encodes the
//!   values `A` kept. Kept values (non-zero outputs of `A`) are gathered into a
//!   dense tensor — one row per row when every row keeps the same count (N:M,
//!   per-row top-k), else one long row — `B` compresses that, and the result
//!   is scattered back. Bits: `A`'s metadata (every part except its
//!   `values`/`elements` part) plus the kept fraction times `B`'s bits.
//! - [`Outliers`] (`outliers:p=0.01+B`): the largest `p` fraction of
//!   magnitudes of the tensor are kept exactly; the rest is compressed by `B`
//!   with the outliers set to zero. Bits: `B`'s bits plus, per outlier, its
//!   value and its position in the tensor.

use sdk::abi::{Buffers, RemoteFormat};
use sdk::plugin::FormatInfo;
use sdk::{Bits, Shape};

/// What a format run hands back: the output, and the mask when asked for.
pub type Sink<'a> = &'a mut dyn FnMut(&[f32], Option<&[f32]>);

/// A format the engine and `host apply` can run.
pub trait HostFormat: Send + Sync {
    /// What the format says about itself for `shape`.
    fn info(&self, shape: Shape) -> Result<FormatInfo, String>;
    /// Compresses `x` and hands `f` the output (and the mask when asked).
    fn run(&self, x: &[f32], shape: Shape, seed: u64, want_mask: bool, f: Sink<'_>) -> Result<(), String>;
}

impl<T: HostFormat + ?Sized> HostFormat for Box<T> {
    fn info(&self, shape: Shape) -> Result<FormatInfo, String> {
        (**self).info(shape)
    }
    fn run(&self, x: &[f32], shape: Shape, seed: u64, want_mask: bool, f: Sink<'_>) -> Result<(), String> {
        (**self).run(x, shape, seed, want_mask, f)
    }
}

impl HostFormat for RemoteFormat {
    fn info(&self, shape: Shape) -> Result<FormatInfo, String> {
        RemoteFormat::info(self, shape)
    }

    fn run(&self, x: &[f32], shape: Shape, seed: u64, want_mask: bool, f: Sink<'_>) -> Result<(), String> {
        thread_local! {
            static BUFS: std::cell::RefCell<Buffers> = std::cell::RefCell::default();
        }
        // Composites call their parts one after the other, never nested, so
        // one set of buffers per thread serves every remote format.
        BUFS.with(|b| {
            let mut b = b.borrow_mut();
            self.compress(x, shape, seed, &mut b, want_mask)?;
            f(b.output(), want_mask.then(|| b.mask()));
            Ok(())
        })
    }
}

/// Runs `f` once and returns copies of its output and mask.
fn run_owned(
    f: &dyn HostFormat,
    x: &[f32],
    shape: Shape,
    seed: u64,
    want_mask: bool,
) -> Result<(Vec<f32>, Option<Vec<f32>>), String> {
    let mut out = (Vec::new(), None);
    f.run(x, shape, seed, want_mask, &mut |y, m| out = (y.to_vec(), m.map(<[f32]>::to_vec)))?;
    Ok(out)
}

/// Seed of the second stage, distinct from the first's.
fn second_seed(seed: u64) -> u64 {
    crate::sampler::mix64(seed ^ 0x5EC0_4D57_A6E0_0001)
}

/// `A` then `B` on the values `A` kept.
pub struct Then {
    /// The first stage (e.g. a sparsifier).
    pub first: Box<dyn HostFormat>,
    /// The second stage (e.g. a scalar quantizer).
    pub second: Box<dyn HostFormat>,
}

/// Where the kept values go: positions and the dense shape they form.
fn kept_layout(y: &[f32], shape: Shape) -> (Vec<u32>, Shape) {
    let pos: Vec<u32> = (0..y.len() as u32).filter(|&i| y[i as usize] != 0.0).collect();
    let per_row = |r: usize| y[r * shape.cols..(r + 1) * shape.cols].iter().filter(|v| **v != 0.0).count();
    let first = if shape.rows > 0 { per_row(0) } else { 0 };
    let uniform = first > 0 && (1..shape.rows).all(|r| per_row(r) == first);
    let dense = if uniform { Shape::new(shape.rows, first) } else { Shape::new(1, pos.len().max(1)) };
    (pos, dense)
}

/// The parts of a bit budget that store the values themselves (replaced when
/// re-encoded): by the SDK's naming convention they start with `elements` or
/// name `values` (`kept values (BF16)`).
fn is_values_part(what: &str) -> bool {
    what.starts_with("elements") || what.contains("values")
}

impl HostFormat for Then {
    fn info(&self, shape: Shape) -> Result<FormatInfo, String> {
        let a = self.first.info(shape)?;
        // The kept fraction and the dense shape come from running the first
        // stage on a seeded Gaussian tensor of this shape.
        let mut x = vec![0f32; shape.len()];
        crate::sampler::fill_normal(0x1AF0, 0, &mut x);
        let (y, _) = run_owned(&*self.first, &x, shape, 0, false)?;
        let (pos, dense) = kept_layout(&y, shape);
        let keep = pos.len() as f64 / shape.len().max(1) as f64;
        let b = self.second.info(dense)?;
        let mut bits = Bits::default();
        for p in a.bits.parts.iter().filter(|p| !is_values_part(&p.what)) {
            bits = bits.plus(p.what.clone(), p.bits);
        }
        for p in &b.bits.parts {
            bits = bits.plus(format!("{} (of the {:.4} kept)", p.what, keep), p.bits * keep);
        }
        Ok(FormatInfo {
            family: a.family,
            bits,
            block_len: a.block_len.or(b.block_len),
            stochastic: a.stochastic || b.stochastic,
            label: None,
        })
    }

    fn run(&self, x: &[f32], shape: Shape, seed: u64, want_mask: bool, f: Sink<'_>) -> Result<(), String> {
        let (y, mask_a) = run_owned(&*self.first, x, shape, seed, want_mask)?;
        let (pos, dense) = kept_layout(&y, shape);
        let kept: Vec<f32> = pos.iter().map(|&i| y[i as usize]).collect();
        let mut out = vec![0f32; y.len()];
        let mut mask = mask_a;
        if kept.is_empty() {
            f(&out, mask.as_deref());
            return Ok(());
        }
        self.second.run(&kept, dense, second_seed(seed), want_mask, &mut |z, mz| {
            for (k, &i) in pos.iter().enumerate() {
                out[i as usize] = z[k];
            }
            if let (Some(m), Some(mz)) = (mask.as_mut(), mz) {
                for (k, &i) in pos.iter().enumerate() {
                    m[i as usize] *= mz[k];
                }
            }
        })?;
        f(&out, mask.as_deref());
        Ok(())
    }
}

/// The largest `fraction` of magnitudes kept exactly, the rest compressed by `inner`.
pub struct Outliers {
    /// Fraction of elements kept exactly (0..1).
    pub fraction: f64,
    /// Bits stored per outlier value.
    pub value_bits: u32,
    /// The format for the rest.
    pub inner: Box<dyn HostFormat>,
}

sdk::params! {
    /// Parameters of the host's `outliers` stage.
    pub struct OutlierParams {
        /// Fraction of the tensor's elements, by magnitude, kept exactly (0 <= p < 1).
        p: f64 = 0.01,
        /// Bits stored per outlier value (16 = BF16).
        value_bits: u32 = 16,
    }
}

impl Outliers {
    /// Number of outliers in a tensor of `n` elements.
    fn count(&self, n: usize) -> usize {
        ((self.fraction * n as f64).round() as usize).min(n)
    }
}

impl HostFormat for Outliers {
    fn info(&self, shape: Shape) -> Result<FormatInfo, String> {
        let mut info = self.inner.info(shape)?;
        let n = shape.len().max(1);
        let frac = self.count(n) as f64 / n as f64;
        let index_bits = (n as f64).log2().ceil().max(1.0);
        info.bits = info
            .bits
            .plus(format!("outlier values ({}-bit) x {frac}", self.value_bits), frac * self.value_bits as f64)
            .plus(format!("outlier positions ({index_bits}-bit index) x {frac}"), frac * index_bits);
        info.label = None;
        Ok(info)
    }

    fn run(&self, x: &[f32], shape: Shape, seed: u64, want_mask: bool, f: Sink<'_>) -> Result<(), String> {
        let k = self.count(x.len());
        let mut idx: Vec<u32> = (0..x.len() as u32).collect();
        if k > 0 && k < x.len() {
            // Largest magnitudes first; ties by position, so exactly k are chosen.
            idx.select_nth_unstable_by(k - 1, |&a, &b| {
                x[b as usize].abs().total_cmp(&x[a as usize].abs()).then(a.cmp(&b))
            });
        }
        let outliers = &idx[..k];
        let mut rest = x.to_vec();
        for &i in outliers {
            rest[i as usize] = 0.0;
        }
        let (mut out, mut mask) = run_owned(&*self.inner, &rest, shape, seed, want_mask)?;
        for &i in outliers {
            out[i as usize] = x[i as usize];
            if let Some(m) = mask.as_mut() {
                m[i as usize] = 1.0;
            }
        }
        f(&out, mask.as_deref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the larger of each pair of values (1:2 sparsity).
    struct KeepLarger;
    impl HostFormat for KeepLarger {
        fn info(&self, _: Shape) -> Result<FormatInfo, String> {
            Ok(FormatInfo {
                family: sdk::Family::Sparse,
                bits: Bits::default().plus("values (bf16) x 0.5", 8.0).plus("index", 0.5),
                block_len: Some(2),
                stochastic: false,
                label: None,
            })
        }
        fn run(&self, x: &[f32], _: Shape, _: u64, m: bool, f: Sink<'_>) -> Result<(), String> {
            let y: Vec<f32> =
                x.chunks(2).flat_map(|p| if p[0].abs() >= p[1].abs() { [p[0], 0.0] } else { [0.0, p[1]] }).collect();
            let mask: Vec<f32> = y.iter().map(|v| (*v != 0.0) as u8 as f32).collect();
            f(&y, m.then_some(&mask[..]));
            Ok(())
        }
    }

    /// Rounds to integers; 3 bits per element.
    struct Round;
    impl HostFormat for Round {
        fn info(&self, shape: Shape) -> Result<FormatInfo, String> {
            Ok(FormatInfo {
                family: sdk::Family::Scalar,
                bits: Bits::elements(3.0).per_block("scale", 16.0, shape.cols),
                block_len: None,
                stochastic: false,
                label: None,
            })
        }
        fn run(&self, x: &[f32], _: Shape, _: u64, _: bool, f: Sink<'_>) -> Result<(), String> {
            let y: Vec<f32> = x.iter().map(|v| v.round()).collect();
            f(&y, None);
            Ok(())
        }
    }

    fn check(format: &dyn HostFormat, x: &[f32], shape: Shape, expected: &[f32]) {
        let (y, _) = run_owned(format, x, shape, 0, false).unwrap();
        assert_eq!(y, expected);
    }

    #[test]
    fn then_quantizes_only_kept_values_and_counts_bits() {
        let t = Then { first: Box::new(KeepLarger), second: Box::new(Round) };
        let shape = Shape::new(2, 4);
        check(&t, &[0.2, -1.6, 2.4, 0.1, 0.0, 0.3, -0.7, 0.4], shape, &[0.0, -2.0, 2.0, 0.0, 0.0, 0.0, -1.0, 0.0]);
        // Metadata of the first (0.5) + half of the second's bits at the dense
        // shape 4x2: (3 + 16/2) / 2 = 5.5. Every row keeps half its values.
        let info = t.info(Shape::new(4, 4)).unwrap();
        assert_eq!(info.bits.total(), 0.5 + 5.5);
        assert_eq!(info.family, sdk::Family::Sparse);
    }

    #[test]
    fn outliers_are_kept_exactly() {
        let o = Outliers { fraction: 0.25, value_bits: 16, inner: Box::new(Round) };
        let shape = Shape::new(1, 8);
        check(&o, &[0.2, -9.6, 2.4, 0.1, 0.0, 7.3, -0.7, 0.4], shape, &[0.0, -9.6, 2.0, 0.0, 0.0, 7.3, -1.0, 0.0]);
        let info = o.info(shape).unwrap();
        // 3 + 16/8 + 0.25 * (16 + 3 position bits for 8 elements).
        assert_eq!(info.bits.total(), 3.0 + 2.0 + 0.25 * 19.0);
    }
}
