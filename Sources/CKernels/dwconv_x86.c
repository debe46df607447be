// Depthwise convolution for AVX-512 VNNI. Channels are processed in chunks whose int32 weights stay in L1; within a
// chunk, 16 channels per vector. The input zero point is removed once per output through the channel's weight sum,
// so padding taps read a row of in_zp bytes and contribute nothing.
//
// 3x3 and 5x5 kernels with stride 1 or 2 (no dilation) are computed AADS_DW_TILE outputs of a row at a time, every
// pixel (borders too) by the same loop: each input column is loaded once for all the outputs of the tile it falls
// under. Tap rows 0-3 of a column go through one VPDPBUSD, their bytes interleaved per channel and offset by +128 to
// unsigned (the offset removed through the weight sums); the fifth row of a 5x5 kernel goes through VPDPWSSD, the
// activation sign-extended to int32 (its low int16 is x, exact) against the weight zero-extended (its high int16 is
// 0, so the activation's sign bits are multiplied by zero). A 3x3 kernel with stride 1 computes two output rows at
// once: their four input rows make one quad, interleaved once for both. Other shapes take one pointer per tap.
//
// Tiles of four outputs requantise them together: rounded in float32 by the mode of the conversion (down, after
// adding 0.5), packed to int8 with saturation and clamped there, then stored 16 bytes per pixel.
#include "internal.h"
#if AADS_X86
#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

#define DW_WEIGHTS 8192  // int32 weights of one chunk (32 KB)
#define DW_CHUNK_MAX 1024 // channels per chunk at most

/// One chunk of channels [c0, c0 + cn): int32 weights w32[tap][chunk] and -in_zp * weight sum per channel.
typedef struct {
    const aads_dwconv *p;
    const int8_t *in;
    int8_t *out;
    int32_t c0, cn, chunk;
    int32_t channels, out_w, in_w; // copies of p's
    const int32_t *w32, *w32p, *nzw; // w32p: [K][chunk] 4-row quads of kernel column kx (fast shapes)
    const int8_t *pad; // DW_CHUNK_MAX + 64 bytes equal to in_zp
} dw_chunk;

/// The permutation that swaps the 128-bit lane and the dword within it (lane k, dword L <- lane L, dword k): a 4x4
/// transpose of dwords, used to interleave tap rows and to gather each pixel's packed outputs.
AVX512_TARGET static inline __m512i dw512_dword_transpose(void) {
    return _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
}

/// The requantisation constants of one call, kept in registers (the output stores, int8, could alias *p).
typedef struct {
    __m512 lo, hi, band;
    __m512d lod, hid, bandd;
    __m512i zp;
    __m512 up, up_hi, up_near;
    __m512i zp16, omin8, omax8, quads;
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
    // dw512_store4 rounds x = v + 0.5 + s down, s the half-width of the band around x.5 left to double precision
    const float s = (float)(AADS_F32_SLACK + (p->ref ? p->ref->eps : 0.0));
    q.up = _mm512_set1_ps(0.5f + s);
    q.up_hi = _mm512_set1_ps((float)(p->out_max - p->out_zp) + 0.5f + s);
    q.up_near = _mm512_set1_ps(2 * s);
    q.zp16 = _mm512_set1_epi16((short)p->out_zp);
    q.omin8 = _mm512_set1_epi8((char)p->out_min);
    q.omax8 = _mm512_set1_epi8((char)p->out_max);
    q.quads = dw512_dword_transpose();
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

/// Four outputs ow..ow+3 of channels c.. at once (float32 multipliers only), packed to int8 together and stored 16
/// bytes per pixel. Each value v is rounded as floor(x), x = v + 0.5 + s, which is v rounded to nearest wherever the
/// fraction of x is at least 2s, i.e. v is more than s (the float32 error's bound, plus the reference's band) from a
/// rounding boundary; the other outputs are recomputed as dw512_store does. The clamp is applied to the int8 result
/// (after saturation), except that x is first capped above so that its conversion cannot overflow.
AVX512_TARGET static inline __attribute__((always_inline)) void dw512_store4(const dw_chunk *d, const dw512_rq q,
                                                                            int32_t oh, int32_t ow, int32_t c,
                                                                            const __m512i *acc, __mmask16 mask,
                                                                            __m512 mf, __m512 of) {
    __m512i v32[4];
    __mmask16 near[4];
    const __m512 ofx = _mm512_add_ps(of, q.up);
    for (int j = 0; j < 4; j++) {
        const __m512 x = _mm512_min_ps(_mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[j]), mf, ofx), q.up_hi);
        v32[j] = _mm512_cvt_roundps_epi32(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __m512 frac = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        near[j] = _mm512_mask_cmp_ps_mask(mask, frac, q.up_near, _CMP_LT_OQ);
    }
    const __m512i a = _mm512_adds_epi16(_mm512_packs_epi32(v32[0], v32[1]), q.zp16);
    const __m512i b = _mm512_adds_epi16(_mm512_packs_epi32(v32[2], v32[3]), q.zp16);
    __m512i x = _mm512_min_epi8(_mm512_max_epi8(_mm512_packs_epi16(a, b), q.omin8), q.omax8);
    x = _mm512_permutexvar_epi32(q.quads, x);
    const int32_t ca = d->c0 + c;
    int8_t *o = d->out + ((size_t)oh * d->out_w + ow) * d->channels + ca;
    const size_t C = (size_t)d->channels;
    if (mask == 0xFFFF) {
        _mm_storeu_si128((__m128i *)o, _mm512_castsi512_si128(x));
        _mm_storeu_si128((__m128i *)(o + C), _mm512_extracti32x4_epi32(x, 1));
        _mm_storeu_si128((__m128i *)(o + 2 * C), _mm512_extracti32x4_epi32(x, 2));
        _mm_storeu_si128((__m128i *)(o + 3 * C), _mm512_extracti32x4_epi32(x, 3));
    } else {
        _mm_mask_storeu_epi8(o, mask, _mm512_castsi512_si128(x));
        _mm_mask_storeu_epi8(o + C, mask, _mm512_extracti32x4_epi32(x, 1));
        _mm_mask_storeu_epi8(o + 2 * C, mask, _mm512_extracti32x4_epi32(x, 2));
        _mm_mask_storeu_epi8(o + 3 * C, mask, _mm512_extracti32x4_epi32(x, 3));
    }
    if (near[0] | near[1] | near[2] | near[3]) {
        for (int j = 0; j < 4; j++) {
            int32_t sums[16];
            _mm512_storeu_si512((void *)sums, acc[j]);
            for (__mmask16 n = near[j]; n; n &= (__mmask16)(n - 1)) {
                const int l = __builtin_ctz(n);
                o[(size_t)j * C + l] = aads_dwconv_out(d->p, d->in, oh, ow + j, ca + l, sums[l]);
            }
        }
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

/// Byte interleave of up to four tap rows for VPDPBUSD: a vector holding 16 channels of rows a, b, c, d (one
/// 128-bit lane each) becomes 16 lanes of [a, b, c, d] per channel, offset to unsigned.
typedef struct {
    __m512i lanes, bytes, flip;
} dw512_quad;

AVX512_TARGET static inline dw512_quad dw512_quad_make(void) {
    dw512_quad t;
    // then lane k holds channels 4k..4k+3 of each row as four dwords
    t.lanes = dw512_dword_transpose();
    // within a lane, byte 4j + r <- byte 4r + j: channel 4k+j's four rows side by side
    t.bytes = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    t.flip = _mm512_set1_epi8((char)0x80);
    return t;
}

/// Rows a..d (d may repeat c: the weights of a fourth row are zero for 3x3 kernels) of 16 channels as VPDPBUSD's
/// unsigned operand.
AVX512_TARGET static inline __attribute__((always_inline)) __m512i dw512_quad_load(const dw512_quad t, const int8_t *a,
                                                                                 const int8_t *b, const int8_t *c,
                                                                                 const int8_t *d) {
    __m512i v = _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)a));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)b), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)c), 2);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)d), 3);
    return _mm512_xor_si512(_mm512_shuffle_epi8(_mm512_permutexvar_epi32(t.lanes, v), t.bytes), t.flip);
}

/// P outputs (oh, ow..ow+P-1) of a KxK kernel (3 or 5) with stride S, every pixel through the same loop: borders read
/// the padding row. Tap rows 0-3 go four at a time through VPDPBUSD (rows 0-2 for K = 3), row 4 of a 5x5 kernel a
/// tap at a time through VPDPWSSD; each input column is interleaved once for all the outputs of the tile.
AVX512_TARGET static inline __attribute__((always_inline)) void dw512_tile(const dw_chunk *d,
                                                                          const aads_dw_tile_pixels *t,
                                                                          const dw512_rq q, const dw512_quad qt,
                                                                          int32_t oh, int32_t ow, const int K,
                                                                          const int S, const int P, const int border) {
    const int span = (P - 1) * S + K;
    const size_t C = (size_t)d->channels;
#define DW_PX(ky, i) (border ? t->cp[ky][i] : t->base[ky] + (size_t)(i) * C)
    for (int32_t c = 0; c < d->cn; c += 16) {
        __m512i acc[AADS_DW_TILE];
        const __m512i nzw = _mm512_load_si512((const void *)(d->nzw + c));
        for (int j = 0; j < P; j++) acc[j] = nzw;
        const int32_t *wq = d->w32p + c;
        for (int i = 0; i < span; i++) {
            const __m512i x = dw512_quad_load(qt, DW_PX(0, i) + c, DW_PX(1, i) + c, DW_PX(2, i) + c,
                                              DW_PX(K == 3 ? 2 : 3, i) + c);
            for (int j = 0; j < P; j++) {
                const int kx = i - j * S;
                if (kx < 0 || kx >= K) continue;
                acc[j] = _mm512_dpbusd_epi32(acc[j], x, _mm512_load_si512((const void *)(wq + (size_t)kx * d->chunk)));
            }
        }
        if (K == 5) {
            const int32_t *wr = d->w32 + (size_t)4 * K * d->chunk + c;
            for (int i = 0; i < span; i++) {
                const __m512i x = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(DW_PX(4, i) + c)));
                for (int j = 0; j < P; j++) {
                    const int kx = i - j * S;
                    if (kx < 0 || kx >= K) continue;
                    const __m512i w = _mm512_load_si512((const void *)(wr + (size_t)kx * d->chunk));
                    acc[j] = _mm512_dpwssd_epi32(acc[j], x, w);
                }
            }
        }
        const __mmask16 mask = dw512_mask(d, c);
        __m512 mf, of;
        dw512_rq_load(d, q, c, &mf, &of);
        if (P == 4 && q.mult_f32 != NULL) {
            dw512_store4(d, q, oh, ow, c, acc, mask, mf, of);
        } else {
            for (int j = 0; j < P; j++) dw512_store(d, q, oh, ow + j, c, acc[j], mask, mf, of);
        }
    }
#undef DW_PX
}

/// P outputs (ow..ow+P-1) of output rows oh and, when `both`, oh + 1 of a 3x3 kernel with stride 1. Their four input
/// rows fill one VPDPBUSD quad, interleaved once per column for both rows: row 0's weights per kernel column are tap
/// rows 0-2 in bytes 0-2, row 1's the same in bytes 1-3.
AVX512_TARGET static inline __attribute__((always_inline)) void dw512_tile_pair(const dw_chunk *d,
                                                                               const aads_dw_tile_pixels *t,
                                                                               const dw512_rq q, const dw512_quad qt,
                                                                               int32_t oh, int both, int32_t ow,
                                                                               const int P, const int border) {
    const int span = P - 1 + 3;
    const size_t C = (size_t)d->channels;
#define DW_PX(ky, i) (border ? t->cp[ky][i] : t->base[ky] + (size_t)(i) * C)
    for (int32_t c = 0; c < d->cn; c += 16) {
        __m512i acc[2][AADS_DW_TILE];
        const __m512i nzw = _mm512_load_si512((const void *)(d->nzw + c));
        for (int j = 0; j < P; j++) acc[0][j] = acc[1][j] = nzw;
        for (int i = 0; i < span; i++) {
            const __m512i x = dw512_quad_load(qt, DW_PX(0, i) + c, DW_PX(1, i) + c, DW_PX(2, i) + c, DW_PX(3, i) + c);
            for (int r = 0; r < 2; r++) {
                const int32_t *wq = d->w32p + (size_t)(r * 3) * d->chunk + c;
                for (int j = 0; j < P; j++) {
                    const int kx = i - j;
                    if (kx < 0 || kx >= 3) continue;
                    acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], x,
                                                    _mm512_load_si512((const void *)(wq + (size_t)kx * d->chunk)));
                }
            }
        }
        const __mmask16 mask = dw512_mask(d, c);
        __m512 mf, of;
        dw512_rq_load(d, q, c, &mf, &of);
        for (int r = 0; r < 1 + both; r++) {
            if (P == 4 && q.mult_f32 != NULL) {
                dw512_store4(d, q, oh + r, ow, c, acc[r], mask, mf, of);
            } else {
                for (int j = 0; j < P; j++) dw512_store(d, q, oh + r, ow + j, c, acc[r][j], mask, mf, of);
            }
        }
    }
#undef DW_PX
}

/// Output row oh and, when `both`, oh + 1 of a 3x3 kernel with stride 1, every pixel through dw512_tile_pair.
AVX512_TARGET static inline __attribute__((always_inline)) void dw512_row_pair(const dw_chunk *d, const dw512_rq q,
                                                                              const dw512_quad qt, int32_t oh,
                                                                              int both) {
    const int8_t *rows[4];
    aads_dw_tap_rows(d->p, d->in, d->c0, oh, 4, 1, rows);
#define DW512_PAIR_TILE(oh, ow, P, t)                                                                                \
    ((t)->border ? dw512_tile_pair(d, t, q, qt, oh, both, ow, P, 1) : dw512_tile_pair(d, t, q, qt, oh, both, ow, P, 0))
    AADS_DW_ROWS_TILES(d->p, rows, d->pad, 4, 3, 1, oh, DW512_PAIR_TILE);
#undef DW512_PAIR_TILE
}

/// Output row oh of a KxK kernel with stride S, every pixel through the tiles.
AVX512_TARGET static inline __attribute__((always_inline)) void dw512_row(const dw_chunk *d, const dw512_rq q,
                                                                         const dw512_quad qt, int32_t oh, const int K,
                                                                         const int S) {
    const int8_t *rows[5];
    aads_dw_tap_rows(d->p, d->in, d->c0, oh, K, S, rows);
#define DW512_TILE(oh, ow, P, t)                                                                                     \
    ((t)->border ? dw512_tile(d, t, q, qt, oh, ow, K, S, P, 1) : dw512_tile(d, t, q, qt, oh, ow, K, S, P, 0))
    AADS_DW_ROW_TILES(d->p, rows, d->pad, K, S, oh, DW512_TILE);
#undef DW512_TILE
}

AVX512_TARGET void aads_dwconv_avx512(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh0, int32_t oh1) {
    const int32_t C = p->channels, cpad = aads_dwconv_cpad(C), taps = p->kh * p->kw;
    const int K = p->kh == p->kw && p->dil_h == 1 && p->dil_w == 1 && p->stride_h == p->stride_w ? p->kh : 0;
    const int S = p->stride_w;
    const int fast = (K == 3 || K == 5) && (S == 1 || S == 2);
    const int pair = K == 3 && S == 1; // two output rows at once (dw512_row_pair)
    // int32 weights per channel: one per tap, and the 4-row quads of the tiles, one per kernel column (per output row
    // of a pair, which needs no per-tap weights)
    const int32_t wtaps = pair ? 0 : taps;
    const int32_t qtaps = pair ? 2 * K : fast ? K : 0;
    int32_t chunk = DW_WEIGHTS / (wtaps + qtaps) / 16 * 16;
    if (chunk > DW_CHUNK_MAX) chunk = DW_CHUNK_MAX;
    if (chunk > cpad) chunk = cpad;
    int32_t w32[DW_WEIGHTS] __attribute__((aligned(64)));
    int32_t nzw[DW_CHUNK_MAX] __attribute__((aligned(64)));
    int8_t pad[DW_CHUNK_MAX + 64];
    const dw512_rq q = dw512_rq_make(p);
    const dw512_quad qt = dw512_quad_make();
    memset(pad, p->in_zp, sizeof pad);
    const int quad_rows = K == 3 ? 3 : 4;
    for (int32_t c0 = 0; c0 < C; c0 += chunk) {
        dw_chunk d = {p, in, out, c0, C - c0 < chunk ? C - c0 : chunk, chunk, C, p->out_w, p->in_w, w32,
                      w32 + (size_t)wtaps * chunk, nzw, pad};
        for (int32_t c = 0; c < d.cn; c += 16) {
            __m512i s = _mm512_setzero_si512();
            for (int32_t t = 0; t < taps; t++) {
                const __m512i w = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(p->weights + (size_t)t * cpad + c0 + c)));
                s = _mm512_add_epi32(s, w);
                // zero-extended: the high int16 of each lane is 0
                if (!pair)
                    _mm512_store_si512((void *)(w32 + (size_t)t * chunk + c), _mm512_and_si512(w, _mm512_set1_epi32(0xFFFF)));
            }
            __m512i zs = _mm512_mullo_epi32(s, _mm512_set1_epi32(-p->in_zp));
            if (pair) {
                // tap rows 0-2 of column kx as bytes r..r+2 of one int32 for output row r of the pair; every tap's
                // activation is offset by +128, removed here through the weight sum
                for (int r = 0; r < 2; r++) {
                    for (int32_t kx = 0; kx < 3; kx++) {
                        __m512i quad = _mm512_setzero_si512();
                        for (int ky = 0; ky < 3; ky++) {
                            const int16_t *wt = p->weights + (size_t)(ky * 3 + kx) * cpad + c0 + c;
                            const __m512i w = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)wt));
                            const __m512i byte = _mm512_and_si512(w, _mm512_set1_epi32(0xFF));
                            quad = _mm512_or_si512(quad, _mm512_slli_epi32(byte, 8 * (ky + r)));
                        }
                        _mm512_store_si512((void *)(d.w32p + (size_t)(r * 3 + kx) * chunk + c), quad);
                    }
                }
                zs = _mm512_sub_epi32(zs, _mm512_slli_epi32(s, 7));
            } else if (fast) {
                // rows 0..quad_rows-1 of column kx as the bytes of one int32 (a fourth row of zeros for 3x3); their
                // activations are offset by +128, removed here through their weight sum
                __m512i qs = _mm512_setzero_si512();
                for (int32_t kx = 0; kx < K; kx++) {
                    __m512i quad = _mm512_setzero_si512();
                    for (int r = 0; r < quad_rows; r++) {
                        const int16_t *wt = p->weights + (size_t)(r * K + kx) * cpad + c0 + c;
                        const __m512i w = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)wt));
                        qs = _mm512_add_epi32(qs, w);
                        quad = _mm512_or_si512(quad, _mm512_slli_epi32(_mm512_and_si512(w, _mm512_set1_epi32(0xFF)), 8 * r));
                    }
                    _mm512_store_si512((void *)(w32 + (size_t)(taps + kx) * chunk + c), quad);
                }
                zs = _mm512_sub_epi32(zs, _mm512_slli_epi32(qs, 7));
            }
            _mm512_store_si512((void *)(nzw + c), zs);
        }
        if (pair) {
            for (int32_t oh = oh0; oh < oh1; oh += 2) dw512_row_pair(&d, q, qt, oh, oh + 1 < oh1);
            continue;
        }
        for (int32_t oh = oh0; oh < oh1; oh++) {
            if (!fast) {
                for (int32_t ow = 0; ow < p->out_w; ow++) dw512_pixel(&d, q, oh, ow);
            } else if (K == 3) {
                dw512_row(&d, q, qt, oh, 3, 2);
            } else if (S == 1) {
                dw512_row(&d, q, qt, oh, 5, 1);
            } else {
                dw512_row(&d, q, qt, oh, 5, 2);
            }
        }
    }
}
#endif
