//! # The format SDK
//!
//! Write a number format as a plain Rust type, export it with one macro, and
//! the `host` binary can load it, measure its Gaussian MSE, and rank it.
//!
//! A format implements [`Format`]: [`Format::compress`] turns a row-major
//! `f32` tensor into its compressed-then-decompressed values (and, when asked,
//! a straight-through gradient mask), and [`Format::bits`] says honestly how
//! many bits per element it stores, metadata included. A [`Kind`] groups the
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
//! conformance kit every plugin runs in a one-line test.
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
//! `src/lib.rs`: a sign-magnitude "INT-k with absmax scale per row" format.
//!
//! ```
//! use sdk::{Bits, Family, Format, Kind, Preset, Result, Shape, Tensor};
//!
//! sdk::params! {
//!     /// Parameters of the toy format.
//!     pub struct ToyParams {
//!         /// Bits per element (2..=8).
//!         bits: u32 = 4,
//!     }
//! }
//!
//! struct Toy {
//!     levels: f32,
//!     bits: u32,
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
//! struct ToyKind;
//!
//! impl Kind for ToyKind {
//!     type Params = ToyParams;
//!     const NAME: &'static str = "toy";
//!     const DOC: &'static str = "Symmetric INT-k, absmax scale per row.";
//!     const PRESETS: &'static [Preset] = &[Preset::new("toy4", "bits = 4", "toy INT4")];
//!     fn build(p: ToyParams) -> Result<Box<dyn Format>> {
//!         if !(2..=8).contains(&p.bits) {
//!             return Err(sdk::Error::param("bits", "must be 2..=8"));
//!         }
//!         let levels = ((1u32 << (p.bits - 1)) - 1) as f32;
//!         Ok(Box::new(Toy { levels, bits: p.bits }))
//!     }
//! }
//!
//! sdk::export_plugin!(name: "toy", kinds: [ToyKind]);
//!
//! // The conformance kit, as the plugin's own test would call it:
//! sdk::testing::check_kind::<ToyKind>();
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
