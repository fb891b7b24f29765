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
 * 16 registers); fewer rows take wider tiles (dc2_width). B streams from cache without packing (the weights are
 * narrow: K x cout).
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
    DC_UNROLL for (int i = 0; i < MR; ++i) {                                                                      \
        float* ci = c + (long)i * ldc;                                                                            \
        DC_UNROLL for (int j = 0; j < NV; ++j) {                                                                  \
            __m256 v = acc[i][j];                                                                                 \
            if (j == NV - 1 && partial) {                                                                         \
                if (!first) v = _mm256_add_ps(v, _mm256_maskload_ps(ci + 8 * j, tail));                           \
                dc2_store(ci + 8 * j, tail, v);                                                                   \
            } else {                                                                                              \
                if (!first) v = _mm256_add_ps(v, _mm256_loadu_ps(ci + 8 * j));                                    \
                _mm256_storeu_ps(ci + 8 * j, v);                                                                  \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
}

/* Each MR with every width up to its widest: 16 columns for 5-6 rows; 24 for 4, 32 for 2-3 and 64 for a single row,
 * so that a few rows (a small batch through a dense layer) still have 8-12 independent FMA chains in flight: a 1 x 16
 * tile has 2, each waiting on the FMA latency (4 cycles), and ran a batch-1 dense layer at a quarter of the rate. */
#define DC2_KERNELS_2(MR) DC2_KERNEL(MR, 1) DC2_KERNEL(MR, 2)
#define DC2_KERNELS_3(MR) DC2_KERNELS_2(MR) DC2_KERNEL(MR, 3)
#define DC2_KERNELS_4(MR) DC2_KERNELS_3(MR) DC2_KERNEL(MR, 4)
#define DC2_KERNELS_8(MR) DC2_KERNELS_4(MR) DC2_KERNEL(MR, 5) DC2_KERNEL(MR, 6) DC2_KERNEL(MR, 7) DC2_KERNEL(MR, 8)
DC2_KERNELS_8(1)
DC2_KERNELS_4(2)
DC2_KERNELS_4(3)
DC2_KERNELS_3(4)
DC2_KERNELS_2(5)
DC2_KERNELS_2(6)

/* Vectors (of 8 columns) in the widest tile of mr rows. */
static inline int dc2_width(int mr) { return mr == 1 ? 8 : mr <= 3 ? 4 : mr == 4 ? 3 : 2; }

#define DC2_ARGS kc, a, ars, acs, b, ldb, c, ldc, tail, partial, first
#define DC2_NV(MR, NV) case NV: dc2_kernel_##MR##_##NV(DC2_ARGS); return;

static inline void dc2_tile(int mr, int nv, int kc, const float* a, long ars, long acs, const float* b, int ldb,
                            float* c, int ldc, __m256i tail, int partial, int first) {
    switch (mr) {
        case 1: switch (nv) { DC2_NV(1, 1) DC2_NV(1, 2) DC2_NV(1, 3) DC2_NV(1, 4) DC2_NV(1, 5) DC2_NV(1, 6)
                              DC2_NV(1, 7) DC2_NV(1, 8) } return;
        case 2: switch (nv) { DC2_NV(2, 1) DC2_NV(2, 2) DC2_NV(2, 3) DC2_NV(2, 4) } return;
        case 3: switch (nv) { DC2_NV(3, 1) DC2_NV(3, 2) DC2_NV(3, 3) DC2_NV(3, 4) } return;
        case 4: switch (nv) { DC2_NV(4, 1) DC2_NV(4, 2) DC2_NV(4, 3) } return;
        case 5: switch (nv) { DC2_NV(5, 1) DC2_NV(5, 2) } return;
        default: switch (nv) { DC2_NV(6, 1) DC2_NV(6, 2) } return;
    }
}

/* Columns per block of B kept in L2 (DC_KC x DC2_NC floats: 128 KiB) while the row tiles of A pass over it. */
#define DC2_NC 256

/* C (+)= op(A) * B (see _gemm.h): blocks of DC2_NC columns, then K blocks of DC_KC, then row tiles of DC_MR, then the
 * tile's columns, so that a tile of A (6 x DC_KC, 3 KiB) stays in L1 across the block's width and the block of B in
 * L2 across the rows. With the columns innermost and unblocked, as on AVX-512, a wide B re-read all of A once per 16
 * columns (one core, (600 x 9216) x (9216 x 128): 50 against 78 GFLOP/s now), and a B wider than L2 came from L3
 * for every row tile (a dense layer's dx). The order of each element's sum is the contract's whatever the loops. */
static inline void dc_gemm(int M, int N, int K, const float* A, long ars, long acs, const float* B, int ldb,
                           float* C, int ldc, int accumulate) {
    for (int jc = 0; jc < N; jc += DC2_NC) {
        const int ncols = (N - jc < DC2_NC) ? N - jc : DC2_NC;
        for (int k0 = 0; k0 < K; k0 += DC_KC) {
            const int kc = (K - k0 < DC_KC) ? K - k0 : DC_KC;
            const int first = k0 == 0 && !accumulate;
            for (int i0 = 0; i0 < M; i0 += DC_MR) {
                const int mr = (M - i0 < DC_MR) ? M - i0 : DC_MR;
                const int width = 8 * dc2_width(mr);
                const float* a = A + i0 * ars + k0 * acs;
                for (int j0 = 0; j0 < ncols; j0 += width) {
                    const int nb = (ncols - j0 < width) ? ncols - j0 : width;
                    const int nv = (nb + 7) / 8;
                    const int rest = nb - 8 * (nv - 1);
                    const __m256i tail = dc2_mask(rest);
                    const int partial = rest < 8;
                    const float* b = B + (long)k0 * ldb + jc + j0;
                    float* c = C + (long)i0 * ldc + jc + j0;
                    dc2_tile(mr, nv, kc, a, ars, acs, b, ldb, c, ldc, tail, partial, first);
                }
            }
        }
    }
}

#endif

#endif
