//! The statistics of `host validate`: rank correlations (Spearman, Kendall
//! tau-b, both with ties), the pooled seed standard deviation, and the
//! bootstrap over seeds.
//!
//! The bootstrap draws resample `b` from a generator seeded by `(seed, b)`
//! alone and collects the resamples in order, so its result is the same for
//! any thread count.

use rayon::prelude::*;

use host_fit::solve::SplitMix64;

/// Mean of `v` (NaN when empty).
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation of `v` (n - 1 in the denominator; None below 2 values).
pub fn sd(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let m = mean(v);
    Some((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt())
}

/// Ranks of `v` from 1; tied values share the mean of the ranks they span.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) hold ranks i+1..=j+1; their mean is (i + j) / 2 + 1.
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation of `x` and `y` (None below 2 points, for different lengths, or when either
/// is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Spearman's rank correlation: the Pearson correlation of the ranks (mean ranks for ties).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    pearson(&ranks(x), &ranks(y))
}

/// Kendall's tau-b: `(n_c - n_d) / sqrt((n_0 - n_x) (n_0 - n_y))` over all `n_0 = n (n-1) / 2`
/// pairs, `n_c` / `n_d` the concordant / discordant pairs, `n_x` / `n_y` the pairs tied in `x` /
/// in `y` (a pair tied in both counts in both). None below 2 points or when either is constant.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n != y.len() || n < 2 {
        return None;
    }
    let (mut conc, mut disc, mut tx, mut ty) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..n {
        for j in i + 1..n {
            let dx = x[i].total_cmp(&x[j]) as i32;
            let dy = y[i].total_cmp(&y[j]) as i32;
            if dx == 0 {
                tx += 1;
            }
            if dy == 0 {
                ty += 1;
            }
            match dx * dy {
                1 => conc += 1,
                -1 => disc += 1,
                _ => {}
            }
        }
    }
    let n0 = (n * (n - 1) / 2) as u64;
    let den = ((n0 - tx) as f64 * (n0 - ty) as f64).sqrt();
    (den > 0.0).then(|| (conc as f64 - disc as f64) / den)
}

/// A standard deviation pooled over groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pooled {
    /// `sqrt(sum_g sum_i (x_gi - mean_g)^2 / dof)`.
    pub sd: f64,
    /// Degrees of freedom: `sum_g (n_g - 1)`.
    pub dof: usize,
}

/// The standard deviation within groups, pooled (groups of one value add nothing; None when no
/// group has two values).
pub fn pooled_sd<'a>(groups: impl IntoIterator<Item = &'a [f64]>) -> Option<Pooled> {
    let (mut ss, mut dof) = (0.0, 0usize);
    for g in groups {
        if g.len() < 2 {
            continue;
        }
        let m = mean(g);
        ss += g.iter().map(|x| (x - m).powi(2)).sum::<f64>();
        dof += g.len() - 1;
    }
    (dof > 0).then(|| Pooled { sd: (ss / dof as f64).sqrt(), dof })
}

/// A seed derived from `seed` and a stream number (e.g. the model size's index).
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    SplitMix64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

/// The bootstrap over seeds: `count` resamples, each drawing every group's values with
/// replacement (as many as the group has), taking each group's mean and handing the means (in
/// group order) to `stat`. Resample `b` uses a generator seeded by `(seed, b)` alone; results are
/// returned in resample order, so they do not depend on the thread count.
pub fn bootstrap_means<T: Send>(
    groups: &[Vec<f64>],
    count: usize,
    seed: u64,
    stat: impl Fn(&[f64]) -> T + Sync,
) -> Vec<T> {
    let first = SplitMix64(seed).next_u64();
    (0..count)
        .into_par_iter()
        .map(|b| {
            let mut rng = SplitMix64(first ^ (b as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let means: Vec<f64> = groups
                .iter()
                .map(|g| {
                    let n = g.len() as u64;
                    (0..n).map(|_| g[(rng.next_u64() % n) as usize]).sum::<f64>() / n as f64
                })
                .collect();
            stat(&means)
        })
        .collect()
}

/// A statistic with its 68 % and 95 % bootstrap percentile intervals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// On the observed data (None when undefined there).
    pub value: Option<f64>,
    /// 16-84 % percentiles over the resamples where it is defined.
    pub ci68: Option<(f64, f64)>,
    /// 2.5-97.5 % percentiles.
    pub ci95: Option<(f64, f64)>,
}

impl Estimate {
    /// `value` with intervals from `samples` (undefined resamples skipped; no intervals below 2).
    pub fn new(value: Option<f64>, samples: impl IntoIterator<Item = Option<f64>>) -> Estimate {
        let ci = host_fit::solve::intervals(samples.into_iter().flatten().collect());
        Estimate { value, ci68: ci.map(|c| c.0), ci95: ci.map(|c| c.1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotone_sets_correlate_exactly() {
        // Any strictly increasing map of x keeps every pair concordant: Spearman = Kendall = 1
        // exactly; reversed, -1 exactly.
        let x = [0.1175, 0.0374, 0.0115, 0.0025, 0.3634];
        let y: Vec<f64> = x.iter().map(|g: &f64| 2.0 + g.sqrt()).collect();
        assert_eq!(spearman(&x, &y), Some(1.0));
        assert_eq!(kendall_tau_b(&x, &y), Some(1.0));
        let z: Vec<f64> = y.iter().map(|v| -v).collect();
        assert_eq!(spearman(&x, &z), Some(-1.0));
        assert_eq!(kendall_tau_b(&x, &z), Some(-1.0));
    }

    #[test]
    fn shuffle_gives_the_hand_computed_spearman() {
        // Ranks of y for x = 1..5: [2, 1, 4, 3, 5]; d = [-1, 1, -1, 1, 0], sum d^2 = 4;
        // rho = 1 - 6 * 4 / (5 * (25 - 1)) = 1 - 24/120 = 0.8.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [20.0, 10.0, 40.0, 30.0, 50.0];
        assert!((spearman(&x, &y).unwrap() - 0.8).abs() < 1e-15);
        // Kendall on the same: discordant pairs (1,2) and (3,4) only, 8 concordant of 10:
        // (8 - 2) / 10 = 0.6.
        assert!((kendall_tau_b(&x, &y).unwrap() - 0.6).abs() < 1e-15);
    }

    #[test]
    fn ties_match_the_hand_computed_tau_b() {
        // x = [1, 2, 2, 3], y = [1, 3, 2, 2]; the 6 pairs (i, j):
        //   (0,1): dx +, dy + -> concordant      (0,2): +, + -> concordant
        //   (0,3): +, + -> concordant             (1,2): dx 0 -> tied in x
        //   (1,3): +, - -> discordant             (2,3): +, dy 0 -> tied in y
        // n_c = 3, n_d = 1, n_0 = 6, n_x = 1, n_y = 1:
        // tau_b = (3 - 1) / sqrt((6 - 1) (6 - 1)) = 2 / 5 = 0.4.
        let x = [1.0, 2.0, 2.0, 3.0];
        let y = [1.0, 3.0, 2.0, 2.0];
        assert!((kendall_tau_b(&x, &y).unwrap() - 0.4).abs() < 1e-15);
        // Mean ranks: x -> [1, 2.5, 2.5, 4], y -> [1, 4, 2.5, 2.5].
        assert_eq!(ranks(&x), vec![1.0, 2.5, 2.5, 4.0]);
        assert_eq!(ranks(&y), vec![1.0, 4.0, 2.5, 2.5]);
        // Spearman = Pearson of those ranks: centred (rank - 2.5): x [-1.5, 0, 0, 1.5],
        // y [-1.5, 1.5, 0, 0]; sum xy = 2.25, sum x^2 = sum y^2 = 4.5: 2.25 / 4.5 = 0.5.
        assert!((spearman(&x, &y).unwrap() - 0.5).abs() < 1e-15);
        // Ties in both variables at once: pair tied in x and y counts in n_x and n_y.
        // x = [1, 1, 2], y = [5, 5, 6]: n_0 = 3, n_c = 2, n_d = 0, n_x = n_y = 1: 2 / 2 = 1.
        assert_eq!(kendall_tau_b(&[1.0, 1.0, 2.0], &[5.0, 5.0, 6.0]), Some(1.0));
    }

    #[test]
    fn undefined_correlations_are_none() {
        assert_eq!(spearman(&[1.0], &[2.0]), None);
        assert_eq!(kendall_tau_b(&[1.0, 2.0, 3.0], &[4.0, 4.0, 4.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0]), None);
    }

    #[test]
    fn pooled_sd_by_hand() {
        // Groups [1, 3] (mean 2, SS 2), [4, 6, 8] (mean 6, SS 8), [10] (no dof):
        // sqrt((2 + 8) / (1 + 2)) = sqrt(10 / 3).
        let g: [&[f64]; 3] = [&[1.0, 3.0], &[4.0, 6.0, 8.0], &[10.0]];
        let p = pooled_sd(g).unwrap();
        assert_eq!(p.dof, 3);
        assert!((p.sd - (10.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(pooled_sd([&[1.0][..], &[2.0][..]]), None);
        assert_eq!(sd(&[1.0, 3.0]), Some(2f64.sqrt()));
    }

    #[test]
    fn bootstrap_is_identical_for_one_and_two_threads() {
        let groups: Vec<Vec<f64>> = (0..6)
            .map(|c| (0..3).map(|s| 2.0 + 0.1 * c as f64 + 0.07 * ((c * 3 + s) as f64).sin()).collect())
            .collect();
        let x: Vec<f64> = (0..6).map(|c| c as f64).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let s = bootstrap_means(&groups, 500, 7, |m| spearman(&x, m));
                Estimate::new(spearman(&x, &groups.iter().map(|g| mean(g)).collect::<Vec<_>>()), s)
            })
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one, two);
        // The interval is real: the noise (+-0.07) is comparable to the steps (0.1), so some
        // resamples break the order.
        let (lo, hi) = one.ci95.unwrap();
        assert!(lo < hi && hi <= 1.0, "{one:?}");
        // Another seed gives other resamples.
        let other = bootstrap_means(&groups, 500, 8, |m| spearman(&x, m));
        let same = bootstrap_means(&groups, 500, 7, |m| spearman(&x, m));
        assert_ne!(other, same);
    }

    #[test]
    fn bootstrap_of_single_seeds_is_the_data() {
        // One value per group: every resample is the data itself.
        let groups = vec![vec![1.0], vec![3.0], vec![2.0]];
        let s = bootstrap_means(&groups, 20, 1, |m| m.to_vec());
        assert!(s.iter().all(|m| m == &[1.0, 3.0, 2.0]));
    }
}
