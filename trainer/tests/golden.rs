//! The trainer's results pinned to [`trainer::RESULTS_VERSION`].
//!
//! Sweeps reuse a training result by the hash of its configuration, which includes
//! `RESULTS_VERSION`. If a change moves these losses (a kernel, the initialization, the
//! optimizer, the schedule, batch sampling), this test fails: bump `RESULTS_VERSION` in
//! `trainer/src/lib.rs` and put the new numbers here, so old results are reported as stale.

use trainer::data::{Data, Source};
use trainer::model::preset;
use trainer::{TrainOptions, Trainer};

/// (RESULTS_VERSION, training losses of steps 0..6, validation loss after them) of bench-tiny
/// on the default synthetic data, seed 3, one thread.
const GOLDEN: (u32, [f32; 6], f32) = (1, [5.5511756, 4.9982347, 4.7030954, 4.161111, 4.234502, 4.118535], 3.879908);

#[test]
fn golden_losses_pin_results_version() {
    let cfg = preset("bench-tiny").unwrap();
    let data = Data::open(&Source::default()).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let (losses, val) = pool.install(|| {
        let mut t = Trainer::new(cfg.clone(), TrainOptions { seed: 3, total_steps: 6, ..Default::default() }).unwrap();
        let losses: Vec<f32> =
            (0..6).map(|s| t.step(&data.train_batch(s, cfg.batch, cfg.ctx, 3)).unwrap().loss).collect();
        let val = t.eval_loss(&data.val_batches(4, cfg.ctx)).unwrap();
        (losses, val)
    });
    let got = (trainer::RESULTS_VERSION, <[f32; 6]>::try_from(losses).unwrap(), val);
    assert_eq!(got, GOLDEN, "training results changed: bump trainer::RESULTS_VERSION and update GOLDEN to {got:?}");
}
