// Kernels of the built-in formats (kind int, fp, raw, mx, nvfp4), over a row-major matrix of
// `rows * cols` floats: output and straight-through mask of `compress`, bit for bit the
// plugins'. The math is in formats.cuh, which src/kernels.rs prepends (and formats_host.c
// includes, with this file, to run the same kernel bodies on the host for the tests).
// src/formats.rs plans the launches: which kernels, in which order, with which arguments.
// Argument `n` of every kernel is its number of threads (one per value, group or block).

// Per-group scales: sums of squares per 1024-block, then one thread per group.
QF_KERNEL(qf_sumsq_partial, (long n, const float* x, long cols, long glen, long gpr, long bpg, double* partial),
          (i_, n, x, cols, glen, gpr, bpg, partial))
QF_KERNEL(qf_group_scale,
          (long n, const float* x, long cols, long glen, long gpr, long bpg, const double* partial, int rule,
           float k, float* scale),
          (i_, n, x, cols, glen, gpr, bpg, partial, rule, k, scale))

// kind int: one thread per value.
QF_KERNEL(qf_int_apply,
          (long n, const float* x, float* y, float* mask, long cols, long glen, long gpr, const float* scale,
           int rule, float param),
          (i_, n, x, y, mask, cols, glen, gpr, scale, rule, param))

// kind fp (scales from qf_group_scale with rule rms, k = c): one thread per value.
QF_KERNEL(qf_fp_apply,
          (long n, const float* x, float* y, float* mask, long cols, long glen, long gpr, const float* scale,
           float max, float min_normal, unsigned int m, float clip),
          (i_, n, x, y, mask, cols, glen, gpr, scale, max, min_normal, m, clip))

// kind raw: one thread per value.
QF_KERNEL(qf_raw_apply,
          (long n, const float* x, float* y, float* mask, int e8m0, int saturate, float max, float limit, float ovf,
           unsigned int nan_bits, float min_normal, unsigned int m),
          (i_, n, x, y, mask, e8m0, saturate, max, limit, ovf, nan_bits, min_normal, m))

// kind mx: one thread per block for the shared exponents, then one per value.
QF_KERNEL(qf_mx_exponent,
          (long n, const float* x, long cols, long glen, long gpr, int rule, int int8, float max, float min_normal,
           int emin, int emax, unsigned int m, unsigned int max_frac, int* exps),
          (i_, n, x, cols, glen, gpr, rule, int8, max, min_normal, emin, emax, m, max_frac, exps))
QF_KERNEL(qf_mx_apply,
          (long n, const float* x, float* y, float* mask, long cols, long glen, long gpr, const int* exps, int int8,
           float max, float min_normal, int emin, int emax, unsigned int m, float clip),
          (i_, n, x, y, mask, cols, glen, gpr, exps, int8, max, min_normal, emin, emax, m, clip))

// kind nvfp4: the tensor's absmax (per 1024 values, then one thread), one thread per block for
// the block scales, then one per value.
QF_KERNEL(qf_absmax_partial, (long n, const float* x, long total, float* partial), (i_, n, x, total, partial))
QF_KERNEL(qf_nvfp4_tensor, (long n, const float* partial, long chunks, float* s, double* to_code),
          (i_, n, partial, chunks, s, to_code))
QF_KERNEL(qf_nvfp4_scale,
          (long n, const float* x, long cols, long glen, long gpr, const float* s, const double* to_code, float* sb),
          (i_, n, x, cols, glen, gpr, s, to_code, sb))
QF_KERNEL(qf_nvfp4_apply,
          (long n, const float* x, float* y, float* mask, long cols, long glen, long gpr, const float* sb),
          (i_, n, x, y, mask, cols, glen, gpr, sb))
