/* The vectors dropcore's own kernels are written over: 16 lanes and mask registers on AVX-512, 8 lanes and vector
 * masks on AVX2 + FMA. The direct convolution, the max pooling and Winograd's transforms are written once over these
 * names; each compiled target (isa_avx512, isa_avx2) gets its own width. DC_HAVE_SIMD says whether the target has
 * either (the generic target has neither, and its callers use the portable loops and BLAS).
 *
 * Every operation here rounds as its scalar twin does (an FMA is one fused rounding on both), so a kernel written
 * over them gives the same bits on AVX-512 and on AVX2 when it adds its terms in the same order.
 */
#ifndef DROPCORE_SIMD_H
#define DROPCORE_SIMD_H

#if defined(__AVX512F__)
#define DC_HAVE_SIMD 1
#include <immintrin.h>
typedef __m512 vf_t;
typedef __mmask16 vmask_t;
typedef __m512i vi_t;
#define V_LANES 16
/* Mask of the first n lanes (n >= 16: all of them). */
static inline __mmask16 dc_mask(int n) { return (__mmask16)((n >= 16) ? 0xFFFF : ((1u << (n < 0 ? 0 : n)) - 1u)); }
#define V_MASK(n) dc_mask(n)
#define V_FULL ((__mmask16)0xFFFF)
#define V_LOAD(m, p) _mm512_maskz_loadu_ps(m, p)
#define V_LOADU(p) _mm512_loadu_ps(p)
#define V_STOREU(p, v) _mm512_storeu_ps(p, v)
#define V_STORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define V_BCAST(p) _mm512_set1_ps(*(p))
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_DIV _mm512_div_ps
#define V_MAX _mm512_max_ps
#define V_SET1 _mm512_set1_ps
#define V_ZERO _mm512_setzero_ps()
#define V_LT0(v) _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ)
#define V_GT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define V_NAN(v) _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)
#define V_NONE ((__mmask16)0)
#define V_OR(a, b) ((__mmask16)((a) | (b)))
#define V_SELECT(m, a, b) _mm512_mask_blend_ps(m, a, b) /* b where m */
#define V_INT(k) _mm512_set1_epi32(k)
#define V_SELECT_INT(m, a, b) _mm512_mask_blend_epi32(m, a, b)
#define V_STORE_BYTES(p, m, v) _mm_mask_storeu_epi8(p, m, _mm512_cvtepi32_epi8(v))
/* Bytes zero-extended to int lanes: 16 of them (V_LOADU_BYTES), or the lanes of m (the others 0). */
#define V_LOADU_BYTES(p) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(p)))
#define V_LOAD_BYTES(m, p) _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p))
#define V_EQ_INT(a, b) _mm512_cmpeq_epi32_mask(a, b)
#define V_AND(a, b) ((__mmask16)((a) & (b)))
#elif defined(__AVX2__) && defined(__FMA__)
#define DC_HAVE_SIMD 1
#include <immintrin.h>
typedef __m256 vf_t;
typedef __m256i vmask_t;
typedef __m256i vi_t;
#define V_LANES 8
/* Lanes 0 .. n - 1 of an 8-lane mask for maskload / maskstore (n >= 8: all of them). */
static inline __m256i dc2_mask(int n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
}
#define V_MASK(n) dc2_mask(n)
#define V_FULL _mm256_set1_epi32(-1)
/* A masked store is microcoded on AMD's cores (and a masked load costs more than a plain one): full vectors, the
 * common case (channel counts that are multiples of 8), take plain loads and stores, and a partial vector is
 * stored as 4, 2 and 1 floats (LeNet's 6-channel direct convolution: a masked store per pixel was most of it). */
static inline void dc2_store_first(float* p, __m256 v, int n) { /* lanes 0 .. n - 1, n in 0..8 */
    __m128 x = _mm256_castps256_ps128(v);
    if (n >= 8) { _mm256_storeu_ps(p, v); return; }
    if (n >= 4) { _mm_storeu_ps(p, x); p += 4; n -= 4; x = _mm256_extractf128_ps(v, 1); }
    if (n >= 2) { _mm_storel_pi((__m64*)p, x); p += 2; n -= 2; x = _mm_movehl_ps(x, x); }
    if (n >= 1) _mm_store_ss(p, x);
}
/* The lanes a mask of dc2_mask keeps (its first n). */
static inline int dc2_count(__m256i m) { return __builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(m))); }
static inline int dc2_full(__m256i m) { return _mm256_testc_si256(m, _mm256_set1_epi32(-1)); }
static inline __m256 dc2_load(__m256i m, const float* p) {
    return dc2_full(m) ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}
static inline void dc2_store(float* p, __m256i m, __m256 v) { dc2_store_first(p, v, dc2_count(m)); }
#define V_LOAD(m, p) dc2_load(m, p)
#define V_LOADU(p) _mm256_loadu_ps(p)
#define V_STOREU(p, v) _mm256_storeu_ps(p, v)
#define V_STORE(p, m, v) dc2_store(p, m, v)
#define V_BCAST(p) _mm256_broadcast_ss(p)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_MUL _mm256_mul_ps
#define V_DIV _mm256_div_ps
#define V_MAX _mm256_max_ps
#define V_SET1 _mm256_set1_ps
#define V_ZERO _mm256_setzero_ps()
#define V_LT0(v) _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ))
#define V_GT(a, b) _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_GT_OQ))
#define V_NAN(v) _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))
#define V_NONE _mm256_setzero_si256()
#define V_OR(a, b) _mm256_or_si256(a, b)
#define V_SELECT(m, a, b) _mm256_blendv_ps(a, b, _mm256_castsi256_ps(m))
#define V_INT(k) _mm256_set1_epi32(k)
#define V_SELECT_INT(m, a, b) _mm256_blendv_epi8(a, b, m)
static inline void dc2_store_bytes(unsigned char* p, __m256i m, __m256i v) {
    int mask[8], val[8];
    _mm256_storeu_si256((__m256i*)mask, m);
    _mm256_storeu_si256((__m256i*)val, v);
    for (int l = 0; l < 8; ++l)
        if (mask[l]) p[l] = (unsigned char)val[l];
}
#define V_STORE_BYTES(p, m, v) dc2_store_bytes(p, m, v)
/* The first n bytes (n in 0..8) zero-extended to int lanes, the other lanes 0: no byte past them is read. */
static inline __m256i dc2_load_bytes(const unsigned char* p, __m256i m) {
    unsigned char b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int n = dc2_count(m);
    for (int l = 0; l < n; ++l) b[l] = p[l];
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)b));
}
#define V_LOADU_BYTES(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(p)))
#define V_LOAD_BYTES(m, p) dc2_load_bytes(p, m)
#define V_EQ_INT(a, b) _mm256_cmpeq_epi32(a, b)
#define V_AND(a, b) _mm256_and_si256(a, b)
#else
#define DC_HAVE_SIMD 0
#endif

/* Unrolled completely (the tile sizes are constants in each kernel), so that GCC keeps the accumulators in
 * registers: left to itself it kept them on the stack. */
#define DC_UNROLL _Pragma("GCC unroll 32")

#endif
