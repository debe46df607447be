// Depthwise convolution for AArch64 NEON (both NEON variants): 16 channels per step, the signed activations widened to
// int16 and multiplied into int32 with SMLAL against the packed int16 weights (exact: |x| <= 128, |w| <= 128). The
// input zero point is removed once per output through the channel's weight sum, so padding taps read a row of in_zp
// bytes and contribute nothing. 3x3 and 5x5 kernels (stride 1 or 2, no dilation) are computed AADS_DW_TILE outputs of
// a row at a time, borders included: each input column is loaded and widened once and used by every output of the
// tile it falls under. Other shapes take one pointer per tap.
#include "internal.h"
#if AADS_ARM64
#include "requant_neon.h"

#define DWN_CHUNK 256 // channels per chunk: their weights (up to 25 taps x 256 x 2 bytes) stay in L1

/// One chunk of channels [c0, c0 + cn) and -in_zp * weight sum per channel of it.
typedef struct {
    const aads_dwconv *p;
    const int8_t *in;
    int8_t *out;
    int32_t c0, cn, cpad;
    const int32_t *nzw;
    const int8_t *pad; // DWN_CHUNK + 16 bytes equal to in_zp
} dwn_chunk;

/// Requantises and stores channels c.. (chunk-relative) of output pixel (oh, ow) as aads_dwconv_out does.
static inline __attribute__((always_inline)) void dwn_store(const dwn_chunk *d, int32_t oh, int32_t ow, int32_t c,
                                                            const int32x4_t *acc) {
    const aads_dwconv *p = d->p;
    const int32_t ca = d->c0 + c, nn = d->cn - c < 16 ? d->cn - c : 16;
    int8_t *o = d->out + ((size_t)oh * p->out_w + ow) * p->channels + ca;
    int32_t sums[16];
    if (nn == 16 && p->mult_f32 != NULL) {
        unsigned near = store_requant_f32_neon(acc, 4, p->mult_f32 + ca, p->offset_f32 + ca, p->out_zp, p->out_min,
                                               p->out_max, p->ref, o);
        if (near) {
            for (int g = 0; g < 4; g++) vst1q_s32(sums + 4 * g, acc[g]);
            while (near) {
                const int l = __builtin_ctz(near);
                near &= near - 1;
                o[l] = aads_dwconv_out(p, d->in, oh, ow, ca + l, sums[l]);
            }
        }
        return;
    }
    for (int g = 0; g < 4; g++) vst1q_s32(sums + 4 * g, acc[g]);
    for (int32_t l = 0; l < nn; l++) o[l] = aads_dwconv_out(p, d->in, oh, ow, ca + l, sums[l]);
}

static inline __attribute__((always_inline)) void dwn_mla(int32x4_t *acc, int8x16_t x, const int16_t *w) {
    const int16x8_t xl = vmovl_s8(vget_low_s8(x)), xh = vmovl_high_s8(x);
    const int16x8_t wl = vld1q_s16(w), wh = vld1q_s16(w + 8);
    acc[0] = vmlal_s16(acc[0], vget_low_s16(xl), vget_low_s16(wl));
    acc[1] = vmlal_high_s16(acc[1], xl, wl);
    acc[2] = vmlal_s16(acc[2], vget_low_s16(xh), vget_low_s16(wh));
    acc[3] = vmlal_high_s16(acc[3], xh, wh);
}

/// One output pixel, one pointer per tap (the padding row for taps outside the image).
static void dwn_pixel(const dwn_chunk *d, int32_t oh, int32_t ow) {
    const aads_dwconv *p = d->p;
    const int32_t taps = p->kh * p->kw;
    const int8_t *tp[AADS_MAX_TAPS];
    aads_dw_tap_pointers(p, d->in, d->c0, d->pad, oh, ow, tp);
    for (int32_t c = 0; c < d->cn; c += 16) {
        int32x4_t acc[4];
        for (int g = 0; g < 4; g++) acc[g] = vld1q_s32(d->nzw + c + 4 * g);
        for (int32_t t = 0; t < taps; t++) {
            dwn_mla(acc, vld1q_s8(tp[t] + c), p->weights + (size_t)t * d->cpad + d->c0 + c);
        }
        dwn_store(d, oh, ow, c, acc);
    }
}

/// P outputs (oh, ow..ow+P-1) of a KxK kernel with stride S, every pixel through the same loop (borders read the
/// padding row): each input column is loaded and widened once for all the outputs of the tile.
static inline __attribute__((always_inline)) void dwn_tile(const dwn_chunk *d, const aads_dw_tile_pixels *t,
                                                           int32_t oh, int32_t ow, const int K, const int S,
                                                           const int P, const int border) {
    const aads_dwconv *p = d->p;
    const size_t C = (size_t)p->channels;
    for (int32_t c = 0; c < d->cn; c += 16) {
        int32x4_t acc[AADS_DW_TILE][4];
        for (int j = 0; j < P; j++)
            for (int g = 0; g < 4; g++) acc[j][g] = vld1q_s32(d->nzw + c + 4 * g);
        for (int ky = 0; ky < K; ky++) {
            const int16_t *wr = p->weights + (size_t)ky * K * d->cpad + d->c0 + c;
            for (int i = 0; i < (P - 1) * S + K; i++) {
                const int8_t *px = border ? t->cp[ky][i] : t->base[ky] + (size_t)i * C;
                const int8x16_t x = vld1q_s8(px + c);
                for (int j = 0; j < P; j++) {
                    const int kx = i - j * S;
                    if (kx < 0 || kx >= K) continue;
                    dwn_mla(acc[j], x, wr + (size_t)kx * d->cpad);
                }
            }
        }
        for (int j = 0; j < P; j++) dwn_store(d, oh, ow + j, c, acc[j]);
    }
}

/// Output row oh of a KxK kernel with stride S, every pixel through the tiles.
static inline __attribute__((always_inline)) void dwn_row(const dwn_chunk *d, int32_t oh, const int K, const int S) {
    const int8_t *rows[5];
    aads_dw_tap_rows(d->p, d->in, d->c0, oh, K, S, rows);
#define DWN_TILE_AT(oh, ow, P, t)                                                                                    \
    ((t)->border ? dwn_tile(d, t, oh, ow, K, S, P, 1) : dwn_tile(d, t, oh, ow, K, S, P, 0))
    AADS_DW_ROW_TILES(d->p, rows, d->pad, K, S, oh, DWN_TILE_AT);
#undef DWN_TILE_AT
}

void aads_dwconv_neon(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh0, int32_t oh1) {
    const int32_t C = p->channels, cpad = aads_dwconv_cpad(C), taps = p->kh * p->kw;
    int32_t nzw[DWN_CHUNK];
    int8_t pad[DWN_CHUNK + 16];
    memset(pad, p->in_zp, sizeof pad);
    const int K = p->kh == p->kw && p->dil_h == 1 && p->dil_w == 1 && p->stride_h == p->stride_w ? p->kh : 0;
    const int S = p->stride_w;
    const int fast = (K == 3 || K == 5) && (S == 1 || S == 2);
    for (int32_t c0 = 0; c0 < C; c0 += DWN_CHUNK) {
        dwn_chunk d = {p, in, out, c0, C - c0 < DWN_CHUNK ? C - c0 : DWN_CHUNK, cpad, nzw, pad};
        for (int32_t c = 0; c < (d.cn + 15) / 16 * 16; c += 4) { // padding channels have zero weights
            int32x4_t s = vdupq_n_s32(0);
            for (int32_t t = 0; t < taps; t++) s = vaddw_s16(s, vld1_s16(p->weights + (size_t)t * cpad + c0 + c));
            vst1q_s32(nzw + c, vmulq_n_s32(s, -p->in_zp));
        }
        for (int32_t oh = oh0; oh < oh1; oh++) {
            if (!fast) {
                for (int32_t ow = 0; ow < p->out_w; ow++) dwn_pixel(&d, oh, ow);
            } else if (K == 3 && S == 1) {
                dwn_row(&d, oh, 3, 1);
            } else if (K == 3) {
                dwn_row(&d, oh, 3, 2);
            } else if (S == 1) {
                dwn_row(&d, oh, 5, 1);
            } else {
                dwn_row(&d, oh, 5, 2);
            }
        }
    }
}
#endif
