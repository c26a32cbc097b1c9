//! Tests of `host validate` on runs generated from a known law.

use serde_json::{Value, json};

use super::sections::{self, FitSettings};
use super::study::{Class, ReadOptions, Study};
use super::{Validation, settings};
use host_core::law::Law;
use host_fit::{LawKind, Layout, Table};

/// Exact GMSE of the QuEST grids (DESIGN.md 2.6).
const INT: [(&str, f64); 4] = [("int2", 0.11885), ("int3", 0.037440), ("int4", 0.011543), ("int6", 1.0400e-3)];

/// Model sizes (N) of the generated runs; D = 50 N.
const SIZES: [(&str, f64); 3] = [("m30", 3e7), ("m100", 1e8), ("m300", 3e8)];

/// Weights (format, GMSE, family) of a generated record.
type W<'a> = Option<(&'a str, f64, &'a str)>;
/// Activations (format, GMSE).
type A<'a> = Option<(&'a str, f64)>;

/// A training record as `host sweep collect` writes it; `act` = (format, GMSE) of activations.
fn record(model: &str, n: f64, seed: u64, w: W, act: A, loss: f64) -> Value {
    let law = Law::default_law();
    json!({
        "type": "train", "model": model, "seed": seed, "data": "synthetic", "non_embedding_params": n,
        "tokens": 50.0 * n, "tokens_per_param": 50, "val_loss": loss,
        "format": w.map_or("none", |x| x.0), "act_format": act.map_or("none", |x| x.0),
        "w_gmse": w.map(|x| x.1), "w_family": w.map(|x| x.2), "w_rho": w.map(|x| law.rho(x.2, x.1)),
        "a_gmse": act.map(|x| x.1), "a_family": act.map(|_| "scalar"), "a_rho": act.map(|x| law.rho("scalar", x.1)),
    })
}

/// Runs from the default law (A 15.44, alpha 0.13, B 355.5, beta 0.33, E 1.3; scalar L 1,
/// F 0.41, C 1.39), D = 50 N: uncompressed, INT2/3/4/6 and W4A4 at each size, `seeds` seeds, loss
/// times `1 + wobble(k)` for the k-th run.
fn law_records(seeds: u64, wobble: impl Fn(usize) -> f64) -> Vec<Value> {
    let law = Law::default_law();
    let mut out = Vec::new();
    for (model, n) in SIZES {
        let mut cfgs: Vec<(W, A)> = vec![(None, None)];
        cfgs.extend(INT.iter().map(|&(f, g)| (Some((f, g, "scalar")), None)));
        cfgs.push((Some(("int4", 0.011543, "scalar")), Some(("int4", 0.011543))));
        for (w, a) in cfgs {
            let rho = w.map_or(1.0, |x| law.rho("scalar", x.1)) * a.map_or(1.0, |x| law.rho("scalar", x.1));
            for seed in 0..seeds {
                let loss = law.loss(n, 50.0 * n, rho) * (1.0 + wobble(out.len()));
                out.push(record(model, n, seed, w, a, loss));
            }
        }
    }
    out
}

fn study(records: &[Value]) -> Study {
    Study::from_table(Table::from_json(records).unwrap(), "test", &ReadOptions::default()).unwrap()
}

fn fixed(fix: &str, bootstrap: usize) -> FitSettings {
    FitSettings {
        fix: Some(fix.into()),
        why: vec![],
        user: true,
        bound: None,
        delta: 1e-3,
        force: false,
        bootstrap,
        seed: 0,
    }
}

#[test]
fn exact_law_runs_are_predicted_exactly_and_ranked_perfectly() {
    let st = study(&law_records(2, |_| 0.0));
    assert_eq!((st.runs.len(), st.sizes.len(), st.configs.len()), (36, 3, 18));
    // Seeds repeat the same loss: the seed SD is exactly 0.
    assert!(st.sizes.iter().all(|s| s.pooled.is_some_and(|p| p.sd == 0.0 && p.dof == 6)));
    let s = fixed("alpha=0.13,beta=0.33,E=1.3,L=1", 0);
    let corr = sections::correlations(&st, 100, 0).unwrap();
    for c in &corr {
        let g = c.gmse.as_ref().unwrap();
        let r = c.rho.as_ref().unwrap();
        assert_eq!((g.configs, r.configs), (4, 6));
        // The law is strictly monotone in GMSE and in rho at fixed N and D.
        assert_eq!((g.spearman.value, g.kendall.value), (Some(1.0), Some(1.0)));
        assert_eq!((r.spearman.value, r.kendall.value), (Some(-1.0), Some(-1.0)));
        assert!(c.breaks.is_empty());
    }
    // Held out with the grid of starts (no section b) and warm-started from b's optimum: A, B, F,
    // C are free, the rest fixed at the truth, so every fit reaches the generating law and the
    // held-out format's loss comes back up to the fitter's convergence. Observed at most 1.7e-12
    // relative; the bound 1e-9 leaves room for other platforms' floating point.
    let law = sections::law_fit(&st, &s).unwrap();
    let start = (&law.main.setup.layout, law.main.fit.params.as_slice());
    for h in [sections::held_out(&st, &s, None).unwrap(), sections::held_out(&st, &s, Some(start)).unwrap()] {
        assert_eq!(h.formats.len(), 5);
        for f in &h.formats {
            assert_eq!((f.error.as_ref(), f.fitted_on), (None, Some(30)), "{}", f.name);
            assert_eq!(f.predictions.len(), 3);
            for p in &f.predictions {
                assert!((p.error / p.observed).abs() < 1e-9, "{} at {}: {p:?}", f.name, st.sizes[p.size].label);
                // No seed noise at all: no error in SD units.
                assert_eq!(p.z, None);
            }
        }
        // Nothing to count in seed SDs: no format or prediction enters the fractions.
        for c in &h.summary {
            assert_eq!((c.predicted, c.formats_with_sd, c.formats_within_2sd, c.predictions), (c.formats, 0, 0, 0));
        }
    }
    // The refit recovers the generating law (observed within 2.1e-11 relative; bound 1e-8).
    for (name, truth) in [("A", 15.44), ("B", 355.5), ("F", 0.41), ("C", 1.39)] {
        let v = law.get(name).unwrap().value;
        assert!((v / truth - 1.0).abs() < 1e-8, "{name} = {v}, truth {truth}");
    }
    // Factorization: W4A4's implied rho is the square of W4's, as generated (the decoupled fit's
    // convergence: observed 3.1e-9 relative; bound 1e-7).
    let f = sections::factorization(&st, &law).unwrap();
    assert_eq!(f.rows.len(), 1);
    let row = &f.rows[0];
    assert_eq!((row.key.as_str(), row.kind), ("W:int4 A:int4", "W+A"));
    let rho4 = Law::default_law().rho("scalar", 0.011543);
    assert!((row.implied.value.unwrap() / (rho4 * rho4) - 1.0).abs() < 1e-7, "{row:?}");
    assert!((row.ratio.value.unwrap() - 1.0).abs() < 1e-7, "{row:?}");
}

/// A reproducible wobble: SplitMix64 uniform in +-`amp`.
fn wobble(amp: f64) -> impl Fn(usize) -> f64 {
    move |k| {
        let mut r = host_fit::solve::SplitMix64(k as u64 ^ 0x5EED);
        amp * (2.0 * ((r.next_u64() >> 11) as f64 / (1u64 << 53) as f64) - 1.0)
    }
}

#[test]
fn section_a_is_identical_for_one_and_two_threads() {
    // 0.5 % noise on losses that differ by ~1-3 % between formats: resamples do reorder.
    let st = study(&law_records(3, wobble(0.005)));
    let run = |t: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        pool.install(|| sections::correlations(&st, 400, 3).unwrap())
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one, two);
    assert!(one.iter().all(|c| c.resamples == 400));
}

#[test]
fn order_breaks_and_noise_pairs_by_hand() {
    // One size, 2 seeds per configuration. Losses (seed 0, seed 1):
    //   int6 2.00, 2.02    int4 2.10, 2.12    int3 2.05, 2.07 (breaks int4's order)
    //   int2 2.30, 2.32    noise:mse=0.0115 2.11, 2.15
    // Every configuration's SS about its mean is 2 * 0.01^2 = 2e-4, except noise: 2 * 0.02^2 =
    // 8e-4. Pooled SD = sqrt((4 * 2e-4 + 8e-4) / 5) = sqrt(3.2e-4) = 0.017889.
    let mut recs = Vec::new();
    let rows: [(&str, f64, [f64; 2]); 5] = [
        ("int6", 1.04e-3, [2.00, 2.02]),
        ("int4", 0.011543, [2.10, 2.12]),
        ("int3", 0.03744, [2.05, 2.07]),
        ("int2", 0.11885, [2.30, 2.32]),
        ("noise:mse=0.0115", 0.0115, [2.11, 2.15]),
    ];
    for (f, g, losses) in rows {
        for (seed, l) in losses.iter().enumerate() {
            recs.push(record("m", 1e6, seed as u64, Some((f, g, "scalar")), None, *l));
        }
    }
    let st = study(&recs);
    let sd = st.sizes[0].pooled.unwrap();
    assert_eq!(sd.dof, 5);
    assert!((sd.sd - 3.2e-4f64.sqrt()).abs() < 1e-12);
    let noise = st.configs.iter().find(|c| c.format.starts_with("noise")).unwrap();
    assert_eq!(noise.class, Class::Other);
    let c = &sections::correlations(&st, 50, 0).unwrap()[0];
    // Scalar: int6 < int4 < int3 < int2 in GMSE; means 2.01, 2.11, 2.06, 2.31. Ranks of the means
    // 1, 3, 2, 4: sum d^2 = 2, Spearman = 1 - 6 * 2 / (4 * 15) = 0.8; Kendall (5 - 1) / 6.
    let g = c.gmse.as_ref().unwrap();
    assert!((g.spearman.value.unwrap() - 0.8).abs() < 1e-12);
    assert!((g.kendall.value.unwrap() - 4.0 / 6.0).abs() < 1e-12);
    // One break: int4 (lower GMSE) above int3 by 0.05; SE = 0.017889 * sqrt(1/2 + 1/2).
    assert_eq!(c.breaks.len(), 1);
    let b = &c.breaks[0];
    assert_eq!((b.lower.as_str(), b.higher.as_str()), ("int4", "int3"));
    assert!((b.z.unwrap() - 0.05 / 3.2e-4f64.sqrt()).abs() < 1e-9, "{b:?}");
    // Noise (GMSE 0.0115) pairs with int4 (0.011543), the closest in log GMSE: diff = 2.13 - 2.11.
    let p = sections::noise_pairs(&st).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].noise.as_str(), p[0].quantizer.as_str()), ("noise:mse=0.0115", "int4"));
    assert!((p[0].diff - 0.02).abs() < 1e-12);
    assert!((p[0].z.unwrap() - 0.02 / 3.2e-4f64.sqrt()).abs() < 1e-9);
}

#[test]
fn default_fix_names_what_the_runs_cannot_identify() {
    // Constant tokens per parameter -> the data term dropped (B = 0, beta then inert); the sparse
    // family with one GMSE -> L[sparse] and
    // C[sparse] (the default law's 0.857); scalar has 4 GMSE values: free.
    let mut recs = law_records(1, |_| 0.0);
    recs.push(record("m30", 3e7, 0, Some(("sparse50", 0.071326, "sparse")), None, 3.4));
    let st = study(&recs);
    let fix: Vec<(String, f64)> = sections::default_fix(&st.runs).into_iter().map(|(k, v, _)| (k, v)).collect();
    let want = [("B", 0.0), ("beta", 0.33), ("L[sparse]", 1.0), ("C[sparse]", 0.857)];
    assert_eq!(fix, want.map(|(k, v)| (k.to_string(), v)));
    // Runs over two budgets and a single size: alpha instead of beta.
    let r: Vec<host_fit::Run> = [50.0, 100.0]
        .iter()
        .map(|t| host_fit::Run::simple(1e6, t * 1e6, 3.0, Some(0.0115), None))
        .chain([host_fit::Run::simple(1e6, 5e7, 3.0, Some(0.0374), None)])
        .chain([host_fit::Run::simple(1e6, 5e7, 3.0, Some(0.1188), None)])
        .collect();
    let names: Vec<String> = sections::default_fix(&r).into_iter().map(|x| x.0).collect();
    assert_eq!(names, vec!["alpha"]);
}

#[test]
fn held_out_fix_survives_the_loss_of_a_family() {
    // The only sparse format held out leaves one family: `L[scalar]=1` must still fix L there.
    let mut recs = law_records(1, |_| 0.0);
    recs.push(record("m30", 3e7, 0, Some(("sparse50", 0.071326, "sparse")), None, 3.4));
    let st = study(&recs);
    let only_scalar: Vec<host_fit::Run> =
        st.runs.iter().filter(|r| r.comps().all(|c| c.family == "scalar")).cloned().collect();
    let s = fixed("L[scalar]=1,F[sparse]=0.3", 0);
    let setup = sections::setup(&only_scalar, &s).unwrap();
    let l = setup.layout.index("L").unwrap();
    assert_eq!(setup.fixed.get(&l), Some(&1.0));
    assert_eq!(setup.fixed.len(), 1);
    // The held-out sparse format cannot be predicted (its family's curve is unknown) and says so.
    let h = sections::held_out(&st, &s, None).unwrap();
    let sp = h.formats.iter().find(|f| f.name == "sparse50").unwrap();
    assert!(sp.error.as_ref().unwrap().contains("sparse family"), "{sp:?}");
    let lay = Layout::new(LawKind::Unified, &st.runs).unwrap();
    assert_eq!(lay.families, vec!["scalar", "sparse"]);
}

#[test]
fn missing_sections_say_why_and_set_the_exit_code() {
    // Weight-only scalar runs: no W+A pair, no composition, no noise.
    let recs: Vec<Value> = law_records(2, wobble(0.002)).into_iter().filter(|r| r["act_format"] == "none").collect();
    let st = study(&recs);
    let args = super::ValidateArgs {
        results: vec![],
        filters: vec![],
        map: None,
        law: None,
        fix: Some("alpha=0.13,beta=0.33,E=1.3,L=1".into()),
        bound: None,
        delta: 1e-3,
        bootstrap: 20,
        seed: 0,
        threads: None,
        force: false,
        drop_stale: false,
        json: true,
        plot: None,
    };
    let s = settings(&args, &st);
    let v = Validation::compute(st, s);
    let why: Vec<Option<&str>> = v.sections().iter().map(|x| x.2).collect();
    assert_eq!(&why[..3], &[None, None, None]);
    assert!(why[3].unwrap().contains("no W+A pairs"), "{why:?}");
    assert!(why[4].unwrap().contains("no noise-injection runs"), "{why:?}");
    assert_eq!(v.exit_code(), 2);
    let j = super::render::json(&v);
    assert_eq!(j["exit_code"], 2);
    assert_eq!(j["sections"]["a_correlations"], "ok");
    assert!(j["factorization"]["error"].as_str().unwrap().contains("no W+A pairs"));
    // Text: every section is there, the missing ones with their reason.
    let t = super::render::text(&v);
    assert!(t.contains("d. factorization") && t.contains("not computed: no W+A pairs"), "{t}");
}

#[test]
fn no_training_rows_is_an_error() {
    let t = Table::from_json(&[json!({"type": "gmse", "format": "int4", "gmse": 0.0115})]).unwrap();
    let e = Study::from_table(t, "x.jsonl", &ReadOptions::default()).unwrap_err();
    assert!(e.contains("no training rows in x.jsonl"), "{e}");
}

#[test]
fn several_data_sets_stop_the_fits_but_not_the_correlations() {
    let mut recs = law_records(2, wobble(0.002));
    let other: Vec<Value> = recs
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["data"] = json!("shakespeare");
            r
        })
        .collect();
    recs.extend(other);
    let st = study(&recs);
    assert_eq!(st.data_sets, vec!["shakespeare", "synthetic"]);
    assert_eq!(st.sizes.len(), 6);
    assert!(st.sizes[0].label.ends_with("[data 1]"), "{}", st.sizes[0].label);
    assert!(sections::correlations(&st, 10, 0).is_ok());
    let e = sections::law_fit(&st, &fixed("L=1", 0)).unwrap_err();
    assert!(e.contains("2 data sets") && e.contains("--where"), "{e}");
}

#[test]
fn stale_results_are_counted_or_left_out() {
    // Two of the 12 training rows are stale (kept by `sweep collect --keep-stale`); a GMSE row is
    // ignored either way.
    let mut recs: Vec<Value> = law_records(2, |_| 0.0).into_iter().filter(|r| r["model"] == "m30").collect();
    recs[1]["stale"] = json!(true);
    recs[3]["stale"] = json!(true);
    recs.push(json!({"type": "gmse", "format": "int4", "gmse": 0.0115}));
    let kept = study(&recs);
    assert_eq!((kept.rows_read, kept.runs.len()), (13, 12));
    assert!(kept.warnings.iter().any(|w| w.starts_with("2 stale results included")), "{:?}", kept.warnings);
    let opts = ReadOptions { drop_stale: true, ..ReadOptions::default() };
    let dropped = Study::from_table(Table::from_json(&recs).unwrap(), "test", &opts).unwrap();
    assert_eq!(dropped.runs.len(), 10);
    assert!(dropped.warnings.iter().any(|w| w.contains("left out 2 stale")), "{:?}", dropped.warnings);
    // Rows 1 and 3 are seed 1 of `none` and of INT2: those configurations keep one seed.
    let seeds: Vec<usize> = dropped.configs.iter().map(|c| c.losses.len()).collect();
    assert_eq!(seeds, vec![1, 2, 2, 2, 1, 2]);
}
