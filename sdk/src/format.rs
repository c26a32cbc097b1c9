//! The `Format` trait every plugin implements, and what it describes itself with.

use serde::{Deserialize, Serialize};

use crate::Result;

/// Shape of a row-major 2-D tensor: `rows` rows of `cols` contiguous values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    /// Number of rows.
    pub rows: usize,
    /// Number of values per row (the contiguous, last dimension).
    pub cols: usize,
}

impl Shape {
    /// A `rows x cols` shape.
    pub const fn new(rows: usize, cols: usize) -> Self {
        Shape { rows, cols }
    }
    /// Number of elements, `rows * cols`.
    pub const fn len(&self) -> usize {
        self.rows * self.cols
    }
    /// True when the tensor has no element.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

/// The kind of representation: capacity curves rho(GMSE) are shared per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Scalar quantizers: INT, minifloats, block formats, non-uniform grids.
    Scalar,
    /// Sparsifiers: unstructured and N:M.
    Sparse,
    /// Vector quantizers (several values snapped jointly to a codebook).
    Vector,
    /// Anything else; the host uses its fallback capacity curve and says so.
    Other,
}

impl Family {
    /// Lower-case name as used in law files and output (`scalar`, `sparse`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Family::Scalar => "scalar",
            Family::Sparse => "sparse",
            Family::Vector => "vector",
            Family::Other => "other",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a bit budget: what is stored and how many bits it costs per element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BitsPart {
    /// What is stored, e.g. `"elements"`, `"scale (bf16 per 32)"`. Convention:
    /// the part that stores the element values themselves starts with
    /// `elements` or names `values` (`"kept values (BF16)"`); everything else is
    /// metadata. A composition `A+B` keeps `A`'s metadata and replaces its values
    /// part by `B`'s bits. A format that stores nothing (a noise predictor)
    /// names its one part `equivalent bits ...`; it is kept off the Pareto front.
    pub what: String,
    /// Its cost in bits per tensor element.
    pub bits: f64,
}

/// Honest bits per element: every stored piece amortized over the tensor.
///
/// ```
/// # use sdk::Bits;
/// // INT4 with one 16-bit scale per group of 32 values:
/// let b = Bits::elements(4.0).per_block("scale (bf16)", 16.0, 32);
/// assert_eq!(b.total(), 4.5);
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Bits {
    /// The parts; their sum is the total.
    pub parts: Vec<BitsPart>,
}

impl Bits {
    /// `bits` per element for the element codes themselves.
    pub fn elements(bits: f64) -> Self {
        Bits::default().plus("elements", bits)
    }
    /// Adds a part that costs `bits` per element.
    pub fn plus(mut self, what: impl Into<String>, bits: f64) -> Self {
        self.parts.push(BitsPart { what: what.into(), bits });
        self
    }
    /// Adds `bits` stored once per block of `block` elements.
    pub fn per_block(self, what: impl Into<String>, bits: f64, block: usize) -> Self {
        let what = format!("{} per {block}", what.into());
        self.plus(what, bits / block.max(1) as f64)
    }
    /// Adds `bits` stored once for the whole tensor of `shape`.
    pub fn per_tensor(self, what: impl Into<String>, bits: f64, shape: crate::Shape) -> Self {
        let what = format!("{} per tensor", what.into());
        self.plus(what, bits / shape.len().max(1) as f64)
    }
    /// Total bits per element.
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|p| p.bits).sum()
    }
}

/// One call of [`Format::compress`]: the input, where to write, and the seed.
pub struct Tensor<'a> {
    /// Input values, row-major, `shape.len()` of them.
    pub input: &'a [f32],
    /// Where the compressed-then-decompressed values go; same length as `input`.
    pub output: &'a mut [f32],
    /// Straight-through gradient mask, when the caller wants one. It arrives
    /// filled with `1.0` (gradient passes everywhere); a format writes `0.0`
    /// where the gradient must not pass.
    pub mask: Option<&'a mut [f32]>,
    /// Shape of `input`.
    pub shape: Shape,
    /// Seed for stochastic formats; deterministic formats ignore it.
    pub seed: u64,
}

/// One call of [`Format::backward`]: the input, the gradient to transform in
/// place, and (when the caller kept it) the mask the forward pass wrote.
pub struct Grad<'a> {
    /// The input `x` that [`Format::compress`] was called with (row-major,
    /// `shape.len()` values).
    pub input: &'a [f32],
    /// Arrives holding `dL/dy` for `y = compress(x)`; the format overwrites
    /// it with `dL/dx`. Same length as `input`.
    pub grad: &'a mut [f32],
    /// The mask [`Format::compress`] wrote for this same input, shape and
    /// seed, when the caller kept it: an optimization only (the default
    /// backward then need not compress again). A format with its own
    /// backward may ignore it.
    pub mask: Option<&'a [f32]>,
    /// Shape of `input`.
    pub shape: Shape,
    /// The seed `compress` was called with.
    pub seed: u64,
}

/// The default straight-through backward, `dL/dx = mask(x) * dL/dy` element
/// by element: with `g.mask` when given, else with the mask `f.compress`
/// writes for `g.input` and `g.seed` (computed here, through `compress`).
///
/// A format that overrides [`Format::backward`] only for some of its
/// parameters calls this for the others.
///
/// ```
/// # use sdk::*;
/// # struct Clip;
/// # impl Format for Clip {
/// #     fn compress(&self, t: Tensor<'_>) -> Result<()> {
/// #         for (y, x) in t.output.iter_mut().zip(t.input) { *y = x.clamp(-1.0, 1.0); }
/// #         if let Some(m) = t.mask { sdk::grid::clip_mask(t.input, m, 1.0); }
/// #         Ok(())
/// #     }
/// #     fn bits(&self, _: Shape) -> Bits { Bits::elements(32.0) }
/// # }
/// let x = [0.5f32, -2.0, 3.0, 0.0];
/// let mut g = [1.0f32, 2.0, 3.0, 4.0];
/// let shape = Shape::new(1, 4);
/// sdk::mask_backward(&Clip, Grad { input: &x, grad: &mut g, mask: None, shape, seed: 0 })?;
/// assert_eq!(g, [1.0, 0.0, 0.0, 4.0]);
/// # Ok::<(), sdk::Error>(())
/// ```
pub fn mask_backward<F: Format + ?Sized>(f: &F, g: Grad<'_>) -> Result<()> {
    let n = g.shape.len();
    if g.input.len() != n || g.grad.len() != n || g.mask.is_some_and(|m| m.len() != n) {
        return Err(crate::Error::input(format!(
            "backward of a {} tensor needs {n} values, got input {}, gradient {} and mask {}",
            g.shape,
            g.input.len(),
            g.grad.len(),
            g.mask.map_or(n, <[f32]>::len)
        )));
    }
    let computed;
    let mask = match g.mask {
        Some(m) => m,
        None => {
            let mut output = vec![0.0; n];
            let mut mask = vec![1.0; n];
            f.compress(Tensor {
                input: g.input,
                output: &mut output,
                mask: Some(&mut mask),
                shape: g.shape,
                seed: g.seed,
            })?;
            computed = mask;
            &computed
        }
    };
    for (d, &m) in g.grad.iter_mut().zip(mask) {
        *d *= m;
    }
    Ok(())
}

/// A number format: turns a tensor into its compressed-then-decompressed values.
///
/// Two methods are required. The rest have defaults that are never wrong:
/// a format that does not say its family is `Other`, a format that writes no
/// mask lets every gradient through, and the backward of quantization-aware
/// training multiplies the gradient by that mask.
pub trait Format: Send + Sync {
    /// Writes the compressed-then-decompressed values of `t.input` into
    /// `t.output`, and the gradient mask into `t.mask` when asked for.
    fn compress(&self, t: Tensor<'_>) -> Result<()>;

    /// Bits per element for a tensor of `shape`, every piece of metadata included.
    fn bits(&self, shape: Shape) -> Bits;

    /// The family whose capacity curve applies. Default: [`Family::Other`].
    fn family(&self) -> Family {
        Family::Other
    }

    /// Natural block length (values sharing one scale or one pattern), if any.
    /// Default: `None` (per row or per tensor).
    fn block_len(&self) -> Option<usize> {
        None
    }

    /// True when the output depends on the seed. Default: `false`.
    fn stochastic(&self) -> bool {
        false
    }

    /// A display name that says more than the spec, e.g. `"INT4 absmax g32"`.
    /// Default: `None` (the host shows the preset name or the spec).
    fn label(&self) -> Option<String> {
        None
    }

    /// The straight-through backward of quantization-aware training:
    /// `g.grad` arrives holding `dL/dy` for `y = compress(x)` (`x` =
    /// `g.input`, compressed with `g.seed`) and leaves holding `dL/dx`.
    ///
    /// Default: [`mask_backward`], `dL/dx = mask(x) * dL/dy` with the mask
    /// [`compress`](Format::compress) writes; right for every format whose
    /// trust region is element-wise in the basis of `x`. A format that
    /// transforms its input before quantizing (a rotation, see
    /// [`crate::hadamard::masked_backward`]) overrides it to apply the mask
    /// in the transformed basis, `dL/dx = T^T (mask(Tx) * (T dL/dy))`. The
    /// result must be linear in `dL/dy`, depend only on `x`, the shape and
    /// the seed, and not on whether `g.mask` was given.
    fn backward(&self, g: Grad<'_>) -> Result<()> {
        mask_backward(self, g)
    }
}
