// The built-in formats' element-wise and block math (plugins int, fp, block), bit for bit what
// the plugins compute through sdk::{grid, scale, minifloat, round, rows}.
//
// Written in the C subset of CUDA C: the same file compiles with NVRTC as part of the CUDA
// kernels (kernels/formats.cu, prepended by src/kernels.rs) and with the host C compiler for the
// tests (kernels/formats_host.c, built by build.rs with -O2 -ffp-contract=off, no -ffast-math).
// Rules that keep both builds equal to the plugins, value for value:
// - IEEE single and double + - * / only, no contraction into FMA (--fmad=false on the device,
//   -ffp-contract=off on the host), the plugins' operations in the plugins' order;
// - exponents and powers of two by bit manipulation, never exp2f/log2f/powf; sqrt only in
//   double (correctly rounded everywhere);
// - reductions whose result depends on the order (sums of squares) in exactly sdk's order:
//   16 float lanes per block of 1024 values, the lanes then the remainder summed in double,
//   blocks summed in double in order. Maxima do not depend on the order.
//
// Every kernel is one `QF_KERNEL(name, (long n, ...), (i_, n, ...))` line in formats.cu: on the
// device a kernel `name` running `name_at(i, ...)` for thread i < n, on the host a function
// `name` looping i over 0..n. So the host test runs the kernels' own bodies.

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define QF_FN __device__ static inline
#define QF_KERNEL(name, params, args)                                  \
    extern "C" __global__ void name params {                           \
        long i_ = (long)blockIdx.x * (long)blockDim.x + threadIdx.x;   \
        if (i_ < n) name##_at args;                                    \
    }
QF_FN unsigned int qf_bits(float x) { return __float_as_uint(x); }
QF_FN float qf_from_bits(unsigned int u) { return __uint_as_float(u); }
#else
#include <math.h>
#include <string.h>
#define QF_FN static inline
#define QF_KERNEL(name, params, args)                 \
    void name params {                                \
        for (long i_ = 0; i_ < n; i_++) name##_at args; \
    }
QF_FN unsigned int qf_bits(float x) {
    unsigned int u;
    memcpy(&u, &x, sizeof u);
    return u;
}
QF_FN float qf_from_bits(unsigned int u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
#endif

// ------------------------------------------------------------------ sdk::round, sdk::grid

// sdk::round::rne_fast: (x + 1.5 * 2^23) - 1.5 * 2^23, exact for |x| <= 2^22.
QF_FN float qf_rne_fast(float x) { return (x + 12582912.0f) - 12582912.0f; }

// sdk::grid::clamp: compare and select (NaN passes through).
QF_FN float qf_clamp(float x, float lo, float hi) {
    x = x < lo ? lo : x;
    return x > hi ? hi : x;
}

QF_FN int qf_isfinite(float x) { return (qf_bits(x) & 0x7f800000u) != 0x7f800000u; }
QF_FN int qf_isnan(float x) { return (qf_bits(x) & 0x7fffffffu) > 0x7f800000u; }
QF_FN float qf_abs(float x) { return qf_from_bits(qf_bits(x) & 0x7fffffffu); }

// sdk::grid::scale_pair: (scale, 1 / scale) for a usable scale, (0, 0) otherwise.
QF_FN void qf_scale_pair(float scale, float* s, float* inv) {
    float r = 1.0f / scale;
    if (scale > 0.0f && qf_isfinite(scale) && qf_isfinite(r)) {
        *s = scale;
        *inv = r;
    } else {
        *s = 0.0f;
        *inv = 0.0f;
    }
}

// One entry of sdk::grid::clip_mask (the mask arrives filled with 1): 0 where |x| > limit.
QF_FN float qf_keep(float x, float limit) { return (x < -limit || x > limit) ? 0.0f : 1.0f; }

// sdk::bits of 2^e, e in -149..=127 (block::pow2).
QF_FN float qf_pow2(int e) {
    return e >= -126 ? qf_from_bits((unsigned int)(e + 127) << 23) : qf_from_bits(1u << (e + 149));
}

// ------------------------------------------------------------------ sdk::scale

// sdk::scale::absmax: the largest magnitude, NaN skipped, 0 for no values (order-free).
QF_FN float qf_absmax(const float* x, long n) {
    float m = 0.0f;
    for (long i = 0; i < n; i++) {
        float a = qf_abs(x[i]);
        m = a > m ? a : m;
    }
    return m;
}

// One block (n <= 1024 values) of sdk::scale::sum_sq: 16 float lanes over the whole chunks of
// 16, the lanes summed in double in lane order, plus the remainder's squares summed in double.
QF_FN double qf_sumsq_block(const float* x, long n) {
    float acc[16];
    for (int k = 0; k < 16; k++) acc[k] = 0.0f;
    long full = n / 16 * 16;
    for (long i = 0; i < full; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += x[i + k] * x[i + k];
    double s = 0.0;
    for (int k = 0; k < 16; k++) s += (double)acc[k];
    double r = 0.0;
    for (long i = full; i < n; i++) r += (double)(x[i] * x[i]);
    return s + r;
}

// sdk::scale::rms from the sum of squares of `n` values: sqrt(sum / n) in double, as float.
QF_FN float qf_rms_from_sum(double sum, long n) { return n == 0 ? 0.0f : (float)sqrt(sum / (double)n); }

// ------------------------------------------------------------------ groups (sdk::rows)

// Groups of `glen` values within rows of `cols` (the last group of a row may be shorter),
// `gpr` groups per row, numbered row by row.
QF_FN long qf_group_of(long i, long cols, long glen, long gpr) {
    long r = i / cols;
    return r * gpr + (i - r * cols) / glen;
}
QF_FN void qf_group_span(long g, long cols, long glen, long gpr, long* start, long* len) {
    long r = g / gpr, j = g - r * gpr;
    long l = cols - j * glen;
    *start = r * cols + j * glen;
    *len = l < glen ? l : glen;
}

#define QF_SUM_BLOCK 1024L

// Sums of squares of the 1024-blocks of each group: thread t is block t % bpg of group t / bpg
// (bpg = blocks in a full group); blocks past a short group's end are 0 and never read.
QF_FN void qf_sumsq_partial_at(long t, long n, const float* x, long cols, long glen, long gpr, long bpg,
                               double* partial) {
    long start, len;
    qf_group_span(t / bpg, cols, glen, gpr, &start, &len);
    long off = (t % bpg) * QF_SUM_BLOCK;
    long m = len - off < QF_SUM_BLOCK ? len - off : QF_SUM_BLOCK;
    partial[t] = off < len ? qf_sumsq_block(x + start + off, m) : 0.0;
    (void)n;
}

#define QF_SCALE_RMS 0
#define QF_SCALE_ABSMAX 1

// The scale of group g: `k * rms` (sdk::scale::rms_scale; the group's block sums added in order)
// or `absmax / k` (sdk::grid::MidTread::absmax_step with k = qmax).
QF_FN void qf_group_scale_at(long g, long n, const float* x, long cols, long glen, long gpr, long bpg,
                             const double* partial, int rule, float k, float* scale) {
    long start, len;
    qf_group_span(g, cols, glen, gpr, &start, &len);
    if (rule == QF_SCALE_RMS) {
        double total = 0.0;
        long nb = (len + QF_SUM_BLOCK - 1) / QF_SUM_BLOCK;
        for (long b = 0; b < nb; b++) total += partial[g * bpg + b];
        scale[g] = k * qf_rms_from_sum(total, len);
    } else {
        scale[g] = qf_absmax(x + start, len) / k;
    }
    (void)n;
}

// ------------------------------------------------------------------ kind int (plugins/int)

#define QF_INT_RMS 0
#define QF_INT_ABSMAX 1

// rule rms: sdk::grid::MidRise with outer level a = scale[g] and half = (2^bits - 1) / 2;
// rule absmax: sdk::grid::MidTread with step = scale[g] and qmax = 2^(bits-1) - 1 (`param`).
// Round to nearest even; the trust mask is 0 beyond the grid's clip limit.
QF_FN void qf_int_apply_at(long i, long n, const float* x, float* y, float* mask, long cols, long glen, long gpr,
                           const float* scale, int rule, float param) {
    float v = x[i], sc = scale[qf_group_of(i, cols, glen, gpr)], s, inv, q, lim;
    if (rule == QF_INT_RMS) {
        qf_scale_pair(sc / param, &s, &inv);
        q = (qf_rne_fast(qf_clamp(v * inv, -param, param) - 0.5f) + 0.5f) * s;
        lim = sc + 0.5f * (sc / param);
    } else {
        qf_scale_pair(sc, &s, &inv);
        q = qf_rne_fast(qf_clamp(v * inv, -param, param)) * s;
        lim = (param + 0.5f) * sc;
    }
    y[i] = q;
    if (mask) mask[i] = qf_keep(v, lim);
    (void)n;
}

// ------------------------------------------------------------------ kind fp (plugins/fp)

// sdk::minifloat::Minifloat::quantizer(scale) applied to x: clamp x / scale to +-max, read the
// spacing 2^(max(floor(log2 |v|), emin) - m) from the exponent bits, round to nearest even.
QF_FN float qf_minifloat_q(float x, float scale, float max, float min_normal, unsigned int m) {
    float s, inv_s;
    qf_scale_pair(scale, &s, &inv_s);
    float v = qf_clamp(x * inv_s, -max, max);
    float p = qf_from_bits(qf_bits(v) & 0x7f800000u);
    p = p < min_normal ? min_normal : p;
    float inv = qf_from_bits(((254u + m) << 23) - qf_bits(p));
    float step = qf_from_bits(qf_bits(p) - (m << 23));
    return qf_rne_fast(v * inv) * (step * s);
}

// Minifloat ExMy at scale[g] = c * rms of the group; mask 0 beyond scale * clip, where
// clip = max + top_step / 2 (Minifloat::clip_limit).
QF_FN void qf_fp_apply_at(long i, long n, const float* x, float* y, float* mask, long cols, long glen, long gpr,
                          const float* scale, float max, float min_normal, unsigned int m, float clip) {
    float v = x[i], sc = scale[qf_group_of(i, cols, glen, gpr)];
    y[i] = qf_minifloat_q(v, sc, max, min_normal, m);
    if (mask) mask[i] = qf_keep(v, sc * clip);
    (void)n;
}

// ------------------------------------------------------------------ kind raw (plugins/fp/src/raw.rs)

// ml_dtypes' cast to a sign-exponent-mantissa type and back (RawCast::cast_minifloat).
QF_FN float qf_raw_minifloat(float x, float max, float limit, float ovf, unsigned int nan_bits, float min_normal,
                             unsigned int m) {
    unsigned int bits = qf_bits(x), sign = bits & 0x80000000u;
    float a = qf_from_bits(bits & 0x7fffffffu);
    float v = a < limit ? a : limit;  // f32::min: NaN gives `limit`
    float p = qf_from_bits(qf_bits(v) & 0x7f800000u);
    p = p < min_normal ? min_normal : p;
    float inv = qf_from_bits(((254u + m) << 23) - qf_bits(p));
    float step = qf_from_bits(qf_bits(p) - (m << 23));
    float r = qf_rne_fast(v * inv) * step;
    r = r > max ? ovf : r;
    unsigned int rb = qf_isnan(a) ? nan_bits : qf_bits(r);
    return qf_from_bits(rb ^ sign);
}

// ml_dtypes' cast to E8M0 (RawCast::cast_e8m0): powers of two, ties up; `saturate` keeps the
// sign beside the code, maps 0 to 2^-127 and overflow to 2^127, else NaN as ml_dtypes.
QF_FN float qf_raw_e8m0(float x, int saturate) {
    unsigned int bits = qf_bits(x), sign = bits & 0x80000000u, a = bits & 0x7fffffffu;
    unsigned int normal = (a + 0x00400000u) & 0x7f800000u;
    unsigned int sub = a < 0x00600000u ? 0x00400000u : 0x00800000u;
    unsigned int r = a < 0x00800000u ? sub : normal;
    if (!saturate) {
        int bad = sign != 0u || a == 0u || a >= 0x7f800000u || r >= 0x7f800000u;
        return bad ? qf_from_bits(0x7fc00000u) : qf_from_bits(r);
    }
    r = r >= 0x7f800000u ? 0x7f000000u : r;
    r = a > 0x7f800000u ? 0x7fc00000u : r;
    return qf_from_bits(r | sign);
}

// A raw cast writes no mask: the mask stays open (1).
QF_FN void qf_raw_apply_at(long i, long n, const float* x, float* y, float* mask, int e8m0, int saturate, float max,
                           float limit, float ovf, unsigned int nan_bits, float min_normal, unsigned int m) {
    float v = x[i];
    y[i] = e8m0 ? qf_raw_e8m0(v, saturate) : qf_raw_minifloat(v, max, limit, ovf, nan_bits, min_normal, m);
    if (mask) mask[i] = 1.0f;
    (void)n;
}

// ------------------------------------------------------------------ kind mx (plugins/block/src/mx.rs)

// block::MagicRound: round to nearest even onto a minifloat grid scaled so that its top is `hi`
// and its subnormals share the spacing of the binade at `lo_p`, by adding and subtracting a
// magic constant built from the exponent bits of the value.
QF_FN float qf_magic_round(float x, float hi, float lo_p, unsigned int magic) {
    float v = qf_clamp(x, -hi, hi);
    float p = qf_from_bits(qf_bits(v) & 0x7f800000u);
    p = p < lo_p ? lo_p : p;
    float c = qf_from_bits(qf_bits(p) + magic);
    return (v + c) - c;
}

#define QF_MX_FLOOR 0
#define QF_MX_CEIL 1
#define QF_MX_NEAREST 2
#define QF_MX_NOSAT 3
#define QF_MX_MSE 4
// The exponent of an all-zero block (its values are zeros, its mask stays open).
#define QF_MX_ZERO 1000
// Fraction bits of f32(sqrt 2): log2 a rounds up above them (mx::SQRT2_FRAC).
#define QF_SQRT2_FRAC 0x3504f3u

// One element at block scale 2^e (mx::quantize_block): MXINT8 k / 64 with |k| <= 127, or a
// minifloat (max, 2^emin, emin, emax, m bits), through MagicRound where the scaled grid stays in
// float's normal range, else x / 2^e rounded on the unscaled grid and multiplied back.
QF_FN float qf_mx_elem(float x, int e, int int8, float max, float min_normal, int emin, int emax, unsigned int m) {
    if (int8) {
        if (e >= -120 && e <= 127) return qf_rne_fast(qf_clamp(x * qf_pow2(6 - e), -127.0f, 127.0f)) * qf_pow2(e - 6);
        return qf_rne_fast(qf_clamp((x * qf_pow2(-e)) * 64.0f, -127.0f, 127.0f)) * 0.015625f * qf_pow2(e);
    }
    int lo = emin + e, hi = emax + e;
    if (lo < -126 || hi + 25 - (int)m > 127 || m > 23u)
        return qf_minifloat_q(x * qf_pow2(-e), 1.0f, max, min_normal, m) * qf_pow2(e);
    return qf_magic_round(x, max * qf_pow2(e), qf_pow2(lo), ((23u - m) << 23) | 0x400000u);
}

// sdk::grid::sq_error of a block at scale 2^e: per 1024 values, 16 float lanes of squared
// differences, the lanes summed in double, then the remainder added one by one in double.
QF_FN double qf_mx_error(const float* x, long len, int e, int int8, float max, float min_normal, int emin, int emax,
                         unsigned int m) {
    double total = 0.0;
    for (long b0 = 0; b0 < len; b0 += QF_SUM_BLOCK) {
        const float* c = x + b0;
        long bl = len - b0 < QF_SUM_BLOCK ? len - b0 : QF_SUM_BLOCK, full = bl / 16 * 16;
        float acc[16];
        for (int k = 0; k < 16; k++) acc[k] = 0.0f;
        for (long i = 0; i < full; i += 16)
            for (int k = 0; k < 16; k++) {
                float d = c[i + k] - qf_mx_elem(c[i + k], e, int8, max, min_normal, emin, emax, m);
                acc[k] += d * d;
            }
        double s = 0.0;
        for (int k = 0; k < 16; k++) s += (double)acc[k];
        for (long i = full; i < bl; i++) {
            float d = c[i] - qf_mx_elem(c[i], e, int8, max, min_normal, emin, emax, m);
            s += (double)(d * d);
        }
        total += s;
    }
    return total;
}

// The shared exponent of block g (Mx::exponent): from the bits of the block's absmax by the
// rule, clamped to E8M0's -127..=127; rule mse keeps the best of e, e + 1, e - 1 by squared
// error (the first on ties). QF_MX_ZERO for an all-zero block.
QF_FN void qf_mx_exponent_at(long g, long n, const float* x, long cols, long glen, long gpr, int rule, int int8,
                             float max, float min_normal, int emin, int emax, unsigned int m, unsigned int max_frac,
                             int* exps) {
    long start, len;
    qf_group_span(g, cols, glen, gpr, &start, &len);
    float a = qf_absmax(x + start, len);
    if (a <= 0.0f) {
        exps[g] = QF_MX_ZERO;
        return;
    }
    int off = 0;
    if (a < qf_from_bits(0x00800000u)) {
        a = a * qf_pow2(64);
        off = -64;
    }
    unsigned int b = qf_bits(a), frac = b & 0x7fffffu;
    int k = (int)((b >> 23) & 0xffu) - 127 + off, e;
    if (rule == QF_MX_CEIL)
        e = k + (frac != 0u) - emax;
    else if (rule == QF_MX_NEAREST)
        e = k + (frac > QF_SQRT2_FRAC) - emax;
    else if (rule == QF_MX_NOSAT)
        e = k - emax + (frac > max_frac);
    else
        e = k - emax;
    e = e < -127 ? -127 : (e > 127 ? 127 : e);
    if (rule == QF_MX_MSE) {
        double best = qf_mx_error(x + start, len, e, int8, max, min_normal, emin, emax, m);
        int be = e;
        for (int j = 0; j < 2; j++) {
            int c = j == 0 ? e + 1 : e - 1;
            if (c >= -127 && c <= 127) {
                double ec = qf_mx_error(x + start, len, c, int8, max, min_normal, emin, emax, m);
                if (ec < best) {
                    best = ec;
                    be = c;
                }
            }
        }
        e = be;
    }
    exps[g] = e;
    (void)n;
}

// Elements at their block's scale; mask 0 beyond clip * 2^e (clip: the element clip limit).
QF_FN void qf_mx_apply_at(long i, long n, const float* x, float* y, float* mask, long cols, long glen, long gpr,
                          const int* exps, int int8, float max, float min_normal, int emin, int emax, unsigned int m,
                          float clip) {
    float v = x[i];
    int e = exps[qf_group_of(i, cols, glen, gpr)];
    if (e == QF_MX_ZERO) {
        y[i] = 0.0f;
        if (mask) mask[i] = 1.0f;
        return;
    }
    y[i] = qf_mx_elem(v, e, int8, max, min_normal, emin, emax, m);
    if (mask) mask[i] = qf_keep(v, clip * qf_pow2(e));
    (void)n;
}

// ------------------------------------------------------------------ kind nvfp4 (plugins/block/src/nvfp4.rs)

// MagicRound constants of E4M3 (m = 3) and E2M1 (m = 1) at scale 1.
#define QF_E4M3_MAGIC ((20u << 23) | 0x400000u)
#define QF_E2M1_MAGIC ((22u << 23) | 0x400000u)

// The tensor's absmax in chunks of 1024 values (thread t: chunk t); maxima do not depend on order.
QF_FN void qf_absmax_partial_at(long t, long n, const float* x, long total, float* partial) {
    long off = t * QF_SUM_BLOCK;
    partial[t] = qf_absmax(x + off, total - off < QF_SUM_BLOCK ? total - off : QF_SUM_BLOCK);
    (void)n;
}

// The tensor scale (one thread): s = amax / (448 * 6), and 448 / amax in double.
QF_FN void qf_nvfp4_tensor_at(long t, long n, const float* partial, long chunks, float* s, double* to_code) {
    float amax = 0.0f;
    for (long c = 0; c < chunks; c++) amax = partial[c] > amax ? partial[c] : amax;
    s[0] = amax / 2688.0f;
    to_code[0] = 448.0 / (double)amax;
    (void)t;
    (void)n;
}

// Block g's scale: its E4M3 code e4m3(amax_b * (448 / amax)) times s; 0 where the tensor is
// all zero (or not finite) or the code rounds to 0: that block gives zeros.
QF_FN void qf_nvfp4_scale_at(long g, long n, const float* x, long cols, long glen, long gpr, const float* s,
                             const double* to_code, float* sb) {
    long start, len;
    qf_group_span(g, cols, glen, gpr, &start, &len);
    float ts = s[0];
    float code = (float)((double)qf_absmax(x + start, len) * to_code[0]);
    float b = qf_magic_round(code, 448.0f, qf_pow2(-6), QF_E4M3_MAGIC) * ts;
    sb[g] = (ts > 0.0f && qf_isfinite(ts) && b > 0.0f && qf_isfinite(b)) ? b : 0.0f;
    (void)n;
}

// Elements x * (1 / scale) on E2M1 (saturating at 6), times the scale; mask 0 beyond 7 * scale
// (for a zero block: 0 wherever x is not zero).
QF_FN void qf_nvfp4_apply_at(long i, long n, const float* x, float* y, float* mask, long cols, long glen, long gpr,
                             const float* sb) {
    float v = x[i], b = sb[qf_group_of(i, cols, glen, gpr)];
    if (!(b > 0.0f)) {
        y[i] = 0.0f;
        if (mask) mask[i] = qf_keep(v, 0.0f);
        return;
    }
    float inv = 1.0f / b;
    y[i] = qf_magic_round(v * inv, 6.0f, 1.0f, QF_E2M1_MAGIC) * b;
    if (mask) mask[i] = qf_keep(v, 7.0f * b);
    (void)n;
}
