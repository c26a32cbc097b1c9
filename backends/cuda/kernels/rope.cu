// Rotary embedding fused with the layout change to head-major, as kernels::rope_heads:
// qkv is rows x 3d (q | k | v per token), hm is n_seq x n_head x 3 x ctx x hd. Pairs
// (2i, 2i+1) of q and k are rotated by the angle of their position; v is copied.
// One thread per pair. `inverse`: reads hm (gradients), rotates back, writes qkv.
extern "C" __global__ void rope(float* qkv, float* hm, const float* cosv, const float* sinv, int n_seq, int ctx,
                                int n_head, int hd, int inverse) {
    int half = hd / 2;
    long total = (long)n_seq * ctx * 3 * n_head * half;
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    long t = i;
    int e = (int)(t % half); t /= half;
    int h = (int)(t % n_head); t /= n_head;
    int part = (int)(t % 3); t /= 3;
    int p = (int)(t % ctx);
    long b = t / ctx;
    int d = n_head * hd;
    float* row = qkv + (b * ctx + p) * 3 * d + part * d + h * hd + 2 * e;
    float* head = hm + (((b * n_head + h) * 3 + part) * ctx + p) * hd + 2 * e;
    const float* src = inverse ? head : row;
    float* dst = inverse ? row : head;
    if (part == 2) {
        dst[0] = src[0];
        dst[1] = src[1];
        return;
    }
    float c = cosv[p * half + e];
    float s = sinv[p * half + e];
    if (inverse) s = -s;
    float x0 = src[0], x1 = src[1];
    dst[0] = x0 * c - x1 * s;
    dst[1] = x0 * s + x1 * c;
}
