#!/usr/bin/env python3
"""Golden vectors for the raw minifloat casts of plugins/fp (`fp-raw` presets).

Writes plugins/fp/golden/<name>.txt for each type below: one line per case,
`input_bits_hex output_bits_hex`, both float32 bit patterns (8 lower-case hex
digits), the output being what ml_dtypes gives for
`np.float32(input).astype(TYPE).astype(np.float32)`. Lines starting with `#`
are comments (the header says which ml_dtypes / numpy produced the file).

The Rust tests in plugins/fp read these files with include_str! and require
bit-for-bit agreement (NaN outputs compared by class). Python is needed only
to regenerate them, never to build or test.

How to run (from the repository root):

    pip install ml_dtypes==0.7.0 numpy        # the files were made with 0.7.0, numpy 2.4
                                              # (0.5.x-0.6.0 differ only in E8M0 of f32 subnormals)
    python3 tools/golden/generate.py               # a few seconds
    python3 tools/golden/generate.py --exhaustive  # also checks the breakpoints against a
                                                   # scan of all 2^32 inputs (about 15 CPU-minutes)

Cases in each file (deduplicated, sorted by input bits):
  - every code of the type (both signs, NaN/Inf codes included), decoded;
  - every midpoint between neighbouring representable values (the ties) and
    the float32 values just below and above it (nextafter);
  - beyond the maximum: max + half a top step (the overflow tie), its float32
    neighbours, 2 max, 1e30, the largest float32, +-inf, NaNs of both signs;
  - tiny values: half the smallest subnormal and its neighbours, float32
    subnormals, +-0;
  - E8M0: every power of two, midpoints in linear space (1.5 * 2^k) and in
    log space (sqrt(2) * 2^k, rounded to float32), with their neighbours;
  - breakpoints: every input whose output differs from that of the input
    one below it (NaN outputs counted as one class), and that one. They are
    found by bisection over the finite nonzero bit patterns of each sign
    (the cast is monotone in magnitude there; E8M0's NaN for 0 is not), and
    +-0, +-inf and NaN patterns are added; `--exhaustive` confirms the list with a scan of all 2^32
    patterns (the files in the repository were checked that way). Since the
    cast is a step function of the bit pattern, agreeing on these lines
    means agreeing on every float32 input.
"""

import argparse
import os
import sys

import ml_dtypes
import numpy as np

TYPES = [
    # (file name, ml_dtypes type name, bits per code)
    ("e2m1", "float4_e2m1fn", 4),
    ("e2m3", "float6_e2m3fn", 6),
    ("e3m2", "float6_e3m2fn", 6),
    ("e4m3", "float8_e4m3fn", 8),  # also the NVFP4 block-scale type
    ("e5m2", "float8_e5m2", 8),
    ("e8m0", "float8_e8m0fnu", 8),  # the OCP MX block-scale type
]

CANON_NAN = np.uint32(0x7FC00000)


def cast(dt, x):
    """float32 array -> float32 array through the type `dt`, as bit patterns."""
    with np.errstate(all="ignore"):
        return np.asarray(x, dtype=np.float32).astype(dt).astype(np.float32).view(np.uint32)


def f32(v):
    return np.float32(v)


def neighbours(v):
    v = f32(v)
    with np.errstate(all="ignore"):
        return [v, np.nextafter(v, f32(np.inf)), np.nextafter(v, f32(-np.inf))]


def cases(dt, bits):
    out = []
    codes = np.arange(1 << bits, dtype=np.uint8).view(dt).astype(np.float32)
    out.extend(codes)
    finite = np.unique(np.abs(codes[np.isfinite(codes)]).astype(np.float64))
    vmax, vmin_pos = finite[-1], finite[finite > 0][0]
    # Midpoints (exact in float64, then rounded to float32: exact for these types).
    for a, b in zip(finite[:-1], finite[1:]):
        out.extend(neighbours((a + b) / 2))
        out.extend(neighbours(a))
        out.extend(neighbours(np.sqrt(a * b)) if a > 0 else [])
    out.extend(neighbours(vmax))
    # Beyond the maximum: the overflow tie at max + half a top step.
    top_step = finite[-1] - finite[-2]
    if finite[-1] / finite[-2] == 2.0:  # E8M0: the next power of two
        out.extend(neighbours(1.5 * vmax))
        out.extend(neighbours(np.sqrt(2.0) * vmax))
    else:
        out.extend(neighbours(vmax + top_step / 2))
        out.extend(neighbours(vmax + top_step))
    with np.errstate(all="ignore"):
        out.extend([f32(2 * vmax), f32(1e30), f32(np.finfo(np.float32).max), f32(np.inf)])
    # Tiny values.
    for v in [vmin_pos / 2, vmin_pos / 4, vmin_pos * 0.75, vmin_pos * 1.5]:
        out.extend(neighbours(v))
    out.extend([f32(0.0), f32(1e-45), f32(2.0**-126), f32(2.0**-127), f32(2.0**-149), f32(1e-40)])
    out.extend(neighbours(np.finfo(np.float32).tiny))
    # E8M0: powers of two, linear and log midpoints over the whole range.
    if finite[-1] / finite[-2] == 2.0:
        for k in range(-127, 128):
            p = 2.0**k
            out.extend(neighbours(p))
            out.extend(neighbours(1.5 * p))
            out.extend(neighbours(np.sqrt(2.0) * p))
    x = np.array(out, dtype=np.float32)
    x = np.concatenate([x, -x])
    b = x.view(np.uint32)
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7FBFFFFF], dtype=np.uint32)
    return np.concatenate([b, nans])


def canon(y):
    y = y.copy()
    y[np.isnan(y.view(np.float32))] = CANON_NAN
    return y


def bisect_breakpoints(dt):
    """Breakpoints by bisection over the finite nonzero inputs of each sign (monotone there), plus +-0, +-inf, NaNs."""
    found = set()

    def out(b):
        return canon(cast(dt, np.array([b], dtype=np.uint32).view(np.float32)))[0]

    def rec(lo, hi, ylo, yhi):
        # Invariant: out(lo) = ylo, out(hi) = yhi, ylo != yhi.
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ym = out(mid)
            if ym != ylo:
                if ym != yhi:
                    rec(mid, hi, ym, yhi)
                hi, yhi = mid, ym
            else:
                lo, ylo = mid, ym
        found.update([lo, hi])

    # Finite nonzero inputs of each sign: monotone there (E8M0's NaN for 0 and inf is not).
    for lo, hi in [(0x00000001, 0x7F7FFFFF), (0x80000001, 0xFF7FFFFF)]:
        ylo, yhi = out(lo), out(hi)
        if ylo != yhi:
            rec(lo, hi, ylo, yhi)
    # NaN patterns: both edges of each NaN range and a few payloads.
    for b in [0x00000000, 0x00000001, 0x7F7FFFFF, 0x7F800000, 0x7F800001, 0x7FC00000, 0x7FFFFFFF,
              0x80000000, 0x80000001, 0xFF7FFFFF, 0xFF800000, 0xFF800001, 0xFFFFFFFF]:
        found.add(b)
    return np.array(sorted(found), dtype=np.uint64).astype(np.uint32)


def breakpoints(dt):
    """Every input bit pattern whose (NaN-canonical) output differs from the previous one's, and that one."""
    found = []
    chunk = 1 << 24
    prev = None
    for start in range(0, 1 << 32, chunk):
        b = np.arange(start, start + chunk, dtype=np.uint64).astype(np.uint32)
        y = canon(cast(dt, b.view(np.float32)))
        if prev is not None and y[0] != prev:
            found.extend([start - 1, start])
        d = np.nonzero(y[1:] != y[:-1])[0]
        found.extend((start + d).tolist())
        found.extend((start + d + 1).tolist())
        prev = y[-1]
    return np.array(found, dtype=np.uint64).astype(np.uint32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exhaustive", action="store_true", help="check the breakpoints by a scan of all 2^32 inputs")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "fp", "golden"))
    ap.add_argument("--only", help="comma-separated file names to write (e.g. e2m1,e8m0)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    for name, tname, bits in TYPES:
        if only and name not in only:
            continue
        dt = getattr(ml_dtypes, tname)
        b = cases(dt, bits)
        b = np.concatenate([b, bisect_breakpoints(dt)])
        if args.exhaustive:
            full = breakpoints(dt)
            missing = np.setdiff1d(full, b)
            if len(missing):
                sys.exit(f"{name}: the cases miss breakpoints {[hex(v) for v in missing[:10]]}")
            print(f"{name}: the cases hold all {len(full)} breakpoints of the full scan", file=sys.stderr)
        b = np.unique(b)
        y = cast(dt, b.view(np.float32))
        path = os.path.join(args.out, f"{name}.txt")
        with open(path, "w") as f:
            f.write(f"# ml_dtypes.{tname}: float32 -> {tname} -> float32, written by tools/golden/generate.py\n")
            f.write(f"# ml_dtypes {ml_dtypes.__version__}, numpy {np.__version__}; {len(b)} cases")
            f.write(" (every breakpoint of the cast included)\n")
            f.write("# input_bits output_bits (float32 bit patterns)\n")
            for i, o in zip(b.tolist(), y.tolist()):
                f.write(f"{i:08x} {o:08x}\n")
        print(f"{path}: {len(b)} cases, {os.path.getsize(path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
