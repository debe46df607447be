// Float32 rows (pointwise convolutions and unfolded convolutions) and direct convolutions for x86-64: AVX2 + FMA
// and AVX-512. A tile of 4 output rows by 64 (AVX-512) or 24 (AVX2) columns stays in registers while the terms
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
            #pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const int32_t ih = (oh0 + r) * p->stride_h - p->pad_t + ky * p->dil_h;
                const int inside = ih >= 0 && ih < p->in_h && oh0 + r < p->out_h;
                row[r] = inside ? x + (size_t)ih * p->in_w : NULL;
            }
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
                _mm512_mask_storeu_ps(o + k * out_plane + (size_t)r * p->out_w + 16 * v, m->store[v], acc[k][r][v]);
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

/// `mr` rows (at most 4) by `n` columns (at most 64).
AVX512_TARGET INLINE void tile_avx512(const int mr, const int32_t n, int32_t k, const float *w, int32_t ldw,
                                      const float *bias, const float *x, size_t ldx, float *out, size_t ldo) {
    __mmask16 mask[4];
    for (int v = 0; v < 4; v++) {
        const int32_t rest = n - 16 * v;
        mask[v] = rest >= 16 ? (__mmask16)0xFFFF : rest <= 0 ? (__mmask16)0 : (__mmask16)((1u << rest) - 1);
    }
    __m512 acc[4][4];
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
        for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(out + (size_t)r * ldo + 16 * v, mask[v], acc[r][v]);
    }
}

AADS_FROWS_DRIVER(aads_frows_avx512, AVX512_TARGET, tile_avx512, 64)

/// `mr` rows (at most 4) by `n` columns (at most 24).
AVX2_TARGET INLINE void tile_avx2(const int mr, const int32_t n, int32_t k, const float *w, int32_t ldw,
                                  const float *bias, const float *x, size_t ldx, float *out, size_t ldo) {
    __m256i mask[3];
    for (int v = 0; v < 3; v++) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8 * v), lane);
    }
    __m256 acc[4][3];
    for (int r = 0; r < mr; r++) {
        const __m256 b = _mm256_set1_ps(bias ? bias[r] : 0.0f);
        for (int v = 0; v < 3; v++) acc[r][v] = b;
    }
    for (int32_t kk = 0; kk < k; kk++) {
        const float *xr = x + (size_t)kk * ldx;
        __m256 xv[3];
        for (int v = 0; v < 3; v++) xv[v] = n == 24 ? _mm256_loadu_ps(xr + 8 * v) : _mm256_maskload_ps(xr + 8 * v, mask[v]);
        for (int r = 0; r < mr; r++) {
            const __m256 wv = _mm256_set1_ps(w[(size_t)r * ldw + kk]);
            for (int v = 0; v < 3; v++) acc[r][v] = _mm256_fmadd_ps(wv, xv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < mr; r++) {
        for (int v = 0; v < 3; v++) {
            float *o = out + (size_t)r * ldo + 8 * v;
            if (n == 24) _mm256_storeu_ps(o, acc[r][v]);
            else _mm256_maskstore_ps(o, mask[v], acc[r][v]);
        }
    }
}

AADS_FROWS_DRIVER(aads_frows_avx2, AVX2_TARGET, tile_avx2, 24)
#endif
