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
//!
//! Backward (quantization-aware training, [`HostFormat::backward`]): a
//! plugin format runs its own (`sdk::Format::backward`); compositions apply
//! the chain rule through their parts.
//! - `A+B`: `B`'s backward on the gradient of the kept values (gathered into
//!   the same dense tensor the forward pass built), scattered back; on the
//!   values `A` dropped `B` is the identity (they are zero before and after
//!   it), so their gradient passes on unchanged; then `A`'s backward on the
//!   whole tensor. `A` decides whether dropped values get a gradient (an
//!   RBBM backward mask lets some through). With element-wise masks this is
//!   the product of the masks, as before backward existed.
//! - `outliers:`: the outliers' gradient passes unchanged (they are kept
//!   exactly); the rest goes through `B`'s backward at the input `B` saw
//!   (outliers zeroed), with a zero upstream gradient at the outlier
//!   positions (`B`'s output there is discarded), and `B`'s gradient at the
//!   outlier positions is dropped (its input there is the constant 0).

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
    /// Straight-through backward: `grad` holds `dL/dy` for `y = run(x)` with
    /// `seed` and is overwritten with `dL/dx`. `mask`: the mask `run` handed
    /// over for this `x` and seed, when the caller kept it. Default: the
    /// element-wise mask ([`mask_backward`]).
    fn backward(
        &self,
        x: &[f32],
        shape: Shape,
        seed: u64,
        mask: Option<&[f32]>,
        grad: &mut [f32],
    ) -> Result<(), String> {
        mask_backward(self, x, shape, seed, mask, grad)
    }
}

/// `grad *= mask` with `mask` when given, else with the mask `f` hands over
/// for `x` and `seed` (none: the gradient passes unchanged).
pub fn mask_backward<F: HostFormat + ?Sized>(
    f: &F,
    x: &[f32],
    shape: Shape,
    seed: u64,
    mask: Option<&[f32]>,
    grad: &mut [f32],
) -> Result<(), String> {
    let mul = |grad: &mut [f32], m: &[f32]| grad.iter_mut().zip(m).for_each(|(g, m)| *g *= m);
    match mask {
        Some(m) => mul(grad, m),
        None => f.run(x, shape, seed, true, &mut |_, m| {
            if let Some(m) = m {
                mul(grad, m)
            }
        })?,
    }
    Ok(())
}

impl<T: HostFormat + ?Sized> HostFormat for Box<T> {
    fn info(&self, shape: Shape) -> Result<FormatInfo, String> {
        (**self).info(shape)
    }
    fn run(&self, x: &[f32], shape: Shape, seed: u64, want_mask: bool, f: Sink<'_>) -> Result<(), String> {
        (**self).run(x, shape, seed, want_mask, f)
    }
    fn backward(
        &self,
        x: &[f32],
        shape: Shape,
        seed: u64,
        mask: Option<&[f32]>,
        grad: &mut [f32],
    ) -> Result<(), String> {
        (**self).backward(x, shape, seed, mask, grad)
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

    fn backward(
        &self,
        x: &[f32],
        shape: Shape,
        seed: u64,
        mask: Option<&[f32]>,
        grad: &mut [f32],
    ) -> Result<(), String> {
        RemoteFormat::backward(self, x, shape, seed, mask, grad)
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

    /// `B`'s backward on the kept values, identity on the dropped ones, then
    /// `A`'s backward (see the module docs). The forward mask is not used:
    /// it mixes both parts.
    fn backward(&self, x: &[f32], shape: Shape, seed: u64, _: Option<&[f32]>, grad: &mut [f32]) -> Result<(), String> {
        let (y, _) = run_owned(&*self.first, x, shape, seed, false)?;
        let (pos, dense) = kept_layout(&y, shape);
        if !pos.is_empty() {
            let kept: Vec<f32> = pos.iter().map(|&i| y[i as usize]).collect();
            let mut gk: Vec<f32> = pos.iter().map(|&i| grad[i as usize]).collect();
            self.second.backward(&kept, dense, second_seed(seed), None, &mut gk)?;
            for (&i, &g) in pos.iter().zip(&gk) {
                grad[i as usize] = g;
            }
        }
        self.first.backward(x, shape, seed, None, grad)
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

    /// Positions of the outliers of `x` (the largest magnitudes; ties by position).
    fn outliers(&self, x: &[f32]) -> Vec<u32> {
        let k = self.count(x.len());
        let mut idx: Vec<u32> = (0..x.len() as u32).collect();
        if k > 0 && k < x.len() {
            // Largest magnitudes first; ties by position, so exactly k are chosen.
            idx.select_nth_unstable_by(k - 1, |&a, &b| {
                x[b as usize].abs().total_cmp(&x[a as usize].abs()).then(a.cmp(&b))
            });
        }
        idx.truncate(k);
        idx
    }

    /// `x` with the outliers set to zero: what `inner` compresses.
    fn rest(x: &[f32], outliers: &[u32]) -> Vec<f32> {
        let mut rest = x.to_vec();
        for &i in outliers {
            rest[i as usize] = 0.0;
        }
        rest
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
        let outliers = self.outliers(x);
        let rest = Self::rest(x, &outliers);
        let (mut out, mut mask) = run_owned(&*self.inner, &rest, shape, seed, want_mask)?;
        for &i in &outliers {
            out[i as usize] = x[i as usize];
            if let Some(m) = mask.as_mut() {
                m[i as usize] = 1.0;
            }
        }
        f(&out, mask.as_deref());
        Ok(())
    }

    /// Outliers: the gradient unchanged; the rest: `inner`'s backward at
    /// the input it saw, upstream gradient zero at the outliers (see the
    /// module docs). The forward mask is not used: it mixes both parts.
    fn backward(&self, x: &[f32], shape: Shape, seed: u64, _: Option<&[f32]>, grad: &mut [f32]) -> Result<(), String> {
        let outliers = self.outliers(x);
        let rest = Self::rest(x, &outliers);
        let kept: Vec<f32> = outliers.iter().map(|&i| grad[i as usize]).collect();
        for &i in &outliers {
            grad[i as usize] = 0.0;
        }
        self.inner.backward(&rest, shape, seed, None, grad)?;
        for (&i, &g) in outliers.iter().zip(&kept) {
            grad[i as usize] = g;
        }
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

    /// Rotates pairs by `H2 = [[1, 1], [1, -1]] / sqrt(2)`, rounds to -1, 0,
    /// 1 there, rotates back. Its trust mask (`|H2 x| <= 1`) lives in the
    /// rotated basis: the element-wise mask stays open and its backward is
    /// `H2 (m * (H2 g))`.
    struct Rot2;
    fn rot(a: f32, b: f32) -> (f32, f32) {
        let s = std::f32::consts::FRAC_1_SQRT_2;
        ((a + b) * s, (a - b) * s)
    }
    impl HostFormat for Rot2 {
        fn info(&self, _: Shape) -> Result<FormatInfo, String> {
            Ok(FormatInfo {
                family: sdk::Family::Scalar,
                bits: Bits::elements(1.6),
                block_len: Some(2),
                stochastic: false,
                label: None,
            })
        }
        fn run(&self, x: &[f32], _: Shape, _: u64, m: bool, f: Sink<'_>) -> Result<(), String> {
            let q = |v: f32| v.round().clamp(-1.0, 1.0);
            let y: Vec<f32> = x
                .chunks(2)
                .flat_map(|p| {
                    let (u, v) = rot(p[0], p[1]);
                    let (a, b) = rot(q(u), q(v));
                    [a, b]
                })
                .collect();
            f(&y, m.then_some(&vec![1.0; x.len()][..]));
            Ok(())
        }
        fn backward(&self, x: &[f32], _: Shape, _: u64, _: Option<&[f32]>, g: &mut [f32]) -> Result<(), String> {
            for (p, gp) in x.chunks(2).zip(g.chunks_mut(2)) {
                let (u, v) = rot(p[0], p[1]);
                let (gu, gv) = rot(gp[0], gp[1]);
                let (gu, gv) = (if u.abs() <= 1.0 { gu } else { 0.0 }, if v.abs() <= 1.0 { gv } else { 0.0 });
                (gp[0], gp[1]) = rot(gu, gv);
            }
            Ok(())
        }
    }

    fn backward_of(format: &dyn HostFormat, x: &[f32], g: &[f32]) -> Vec<f32> {
        let mut d = g.to_vec();
        format.backward(x, Shape::new(1, x.len()), 0, None, &mut d).unwrap();
        d
    }

    fn assert_near(got: &[f32], want: &[f32]) {
        // Two f32 2x2 rotations of values below 10: within 4 ulp of 10.
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 4e-6, "{got:?} vs {want:?}");
    }

    #[test]
    fn rotated_backward_by_hand() {
        // (1, 1) rotates to (sqrt 2, 0): the first rotated entry is outside
        // the trust region, so the gradient (1, 3) -> H2: (4, -2)/sqrt 2 ->
        // masked (0, -2)/sqrt 2 -> H2: (-1, 1).
        assert_near(&backward_of(&Rot2, &[1.0, 1.0], &[1.0, 3.0]), &[-1.0, 1.0]);
        assert_near(&backward_of(&Rot2, &[0.3, -0.1], &[1.0, 3.0]), &[1.0, 3.0]);
    }

    #[test]
    fn composition_backward_is_the_chain_rule() {
        let g = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        // Then: KeepLarger keeps positions 0, 3, 4, 7 -> dense [1.2, 1.3, 0.5,
        // -0.3]; Rot2's backward on their gradients (1, 4) (rotated entry 0
        // closed: (-1.5, 1.5)) and (5, 8) (open); the dropped positions
        // pass on to KeepLarger's mask, which closes them.
        let t = Then { first: Box::new(KeepLarger), second: Box::new(Rot2) };
        let x = [1.2, 0.1, -0.2, 1.3, 0.5, 0.4, 0.1, -0.3];
        assert_near(&backward_of(&t, &x, &g), &[-1.5, 0.0, 0.0, 1.5, 5.0, 0.0, 0.0, 8.0]);
        // Outliers: 9 and -7 (positions 2 and 6) pass their gradient; the
        // rest [1, 1, 0, 0.2, 0.3, -0.1, 0, 0.5] goes through Rot2 with the
        // gradient [1, 2, 0, 4, 5, 6, 0, 8] (zero at the outliers): pair (1, 1)
        // has rotated entry 0 closed, (1, 2) -> H2: (3, -1)/sqrt 2 -> (0, -1)/sqrt 2
        // -> (-0.5, 0.5); the other pairs are open.
        let o = Outliers { fraction: 0.25, value_bits: 16, inner: Box::new(Rot2) };
        let x = [1.0, 1.0, 9.0, 0.2, 0.3, -0.1, -7.0, 0.5];
        assert_near(&backward_of(&o, &x, &g), &[-0.5, 0.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        // Outlier 9 shares its pair with 1.6: the rest pair (0, 1.6) rotates
        // to (1.13, -1.13), both closed, so position 5 gets no gradient while
        // the outlier itself gets its own.
        let x = [1.0, 1.0, 0.0, 0.2, 9.0, 1.6, -7.0, 0.5];
        assert_near(&backward_of(&o, &x, &g), &[-0.5, 0.5, 3.0, 4.0, 5.0, 0.0, 7.0, 8.0]);
    }

    #[test]
    fn composition_backward_with_elementwise_parts_is_the_product_of_masks() {
        // Element-wise parts: the chain rule gives exactly the mask that run
        // hands over, times the gradient.
        let x = [0.2, -1.6, 2.4, 0.1, 0.0, 0.3, -0.7, 0.4];
        let g = [1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0];
        let shape = Shape::new(2, 4);
        let parts: [Box<dyn HostFormat>; 2] = [
            Box::new(Then { first: Box::new(KeepLarger), second: Box::new(Round) }),
            Box::new(Outliers { fraction: 0.25, value_bits: 16, inner: Box::new(KeepLarger) }),
        ];
        for f in &parts {
            let (_, m) = run_owned(&**f, &x, shape, 0, true).unwrap();
            let want: Vec<f32> = g.iter().zip(m.unwrap()).map(|(a, b)| a * b).collect();
            let mut got = g.to_vec();
            f.backward(&x, shape, 0, None, &mut got).unwrap();
            assert_eq!(got, want);
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
