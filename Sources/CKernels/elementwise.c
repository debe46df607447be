// Elementwise int8 kernels. Results must be identical in every variant, so float expressions are written one
// operation per statement and contraction into fused multiply-adds is off.
#include "internal.h"
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
// (GCC builds pass -ffp-contract=off.)
#if AADS_X86
#include <immintrin.h>
#endif

static inline float round_even_f(float v) {
    const float magic = 12582912.0f; // 1.5 * 2^23, exact for |v| < 2^22
    const float t = v + magic;
    return t - magic;
}

static inline int8_t qbinary_one(const aads_qbinary *p, int32_t a, int32_t b) {
    const float x = (float)(a - p->za) * p->sa;
    const float z = (float)(b - p->zb) * p->sb;
    float v = p->mul ? x * z : x + z;
    v = v / p->sc;
    const float lo = (float)(p->out_min - p->zc), hi = (float)(p->out_max - p->zc);
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return (int8_t)((int32_t)round_even_f(v) + p->zc);
}

static void qbinary_portable(const aads_qbinary *p, const int8_t *a, const int8_t *b, int8_t *y, size_t n) {
    if (p->b_scalar) {
        for (size_t i = 0; i < n; i++) y[i] = qbinary_one(p, a[i], b[0]);
    } else {
        for (size_t i = 0; i < n; i++) y[i] = qbinary_one(p, a[i], b[i]);
    }
}

#if AADS_X86
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void qbinary_avx512(const aads_qbinary *p, const int8_t *a,
                                                                                 const int8_t *b, int8_t *y, size_t n) {
    const __m512i za = _mm512_set1_epi32(p->za), zb = _mm512_set1_epi32(p->zb), zc = _mm512_set1_epi32(p->zc);
    const __m512 sa = _mm512_set1_ps(p->sa), sb = _mm512_set1_ps(p->sb), sc = _mm512_set1_ps(p->sc);
    const __m512 lo = _mm512_set1_ps((float)(p->out_min - p->zc)), hi = _mm512_set1_ps((float)(p->out_max - p->zc));
    for (size_t i = 0; i < n; i += 16) {
        const size_t left = n - i;
        const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        const __m512 x = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, a + i)), za)), sa);
        const __m128i bv = p->b_scalar ? _mm_set1_epi8(b[0]) : _mm_maskz_loadu_epi8(m, b + i);
        const __m512 z = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepi8_epi32(bv), zb)), sb);
        __m512 v = p->mul ? _mm512_mul_ps(x, z) : _mm512_add_ps(x, z);
        v = _mm512_div_ps(v, sc);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        _mm512_mask_cvtsepi32_storeu_epi8(y + i, m, _mm512_add_epi32(_mm512_cvtps_epi32(v), zc));
    }
}
#endif

void aads_qbinary_run(int variant, const aads_qbinary *p, const int8_t *a, const int8_t *b, int8_t *y, size_t n) {
#if AADS_X86
    if (variant == AADS_VARIANT_AVX512VNNI && aads_variant_available(variant)) {
        qbinary_avx512(p, a, b, y, n);
        return;
    }
#endif
    (void)variant;
    qbinary_portable(p, a, b, y, n);
}

/// Quantises n floats of one channel into `out` (a loop the compiler vectorises for the target it is compiled for).
#define QUANTIZE_BLOCK_BODY                                                                                            \
    for (int32_t i = 0; i < n; i++) {                                                                                  \
        float v = src[i] / scale;                                                                                      \
        v = v != v ? 0 : v;                                                                                            \
        v = v < lo ? lo : v;                                                                                           \
        v = v > hi ? hi : v;                                                                                           \
        out[i] = (int8_t)((int32_t)round_even_f(v) + zp);                                                              \
    }

static void quantize_block(const float *src, int8_t *out, int32_t n, float scale, float lo, float hi, int32_t zp) {
    QUANTIZE_BLOCK_BODY
}

#if AADS_X86
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void quantize_block_avx512(const float *src, int8_t *out,
                                                                                        int32_t n, float scale, float lo,
                                                                                        float hi, int32_t zp) {
    QUANTIZE_BLOCK_BODY
}
#endif

void aads_quantize_nchw_to_nhwc(int variant, const float *x, int8_t *y, int32_t c, int32_t hw, float scale, int32_t zp) {
    const float lo = (float)(-128 - zp), hi = (float)(127 - zp);
    void (*block_fn)(const float *, int8_t *, int32_t, float, float, float, int32_t) = quantize_block;
#if AADS_X86
    if (variant == AADS_VARIANT_AVX512VNNI && aads_variant_available(variant)) block_fn = quantize_block_avx512;
#endif
    (void)variant;
    // A block of one channel at a time is quantised, then scattered to every c-th byte.
    int8_t block[256];
    for (int32_t i0 = 0; i0 < hw; i0 += 256) {
        const int32_t n = hw - i0 < 256 ? hw - i0 : 256;
        for (int32_t ch = 0; ch < c; ch++) {
            block_fn(x + (size_t)ch * hw + i0, block, n, scale, lo, hi, zp);
            int8_t *dst = y + (size_t)i0 * c + ch;
            for (int32_t i = 0; i < n; i++) dst[(size_t)i * c] = block[i];
        }
    }
}
