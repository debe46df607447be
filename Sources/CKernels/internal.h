#ifndef AADS_CKERNELS_INTERNAL_H
#define AADS_CKERNELS_INTERNAL_H
#include "CKernels.h"
#include "cpu.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline int32_t aads_load32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/// Round half to even for |v| < 2^51 (the requantised values are clamped to a few hundred).
static inline double aads_round_even(double v) {
    const double magic = 6755399441055744.0; // 1.5 * 2^52
    const double t = v + magic;              // exact IEEE arithmetic: the sum rounds to an integer, half to even
    return t - magic;
}

/// The requantised value before rounding: fma(acc, mult, offset), clamped to [out_min - zp, out_max - zp].
static inline double aads_requant_value(int32_t acc, double mult, double offset, int32_t zp, int32_t out_min,
                                        int32_t out_max) {
    double v = fma((double)acc, mult, offset);
    const double lo = (double)(out_min - zp), hi = (double)(out_max - zp);
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

static inline int8_t aads_requant(int32_t acc, double mult, double offset, int32_t zp, int32_t out_min, int32_t out_max) {
    return (int8_t)((int32_t)aads_round_even(aads_requant_value(acc, mult, offset, zp, out_min, out_max)) + zp);
}

/// 1 when the requantised value `v` (clamped) lies within `ref->eps` of a rounding boundary.
static inline int aads_near_half(double v, double rounded, const aads_qref *ref) {
    return ref != NULL && fabs(v - rounded) > 0.5 - ref->eps;
}

/// An output left for the float reference: pixel `row`, channel `n`.
typedef struct {
    int32_t row, n;
} aads_qref_pending;

/// Decides `count` pending outputs by the float reference (aads_qconv_reference_output; several at once where the
/// summation order allows) and stores them in `out` (as for aads_qconv_run).
void aads_qconv_reference_flush(const aads_qconv *p, const int8_t *in, int8_t *out, aads_qref_pending *items,
                                int32_t count);

/// aads_requant; sets *near when the float reference must decide instead (the value lies within `ref->eps` of a
/// rounding boundary and `ref` is set).
static inline int8_t aads_requant_or_near(int32_t acc, double mult, double offset, int32_t zp, int32_t out_min,
                                          int32_t out_max, const aads_qref *ref, int *near) {
    const double v = aads_requant_value(acc, mult, offset, zp, out_min, out_max);
    const double r = aads_round_even(v);
    *near = aads_near_half(v, r, ref);
    return (int8_t)((int32_t)r + zp);
}

/// The requantisation of output channel `n` of output pixel `row` (aads_requant), with near-half values decided by the
/// float reference when p->ref is set.
static inline int8_t aads_qconv_out(const aads_qconv *p, const int8_t *in, int32_t row, int32_t n, int32_t acc) {
    int near;
    const int8_t q = aads_requant_or_near(acc, p->mult[n], p->offset[n], p->out_zp, p->out_min, p->out_max, p->ref, &near);
    return near ? aads_qconv_reference_output(p, in, row, n) : q;
}

/// The same for a depthwise output (oh, ow, channel c).
static inline int8_t aads_dwconv_out(const aads_dwconv *p, const int8_t *in, int32_t oh, int32_t ow, int32_t c,
                                     int32_t acc) {
    int near;
    const int8_t q = aads_requant_or_near(acc, p->mult[c], p->offset[c], p->out_zp, p->out_min, p->out_max, p->ref, &near);
    return near ? aads_dwconv_reference_output(p, in, oh, ow, c) : q;
}

/// Fills `ptrs` with the input pixel (or the padding row) that each tap of output pixel `row` reads.
static inline void aads_row_taps(const aads_qconv *p, const int8_t *in, int32_t row, const int8_t **ptrs) {
    const int32_t oh = row / p->out_w, ow = row - oh * p->out_w;
    int t = 0;
    for (int32_t ky = 0; ky < p->kh; ky++) {
        const int32_t ih = oh * p->stride_h - p->pad_t + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->kw; kx++) {
            const int32_t iw = ow * p->stride_w - p->pad_l + kx * p->dil_w;
            if (ih >= 0 && ih < p->in_h && iw >= 0 && iw < p->in_w) {
                ptrs[t++] = in + ((size_t)ih * (size_t)p->in_w + (size_t)iw) * (size_t)p->in_stride;
            } else {
                ptrs[t++] = p->pad;
            }
        }
    }
}

/// The taps of depthwise output pixel (oh, ow) that fall inside the image: each one's input pixel and weight row.
/// Returns how many there are.
static inline int aads_dw_inside_taps(const aads_dwconv *p, const int8_t *in, int32_t oh, int32_t ow, const int8_t **xs,
                                      const int16_t **ws) {
    const int32_t cpad = aads_dwconv_cpad(p->channels);
    int nt = 0;
    for (int32_t ky = 0; ky < p->kh; ky++) {
        const int32_t ih = oh * p->stride_h - p->pad_t + ky * p->dil_h;
        if (ih < 0 || ih >= p->in_h) continue;
        for (int32_t kx = 0; kx < p->kw; kx++) {
            const int32_t iw = ow * p->stride_w - p->pad_l + kx * p->dil_w;
            if (iw < 0 || iw >= p->in_w) continue;
            xs[nt] = in + ((size_t)ih * p->in_w + iw) * p->channels;
            ws[nt] = p->weights + (size_t)(ky * p->kw + kx) * cpad;
            nt++;
        }
    }
    return nt;
}

/// Each tap's input offset (bytes) from the pixel of tap (0, 0), for aads_tile_rows.
static inline void aads_qconv_tap_offsets(const aads_qconv *p, int32_t *off) {
    for (int32_t ky = 0; ky < p->kh; ky++)
        for (int32_t kx = 0; kx < p->kw; kx++)
            off[ky * p->kw + kx] = (ky * p->dil_h * p->in_w + kx * p->dil_w) * p->in_stride;
}

/// The `mr` output rows of one tile from `row`, of which `nrows` are real (the last one repeated to fill the tile):
/// each one's tap pointers ptrs[r * taps + t] (as aads_row_taps), output pixel and row index. A pixel whose taps all
/// lie inside the image takes its first tap's address plus `off` (aads_qconv_tap_offsets) instead of checking each.
static inline void aads_tile_rows(const aads_qconv *p, const int8_t *in, int8_t *out, const int32_t *off, int32_t row,
                                  int32_t nrows, int mr, const int8_t **ptrs, int8_t **outrows, int32_t *rows) {
    const int32_t taps = p->kh * p->kw;
    int32_t oh = row / p->out_w, ow = row - oh * p->out_w;
    for (int r = 0; r < nrows; r++) {
        const int32_t ih = oh * p->stride_h - p->pad_t, iw = ow * p->stride_w - p->pad_l;
        const int8_t **tp = ptrs + r * taps;
        if (ih >= 0 && ih + (p->kh - 1) * p->dil_h < p->in_h && iw >= 0 && iw + (p->kw - 1) * p->dil_w < p->in_w) {
            const int8_t *base = in + ((size_t)ih * (size_t)p->in_w + (size_t)iw) * (size_t)p->in_stride;
            for (int32_t t = 0; t < taps; t++) tp[t] = base + off[t];
        } else {
            aads_row_taps(p, in, row + r, tp);
        }
        outrows[r] = out + (size_t)(row + r) * (size_t)p->out_stride;
        rows[r] = row + r;
        if (++ow == p->out_w) {
            ow = 0;
            oh++;
        }
    }
    for (int r = nrows; r < mr; r++) {
        for (int32_t t = 0; t < taps; t++) ptrs[r * taps + t] = ptrs[(nrows - 1) * taps + t];
        outrows[r] = outrows[nrows - 1];
        rows[r] = rows[nrows - 1];
    }
}

/// Every tap of depthwise output pixel (oh, ow), in kernel order: the input pixel at channel c0, or `pad` (a zero-point
/// row) for taps outside the image, so that kernels run one loop for border and interior pixels alike.
static inline void aads_dw_tap_pointers(const aads_dwconv *p, const int8_t *in, int32_t c0, const int8_t *pad,
                                        int32_t oh, int32_t ow, const int8_t **tp) {
    for (int32_t ky = 0; ky < p->kh; ky++) {
        const int32_t ih = oh * p->stride_h - p->pad_t + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->kw; kx++) {
            const int32_t iw = ow * p->stride_w - p->pad_l + kx * p->dil_w;
            const int inside = ih >= 0 && ih < p->in_h && iw >= 0 && iw < p->in_w;
            tp[ky * p->kw + kx] = inside ? in + ((size_t)ih * p->in_w + iw) * p->channels + c0 : pad;
        }
    }
}

/// Output pixels per row tile of the 3x3 and 5x5 depthwise kernels (stride 1 or 2), the input columns a tile spans at
/// most, and the input rows it reads at most (a kernel may compute several output rows at once).
#define AADS_DW_TILE 4
#define AADS_DW_SPAN_MAX ((AADS_DW_TILE - 1) * 2 + 5)
#define AADS_DW_ROWS_MAX 5

/// The input pixels of one row tile of a depthwise kernel. An interior tile reads input row ky, column i at
/// base[ky] + i * channels; a tile at a border reads it at cp[ky][i], which is the padding row where that pixel lies
/// outside the image, so that borders run the same loop as the interior.
typedef struct {
    int border;
    const int8_t *base[AADS_DW_ROWS_MAX];
    const int8_t *cp[AADS_DW_ROWS_MAX][AADS_DW_SPAN_MAX];
} aads_dw_tile_pixels;

/// The input row of each of the K tap rows of output row oh (stride S, no dilation) at channel c0, or NULL outside the
/// image. With stride 1, K may count the rows of several output rows: K + n - 1 for rows oh..oh+n-1.
static inline void aads_dw_tap_rows(const aads_dwconv *p, const int8_t *in, int32_t c0, int32_t oh, int K, int S,
                                    const int8_t **rows) {
    for (int ky = 0; ky < K; ky++) {
        const int32_t ih = oh * S - p->pad_t + ky;
        rows[ky] = ih >= 0 && ih < p->in_h ? in + (size_t)ih * p->in_w * p->channels + c0 : NULL;
    }
}

/// Fills *t for the tile whose `span` input columns start at col0 (negative at the left border), given the K rows of
/// aads_dw_tap_rows.
static inline void aads_dw_tile_fill(const aads_dwconv *p, const int8_t *const *rows, const int8_t *pad, int K,
                                     int32_t col0, int span, aads_dw_tile_pixels *t) {
    t->border = rows[0] == NULL || rows[K - 1] == NULL || col0 < 0 || col0 + span > p->in_w;
    if (!t->border) {
        for (int ky = 0; ky < K; ky++) t->base[ky] = rows[ky] + (size_t)col0 * p->channels;
        return;
    }
    for (int ky = 0; ky < K; ky++) {
        for (int i = 0; i < span; i++) {
            const int32_t col = col0 + i;
            t->cp[ky][i] = rows[ky] != NULL && col >= 0 && col < p->in_w ? rows[ky] + (size_t)col * p->channels : pad;
        }
    }
}

/// Runs TILE(oh, ow, P, t) over output row oh of a KxK kernel with stride S (`rows` from aads_dw_tap_rows): tiles of
/// AADS_DW_TILE outputs (P a constant in each call), the last one moved left to end at the row's end (recomputing a
/// few outputs) rather than narrowed; rows narrower than a tile one output at a time.
#define AADS_DW_ROW_TILES(p, rows, pad, K, S, oh, TILE) AADS_DW_ROWS_TILES(p, rows, pad, K, K, S, oh, TILE)

/// AADS_DW_ROW_TILES for a tile that reads `nrows` input rows (K + n - 1 for n output rows at stride 1).
#define AADS_DW_ROWS_TILES(p, rows, pad, nrows, K, S, oh, TILE)                                                      \
    do {                                                                                                             \
        const int P_ = (p)->out_w < AADS_DW_TILE ? 1 : AADS_DW_TILE;                                                 \
        aads_dw_tile_pixels t_;                                                                                      \
        for (int32_t ow_ = 0; ow_ < (p)->out_w; ow_ += P_) {                                                         \
            if (ow_ + P_ > (p)->out_w) ow_ = (p)->out_w - P_;                                                        \
            aads_dw_tile_fill((p), (rows), (pad), (nrows), ow_ * (S) - (p)->pad_l, (P_ - 1) * (S) + (K), &t_);       \
            if (P_ == AADS_DW_TILE) TILE((oh), ow_, AADS_DW_TILE, &t_);                                              \
            else TILE((oh), ow_, 1, &t_);                                                                            \
        }                                                                                                            \
    } while (0)

/// Depthwise pixels whose every tap lies inside the image: off[t] is tap t's input offset (bytes) from the pixel's
/// first tap, and output columns [*ow_lo, *ow_hi) (within [0, out_w]) are inside horizontally.
static inline void aads_dw_interior(const aads_dwconv *p, int32_t *off, int32_t *ow_lo, int32_t *ow_hi) {
    for (int32_t ky = 0; ky < p->kh; ky++)
        for (int32_t kx = 0; kx < p->kw; kx++)
            off[ky * p->kw + kx] = (ky * p->dil_h * p->in_w + kx * p->dil_w) * p->channels;
    *ow_lo = (p->pad_l + p->stride_w - 1) / p->stride_w;
    if (*ow_lo > p->out_w) *ow_lo = p->out_w; // an image narrower than the padding: no interior column
    const int32_t last = p->in_w - 1 - (p->kw - 1) * p->dil_w + p->pad_l;
    int32_t hi = last < 0 ? 0 : last / p->stride_w + 1;
    if (hi > p->out_w) hi = p->out_w;
    *ow_hi = hi < *ow_lo ? *ow_lo : hi;
}

/// Whether every tap row of depthwise output row `oh` lies inside the image; *ih0 is its first tap's input row.
static inline int aads_dw_row_inside(const aads_dwconv *p, int32_t oh, int32_t *ih0) {
    *ih0 = oh * p->stride_h - p->pad_t;
    return *ih0 >= 0 && *ih0 + (p->kh - 1) * p->dil_h < p->in_h;
}

/// Input pixels (padding columns included) and output pixels of one band of rows that a channel-blocked float
/// depthwise kernel (aads_fdw_blocked_avx512, aads_fdw_blocked_neon) holds, and the output pixels of a row it
/// computes at once.
#define AADS_FDW_PIXELS 1024
#define AADS_FDW_RUN 8

/// Width of such a kernel's transposed input rows: the padded row, and every column its last run of outputs reads.
static inline int32_t aads_fdw_row_width(const aads_fconv *p) {
    const int32_t runs = (p->out_w + AADS_FDW_RUN - 1) / AADS_FDW_RUN * AADS_FDW_RUN;
    const int32_t read = (runs - 1) * p->stride_w + p->kw, padded = p->pad_l + p->in_w;
    return read > padded ? read : padded;
}

/// The input rows [*ih0, *ih1) inside the image that output rows [oh0, oh1) of a depthwise convolution read.
static inline void aads_fdw_band_input(const aads_fconv *p, int32_t oh0, int32_t oh1, int32_t *ih0, int32_t *ih1) {
    const int32_t first = oh0 * p->stride_h - p->pad_t, last = (oh1 - 1) * p->stride_h - p->pad_t + p->kh;
    *ih0 = first < 0 ? 0 : first;
    *ih1 = last < p->in_h ? last : p->in_h;
}

/// The end of the band of output rows from oh0 that a channel-blocked depthwise kernel computes at once: as many rows
/// as its buffers hold, the input rows they read inside the image and their outputs (at least one row when
/// aads_fdw_blocked_fits).
static inline int32_t aads_fdw_band_end(const aads_fconv *p, int32_t oh0) {
    const int32_t in_rows = AADS_FDW_PIXELS / aads_fdw_row_width(p), out_rows = AADS_FDW_PIXELS / p->out_w;
    int32_t oh1 = oh0 + 1, ih0, ih1;
    while (oh1 < p->out_h && oh1 - oh0 < out_rows) {
        aads_fdw_band_input(p, oh0, oh1 + 1, &ih0, &ih1);
        if (ih1 - ih0 > in_rows) break;
        oh1++;
    }
    return oh1;
}

/// ROWS(args..., KW, SW): a channel-blocked depthwise kernel's rows, with the tap columns and the stride along rows as
/// constants for 3x3 and 5x5 kernels.
#define AADS_FDW_CONSTANT_TAPS(kw, sw, ROWS, ...)                                                                     \
    do {                                                                                                             \
        if ((kw) == 3 && (sw) == 1) ROWS(__VA_ARGS__, 3, 1);                                                         \
        else if ((kw) == 3 && (sw) == 2) ROWS(__VA_ARGS__, 3, 2);                                                    \
        else if ((kw) == 5 && (sw) == 1) ROWS(__VA_ARGS__, 5, 1);                                                    \
        else if ((kw) == 5 && (sw) == 2) ROWS(__VA_ARGS__, 5, 2);                                                    \
        else ROWS(__VA_ARGS__, (kw), (sw));                                                                          \
    } while (0)

/// Defines `name`, the row loop of a channel-blocked depthwise kernel whose vectors V hold L channels (LOAD and STORE
/// aligned, MAC(acc, w, x) one fused multiply-add, CLAMP(clamp, v) the clamp): output rows [oh0, oh1) from the
/// transposed input rows xt (input row ih0 first) into yt, AADS_FDW_RUN outputs of a row at a time, each an
/// independent chain of bias, then taps by row (rows outside the image skipped) and column. KW and SW are constants
/// in each call (AADS_FDW_CONSTANT_TAPS).
#define AADS_FDW_ROWS(name, attr, V, L, LOAD, STORE, MAC, CLAMP)                                                      \
    attr static inline __attribute__((always_inline)) void name(                                                     \
        const aads_fconv *p, const float *xt, const float *wt, V bias, aads_fclamp clamp, int32_t oh0, int32_t oh1,  \
        int32_t ih0, int32_t width, float *yt, const int32_t KW, const int32_t SW) {                                 \
        for (int32_t oh = oh0; oh < oh1; oh++) {                                                                     \
            const int32_t top = oh * p->stride_h - p->pad_t;                                                         \
            const int32_t ky0 = top < 0 ? -top : 0, ky1 = p->in_h - top < p->kh ? p->in_h - top : p->kh;             \
            for (int32_t ow0 = 0; ow0 < p->out_w; ow0 += AADS_FDW_RUN) {                                             \
                V acc[AADS_FDW_RUN];                                                                                 \
                for (int j = 0; j < AADS_FDW_RUN; j++) acc[j] = bias;                                                \
                for (int32_t ky = ky0; ky < ky1; ky++) {                                                             \
                    const float *row = xt + ((size_t)(top + ky - ih0) * width + (size_t)ow0 * SW) * (L);             \
                    for (int32_t kx = 0; kx < KW; kx++) {                                                            \
                        const V wv = LOAD(wt + (ky * KW + kx) * (L));                                                \
                        for (int j = 0; j < AADS_FDW_RUN; j++)                                                       \
                            acc[j] = MAC(acc[j], wv, LOAD(row + ((size_t)j * SW + kx) * (L)));                       \
                    }                                                                                                \
                }                                                                                                    \
                float *y = yt + ((size_t)(oh - oh0) * p->out_w + ow0) * (L);                                         \
                const int32_t nj = p->out_w - ow0 < AADS_FDW_RUN ? p->out_w - ow0 : AADS_FDW_RUN;                    \
                for (int j = 0; j < nj; j++) STORE(y + (size_t)j * (L), CLAMP(clamp, acc[j]));                       \
            }                                                                                                        \
        }                                                                                                            \
    }

/// Defines `name`, an aads_fdirect_fn compiled with `attr`: a depthwise convolution of channels [oc_begin, oc_end)
/// (aads_fdw_blocked_fits), L channels per vector V (LOAD, STORE and ZERO as in AADS_FDW_ROWS), in bands of output
/// rows (aads_fdw_band_end). Each block of L channels' input rows under a band becomes one vector per pixel
/// (LOAD_PIXELS(r, x, in_plane, nc, px0, np): pixels px0.. of the nc channel planes from x), the columns outside the
/// image zero; ROWS (an AADS_FDW_ROWS loop) convolves them; and STORE_PIXELS(y, o, out_plane, nc, px0, np) writes the
/// np result vectors from y back to the channel planes from o.
#define AADS_FDW_BLOCKED(name, attr, V, L, LOAD, STORE, ZERO, ROWS, LOAD_PIXELS, STORE_PIXELS)                        \
    attr void name(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end) {           \
        float xt[AADS_FDW_PIXELS * (L)] __attribute__((aligned(64)));                                               \
        float yt[AADS_FDW_PIXELS * (L)] __attribute__((aligned(64)));                                               \
        float wt[64 * (L)] __attribute__((aligned(64)));                                                            \
        float bt[L] __attribute__((aligned(64)));                                                                   \
        const int32_t taps = p->kh * p->kw, width = aads_fdw_row_width(p);                                          \
        const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;                \
        const aads_fclamp clamp = aads_fclamp_of(p);                                                                \
        /* the padding columns, never written below */                                                              \
        for (int32_t h = 0; h < AADS_FDW_PIXELS / width && h < p->in_h; h++) {                                      \
            for (int32_t w = 0; w < width; w++) {                                                                   \
                if (w < p->pad_l || w >= p->pad_l + p->in_w) STORE(xt + ((size_t)h * width + w) * (L), ZERO);       \
            }                                                                                                       \
        }                                                                                                           \
        for (int32_t c0 = oc_begin; c0 < oc_end; c0 += (L)) {                                                       \
            const int32_t nc = oc_end - c0 < (L) ? oc_end - c0 : (L);                                               \
            for (int32_t i = 0; i < (L); i++) {                                                                     \
                for (int32_t t = 0; t < taps; t++)                                                                  \
                    wt[t * (L) + i] = i < nc ? p->weights[(size_t)(c0 + i) * taps + t] : 0.0f;                      \
                bt[i] = i < nc && p->bias ? p->bias[c0 + i] : 0.0f;                                                 \
            }                                                                                                       \
            const V bias = LOAD(bt);                                                                                \
            for (int32_t oh0 = 0, oh1; oh0 < p->out_h; oh0 = oh1) {                                                 \
                oh1 = aads_fdw_band_end(p, oh0);                                                                    \
                /* input rows [ih0, ih1) under the band -> one vector per pixel, row ih - ih0 of xt */              \
                int32_t ih0, ih1;                                                                                   \
                aads_fdw_band_input(p, oh0, oh1, &ih0, &ih1);                                                       \
                const int32_t px1 = ih1 * p->in_w;                                                                  \
                int32_t h = 0, w = 0;                                                                               \
                for (int32_t px0 = ih0 * p->in_w; px0 < px1; px0 += (L)) {                                          \
                    const int32_t np = px1 - px0 < (L) ? px1 - px0 : (L);                                           \
                    V r[L];                                                                                         \
                    LOAD_PIXELS(r, in + (size_t)c0 * in_plane, in_plane, nc, px0, np);                              \
                    for (int32_t j = 0; j < np; j++) {                                                              \
                        STORE(xt + ((size_t)h * width + p->pad_l + w) * (L), r[j]);                                 \
                        if (++w == p->in_w) w = 0, h++;                                                             \
                    }                                                                                               \
                }                                                                                                   \
                AADS_FDW_CONSTANT_TAPS(p->kw, p->stride_w, ROWS, p, xt, wt, bias, clamp, oh0, oh1, ih0, width,    \
                                       yt);                                                                         \
                /* one vector per pixel -> the band's rows of the output planes */                                  \
                const int32_t opx0 = oh0 * p->out_w, opx1 = oh1 * p->out_w;                                         \
                for (int32_t px0 = opx0; px0 < opx1; px0 += (L)) {                                                  \
                    const int32_t np = opx1 - px0 < (L) ? opx1 - px0 : (L);                                         \
                    STORE_PIXELS(yt + (size_t)(px0 - opx0) * (L), out + (size_t)c0 * out_plane, out_plane, nc, px0,   \
                                 np);                                                                               \
                }                                                                                                   \
            }                                                                                                       \
        }                                                                                                           \
    }

/// Whether a channel-blocked depthwise kernel can compute `p`: a depthwise convolution, stride 1 or 2, no dilation, at
/// most 8x8 taps, and rows narrow enough for its buffers.
static inline int aads_fdw_blocked_fits(const aads_fconv *p) {
    return p->group == p->cin && p->cout == p->cin && p->dil_h == 1 && p->dil_w == 1 &&
           (p->stride_h == 1 || p->stride_h == 2) && (p->stride_w == 1 || p->stride_w == 2) && p->kh <= 8 &&
           p->kw <= 8 && p->out_w <= AADS_FDW_PIXELS && (int64_t)p->kh * aads_fdw_row_width(p) <= AADS_FDW_PIXELS;
}

/// Whether a channel-blocked depthwise kernel is the faster one for `p`: on planes of one band, or kernels larger than
/// 3x3 (a 3x3 kernel on a larger plane does about as much work transposing as multiplying).
static inline int aads_fdw_blocked_pays(const aads_fconv *p) {
    return aads_fdw_blocked_fits(p) && (p->kh * p->kw > 9 || aads_fdw_band_end(p, 0) == p->out_h);
}

/// aads_fconv's clamp of a sum, as every float kernel applies it (`on` 0: none).
typedef struct {
    int on;
    float lo, hi;
} aads_fclamp;

static inline aads_fclamp aads_fclamp_of(const aads_fconv *p) {
    return (aads_fclamp){p->clamp != 0, p->clamp_lo, p->clamp_hi};
}

static inline float aads_fclamp_apply(aads_fclamp c, float y) {
    if (!c.on) return y;
    const float m = y > c.lo ? y : c.lo;
    return m < c.hi ? m : c.hi;
}

/// Float rows: out[r * ldo + j] = bias[r] (0 without bias) + sum over kk of w[r * ldw + kk] * x[kk * ldx + j], for
/// r < m and j < n, the terms added in order of kk, then clamped by `clamp`.
typedef void (*aads_frows_fn)(int32_t m, int32_t n, int32_t k, const float *w, int32_t ldw, const float *bias,
                              const float *x, size_t ldx, float *out, size_t ldo, aads_fclamp clamp);
/// Float convolution of output channels [oc_begin, oc_end) tap by tap (any group, stride, padding, dilation).
typedef void (*aads_fdirect_fn)(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end);

/// Copies `n` columns of `k` rows of x (row stride ldx) into `panel`, row stride `nr`, each row padded with zeros.
static inline void aads_frows_pack(const float *x, size_t ldx, int32_t k, int32_t n, int32_t nr, float *panel) {
    for (int32_t kk = 0; kk < k; kk++) {
        memcpy(panel + (size_t)kk * nr, x + (size_t)kk * ldx, (size_t)n * sizeof(float));
        if (n < nr) memset(panel + (size_t)kk * nr + n, 0, (size_t)(nr - n) * sizeof(float));
    }
}

/// Defines `name`, an aads_frows_fn compiled with `attr`, that covers the output in blocks of `NR` columns by `MR`
/// (at most 6) rows, each computed by TILE(mr, n, k, w, ldw, bias, x, ldx, out, ldo, clamp): `mr` (at most MR) is
/// a constant in each call, and so is `n` (at most NR) for the full blocks, so that the tile's loops unroll. With
/// PACK, a block of columns that several blocks of rows read is first copied into a contiguous panel (NR floats per
/// row of x, zero past the block's columns), so that the tiles' loads are aligned and never straddle cache lines
/// whatever the row stride, and computed by PANEL_TILE, which may read all NR columns of a row (a block's last
/// columns then need no masked loads); the sums are the same. Only up to AADS_FROWS_PACK_MAX_N columns: past that (a
/// 112x112 plane) the copy cost more than it saved.
#define AADS_FROWS_PACK_MAX_N 4096
/// Rows of each variant's float pointwise tile (aads_fconv_tile_rows).
#define AADS_FTILE_ROWS_AVX2 6
#define AADS_FTILE_ROWS_AVX512 6
#define AADS_FTILE_ROWS_NEON 4
#define AADS_FTILE_ROWS_PORTABLE 4
#define AADS_FROWS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define AADS_FROWS_TILE(TILE, MR, NR, mr, nj, k, wr, ldw, br, xj, ldxj, o, ldo, clamp)                                 \
    do {                                                                                                             \
        if ((mr) == (MR) && (nj) == (NR)) {                                                                          \
            TILE((MR), (NR), k, wr, ldw, br, xj, ldxj, o, ldo, clamp);                                               \
            break;                                                                                                   \
        }                                                                                                            \
        switch (mr) {                                                                                                \
        case 6: TILE(AADS_FROWS_MIN(6, MR), nj, k, wr, ldw, br, xj, ldxj, o, ldo, clamp); break;                     \
        case 5: TILE(AADS_FROWS_MIN(5, MR), nj, k, wr, ldw, br, xj, ldxj, o, ldo, clamp); break;                     \
        case 4: TILE(AADS_FROWS_MIN(4, MR), nj, k, wr, ldw, br, xj, ldxj, o, ldo, clamp); break;                     \
        case 3: TILE(3, nj, k, wr, ldw, br, xj, ldxj, o, ldo, clamp); break;                                         \
        case 2: TILE(2, nj, k, wr, ldw, br, xj, ldxj, o, ldo, clamp); break;                                         \
        default: TILE(1, nj, k, wr, ldw, br, xj, ldxj, o, ldo, clamp); break;                                        \
        }                                                                                                            \
    } while (0)
#define AADS_FROWS_DRIVER(name, attr, TILE, PANEL_TILE, NR, MR, PACK)                                               \
    attr void name(int32_t m, int32_t n, int32_t k, const float *w, int32_t ldw, const float *bias, const float *x,  \
                   size_t ldx, float *out, size_t ldo, aads_fclamp clamp) {                                         \
        const size_t panel_bytes = ((size_t)k * (NR) * sizeof(float) + 63) / 64 * 64;                               \
        float *panel = (PACK) && m > (MR) && n <= AADS_FROWS_PACK_MAX_N                                             \
                           ? (float *)aligned_alloc(64, panel_bytes)                                                \
                           : NULL;                                                                                  \
        for (int32_t j = 0; j < n; j += (NR)) {                                                                     \
            const int32_t nj = n - j < (NR) ? n - j : (NR);                                                         \
            if (panel) aads_frows_pack(x + j, ldx, k, nj, (NR), panel);                                             \
            for (int32_t r = 0; r < m; r += (MR)) {                                                                 \
                const float *wr = w + (size_t)r * ldw, *br = bias ? bias + r : NULL;                                \
                float *o = out + (size_t)r * ldo + j;                                                               \
                const int32_t mr = m - r < (MR) ? m - r : (MR);                                                     \
                if (panel) {                                                                                        \
                    AADS_FROWS_TILE(PANEL_TILE, MR, NR, mr, nj, k, wr, ldw, br, panel, (size_t)(NR), o, ldo, clamp); \
                } else {                                                                                            \
                    AADS_FROWS_TILE(TILE, MR, NR, mr, nj, k, wr, ldw, br, x + j, ldx, o, ldo, clamp);               \
                }                                                                                                   \
            }                                                                                                       \
        }                                                                                                           \
        free(panel);                                                                                                \
    }

/// The two ways a float kernel adds a term w·x to acc: one fused multiply-add (the optimised variants), or a
/// multiply and an add (the portable variant).
#define AADS_MAC_FUSED(acc, w, x) fmaf((w), (x), (acc))
#define AADS_MAC_PLAIN(acc, w, x) ((acc) + (w) * (x))

/// Defines `name`, an aads_fdirect_fn compiled with `attr`, whose terms are added by MAC(acc, w, x): each output
/// starts at its bias and adds the taps inside the image in order of input channel, tap row and tap column; a
/// channel's plane is clamped once it is complete.
#define AADS_FCONV_DIRECT(name, attr, MAC)                                                                         \
    attr void name(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end) {          \
        const int32_t cin_g = p->cin / p->group, cout_g = p->cout / p->group;                                     \
        const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;             \
        for (int32_t oc = oc_begin; oc < oc_end; oc++) {                                                          \
            const int32_t g = oc / cout_g;                                                                        \
            float *o = out + (size_t)oc * out_plane;                                                              \
            const float b = p->bias ? p->bias[oc] : 0.0f;                                                         \
            for (size_t i = 0; i < out_plane; i++) o[i] = b;                                                      \
            for (int32_t ic = 0; ic < cin_g; ic++) {                                                              \
                const float *x = in + (size_t)(g * cin_g + ic) * in_plane;                                        \
                const float *w = p->weights + ((size_t)oc * cin_g + ic) * p->kh * p->kw;                          \
                for (int32_t ky = 0; ky < p->kh; ky++) {                                                          \
                    for (int32_t kx = 0; kx < p->kw; kx++) {                                                      \
                        const float wv = w[ky * p->kw + kx];                                                      \
                        /* output columns whose input column is inside the image */                               \
                        const int32_t off = kx * p->dil_w - p->pad_l;                                             \
                        int32_t ow0 = 0, ow1 = p->out_w;                                                          \
                        while (ow0 < ow1 && ow0 * p->stride_w + off < 0) ow0++;                                   \
                        while (ow1 > ow0 && (ow1 - 1) * p->stride_w + off >= p->in_w) ow1--;                      \
                        for (int32_t oh = 0; oh < p->out_h; oh++) {                                               \
                            const int32_t ih = oh * p->stride_h - p->pad_t + ky * p->dil_h;                       \
                            if (ih < 0 || ih >= p->in_h) continue;                                                \
                            const float *xr = x + (size_t)ih * p->in_w + off;                                     \
                            float *orow = o + (size_t)oh * p->out_w;                                              \
                            if (p->stride_w == 1) {                                                               \
                                for (int32_t ow = ow0; ow < ow1; ow++) orow[ow] = MAC(orow[ow], wv, xr[ow]);      \
                            } else if (p->stride_w == 2) {                                                        \
                                for (int32_t ow = ow0; ow < ow1; ow++) orow[ow] = MAC(orow[ow], wv, xr[2 * ow]);  \
                            } else {                                                                              \
                                for (int32_t ow = ow0; ow < ow1; ow++)                                            \
                                    orow[ow] = MAC(orow[ow], wv, xr[ow * p->stride_w]);                           \
                            }                                                                                     \
                        }                                                                                         \
                    }                                                                                             \
                }                                                                                                 \
            }                                                                                                     \
            if (p->clamp) {                                                                                       \
                for (size_t i = 0; i < out_plane; i++) o[i] = aads_fclamp_apply(aads_fclamp_of(p), o[i]);        \
            }                                                                                                     \
        }                                                                                                         \
    }

void aads_qconv_portable(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1);
void aads_dwconv_portable(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh0, int32_t oh1);
#if AADS_X86
void aads_qconv_avx2(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1);
void aads_qconv_avx512vnni(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1);
void aads_dwconv_avx2(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh0, int32_t oh1);
void aads_dwconv_avx512(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh0, int32_t oh1);
void aads_frows_avx2(int32_t m, int32_t n, int32_t k, const float *w, int32_t ldw, const float *bias, const float *x,
                     size_t ldx, float *out, size_t ldo, aads_fclamp clamp);
void aads_frows_avx512(int32_t m, int32_t n, int32_t k, const float *w, int32_t ldw, const float *bias, const float *x,
                       size_t ldx, float *out, size_t ldo, aads_fclamp clamp);
void aads_fdirect_avx2(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end);
void aads_fdirect_avx512(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end);
void aads_fconv_rowwise_avx2(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end);
void aads_fconv_rowwise_avx512(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end);
void aads_fdw_blocked_avx512(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end);
#endif
#if AADS_ARM64
void aads_qconv_neon(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1);
void aads_qconv_neon_dot(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1);
void aads_dwconv_neon(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh0, int32_t oh1);
void aads_frows_neon(int32_t m, int32_t n, int32_t k, const float *w, int32_t ldw, const float *bias, const float *x,
                     size_t ldx, float *out, size_t ldo, aads_fclamp clamp);
void aads_fdw_blocked_neon(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end);
void aads_fdirect_neon(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end);
#endif
#endif
