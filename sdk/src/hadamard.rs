//! Blocked, normalized fast Walsh-Hadamard transform, in place.
//!
//! The normalized Hadamard matrix `H / sqrt(n)` is orthonormal and symmetric,
//! so the transform preserves sums of squares (and hence the Gaussian MSE of
//! whatever is done in the rotated domain) and is its own inverse: apply
//! [`rotate`] again to rotate back.
//!
//! [`rotate`] transforms consecutive blocks of `block` values (a power of
//! two, [`BLOCK`] = 128 by default, as in QuEST). A tail shorter than a block
//! is split into decreasing powers of two (100 = 64 + 32 + 4), each rotated
//! on its own, so every length is handled and the result stays orthonormal.
//!
//! ```
//! let mut x = [1.0f32, 0.0, 0.0, 0.0];
//! sdk::hadamard::fwht(&mut x);
//! assert_eq!(x, [0.5; 4]);
//! sdk::hadamard::fwht(&mut x);
//! assert_eq!(x, [1.0, 0.0, 0.0, 0.0]);
//! ```

/// Default block length (QuEST rotates blocks of 128).
pub const BLOCK: usize = 128;

/// Normalized fast Walsh-Hadamard transform of `x` (length a power of two), in place.
///
/// # Panics
/// When `x.len()` is not a power of two (an empty slice is left alone).
pub fn fwht(x: &mut [f32]) {
    let n = x.len();
    if n <= 1 {
        return;
    }
    assert!(n.is_power_of_two(), "fwht: length {n} is not a power of two");
    let mut h = 1;
    if n >= 8 {
        // The first three levels on each group of 8, in registers.
        for c in x.chunks_exact_mut(8) {
            let a: [f32; 8] = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
            let b = [
                a[0] + a[1],
                a[0] - a[1],
                a[2] + a[3],
                a[2] - a[3],
                a[4] + a[5],
                a[4] - a[5],
                a[6] + a[7],
                a[6] - a[7],
            ];
            let d = [
                b[0] + b[2],
                b[1] + b[3],
                b[0] - b[2],
                b[1] - b[3],
                b[4] + b[6],
                b[5] + b[7],
                b[4] - b[6],
                b[5] - b[7],
            ];
            for k in 0..4 {
                c[k] = d[k] + d[k + 4];
                c[k + 4] = d[k] - d[k + 4];
            }
        }
        h = 8;
    }
    while h < n {
        for c in x.chunks_exact_mut(2 * h) {
            let (a, b) = c.split_at_mut(h);
            for (u, v) in a.iter_mut().zip(b.iter_mut()) {
                let (s, d) = (*u + *v, *u - *v);
                *u = s;
                *v = d;
            }
        }
        h *= 2;
    }
    let k = 1.0 / (n as f32).sqrt();
    for v in x {
        *v *= k;
    }
}

/// Rotates `x` in blocks of `block` values (a power of two); a shorter tail
/// is split into decreasing powers of two. Its own inverse.
///
/// # Panics
/// When `block` is not a power of two.
pub fn rotate(x: &mut [f32], block: usize) {
    assert!(block.is_power_of_two(), "rotate: block {block} is not a power of two");
    let mut rest = x;
    while !rest.is_empty() {
        let len = if rest.len() >= block { block } else { 1 << rest.len().ilog2() };
        let (head, tail) = rest.split_at_mut(len);
        fwht(head);
        rest = tail;
    }
}

/// Rotates each row of `cols` values of `x` separately (see [`rotate`]).
///
/// # Panics
/// When `block` is not a power of two.
pub fn rotate_rows(x: &mut [f32], cols: usize, block: usize) {
    if cols == 0 {
        return;
    }
    for row in x.chunks_mut(cols) {
        rotate(row, block);
    }
}

/// Rotates `x` back: applies `H^T = H^-1`, the transpose (and inverse) of
/// [`rotate`]. The normalized Hadamard matrix is symmetric and its own
/// inverse, so this is [`rotate`] itself; the name says which way a caller
/// means.
///
/// # Panics
/// When `block` is not a power of two.
pub fn unrotate(x: &mut [f32], block: usize) {
    rotate(x, block);
}

/// Rotates each row of `cols` values of `x` back (see [`unrotate`]).
///
/// # Panics
/// When `block` is not a power of two.
pub fn unrotate_rows(x: &mut [f32], cols: usize, block: usize) {
    rotate_rows(x, cols, block);
}

/// The straight-through backward of a format that rotates rows by `H`
/// (blocks of `block`, as [`rotate_rows`]) and quantizes in the rotated
/// basis: `grad <- H^T (mask * (H grad))`, row by row, where `mask` is the
/// trust mask of the rotated values `H x` (what the format's quantizer
/// writes when handed `H x`).
///
/// ```
/// // One block of 2: H = [[1, 1], [1, -1]] / sqrt(2).
/// let mut g = [1.0f32, 0.0];
/// sdk::hadamard::masked_backward(&mut g, &[1.0, 0.0], 2, 128);
/// // H g = [1, 1] / sqrt(2); masked: [1, 0] / sqrt(2); H^T of that: [0.5, 0.5].
/// assert!((g[0] - 0.5).abs() < 1e-7 && (g[1] - 0.5).abs() < 1e-7);
/// ```
///
/// # Panics
/// When `grad` and `mask` differ in length, or `block` is not a power of two.
pub fn masked_backward(grad: &mut [f32], mask: &[f32], cols: usize, block: usize) {
    assert_eq!(grad.len(), mask.len(), "masked_backward: gradient and mask lengths differ");
    rotate_rows(grad, cols, block);
    for (g, &m) in grad.iter_mut().zip(mask) {
        *g *= m;
    }
    unrotate_rows(grad, cols, block);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scalar reference: the normalized Sylvester Hadamard matrix times `x`.
    fn reference(x: &[f32]) -> Vec<f32> {
        let n = x.len();
        let k = 1.0 / (n as f64).sqrt();
        (0..n)
            .map(|i| {
                let s: f64 =
                    (0..n).map(|j| if (i & j).count_ones() % 2 == 0 { x[j] as f64 } else { -(x[j] as f64) }).sum();
                (s * k) as f32
            })
            .collect()
    }

    fn data(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 % 613) as f32 / 613.0 - 0.5) * 3.0).collect()
    }

    #[test]
    fn matches_matrix() {
        for n in [1usize, 2, 8, 128, 256] {
            let x = data(n);
            let mut y = x.clone();
            fwht(&mut y);
            let worst = y.iter().zip(reference(&x)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            println!("fwht n = {n}: max |fast - matrix| = {worst:e}");
            assert!(worst < 1e-5);
        }
    }

    #[test]
    fn orthonormal_involution() {
        for (n, block) in [(128usize, 128usize), (4096, 128), (300, 128), (100, 64), (7, 128)] {
            let x = data(n);
            let mut y = x.clone();
            rotate(&mut y, block);
            let e0: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
            let e1: f64 = y.iter().map(|&v| (v as f64).powi(2)).sum();
            assert!((e0 - e1).abs() < 1e-5 * e0, "n {n}: energy {e0} -> {e1}");
            assert!(y != x || n == 1);
            rotate(&mut y, block);
            let worst = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "n {n}: {worst}");
        }
    }

    /// The blocked matrix `rotate` applies to a row of `n` values, in f64.
    fn blocked_matrix(n: usize, block: usize) -> Vec<Vec<f64>> {
        let mut m = vec![vec![0.0; n]; n];
        let mut start = 0;
        while start < n {
            let rest = n - start;
            let len = if rest >= block { block } else { 1 << rest.ilog2() };
            let k = 1.0 / (len as f64).sqrt();
            for i in 0..len {
                for j in 0..len {
                    m[start + i][start + j] = if (i & j).count_ones().is_multiple_of(2) { k } else { -k };
                }
            }
            start += len;
        }
        m
    }

    fn matvec(m: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
        m.iter().map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
    }

    #[test]
    fn masked_backward_is_h_transpose_mask_h() {
        // Rows of 12 = blocks of 8 and 4 (block 128), and of 6 = 4 + 2 with block 4.
        for (cols, block) in [(12usize, 128usize), (6, 4)] {
            let rows = 2;
            let g = data(rows * cols);
            let mask: Vec<f32> = (0..rows * cols).map(|i| if i % 3 == 1 { 0.0 } else { 1.0 }).collect();
            let mut got = g.clone();
            masked_backward(&mut got, &mask, cols, block);
            let h = blocked_matrix(cols, block);
            for r in 0..rows {
                let gr: Vec<f64> = g[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).collect();
                let mut hg = matvec(&h, &gr);
                for (v, &m) in hg.iter_mut().zip(&mask[r * cols..(r + 1) * cols]) {
                    *v *= m as f64;
                }
                // H is symmetric: H^T = H.
                let want = matvec(&h, &hg);
                for (c, w) in want.iter().enumerate() {
                    let d = (got[r * cols + c] as f64 - w).abs();
                    // Two f32 transforms of at most 3 butterfly levels on values below 1.5.
                    assert!(d < 1e-5, "cols {cols} row {r} col {c}: {} vs {w}", got[r * cols + c]);
                }
            }
            // A closed mask entry in the rotated basis is not an element-wise mask.
            assert!(got.iter().zip(&g).zip(&mask).any(|((a, b), m)| (a - b * m).abs() > 1e-3));
        }
        // An all-ones mask gives the gradient back (up to rounding).
        let g = data(256);
        let mut got = g.clone();
        masked_backward(&mut got, &[1.0; 256], 256, 128);
        let worst = g.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
        let mut back = g.clone();
        rotate(&mut back, 128);
        unrotate(&mut back, 128);
        assert!(back.iter().zip(&g).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn rows_are_independent() {
        let x = data(2 * 256);
        let mut a = x.clone();
        rotate_rows(&mut a, 256, 128);
        let mut b = x.clone();
        rotate(&mut b[..256], 128);
        rotate(&mut b[256..], 128);
        assert_eq!(a, b);
        let mut c = x.clone();
        rotate_rows(&mut c, 200, 128);
        let mut d = x.clone();
        for r in d.chunks_mut(200) {
            rotate(r, 128);
        }
        assert_eq!(c, d);
    }
}
