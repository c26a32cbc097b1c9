// Fused causal attention (flash-style: key/value or query tiles in shared memory, an online
// softmax, no score matrix in memory), forward and backward, on the head-major layout of
// rope.cu: hm is n_seq x n_head x 3 x ctx x hd, each (sequence, head) block holding q, k, v
// (ctx x hd each). Scale 1/sqrt(hd); head dimension at most 128 (4 values per lane).
//
// Thread layout of all three kernels: blocks of 8 warps; a block owns a tile of 32 rows
// (queries, or keys in attn_bwd_dkv), each warp 4 of them; lanes own output columns
// e = lane + 32 * k. Scores of one row against a tile of 32 keys (or queries) are computed one
// per lane, then broadcast with shuffles for the products with V (or dO, Q).
#define TILE 32
#define ROWS_PER_WARP 4
#define MAX_PER_LANE 4

// out (rows x d, head h in columns h*hd..) and lse (n_seq*n_head x ctx: log-sum-exp of the
// scaled scores of each query row). Grid: (ceil(ctx / 32), n_seq * n_head); 256 threads;
// shared memory TILE * (2 * hd + 1) floats.
extern "C" __global__ void attn_fwd(const float* hm, float* out, float* lse, int n_head, int ctx, int hd, float scale) {
    extern __shared__ float sm[];
    float* Ks = sm;                    // TILE x (hd + 1)
    float* Vs = sm + TILE * (hd + 1);  // TILE x hd
    int bh = blockIdx.y, b = bh / n_head, h = bh % n_head, d = n_head * hd;
    int q0 = blockIdx.x * TILE;
    const float* Q = hm + (long)bh * 3 * ctx * hd;
    const float* K = Q + (long)ctx * hd;
    const float* V = K + (long)ctx * hd;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float m[ROWS_PER_WARP], l[ROWS_PER_WARP], o[ROWS_PER_WARP][MAX_PER_LANE];
#pragma unroll
    for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
        m[rr] = -INFINITY;
        l[rr] = 0.0f;
#pragma unroll
        for (int k = 0; k < MAX_PER_LANE; k++) o[rr][k] = 0.0f;
    }
    int qmax = min(q0 + TILE - 1, ctx - 1);
    for (int k0 = 0; k0 <= qmax; k0 += TILE) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < TILE * hd; idx += blockDim.x) {
            int j = idx / hd, e = idx % hd, kj = k0 + j;
            Ks[j * (hd + 1) + e] = kj < ctx ? K[(long)kj * hd + e] : 0.0f;
            Vs[j * hd + e] = kj < ctx ? V[(long)kj * hd + e] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
            int i = q0 + warp * ROWS_PER_WARP + rr;
            if (i >= ctx || k0 > i) continue;  // uniform over the warp
            const float* qi = Q + (long)i * hd;
            int j = k0 + lane;
            float s = -INFINITY;
            if (j <= i) {
                float acc = 0.0f;
                for (int e = 0; e < hd; e++) acc += qi[e] * Ks[lane * (hd + 1) + e];
                s = acc * scale;
            }
            float mnew = fmaxf(m[rr], warp_max(s));
            float p = j <= i ? expf(s - mnew) : 0.0f;
            float corr = expf(m[rr] - mnew);
            l[rr] = l[rr] * corr + warp_sum(p);
#pragma unroll
            for (int k = 0; k < MAX_PER_LANE; k++) o[rr][k] *= corr;
            int last = min(TILE, i - k0 + 1);
            for (int jj = 0; jj < last; jj++) {
                float pj = __shfl_sync(FULL_MASK, p, jj);
#pragma unroll
                for (int k = 0; k < MAX_PER_LANE; k++) {
                    int e = lane + 32 * k;
                    if (e < hd) o[rr][k] += pj * Vs[jj * hd + e];
                }
            }
            m[rr] = mnew;
        }
    }
#pragma unroll
    for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
        int i = q0 + warp * ROWS_PER_WARP + rr;
        if (i >= ctx) continue;
        float inv = 1.0f / l[rr];
#pragma unroll
        for (int k = 0; k < MAX_PER_LANE; k++) {
            int e = lane + 32 * k;
            if (e < hd) out[((long)b * ctx + i) * d + h * hd + e] = o[rr][k] * inv;
        }
        if (lane == 0) lse[(long)bh * ctx + i] = m[rr] + logf(l[rr]);
    }
}

// delta[bh][i] = dot(dout row i, out row i) over head h: the row sum of P * dP.
// One warp per (bh, i); grid: ceil(n_seq * n_head * ctx / 8) blocks of 256.
extern "C" __global__ void attn_bwd_delta(const float* out, const float* dout, float* delta, int n_seq, int n_head,
                                          int ctx, int hd) {
    long w = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (long)n_seq * n_head * ctx) return;
    int i = (int)(w % ctx);
    long bh = w / ctx;
    int h = (int)(bh % n_head);
    long b = bh / n_head;
    int d = n_head * hd;
    long base = (b * ctx + i) * d + h * hd;
    float acc = 0.0f;
    for (int e = lane; e < hd; e += 32) acc += dout[base + e] * out[base + e];
    acc = warp_sum(acc);
    if (lane == 0) delta[w] = acc;
}

// dq (the q block of dhm): dq_i = sum_j ds_ij k_j, ds = p * (dp - delta) * scale,
// p = exp(s - lse), dp = dout_i . v_j. Grid and shared memory as attn_fwd (Ks and Vs both
// padded: TILE * 2 * (hd + 1) floats).
extern "C" __global__ void attn_bwd_dq(const float* hm, const float* dout, const float* lse, const float* delta,
                                       float* dhm, int n_head, int ctx, int hd, float scale) {
    extern __shared__ float sm[];
    float* Ks = sm;
    float* Vs = sm + TILE * (hd + 1);
    int bh = blockIdx.y, b = bh / n_head, h = bh % n_head, d = n_head * hd;
    int q0 = blockIdx.x * TILE;
    const float* Q = hm + (long)bh * 3 * ctx * hd;
    const float* K = Q + (long)ctx * hd;
    const float* V = K + (long)ctx * hd;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float dq[ROWS_PER_WARP][MAX_PER_LANE];
#pragma unroll
    for (int rr = 0; rr < ROWS_PER_WARP; rr++)
#pragma unroll
        for (int k = 0; k < MAX_PER_LANE; k++) dq[rr][k] = 0.0f;
    int qmax = min(q0 + TILE - 1, ctx - 1);
    for (int k0 = 0; k0 <= qmax; k0 += TILE) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < TILE * hd; idx += blockDim.x) {
            int j = idx / hd, e = idx % hd, kj = k0 + j;
            Ks[j * (hd + 1) + e] = kj < ctx ? K[(long)kj * hd + e] : 0.0f;
            Vs[j * (hd + 1) + e] = kj < ctx ? V[(long)kj * hd + e] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
            int i = q0 + warp * ROWS_PER_WARP + rr;
            if (i >= ctx || k0 > i) continue;
            const float* qi = Q + (long)i * hd;
            const float* doi = dout + ((long)b * ctx + i) * d + h * hd;
            int j = k0 + lane;
            float ds = 0.0f;
            if (j <= i) {
                float s = 0.0f, dp = 0.0f;
                for (int e = 0; e < hd; e++) {
                    s += qi[e] * Ks[lane * (hd + 1) + e];
                    dp += doi[e] * Vs[lane * (hd + 1) + e];
                }
                float p = expf(s * scale - lse[(long)bh * ctx + i]);
                ds = p * (dp - delta[(long)bh * ctx + i]) * scale;
            }
            int last = min(TILE, i - k0 + 1);
            for (int jj = 0; jj < last; jj++) {
                float dj = __shfl_sync(FULL_MASK, ds, jj);
#pragma unroll
                for (int k = 0; k < MAX_PER_LANE; k++) {
                    int e = lane + 32 * k;
                    if (e < hd) dq[rr][k] += dj * Ks[jj * (hd + 1) + e];
                }
            }
        }
    }
    float* dQ = dhm + (long)bh * 3 * ctx * hd;
#pragma unroll
    for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
        int i = q0 + warp * ROWS_PER_WARP + rr;
        if (i >= ctx) continue;
#pragma unroll
        for (int k = 0; k < MAX_PER_LANE; k++) {
            int e = lane + 32 * k;
            if (e < hd) dQ[(long)i * hd + e] = dq[rr][k];
        }
    }
}

// dk, dv (the k and v blocks of dhm): dk_j = sum_i ds_ij q_i, dv_j = sum_i p_ij dout_i over the
// queries i >= j. A block owns a tile of 32 keys; query tiles (q and dout rows, lse, delta)
// pass through shared memory. Grid: (ceil(ctx / 32), n_seq * n_head); 256 threads; shared
// memory TILE * 2 * (hd + 1) + 2 * TILE floats.
extern "C" __global__ void attn_bwd_dkv(const float* hm, const float* dout, const float* lse, const float* delta,
                                        float* dhm, int n_head, int ctx, int hd, float scale) {
    extern __shared__ float sm[];
    float* Qs = sm;                        // TILE x (hd + 1)
    float* Ds = sm + TILE * (hd + 1);      // TILE x (hd + 1): dout rows
    float* Ls = sm + 2 * TILE * (hd + 1);  // TILE: lse
    float* Es = Ls + TILE;                 // TILE: delta
    int bh = blockIdx.y, b = bh / n_head, h = bh % n_head, d = n_head * hd;
    int j0 = blockIdx.x * TILE;
    const float* Q = hm + (long)bh * 3 * ctx * hd;
    const float* K = Q + (long)ctx * hd;
    const float* V = K + (long)ctx * hd;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float dk[ROWS_PER_WARP][MAX_PER_LANE], dv[ROWS_PER_WARP][MAX_PER_LANE];
#pragma unroll
    for (int rr = 0; rr < ROWS_PER_WARP; rr++)
#pragma unroll
        for (int k = 0; k < MAX_PER_LANE; k++) {
            dk[rr][k] = 0.0f;
            dv[rr][k] = 0.0f;
        }
    for (int i0 = j0; i0 < ctx; i0 += TILE) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < TILE * hd; idx += blockDim.x) {
            int r = idx / hd, e = idx % hd, i = i0 + r;
            Qs[r * (hd + 1) + e] = i < ctx ? Q[(long)i * hd + e] : 0.0f;
            Ds[r * (hd + 1) + e] = i < ctx ? dout[((long)b * ctx + i) * d + h * hd + e] : 0.0f;
        }
        if (threadIdx.x < TILE) {
            int i = i0 + threadIdx.x;
            Ls[threadIdx.x] = i < ctx ? lse[(long)bh * ctx + i] : 0.0f;
            Es[threadIdx.x] = i < ctx ? delta[(long)bh * ctx + i] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
            int j = j0 + warp * ROWS_PER_WARP + rr;
            if (j >= ctx) continue;
            const float* kj = K + (long)j * hd;
            const float* vj = V + (long)j * hd;
            int i = i0 + lane;
            float p = 0.0f, ds = 0.0f;
            if (i < ctx && i >= j) {
                float s = 0.0f, dp = 0.0f;
                for (int e = 0; e < hd; e++) {
                    s += Qs[lane * (hd + 1) + e] * kj[e];
                    dp += Ds[lane * (hd + 1) + e] * vj[e];
                }
                p = expf(s * scale - Ls[lane]);
                ds = p * (dp - Es[lane]) * scale;
            }
            for (int ii = 0; ii < TILE; ii++) {
                float pi = __shfl_sync(FULL_MASK, p, ii);
                float di = __shfl_sync(FULL_MASK, ds, ii);
#pragma unroll
                for (int k = 0; k < MAX_PER_LANE; k++) {
                    int e = lane + 32 * k;
                    if (e < hd) {
                        dv[rr][k] += pi * Ds[ii * (hd + 1) + e];
                        dk[rr][k] += di * Qs[ii * (hd + 1) + e];
                    }
                }
            }
        }
    }
    float* dK = dhm + (long)bh * 3 * ctx * hd + (long)ctx * hd;
    float* dV = dK + (long)ctx * hd;
#pragma unroll
    for (int rr = 0; rr < ROWS_PER_WARP; rr++) {
        int j = j0 + warp * ROWS_PER_WARP + rr;
        if (j >= ctx) continue;
#pragma unroll
        for (int k = 0; k < MAX_PER_LANE; k++) {
            int e = lane + 32 * k;
            if (e < hd) {
                dK[(long)j * hd + e] = dk[rr][k];
                dV[(long)j * hd + e] = dv[rr][k];
            }
        }
    }
}
