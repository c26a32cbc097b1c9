#!/usr/bin/env bash
# Everything that needs a GPU, in one unattended call (under 5 minutes on one H100), from
# binaries built on a machine without one (tools/gpu/stage.sh puts them in target/gpu-bin;
# override with BIN=folder). Needs no Rust toolchain and no network; the speed table also needs
# python3 with PyTorch built for CUDA. Exit status 0 only if every check passed.
#
#  1. probe: the backend library's version and the device (finds libcuda, NVRTC and cuBLAS on
#     the system path, in HOST_CUDA_LIBS or in Python's nvidia-* packages);
#  2. kernels: every CUDA kernel against its CPU reference, max abs difference printed;
#     formats: the native kernels of the built-in formats (int, fp, raw, MX, NVFP4) against the
#     plugins bit for bit (per format the max abs difference and the differing values; seconds);
#  3. compare: a 200-step run of lm-1m on the CPU and CUDA backends from one seed (losses within
#     1e-3 relative at every step), then resumption across backends (CPU -> CUDA, CUDA -> CPU);
#     TF32 and BF16 training against fp32 (validation loss within 2 % and 5 %);
#  4. QAT: `host train --format int4` on the CPU, on CUDA through the int plugin on the host, and
#     on CUDA with the native int kernels (HOST_CUDA_NATIVE_FORMATS=1; the record must say
#     so): loss every 10 steps within 1e-3 relative of the CPU's;
#  5. speed: training tokens/s for three sizes (10M, 30M at context 1024, 85M) on the CUDA
#     backend and in PyTorch eager, with the matrix products in fp32, TF32 and BF16 (ours:
#     `--matmul`, fp32 data; PyTorch's bf16 is autocast, see torch_speed.py).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
BIN="${BIN:-$root/target/gpu-bin}"
[ -x "$BIN/cuda-check" ] || BIN="$root/target/release"
export HOST_CUDA_BACKEND="$BIN/libbackend_cuda.so"
# CUDA libraries installed as Python packages (nvidia-cublas, nvidia-cuda-nvrtc), wherever this
# python3 keeps them (a virtualenv or conda prefix that is not activated included).
if [ -z "${HOST_CUDA_LIBS:-}" ]; then
  site="$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)" \
    && export HOST_CUDA_LIBS="$site"
fi
export HOST_CUDA_CACHE="${HOST_CUDA_CACHE:-$root/target/cuda-cache}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fails=0
step() { echo; echo "== $1"; }
check() { if "$@"; then echo "-> ok"; else echo "-> FAILED: $*"; fails=$((fails + 1)); fi; }
timed() { local t0=$SECONDS; "$@"; local rc=$?; echo "   ($((SECONDS - t0)) s)"; return $rc; }

step "probe"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
if ! timed "$BIN/cuda-check" probe; then echo "no usable GPU: stopping"; exit 1; fi

step "kernels against their CPU reference"
check timed "$BIN/cuda-check" kernels

step "built-in format kernels against the plugins, bit for bit"
check timed "$BIN/cuda-check" formats "$BIN"

step "200 steps, CPU vs CUDA, and resumption across backends"
check timed "$BIN/cuda-check" compare lm-1m 200

step "gradient accumulation (4 micro-batches), CPU vs CUDA"
check timed "$BIN/cuda-check" compare lm-200k 40 4

step "TF32 and BF16 training against fp32 (lm-1m, 100 steps, CUDA)"
check timed "$BIN/cuda-check" precision lm-1m 100

step "QAT through the int plugin (int4), CPU vs CUDA"
qat() {
  # cpu; cuda with the plugin on the host; cuda with the native int kernels on the device.
  for run in cpu cuda cuda-native; do
    native=0; [ "$run" = cuda-native ] && native=1
    HOST_CUDA_NATIVE_FORMATS=$native "$BIN/host" train --device "${run%-native}" --model lm-500k --format int4 \
      --steps 100 --seed 2 --plugins "$BIN/libplugin_int.so" --eval-every 50 --checkpoint-every 100 \
      --out "$tmp/qat-$run" --json > "$tmp/qat-$run.json" || return 1
  done
  python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r}
a = losses(f"{tmp}/qat-cpu/metrics.jsonl")
ok = True
for run in ("cuda", "cuda-native"):
    b = losses(f"{tmp}/qat-{run}/metrics.jsonl")
    assert a.keys() == b.keys() and a, (sorted(a), sorted(b))
    worst = max((abs(b[s] - a[s]) / abs(a[s]), s) for s in a)
    kernels = json.load(open(f"{tmp}/qat-{run}.json")).get("weight_kernels", "the plugin on the host")
    print(f"QAT int4 lm-500k, {run} (weights: {kernels}): loss at step 100 cpu {a[100]:.5f} cuda {b[100]:.5f}; max relative difference {worst[0]:.2e} (step {worst[1]})")
    ok &= worst[0] <= 1e-3 and (run != "cuda-native" or "native" in kernels)
sys.exit(0 if ok else 1)
PY
}
check timed qat

step "speed: tokens/s, CUDA backend vs PyTorch eager (same GPU)"
speed() {
  "$BIN/cuda-check" speed | tee "$tmp/ours.txt" || return 1
  if ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "PyTorch with CUDA not available: no comparison"
    return 0
  fi
  python3 "$here/torch_speed.py" > "$tmp/torch.txt" || return 1
  python3 - "$tmp/ours.txt" "$tmp/torch.txt" <<'PY'
import sys
ours = {l.split()[0]: l.split() for l in open(sys.argv[1]) if l.startswith("gpu-")}
torch = {l.split()[0]: l.split() for l in open(sys.argv[2])}
precisions = ("fp32", "tf32", "bf16")
print(f"{'size':<9} {'ctx':>5}" + "".join(f" {'ours ' + p:>10} {'torch ' + p:>11} {'ratio':>6}" for p in precisions))
for k, o in ours.items():
    t = torch[k]
    line = f"{k:<9} {o[2]:>5}"
    for i in range(len(precisions)):
        a, b = float(o[4 + i]), float(t[1 + i])
        line += f" {a:>10.0f} {b:>11.0f} {a / b:>6.2f}"
    print(line)
PY
}
check timed speed

echo
if [ "$fails" -eq 0 ]; then echo "tools/gpu/check.sh: all checks passed"; else echo "tools/gpu/check.sh: $fails check(s) FAILED"; fi
[ "$fails" -eq 0 ]
