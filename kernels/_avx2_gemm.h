/* Row-major float32 GEMM micro-kernels for AVX2 + FMA (the avx2 target): the contract of dc_gemm in
 * _avx512_gemm.h with 8-lane vectors, for the Winograd products (_winograd.h) of that target.
 *
 * Why not BLAS: the Winograd products are 16 small GEMMs per band of tiles (tiles x cin by cin x cout, K = 32-64),
 * called from inside the kernels' own OpenMP threads; sgemm packs its operands on every call and must be held to
 * one thread there. A 6 x 16 register tile (12 accumulators) streams B from cache without packing.
 *
 * Built only when the compiler targets AVX2 and FMA without AVX-512 (the isa_avx2 variant): DC_HAVE_AVX2_GEMM says
 * whether it was. Each element of C sums its products in k order, in blocks of DC_KC, whatever the row split.
 */
#ifndef DROPCORE_AVX2_GEMM_H
#define DROPCORE_AVX2_GEMM_H

#include "_avx512_gemm.h" /* DC_MR, DC_KC */

#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#define DC_HAVE_AVX2_GEMM 1
#include <immintrin.h>

/* Lanes 0 .. n - 1 (n in 0..8) of an 8-lane mask for maskload / maskstore. */
static inline __m256i dc2_mask(int n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
}

#define DC2_UNROLL _Pragma("GCC unroll 16")

/* C[MR x 8*NV] (+)= A[MR x kc] * B[kc x 8*NV]; the last vector masked by `tail`. `first`: overwrite C. */
#define DC2_KERNEL(MR, NV)                                                                                         \
static inline void dc2_kernel_##MR##_##NV(int kc, const float* a, long ars, long acs, const float* b, int ldb,  \
                                          float* c, int ldc, __m256i tail, int first) {                         \
    __m256 acc[MR][NV];                                                                                           \
    const __m256i full = _mm256_set1_epi32(-1);                                                                   \
    DC2_UNROLL for (int i = 0; i < MR; ++i)                                                                       \
        DC2_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_setzero_ps();                                  \
    for (int k = 0; k < kc; ++k) {                                                                                \
        const float* bk = b + (long)k * ldb;                                                                      \
        __m256 bv[NV];                                                                                            \
        DC2_UNROLL for (int j = 0; j < NV; ++j) bv[j] = _mm256_maskload_ps(bk + 8 * j, j == NV - 1 ? tail : full); \
        DC2_UNROLL for (int i = 0; i < MR; ++i) {                                                                 \
            const __m256 ai = _mm256_broadcast_ss(a + i * ars + (long)k * acs);                                   \
            DC2_UNROLL for (int j = 0; j < NV; ++j) acc[i][j] = _mm256_fmadd_ps(ai, bv[j], acc[i][j]);            \
        }                                                                                                         \
    }                                                                                                             \
    DC2_UNROLL for (int i = 0; i < MR; ++i) {                                                                     \
        float* ci = c + (long)i * ldc;                                                                            \
        DC2_UNROLL for (int j = 0; j < NV; ++j) {                                                                 \
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
        if (nv == 2) dc2_kernel_##MR##_2(kc, a, ars, acs, b, ldb, c, ldc, tail, first);                           \
        else dc2_kernel_##MR##_1(kc, a, ars, acs, b, ldb, c, ldc, tail, first);                                   \
        break;

/* C (+)= op(A) * B as dc_gemm (see _avx512_gemm.h): 16-column blocks, K blocks of DC_KC, row tiles of DC_MR. */
static inline void dc2_gemm(int M, int N, int K, const float* A, long ars, long acs, const float* B, int ldb,
                            float* C, int ldc, int accumulate) {
    for (int j0 = 0; j0 < N; j0 += 16) {
        const int nb = (N - j0 < 16) ? N - j0 : 16;
        const int nv = (nb + 7) / 8;
        const __m256i tail = dc2_mask(nb - 8 * (nv - 1));
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

#else
#define DC_HAVE_AVX2_GEMM 0
#endif

#endif
