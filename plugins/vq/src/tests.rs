use super::*;
use codebook::SplitMix;
use sdk::testing::{self, build, estimate_on, gaussian, gaussian_tensors, preset, run};

/// `(preset, dim, bits)` of every preset.
const PRESETS: [(&str, usize, u32); 5] =
    [("vq2-d2", 2, 2), ("vq3-d2", 2, 3), ("vq4-d2", 2, 4), ("vq2-d4", 4, 2), ("vq1-d8", 8, 1)];

#[test]
fn conformance() {
    testing::check_kind::<VqKind>();
}

#[test]
fn conformance_of_options() {
    for params in ["dim = 4, bits = 2, hadamard = false", "dim = 8, bits = 1, hadamard = false", "dim = 2, bits = 1"] {
        let f = build::<VqKind>(params).unwrap();
        testing::check_format(params, &*f);
    }
}

#[test]
fn bad_parameters() {
    let e = build::<VqKind>("dim = 3").err().unwrap().to_string();
    assert!(e.contains("`dim`"), "{e}");
    assert!(build::<VqKind>("bits = 0").err().unwrap().to_string().contains("`bits`"));
    // dim 2 x 7 bits = 2^14 codewords; dim 8 x 2 bits = 2^16.
    for p in ["dim = 2, bits = 7", "dim = 8, bits = 2", "dim = 4, bits = 4000000000"] {
        let e = build::<VqKind>(p).err().unwrap().to_string();
        assert!(e.contains("`bits`") && e.contains("1024"), "{p}: {e}");
    }
    assert!(build::<VqKind>("dims = 2").err().unwrap().to_string().contains("`dims`"));
}

fn cached(dim: usize, bits: u32) -> &'static Codebook {
    codebook::codebook(dim, bits)
}

/// Plain reference of the nearest-codeword search: one codeword at a time,
/// the same `f32` arithmetic `||c||² + Σ_d c_d (-2 x_d)` and the first minimum.
fn nearest_ref(cb: &Codebook, x: &[f32]) -> usize {
    let mut best = (f32::INFINITY, 0);
    for k in 0..cb.size {
        let c = cb.word(k);
        let mut d: f32 = c.iter().map(|v| v * v).sum();
        for (cv, xv) in c.iter().zip(x) {
            d += cv * (-2.0 * xv);
        }
        if d < best.0 {
            best = (d, k);
        }
    }
    best.1
}

fn nearest_fast(cb: &Codebook, x: &[f32]) -> usize {
    match cb.dim {
        2 => cb.nearest::<2>(x.try_into().unwrap()),
        4 => cb.nearest::<4>(x.try_into().unwrap()),
        _ => cb.nearest::<8>(x.try_into().unwrap()),
    }
}

/// The search of the AVX2 build (the baseline one where the CPU lacks AVX2).
fn nearest_avx2(cb: &Codebook, x: &[f32]) -> usize {
    match cb.dim {
        2 => cb.nearest_with::<2, true>(x.try_into().unwrap()),
        4 => cb.nearest_with::<4, true>(x.try_into().unwrap()),
        _ => cb.nearest_with::<8, true>(x.try_into().unwrap()),
    }
}

fn dist2(x: &[f32], c: &[f32]) -> f64 {
    x.iter().zip(c).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum()
}

#[test]
fn search_matches_reference() {
    for (name, dim, bits) in PRESETS.into_iter().chain([("dim 2, 1 bit (K = 4, padded)", 2, 1)]) {
        let cb = cached(dim, bits);
        assert_eq!(cb.uses_grid(), dim == 2 && cb.size >= 16, "{name}");
        let mut x = gaussian(32768 * dim, 77);
        // Some vectors far outside the codebook too.
        x.iter_mut().skip(1).step_by(7).for_each(|v| *v *= 3.0);
        // Ties: the origin, the codewords, and midpoints of codeword pairs;
        // and a NaN vector (no distance compares below: codeword 0).
        x.extend(std::iter::repeat_n(0.0, dim));
        x.extend(std::iter::repeat_n(f32::NAN, dim));
        x.extend_from_slice(&cb.words);
        for k in 0..cb.size {
            let (a, b) = (cb.word(k), cb.word((k * 7 + 3) % cb.size));
            x.extend(a.iter().zip(b).map(|(p, q)| 0.5 * (p + q)));
        }
        let mut worst_gap = 0f64;
        for v in x.chunks_exact(dim) {
            let (fast, slow) = (nearest_fast(cb, v), nearest_ref(cb, v));
            assert_eq!(fast, slow, "{name}: x = {v:?}");
            assert_eq!(nearest_avx2(cb, v), slow, "{name} (AVX2): x = {v:?}");
            // And it is the true nearest codeword up to f32 rounding.
            let best = (0..cb.size).map(|k| dist2(v, cb.word(k))).fold(f64::INFINITY, f64::min);
            worst_gap = worst_gap.max(dist2(v, cb.word(fast)) - best);
        }
        println!(
            "{name}: fast search (grid: {}) = reference on 32768 vectors; worst excess squared distance {worst_gap:.1e}",
            cb.uses_grid()
        );
        assert!(worst_gap < 1e-5, "{name}: {worst_gap}");
    }
}

#[test]
fn codebooks_are_deterministic() {
    for (dim, bits) in [(2, 2), (2, 3)] {
        let (a, b) = (codebook::build(dim, bits), codebook::build(dim, bits));
        let same = |u: &Codebook, v: &Codebook| {
            u.words.len() == v.words.len() && u.words.iter().zip(&v.words).all(|(p, q)| p.to_bits() == q.to_bits())
        };
        assert!(same(&a, &b), "dim {dim} bits {bits}: two builds differ");
        assert!(same(&a, cached(dim, bits)), "dim {dim} bits {bits}: cached build differs");
        assert_eq!(a.train_mse.to_bits(), b.train_mse.to_bits());
        assert!(a.words.iter().all(|&w| codebook::bf16(w) == w), "codewords must be BF16 values");
    }
}

/// The shipped codebooks are the trained ones, bit for bit (codewords and
/// training MSE), one for each preset. With `VQ_WRITE_SHIPPED=1` the test
/// writes `src/shipped.rs` from training instead.
#[test]
fn shipped_codebooks_are_the_trained_ones() {
    let trained: Vec<Codebook> = PRESETS.iter().map(|&(_, dim, bits)| codebook::build(dim, bits)).collect();
    if std::env::var_os("VQ_WRITE_SHIPPED").is_some() {
        let mut s = String::from(
            "//! The presets' codebooks, as `codebook::build` trains them.\n\
             //! Written by `VQ_WRITE_SHIPPED=1 cargo test --release -p plugin-vq shipped`; do not edit.\n\n\
             /// `(dim, bits, training MSE as f64 bits, codewords as the upper 16 bits of their f32 values)`.\n\
             pub(crate) const CODEBOOKS: &[(usize, u32, u64, &[u16])] = &[\n",
        );
        for cb in &trained {
            s += &format!("    ({}, {}, {:#018x}, &[", cb.dim, cb.bits, cb.train_mse.to_bits());
            for (i, w) in cb.words.iter().enumerate() {
                assert_eq!(w.to_bits() & 0xffff, 0, "codewords must be BF16 values");
                if i % 12 == 0 {
                    s += "\n        ";
                } else {
                    s += " ";
                }
                s += &format!("{:#06x},", w.to_bits() >> 16);
            }
            s += "\n    ]),\n";
        }
        s += "];\n";
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/src/shipped.rs"), s).unwrap();
    }
    for (&(name, dim, bits), t) in PRESETS.iter().zip(&trained) {
        let s = codebook::shipped(dim, bits).unwrap_or_else(|| panic!("{name}: no shipped codebook"));
        let bits_of = |c: &Codebook| c.words.iter().map(|w| w.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits_of(&s),
            bits_of(t),
            "{name}: shipped codewords differ from training; rerun with VQ_WRITE_SHIPPED=1"
        );
        assert_eq!(s.train_mse.to_bits(), t.train_mse.to_bits(), "{name}: training MSE");
        assert_eq!(&s, t, "{name}: search layout");
        assert_eq!(&s, cached(dim, bits), "{name}: cache");
    }
    assert!(codebook::shipped(2, 1).is_none(), "only the presets are shipped");
}

/// Codebook GMSE per element on fresh `N(0, I_p)` samples (no RMS scaling):
/// mean and standard error of the mean over vectors.
fn codebook_gmse(cb: &Codebook, values: usize, seed: u64) -> (f64, f64) {
    let mut x = vec![0f32; values];
    SplitMix::new(seed).fill_gaussian(&mut x);
    let errs: Vec<f64> = x.chunks_exact(cb.dim).map(|v| dist2(v, cb.word(nearest_fast(cb, v)))).collect();
    let e = testing::Estimate::from_values(&errs);
    (e.mean / cb.dim as f64, e.stderr / cb.dim as f64)
}

/// Vector quantization's space-filling (and shape) gain: every codebook beats
/// the scalar Lloyd-Max quantizer at the same bits per element, and dim 4
/// beats dim 2 at 2 bits. Margins: 3 standard errors of the Monte Carlo
/// estimate (2^20 fresh values, independent of the training samples).
#[test]
fn codebooks_beat_lloyd_max() {
    let mut at2 = Vec::new();
    for (name, dim, bits) in PRESETS {
        let cb = cached(dim, bits);
        let (g, se) = codebook_gmse(cb, 1 << 20, 0xfeed + dim as u64);
        let lm = sdk::gauss::lloyd_max_gmse(bits);
        println!(
            "{name}: codebook GMSE {g:.5e} ± {se:.1e} (training {:.5e}), Lloyd-Max {bits}-bit {lm:.5e} ({:+.2} %), R = {:.4}",
            cb.train_mse,
            100.0 * (g / lm - 1.0),
            cb.radius
        );
        assert!(g + 3.0 * se < lm, "{name}: {g} ± {se} does not beat Lloyd-Max {lm}");
        if bits == 2 {
            at2.push((dim, g, se));
        }
    }
    let (d2, d4) = (at2[0], at2[1]);
    assert_eq!((d2.0, d4.0), (2, 4));
    assert!(d4.1 + 3.0 * (d2.2.hypot(d4.2)) < d2.1, "2 bits: dim 4 {d4:?} must beat dim 2 {d2:?}");
}

/// The full format on `N(0, 1)` tensors: Hadamard rotation keeps i.i.d.
/// Gaussian rows i.i.d. Gaussian and the RMS of a 4096-wide row is within
/// about 1 % of 1, so the GMSE is within 1 % of the codebook's own GMSE.
/// Monte Carlo: 2 tensors of 64 x 4096 (standard error about 0.2 %) against
/// 2^21 values for the codebook (about 0.15 %), far inside the 1 %.
#[test]
fn format_gmse_matches_codebook() {
    let shape = Shape::new(64, 4096);
    let tensors = gaussian_tensors(shape, 200..202);
    for (name, dim, bits) in PRESETS {
        let (g, se) = codebook_gmse(cached(dim, bits), 1 << 21, 0xbeef + dim as u64);
        for params in [format!("dim = {dim}, bits = {bits}"), format!("dim = {dim}, bits = {bits}, hadamard = false")] {
            let e = estimate_on(&*build::<VqKind>(&params).unwrap(), shape, &tensors);
            let rel = e.mean / g - 1.0;
            println!(
                "{name} ({params}): format GMSE {:.5e} ± {:.1e}, codebook {g:.5e} ± {se:.1e}: {:+.3} %",
                e.mean,
                e.stderr,
                100.0 * rel
            );
            assert!(rel.abs() < 0.01, "{name} ({params}): {} vs {g}", e.mean);
        }
    }
}

/// The whole format against a plain per-row reference (no rotation), with a
/// row length that leaves a short last vector.
#[test]
fn format_matches_reference() {
    for (dim, bits, cols) in [(2usize, 3u32, 257usize), (4, 2, 258), (8, 1, 261)] {
        let shape = Shape::new(6, cols);
        let x = gaussian(shape.len(), 9);
        let f = build::<VqKind>(&format!("dim = {dim}, bits = {bits}, hadamard = false")).unwrap();
        let (y, _) = run(&*f, &x, shape, 0, false).unwrap();
        let cb = cached(dim, bits);
        for (r, row) in x.chunks(cols).enumerate() {
            let rms = (row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cols as f64).sqrt() as f32;
            let s = codebook::bf16(rms);
            let xs: Vec<f32> = row.iter().map(|v| v * (1.0 / s)).collect();
            for (j, v) in xs.chunks(dim).enumerate() {
                let k = if v.len() == dim { nearest_ref(cb, v) } else { cb.nearest_partial(v) };
                for (d, &c) in cb.word(k)[..v.len()].iter().enumerate() {
                    assert_eq!(y[r * cols + j * dim + d], c * s, "dim {dim}: row {r} vector {j}");
                }
            }
        }
    }
}

/// The AVX2 build of `compress` gives the baseline build's output bit for
/// bit: every preset, with and without rotation, on rows with a short last
/// vector, large and tiny scales and an all-zero row.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_build_matches_baseline() {
    let shape = Shape::new(5, 389);
    let mut x = gaussian(shape.len(), 17);
    x[..shape.cols].iter_mut().for_each(|v| *v *= 1e30);
    x[shape.cols..2 * shape.cols].iter_mut().for_each(|v| *v *= 1e-30);
    x[2 * shape.cols..3 * shape.cols].fill(0.0);
    for (name, dim, bits) in PRESETS {
        for h in [true, false] {
            let f = build::<VqKind>(&format!("dim = {dim}, bits = {bits}, hadamard = {h}")).unwrap();
            let (fast, _) = run(&*f, &x, shape, 0, false).unwrap();
            crate::FORCE_BASELINE.set(true);
            let (base, _) = run(&*f, &x, shape, 0, false).unwrap();
            crate::FORCE_BASELINE.set(false);
            let bits_of = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits_of(&fast), bits_of(&base), "{name}, hadamard = {h}");
        }
    }
}

/// Trust mask: blocked exactly for the vectors outside the ball of radius R
/// (in units of the row's scale); for 2-d Gaussian vectors the blocked
/// fraction is P(chi²_2 > R²) = exp(-R²/2).
#[test]
fn trust_mask() {
    let shape = Shape::new(32, 1024);
    let x = gaussian(shape.len(), 5);
    let cb = cached(2, 2);
    let f = build::<VqKind>("dim = 2, bits = 2, hadamard = false").unwrap();
    let (_, m) = run(&*f, &x, shape, 0, true).unwrap();
    let m = m.unwrap();
    let r2 = cb.radius * cb.radius;
    let mut blocked = 0usize;
    for (row, mr) in x.chunks(1024).zip(m.chunks(1024)) {
        let inv = 1.0 / codebook::bf16(sdk::scale::rms(row));
        for (v, mv) in row.chunks(2).zip(mr.chunks(2)) {
            let n2: f32 = v.iter().map(|&a| (a * inv) * (a * inv)).sum();
            let want = if n2 > r2 { 0.0 } else { 1.0 };
            assert_eq!(mv, [want, want]);
            blocked += (want == 0.0) as usize;
        }
    }
    let frac = blocked as f64 / (shape.len() / 2) as f64;
    let expected = (-(r2 as f64) / 2.0).exp();
    println!(
        "vq2-d2 trust mask (R = {:.4}) blocks {:.2} % of vectors, exp(-R²/2) = {:.2} %",
        cb.radius,
        100.0 * frac,
        100.0 * expected
    );
    // 16384 vectors: standard error about 0.25 %.
    assert!((frac - expected).abs() < 0.01, "{frac} vs {expected}");
    // With the rotation the mask stays open.
    let (_, m) = run(&*preset::<VqKind>("vq2-d2"), &x, shape, 0, true).unwrap();
    assert!(m.unwrap().iter().all(|&v| v == 1.0));
}

#[test]
fn bits_accounting() {
    let f = preset::<VqKind>("vq2-d2");
    let b = f.bits(Shape::new(16, 4096));
    assert_eq!(b.total(), 2.0 + 16.0 / 4096.0 + (16 * 2 * 16) as f64 / (16.0 * 4096.0));
    assert_eq!(f.block_len(), Some(2));
    assert_eq!(f.family(), Family::Vector);
    let f = preset::<VqKind>("vq2-d4");
    let b = f.bits(Shape::new(1, 4096));
    assert_eq!(b.total(), 2.0 + 16.0 / 4096.0 + (256 * 4 * 16) as f64 / 4096.0);
    // 10 columns in vectors of 4: the short last vector stores a full 8-bit index.
    let b = f.bits(Shape::new(2, 10));
    assert!((b.total() - (2.0 + 4.0 / 10.0 + 16.0 / 10.0 + (256 * 4 * 16) as f64 / 20.0)).abs() < 1e-12);
    assert_eq!(f.label().unwrap(), "VQ dim 4 2 bit/elem (K = 256), RMS scale per row + Hadamard");
    for b in [-1.5f32, 0.1, 3.0e-3, 1234.5678] {
        let r = codebook::bf16(b);
        assert_eq!(r.to_bits() & 0xffff, 0);
        assert!(((r - b) / b).abs() <= 1.0 / 256.0);
    }
}

/// The normalized Sylvester Hadamard matrix of order 8 in f64 (a row of 8
/// values is one block of the format's rotation); symmetric, so also its
/// own transpose.
fn hadamard_8() -> Vec<Vec<f64>> {
    let k = 1.0 / 8f64.sqrt();
    (0..8)
        .map(|i| (0..8).map(|j: usize| if (i & j).count_ones().is_multiple_of(2) { k } else { -k }).collect())
        .collect()
}

fn matvec(m: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    m.iter().map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

/// The ball test of DESIGN.md 4 on one row, in f64: 0 for both entries of a
/// pair with `||v / s||² > R²` (`s` the row's BF16 RMS), else 1. Also returns
/// the smallest relative distance of any `||v / s||²` to `R²`.
fn ball_mask(row: &[f64], radius: f32) -> (Vec<f64>, f64) {
    let rms = (row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64).sqrt();
    let s = codebook::bf16(rms as f32) as f64;
    let r2 = (radius as f64).powi(2);
    let mut margin = f64::INFINITY;
    let mut m = Vec::new();
    for v in row.chunks(2) {
        let n2: f64 = v.iter().map(|a| (a / s).powi(2)).sum();
        margin = margin.min((n2 - r2).abs() / r2);
        let keep = (n2 <= r2) as u8 as f64;
        m.extend([keep, keep]);
    }
    (m, margin)
}

/// Backward of the `vq2-d2` preset (2-d vectors, Hadamard) against `H^T (m *
/// (H g))` built by hand: explicit matrix, ball mask of the rotated vectors.
#[test]
fn hadamard_backward_applies_the_ball_in_the_rotated_basis() {
    let cols = 8;
    let h = hadamard_8();
    let radius = cached(2, 2).radius;
    // Row 0 is H r with the pair (3, 2.5) far outside the ball in the rotated
    // basis; row 1 has that pair in the original basis, which the rotation
    // spreads out.
    let r0 = [3.0, 2.5, 0.3, -0.4, 0.2, 0.5, -0.3, 0.1];
    let row0 = matvec(&h, &r0);
    let row1 = [0.3, -0.4, 3.0, 2.5, 0.2, 0.5, -0.3, 0.1];
    let x: Vec<f32> = row0.iter().chain(&row1).map(|&v| v as f32).collect();
    let g = gaussian(2 * cols, 4);
    assert!(g.iter().all(|v| v.abs() < 2.5), "the tolerance below assumes |g| < 2.5");
    let shape = Shape::new(2, cols);

    let (mut want, mut rotated_mask, mut original_mask) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..2 {
        let xr: Vec<f64> = x[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).collect();
        let gr: Vec<f64> = g[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).collect();
        let (m, margin) = ball_mask(&matvec(&h, &xr), radius);
        let (mo, margin_o) = ball_mask(&xr, radius);
        // Every squared norm is more than 2 % away from R², more than BF16
        // rounding of the scale (0.4 %, doubled by the square) and f32
        // arithmetic can move it: the format decides every vector the same way.
        assert!(margin > 0.02 && margin_o > 0.02, "row {r}: margins {margin} {margin_o}");
        let masked: Vec<f64> = matvec(&h, &gr).iter().zip(&m).map(|(a, b)| a * b).collect();
        want.extend(matvec(&h, &masked)); // H^T = H
        rotated_mask.extend(m);
        original_mask.extend(mo.iter().map(|&v| v as f32));
    }
    let closed = |m: &[f64]| (0..m.len()).filter(|&i| m[i] == 0.0).collect::<Vec<_>>();
    assert_eq!(closed(&rotated_mask), [0, 1], "R = {radius}");
    assert_eq!(closed(&original_mask.iter().map(|&v| v as f64).collect::<Vec<_>>()), [cols + 2, cols + 3]);

    let f = preset::<VqKind>("vq2-d2");
    // Tolerance: two f32 fast transforms (3 butterfly levels and the 1/sqrt(8)
    // scale) on gradients below 2.5: within (2 * 4) * 2^-24 * 20 = 1e-5.
    let tol = 1e-5;
    let (_, fwd_mask) = run(&*f, &x, shape, 0, true).unwrap();
    for mask in [None, fwd_mask.as_deref()] {
        let got = testing::backward(&*f, &x, &g, shape, 0, mask).unwrap();
        let worst = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        let open = got.iter().zip(&g).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let elementwise =
            got.iter().zip(&g).zip(&original_mask).map(|((a, b), m)| (a - b * m).abs()).fold(0f32, f32::max);
        println!(
            "vq2-d2 backward: max |format - H^T(m * Hg)| = {worst:e}; differs from the open mask by {open:.3}, \
             from the original-basis mask by {elementwise:.3}"
        );
        assert!(worst < tol, "{worst}");
        assert!(open > 0.1 && elementwise > 0.1, "{open} {elementwise}");
    }
    assert!(fwd_mask.unwrap().iter().all(|&m| m == 1.0));
}

/// Without rotation the backward is the default: the element-wise ball mask
/// times the gradient, bit for bit.
#[test]
fn backward_without_rotation_is_mask_times_gradient() {
    let shape = Shape::new(8, 256);
    let x = gaussian(shape.len(), 21);
    let g = gaussian(shape.len(), 22);
    let f = build::<VqKind>("dim = 2, bits = 2, hadamard = false").unwrap();
    let (_, m) = run(&*f, &x, shape, 0, true).unwrap();
    let m = m.unwrap();
    assert!(m.contains(&0.0));
    let want: Vec<f32> = g.iter().zip(&m).map(|(a, b)| a * b).collect();
    for given in [None, Some(&m[..])] {
        let got = testing::backward(&*f, &x, &g, shape, 0, given).unwrap();
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
