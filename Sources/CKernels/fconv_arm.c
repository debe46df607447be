// Float32 rows (pointwise convolutions and unfolded convolutions), direct convolutions and channel-blocked depthwise
// convolutions for AArch64 NEON. A tile of 4 output rows by 16 columns stays in registers while the terms are added
// in order, one fused multiply-add (FMLA) each; the last columns of a row go 4 and then 1 at a time, through the same
// chain of fused operations.
#include "internal.h"
#if AADS_ARM64
#include <arm_neon.h>

#define INLINE static inline __attribute__((always_inline))

AADS_FCONV_DIRECT(aads_fdirect_neon, , AADS_MAC_FUSED)

/// aads_fclamp_apply on four lanes, by compare and select (FMAX and FMIN would turn a NaN or a signed zero
/// otherwise).
INLINE float32x4_t clamp_neon(aads_fclamp c, float32x4_t v) {
    if (!c.on) return v;
    const float32x4_t lo = vdupq_n_f32(c.lo), hi = vdupq_n_f32(c.hi);
    const float32x4_t m = vbslq_f32(vcgtq_f32(v, lo), v, lo);
    return vbslq_f32(vcltq_f32(m, hi), m, hi);
}

/// `mr` rows (at most 4) by 4 * `nv` columns (nv at most 4).
INLINE void tile_neon(const int mr, const int nv, int32_t k, const float *w, int32_t ldw, const float *bias,
                      const float *x, size_t ldx, float *out, size_t ldo, aads_fclamp clamp) {
    float32x4_t acc[AADS_FTILE_ROWS_NEON][4];
    for (int r = 0; r < mr; r++) {
        const float32x4_t b = vdupq_n_f32(bias ? bias[r] : 0.0f);
        for (int v = 0; v < nv; v++) acc[r][v] = b;
    }
    for (int32_t kk = 0; kk < k; kk++) {
        const float *xr = x + (size_t)kk * ldx;
        float32x4_t xv[4];
        for (int v = 0; v < nv; v++) xv[v] = vld1q_f32(xr + 4 * v);
        for (int r = 0; r < mr; r++) {
            const float wv = w[(size_t)r * ldw + kk];
            for (int v = 0; v < nv; v++) acc[r][v] = vfmaq_n_f32(acc[r][v], xv[v], wv);
        }
    }
    for (int r = 0; r < mr; r++) {
        for (int v = 0; v < nv; v++) vst1q_f32(out + (size_t)r * ldo + 4 * v, clamp_neon(clamp, acc[r][v]));
    }
}

/// One column of `mr` rows.
INLINE void column(int mr, int32_t k, const float *w, int32_t ldw, const float *bias, const float *x, size_t ldx,
                   float *out, size_t ldo, aads_fclamp clamp) {
    for (int r = 0; r < mr; r++) {
        float acc = bias ? bias[r] : 0.0f;
        for (int32_t kk = 0; kk < k; kk++) acc = fmaf(w[(size_t)r * ldw + kk], x[(size_t)kk * ldx], acc);
        out[(size_t)r * ldo] = aads_fclamp_apply(clamp, acc);
    }
}

INLINE void rows_of(const int mr, int32_t n, int32_t k, const float *w, int32_t ldw, const float *bias,
                    const float *x, size_t ldx, float *out, size_t ldo, aads_fclamp clamp) {
    int32_t j = 0;
    for (; j + 16 <= n; j += 16) tile_neon(mr, 4, k, w, ldw, bias, x + j, ldx, out + j, ldo, clamp);
    for (; j + 4 <= n; j += 4) tile_neon(mr, 1, k, w, ldw, bias, x + j, ldx, out + j, ldo, clamp);
    for (; j < n; j++) column(mr, k, w, ldw, bias, x + j, ldx, out + j, ldo, clamp);
}

// Columns in blocks of 64, so that a block's input rows stay in cache while every output row passes over them.
AADS_FROWS_DRIVER(aads_frows_neon, , rows_of, rows_of, 64, AADS_FTILE_ROWS_NEON, 0)

/// Transposes the 4x4 floats in r: row i, lane j becomes row j, lane i.
INLINE void transpose4_neon(float32x4_t *r) {
    const float32x4x2_t a = vtrnq_f32(r[0], r[1]), b = vtrnq_f32(r[2], r[3]);
    r[0] = vcombine_f32(vget_low_f32(a.val[0]), vget_low_f32(b.val[0]));
    r[1] = vcombine_f32(vget_low_f32(a.val[1]), vget_low_f32(b.val[1]));
    r[2] = vcombine_f32(vget_high_f32(a.val[0]), vget_high_f32(b.val[0]));
    r[3] = vcombine_f32(vget_high_f32(a.val[1]), vget_high_f32(b.val[1]));
}

#define FMLA_NEON(acc, w, x) vfmaq_f32(acc, w, x)
AADS_FDW_ROWS(fdw_rows_neon, , float32x4_t, 4, vld1q_f32, vst1q_f32, FMLA_NEON, clamp_neon)

/// Depthwise convolution of channels [oc_begin, oc_end) (aads_fdw_blocked_fits) 4 channels per register, as
/// aads_fdw_blocked_avx512 computes it with 16: in bands of output rows, each block of channels' input rows transposed
/// to one register per pixel (the columns outside the image zero), convolved, and transposed back.
void aads_fdw_blocked_neon(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end) {
    float xt[AADS_FDW_PIXELS * 4] __attribute__((aligned(16)));
    float yt[AADS_FDW_PIXELS * 4] __attribute__((aligned(16)));
    float wt[64 * 4] __attribute__((aligned(16)));
    const int32_t kh = p->kh, kw = p->kw, taps = kh * kw, sw = p->stride_w;
    const int32_t in_plane = p->in_h * p->in_w, out_plane = p->out_h * p->out_w, width = aads_fdw_row_width(p);
    const aads_fclamp clamp = aads_fclamp_of(p);
    // the padding columns, never written below
    for (int32_t h = 0; h < AADS_FDW_PIXELS / width && h < p->in_h; h++) {
        for (int32_t w = 0; w < width; w++) {
            if (w < p->pad_l || w >= p->pad_l + p->in_w) vst1q_f32(xt + ((size_t)h * width + w) * 4, vdupq_n_f32(0.0f));
        }
    }
    for (int32_t c0 = oc_begin; c0 < oc_end; c0 += 4) {
        const int32_t nc = oc_end - c0 < 4 ? oc_end - c0 : 4;
        float b4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int32_t i = 0; i < nc; i++) {
            for (int32_t t = 0; t < taps; t++) wt[t * 4 + i] = p->weights[(size_t)(c0 + i) * taps + t];
            if (p->bias) b4[i] = p->bias[c0 + i];
        }
        for (int32_t i = nc; i < 4; i++) {
            for (int32_t t = 0; t < taps; t++) wt[t * 4 + i] = 0.0f;
        }
        const float32x4_t bias = vld1q_f32(b4);
        for (int32_t oh0 = 0, oh1; oh0 < p->out_h; oh0 = oh1) {
            oh1 = aads_fdw_band_end(p, oh0);
            // input rows [ih0, ih1) under the band -> one register per pixel, row ih - ih0 of xt
            int32_t ih0, ih1;
            aads_fdw_band_input(p, oh0, oh1, &ih0, &ih1);
            const int32_t px1 = ih1 * p->in_w;
            int32_t h = 0, w = 0;
            for (int32_t px0 = ih0 * p->in_w; px0 < px1; px0 += 4) {
                const int32_t np = px1 - px0 < 4 ? px1 - px0 : 4;
                float32x4_t r[4];
                if (np == 4 && nc == 4) {
                    for (int32_t i = 0; i < 4; i++) r[i] = vld1q_f32(in + (size_t)(c0 + i) * in_plane + px0);
                    transpose4_neon(r);
                } else {
                    float v[4][4] = {{0.0f}};
                    for (int32_t j = 0; j < np; j++)
                        for (int32_t i = 0; i < nc; i++) v[j][i] = in[(size_t)(c0 + i) * in_plane + px0 + j];
                    for (int32_t j = 0; j < 4; j++) r[j] = vld1q_f32(v[j]);
                }
                for (int32_t j = 0; j < np; j++) {
                    vst1q_f32(xt + ((size_t)h * width + p->pad_l + w) * 4, r[j]);
                    if (++w == p->in_w) w = 0, h++;
                }
            }
            AADS_FDW_CONSTANT_TAPS(kw, sw, fdw_rows_neon, p, xt, wt, bias, clamp, oh0, oh1, ih0, width, yt);
            // one register per pixel -> the band's rows of the output planes
            const int32_t opx0 = oh0 * p->out_w, opx1 = oh1 * p->out_w;
            for (int32_t px0 = opx0; px0 < opx1; px0 += 4) {
                const int32_t np = opx1 - px0 < 4 ? opx1 - px0 : 4;
                const float *y = yt + (size_t)(px0 - opx0) * 4;
                if (np == 4 && nc == 4) {
                    float32x4_t r[4];
                    for (int32_t j = 0; j < 4; j++) r[j] = vld1q_f32(y + (size_t)j * 4);
                    transpose4_neon(r);
                    for (int32_t i = 0; i < 4; i++) vst1q_f32(out + (size_t)(c0 + i) * out_plane + px0, r[i]);
                } else {
                    for (int32_t i = 0; i < nc; i++) {
                        for (int32_t j = 0; j < np; j++)
                            out[(size_t)(c0 + i) * out_plane + px0 + j] = y[(size_t)j * 4 + i];
                    }
                }
            }
        }
    }
}
#endif
