// Global gradient norm (f64 partial sums in a fixed order) and AdamW (trainer/src/optim.rs).

// partial[c] = sum of g[i]^2 (in f64) over chunk c of `chunk` values; one block per chunk.
extern "C" __global__ void sumsq_partial(const float* g, long n, double* partial, int chunk) {
    __shared__ double sh[32];
    long c0 = (long)blockIdx.x * chunk;
    long c1 = c0 + chunk < n ? c0 + chunk : n;
    double acc = 0.0;
    for (long i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
        double x = (double)g[i];
        acc += x * x;
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    acc = warp_sum_d(acc);
    if (lane == 0) sh[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        double t = lane < nw ? sh[lane] : 0.0;
        t = warp_sum_d(t);
        if (lane == 0) partial[blockIdx.x] = t;
    }
}

// out[0] = sum of partial[0..n] in a fixed order; one block of 256.
extern "C" __global__ void sum_doubles(const double* partial, int n, double* out) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    acc = warp_sum_d(acc);
    if (lane == 0) sh[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        double t = lane < nw ? sh[lane] : 0.0;
        t = warp_sum_d(t);
        if (lane == 0) out[0] = t;
    }
}

// One AdamW update of n values, the CPU's arithmetic in the CPU's order: the caller passes
// wd = 1 - lr * weight_decay (1 for norm gains), step = lr / bias_correction1,
// inv_sqrt_bc2 = 1 / sqrt(bias_correction2), scale (clipping), b1, 1 - b1, b2, 1 - b2, eps.
extern "C" __global__ void adamw(float* p, const float* g, float* m, float* v, long n, float wd, float step,
                                 float inv_sqrt_bc2, float scale, float b1, float omb1, float b2, float omb2,
                                 float eps) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * scale;
    float mi = b1 * m[i] + omb1 * gi;
    float vi = b2 * v[i] + omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) * inv_sqrt_bc2 + eps;
    p[i] = p[i] * wd - step * mi / denom;
}
