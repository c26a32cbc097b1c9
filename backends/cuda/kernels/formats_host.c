// The format kernels built for the host (build.rs, -O2 -ffp-contract=off, no -ffast-math):
// each kernel of formats.cu becomes a C function that runs its body for i = 0..n in order.
// src/formats/host.rs calls them; the tests compare them with the plugins bit for bit.
#include "formats.cuh"
#include "formats.cu"
