//! Seeded i.i.d. N(0, 1) tensors: tensor `t` of seed `s` depends only on (s, t).
//!
//! Samples are those of `rand_distr::StandardNormal` (its 256-layer ziggurat,
//! in `f64`, rounded to `f32`) driven by `rand_xoshiro::Xoshiro256PlusPlus`
//! seeded from (s, t), bit for bit. [`fill_normal`] runs the ziggurat's fast
//! path (about 99 % of draws) itself with the generator's state in local
//! variables (`rand_distr` keeps it in memory, behind the `&mut` its slow
//! paths take, which cost more than the arithmetic); every other draw is
//! handed back to `rand_distr` from the state before it, through the
//! generator's exact state round trip (`state` / `from_seed`). A hand-written
//! 32-bit ziggurat with eight interleaved streams was tried earlier and
//! measured no faster; `host bench` prints the sampler's own throughput.

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

/// Fills `buf` with the samples of tensor `index` under `seed`: the values
/// of `StandardNormal.sample(&mut rng)` for `rng =
/// Xoshiro256PlusPlus::seed_from_u64(tensor_seed(seed, index))`.
pub fn fill_normal(seed: u64, index: u64, buf: &mut [f32]) {
    let [mut s0, mut s1, mut s2, mut s3] = words(Xoshiro256PlusPlus::seed_from_u64(tensor_seed(seed, index)).state());
    for out in buf.iter_mut() {
        let before = [s0, s1, s2, s3];
        // Xoshiro256++ `next_u64`.
        let bits = s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0);
        let t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = s3.rotate_left(45);
        // rand_distr's ziggurat: layer i from the low 8 bits, u in [-1, 1)
        // from the high 52 (a float in [2, 4) minus 3), accepted when inside
        // the next layer's rectangle.
        let i = (bits & 0xff) as usize;
        let u = f64::from_bits((bits >> 12) | 0x4000_0000_0000_0000) - 3.0;
        let x = u * ZIG_NORM_X[i];
        *out = if x.abs() < ZIG_NORM_X[i + 1] {
            x as f32
        } else {
            let (v, after) = sample_from(before);
            [s0, s1, s2, s3] = after;
            v
        };
    }
}

/// The 4 state words of a generator from its little-endian state bytes.
fn words(state: [u8; 32]) -> [u64; 4] {
    std::array::from_fn(|k| u64::from_le_bytes(state[8 * k..8 * k + 8].try_into().expect("8 bytes")))
}

/// One `StandardNormal` sample by `rand_distr` from generator state `s`, and
/// the state after it (the draws the ziggurat's fast path rejects).
#[cold]
#[inline(never)]
fn sample_from(s: [u64; 4]) -> (f32, [u64; 4]) {
    let mut seed = [0u8; 32];
    for (k, w) in s.iter().enumerate() {
        seed[8 * k..8 * k + 8].copy_from_slice(&w.to_le_bytes());
    }
    // Exact: `from_seed` takes the state as it is (never all-zero here).
    let mut rng = Xoshiro256PlusPlus::from_seed(seed);
    let v: f32 = StandardNormal.sample(&mut rng);
    (v, words(rng.state()))
}

/// Layer edges of `rand_distr`'s normal ziggurat, copied from rand_distr 0.6.0
/// `src/ziggurat_tables.rs` (MIT OR Apache-2.0, the Rand project); a wrong
/// value would change about 1/256 of all samples, which
/// `fill_matches_rand_distr` catches. The digits are rand_distr's as
/// written (more than f64 holds; they parse to the same values).
#[rustfmt::skip]
#[allow(clippy::excessive_precision)]
static ZIG_NORM_X: [f64; 257] =
    [3.910757959537090045, 3.654152885361008796, 3.449278298560964462, 3.320244733839166074,
     3.224575052047029100, 3.147889289517149969, 3.083526132001233044, 3.027837791768635434,
     2.978603279880844834, 2.934366867207854224, 2.894121053612348060, 2.857138730872132548,
     2.822877396825325125, 2.790921174000785765, 2.760944005278822555, 2.732685359042827056,
     2.705933656121858100, 2.680514643284522158, 2.656283037575502437, 2.633116393630324570,
     2.610910518487548515, 2.589575986706995181, 2.569035452680536569, 2.549221550323460761,
     2.530075232158516929, 2.511544441625342294, 2.493583041269680667, 2.476149939669143318,
     2.459208374333311298, 2.442725318198956774, 2.426670984935725972, 2.411018413899685520,
     2.395743119780480601, 2.380822795170626005, 2.366237056715818632, 2.351967227377659952,
     2.337996148795031370, 2.324308018869623016, 2.310888250599850036, 2.297723348901329565,
     2.284800802722946056, 2.272108990226823888, 2.259637095172217780, 2.247375032945807760,
     2.235313384928327984, 2.223443340090905718, 2.211756642882544366, 2.200245546609647995,
     2.188902771624720689, 2.177721467738641614, 2.166695180352645966, 2.155817819875063268,
     2.145083634046203613, 2.134487182844320152, 2.124023315687815661, 2.113687150684933957,
     2.103474055713146829, 2.093379631137050279, 2.083399693996551783, 2.073530263516978778,
     2.063767547809956415, 2.054107931648864849, 2.044547965215732788, 2.035084353727808715,
     2.025713947862032960, 2.016433734904371722, 2.007240830558684852, 1.998132471356564244,
     1.989106007615571325, 1.980158896898598364, 1.971288697931769640, 1.962493064942461896,
     1.953769742382734043, 1.945116560006753925, 1.936531428273758904, 1.928012334050718257,
     1.919557336591228847, 1.911164563769282232, 1.902832208548446369, 1.894558525668710081,
     1.886341828534776388, 1.878180486290977669, 1.870072921069236838, 1.862017605397632281,
     1.854013059758148119, 1.846057850283119750, 1.838150586580728607, 1.830289919680666566,
     1.822474540091783224, 1.814703175964167636, 1.806974591348693426, 1.799287584547580199,
     1.791640986550010028, 1.784033659547276329, 1.776464495522344977, 1.768932414909077933,
     1.761436365316706665, 1.753975320315455111, 1.746548278279492994, 1.739154261283669012,
     1.731792314050707216, 1.724461502945775715, 1.717160915015540690, 1.709889657069006086,
     1.702646854797613907, 1.695431651932238548, 1.688243209434858727, 1.681080704722823338,
     1.673943330923760353, 1.666830296159286684, 1.659740822855789499, 1.652674147080648526,
     1.645629517902360339, 1.638606196773111146, 1.631603456932422036, 1.624620582830568427,
     1.617656869570534228, 1.610711622367333673, 1.603784156023583041, 1.596873794420261339,
     1.589979870021648534, 1.583101723393471438, 1.576238702733332886, 1.569390163412534456,
     1.562555467528439657, 1.555733983466554893, 1.548925085471535512, 1.542128153226347553,
     1.535342571438843118, 1.528567729435024614, 1.521803020758293101, 1.515047842773992404,
     1.508301596278571965, 1.501563685112706548, 1.494833515777718391, 1.488110497054654369,
     1.481394039625375747, 1.474683555695025516, 1.467978458615230908, 1.461278162507407830,
     1.454582081885523293, 1.447889631277669675, 1.441200224845798017, 1.434513276002946425,
     1.427828197027290358, 1.421144398672323117, 1.414461289772464658, 1.407778276843371534,
     1.401094763676202559, 1.394410150925071257, 1.387723835686884621, 1.381035211072741964,
     1.374343665770030531, 1.367648583594317957, 1.360949343030101844, 1.354245316759430606,
     1.347535871177359290, 1.340820365893152122, 1.334098153216083604, 1.327368577624624679,
     1.320630975217730096, 1.313884673146868964, 1.307128989027353860, 1.300363230327433728,
     1.293586693733517645, 1.286798664489786415, 1.279998415710333237, 1.273185207661843732,
     1.266358287014688333, 1.259516886060144225, 1.252660221891297887, 1.245787495544997903,
     1.238897891102027415, 1.231990574742445110, 1.225064693752808020, 1.218119375481726552,
     1.211153726239911244, 1.204166830140560140, 1.197157747875585931, 1.190125515422801650,
     1.183069142678760732, 1.175987612011489825, 1.168879876726833800, 1.161744859441574240,
     1.154581450355851802, 1.147388505416733873, 1.140164844363995789, 1.132909248648336975,
     1.125620459211294389, 1.118297174115062909, 1.110938046009249502, 1.103541679420268151,
     1.096106627847603487, 1.088631390649514197, 1.081114409698889389, 1.073554065787871714,
     1.065948674757506653, 1.058296483326006454, 1.050595664586207123, 1.042844313139370538,
     1.035040439828605274, 1.027181966030751292, 1.019266717460529215, 1.011292417434978441,
     1.003256679539591412, 0.995156999629943084, 0.986990747093846266, 0.978755155288937750,
     0.970447311058864615, 0.962064143217605250, 0.953602409875572654, 0.945058684462571130,
     0.936429340280896860, 0.927710533396234771, 0.918898183643734989, 0.909987953490768997,
     0.900975224455174528, 0.891855070726792376, 0.882622229578910122, 0.873271068082494550,
     0.863795545546826915, 0.854189171001560554, 0.844444954902423661, 0.834555354079518752,
     0.824512208745288633, 0.814306670128064347, 0.803929116982664893, 0.793369058833152785,
     0.782615023299588763, 0.771654424216739354, 0.760473406422083165, 0.749056662009581653,
     0.737387211425838629, 0.725446140901303549, 0.713212285182022732, 0.700661841097584448,
     0.687767892786257717, 0.674499822827436479, 0.660822574234205984, 0.646695714884388928,
     0.632072236375024632, 0.616896989996235545, 0.601104617743940417, 0.584616766093722262,
     0.567338257040473026, 0.549151702313026790, 0.529909720646495108, 0.509423329585933393,
     0.487443966121754335, 0.463634336771763245, 0.437518402186662658, 0.408389134588000746,
     0.375121332850465727, 0.335737519180459465, 0.286174591747260509, 0.215241895913273806,
     0.000000000000000000];

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: `rand_distr`'s sampler on `rand_xoshiro`'s generator.
    fn fill_reference(seed: u64, index: u64, buf: &mut [f32]) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(tensor_seed(seed, index));
        for x in buf.iter_mut() {
            *x = StandardNormal.sample(&mut rng);
        }
    }

    /// Bit for bit the reference's samples, on 2^22 samples over 24 tensors
    /// of several lengths: about 50,000 draws go through the slow path
    /// (wedges and the tail), counted to show that they were exercised.
    #[test]
    fn fill_matches_rand_distr() {
        let mut slow = 0usize;
        let mut tail = 0usize;
        for (k, len) in [1usize, 7, 1000, 65_536, 1 << 18, 1 << 19].into_iter().enumerate() {
            for index in 0..4u64 {
                let seed = 3 + 1000 * k as u64;
                let (mut a, mut b) = (vec![0f32; len], vec![0f32; len]);
                fill_normal(seed, index, &mut a);
                fill_reference(seed, index, &mut b);
                for (j, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(x.to_bits(), y.to_bits(), "seed {seed} tensor {index} sample {j}: {x} vs {y}");
                }
                // Draws the fast path rejects, replayed on the reference generator.
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(tensor_seed(seed, index));
                let mut probe = rng.clone();
                for _ in 0..len {
                    use rand::Rng;
                    let bits = probe.next_u64();
                    let (i, u) = ((bits & 0xff) as usize, f64::from_bits((bits >> 12) | 0x4000_0000_0000_0000) - 3.0);
                    if (u * ZIG_NORM_X[i]).abs() >= ZIG_NORM_X[i + 1] {
                        slow += 1;
                        tail += (i == 0) as usize;
                    }
                    let _: f32 = StandardNormal.sample(&mut rng);
                    probe = rng.clone();
                }
            }
        }
        println!("sampler: {slow} slow-path draws ({tail} in the tail layer) reproduced bit for bit");
        assert!(slow > 10_000 && tail > 100, "slow {slow}, tail {tail}");
    }

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
