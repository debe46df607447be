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

/// Pixels px0..px0+np-1 of the nc channel planes from x, one register per pixel (zero beyond).
INLINE void fdw_load_pixels(float32x4_t *r, const float *x, size_t plane, int32_t nc, int32_t px0, int32_t np) {
    if (np == 4 && nc == 4) {
        for (int32_t i = 0; i < 4; i++) r[i] = vld1q_f32(x + (size_t)i * plane + px0);
        transpose4_neon(r);
        return;
    }
    float v[4][4] = {{0.0f}};
    for (int32_t j = 0; j < np; j++)
        for (int32_t i = 0; i < nc; i++) v[j][i] = x[(size_t)i * plane + px0 + j];
    for (int32_t j = 0; j < 4; j++) r[j] = vld1q_f32(v[j]);
}

/// The np pixel registers at y back to pixels px0.. of the nc channel planes from o.
INLINE void fdw_store_pixels(const float *y, float *o, size_t plane, int32_t nc, int32_t px0, int32_t np) {
    if (np == 4 && nc == 4) {
        float32x4_t r[4];
        for (int32_t j = 0; j < 4; j++) r[j] = vld1q_f32(y + (size_t)j * 4);
        transpose4_neon(r);
        for (int32_t i = 0; i < 4; i++) vst1q_f32(o + (size_t)i * plane + px0, r[i]);
        return;
    }
    for (int32_t i = 0; i < nc; i++)
        for (int32_t j = 0; j < np; j++) o[(size_t)i * plane + px0 + j] = y[(size_t)j * 4 + i];
}

#define FMLA_NEON(acc, w, x) vfmaq_f32(acc, w, x)
AADS_FDW_ROWS(fdw_rows_neon, , float32x4_t, 4, vld1q_f32, vst1q_f32, FMLA_NEON, clamp_neon)
// Depthwise convolution 4 channels per register, as aads_fdw_blocked_avx512 computes it with 16.
AADS_FDW_BLOCKED(aads_fdw_blocked_neon, , float32x4_t, 4, vld1q_f32, vst1q_f32, vdupq_n_f32(0.0f), fdw_rows_neon,
                 fdw_load_pixels, fdw_store_pixels)
#endif
