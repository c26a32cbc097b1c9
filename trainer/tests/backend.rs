//! The backend contract, checked against the CPU backend: driven through `Box<dyn Backend>`,
//! training gives bit-identical losses to the trainer used directly, and a backend resumed from
//! another's state continues exactly.

use trainer::backend::{Backend, MatmulPrecision};
use trainer::data::{Data, Source};
use trainer::device::{self, Device};
use trainer::model::preset;
use trainer::{TrainOptions, Trainer};

fn opts() -> TrainOptions {
    TrainOptions { seed: 5, total_steps: 8, ..Default::default() }
}

#[test]
fn cpu_backend_is_the_trainer_bit_for_bit_and_resumes_exactly() {
    let cfg = preset("lm-20k").unwrap();
    let data = Data::open(&Source::default()).unwrap();
    let batch = |s: u64| data.train_batch(s, cfg.batch, cfg.ctx, 5);
    let val = data.val_batches(4, cfg.ctx);

    let mut direct = Trainer::new(cfg.clone(), opts()).unwrap();
    let want: Vec<f32> = (0..8).map(|s| direct.step(&batch(s)).unwrap().loss).collect();
    let want_val = direct.eval_loss(&val).unwrap();

    let mut b = device::create(Device::Cpu, cfg.clone(), opts(), MatmulPrecision::Fp32, None).unwrap();
    assert_eq!(b.device(), "cpu");
    let mut got: Vec<f32> = (0..4).map(|s| b.step(&batch(s)).unwrap().loss).collect();
    // Resume a second backend from the first one's state after 4 steps.
    let state = (b.state().unwrap(), b.step_index());
    let mut resumed: Box<dyn Backend> =
        device::create(Device::Cpu, cfg.clone(), opts(), MatmulPrecision::Fp32, Some(state)).unwrap();
    assert_eq!(resumed.step_index(), 4);
    got.extend((4..8).map(|s| resumed.step(&batch(s)).unwrap().loss));
    assert_eq!(got, want);
    assert_eq!(resumed.eval_loss(&val).unwrap(), want_val);
}

#[test]
fn unavailable_device_is_one_line() {
    let cfg = preset("lm-20k").unwrap();
    let e = device::create(Device::Cuda, cfg, opts(), MatmulPrecision::Fp32, None).err().unwrap();
    assert!(e.starts_with("device cuda: ") && !e.contains('\n'), "{e}");
    assert_eq!(Device::parse("cuda").unwrap(), Device::Cuda);
    assert!(Device::parse("tpu").unwrap_err().contains("expected `cpu` or `cuda`"));
}
