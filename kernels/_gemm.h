/* dropcore's own row-major float32 GEMM, one contract on every x86 target that has vectors:
 *
 *     dc_gemm(M, N, K, A, ars, acs, B, ldb, C, ldc, accumulate): C (+)= op(A) * B
 *
 * C (M x N) and B (K x N) row-major, rows ldc and ldb floats apart; element (i, k) of op(A) at A[i * ars + k * acs]
 * (a row-major A: ars = lda, acs = 1; A transposed: ars = 1, acs = lda). `accumulate`: add to C instead of
 * overwriting it. M, N, K >= 1. Serial: callers parallelize over row panels.
 *
 * Each element of C is the same sum in the same order on every target: k ascending, one FMA chain per block of
 * DC_KC, each block added to C in order. So a row's result never depends on the batch it is in, on how the rows
 * are split between threads, or on whether the AVX-512 (_avx512_gemm.h) or the AVX2 (_avx2_gemm.h) kernels run it.
 * DC_HAVE_FAST_GEMM says whether this target has them; the generic one does not (its callers use BLAS).
 */
#ifndef DROPCORE_GEMM_H
#define DROPCORE_GEMM_H

/* Rows of C per register tile, and the K block (the order every caller's result depends on). */
#define DC_MR 6
#define DC_KC 128

#include "_simd.h"
#include "_avx512_gemm.h"
#include "_avx2_gemm.h"

#if defined(__AVX512F__)
#define DC_HAVE_AVX512 1
#else
#define DC_HAVE_AVX512 0
#endif
#define DC_HAVE_FAST_GEMM DC_HAVE_SIMD

#if !DC_HAVE_FAST_GEMM
/* Never called on the generic target (callers check DC_HAVE_FAST_GEMM); defined so that the extension links. */
static inline void dc_gemm(int M, int N, int K, const float* A, long ars, long acs, const float* B, int ldb,
                           float* C, int ldc, int accumulate) {
    (void)M; (void)N; (void)K; (void)A; (void)ars; (void)acs; (void)B; (void)ldb; (void)C; (void)ldc;
    (void)accumulate;
}
#endif

/* C = A * B for row-major A (M x K, rows lda apart). */
static inline void dc_sgemm_rm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                               int ldc) {
    dc_gemm(M, N, K, A, lda, 1, B, ldb, C, ldc, 0);
}

#endif
