//! The whole training recipe pinned against an independent implementation:
//! `golden/torch_lm50k_synthetic.json` holds what the PyTorch reference
//! (`tools/reference/train_torch.py`, plain `torch.nn.functional` ops,
//! `torch.optim.AdamW`, `clip_grad_norm_`, in float64) computed when it
//! replayed 12 steps of `lm-50k` on the default synthetic data, seed 0,
//! starting from our initial parameters and fed our batches (dumped by the
//! `reference_dump` example). Our f32 trainer must reproduce its per-step
//! losses, gradient norms and learning rates, the validation loss after the
//! run, and the sum and sum of squares of every parameter tensor.
//!
//! What this pins: the model (RoPE convention and frequencies, attention
//! scale, RMSNorm epsilon, SwiGLU), the loss, the backward pass, AdamW
//! (bias correction, epsilon placement, decoupled decay with the scheduled
//! rate, which tensors decay), clipping, and the schedule. A change to any of
//! them moves the losses or the parameter sums by far more than the
//! tolerances below; a deliberate change must regenerate the file (see the
//! header of train_torch.py: `reference_dump --model lm-50k --data synthetic
//! --seed 0 --steps 12 --eval-windows 16 --out DIR --train`, then
//! `train_torch.py --ref DIR --dtype float64 --golden FILE`). PyTorch is not
//! needed to run this test.
//!
//! Tolerances: our f32 arithmetic against f64. The step-0 gradients agree to
//! 5e-7 of each tensor's largest gradient (measured with the script); over 12
//! steps the losses differed by at most 2.0e-7 nats (validation 1.9e-7),
//! the gradient norms by 1.3e-7 relative, the parameter sums by 1.6e-8 of
//! `sqrt(n * sumsq)` (the largest possible |sum| of the tensor) and the sums
//! of squares by 3.1e-8 relative (measured; the test prints them). We allow
//! about 30 to 60 times that, for other CPUs' summation orders: 1e-5 nats on
//! losses, 5e-6 relative on gradient norms, 1e-6 relative on learning rates
//! (both sides round the same f64 value to f32), 1e-6 of `sqrt(n * sumsq)`
//! on sums and 1e-6 relative on sums of squares. A convention error such as
//! decaying the norm gains (final gains 0.3 % smaller: 3e-3 on their sum) or
//! dropping the bias correction (the first update 3x too large) is far
//! outside them.

use serde_json::Value;
use trainer::data::{Data, Source};
use trainer::{TrainOptions, Trainer, preset};

const GOLDEN: &str = include_str!("golden/torch_lm50k_synthetic.json");

fn f(v: &Value) -> f64 {
    v.as_f64().expect("golden number")
}

#[test]
fn replay_matches_pytorch_reference() {
    let g: Value = serde_json::from_str(GOLDEN).unwrap();
    let cfg = preset("lm-50k").unwrap();
    assert_eq!(serde_json::to_value(&cfg).unwrap(), g["model"], "the golden file was made for another lm-50k");
    assert_eq!(g["data"], "synthetic");
    let seed = g["seed"].as_u64().unwrap();
    let total = g["total_steps"].as_u64().unwrap();
    let steps = g["steps"].as_u64().unwrap();
    let data = Data::open(&Source::default()).unwrap();
    let mut t = Trainer::new(cfg.clone(), TrainOptions { seed, total_steps: total, ..Default::default() }).unwrap();
    let (mut dl, mut dn) = (0f64, 0f64);
    for s in 0..steps {
        let st = t.step(&data.train_batch(s, cfg.batch, cfg.ctx, seed)).unwrap();
        let (loss, norm, lr) = (f(&g["loss"][s as usize]), f(&g["grad_norm"][s as usize]), f(&g["lr"][s as usize]));
        dl = dl.max((st.loss as f64 - loss).abs());
        dn = dn.max((st.grad_norm as f64 - norm).abs() / norm);
        assert!((st.loss as f64 - loss).abs() < 1e-5, "step {s}: loss {} vs PyTorch {loss}", st.loss);
        assert!((st.grad_norm as f64 - norm).abs() < 5e-6 * norm, "step {s}: grad norm {} vs {norm}", st.grad_norm);
        assert!((st.lr as f64 - lr).abs() < 1e-6 * lr, "step {s}: lr {} vs {lr}", st.lr);
    }
    let windows = g["eval_windows"].as_u64().unwrap() as usize;
    let val = t.eval_loss(&data.val_batches(windows, cfg.ctx)).unwrap() as f64;
    let want = f(&g["val_loss"]);
    println!("max |loss - torch| {dl:.2e}, max rel grad-norm diff {dn:.2e}, val {val} vs {want}");
    assert!((val - want).abs() < 1e-5, "validation loss {val} vs PyTorch {want}");
    let sums = g["param_sum_sumsq"].as_object().unwrap();
    assert_eq!(sums.len(), t.layout().tensors.len());
    let (mut worst_sum, mut worst_sq) = (0f64, 0f64);
    for info in &t.layout().tensors {
        let p = &t.params()[info.range()];
        let sum: f64 = p.iter().map(|&x| x as f64).sum();
        let sq: f64 = p.iter().map(|&x| x as f64 * x as f64).sum();
        let want = &sums[&info.name];
        let (ws, wq) = (f(&want[0]), f(&want[1]));
        let bound = (p.len() as f64 * wq).sqrt();
        worst_sum = worst_sum.max((sum - ws).abs() / bound);
        worst_sq = worst_sq.max((sq - wq).abs() / wq);
        assert!((sum - ws).abs() < 1e-6 * bound, "{}: sum {sum} vs PyTorch {ws}", info.name);
        assert!((sq - wq).abs() < 1e-6 * wq, "{}: sum of squares {sq} vs PyTorch {wq}", info.name);
    }
    println!("parameter sums: max diff {worst_sum:.2e} of sqrt(n sumsq); sums of squares: max rel diff {worst_sq:.2e}");
}
