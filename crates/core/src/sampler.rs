//! Seeded i.i.d. N(0, 1) tensors: tensor `t` of seed `s` depends only on (s, t).
//!
//! Samples come from `rand_distr::StandardNormal` (a ziggurat) driven by
//! Xoshiro256++ seeded from (s, t). A hand-written 32-bit ziggurat with eight
//! interleaved streams was tried and measured no faster on this machine
//! (`host bench` prints the sampler's own throughput), so the library stays.

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// SplitMix64 finalizer: a bijective 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stream seed of tensor `index` under run seed `seed`.
pub fn tensor_seed(seed: u64, index: u64) -> u64 {
    mix64(mix64(seed) ^ mix64(index.wrapping_add(0xD1B5_4A32_D192_ED03)))
}

/// Fills `buf` with the samples of tensor `index` under `seed`.
pub fn fill_normal(seed: u64, index: u64, buf: &mut [f32]) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(tensor_seed(seed, index));
    for x in buf.iter_mut() {
        *x = StandardNormal.sample(&mut rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_tensor() {
        let mut a = vec![0f32; 1 << 12];
        let mut b = vec![0f32; 1 << 12];
        fill_normal(7, 3, &mut a);
        fill_normal(7, 3, &mut b);
        assert_eq!(a, b);
        fill_normal(7, 4, &mut b);
        assert_ne!(a, b);
        // Any length works and agrees with the longer tensor's prefix.
        let mut c = vec![0f32; 37];
        fill_normal(7, 3, &mut c);
        assert_eq!(c[..], a[..37]);
    }

    /// 2^22 samples binned into 40 equal-probability cells of the exact
    /// normal CDF: chi-square with 39 degrees of freedom has mean 39 and
    /// standard deviation 8.8; 39 + 5 sd = 83 fails a correct sampler with
    /// probability below 1e-6. Moments: the standard errors of the mean,
    /// variance and fourth moment are 4.9e-4, 6.9e-4 and 4.6e-3 (3.3 / 2048);
    /// 5 of each are allowed. The tail beyond R = 3.44 (probability 5.76e-4,
    /// 2416 expected) checks the tail sampler: sd 49, 5 sd allowed.
    #[test]
    fn distribution_matches_the_exact_normal() {
        let n = 1usize << 22;
        let mut v = vec![0f32; n];
        for t in 0..4 {
            fill_normal(11, t, &mut v[t as usize * n / 4..(t as usize + 1) * n / 4]);
        }
        let cells = 40;
        let mut counts = vec![0f64; cells];
        for &x in &v {
            let p = sdk::gauss::cdf(x as f64);
            counts[((p * cells as f64) as usize).min(cells - 1)] += 1.0;
        }
        let e = n as f64 / cells as f64;
        let chi2: f64 = counts.iter().map(|c| (c - e).powi(2) / e).sum();
        assert!(chi2 < 83.0, "chi-square {chi2}");
        let m = |k: i32| v.iter().map(|&x| (x as f64).powi(k)).sum::<f64>() / n as f64;
        let (m1, m2, m4) = (m(1), m(2), m(4));
        assert!(m1.abs() < 5.0 * 4.9e-4, "mean {m1}");
        assert!((m2 - 1.0).abs() < 5.0 * 6.9e-4, "variance {m2}");
        assert!((m4 - 3.0).abs() < 5.0 * 4.6e-3, "fourth moment {m4}");
        let r = 3.442_619_855_899; // the 128-layer ziggurat's tail boundary
        let tail = v.iter().filter(|x| x.abs() as f64 > r).count() as f64;
        let expect = 2.0 * sdk::gauss::sf(r) * n as f64;
        assert!((tail - expect).abs() < 5.0 * expect.sqrt(), "tail {tail} vs {expect}");
        println!(
            "sampler: chi2 {chi2:.1} (39 dof), mean {m1:.2e}, var {m2:.5}, m4 {m4:.4}, tail {tail} vs {expect:.0}"
        );
    }
}
