// Float32 rows (pointwise convolutions and unfolded convolutions) and direct convolutions for x86-64: AVX2 + FMA
// and AVX-512. A tile of 6 output rows by 64 (AVX-512) or 16 (AVX2) columns stays in registers while the terms
// are added in order, one fused multiply-add each; partial tiles mask their columns, so every output is the
// same fmaf chain in both variants.
#include "internal.h"
#if AADS_X86
#include <immintrin.h>

#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define AVX512_TARGET __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))

AADS_FCONV_DIRECT(aads_fdirect_avx2, AVX2_TARGET, AADS_MAC_FUSED)
AADS_FCONV_DIRECT(aads_fdirect_avx512, AVX512_TARGET, AADS_MAC_FUSED)

/// aads_fclamp_apply on every lane: MAXPS(y, lo) is y > lo ? y : lo and MINPS(m, hi) is m < hi ? m : hi, lane by lane.
AVX512_TARGET INLINE __m512 clamp_avx512(aads_fclamp c, __m512 y) {
    return c.on ? _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(c.lo)), _mm512_set1_ps(c.hi)) : y;
}

AVX2_TARGET INLINE __m256 clamp_avx2(aads_fclamp c, __m256 y) {
    return c.on ? _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(c.lo)), _mm256_set1_ps(c.hi)) : y;
}

/// The input row of plane `x` under tap row `ky` for output rows oh0..oh0 + R - 1, NULL where it lies outside the
/// image or the output row below the output.
INLINE void rowwise_tap_rows(const aads_fconv *p, const float *x, const int R, int32_t oh0, int32_t ky,
                             const float **row) {
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        const int32_t ih = (oh0 + r) * p->stride_h - p->pad_t + ky * p->dil_h;
        const int inside = ih >= 0 && ih < p->in_h && oh0 + r < p->out_h;
        row[r] = inside ? x + (size_t)ih * p->in_w : NULL;
    }
}

/// Column masks of one block of up to 64 output columns for aads_fconv_rowwise_avx512: per tap column and register,
/// the input lanes inside the image (two halves for stride 2) and the input column of lane 0; per register, the
/// output lanes to store.
typedef struct {
    __mmask16 lo[8][4], hi[8][4], store[4];
    int32_t first[8][4];
} rowwise_masks;

/// Output rows [oh0, oh0 + R) (those below out_h), `NV` registers of columns, of OC output channels (1, or 4 of a
/// one-group convolution) whose weights are `wstride` apart from w0 and whose planes are `out_plane` apart from o:
/// R * NV independent sums per channel, enough to hide the latency of the fused multiply-adds each of them is a
/// chain of, and each loaded (and, for stride 2, shifted) input register feeds all OC channels.
AVX512_TARGET INLINE void rowwise_tile(const int OC, const int R, const int NV, const aads_fconv *p,
                                       const rowwise_masks *m, const float *x0, const float *w0, size_t wstride,
                                       const float *bias, int32_t oh0, float *o, size_t out_plane) {
    const int32_t cin_g = p->cin / p->group, kw = p->kw;
    const size_t in_plane = (size_t)p->in_h * p->in_w;
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    __m512 acc[4][8][4];
    #pragma GCC unroll 4
    for (int k = 0; k < OC; k++) {
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            #pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[k][r][v] = _mm512_set1_ps(bias ? bias[k] : 0.0f);
        }
    }
    for (int32_t ic = 0; ic < cin_g; ic++) {
        const float *x = x0 + (size_t)ic * in_plane;
        const float *w = w0 + (size_t)ic * p->kh * kw;
        for (int32_t ky = 0; ky < p->kh; ky++) {
            const float *row[8];
            rowwise_tap_rows(p, x, R, oh0, ky, row);
            for (int32_t kx = 0; kx < kw; kx++) {
                __m512 wv[4];
                #pragma GCC unroll 4
                for (int k = 0; k < OC; k++) wv[k] = _mm512_set1_ps(w[(size_t)k * wstride + ky * kw + kx]);
                #pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    if (!row[r]) continue; // a tap row outside the image adds nothing
                    #pragma GCC unroll 4
                    for (int v = 0; v < NV; v++) {
                        // Masked lanes are neither read nor faulted: the address may lie outside the row.
                        const float *src = (const float *)((uintptr_t)row[r] + (intptr_t)m->first[kx][v] * 4);
                        __m512 xv = _mm512_maskz_loadu_ps(m->lo[kx][v], src);
                        if (p->stride_w == 2) {
                            xv = _mm512_permutex2var_ps(xv, evens, _mm512_maskz_loadu_ps(m->hi[kx][v], src + 16));
                        }
                        #pragma GCC unroll 4
                        for (int k = 0; k < OC; k++) acc[k][r][v] = _mm512_fmadd_ps(wv[k], xv, acc[k][r][v]);
                    }
                }
            }
        }
    }
    #pragma GCC unroll 4
    for (int k = 0; k < OC; k++) {
        #pragma GCC unroll 8
        for (int r = 0; r < R && oh0 + r < p->out_h; r++) {
            #pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                _mm512_mask_storeu_ps(o + k * out_plane + (size_t)r * p->out_w + 16 * v, m->store[v],
                                      clamp_avx512(aads_fclamp_of(p), acc[k][r][v]));
            }
        }
    }
}

/// Rows of OC channels from w0/o (see rowwise_tile) over the whole output height, `nv` column registers: tiles of
/// 4 rows by 4 or 3 registers or 8 rows by 2 or 1 for one channel, 1 row by 4 or 2 rows by up to 3 for four.
#define ROWWISE_RUN(OC, nv, x0, w0, wstride, bias, o)                                                               \
    do {                                                                                                             \
        const int R4_ = (OC) == 1 ? 4 : 1, R3_ = (OC) == 1 ? 4 : 2, R2_ = (OC) == 1 ? 8 : 2;                        \
        for (int32_t oh = 0; oh < p->out_h;) {                                                                       \
            float *o_ = (o) + (size_t)oh * p->out_w;                                                                 \
            switch (nv) {                                                                                            \
            case 4: rowwise_tile(OC, R4_, 4, p, &m, x0, w0, wstride, bias, oh, o_, out_plane), oh += R4_; break;    \
            case 3: rowwise_tile(OC, R3_, 3, p, &m, x0, w0, wstride, bias, oh, o_, out_plane), oh += R3_; break;    \
            case 2: rowwise_tile(OC, R2_, 2, p, &m, x0, w0, wstride, bias, oh, o_, out_plane), oh += R2_; break;    \
            default: rowwise_tile(OC, R2_, 1, p, &m, x0, w0, wstride, bias, oh, o_, out_plane), oh += R2_; break;   \
            }                                                                                                        \
        }                                                                                                            \
    } while (0)

/// Convolution (any group, stride 1 or 2 along rows, at most 8 tap columns) of output channels [oc_begin, oc_end)
/// with AVX-512, by tiles of output rows and up to 64 columns held in registers. Each term adds a masked load of
/// its input columns (a stride-2 term loads 32 columns and keeps the even ones). Tap rows outside the image are
/// skipped, as in the direct kernel; columns outside it are loaded as zeros, which leave the sum unchanged.
AVX512_TARGET void aads_fconv_rowwise_avx512(const aads_fconv *p, const float *in, float *out, int32_t oc_begin,
                                             int32_t oc_end) {
    const int32_t s = p->stride_w, cin_g = p->cin / p->group, cout_g = p->cout / p->group;
    const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i zero = _mm512_setzero_si512(), width = _mm512_set1_epi32(p->in_w);
    for (int32_t ow0 = 0; ow0 < p->out_w; ow0 += 64) {
        rowwise_masks m;
        for (int v = 0; v < 4; v++) {
            const int32_t ow = ow0 + 16 * v;
            m.store[v] = _mm512_cmplt_epi32_mask(_mm512_add_epi32(iota, _mm512_set1_epi32(ow)),
                                                 _mm512_set1_epi32(p->out_w));
            for (int32_t kx = 0; kx < p->kw; kx++) {
                const int32_t c0 = ow * s + kx * p->dil_w - p->pad_l;
                const __m512i lo = _mm512_add_epi32(iota, _mm512_set1_epi32(c0));
                const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(16));
                m.first[kx][v] = c0;
                m.lo[kx][v] = _mm512_cmpge_epi32_mask(lo, zero) & _mm512_cmplt_epi32_mask(lo, width);
                m.hi[kx][v] = _mm512_cmpge_epi32_mask(hi, zero) & _mm512_cmplt_epi32_mask(hi, width);
                if (s == 1) m.lo[kx][v] &= m.store[v];
            }
        }
        const int nv = p->out_w - ow0 >= 64 ? 4 : (p->out_w - ow0 + 15) / 16;
        const size_t wstride = (size_t)cin_g * p->kh * p->kw;
        int32_t c = oc_begin;
        for (; p->group == 1 && c + 4 <= oc_end; c += 4) { // four channels share each input register
            ROWWISE_RUN(4, nv, in, p->weights + c * wstride, wstride, p->bias ? p->bias + c : NULL,
                        out + (size_t)c * out_plane + ow0);
        }
        for (; c < oc_end; c++) {
            const float *x0 = in + (size_t)(c / cout_g * cin_g) * in_plane;
            ROWWISE_RUN(1, nv, x0, p->weights + c * wstride, wstride, p->bias ? p->bias + c : NULL,
                        out + (size_t)c * out_plane + ow0);
        }
    }
}

/// Transposes the 16x16 floats in r: row i, lane j becomes row j, lane i.
AVX512_TARGET INLINE void transpose16_avx512(__m512 *r) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    // r[4i + k], 128-bit lane L: rows 4i..4i+3 of column 4L + k
    for (int k = 0; k < 4; k++) {
        const __m512 a = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88), b = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
        const __m512 c = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
        const __m512 d = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
        t[k] = _mm512_shuffle_f32x4(a, c, 0x88);
        t[8 + k] = _mm512_shuffle_f32x4(a, c, 0xDD);
        t[4 + k] = _mm512_shuffle_f32x4(b, d, 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(b, d, 0xDD);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/// Pixels px0..px0+np-1 of the nc channel planes from x, one register per pixel (zero beyond).
AVX512_TARGET INLINE void fdw_load_pixels(__m512 *r, const float *x, size_t plane, int32_t nc, int32_t px0,
                                          int32_t np) {
    const __mmask16 pmask = (__mmask16)((1u << np) - 1u);
    for (int32_t i = 0; i < 16; i++)
        r[i] = i < nc ? _mm512_maskz_loadu_ps(pmask, x + (size_t)i * plane + px0) : _mm512_setzero_ps();
    transpose16_avx512(r);
}

/// The np pixel registers at y back to pixels px0.. of the nc channel planes from o.
AVX512_TARGET INLINE void fdw_store_pixels(const float *y, float *o, size_t plane, int32_t nc, int32_t px0,
                                           int32_t np) {
    const __mmask16 pmask = (__mmask16)((1u << np) - 1u);
    __m512 r[16];
    for (int32_t j = 0; j < 16; j++) r[j] = j < np ? _mm512_load_ps(y + (size_t)j * 16) : _mm512_setzero_ps();
    transpose16_avx512(r);
    for (int32_t i = 0; i < nc; i++) _mm512_mask_storeu_ps(o + (size_t)i * plane + px0, pmask, r[i]);
}

#define FMADD_AVX512(acc, w, x) _mm512_fmadd_ps(w, x, acc)
AADS_FDW_ROWS(fdw_rows, AVX512_TARGET, __m512, 16, _mm512_load_ps, _mm512_store_ps, FMADD_AVX512, clamp_avx512)
// Depthwise convolution 16 channels per register: each block's input rows transposed to one register per pixel,
// convolved, and transposed back.
AADS_FDW_BLOCKED(aads_fdw_blocked_avx512, AVX512_TARGET, __m512, 16, _mm512_load_ps, _mm512_store_ps,
                 _mm512_setzero_ps(), fdw_rows, fdw_load_pixels, fdw_store_pixels)

/// `mr` rows (at most AADS_FTILE_ROWS_AVX512) by `n` columns (at most 64).
AVX512_TARGET INLINE void tile_avx512(const int mr, const int32_t n, int32_t k, const float *w, int32_t ldw,
                                      const float *bias, const float *x, size_t ldx, float *out, size_t ldo,
                                      aads_fclamp clamp) {
    __mmask16 mask[4];
    for (int v = 0; v < 4; v++) {
        const int32_t rest = n - 16 * v;
        mask[v] = rest >= 16 ? (__mmask16)0xFFFF : rest <= 0 ? (__mmask16)0 : (__mmask16)((1u << rest) - 1);
    }
    __m512 acc[AADS_FTILE_ROWS_AVX512][4];
    for (int r = 0; r < mr; r++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[r] : 0.0f);
        for (int v = 0; v < 4; v++) acc[r][v] = b;
    }
    for (int32_t kk = 0; kk < k; kk++) {
        const float *xr = x + (size_t)kk * ldx;
        __m512 xv[4];
        for (int v = 0; v < 4; v++) xv[v] = _mm512_maskz_loadu_ps(mask[v], xr + 16 * v);
        for (int r = 0; r < mr; r++) {
            const __m512 wv = _mm512_set1_ps(w[(size_t)r * ldw + kk]);
            for (int v = 0; v < 4; v++) acc[r][v] = _mm512_fmadd_ps(wv, xv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < mr; r++) {
        for (int v = 0; v < 4; v++) {
            _mm512_mask_storeu_ps(out + (size_t)r * ldo + 16 * v, mask[v], clamp_avx512(clamp, acc[r][v]));
        }
    }
}

AADS_FROWS_DRIVER(aads_frows_avx512, AVX512_TARGET, tile_avx512, tile_avx512, 64, AADS_FTILE_ROWS_AVX512, 0)

/// Stores the first `n` (0 to 8) lanes of v: plain stores of 4, 2 and 1 lanes instead of VMASKMOVPS, which AMD's Zen
/// cores run as microcode (a 7x7 depthwise plane stored each of its rows that way).
AVX2_TARGET INLINE void store_first_avx2(float *dst, __m256 v, int32_t n) {
    if (n >= 8) {
        _mm256_storeu_ps(dst, v);
        return;
    }
    __m128 part = _mm256_castps256_ps128(v);
    if (n & 4) {
        _mm_storeu_ps(dst, part);
        part = _mm256_extractf128_ps(v, 1);
        dst += 4;
    }
    if (n & 2) {
        _mm_storel_pi((__m64 *)dst, part);
        part = _mm_movehl_ps(part, part);
        dst += 2;
    }
    if (n & 1) _mm_store_ss(dst, part);
}

/// The even (`odd` = 0) or odd (`odd` = 1) lanes of the 16 floats lo, hi, in order: per 128-bit half the shuffle
/// gives [x0 x2 x8 x10 | x4 x6 x12 x14], and the permute puts the 64-bit pairs in order.
AVX2_TARGET INLINE __m256 alternate_lanes_avx2(__m256 lo, __m256 hi, const int odd) {
    const __m256 mixed = odd ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))
                             : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(mixed), _MM_SHUFFLE(3, 1, 2, 0)));
}

/// Floats of padded input rows that aads_fdw_avx2 keeps on the stack (64 KB), and the widest padded row it takes.
#define FDW_BUF 16384
#define FDW_MAX_WP 1024

/// R output rows by NV registers of 8 columns from ow0 of a depthwise convolution over padded input rows `buf` (row
/// pitch `wp`; output row r reads band rows r * s + ky; tap kx of column ow is at ow + toff[kx]), stored where the
/// row is below `rows` and the column below out_w.
AVX2_TARGET INLINE void fdw_tile(const int R, const int NV, const aads_fconv *p, const float *buf, int32_t wp,
                                 const int32_t *toff, int32_t r0, int32_t rows, int32_t ow0, const float *w, float b,
                                 float *o) {
    const int32_t s = p->stride_h;
    __m256 acc[8][4];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_set1_ps(b);
    }
    for (int32_t ky = 0; ky < p->kh; ky++) {
        for (int32_t kx = 0; kx < p->kw; kx++) {
            const __m256 wv = _mm256_set1_ps(w[ky * p->kw + kx]);
            #pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const float *x = buf + (size_t)((r0 + r) * s + ky) * wp + toff[kx] + ow0;
                #pragma GCC unroll 4
                for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + 8 * v), acc[r][v]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        if (r0 + r >= rows) break;
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            float *dst = o + (size_t)(r0 + r) * p->out_w + ow0 + 8 * v;
            store_first_avx2(dst, clamp_avx2(aads_fclamp_of(p), acc[r][v]), p->out_w - ow0 - 8 * v);
        }
    }
}

/// The lanes of columns first..first + 7 that lie in [0, end): all ones there, zero elsewhere (an AVX2 masked load
/// neither reads nor faults on the zero lanes).
AVX2_TARGET INLINE __m256i lanes_inside_avx2(int32_t first, int32_t end) {
    const __m256i at = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(first));
    return _mm256_and_si256(_mm256_cmpgt_epi32(at, _mm256_set1_epi32(-1)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32(end), at));
}

/// The padded band rows of aads_fdw_avx2 and aads_fsmall_avx2 for stride 1 or 2 in both directions, no dilation and
/// taps at most 8 wide: `wp` floats per row, for stride 2 the even columns first and the odd ones from `half`. 0 when
/// the convolution is not of that kind or its rows are too wide.
static int band_geometry(const aads_fconv *p, int32_t *wp, int32_t *half) {
    const int32_t s = p->stride_h, w8 = (p->out_w + 7) / 8 * 8;
    if (s != p->stride_w || (s != 1 && s != 2) || p->dil_h != 1 || p->dil_w != 1 || p->kw > 8) return 0;
    *half = s == 2 ? w8 + 8 : 0; // a multiple of 8 past the last column a tap reads (kw / 2 <= 4)
    *wp = s == 2 ? 2 * *half : (w8 + p->kw + 7 + 7) / 8 * 8;
    return *wp <= FDW_MAX_WP;
}

/// Whether aads_fdw_avx2 takes this convolution: depthwise (one input channel per output channel), band rows as
/// band_geometry's, and a band of at least one tile.
static int fdw_fits(const aads_fconv *p, int32_t *wp, int32_t *half) {
    if (p->group != p->cin || p->cout != p->cin || !band_geometry(p, wp, half)) return 0;
    return (8 + 1) * p->stride_h + p->kh <= FDW_BUF / *wp;
}

/// Writes input row `ih` of plane `x` as band row `dst` (`wp` floats): `pad_l` zeros, the row's first `copy` values,
/// zeros; all zeros outside the image. For stride 2 the padded row is split into its even columns (from dst) and odd
/// ones (from dst + half), 16 values at a time straight from the input, masked at its ends (copying the row into a
/// padded buffer first and loading it back at once stalled every load on the copy's stores). With `zeroed`, the
/// padding of a stride-1 row is zero already and is not written.
AVX2_TARGET INLINE void fill_band_row(const aads_fconv *p, const float *x, int32_t ih, float *dst, int32_t wp,
                                      int32_t half, int32_t copy, int zeroed) {
    if (ih < 0 || ih >= p->in_h) {
        if (!zeroed) memset(dst, 0, (size_t)wp * sizeof(float));
        return;
    }
    const float *src = x + (size_t)ih * p->in_w;
    if (p->stride_h == 1) {
        if (!zeroed) memset(dst, 0, (size_t)p->pad_l * sizeof(float));
        memcpy(dst + p->pad_l, src, (size_t)copy * sizeof(float));
        if (!zeroed) memset(dst + p->pad_l + copy, 0, (size_t)(wp - p->pad_l - copy) * sizeof(float));
        return;
    }
    for (int32_t j = 0; j < half; j += 8) {
        const int32_t first = 2 * j - p->pad_l; // the input column of padded column 2j
        __m256 lo, hi;
        if (first >= 0 && first + 16 <= copy) {
            lo = _mm256_loadu_ps(src + first), hi = _mm256_loadu_ps(src + first + 8);
        } else { // lanes outside [0, copy) are zeros
            const float *from = (const float *)((uintptr_t)src + (intptr_t)first * 4);
            lo = _mm256_maskload_ps(from, lanes_inside_avx2(first, copy));
            hi = _mm256_maskload_ps(from + 8, lanes_inside_avx2(first + 8, copy));
        }
        _mm256_storeu_ps(dst + j, alternate_lanes_avx2(lo, hi, 0));
        _mm256_storeu_ps(dst + half + j, alternate_lanes_avx2(lo, hi, 1));
    }
}

/// Output rows of aads_fdw_avx2's tiles `nv` registers of 8 columns wide (at most 12 sums in registers).
static inline int32_t fdw_tile_rows(int32_t nv) { return nv >= 4 ? 3 : nv == 3 ? 4 : nv == 2 ? 6 : 8; }

/// Depthwise convolution (see fdw_fits) of output channels [oc_begin, oc_end) with AVX2 and FMA, by bands of output
/// rows: the band's input rows are copied into a zero-padded buffer (for stride 2 split into even and odd columns),
/// so that every tap of 8 output columns is one unaligned load and one fused multiply-add, borders included. A tap
/// in the padding adds w·0, which leaves the sum as the direct kernel's (which skips it) compares equal.
AVX2_TARGET static void aads_fdw_avx2(const aads_fconv *p, const float *in, float *out, int32_t oc_begin,
                                      int32_t oc_end, int32_t wp, int32_t half) {
    float buf[FDW_BUF];
    const int32_t s = p->stride_h, kh = p->kh, kw = p->kw;
    int32_t toff[8];
    for (int32_t kx = 0; kx < kw; kx++) toff[kx] = s == 1 ? kx : (kx & 1) * half + kx / 2;
    const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
    const int32_t nv_all = (p->out_w + 7) / 8, copy = p->in_w < wp - p->pad_l ? p->in_w : wp - p->pad_l;
    // Output rows per band: the last tiles of a band compute (and read the input rows of) up to `over` rows past it,
    // the tallest of its two tile shapes less one.
    const int32_t tall = fdw_tile_rows(nv_all < 4 ? nv_all : 4), last = fdw_tile_rows(nv_all % 4 ? nv_all % 4 : 4);
    const int32_t over = (tall > last ? tall : last) - 1, band = (FDW_BUF / wp - kh) / s + 1 - over;
    // When one band holds every output row, the padding (rows outside the image, the columns beside it) is the
    // same for every channel: it is zeroed once, and each channel copies only its rows into the buffer. A small
    // plane otherwise spent more time zeroing its band than multiplying (7x7: 19 rows of three calls each).
    const int one_band = p->out_h <= band;
    if (one_band) memset(buf, 0, (size_t)((p->out_h + over - 1) * s + kh) * wp * sizeof(float));
    for (int32_t c = oc_begin; c < oc_end; c++) {
        const float *x = in + (size_t)c * in_plane, *w = p->weights + (size_t)c * kh * kw;
        const float b = p->bias ? p->bias[c] : 0.0f;
        float *o = out + (size_t)c * out_plane;
        for (int32_t a = 0; a < p->out_h; a += band) {
            const int32_t rows = p->out_h - a < band ? p->out_h - a : band;
            const int32_t nrows = (rows + over - 1) * s + kh; // the band's input rows and what its last tiles read
            for (int32_t i = 0; i < nrows; i++) {
                fill_band_row(p, x, a * s - p->pad_t + i, buf + (size_t)i * wp, wp, half, copy, one_band);
            }
            float *ob = o + (size_t)a * p->out_w;
            for (int32_t ow0 = 0; ow0 < p->out_w; ow0 += 32) {
                const int32_t nv = nv_all - ow0 / 8 < 4 ? nv_all - ow0 / 8 : 4;
                for (int32_t r0 = 0; r0 < rows;) {
                    switch (nv) {
                    case 4: fdw_tile(3, 4, p, buf, wp, toff, r0, rows, ow0, w, b, ob), r0 += 3; break;
                    case 3: fdw_tile(4, 3, p, buf, wp, toff, r0, rows, ow0, w, b, ob), r0 += 4; break;
                    case 2: fdw_tile(6, 2, p, buf, wp, toff, r0, rows, ow0, w, b, ob), r0 += 6; break;
                    default: fdw_tile(8, 1, p, buf, wp, toff, r0, rows, ow0, w, b, ob), r0 += 8; break;
                    }
                }
            }
        }
    }
}

/// One output row by NV registers of 8 columns from ow0 of OC output channels (weights `wstride` apart from w, planes
/// `out_plane` apart from o) of a one-group convolution over the band rows `buf` (each input channel's `per_ic` rows
/// in turn; output row r reads rows r * s + ky): each loaded tap feeds all OC channels.
AVX2_TARGET INLINE void fsmall_tile(const int OC, const int NV, const aads_fconv *p, const float *buf, int32_t wp,
                                    int32_t per_ic, const int32_t *toff, int32_t r, int32_t ow0, const float *w,
                                    size_t wstride, const float *bias, float *o, size_t out_plane) {
    const int32_t kh = p->kh, kw = p->kw;
    __m256 acc[4][2];
    #pragma GCC unroll 4
    for (int k = 0; k < OC; k++) {
        #pragma GCC unroll 2
        for (int v = 0; v < NV; v++) acc[k][v] = _mm256_set1_ps(bias ? bias[k] : 0.0f);
    }
    for (int32_t ic = 0; ic < p->cin; ic++) {
        for (int32_t ky = 0; ky < kh; ky++) {
            const float *x = buf + ((size_t)ic * per_ic + (size_t)(r * p->stride_h + ky)) * wp + ow0;
            const float *wk = w + (size_t)(ic * kh + ky) * kw;
            for (int32_t kx = 0; kx < kw; kx++) {
                __m256 wv[4];
                #pragma GCC unroll 4
                for (int k = 0; k < OC; k++) wv[k] = _mm256_set1_ps(wk[(size_t)k * wstride + kx]);
                #pragma GCC unroll 2
                for (int v = 0; v < NV; v++) {
                    const __m256 xv = _mm256_loadu_ps(x + toff[kx] + 8 * v);
                    #pragma GCC unroll 4
                    for (int k = 0; k < OC; k++) acc[k][v] = _mm256_fmadd_ps(wv[k], xv, acc[k][v]);
                }
            }
        }
    }
    #pragma GCC unroll 4
    for (int k = 0; k < OC; k++) {
        #pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            store_first_avx2(o + k * out_plane + ow0 + 8 * v, clamp_avx2(aads_fclamp_of(p), acc[k][v]),
                             p->out_w - ow0 - 8 * v);
        }
    }
}

/// Output row `oh` of OC output channels from c (see fsmall_tile), 2 registers of columns at a time (8 sums, the 4
/// weights and a loaded tap fit the 16 registers; with 3, one sum went through memory at every tap).
AVX2_TARGET INLINE void fsmall_row(const int OC, const aads_fconv *p, const float *buf, int32_t wp, int32_t per_ic,
                                   const int32_t *toff, int32_t r, int32_t oh, int32_t c, float *out) {
    const size_t wstride = (size_t)p->cin * p->kh * p->kw, out_plane = (size_t)p->out_h * p->out_w;
    const float *w = p->weights + c * wstride, *bias = p->bias ? p->bias + c : NULL;
    float *o = out + c * out_plane + (size_t)oh * p->out_w;
    const int32_t nv_all = (p->out_w + 7) / 8;
    for (int32_t ow0 = 0; ow0 < p->out_w; ow0 += 16) {
        if (nv_all - ow0 / 8 >= 2) fsmall_tile(OC, 2, p, buf, wp, per_ic, toff, r, ow0, w, wstride, bias, o, out_plane);
        else fsmall_tile(OC, 1, p, buf, wp, per_ic, toff, r, ow0, w, wstride, bias, o, out_plane);
    }
}

/// Whether aads_fsmall_avx2 takes this convolution: one group of at most 4 input channels (a network's stem), band
/// rows as band_geometry's, and a band buffer that holds every input channel's rows for one output row.
static int fsmall_fits(const aads_fconv *p, int32_t *wp, int32_t *half) {
    if (p->group != 1 || p->cin > 4 || !band_geometry(p, wp, half)) return 0;
    return p->cin * (p->kh + p->stride_h) <= FDW_BUF / *wp;
}

/// One-group convolution of few input channels (see fsmall_fits) of output channels [oc_begin, oc_end), by bands of
/// output rows: each input channel's rows of the band are copied into zero-padded rows as aads_fdw_avx2's (split into
/// even and odd columns for stride 2), once for all the output channels, so that every tap of 8 output columns is
/// one unaligned load feeding four channels' fused multiply-adds, borders included (a tap in the padding adds w·0).
AVX2_TARGET static void aads_fsmall_avx2(const aads_fconv *p, const float *in, float *out, int32_t oc_begin,
                                         int32_t oc_end, int32_t wp, int32_t half) {
    float buf[FDW_BUF];
    const int32_t s = p->stride_h, kh = p->kh;
    int32_t toff[8];
    for (int32_t kx = 0; kx < p->kw; kx++) toff[kx] = s == 1 ? kx : (kx & 1) * half + kx / 2;
    const int32_t per_ic = FDW_BUF / (p->cin * wp), band = (per_ic - kh) / s + 1;
    const size_t in_plane = (size_t)p->in_h * p->in_w;
    const int32_t copy = p->in_w < wp - p->pad_l ? p->in_w : wp - p->pad_l;
    for (int32_t a = 0; a < p->out_h; a += band) {
        const int32_t rows = p->out_h - a < band ? p->out_h - a : band;
        for (int32_t ic = 0; ic < p->cin; ic++) {
            for (int32_t i = 0; i < (rows - 1) * s + kh; i++) {
                fill_band_row(p, in + ic * in_plane, a * s - p->pad_t + i, buf + (size_t)(ic * per_ic + i) * wp, wp,
                              half, copy, 0);
            }
        }
        int32_t c = oc_begin;
        for (; c + 4 <= oc_end; c += 4)
            for (int32_t r = 0; r < rows; r++) fsmall_row(4, p, buf, wp, per_ic, toff, r, a + r, c, out);
        for (; c < oc_end; c++)
            for (int32_t r = 0; r < rows; r++) fsmall_row(1, p, buf, wp, per_ic, toff, r, a + r, c, out);
    }
}

/// Column masks of one block of up to 32 output columns for aads_fconv_rowwise_avx2, as rowwise_masks: all-ones
/// lanes are inside (AVX2 masked loads neither read nor fault the other lanes).
typedef struct {
    __m256i lo[8][4], hi[8][4], store[4];
    int32_t first[8][4];
    int full[4]; // all 8 lanes of the register are stored
} rowwise_masks_avx2;

/// rowwise_tile with 8-column registers [V0, V0 + NV) of the block.
AVX2_TARGET INLINE void rowwise_tile_avx2(const int OC, const int R, const int V0, const int NV, const aads_fconv *p,
                                          const rowwise_masks_avx2 *m, const float *x0, const float *w0,
                                          size_t wstride, const float *bias, int32_t oh0, float *o, size_t out_plane) {
    const int32_t cin_g = p->cin / p->group, kw = p->kw;
    const size_t in_plane = (size_t)p->in_h * p->in_w;
    __m256 acc[4][8][4];
    #pragma GCC unroll 4
    for (int k = 0; k < OC; k++) {
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            #pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[k][r][v] = _mm256_set1_ps(bias ? bias[k] : 0.0f);
        }
    }
    for (int32_t ic = 0; ic < cin_g; ic++) {
        const float *x = x0 + (size_t)ic * in_plane;
        const float *w = w0 + (size_t)ic * p->kh * kw;
        for (int32_t ky = 0; ky < p->kh; ky++) {
            const float *row[8];
            rowwise_tap_rows(p, x, R, oh0, ky, row);
            for (int32_t kx = 0; kx < kw; kx++) {
                __m256 wv[4];
                #pragma GCC unroll 4
                for (int k = 0; k < OC; k++) wv[k] = _mm256_set1_ps(w[(size_t)k * wstride + ky * kw + kx]);
                #pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    if (!row[r]) continue; // a tap row outside the image adds nothing
                    #pragma GCC unroll 4
                    for (int v = 0; v < NV; v++) {
                        const float *src = (const float *)((uintptr_t)row[r] + (intptr_t)m->first[kx][V0 + v] * 4);
                        __m256 xv = _mm256_maskload_ps(src, m->lo[kx][V0 + v]);
                        if (p->stride_w == 2) {
                            xv = alternate_lanes_avx2(xv, _mm256_maskload_ps(src + 8, m->hi[kx][V0 + v]), 0);
                        }
                        #pragma GCC unroll 4
                        for (int k = 0; k < OC; k++) acc[k][r][v] = _mm256_fmadd_ps(wv[k], xv, acc[k][r][v]);
                    }
                }
            }
        }
    }
    #pragma GCC unroll 4
    for (int k = 0; k < OC; k++) {
        #pragma GCC unroll 8
        for (int r = 0; r < R && oh0 + r < p->out_h; r++) {
            #pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                float *dst = o + k * out_plane + (size_t)r * p->out_w + 8 * (V0 + v);
                const __m256 y = clamp_avx2(aads_fclamp_of(p), acc[k][r][v]);
                if (m->full[V0 + v]) _mm256_storeu_ps(dst, y);
                else _mm256_maskstore_ps(dst, m->store[V0 + v], y); // slow on AMD Zen: edges only
            }
        }
    }
}

/// Rows of one channel over the whole output height, `nv` column registers: up to 12 sums in registers.
AVX2_TARGET static void rowwise_run1_avx2(int nv, const aads_fconv *p, const rowwise_masks_avx2 *m, const float *x0,
                                          const float *w0, const float *bias, float *o, size_t out_plane) {
    for (int32_t oh = 0; oh < p->out_h;) {
        float *o_ = o + (size_t)oh * p->out_w;
        switch (nv) {
        case 4: rowwise_tile_avx2(1, 3, 0, 4, p, m, x0, w0, 0, bias, oh, o_, out_plane), oh += 3; break;
        case 3: rowwise_tile_avx2(1, 4, 0, 3, p, m, x0, w0, 0, bias, oh, o_, out_plane), oh += 4; break;
        case 2: rowwise_tile_avx2(1, 6, 0, 2, p, m, x0, w0, 0, bias, oh, o_, out_plane), oh += 6; break;
        default: rowwise_tile_avx2(1, 8, 0, 1, p, m, x0, w0, 0, bias, oh, o_, out_plane), oh += 8; break;
        }
    }
}

/// Rows of four channels (a one-group convolution) over the whole output height: 2 column registers at a time.
AVX2_TARGET static void rowwise_run4_avx2(int nv, const aads_fconv *p, const rowwise_masks_avx2 *m, const float *x0,
                                          const float *w0, size_t wstride, const float *bias, float *o,
                                          size_t out_plane) {
    for (int32_t oh = 0; oh < p->out_h; oh++) {
        float *o_ = o + (size_t)oh * p->out_w;
        for (int v0 = 0; v0 < nv; v0 += 2) {
            if (nv - v0 >= 2) rowwise_tile_avx2(4, 1, v0, 2, p, m, x0, w0, wstride, bias, oh, o_, out_plane);
            else rowwise_tile_avx2(4, 1, v0, 1, p, m, x0, w0, wstride, bias, oh, o_, out_plane);
        }
    }
}

/// aads_fconv_rowwise_avx512 with AVX2 and FMA: blocks of up to 32 output columns, 8 per register; a stride-2
/// term loads 16 columns and keeps the even ones. Depthwise convolutions that aads_fdw_avx2 takes go there.
AVX2_TARGET void aads_fconv_rowwise_avx2(const aads_fconv *p, const float *in, float *out, int32_t oc_begin,
                                         int32_t oc_end) {
    int32_t wp, half;
    if (fdw_fits(p, &wp, &half)) {
        aads_fdw_avx2(p, in, out, oc_begin, oc_end, wp, half);
        return;
    }
    if (fsmall_fits(p, &wp, &half)) {
        aads_fsmall_avx2(p, in, out, oc_begin, oc_end, wp, half);
        return;
    }
    const int32_t s = p->stride_w, cin_g = p->cin / p->group, cout_g = p->cout / p->group;
    const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i out_width = _mm256_set1_epi32(p->out_w);
    for (int32_t ow0 = 0; ow0 < p->out_w; ow0 += 32) {
        rowwise_masks_avx2 m;
        for (int v = 0; v < 4; v++) {
            const int32_t ow = ow0 + 8 * v;
            m.store[v] = _mm256_cmpgt_epi32(out_width, _mm256_add_epi32(iota, _mm256_set1_epi32(ow)));
            m.full[v] = ow + 8 <= p->out_w;
            for (int32_t kx = 0; kx < p->kw; kx++) {
                const int32_t c0 = ow * s + kx * p->dil_w - p->pad_l;
                m.first[kx][v] = c0;
                m.lo[kx][v] = lanes_inside_avx2(c0, p->in_w);
                m.hi[kx][v] = lanes_inside_avx2(c0 + 8, p->in_w);
                if (s == 1) m.lo[kx][v] = _mm256_and_si256(m.lo[kx][v], m.store[v]);
            }
        }
        const int nv = p->out_w - ow0 >= 32 ? 4 : (p->out_w - ow0 + 7) / 8;
        const size_t wstride = (size_t)cin_g * p->kh * p->kw;
        int32_t c = oc_begin;
        for (; p->group == 1 && c + 4 <= oc_end; c += 4) { // four channels share each input register
            rowwise_run4_avx2(nv, p, &m, in, p->weights + c * wstride, wstride, p->bias ? p->bias + c : NULL,
                              out + (size_t)c * out_plane + ow0, out_plane);
        }
        for (; c < oc_end; c++) {
            const float *x0 = in + (size_t)(c / cout_g * cin_g) * in_plane;
            rowwise_run1_avx2(nv, p, &m, x0, p->weights + c * wstride, p->bias ? p->bias + c : NULL,
                              out + (size_t)c * out_plane + ow0, out_plane);
        }
    }
}

/// `mr` rows (at most 6) by `n` columns (at most 8 * NV, NV = 1 or 2 registers): up to 12 sums in registers, each
/// loaded pair of input registers feeding all the rows (a tile of 4 rows by 24 columns ran at half the speed on AMD
/// Zen 3). With `padded`, every row of x may be read 8 * NV columns wide (a zero-padded panel): no masked loads,
/// which AMD Zen 3 runs slowly enough that a 7x7 plane's one last column cost about as much as its other 48.
AVX2_TARGET INLINE void tile_avx2_nv(const int NV, const int padded, const int mr, const int32_t n, int32_t k,
                                     const float *w, int32_t ldw, const float *bias, const float *x, size_t ldx,
                                     float *out, size_t ldo, aads_fclamp clamp) {
    __m256i mask[2];
    for (int v = 0; v < NV; v++) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8 * v), lane);
    }
    __m256 acc[AADS_FTILE_ROWS_AVX2][2];
    for (int r = 0; r < mr; r++) {
        const __m256 b = _mm256_set1_ps(bias ? bias[r] : 0.0f);
        for (int v = 0; v < NV; v++) acc[r][v] = b;
    }
    for (int32_t kk = 0; kk < k; kk++) {
        const float *xr = x + (size_t)kk * ldx;
        __m256 xv[2];
        for (int v = 0; v < NV; v++) {
            xv[v] = padded || n >= 8 * (v + 1) ? _mm256_loadu_ps(xr + 8 * v) : _mm256_maskload_ps(xr + 8 * v, mask[v]);
        }
        for (int r = 0; r < mr; r++) {
            const __m256 wv = _mm256_set1_ps(w[(size_t)r * ldw + kk]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(wv, xv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < mr; r++) {
        for (int v = 0; v < NV; v++) {
            float *o = out + (size_t)r * ldo + 8 * v;
            const __m256 y = clamp_avx2(clamp, acc[r][v]);
            // A masked store is slow on some CPUs (AMD Zen): only the register that holds the last columns uses it.
            if (n >= 8 * (v + 1)) _mm256_storeu_ps(o, y);
            else if (n > 8 * v) _mm256_maskstore_ps(o, mask[v], y);
        }
    }
}

/// tile_avx2_nv with one register when the columns fit it: the last block of a 7x7 plane's 49 columns is one
/// column, which two registers computed at the cost of a full tile.
AVX2_TARGET INLINE void tile_avx2(const int mr, const int32_t n, int32_t k, const float *w, int32_t ldw,
                                  const float *bias, const float *x, size_t ldx, float *out, size_t ldo,
                                  aads_fclamp clamp) {
    if (n <= 8) tile_avx2_nv(1, 0, mr, n, k, w, ldw, bias, x, ldx, out, ldo, clamp);
    else tile_avx2_nv(2, 0, mr, n, k, w, ldw, bias, x, ldx, out, ldo, clamp);
}

/// tile_avx2 on a zero-padded panel of 16 columns.
AVX2_TARGET INLINE void tile_avx2_panel(const int mr, const int32_t n, int32_t k, const float *w, int32_t ldw,
                                        const float *bias, const float *x, size_t ldx, float *out, size_t ldo,
                                        aads_fclamp clamp) {
    if (n <= 8) tile_avx2_nv(1, 1, mr, n, k, w, ldw, bias, x, ldx, out, ldo, clamp);
    else tile_avx2_nv(2, 1, mr, n, k, w, ldw, bias, x, ldx, out, ldo, clamp);
}

AADS_FROWS_DRIVER(aads_frows_avx2, AVX2_TARGET, tile_avx2, tile_avx2_panel, 16, AADS_FTILE_ROWS_AVX2, 1)
#endif
