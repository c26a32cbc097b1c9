//! The one interface between the trainer and number formats.
//!
//! The trainer knows nothing about plugins: the host wraps a format SPEC in a
//! [`Compressor`] and hands it over. Quantization-aware training applies the
//! weight compressor to every linear layer's weight matrix before each
//! forward pass (embeddings and the output head stay full precision) and the
//! activation compressor, when given, to the input of every linear layer.
//! Backward is straight-through: [`Compressor::backward`] turns the gradient
//! with respect to the compressed values into the gradient with respect to
//! the inputs; by default it multiplies by the mask the compressor wrote.

/// A compression applied in the forward pass.
pub trait Compressor: Send + Sync {
    /// Compresses `input` (row-major, `rows` x `cols`) into `output` (same
    /// length). `mask` arrives filled with 1.0; write 0.0 where the
    /// straight-through gradient must not pass (trust masks, sparsity masks).
    /// `seed` drives stochastic formats; the trainer derives it from the run
    /// seed, the step and the layer, so runs are reproducible.
    fn compress(
        &self,
        input: &[f32],
        output: &mut [f32],
        mask: &mut [f32],
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> Result<(), String>;

    /// Straight-through backward of [`compress`](Self::compress): `grad`
    /// arrives holding `dL/dy` for `y = compress(input)` (the same `rows`,
    /// `cols` and `seed`) and leaves holding `dL/dx`. `mask` is the mask that
    /// `compress` wrote for this input.
    ///
    /// Default: `grad *= mask`, element by element (the straight-through
    /// mask, exactly as plain masking). A format whose trust region is not
    /// element-wise (one that rotates before quantizing) overrides it.
    fn backward(
        &self,
        input: &[f32],
        mask: &[f32],
        grad: &mut [f32],
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> Result<(), String> {
        let _ = (input, rows, cols, seed);
        // Written here rather than through `kernels` so that this interface depends on nothing
        // else in the crate (`kernels` uses `Compressor`, not the other way round).
        use rayon::prelude::*;
        grad.par_chunks_mut(1 << 14).zip(mask.par_chunks(1 << 14)).for_each(|(g, m)| {
            for (a, &b) in g.iter_mut().zip(m) {
                *a *= b;
            }
        });
        Ok(())
    }

    /// The format as a built-in kind and its full parameter table, `(kind, TOML)`, for an
    /// accelerator with native kernels of that kind (which must then compute exactly
    /// [`compress`](Self::compress), and a backward that is the default mask product).
    /// Default `None`: the format runs through `compress` and `backward` only.
    fn native(&self) -> Option<(String, String)> {
        None
    }
}

/// The identity: output = input, mask all ones. Training with it must give
/// exactly the losses of plain training.
pub struct Identity;

impl Compressor for Identity {
    fn compress(
        &self,
        input: &[f32],
        output: &mut [f32],
        _: &mut [f32],
        _: usize,
        _: usize,
        _: u64,
    ) -> Result<(), String> {
        output.copy_from_slice(input);
        Ok(())
    }
}
