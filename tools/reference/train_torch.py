#!/usr/bin/env python3
"""PyTorch eager reference of the trainer crate's model and recipe.

The model and recipe, written the plain PyTorch way, so that `host train`
can be checked against an independent implementation (llm.c style):

  - model: byte-level decoder, vocabulary 256; token embedding; n_layer blocks
    of [RMSNorm -> causal attention with RoPE (base 10000, interleaved pairs
    (2i, 2i+1), frequency base^(-2i/hd)) -> residual; RMSNorm -> SwiGLU MLP
    (silu(x W1^T) * x W3^T) W2^T -> residual]; final RMSNorm; untied head; no
    biases; RMSNorm eps 1e-5 inside the square root;
  - init: every matrix ~ N(0, 0.02), `wo` and `w2` scaled by 1/sqrt(2 n_layer),
    norm gains 1;
  - recipe: AdamW (0.9, 0.95), eps 1e-8, decoupled weight decay 0.1 on every
    matrix (embedding, block linears, head), none on norm gains; global-norm
    clipping at 1.0; linear warm-up over ceil(10 %) of the steps then cosine to
    10 % of the peak (trainer/src/optim.rs `lr_at`); batch 16 x 128; steps =
    ceil(tokens_per_param * non_embedding_params / 2048).

Three modes:

  --ref DIR   replay a run dumped by the Rust example `reference_dump` (same
              initial parameters, same batches, same validation windows) and
              compare with what our trainer computed: the step-0 loss and
              every parameter's gradient (max abs / max relative difference,
              against the f32 training path and the f64 path), then the
              per-step training losses (with `rust_run.json`, written by
              `reference_dump --train`) and the final validation loss.

  --data DIR --seed S
              an independent run: PyTorch's own initialization (torch
              generator seeded with S) and its own uniform window sampling
              (numpy, seeded with S), the trainer's file split and
              validation windows (reimplemented here; checked against `val.u8`
              when --ref is also given). This is the "different seed noise,
              same recipe" comparison.

  --data DIR --eval-only CKPT
              evaluate parameters (a `host train` checkpoint.safetensors or a
              --save file) on the validation windows.

With a corpus (--data or --full-val) the final model is also evaluated on
every non-overlapping window of the validation split (3544 windows of 129
bytes for Shakespeare), which has far less noise than the 64 windows that
`host train` uses by default.

Usage (from the repository root; Python 3.10+, torch 2.x CPU, numpy,
safetensors; nothing here is needed to build or test the Rust workspace):

    tools/shakespeare/fetch.sh                                  # data/shakespeare
    cargo build --release -p trainer --example reference_dump
    target/release/examples/reference_dump --data data/shakespeare --seed 0 \\
        --out runs/ref-s0 --train                               # our run (~minutes)
    python3 tools/reference/train_torch.py --ref runs/ref-s0 --print-steps 20
    python3 tools/reference/train_torch.py --ref runs/ref-s0 --steps 50 --dtype float64
    python3 tools/reference/train_torch.py --data data/shakespeare --seed 0 \\
        --ref runs/ref-s0                                       # own init + batches
    python3 tools/reference/train_torch.py --data data/shakespeare \\
        --eval-only runs/lm-200k-none-s0/checkpoint.safetensors  # a host train run

`--threads` (default 1) sets torch's intra-op threads; `--json FILE` writes
the losses and the final validation loss; `--golden FILE` (with --ref, best
with --dtype float64) writes the golden file of trainer/tests/torch_reference.rs:

    target/release/examples/reference_dump --model lm-50k --data synthetic \
        --seed 0 --steps 12 --eval-windows 16 --out runs/gold --train
    python3 tools/reference/train_torch.py --ref runs/gold --dtype float64 \
        --golden trainer/tests/golden/torch_lm50k_synthetic.json

PyTorch's CPU matrix products are not bit-reproducible from run to run (the
BLAS may pick its kernels by buffer alignment), so two runs of the same seed
can end a few 1e-4 apart; our trainer is bit-reproducible.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

VOCAB = 256
NORM_EPS = 1e-5
ROPE_BASE = 10000.0

# (name, n_layer, n_head, d_model, d_hidden, lr) as in trainer/src/model.rs PRESETS.
PRESETS = {
    "bench-tiny": (4, 4, 128, 384, 2e-3),
    "lm-50k": (2, 3, 48, 128, 3e-3),
    "lm-100k": (2, 4, 64, 176, 2.7e-3),
    "lm-200k": (4, 4, 64, 176, 2.4e-3),
    "lm-500k": (4, 3, 96, 288, 2e-3),
    "lm-1m": (4, 4, 144, 384, 1.6e-3),
    "lm-2m": (6, 5, 160, 432, 1.3e-3),
    "lm-3m": (7, 6, 192, 512, 1e-3),
}
CTX, BATCH = 128, 16  # the presets' context and batch (a --ref run reads its own from meta.json)
BETAS, ADAM_EPS, WEIGHT_DECAY, CLIP_NORM = (0.9, 0.95), 1e-8, 0.1, 1.0
WARMUP_FRAC, MIN_LR_FRAC = 0.1, 0.1


def lr_at(step, total, peak):
    """trainer/src/optim.rs lr_at (computed in f64, rounded to f32 there)."""
    total = max(total, 1)
    warmup = max(math.ceil(WARMUP_FRAC * total), 1)
    if step < warmup:
        return peak * (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    lo = MIN_LR_FRAC * peak
    return lo + 0.5 * (peak - lo) * (1.0 + math.cos(math.pi * progress))


def rmsnorm(x, g):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * g


def rope(x, cos, sin):
    """Rotates interleaved pairs (2i, 2i+1) of the last dim; x is (B, H, T, hd)."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Block(torch.nn.Module):
    def __init__(self, d, h, dtype):
        super().__init__()
        P = lambda *s: torch.nn.Parameter(torch.empty(*s, dtype=dtype))
        self.attn_norm, self.wq, self.wk, self.wv, self.wo = P(d), P(d, d), P(d, d), P(d, d), P(d, d)
        self.mlp_norm, self.w1, self.w3, self.w2 = P(d), P(h, d), P(h, d), P(d, h)


class Model(torch.nn.Module):
    def __init__(self, n_layer, n_head, d, h, ctx, dtype):
        super().__init__()
        self.n_head = n_head
        self.tok_emb = torch.nn.Parameter(torch.empty(VOCAB, d, dtype=dtype))
        self.blocks = torch.nn.ModuleList(Block(d, h, dtype) for _ in range(n_layer))
        self.final_norm = torch.nn.Parameter(torch.empty(d, dtype=dtype))
        self.head = torch.nn.Parameter(torch.empty(VOCAB, d, dtype=dtype))
        hd = d // n_head
        freq = ROPE_BASE ** (-2.0 * torch.arange(hd // 2, dtype=torch.float64) / hd)
        ang = torch.arange(ctx, dtype=torch.float64)[:, None] * freq[None, :]
        self.register_buffer("cos", ang.cos().to(dtype), persistent=False)
        self.register_buffer("sin", ang.sin().to(dtype), persistent=False)

    def init_(self, seed):
        """N(0, 0.02) matrices, wo/w2 scaled by 1/sqrt(2 n_layer), gains 1."""
        g = torch.Generator().manual_seed(seed)
        out_scale = 1.0 / math.sqrt(2 * len(self.blocks))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.ndim == 1:
                    p.fill_(1.0)
                else:
                    std = 0.02 * (out_scale if name.endswith((".wo", ".w2")) else 1.0)
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * std)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.tok_emb[idx]
        cos, sin = self.cos[:T], self.sin[:T]
        for b in self.blocks:
            y = rmsnorm(x, b.attn_norm)
            heads = lambda w: (y @ w.T).view(B, T, self.n_head, -1).transpose(1, 2)
            q, k, v = rope(heads(b.wq), cos, sin), rope(heads(b.wk), cos, sin), heads(b.wv)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/sqrt(hd)
            x = x + a.transpose(1, 2).reshape(B, T, -1) @ b.wo.T
            y = rmsnorm(x, b.mlp_norm)
            x = x + (F.silu(y @ b.w1.T) * (y @ b.w3.T)) @ b.w2.T
        logits = rmsnorm(x, self.final_norm) @ self.head.T
        return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


def rows_to_xy(rows):
    """(n, ctx+1) uint8 rows -> inputs bytes 0..ctx, targets bytes 1..=ctx."""
    t = torch.from_numpy(rows.astype(np.int64))
    return t[:, :-1], t[:, 1:]


@torch.no_grad()
def eval_loss(model, val, batch):
    """Mean loss per predicted byte over all validation windows (chunks of `batch` rows)."""
    total, n = 0.0, 0
    for i in range(0, len(val), batch):
        x, y = rows_to_xy(val[i : i + batch])
        total += model(x, y).item() * y.numel()
        n += y.numel()
    return total / n


def make_optimizer(model, peak_lr):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=peak_lr, betas=BETAS, eps=ADAM_EPS, foreach=False)


def train_step(model, opt, rows, lr):
    for g in opt.param_groups:
        g["lr"] = lr
    x, y = rows_to_xy(rows)
    loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM, foreach=False)
    opt.step()
    return loss.item(), norm.item()


def load_corpus(folder):
    """The trainer's whole-file split (trainer/src/data.rs): files sorted by
    path, file i is validation when i % 10 == 9 (the last file if fewer than 10)."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [os.path.join(root, n) for n in names if not n.startswith(".")]
    files.sort(key=lambda p: [c.encode() for c in p.split(os.sep)])
    train, val = bytearray(), bytearray()
    for i, f in enumerate(files):
        is_val = (i + 1 == len(files)) if len(files) < 10 else (i % 10 == 9)
        (val if is_val else train).extend(open(f, "rb").read())
    return np.frombuffer(bytes(train), np.uint8), np.frombuffer(bytes(val), np.uint8)


def val_windows(v, n, ctx):
    """Data::val_batches for files: n evenly spaced non-overlapping windows."""
    w = ctx + 1
    fit = len(v) // w
    if fit <= n:
        return v[: fit * w].reshape(fit, w)
    starts = [0] if n == 1 else [i * (len(v) - w) // (n - 1) for i in range(n)]
    return np.stack([v[s : s + w] for s in starts])


def compare_grads(model, ref, rows):
    """Step-0 loss and gradients vs the dumped f32 and f64 gradients."""
    g = load_file(os.path.join(ref, "grads0.safetensors"))
    meta = json.load(open(os.path.join(ref, "meta.json")))
    x, y = rows_to_xy(rows)
    model.zero_grad(set_to_none=True)
    loss = model(x, y)
    loss.backward()
    print(f"step-0 loss: torch {loss.item():.9f}  rust f32 {meta['loss0_f32']:.9f}  rust f64 {meta['loss0_f64']:.9f}")
    print(f"{'tensor':<18} {'|g|max':>9} {'abs(t-r32)':>10} {'rel':>8} {'abs(t-r64)':>10} {'rel':>8} {'abs(r32-r64)':>12}")
    worst = 0.0
    for name, p in model.named_parameters():
        t = p.grad.double()
        r32, r64 = g[name].double(), g["f64." + name].double()
        scale = r64.abs().max().item()
        d32, d64, d3264 = (t - r32).abs().max().item(), (t - r64).abs().max().item(), (r32 - r64).abs().max().item()
        worst = max(worst, d32 / scale)
        print(f"{name:<18} {scale:9.3e} {d32:10.3e} {d32 / scale:8.1e} {d64:10.3e} {d64 / scale:8.1e} {d3264:12.3e}")
    print(f"largest difference torch vs rust f32, relative to the tensor's largest gradient: {worst:.2e}")
    model.zero_grad(set_to_none=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", help="folder written by `reference_dump` (init, batches, validation, rust results)")
    ap.add_argument("--data", help="independent run on this corpus folder (own init and batches)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the independent run")
    ap.add_argument("--model", default="lm-200k", help="preset (independent run; --ref reads meta.json)")
    ap.add_argument("--tokens-per-param", type=float, default=20.0)
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--steps", type=int, help="stop after this many steps (schedule still planned for the full run)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--print-steps", type=int, default=10, help="print every step up to this one, then every 100")
    ap.add_argument("--json", help="write losses and the validation loss to this file")
    ap.add_argument("--full-val", metavar="CORPUS", help="also evaluate on every non-overlapping window of the "
                    "validation split of this corpus folder (default: --data)")
    ap.add_argument("--save", help="write the final parameters to this safetensors file")
    ap.add_argument("--eval-only", metavar="CKPT", help="only evaluate these parameters (a safetensors file: "
                    "--save output, or a host train checkpoint.safetensors) on --data's validation windows")
    ap.add_argument("--golden", help="(with --ref) write the golden file of trainer/tests/torch_reference.rs: "
                    "per-step loss, gradient norm, lr, final validation loss, per-tensor sum and sum of squares")
    a = ap.parse_args()
    if not a.ref and not a.data:
        ap.error("pass --ref DIR (replay a dumped run) and/or --data DIR (independent run)")
    if a.eval_only and (a.ref or not a.data):
        ap.error("--eval-only needs --data (and --model), not --ref")
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)

    meta = json.load(open(os.path.join(a.ref, "meta.json"))) if a.ref else None
    if meta:
        c = meta["model"]
        n_layer, n_head, d, h, peak = c["n_layer"], c["n_head"], c["d_model"], c["d_hidden"], c["lr"]
        ctx, batch = c["ctx"], c["batch"]
    else:
        (n_layer, n_head, d, h, peak), ctx, batch = PRESETS[a.model], CTX, BATCH
    model = Model(n_layer, n_head, d, h, ctx, dtype)
    non_emb = n_layer * (4 * d * d + 3 * d * h + 2 * d) + d
    full_val = None
    if a.full_val or a.data:
        full_val = val_windows(load_corpus(a.full_val or a.data)[1], 1 << 62, ctx)

    if a.eval_only:
        st = load_file(a.eval_only)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(st.get("param." + name, st.get(name)).to(dtype))
        val = val_windows(load_corpus(a.data)[1], a.eval_windows, ctx)
        print(f"{a.eval_only}: validation loss {eval_loss(model, val, batch):.5f} on {len(val)} windows, "
              f"{eval_loss(model, full_val, batch):.5f} on all {len(full_val)} windows")
        return

    if a.data:  # independent run
        train, v = load_corpus(a.data)
        total = max(math.ceil(a.tokens_per_param * non_emb / (batch * ctx)), 1)
        val = val_windows(v, a.eval_windows, ctx)
        if meta:
            ref_val = np.fromfile(os.path.join(a.ref, "val.u8"), np.uint8).reshape(-1, ctx + 1)
            assert np.array_equal(ref_val, val), "validation windows differ from the Rust dump"
            assert total == meta["total_steps"], (total, meta["total_steps"])
            print("validation windows and step count identical to the Rust dump")
        model.init_(a.seed)
        rng = np.random.default_rng(a.seed)
        starts = rng.integers(0, len(train) - ctx, size=(total, batch))  # start <= len - (ctx+1)
        batch_at = lambda s: np.stack([train[i : i + ctx + 1] for i in starts[s]])
        rust = None
        label = f"torch independent seed {a.seed}"
    else:  # replay
        total = meta["total_steps"]
        init = load_file(os.path.join(a.ref, "init.safetensors"))
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(init[name].to(dtype))
        batches = np.fromfile(os.path.join(a.ref, "batches.u8"), np.uint8).reshape(total, batch, ctx + 1)
        batch_at = lambda s: batches[s]
        val = np.fromfile(os.path.join(a.ref, "val.u8"), np.uint8).reshape(-1, ctx + 1)
        rp = os.path.join(a.ref, "rust_run.json")
        rust = json.load(open(rp)) if os.path.exists(rp) else None
        label = f"torch replay of {a.ref}"
        compare_grads(model, a.ref, batch_at(0))

    steps = min(a.steps or total, total)
    opt = make_optimizer(model, peak)
    print(f"{label}: {steps} of {total} steps, {a.dtype}, {len(val)} validation windows")
    losses, norms, maxdiff, t0 = [], [], 0.0, time.time()
    for s in range(steps):
        lr = float(np.float32(lr_at(s, total, peak)))  # the trainer rounds lr to f32
        loss, norm = train_step(model, opt, batch_at(s), lr)
        losses.append(loss)
        norms.append(norm)
        line = f"step {s:5d} lr {lr:.6f} loss {loss:.6f} grad_norm {norm:.5f}"
        if rust is not None:
            dl = loss - rust["loss"][s]
            maxdiff = max(maxdiff, abs(dl))
            line += f" | rust loss {rust['loss'][s]:.6f} (diff {dl:+.2e}) grad_norm {rust['grad_norm'][s]:.5f}"
        if s < a.print_steps or (s + 1) % 100 == 0 or s + 1 == steps:
            print(line, f"[{time.time() - t0:.0f} s]", flush=True)
    v = eval_loss(model, val, batch)
    tail = max(len(losses) // 10, 1)
    print(f"final: validation loss {v:.5f} nats/byte, train loss (mean of last {tail} steps) {np.mean(losses[-tail:]):.5f}")
    vf = None
    if full_val is not None:
        vf = eval_loss(model, full_val, batch)
        print(f"final: validation loss on all {len(full_val)} windows of the validation split {vf:.5f}")
    if a.save:
        from safetensors.torch import save_file
        save_file({n: p.detach().float().contiguous() for n, p in model.named_parameters()}, a.save)
    if rust is not None:
        rl = rust["loss"][:steps]
        print(f"max |torch - rust| per-step loss over {steps} steps: {maxdiff:.2e}; "
              f"mean of last {tail}: torch {np.mean(losses[-tail:]):.5f} rust {np.mean(rl[-tail:]):.5f}")
        if steps == total:
            print(f"rust validation loss {rust['val_loss']:.5f}  (torch - rust {v - rust['val_loss']:+.5f})")
    if a.golden:
        assert a.ref and not a.data, "--golden needs --ref (a replay) without --data"
        sums = {n: [p.double().sum().item(), p.double().pow(2).sum().item()] for n, p in model.named_parameters()}
        gold = {"generated_by": f"tools/reference/train_torch.py --ref {a.ref} --steps {steps} --dtype {a.dtype}",
                "torch": torch.__version__, "model": meta["model"], "seed": meta["seed"], "data": meta["data"],
                "total_steps": total, "steps": steps, "eval_windows": len(val), "loss": losses,
                "grad_norm": norms, "lr": [float(np.float32(lr_at(s, total, peak))) for s in range(steps)],
                "val_loss": v, "param_sum_sumsq": sums}
        with open(a.golden, "w") as f:
            json.dump(gold, f, indent=1)
            f.write("\n")
    if a.json:
        json.dump({"loss": losses, "grad_norm": norms, "val_loss": v, "val_loss_all": vf, "steps": steps, "total_steps": total,
                   "label": label, "dtype": a.dtype}, open(a.json, "w"))


if __name__ == "__main__":
    sys.exit(main())
