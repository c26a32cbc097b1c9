#!/usr/bin/env python3
"""NumPy reference for `host rank -f int4-absmax-g32`: the GMSE of INT4
(levels -7..7) with an absmax scale per 32 values on N(0, 1) samples,
measured the straightforward vectorized NumPy way (float32, chunks of
2^22 samples, shape rows x 4096), one thread.

    OMP_NUM_THREADS=1 python tools/bench/numpy_int4_absmax_g32.py [--samples 1073741824]

Prints the GMSE and the throughput in M samples/s, to compare with
`host bench -f int4-absmax-g32 --threads 1 --samples N` (the engine row) and
`host rank -f int4-absmax-g32 --threads 1 --samples N` (end to end). The
random numbers differ from the host's (NumPy's PCG64 + ziggurat), so the
GMSE agrees within Monte Carlo error, not bit for bit.
"""
import argparse
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1 << 30)
    ap.add_argument("--chunk", type=int, default=1 << 22)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    chunks = max(1, a.samples // a.chunk)
    total, per_chunk = 0.0, []
    t0 = time.perf_counter()
    for _ in range(chunks):
        x = rng.standard_normal(a.chunk, dtype=np.float32).reshape(-1, 32)
        step = np.abs(x).max(axis=1, keepdims=True) / np.float32(7)
        q = np.clip(np.rint(x / step), -7, 7) * step
        d = q - x
        e = float(np.einsum("ij,ij->", d, d, dtype=np.float64)) / a.chunk
        per_chunk.append(e)
    dt = time.perf_counter() - t0
    n = chunks * a.chunk
    g = np.mean(per_chunk)
    se = np.std(per_chunk, ddof=1) / np.sqrt(len(per_chunk)) if len(per_chunk) > 1 else float("nan")
    print(f"numpy int4-absmax-g32: GMSE {g:.6e} ± {se:.1e}, {n} samples in {dt:.2f} s = {n / dt / 1e6:.1f} M samples/s")


if __name__ == "__main__":
    main()
