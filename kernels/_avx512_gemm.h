/* Row-major float32 GEMM micro-kernels for AVX-512: C[M x N] = A[M x K] * B[K x N], every matrix row-major with
 * its own leading dimension (rows lda, ldb, ldc floats apart).
 *
 * Why: OpenBLAS may run its AVX2 kernels on an AVX-512 CPU (OPENBLAS_CORETYPE=Haswell on the development machine),
 * half the CPU's multiply-add width. The inference GEMMs here have a narrow B (the layer's weights: K x cout, cout
 * 10..256), so a register tile of 6 rows x 64 columns (24 zmm accumulators) streams B straight from cache without
 * packing; K is cut into blocks of KC so a block of B (KC x 64) stays in L1 across the rows of A.
 *
 * Included by _gemm.h (the contract, DC_MR and DC_KC) when the compiler targets AVX-512 (the isa_avx512 variant,
 * -march=x86-64-v4); _avx2_gemm.h is the same contract on AVX2. Each element of C is the same sum in the same order
 * (k ascending, one FMA chain per block of DC_KC, the blocks added in order) whatever M, the row block or the
 * thread count: results never depend on how the rows are split.
 */
#ifndef DROPCORE_AVX512_GEMM_H
#define DROPCORE_AVX512_GEMM_H

#include "_simd.h" /* dc_mask, DC_UNROLL */

#if defined(__AVX512F__)

/* C[MR x 16*NV] (+)= A[MR x kc] * B[kc x 16*NV]; the last 16-lane vector masked by `tail` (for N % 16).
 * `first`: overwrite C (the first K block) instead of adding to it. MR and NV are constants in each instance, so
 * the accumulators live in registers. */
#define DC_KERNEL(MR, NV)                                                                                          \
static inline void dc_kernel_##MR##_##NV(int kc, const float* a, long ars, long acs, const float* b, int ldb,   \
                                         float* c, int ldc, __mmask16 tail, int first) {                         \
    __m512 acc[MR][NV];                                                                                           \
    DC_UNROLL for (int i = 0; i < MR; ++i)                                                                        \
        DC_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();                                   \
    for (int k = 0; k < kc; ++k) {                                                                                \
        const float* bk = b + (long)k * ldb;                                                                      \
        __m512 bv[NV];                                                                                            \
        DC_UNROLL for (int j = 0; j < NV; ++j)                                                                    \
            bv[j] = _mm512_maskz_loadu_ps(j == NV - 1 ? tail : 0xFFFF, bk + 16 * j);                              \
        DC_UNROLL for (int i = 0; i < MR; ++i) {                                                                  \
            __m512 ai = _mm512_set1_ps(a[i * ars + (long)k * acs]);                                               \
            DC_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(ai, bv[j], acc[i][j]);             \
        }                                                                                                         \
    }                                                                                                             \
    DC_UNROLL for (int i = 0; i < MR; ++i) {                                                                      \
        float* ci = c + (long)i * ldc;                                                                            \
        DC_UNROLL for (int j = 0; j < NV; ++j) {                                                                  \
            __mmask16 m = (j == NV - 1) ? tail : 0xFFFF;                                                          \
            __m512 v = acc[i][j];                                                                                 \
            if (!first) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, ci + 16 * j));                              \
            _mm512_mask_storeu_ps(ci + 16 * j, m, v);                                                             \
        }                                                                                                         \
    }                                                                                                             \
}

#define DC_KERNELS(MR) DC_KERNEL(MR, 1) DC_KERNEL(MR, 2) DC_KERNEL(MR, 3) DC_KERNEL(MR, 4)
DC_KERNELS(1)
DC_KERNELS(2)
DC_KERNELS(3)
DC_KERNELS(4)
DC_KERNELS(5)
DC_KERNELS(6)

#define DC_CASE(MR)                                                                                                \
    case MR:                                                                                                      \
        switch (nv) {                                                                                             \
            case 4: dc_kernel_##MR##_4(kc, a, ars, acs, b, ldb, c, ldc, tail, first); break;                      \
            case 3: dc_kernel_##MR##_3(kc, a, ars, acs, b, ldb, c, ldc, tail, first); break;                      \
            case 2: dc_kernel_##MR##_2(kc, a, ars, acs, b, ldb, c, ldc, tail, first); break;                      \
            default: dc_kernel_##MR##_1(kc, a, ars, acs, b, ldb, c, ldc, tail, first); break;                     \
        }                                                                                                         \
        break;

static inline void dc_kernel(int mr, int kc, const float* a, long ars, long acs, const float* b, int ldb, float* c,
                             int ldc, int nv, __mmask16 tail, int first) {
    switch (mr) {
        DC_CASE(6)
        DC_CASE(5)
        DC_CASE(4)
        DC_CASE(3)
        DC_CASE(2)
        DC_CASE(1)
    }
}

/* C (+)= op(A) * B, C (M x N) and B (K x N) row-major; element (i, k) of op(A) at A[i * ars + k * acs] (a
 * row-major A: ars = lda, acs = 1; A transposed: ars = 1, acs = lda). `accumulate`: add to C instead of
 * overwriting it. M, N, K >= 1. Serial: callers parallelize over row panels. */
static inline void dc_gemm(int M, int N, int K, const float* A, long ars, long acs, const float* B, int ldb,
                           float* C, int ldc, int accumulate) {
    for (int j0 = 0; j0 < N; j0 += 64) {
        int nb = (N - j0 < 64) ? N - j0 : 64;
        int nv = (nb + 15) / 16;
        __mmask16 tail = dc_mask(nb - 16 * (nv - 1));
        for (int k0 = 0; k0 < K; k0 += DC_KC) {
            int kc = (K - k0 < DC_KC) ? K - k0 : DC_KC;
            for (int i0 = 0; i0 < M; i0 += DC_MR) {
                int mr = (M - i0 < DC_MR) ? M - i0 : DC_MR;
                dc_kernel(mr, kc, A + i0 * ars + k0 * acs, ars, acs, B + (long)k0 * ldb + j0, ldb,
                          C + (long)i0 * ldc + j0, ldc, nv, tail, k0 == 0 && !accumulate);
            }
        }
    }
}

#endif

#endif
