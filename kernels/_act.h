/* Element-wise activations, forward and backward, in float32: the Cython set's activation ops
 * (_cy_elementwise.pyx) and the epilogues of the convolution and dense kernels (_cy_gemm.pyx) both run these loops,
 * so an activation fused into a kernel's output pass has the bits of the stand-alone op.
 *
 * Each op's loop is a plain loop over a branch-free expression (selects, no calls), which GCC vectorizes at -O3 on
 * every target (8 lanes on AVX2, 16 on AVX-512). exp and tanh are polynomials for that reason (Cephes's expf and
 * tanhf: within 2 float32 ulps, tests/kernels/test_activation_ops.py): glibc's are calls, one element at a time
 * (on the Zen 3, one thread, loaded: a loop of tanhf 19 ns an element, this tanh 1.0; the sigmoid on expf 7.7, this
 * one 0.7). The exact GELU's normal CDF is Numerical Recipes' erfc (dc_phif), softplus's log1p Cephes's logf
 * (dc_log1pf_unit): no op calls libm.
 *
 * Codes (DC_ACT_*) are reference.activation.CODES'; `alpha` is the op's parameter (leaky_relu's negative_slope,
 * elu's alpha), unused by the others; clipped_relu (Keras's ReLU layer) takes three: `alpha` its negative_slope,
 * `hi` its max_value, `th` its threshold. Backward ops read `v`: the forward's output for tanh, sigmoid and selu,
 * its input for the rest. NaN propagates through every forward.
 */
#ifndef DROPCORE_ACT_H
#define DROPCORE_ACT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Without -fno-trapping-math GCC keeps every select whose arms are arithmetic (`v < 0 ? v * alpha : v`) as a
 * branch, since computing the other arm might raise a floating-point exception: no loop here vectorized (leaky_relu
 * 5 ns an element, tanh 6). dropcore never reads the exception flags, so these functions are compiled without it. */
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")

/* The element functions are forced inline into each op's loop: left to GCC, a translation unit that calls the loops
 * from two places (a serial and a parallel region) got calls, one element at a time (softplus's backward 7.8 ns an
 * element against 0.8). */
#define DC_ACT_INLINE inline __attribute__((always_inline))

enum {
    DC_ACT_LINEAR = 0, DC_ACT_RELU = 1, DC_ACT_RELU6 = 2, DC_ACT_LEAKY_RELU = 3, DC_ACT_ELU = 4, DC_ACT_SELU = 5,
    DC_ACT_TANH = 6, DC_ACT_SIGMOID = 7, DC_ACT_HARD_SIGMOID = 8, DC_ACT_HARD_SWISH = 9, DC_ACT_GELU = 10,
    DC_ACT_GELU_TANH = 11, DC_ACT_SOFTPLUS = 12, DC_ACT_SILU = 13, DC_ACT_CLIPPED_RELU = 14, DC_ACT_MISH = 15
};

#define DC_SELU_ALPHA 1.67326324235437728f
#define DC_SELU_SCALE 1.05070098735548049f

static DC_ACT_INLINE float dc_f_from_bits(int32_t b) { float f; memcpy(&f, &b, 4); return f; }
static DC_ACT_INLINE int32_t dc_f_bits(float f) { int32_t b; memcpy(&b, &f, 4); return b; }

#define DC_INV_SQRT_2_F 0.7071067811865476f

/* e**x (Cephes's expf: x = k ln2 + r, |r| <= ln2 / 2, a degree-7 polynomial): within 2 float32 ulps. Clamped to
 * [-87.34, 88]: above, e**88 (no float32 input of a caller here needs more); below, 0 (results that would be
 * subnormal flush to 0). */
static DC_ACT_INLINE float dc_expf(float x) {
    const float lo = -87.3365447505531f, hi = 88.0f;
    float c = x > hi ? hi : x;
    c = c < lo ? lo : c;
    const float t = c * 1.44269504088896341f + 12582912.0f; /* round(c / ln 2) in the low mantissa bits */
    const float k = t - 12582912.0f;
    const int32_t ki = dc_f_bits(t) - 0x4B400000;
    float r = c - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    const float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    const float y = p * dc_f_from_bits((ki + 127) << 23);
    return x < lo ? 0.0f : y; /* (NaN: every comparison false, p NaN) */
}

/* e**x - 1, accurate near 0 too (ELU, SELU): a Taylor polynomial for |x| < 0.5 (truncation below 1e-8 relative),
 * dc_expf(x) - 1 elsewhere (no cancellation there: |e**x - 1| >= 0.39). */
static DC_ACT_INLINE float dc_expm1f(float x) {
    float p = 2.48015873e-5f; /* 1 / 8! */
    p = p * x + 1.98412698e-4f;
    p = p * x + 1.38888889e-3f;
    p = p * x + 8.33333333e-3f;
    p = p * x + 4.16666667e-2f;
    p = p * x + 1.66666667e-1f;
    p = p * x + 0.5f;
    p = (p * x) * x + x;
    const float e = dc_expf(x) - 1.0f;
    return (x < 0.5f && x > -0.5f) ? p : e;
}

/* tanh (Cephes's tanhf): an odd polynomial for |x| < 0.625, 1 - 2 / (e**2|x| + 1) beyond; within 3 ulps, and
 * accurate in absolute terms near +-1, where GELU's tanh form computes 1 + tanh(u) and its derivative 1 - t**2. */
static DC_ACT_INLINE float dc_tanhf(float x) {
    const float a = fabsf(x);
    const float s = x * x;
    float p = -5.70498872745e-3f;
    p = p * s + 2.06390887954e-2f;
    p = p * s - 5.37397155531e-2f;
    p = p * s + 1.33314422036e-1f;
    p = p * s - 3.33332819422e-1f;
    const float small = p * s * x + x;
    const float big = 1.0f - 2.0f / (dc_expf(a + a) + 1.0f);
    const float signed_big = x < 0 ? -big : big;
    return a > 0.625f ? signed_big : small;
}

/* The tanh op (and the kernels' tanh epilogue): a rational function of x on [-9, 9] (x P(x**2) / Q(x**2), degrees
 * 13 and 6: Eigen's and MLAS's coefficients), +-1 to float32 precision beyond; within 3 ulps of the float64 tanh
 * over [-20, 20], relative (near +-1 that is 2e-7 absolute, against Cephes's 6e-8: GELU keeps dc_tanhf). Why: the
 * Cephes form (both of its branches computed in a vector, an exp and a division) took 1.0 ns an element in LeNet-5's
 * first convolution's epilogue on the Zen 3, half as long as the convolution's multiply-adds at batch 1; the
 * stand-alone op over that layer's 4,704 outputs 11.8 us against 5.1 here (one thread). A NaN propagates (the
 * clamp keeps it). */
static DC_ACT_INLINE float dc_tanh_rational(float x) {
    float c = x > 9.0f ? 9.0f : x;
    c = c < -9.0f ? -9.0f : c; /* (NaN: both comparisons false, c stays NaN) */
    const float s = c * c;
    float p = -2.76076847742355e-16f;
    p = p * s + 2.00018790482477e-13f;
    p = p * s - 8.60467152213735e-11f;
    p = p * s + 5.12229709037114e-08f;
    p = p * s + 1.48572235717979e-05f;
    p = p * s + 6.37261928875436e-04f;
    p = p * s + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * s + 1.18534705686654e-04f;
    q = q * s + 2.26843463243900e-03f;
    q = q * s + 4.89352518554385e-03f;
    return (c * p) / q;
}

/* The logistic function through e**-|x| (never overflows), as the sigmoid op. */
static DC_ACT_INLINE float dc_sigmoidf(float x) {
    const float e = dc_expf(-fabsf(x));
    const float r = 1.0f / (1.0f + e);
    return x >= 0 ? r : e * r;
}

/* The standard normal CDF, Phi(x) = erfc(-x / sqrt(2)) / 2, with Numerical Recipes' erfcc: erfc(z) = t exp(-z**2 +
 * P(t)), t = 1 / (1 + z / 2), a fractional error below 1.2e-7 for every z >= 0; erfc(-z) = 2 - erfc(z). Measured
 * in float32 against float64 over [-20, 20]: GELU within 3.9e-7 absolute (under an ulp where x > 0), 3e-6 relative
 * in the left tail, where Keras's 1 + erf(x) loses every digit; vectorized: 1.5 ns an element, where a loop of
 * glibc's erff took 27. */
static DC_ACT_INLINE float dc_phif(float x) {
    const float z = fabsf(x) * DC_INV_SQRT_2_F;
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    const float half_erfc = 0.5f * t * dc_expf(p - z * z); /* erfc(|x| / sqrt(2)) / 2 */
    return x < 0 ? half_erfc : 1.0f - half_erfc;
}

/* ln(1 + e) for e in [0, 1] (softplus): u = 1 + e, ln(u) by Cephes's logf (u = 2**k m, m in [sqrt(1/2), sqrt(2)),
 * a degree-9 polynomial in m - 1), plus the rounding of 1 + e, (e - (u - 1)) / u, to first order: within 2 ulps,
 * vectorized (a loop of glibc's log1pf: 16-22 ns an element). */
static DC_ACT_INLINE float dc_log1pf_unit(float e) {
    const float u = 1.0f + e;
    const int32_t b = dc_f_bits(u);
    const float m0 = dc_f_from_bits((b & 0x007fffff) | 0x3f000000); /* u = 2**k0 m0, m0 in [1/2, 1) */
    const float k0 = (float)(((b >> 23) & 0xff) - 126);
    const int low = m0 < 0.707106781186547524f;
    const float k = low ? k0 - 1.0f : k0;
    const float m = low ? m0 + m0 - 1.0f : m0 - 1.0f;
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * k;
    y += -0.5f * z;
    const float ln_u = m + y + 0.693359375f * k;
    return ln_u + (e - (u - 1.0f)) / u;
}

static DC_ACT_INLINE float dc_relu6f(float v) {
    const float r = v < 0 ? 0.0f : v; /* NaN passes */
    return r > 6.0f ? 6.0f : r;
}

#define DC_SQRT_2_OVER_PI 0.7978845608028654f
#define DC_GELU_C 0.044715f
#define DC_INV_SQRT_2 0.7071067811865476f
#define DC_INV_SQRT_2PI 0.3989422804014327f

static DC_ACT_INLINE float dc_act1(int op, float alpha, float hi, float th, float v) {
    switch (op) {
    case DC_ACT_RELU: return v < 0 ? 0.0f : v;
    case DC_ACT_RELU6: return dc_relu6f(v);
    case DC_ACT_LEAKY_RELU: return v < 0 ? v * alpha : v;
    case DC_ACT_ELU: return v > 0 ? v : alpha * dc_expm1f(v);
    case DC_ACT_SELU: return v > 0 ? DC_SELU_SCALE * v : (DC_SELU_SCALE * DC_SELU_ALPHA) * dc_expm1f(v);
    case DC_ACT_TANH: return dc_tanh_rational(v);
    case DC_ACT_SIGMOID: return dc_sigmoidf(v);
    case DC_ACT_HARD_SIGMOID: return dc_relu6f(v + 3.0f) / 6.0f;
    case DC_ACT_HARD_SWISH: return v * dc_relu6f(v + 3.0f) / 6.0f;
    case DC_ACT_GELU: return v * dc_phif(v);
    case DC_ACT_GELU_TANH: return 0.5f * v * (1.0f + dc_tanhf(DC_SQRT_2_OVER_PI * (v + DC_GELU_C * v * v * v)));
    case DC_ACT_SOFTPLUS: return (v > 0 ? v : 0.0f) + dc_log1pf_unit(dc_expf(-fabsf(v)));
    case DC_ACT_SILU: return v * dc_sigmoidf(v);
    case DC_ACT_CLIPPED_RELU: return v > th ? (v > hi ? hi : v) : alpha * (v - th);
    case DC_ACT_MISH: { /* x tanh(softplus(x)) = x n / (n + 2), n = e (e + 2), e = e**x; 1 past x = 20 */
        const float e = dc_expf(v < 20.0f ? v : 20.0f), n = e * (e + 2.0f);
        return v * (n / (n + 2.0f));
    }
    default: return v;
    }
}

/* The derivative's factor at v (see the header: the output for tanh, sigmoid, selu; the input otherwise). */
static DC_ACT_INLINE float dc_act1_grad(int op, float alpha, float hi, float th, float v) {
    switch (op) {
    case DC_ACT_RELU: return v > 0 ? 1.0f : 0.0f;
    case DC_ACT_RELU6: return (v > 0 && v < 6.0f) ? 1.0f : 0.0f;
    case DC_ACT_LEAKY_RELU: return v > 0 ? 1.0f : alpha;
    case DC_ACT_ELU: return v > 0 ? 1.0f : alpha * dc_expf(v);
    case DC_ACT_SELU: return v > 0 ? DC_SELU_SCALE : v + DC_SELU_SCALE * DC_SELU_ALPHA;
    case DC_ACT_TANH: return 1.0f - v * v;
    case DC_ACT_SIGMOID: return v * (1.0f - v);
    case DC_ACT_HARD_SIGMOID: return (v > -3.0f && v < 3.0f) ? 1.0f / 6.0f : 0.0f;
    case DC_ACT_HARD_SWISH: return v < -3.0f ? 0.0f : (v > 3.0f ? 1.0f : (2.0f * v + 3.0f) / 6.0f);
    case DC_ACT_GELU: return dc_phif(v) + v * DC_INV_SQRT_2PI * dc_expf(-0.5f * v * v);
    case DC_ACT_GELU_TANH: {
        const float t = dc_tanhf(DC_SQRT_2_OVER_PI * (v + DC_GELU_C * v * v * v));
        return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * DC_SQRT_2_OVER_PI * (1.0f + 3.0f * DC_GELU_C * v * v);
    }
    case DC_ACT_SOFTPLUS: return dc_sigmoidf(v);
    case DC_ACT_SILU: {
        const float s = dc_sigmoidf(v);
        return s * (1.0f + v * (1.0f - s));
    }
    case DC_ACT_CLIPPED_RELU: return v > th ? (v < hi ? 1.0f : 0.0f) : alpha;
    case DC_ACT_MISH: { /* t + x dt/dx, t = n / (n + 2): dt/dx = 4 e (e + 1) / (n + 2)**2 (below 1e-17 past 20) */
        const float e = dc_expf(v < 20.0f ? v : 20.0f), n = e * (e + 2.0f), d = n + 2.0f;
        return n / d + v * (4.0f * e * (e + 1.0f)) / (d * d);
    }
    default: return 1.0f;
    }
}

/* One loop per op, the switch outside it, so that each loop is a branch-free body GCC vectorizes. */
#define DC_ACT_CASES(LOOP)                                                                                        \
    switch (op) {                                                                                                 \
    case DC_ACT_RELU: LOOP(DC_ACT_RELU); break;                                                                   \
    case DC_ACT_RELU6: LOOP(DC_ACT_RELU6); break;                                                                 \
    case DC_ACT_LEAKY_RELU: LOOP(DC_ACT_LEAKY_RELU); break;                                                       \
    case DC_ACT_ELU: LOOP(DC_ACT_ELU); break;                                                                     \
    case DC_ACT_SELU: LOOP(DC_ACT_SELU); break;                                                                   \
    case DC_ACT_TANH: LOOP(DC_ACT_TANH); break;                                                                   \
    case DC_ACT_SIGMOID: LOOP(DC_ACT_SIGMOID); break;                                                             \
    case DC_ACT_HARD_SIGMOID: LOOP(DC_ACT_HARD_SIGMOID); break;                                                   \
    case DC_ACT_HARD_SWISH: LOOP(DC_ACT_HARD_SWISH); break;                                                       \
    case DC_ACT_GELU: LOOP(DC_ACT_GELU); break;                                                                   \
    case DC_ACT_GELU_TANH: LOOP(DC_ACT_GELU_TANH); break;                                                         \
    case DC_ACT_SOFTPLUS: LOOP(DC_ACT_SOFTPLUS); break;                                                           \
    case DC_ACT_SILU: LOOP(DC_ACT_SILU); break;                                                                   \
    case DC_ACT_CLIPPED_RELU: LOOP(DC_ACT_CLIPPED_RELU); break;                                                   \
    case DC_ACT_MISH: LOOP(DC_ACT_MISH); break;                                                                   \
    default: LOOP(DC_ACT_LINEAR); break;                                                                          \
    }

/* y[i] = act(x[i]) for i < n; x may be y (in place). */
static inline void dc_act_forward(int op, float alpha, float hi, float th, const float* x, float* y, long n) {
#define DC_FWD(OP) for (long i = 0; i < n; ++i) y[i] = dc_act1(OP, alpha, hi, th, x[i])
    DC_ACT_CASES(DC_FWD)
#undef DC_FWD
}

/* dx[i] = dy[i] * act'(v[i]). */
static inline void dc_act_backward(int op, float alpha, float hi, float th, const float* dy, const float* v,
                                   float* dx, long n) {
#define DC_BWD(OP) for (long i = 0; i < n; ++i) dx[i] = dy[i] * dc_act1_grad(OP, alpha, hi, th, v[i])
    DC_ACT_CASES(DC_BWD)
#undef DC_BWD
}

/* In place on a block of `rows` rows of `cols` values, rows `ld` apart: a kernel's epilogue, while in cache. */
static inline void dc_act_rows(int op, float alpha, float* y, long rows, int cols, long ld) {
    if (op == DC_ACT_LINEAR) return;
    if (ld == cols) {
        dc_act_forward(op, alpha, 0.0f, 0.0f, y, y, rows * (long)cols);
        return;
    }
    for (long r = 0; r < rows; ++r) dc_act_forward(op, alpha, 0.0f, 0.0f, y + r * ld, y + r * ld, cols);
}

#pragma GCC pop_options

#endif
