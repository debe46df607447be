// Depthwise convolution for AVX-512 VNNI. Channels are processed in chunks whose int32 weights stay in L1; within a
// chunk, 16 channels per vector. Products are VPDPWSSD: a single tap pairs the activation sign-extended to int32
// (its low int16 is x, exact) with the weight zero-extended to int32 (its high int16 is 0, so the activation's sign
// bits are multiplied by zero); in the tiles below two kernel rows are interleaved as int16 pairs, two taps per
// VPDPWSSD. The input zero point is removed once per output through the channel's weight sum, so padding taps read
// a row of in_zp bytes and contribute nothing. Interior pixels of 3x3 and 5x5 kernels (stride 1 or 2, no dilation)
// are computed DW_TILE at a time along the row: each input column is loaded and widened once and used by every
// output of the tile it falls under. Everything else (borders, other shapes) takes one pointer per tap.
#include "internal.h"
#if AADS_X86
#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

#define DW_WEIGHTS 8192  // int32 weights of one chunk (32 KB)
#define DW_CHUNK_MAX 1024 // channels per chunk at most
#define DW_TILE 4         // interior outputs per tile

/// One chunk of channels [c0, c0 + cn): int32 weights w32[tap][chunk] and -in_zp * weight sum per channel.
typedef struct {
    const aads_dwconv *p;
    const int8_t *in;
    int8_t *out;
    int32_t c0, cn, chunk;
    int32_t channels, out_w, in_w; // copies of p's
    const int32_t *w32, *w32p, *nzw; // w32p: [K/2][K][chunk] pairs of rows 2r, 2r+1 (fast shapes)
    const int8_t *pad; // DW_CHUNK_MAX + 64 bytes equal to in_zp
} dw_chunk;

/// The requantisation constants of one call, kept in registers (the output stores, int8, could alias *p).
typedef struct {
    __m512 lo, hi, band;
    __m512d lod, hid, bandd;
    __m512i zp;
    const float *mult_f32, *offset_f32;
    const double *mult, *offset;
    int ref;
} dw512_rq;

AVX512_TARGET static dw512_rq dw512_rq_make(const aads_dwconv *p) {
    dw512_rq q;
    q.lo = _mm512_set1_ps((float)(p->out_min - p->out_zp));
    q.hi = _mm512_set1_ps((float)(p->out_max - p->out_zp));
    q.band = _mm512_set1_ps((float)(0.5 - AADS_F32_SLACK - (p->ref ? p->ref->eps : 0.0)));
    q.lod = _mm512_set1_pd((double)(p->out_min - p->out_zp));
    q.hid = _mm512_set1_pd((double)(p->out_max - p->out_zp));
    q.bandd = _mm512_set1_pd(p->ref ? 0.5 - p->ref->eps : 1.0);
    q.zp = _mm512_set1_epi32(p->out_zp);
    q.mult_f32 = p->mult_f32;
    q.offset_f32 = p->offset_f32;
    q.mult = p->mult;
    q.offset = p->offset;
    q.ref = p->ref != NULL;
    return q;
}

/// Requantises and stores channels c.. (chunk-relative `c`, lanes in `mask`) of output pixel (oh, ow) exactly as
/// aads_dwconv_out does: in float32 where aads_requant_f32_prepare allows and the value is clear of a rounding
/// boundary, in double (and by the float reference when p->ref is set) otherwise.
AVX512_TARGET static inline __attribute__((always_inline)) void dw512_store(const dw_chunk *d, const dw512_rq q,
                                                                           int32_t oh, int32_t ow, int32_t c,
                                                                           __m512i acc, __mmask16 mask, __m512 mf,
                                                                           __m512 of) {
    const int32_t ca = d->c0 + c;
    int8_t *o = d->out + ((size_t)oh * d->out_w + ow) * d->channels + ca;
    __mmask16 near;
    if (q.mult_f32 != NULL) {
        __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), mf, of);
        v = _mm512_min_ps(_mm512_max_ps(v, q.lo), q.hi);
        const __m512 r = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        near = _mm512_mask_cmp_ps_mask(mask, _mm512_abs_ps(_mm512_sub_ps(v, r)), q.band, _CMP_GT_OQ);
        _mm512_mask_cvtsepi32_storeu_epi8(o, mask, _mm512_add_epi32(_mm512_cvtps_epi32(r), q.zp));
        if (near) {
            int32_t sums[16];
            _mm512_storeu_si512((void *)sums, acc);
            while (near) {
                const int l = __builtin_ctz(near);
                near &= (__mmask16)(near - 1);
                o[l] = aads_dwconv_out(d->p, d->in, oh, ow, ca + l, sums[l]);
            }
        }
        return;
    }
    __m512d v0 = _mm512_cvtepi32_pd(_mm512_castsi512_si256(acc));
    __m512d v1 = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(acc, 1));
    v0 = _mm512_fmadd_pd(v0, _mm512_loadu_pd(q.mult + ca), _mm512_loadu_pd(q.offset + ca));
    v1 = _mm512_fmadd_pd(v1, _mm512_loadu_pd(q.mult + ca + 8), _mm512_loadu_pd(q.offset + ca + 8));
    v0 = _mm512_min_pd(_mm512_max_pd(v0, q.lod), q.hid);
    v1 = _mm512_min_pd(_mm512_max_pd(v1, q.lod), q.hid);
    // MXCSR rounding: nearest, ties to even
    const __m512i r = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtpd_epi32(v0)), _mm512_cvtpd_epi32(v1), 1);
    _mm512_mask_cvtsepi32_storeu_epi8(o, mask, _mm512_add_epi32(r, q.zp));
    if (!q.ref) return;
    const __m512d d0 = _mm512_abs_pd(_mm512_sub_pd(v0, _mm512_roundscale_pd(v0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    const __m512d d1 = _mm512_abs_pd(_mm512_sub_pd(v1, _mm512_roundscale_pd(v1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    near = (__mmask16)(_mm512_cmp_pd_mask(d0, q.bandd, _CMP_GT_OQ) | ((unsigned)_mm512_cmp_pd_mask(d1, q.bandd, _CMP_GT_OQ) << 8));
    near &= mask;
    while (near) {
        const int l = __builtin_ctz(near);
        near &= (__mmask16)(near - 1);
        o[l] = aads_dwconv_reference_output(d->p, d->in, oh, ow, ca + l);
    }
}

/// The float32 multipliers (*mf) and offsets (*of) of channels c.. (chunk-relative), loaded once for several outputs.
AVX512_TARGET static inline __attribute__((always_inline)) void dw512_rq_load(const dw_chunk *d, const dw512_rq q,
                                                                             int32_t c, __m512 *mf, __m512 *of) {
    if (q.mult_f32 != NULL) {
        *mf = _mm512_loadu_ps(q.mult_f32 + d->c0 + c);
        *of = _mm512_loadu_ps(q.offset_f32 + d->c0 + c);
    } else {
        *mf = *of = _mm512_setzero_ps();
    }
}

AVX512_TARGET static inline __mmask16 dw512_mask(const dw_chunk *d, int32_t c) {
    const int32_t nn = d->cn - c < 16 ? d->cn - c : 16;
    return (__mmask16)((1u << nn) - 1u);
}

/// One output pixel, one pointer per tap (the padding row for taps outside the image).
AVX512_TARGET static void dw512_pixel(const dw_chunk *d, const dw512_rq q, int32_t oh, int32_t ow) {
    const aads_dwconv *p = d->p;
    const int32_t taps = p->kh * p->kw;
    const int8_t *tp[AADS_MAX_TAPS];
    aads_dw_tap_pointers(p, d->in, d->c0, d->pad, oh, ow, tp);
    for (int32_t c = 0; c < d->cn; c += 16) {
        __m512i acc = _mm512_loadu_si512((const void *)(d->nzw + c));
        for (int32_t t = 0; t < taps; t++) {
            const __m512i x = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(tp[t] + c)));
            acc = _mm512_dpwssd_epi32(acc, x, _mm512_loadu_si512((const void *)(d->w32 + (size_t)t * d->chunk + c)));
        }
        __m512 mf, of;
        dw512_rq_load(d, q, c, &mf, &of);
        dw512_store(d, q, oh, ow, c, acc, dw512_mask(d, c), mf, of);
    }
}

/// One output pixel of a KxK kernel (3 or 5, the shapes with row-pair weights), one pointer per tap: rows 2r and
/// 2r+1 interleaved, two taps per VPDPWSSD, the last row alone.
AVX512_TARGET static inline __attribute__((always_inline)) void dw512_pixel_k(const dw_chunk *d, const dw512_rq q,
                                                                             int32_t oh, int32_t ow, const int K) {
    const int8_t *tp[25];
    aads_dw_tap_pointers(d->p, d->in, d->c0, d->pad, oh, ow, tp);
    for (int32_t c = 0; c < d->cn; c += 16) {
        __m512i acc = _mm512_loadu_si512((const void *)(d->nzw + c));
        for (int r = 0; r < K / 2; r++) {
            for (int kx = 0; kx < K; kx++) {
                const __m128i a = _mm_loadu_si128((const __m128i *)(tp[2 * r * K + kx] + c));
                const __m128i b = _mm_loadu_si128((const __m128i *)(tp[(2 * r + 1) * K + kx] + c));
                const __m512i x = _mm512_cvtepi8_epi16(_mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_unpacklo_epi8(a, b)), _mm_unpackhi_epi8(a, b), 1));
                acc = _mm512_dpwssd_epi32(acc, x, _mm512_load_si512((const void *)(d->w32p + (size_t)(r * K + kx) * d->chunk + c)));
            }
        }
        for (int kx = 0; kx < K; kx++) {
            const __m512i x = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(tp[(K - 1) * K + kx] + c)));
            acc = _mm512_dpwssd_epi32(acc, x, _mm512_load_si512((const void *)(d->w32 + (size_t)((K - 1) * K + kx) * d->chunk + c)));
        }
        __m512 mf, of;
        dw512_rq_load(d, q, c, &mf, &of);
        dw512_store(d, q, oh, ow, c, acc, dw512_mask(d, c), mf, of);
    }
}

AVX512_TARGET static void dw512_pixel_3(const dw_chunk *d, const dw512_rq q, int32_t oh, int32_t ow) {
    dw512_pixel_k(d, q, oh, ow, 3);
}

AVX512_TARGET static void dw512_pixel_5(const dw_chunk *d, const dw512_rq q, int32_t oh, int32_t ow) {
    dw512_pixel_k(d, q, oh, ow, 5);
}

/// P interior outputs (oh, ow..ow+P-1) of a KxK kernel with stride S; x0 is the first output's tap (0, 0).
AVX512_TARGET static inline __attribute__((always_inline)) void dw512_tile(const dw_chunk *d, const int8_t *x0,
                                                                          const dw512_rq q, int32_t oh, int32_t ow,
                                                                          const int K, const int S, const int P) {
    const int32_t C = d->p->channels;
    const size_t rs = (size_t)d->p->in_w * (size_t)C;
    for (int32_t c = 0; c < d->cn; c += 16) {
        __m512i acc[DW_TILE];
        const __m512i nzw = _mm512_loadu_si512((const void *)(d->nzw + c));
        for (int j = 0; j < P; j++) acc[j] = nzw;
        for (int r = 0; r < K / 2; r++) { // rows 2r and 2r+1 interleaved: one VPDPWSSD per pair of taps
            const int8_t *xa = x0 + 2 * r * rs + c, *xb = xa + rs;
            const int32_t *wp = d->w32p + (size_t)r * K * d->chunk + c;
            for (int i = 0; i < (P - 1) * S + K; i++) {
                const __m128i a = _mm_loadu_si128((const __m128i *)(xa + (size_t)i * C));
                const __m128i b = _mm_loadu_si128((const __m128i *)(xb + (size_t)i * C));
                const __m512i x = _mm512_cvtepi8_epi16(_mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_unpacklo_epi8(a, b)), _mm_unpackhi_epi8(a, b), 1));
                for (int j = 0; j < P; j++) {
                    const int kx = i - j * S;
                    if (kx < 0 || kx >= K) continue;
                    acc[j] = _mm512_dpwssd_epi32(acc[j], x, _mm512_load_si512((const void *)(wp + (size_t)kx * d->chunk)));
                }
            }
        }
        { // the last row alone
            const int ky = K - 1;
            const int8_t *xr = x0 + ky * rs + c;
            const int32_t *wr = d->w32 + (size_t)ky * K * d->chunk + c;
            for (int i = 0; i < (P - 1) * S + K; i++) {
                const __m512i x = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(xr + (size_t)i * C)));
                for (int j = 0; j < P; j++) {
                    const int kx = i - j * S;
                    if (kx < 0 || kx >= K) continue;
                    acc[j] = _mm512_dpwssd_epi32(acc[j], x, _mm512_load_si512((const void *)(wr + (size_t)kx * d->chunk)));
                }
            }
        }
        const __mmask16 mask = dw512_mask(d, c);
        __m512 mf, of;
        dw512_rq_load(d, q, c, &mf, &of);
        for (int j = 0; j < P; j++) dw512_store(d, q, oh, ow + j, c, acc[j], mask, mf, of);
    }
}

/// Interior outputs [ow, ow_hi) of row oh (whose input rows are all inside) for one (K, S).
AVX512_TARGET static inline __attribute__((always_inline)) void dw512_row(const dw_chunk *d, const dw512_rq q,
                                                                         int32_t oh, int32_t ih0,
                                                                         int32_t ow, int32_t ow_hi, const int K,
                                                                         const int S) {
    const aads_dwconv *p = d->p;
    const int8_t *row = d->in + (size_t)ih0 * p->in_w * p->channels + d->c0;
    for (; ow + DW_TILE <= ow_hi; ow += DW_TILE) {
        dw512_tile(d, row + (size_t)(ow * S - p->pad_l) * p->channels, q, oh, ow, K, S, DW_TILE);
    }
    for (; ow < ow_hi; ow++) dw512_tile(d, row + (size_t)(ow * S - p->pad_l) * p->channels, q, oh, ow, K, S, 1);
}

AVX512_TARGET void aads_dwconv_avx512(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh0, int32_t oh1) {
    const int32_t C = p->channels, cpad = aads_dwconv_cpad(C), taps = p->kh * p->kw;
    const int K = p->kh == p->kw && p->dil_h == 1 && p->dil_w == 1 && p->stride_h == p->stride_w ? p->kh : 0;
    const int S = p->stride_w;
    const int fast = (K == 3 || K == 5) && (S == 1 || S == 2);
    const int32_t ptaps = fast ? K / 2 * K : 0;
    int32_t chunk = DW_WEIGHTS / (taps + ptaps) / 16 * 16;
    if (chunk > DW_CHUNK_MAX) chunk = DW_CHUNK_MAX;
    if (chunk > cpad) chunk = cpad;
    int32_t w32[DW_WEIGHTS] __attribute__((aligned(64)));
    int32_t nzw[DW_CHUNK_MAX] __attribute__((aligned(64)));
    int8_t pad[DW_CHUNK_MAX + 64];
    const dw512_rq q = dw512_rq_make(p);
    memset(pad, p->in_zp, sizeof pad);
    int32_t off[AADS_MAX_TAPS], ow_lo, ow_hi, ih0;
    aads_dw_interior(p, off, &ow_lo, &ow_hi);
    for (int32_t c0 = 0; c0 < C; c0 += chunk) {
        dw_chunk d = {p, in, out, c0, C - c0 < chunk ? C - c0 : chunk, chunk, C, p->out_w, p->in_w, w32,
                      w32 + (size_t)taps * chunk, nzw, pad};
        for (int32_t c = 0; c < d.cn; c += 16) {
            __m512i s = _mm512_setzero_si512();
            for (int32_t t = 0; t < taps; t++) {
                const __m512i w = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(p->weights + (size_t)t * cpad + c0 + c)));
                s = _mm512_add_epi32(s, w);
                // zero-extended: the high int16 of each lane is 0
                _mm512_store_si512((void *)(w32 + (size_t)t * chunk + c), _mm512_and_si512(w, _mm512_set1_epi32(0xFFFF)));
            }
            _mm512_store_si512((void *)(nzw + c), _mm512_mullo_epi32(s, _mm512_set1_epi32(-p->in_zp)));
            for (int32_t r = 0; r < ptaps / (K ? K : 1); r++) {
                for (int32_t kx = 0; kx < K; kx++) {
                    const __m512i a = _mm512_load_si512((const void *)(w32 + (size_t)(2 * r * K + kx) * chunk + c));
                    const __m512i b = _mm512_load_si512((const void *)(w32 + (size_t)((2 * r + 1) * K + kx) * chunk + c));
                    _mm512_store_si512((void *)(w32 + (size_t)(taps + r * K + kx) * chunk + c),
                                       _mm512_or_si512(a, _mm512_slli_epi32(b, 16)));
                }
            }
        }
        // Pixels not in a tile: one pointer per tap, the row-pair weights for the fast shapes.
        void (*border)(const dw_chunk *, const dw512_rq, int32_t, int32_t) =
            !fast ? dw512_pixel : K == 3 ? dw512_pixel_3 : dw512_pixel_5;
        for (int32_t oh = oh0; oh < oh1; oh++) {
            if (!aads_dw_row_inside(p, oh, &ih0) || !fast) {
                for (int32_t ow = 0; ow < p->out_w; ow++) border(&d, q, oh, ow);
                continue;
            }
            for (int32_t ow = 0; ow < ow_lo; ow++) border(&d, q, oh, ow);
            if (K == 3 && S == 1) dw512_row(&d, q, oh, ih0, ow_lo, ow_hi, 3, 1);
            else if (K == 3) dw512_row(&d, q, oh, ih0, ow_lo, ow_hi, 3, 2);
            else if (S == 1) dw512_row(&d, q, oh, ih0, ow_lo, ow_hi, 5, 1);
            else dw512_row(&d, q, oh, ih0, ow_lo, ow_hi, 5, 2);
            for (int32_t ow = ow_hi; ow < p->out_w; ow++) border(&d, q, oh, ow);
        }
    }
}
#endif
