// Embedding, residual add, SwiGLU and cross-entropy (trainer/src/kernels.rs has the CPU versions).

// x[r] = emb[tok[r]] (rows x d).
extern "C" __global__ void embedding_fwd(const unsigned char* tok, const float* emb, float* x, int rows, int d) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)rows * d) return;
    int r = (int)(i / d), j = (int)(i % d);
    x[i] = emb[(long)tok[r] * d + j];
}

// demb[v] = sum of dx[r] over the rows r with token v, in row order (as the CPU's sequential
// loop): `order` lists the rows grouped by token, rows of token v at start[v]..start[v+1].
// Grid: (ceil(d / block), 256).
extern "C" __global__ void embedding_bwd(const int* order, const int* start, const float* dx, float* demb, int d) {
    int v = blockIdx.y;
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    float acc = 0.0f;
    for (int k = start[v]; k < start[v + 1]; k++) acc += dx[(long)order[k] * d + j];
    demb[(long)v * d + j] = acc;
}

// y += x.
extern "C" __global__ void add_inplace(float* y, const float* x, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

// y *= s.
extern "C" __global__ void scale_inplace(float* y, float s, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] *= s;
}

// y *= x, element by element (a straight-through mask on a gradient).
extern "C" __global__ void mul_inplace(float* y, const float* x, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] *= x[i];
}

// u = silu(a) * b with ab = [a | b] per row (rows x 2h), u rows x h.
extern "C" __global__ void swiglu_fwd(const float* ab, float* u, int rows, int h) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)rows * h) return;
    long r = i / h;
    int c = (int)(i % h);
    float a = ab[r * 2 * h + c], b = ab[r * 2 * h + h + c];
    float sg = 1.0f / (1.0f + expf(-a));
    u[i] = a * sg * b;
}

// dab (rows x 2h, overwritten) from du (rows x h).
extern "C" __global__ void swiglu_bwd(const float* ab, const float* du, float* dab, int rows, int h) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)rows * h) return;
    long r = i / h;
    int c = (int)(i % h);
    float a = ab[r * 2 * h + c], b = ab[r * 2 * h + h + c], g = du[i];
    float sg = 1.0f / (1.0f + expf(-a));
    float silu = a * sg;
    dab[r * 2 * h + h + c] = g * silu;
    dab[r * 2 * h + c] = g * b * sg * (1.0f + a * (1.0f - sg));
}

// losses[r] = logsumexp(logits[r]) - logits[r][tgt[r]]; one block of 256 threads per row (vocab 256).
extern "C" __global__ void ce_fwd(const float* logits, const unsigned char* tgt, float* losses, int rows) {
    __shared__ float sh[32];
    int r = blockIdx.x;
    const float* z = logits + (long)r * 256;
    float x = z[threadIdx.x];
    float mx = block_max(x, sh);
    float s = block_sum(expf(x - mx), sh);
    if (threadIdx.x == 0) losses[r] = mx + logf(s) - z[tgt[r]];
}

// In place: logits[r] <- scale * (softmax(logits[r]) - onehot(tgt[r])); one block of 256 per row.
extern "C" __global__ void ce_bwd(float* logits, const unsigned char* tgt, int rows, float scale) {
    __shared__ float sh[32];
    int r = blockIdx.x;
    float* z = logits + (long)r * 256;
    float x = z[threadIdx.x];
    float mx = block_max(x, sh);
    float e = expf(x - mx);
    float s = block_sum(e, sh);
    float k = scale / s;
    float g = e * k;
    if (threadIdx.x == (int)tgt[r]) g -= scale;
    z[threadIdx.x] = g;
}
