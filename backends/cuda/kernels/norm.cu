// RMSNorm forward and backward (y = x * rstd * g, rstd = 1/sqrt(mean(x^2) + eps)).

// One block per row.
extern "C" __global__ void rmsnorm_fwd(const float* x, const float* g, float* y, float* rstd, int rows, int d,
                                       float inv_d, float eps) {
    __shared__ float sh[32];
    int r = blockIdx.x;
    const float* xr = x + (long)r * d;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) ss += xr[j] * xr[j];
    ss = block_sum(ss, sh);
    float s = 1.0f / sqrtf(ss * inv_d + eps);
    if (threadIdx.x == 0) rstd[r] = s;
    for (int j = threadIdx.x; j < d; j += blockDim.x) y[(long)r * d + j] = xr[j] * s * g[j];
}

// dx += dy * g * s - x * k with k = dot(dy * g, x) * s^3 / d; one block per row.
extern "C" __global__ void rmsnorm_bwd_dx(const float* x, const float* g, const float* rstd, const float* dy,
                                          float* dx, int rows, int d, float inv_d) {
    __shared__ float sh[32];
    int r = blockIdx.x;
    const float* xr = x + (long)r * d;
    const float* dyr = dy + (long)r * d;
    float dot = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) dot += dyr[j] * g[j] * xr[j];
    dot = block_sum(dot, sh);
    float s = rstd[r];
    float k = dot * s * s * s * inv_d;
    for (int j = threadIdx.x; j < d; j += blockDim.x) dx[(long)r * d + j] += dyr[j] * g[j] * s - xr[j] * k;
}

// partial[c][j] = sum over the rows of chunk c (`chunk` rows, in order) of dy * x * s.
// Grid: (ceil(d / block), chunks).
extern "C" __global__ void rmsnorm_dg_partial(const float* x, const float* rstd, const float* dy, float* partial,
                                              int rows, int d, int chunk) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    int c = blockIdx.y;
    if (j >= d) return;
    int r1 = min(rows, (c + 1) * chunk);
    float acc = 0.0f;
    for (int r = c * chunk; r < r1; r++) acc += dy[(long)r * d + j] * x[(long)r * d + j] * rstd[r];
    partial[(long)c * d + j] = acc;
}

// out[j] = sum over c (in order) of partial[c][j].
extern "C" __global__ void sum_partials(const float* partial, float* out, int chunks, int d) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    float acc = 0.0f;
    for (int c = 0; c < chunks; c++) acc += partial[(long)c * d + j];
    out[j] = acc;
}
