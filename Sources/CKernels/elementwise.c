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

void aads_quantize_nchw_to_nhwc(const float *x, int8_t *y, int32_t c, int32_t hw, float scale, int32_t zp) {
    const float lo = (float)(-128 - zp), hi = (float)(127 - zp);
    for (int32_t ch = 0; ch < c; ch++) {
        const float *src = x + (size_t)ch * hw;
        int8_t *dst = y + ch;
        for (int32_t i = 0; i < hw; i++) {
            float v = src[i] / scale;
            if (v != v) v = 0;
            v = v < lo ? lo : v;
            v = v > hi ? hi : v;
            dst[(size_t)i * c] = (int8_t)((int32_t)round_even_f(v) + zp);
        }
    }
}
