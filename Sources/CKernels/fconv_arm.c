// Float32 rows (pointwise convolutions and unfolded convolutions) and direct convolutions for AArch64 NEON. A tile
// of 4 output rows by 16 columns stays in registers while the terms are added in order, one fused multiply-add
// (FMLA) each; the last columns of a row go 4 and then 1 at a time, through the same chain of fused operations.
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
#endif
