// The float32 evaluation of one Conv/Gemm output as ONNX Runtime's CPU provider performs it for a QDQ graph without
// graph optimisations (DequantizeLinear → float Conv/Gemm → QuantizeLinear, x86-64 MLAS kernels). Used only for the
// rare outputs whose exact value is within float noise of a rounding boundary (see aads_qref in CKernels.h).
//
// Every operation below must round exactly once, in float32: no contraction of a*b+c into a fused multiply-add except
// where fmaf() asks for one.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#include "cpu.h"
#include "internal.h"

/// Running sum in one of the AADS_SUM_* orders, fed the K products' factors in order.
typedef struct {
    const aads_qref *r;
    int32_t K, k;
    float y; // SGEMM: finished blocks; M1: the running result C
    int has_y;
    float part;        // SGEMM: the current block; M1: the current group
    int32_t part_left; // products left in the current block or group (0: none open)
    float lanes[8];    // M1_TRANS_B
} fsum;

static void fsum_init(fsum *s, const aads_qref *r, int32_t K, float bias) {
    memset(s, 0, sizeof *s);
    s->r = r;
    s->K = K;
    if (r->bias_first) {
        s->y = bias;
        s->has_y = 1;
    }
}

static inline void fsum_close_part(fsum *s) {
    if (s->has_y) {
        const float t = s->part + s->y;
        s->y = t;
    } else {
        s->y = s->part;
        s->has_y = 1;
    }
}

/// SGEMM order: products accumulated with FMA in blocks, block sums added in order.
#define FSUM_SGEMM_BODY                                                                                               \
    for (int32_t i = 0; i < n;) {                                                                                      \
        if (s->part_left == 0) {                                                                                       \
            s->part_left = s->r->kblock > 0 ? s->r->kblock : s->K;                                                     \
            s->part = 0.0f;                                                                                            \
        }                                                                                                              \
        const int32_t run = s->part_left < n - i ? s->part_left : n - i;                                               \
        float part = s->part;                                                                                          \
        for (int32_t j = i; j < i + run; j++) part = FMAF(x[j], w[j], part);                                           \
        s->part = part;                                                                                                \
        i += run;                                                                                                      \
        s->k += run;                                                                                                   \
        s->part_left -= run;                                                                                           \
        if (s->part_left == 0 || s->k == s->K) {                                                                       \
            fsum_close_part(s);                                                                                        \
            s->part_left = 0;                                                                                          \
        }                                                                                                              \
    }

#define FMAF(a, b, c) fmaf(a, b, c)
static void fsum_sgemm_generic(fsum *s, const float *x, const float *w, int32_t n) { FSUM_SGEMM_BODY }
#undef FMAF

#if AADS_X86
#define FMAF(a, b, c) __builtin_fmaf(a, b, c)
__attribute__((target("fma"))) static void fsum_sgemm_fma(fsum *s, const float *x, const float *w, int32_t n) {
    FSUM_SGEMM_BODY
}
#undef FMAF
#endif

/// Adds n products x[i]·w[i] (the next ones in K order) to the sum.
static void fsum_add(fsum *s, const float *x, const float *w, int32_t n) {
    switch (s->r->order) {
    case AADS_SUM_SGEMM:
#if AADS_X86
        if (aads_x86_has_avx2()) {
            fsum_sgemm_fma(s, x, w, n);
            return;
        }
#endif
        fsum_sgemm_generic(s, x, w, n);
        return;
    case AADS_SUM_M1:
        for (int32_t i = 0; i < n; i++) {
            const float p = x[i] * w[i];
            if (s->part_left == 0) { // a new group: 4 while at least 4 remain, then 2, then 1
                const int32_t left = s->K - s->k;
                s->part_left = left >= 4 ? 4 : (left & 2) ? 2 : 1;
                s->part = p;
            } else {
                const float t = s->part + p;
                s->part = t;
            }
            s->k++;
            if (--s->part_left == 0) fsum_close_part(s);
        }
        return;
    default:
        for (int32_t i = 0; i < n; i++, s->k++) {
            const float p = x[i] * w[i];
            const float t = s->lanes[s->k & 7] + p;
            s->lanes[s->k & 7] = t;
        }
        return;
    }
}

static float fsum_finish(fsum *s, int32_t column, float bias) {
    float y;
    if (s->r->order == AADS_SUM_M1_TRANS_B) {
        const float *l = s->lanes;
        const int32_t n = s->r->n_total, full4 = n / 4 * 4;
        float a, b;
        if (column < full4) { // 4 columns at a time: unpack/transpose, then ((l0+l1)+l2)+l3 per 128-bit half
            a = l[0] + l[1];
            a = a + l[2];
            a = a + l[3];
            b = l[4] + l[5];
            b = b + l[6];
            b = b + l[7];
        } else if (((n - full4) & 2) && column < full4 + 2) { // 2 columns: (l0+l2)+(l4+l6) and (l1+l3)+(l5+l7)
            const float e0 = l[0] + l[2], e1 = l[4] + l[6], o0 = l[1] + l[3], o1 = l[5] + l[7];
            a = e0 + e1;
            b = o0 + o1;
        } else { // 1 column: horizontal adds
            const float h0 = l[0] + l[1], h1 = l[2] + l[3], h2 = l[4] + l[5], h3 = l[6] + l[7];
            a = h0 + h1;
            b = h2 + h3;
        }
        y = a + b;
        if (s->r->bias) y = y + bias;
        return y;
    }
    y = s->has_y ? s->y : 0.0f;
    if (!s->r->bias_first && s->r->bias) y = y + bias;
    return y;
}

/// QuantizeLinear as ONNX Runtime computes it: x / scale in float32, clamped, rounded half to even.
static int8_t quantize_like_ort(float y, const aads_qref *r, int32_t zp, int32_t out_min, int32_t out_max) {
    float v = y / r->out_scale;
    const float lo = (float)(out_min - zp), hi = (float)(out_max - zp);
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return (int8_t)((int32_t)rintf(v) + zp);
}

static inline float dequantize_like_ort(int32_t q, int32_t zp, float scale) { return (float)(q - zp) * scale; }

int8_t aads_qconv_reference_output(const aads_qconv *p, const int8_t *in, int32_t row, int32_t n) {
    const aads_qref *r = p->ref;
    const int32_t taps = p->kh * p->kw, kq = (p->cin + 3) / 4;
    const int8_t *ptrs[AADS_MAX_TAPS];
    aads_row_taps(p, in, row, ptrs);
    const float bias = r->bias ? r->bias[n] : 0.0f, ws = r->weight_scales[n];
    const int8_t *w = p->weights + (size_t)(n / 16) * (size_t)taps * (size_t)kq * 64 + (size_t)(n % 16) * 4;
    fsum s;
    fsum_init(&s, r, p->cin * taps, bias);
    // ONNX Runtime's im2col order: input channel, then kernel row, then kernel column.
    float xs[256], wfs[256];
    const int32_t zp = p->in_zp;
    const float sx = r->in_scale;
    const size_t tap_stride = (size_t)kq * 64;
    if (taps == 1) { // pointwise: contiguous inputs, weights in runs of 4
        for (int32_t c0 = 0; c0 < p->cin; c0 += 256) {
            const int32_t cn = p->cin - c0 < 256 ? p->cin - c0 : 256;
            const int8_t *x = ptrs[0] + c0, *wq = w + (size_t)c0 * 16;
            for (int32_t i = 0; i < cn; i++) xs[i] = dequantize_like_ort(x[i], zp, sx);
            for (int32_t i = 0; i < cn; i += 4, wq += 64) {
                for (int32_t b = 0; b < 4; b++) wfs[i + b] = dequantize_like_ort(wq[b], 0, ws);
            }
            fsum_add(&s, xs, wfs, cn);
        }
        return quantize_like_ort(fsum_finish(&s, n, bias), r, p->out_zp, p->out_min, p->out_max);
    }
    int32_t m = 0;
    for (int32_t c = 0; c < p->cin; c++) {
        const int8_t *wc = w + (size_t)(c >> 2) * 64 + (size_t)(c & 3);
        for (int32_t t = 0; t < taps; t++) {
            xs[m] = dequantize_like_ort(ptrs[t][c], zp, sx);
            wfs[m] = dequantize_like_ort(wc[(size_t)t * tap_stride], 0, ws);
            if (++m == 256) {
                fsum_add(&s, xs, wfs, m);
                m = 0;
            }
        }
    }
    fsum_add(&s, xs, wfs, m);
    return quantize_like_ort(fsum_finish(&s, n, bias), r, p->out_zp, p->out_min, p->out_max);
}

int8_t aads_dwconv_reference_output(const aads_dwconv *p, const int8_t *in, int32_t oh, int32_t ow, int32_t c) {
    const aads_qref *r = p->ref;
    const int32_t cpad = aads_dwconv_cpad(p->channels);
    const float bias = r->bias ? r->bias[c] : 0.0f, ws = r->weight_scales[c];
    fsum s;
    fsum_init(&s, r, p->kh * p->kw, bias);
    float xs[AADS_MAX_TAPS], wfs[AADS_MAX_TAPS];
    int32_t m = 0;
    for (int32_t ky = 0; ky < p->kh; ky++) {
        const int32_t ih = oh * p->stride_h - p->pad_t + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->kw; kx++) {
            const int32_t iw = ow * p->stride_w - p->pad_l + kx * p->dil_w;
            const int inside = ih >= 0 && ih < p->in_h && iw >= 0 && iw < p->in_w;
            // Padding is a zero in the column buffer: it takes its place in the summation order.
            xs[m] = inside ? dequantize_like_ort(in[((size_t)ih * p->in_w + (size_t)iw) * p->channels + c], p->in_zp,
                                                 r->in_scale)
                           : 0.0f;
            wfs[m++] = dequantize_like_ort(p->weights[(size_t)(ky * p->kw + kx) * cpad + c], 0, ws);
        }
    }
    fsum_add(&s, xs, wfs, m);
    return quantize_like_ort(fsum_finish(&s, 0, bias), r, p->out_zp, p->out_min, p->out_max);
}

#if AADS_X86
#include <immintrin.h>

/// aads_qconv_reference_output of up to 8 outputs of a pointwise (1x1) convolution in SGEMM order at once: each AVX2
/// lane runs one output's sum, with the same operations in the same order as the scalar code.
__attribute__((target("avx2,fma"))) static void reference_outputs8_pointwise(const aads_qconv *p, const int8_t *in,
                                                                             const aads_qref_pending *items,
                                                                             int32_t count, int8_t *results) {
    const aads_qref *r = p->ref;
    const int32_t K = p->cin, kq = (K + 3) / 4;
    const int8_t *xp[8], *wp[8];
    float bias[8], ws[8];
    for (int l = 0; l < 8; l++) {
        const aads_qref_pending *it = &items[l < count ? l : 0];
        const int8_t *tap[1];
        aads_row_taps(p, in, it->row, tap);
        xp[l] = tap[0];
        wp[l] = p->weights + (size_t)(it->n / 16) * (size_t)kq * 64 + (size_t)(it->n % 16) * 4;
        bias[l] = r->bias ? r->bias[it->n] : 0.0f;
        ws[l] = r->weight_scales[it->n];
    }
    const __m256 vbias = _mm256_loadu_ps(bias), vws = _mm256_loadu_ps(ws), sx = _mm256_set1_ps(r->in_scale);
    const __m256i zp = _mm256_set1_epi32(p->in_zp);
    const int32_t kblock = r->kblock > 0 ? r->kblock : K;
    __m256 y = r->bias_first ? vbias : _mm256_setzero_ps(), part = _mm256_setzero_ps();
    int has_y = r->bias_first, in_block = 0;
    for (int32_t q = 0; q < kq; q++) {
        const __m256i gx = _mm256_setr_epi32(aads_load32(xp[0] + 4 * q), aads_load32(xp[1] + 4 * q),
                                             aads_load32(xp[2] + 4 * q), aads_load32(xp[3] + 4 * q),
                                             aads_load32(xp[4] + 4 * q), aads_load32(xp[5] + 4 * q),
                                             aads_load32(xp[6] + 4 * q), aads_load32(xp[7] + 4 * q));
        const __m256i gw = _mm256_setr_epi32(aads_load32(wp[0] + 64 * q), aads_load32(wp[1] + 64 * q),
                                             aads_load32(wp[2] + 64 * q), aads_load32(wp[3] + 64 * q),
                                             aads_load32(wp[4] + 64 * q), aads_load32(wp[5] + 64 * q),
                                             aads_load32(wp[6] + 64 * q), aads_load32(wp[7] + 64 * q));
        const int jn = K - 4 * q < 4 ? K - 4 * q : 4;
        for (int j = 0; j < jn; j++) {
            // byte j of each lane, sign-extended
            const __m128i left = _mm_cvtsi32_si128(24 - 8 * j);
            const __m256i xi = _mm256_sra_epi32(_mm256_sll_epi32(gx, left), _mm_cvtsi32_si128(24));
            const __m256i wi = _mm256_sra_epi32(_mm256_sll_epi32(gw, left), _mm_cvtsi32_si128(24));
            const __m256 xf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(xi, zp)), sx);
            const __m256 wf = _mm256_mul_ps(_mm256_cvtepi32_ps(wi), vws);
            part = _mm256_fmadd_ps(xf, wf, part);
            if (++in_block == kblock || 4 * q + j + 1 == K) { // close the block: y = part + y
                y = has_y ? _mm256_add_ps(part, y) : part;
                has_y = 1;
                part = _mm256_setzero_ps();
                in_block = 0;
            }
        }
    }
    if (!r->bias_first && r->bias) y = _mm256_add_ps(y, vbias);
    // quantize_like_ort
    __m256 v = _mm256_div_ps(y, _mm256_set1_ps(r->out_scale));
    v = _mm256_max_ps(v, _mm256_set1_ps((float)(p->out_min - p->out_zp)));
    v = _mm256_min_ps(v, _mm256_set1_ps((float)(p->out_max - p->out_zp)));
    int32_t q8[8];
    _mm256_storeu_si256((__m256i *)q8,
                        _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT |
                                                                                   _MM_FROUND_NO_EXC)),
                                         _mm256_set1_epi32(p->out_zp)));
    for (int32_t l = 0; l < count; l++) results[l] = (int8_t)q8[l];
}
#endif

void aads_qconv_reference_flush(const aads_qconv *p, const int8_t *in, int8_t *out, aads_qref_pending *items,
                                int32_t count) {
    int32_t i = 0;
    if (count == 0) return;
#if AADS_X86
    if (p->kh * p->kw == 1 && p->ref->order == AADS_SUM_SGEMM && aads_x86_has_avx2()) {
        for (; i < count; i += 8) {
            const int32_t m = count - i < 8 ? count - i : 8;
            int8_t results[8];
            reference_outputs8_pointwise(p, in, items + i, m, results);
            for (int32_t l = 0; l < m; l++) out[(size_t)items[i + l].row * (size_t)p->out_stride + items[i + l].n] = results[l];
        }
        return;
    }
#endif
    for (; i < count; i++) {
        out[(size_t)items[i].row * (size_t)p->out_stride + items[i].n] =
            aads_qconv_reference_output(p, in, items[i].row, items[i].n);
    }
}
