#!/usr/bin/env python3
"""Training tokens per second of the trainer's model in PyTorch eager mode, for the speed
table of tools/gpu/check.sh: the same architecture (byte vocabulary, RMSNorm, RoPE on
interleaved pairs, causal attention through scaled_dot_product_attention, SwiGLU, untied
head), AdamW (0.9, 0.95, weight decay 0.1), global-norm clipping at 1.0, fp32 weights, with
the matrix products in fp32, TF32 (allow_tf32) and BF16. PyTorch has no switch for BF16
products on fp32 data (set_float32_matmul_precision("medium") gives TF32 on CUDA), so `bf16` is
PyTorch's usual recipe, autocast to bfloat16 around the forward pass: it also runs attention
and other autocast ops in BF16, more than our `--matmul bf16` does. Sizes mirror SIZES in
backends/cuda/src/bin/cuda-check.rs. Prints one line per size: name, fp32, tf32 and bf16 tok/s."""
import sys
import time

import torch
import torch.nn.functional as F

SIZES = [
    ("gpu-10m", 6, 6, 384, 1024, 512, 32),
    ("gpu-30m", 8, 8, 512, 1536, 1024, 16),
    ("gpu-85m", 12, 12, 768, 2048, 1024, 8),
]


class Block(torch.nn.Module):
    def __init__(self, d, h, nh):
        super().__init__()
        self.nh = nh
        self.n1 = torch.nn.RMSNorm(d, eps=1e-5)
        self.qkv = torch.nn.Linear(d, 3 * d, bias=False)
        self.wo = torch.nn.Linear(d, d, bias=False)
        self.n2 = torch.nn.RMSNorm(d, eps=1e-5)
        self.w13 = torch.nn.Linear(d, 2 * h, bias=False)
        self.w2 = torch.nn.Linear(h, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        hd = d // self.nh
        q, k, v = self.qkv(self.n1(x)).view(b, t, 3, self.nh, hd).permute(2, 0, 3, 1, 4)

        def rope(z):
            z0, z1 = z[..., 0::2], z[..., 1::2]
            return torch.stack((z0 * cos - z1 * sin, z0 * sin + z1 * cos), dim=-1).flatten(-2)

        a = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        x = x + self.wo(a.transpose(1, 2).reshape(b, t, d))
        ab = self.w13(self.n2(x))
        a_, b_ = ab.chunk(2, dim=-1)
        return x + self.w2(F.silu(a_) * b_)


class Model(torch.nn.Module):
    def __init__(self, layers, nh, d, h, ctx):
        super().__init__()
        self.emb = torch.nn.Embedding(256, d)
        self.blocks = torch.nn.ModuleList(Block(d, h, nh) for _ in range(layers))
        self.nf = torch.nn.RMSNorm(d, eps=1e-5)
        self.head = torch.nn.Linear(d, 256, bias=False)
        hd = d // nh
        freq = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(ctx, dtype=torch.float64)[:, None] * freq[None, :]
        self.register_buffer("cos", ang.cos().float())
        self.register_buffer("sin", ang.sin().float())

    def forward(self, idx, tgt):
        x = self.emb(idx)
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin)
        return F.cross_entropy(self.head(self.nf(x)).view(-1, 256), tgt.reshape(-1))


PRECISIONS = ("fp32", "tf32", "bf16")


def tokens_per_second(size, precision):
    name, layers, nh, d, h, ctx, batch = size
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(0)
    model = Model(layers, nh, d, h, ctx).cuda()
    decay = [p for p in model.parameters() if p.dim() == 2]
    other = [p for p in model.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    data = torch.randint(0, 256, (batch, ctx + 1), device="cuda")
    idx, tgt = data[:, :-1], data[:, 1:]

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(idx, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    n = 10
    t0 = time.perf_counter()
    for _ in range(n):
        loss = step()
    loss.item()
    torch.cuda.synchronize()
    return n * batch * ctx / (time.perf_counter() - t0)


def main():
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}", file=sys.stderr)
    for size in SIZES:
        tps = [tokens_per_second(size, p) for p in PRECISIONS]
        print(size[0], " ".join(f"{t:.0f}" for t in tps))


if __name__ == "__main__":
    main()
