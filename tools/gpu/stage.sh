#!/usr/bin/env bash
# Builds (release) and copies what tools/gpu/check.sh needs into target/gpu-bin (about 18 MiB):
# host, the CUDA backend library, cuda-check and the int, fp and block format plugins. Run it on
# the build machine (no GPU needed), then carry target/gpu-bin to the GPU machine with the
# repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p host -p backend-cuda -p plugin-int -p plugin-fp -p plugin-block
mkdir -p target/gpu-bin
cp target/release/host target/release/libbackend_cuda.so target/release/cuda-check target/release/libplugin_int.so \
  target/release/libplugin_fp.so target/release/libplugin_block.so target/gpu-bin/
du -sh target/gpu-bin
