//! # The format SDK
//!
//! Write a number format as a plain Rust type, export it with one macro, and
//! the `host` binary can load it, measure its Gaussian MSE, and rank it.
//!
//! A format implements [`Format`]: [`Format::compress`] turns a row-major
//! `f32` tensor into its compressed-then-decompressed values (and, when asked,
//! a straight-through gradient mask), and [`Format::bits`] says honestly how
//! many bits per element it stores, metadata included. For
//! quantization-aware training, [`Format::backward`] turns `dL/dy` into
//! `dL/dx`; its default multiplies by the mask `compress` writes, and a format
//! that quantizes in a rotated basis overrides it (see `Rotated` below and
//! [`hadamard::masked_backward`]). A [`Kind`] groups the
//! formats that differ only by parameters, declares those parameters with
//! [`params!`] (TOML in, typed struct with defaults out, unknown keys are
//! errors), and names presets. [`export_plugin!`] exports one or more kinds
//! from a `cdylib` through a stable ABI; every call is guarded so a panic
//! becomes an error message instead of taking the host down.
//!
//! Building blocks make most formats a few lines: [`grid`] (uniform mid-rise
//! and mid-tread grids, level lists), [`minifloat`] (ExMy with subnormals and
//! saturation), [`scale`] (absmax, RMS-optimal and MSE-searched scales),
//! [`rows`] (row and group iteration), [`round`] (round-to-nearest-even and
//! seeded stochastic rounding), [`hadamard`] (blocked Hadamard rotation) and
//! [`gauss`] (exact Gaussian integrals, Lloyd-Max grids). [`testing`] is the
//! conformance kit every plugin runs in a one-line test:
//! [`testing::check_kind`] checks every preset, the default parameters and,
//! for each integer parameter that declares its valid values
//! (`#[range(2..=8)]` in [`params!`], which also makes the reader refuse
//! values outside), the format built across that range;
//! [`testing::check_kind_with`] adds parameter sets of your choice
//! (`check_kind_with::<K>(&["bits = 6", "bits = 2, group = 32"])`), e.g.
//! combinations of parameters that the presets do not reach.
//!
//! ## A complete plugin
//!
//! `Cargo.toml` of the plugin crate:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! sdk = { path = "../../sdk" }
//! ```
//!
//! `src/lib.rs`: a sign-magnitude "INT-k with absmax scale per row" format,
//! and the same quantizer in a Hadamard-rotated basis (with its own
//! straight-through backward).
//!
//! ```
//! use sdk::{Bits, Family, Format, Grad, Kind, Preset, Result, Shape, Tensor, hadamard};
//!
//! sdk::params! {
//!     /// Parameters of the toy format.
//!     pub struct ToyParams {
//!         /// Bits per element (2..=8).
//!         #[range(2..=8)]
//!         bits: u32 = 4,
//!     }
//! }
//!
//! struct Toy {
//!     levels: f32,
//!     bits: u32,
//! }
//!
//! impl Toy {
//!     fn new(bits: u32) -> Result<Toy> {
//!         if !(2..=8).contains(&bits) {
//!             return Err(sdk::Error::param("bits", "must be 2..=8"));
//!         }
//!         Ok(Toy { levels: ((1u32 << (bits - 1)) - 1) as f32, bits })
//!     }
//! }
//!
//! impl Format for Toy {
//!     fn compress(&self, t: Tensor<'_>) -> Result<()> {
//!         let cols = t.shape.cols;
//!         for (x, y) in t.input.chunks(cols).zip(t.output.chunks_mut(cols)) {
//!             let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
//!             let step = if amax > 0.0 { amax / self.levels } else { 1.0 };
//!             for (a, b) in x.iter().zip(y.iter_mut()) {
//!                 *b = (a / step).round_ties_even() * step;
//!             }
//!         }
//!         Ok(())
//!     }
//!     fn bits(&self, shape: Shape) -> Bits {
//!         Bits::elements(self.bits as f64).per_block("scale (fp32)", 32.0, shape.cols)
//!     }
//!     fn family(&self) -> Family {
//!         Family::Scalar
//!     }
//! }
//!
//! /// `Toy` on rows rotated by the blocked Hadamard matrix `H` (rotated back
//! /// after). Its gradient is `H^T (mask(Hx) * (H dL/dy))` with the trust
//! /// mask of the rotated values, which an element-wise mask cannot express.
//! /// (`Toy` writes no mask: absmax never clips, so here the mask stays all
//! /// ones; a clipping quantizer closes some entries.)
//! struct Rotated(Toy);
//!
//! impl Format for Rotated {
//!     fn compress(&self, t: Tensor<'_>) -> Result<()> {
//!         let mut hx = t.input.to_vec();
//!         hadamard::rotate_rows(&mut hx, t.shape.cols, hadamard::BLOCK);
//!         let (shape, seed) = (t.shape, t.seed);
//!         self.0.compress(Tensor { input: &hx, output: &mut *t.output, mask: None, shape, seed })?;
//!         hadamard::unrotate_rows(t.output, shape.cols, hadamard::BLOCK);
//!         Ok(())
//!     }
//!     fn bits(&self, shape: Shape) -> Bits {
//!         self.0.bits(shape)
//!     }
//!     fn backward(&self, g: Grad<'_>) -> Result<()> {
//!         let mut hx = g.input.to_vec();
//!         hadamard::rotate_rows(&mut hx, g.shape.cols, hadamard::BLOCK);
//!         let (mut y, mut mask) = (vec![0.0; hx.len()], vec![1.0; hx.len()]);
//!         let t = Tensor { input: &hx, output: &mut y, mask: Some(&mut mask), shape: g.shape, seed: g.seed };
//!         self.0.compress(t)?;
//!         hadamard::masked_backward(g.grad, &mask, g.shape.cols, hadamard::BLOCK);
//!         Ok(())
//!     }
//! }
//!
//! struct ToyKind;
//!
//! impl Kind for ToyKind {
//!     type Params = ToyParams;
//!     const NAME: &'static str = "toy";
//!     const DOC: &'static str = "Symmetric INT-k, absmax scale per row.";
//!     const PRESETS: &'static [Preset] = &[Preset::new("toy4", "bits = 4", "toy INT4")];
//!     fn build(p: ToyParams) -> Result<Box<dyn Format>> {
//!         Ok(Box::new(Toy::new(p.bits)?))
//!     }
//! }
//!
//! struct RotatedKind;
//!
//! impl Kind for RotatedKind {
//!     type Params = ToyParams;
//!     const NAME: &'static str = "toy-rotated";
//!     const DOC: &'static str = "The toy INT-k on Hadamard-rotated rows (blocks of 128).";
//!     const PRESETS: &'static [Preset] = &[Preset::new("toy4-h", "bits = 4", "toy INT4, Hadamard")];
//!     fn build(p: ToyParams) -> Result<Box<dyn Format>> {
//!         Ok(Box::new(Rotated(Toy::new(p.bits)?)))
//!     }
//! }
//!
//! sdk::export_plugin!(name: "toy", kinds: [ToyKind, RotatedKind]);
//!
//! // The conformance kit, as the plugin's own test would call it (bits 2..=8
//! // are each built and checked, from the declared range):
//! sdk::testing::check_kind::<ToyKind>();
//! sdk::testing::check_kind_with::<RotatedKind>(&["bits = 3"]);
//! ```
#![deny(missing_docs)]

pub mod abi;
mod error;
mod format;
pub mod params;
pub mod plugin;

pub mod gauss;
pub mod grid;
pub mod hadamard;
pub mod minifloat;
pub mod round;
pub mod rows;
pub mod scale;
pub mod testing;

pub use error::{Error, Result};
pub use format::{Bits, BitsPart, Family, Format, Grad, Shape, Tensor, mask_backward};
pub use params::Params;
pub use plugin::{Kind, Preset};

/// The README's "write your first format" walkthrough, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Version of this SDK. Plugins built against a different interface are
/// refused by the host with a one-line "rebuild it" message.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
