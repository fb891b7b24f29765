/* Row-major float32 GEMM micro-kernels for AVX2 + FMA (the avx2 target): the contract of dc_gemm (_gemm.h) with
 * 8-lane vectors.
 *
 * Why not BLAS: sgemm packs its operands on every call, must be held to one thread inside the kernels' own OpenMP
 * threads, and sums a product in an order that depends on the size of the block it is given (sgemv up to a few
 * rows, sgemm above): a sample's bits then depended on its batch. Here each element of C is the sum dc_gemm forms
 * on AVX-512 (k ascending, one FMA chain per block of DC_KC, the blocks added in order), so results are the same
 * alone or in any batch, at any thread count, and equal the avx512 target's.
 *
 * Register tile: 6 rows x 16 columns, 12 ymm accumulators beside the 2 vectors of B and a broadcast of A (15 of the
 * 16 registers). B streams from cache without packing (the weights are narrow: K x cout), a block of DC_KC rows of
 * it (8 KiB) staying in L1 across the rows of A.
 */
#ifndef DROPCORE_AVX2_GEMM_H
#define DROPCORE_AVX2_GEMM_H

#include "_simd.h" /* dc2_mask, DC_UNROLL */

#if !defined(__AVX512F__) && DC_HAVE_SIMD

/* C[MR x 8*NV] (+)= A[MR x kc] * B[kc x 8*NV]; the last vector masked by `tail` (`partial`: it is not full).
 * `first`: overwrite C. */
#define DC2_KERNEL(MR, NV)                                                                                         \
static inline void dc2_kernel_##MR##_##NV(int kc, const float* a, long ars, long acs, const float* b, int ldb,  \
                                          float* c, int ldc, __m256i tail, int partial, int first) {            \
    __m256 acc[MR][NV];                                                                                           \
    DC_UNROLL for (int i = 0; i < MR; ++i)                                                                        \
        DC_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_setzero_ps();                                   \
    if (partial) {                                                                                                \
        for (int k = 0; k < kc; ++k) {                                                                            \
            const float* bk = b + (long)k * ldb;                                                                  \
            __m256 bv[NV];                                                                                        \
            DC_UNROLL for (int j = 0; j < NV - 1; ++j) bv[j] = _mm256_loadu_ps(bk + 8 * j);                       \
            bv[NV - 1] = _mm256_maskload_ps(bk + 8 * (NV - 1), tail);                                             \
            DC_UNROLL for (int i = 0; i < MR; ++i) {                                                              \
                const __m256 ai = _mm256_broadcast_ss(a + i * ars + (long)k * acs);                               \
                DC_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_fmadd_ps(ai, bv[j], acc[i][j]);        \
            }                                                                                                     \
        }                                                                                                         \
    } else {                                                                                                      \
        for (int k = 0; k < kc; ++k) {                                                                            \
            const float* bk = b + (long)k * ldb;                                                                  \
            __m256 bv[NV];                                                                                        \
            DC_UNROLL for (int j = 0; j < NV; ++j) bv[j] = _mm256_loadu_ps(bk + 8 * j);                           \
            DC_UNROLL for (int i = 0; i < MR; ++i) {                                                              \
                const __m256 ai = _mm256_broadcast_ss(a + i * ars + (long)k * acs);                               \
                DC_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_fmadd_ps(ai, bv[j], acc[i][j]);        \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    const __m256i full = _mm256_set1_epi32(-1);                                                                   \
    DC_UNROLL for (int i = 0; i < MR; ++i) {                                                                      \
        float* ci = c + (long)i * ldc;                                                                            \
        DC_UNROLL for (int j = 0; j < NV; ++j) {                                                                  \
            const __m256i m = (j == NV - 1) ? tail : full;                                                        \
            __m256 v = acc[i][j];                                                                                 \
            if (!first) v = _mm256_add_ps(v, _mm256_maskload_ps(ci + 8 * j, m));                                  \
            _mm256_maskstore_ps(ci + 8 * j, m, v);                                                                \
        }                                                                                                         \
    }                                                                                                             \
}

#define DC2_KERNELS(MR) DC2_KERNEL(MR, 1) DC2_KERNEL(MR, 2)
DC2_KERNELS(1)
DC2_KERNELS(2)
DC2_KERNELS(3)
DC2_KERNELS(4)
DC2_KERNELS(5)
DC2_KERNELS(6)

#define DC2_CASE(MR)                                                                                               \
    case MR:                                                                                                      \
        if (nv == 2) dc2_kernel_##MR##_2(kc, a, ars, acs, b, ldb, c, ldc, tail, partial, first);                  \
        else dc2_kernel_##MR##_1(kc, a, ars, acs, b, ldb, c, ldc, tail, partial, first);                          \
        break;

/* C (+)= op(A) * B (see _gemm.h): 16-column blocks, K blocks of DC_KC, row tiles of DC_MR. */
static inline void dc_gemm(int M, int N, int K, const float* A, long ars, long acs, const float* B, int ldb,
                           float* C, int ldc, int accumulate) {
    for (int j0 = 0; j0 < N; j0 += 16) {
        const int nb = (N - j0 < 16) ? N - j0 : 16;
        const int nv = (nb + 7) / 8;
        const int last = nb - 8 * (nv - 1);
        const __m256i tail = dc2_mask(last);
        const int partial = last < 8;
        for (int k0 = 0; k0 < K; k0 += DC_KC) {
            const int kc = (K - k0 < DC_KC) ? K - k0 : DC_KC;
            for (int i0 = 0; i0 < M; i0 += DC_MR) {
                const int mr = (M - i0 < DC_MR) ? M - i0 : DC_MR;
                const float* a = A + i0 * ars + k0 * acs;
                const float* b = B + (long)k0 * ldb + j0;
                float* c = C + (long)i0 * ldc + j0;
                const int first = k0 == 0 && !accumulate;
                switch (mr) {
                    DC2_CASE(6)
                    DC2_CASE(5)
                    DC2_CASE(4)
                    DC2_CASE(3)
                    DC2_CASE(2)
                    DC2_CASE(1)
                }
            }
        }
    }
}

#endif

#endif
