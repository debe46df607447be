// AArch64 kernels: SDOT (Armv8.2 dot product, selected at run time) and an SMULL/SADALP fallback for plain NEON.
// Both use the signed activations directly (no offset) and remove the zero point through the weight sums.
#include "internal.h"
#if AADS_ARM64
#include <arm_neon.h>

#if defined(__clang__)
#define DOT_TARGET __attribute__((target("dotprod")))
#else
#define DOT_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

/// float32 requantisation (see aads_requant_f32_prepare) of 4 accumulators into int32 results without the zero
/// point; returns the lanes (bits 0-3) within `band` of a rounding boundary, which the caller decides in double.
static inline unsigned requant4_f32_neon(int32x4_t acc, const float *mult, const float *offset, float32x4_t lo,
                                         float32x4_t hi, float32x4_t band, int32x4_t *q) {
    float32x4_t v = vfmaq_f32(vld1q_f32(offset), vcvtq_f32_s32(acc), vld1q_f32(mult));
    v = vminq_f32(vmaxq_f32(v, lo), hi);
    const float32x4_t r = vrndnq_f32(v); // nearest, ties to even
    *q = vcvtq_s32_f32(r);                // exact: r is an integer
    const uint32x4_t lane_bits = {1, 2, 4, 8};
    return vaddvq_u32(vandq_u32(vcgtq_f32(vabdq_f32(v, r), band), lane_bits));
}

/// Requantises 8 or 16 channels from `groups` accumulators of 4 in float32 and stores them; returns the lanes that
/// must be decided in double (see requant4_f32_neon).
static inline unsigned store_requant_f32_neon(const int32x4_t *acc, int groups, const float *mult, const float *offset,
                                              int32_t out_zp, int32_t out_min, int32_t out_max, const aads_qref *ref,
                                              int8_t *dst) {
    const float32x4_t lo = vdupq_n_f32((float)(out_min - out_zp)), hi = vdupq_n_f32((float)(out_max - out_zp));
    const float32x4_t band = vdupq_n_f32((float)(0.5 - AADS_F32_SLACK - (ref ? ref->eps : 0.0)));
    const int16x8_t zp = vdupq_n_s16((int16_t)out_zp);
    unsigned near = 0;
    int32x4_t q[4];
    for (int g = 0; g < groups; g++)
        near |= requant4_f32_neon(acc[g], mult + 4 * g, offset + 4 * g, lo, hi, band, &q[g]) << (4 * g);
    // Clamped to [out_min - zp, out_max - zp]: int16 holds them, and with the zero point they fit int8.
    const int8x8_t b0 = vqmovn_s16(vaddq_s16(vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1])), zp));
    if (groups == 2) {
        vst1_s8(dst, b0);
        return near;
    }
    const int8x8_t b1 = vqmovn_s16(vaddq_s16(vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3])), zp));
    vst1q_s8(dst, vcombine_s8(b0, b1));
    return near;
}

static inline void epilogue_neon(const aads_qconv *p, int32x4_t acc[4], int32_t n0, int8_t *o, const int8_t *in,
                                 int32_t row) {
    const int32_t nn = p->cout - n0 < 16 ? p->cout - n0 : 16;
    int32_t sums[16];
    if (nn == 16 && p->mult_f32 != NULL) {
        const int32x4_t zpin = vdupq_n_s32(p->in_zp);
        int32x4_t s[4];
        for (int g = 0; g < 4; g++) s[g] = vmlsq_s32(acc[g], zpin, vld1q_s32(p->wsum + n0 + 4 * g));
        unsigned near = store_requant_f32_neon(s, 4, p->mult_f32 + n0, p->offset_f32 + n0, p->out_zp, p->out_min,
                                               p->out_max, p->ref, o + n0);
        if (near) {
            for (int g = 0; g < 4; g++) vst1q_s32(sums + 4 * g, s[g]);
            while (near) {
                const int l = __builtin_ctz(near);
                near &= near - 1;
                o[n0 + l] = aads_qconv_out(p, in, row, n0 + l, sums[l]);
            }
        }
        return;
    }
    for (int g = 0; g < 4; g++) vst1q_s32(sums + 4 * g, acc[g]);
    for (int32_t j = 0; j < nn; j++) {
        const int32_t n = n0 + j;
        o[n] = aads_qconv_out(p, in, row, n, sums[j] - p->in_zp * p->wsum[n]);
    }
}

#define MRN 4

DOT_TARGET static void tile_dot(const aads_qconv *p, const int8_t *const *rowptrs, int32_t taps, int32_t kq, int32_t nb,
                                int8_t *const *outrows, int32_t nrows, const int8_t *in, const int32_t *rows) {
    int32x4_t acc[MRN][4];
    for (int r = 0; r < MRN; r++)
        for (int g = 0; g < 4; g++) acc[r][g] = vdupq_n_s32(0);
    const int8_t *w = p->weights + (size_t)nb * taps * kq * 64;
    for (int32_t t = 0; t < taps; t++) {
        const int8_t *a[MRN];
        for (int r = 0; r < MRN; r++) a[r] = rowptrs[r * taps + t];
        for (int32_t q = 0; q < kq; q++, w += 64) {
            const int8x16_t b0 = vld1q_s8(w), b1 = vld1q_s8(w + 16), b2 = vld1q_s8(w + 32), b3 = vld1q_s8(w + 48);
            for (int r = 0; r < MRN; r++) {
                const int8x16_t x = vreinterpretq_s8_s32(vdupq_n_s32(aads_load32(a[r] + 4 * q)));
                acc[r][0] = vdotq_s32(acc[r][0], b0, x);
                acc[r][1] = vdotq_s32(acc[r][1], b1, x);
                acc[r][2] = vdotq_s32(acc[r][2], b2, x);
                acc[r][3] = vdotq_s32(acc[r][3], b3, x);
            }
        }
    }
    for (int r = 0; r < nrows; r++) epilogue_neon(p, acc[r], nb * 16, outrows[r], in, rows[r]);
}

static void tile_smlal(const aads_qconv *p, const int8_t *const *rowptrs, int32_t taps, int32_t kq, int32_t nb,
                       int8_t *const *outrows, int32_t nrows, const int8_t *in, const int32_t *rows) {
    // per row and group of 4 channels: [c0 k01, c0 k23, c1 k01, c1 k23] and [c2 .., c3 ..]
    int32x4_t acc[MRN][8];
    for (int r = 0; r < MRN; r++)
        for (int g = 0; g < 8; g++) acc[r][g] = vdupq_n_s32(0);
    const int8_t *w = p->weights + (size_t)nb * taps * kq * 64;
    for (int32_t t = 0; t < taps; t++) {
        const int8_t *a[MRN];
        for (int r = 0; r < MRN; r++) a[r] = rowptrs[r * taps + t];
        for (int32_t q = 0; q < kq; q++, w += 64) {
            int8x16_t b[4];
            for (int g = 0; g < 4; g++) b[g] = vld1q_s8(w + 16 * g);
            for (int r = 0; r < MRN; r++) {
                const int8x8_t x = vreinterpret_s8_s32(vdup_n_s32(aads_load32(a[r] + 4 * q)));
                for (int g = 0; g < 4; g++) {
                    acc[r][2 * g] = vpadalq_s16(acc[r][2 * g], vmull_s8(vget_low_s8(b[g]), x));
                    acc[r][2 * g + 1] = vpadalq_s16(acc[r][2 * g + 1], vmull_s8(vget_high_s8(b[g]), x));
                }
            }
        }
    }
    for (int r = 0; r < nrows; r++) {
        int32x4_t sums[4];
        for (int g = 0; g < 4; g++) sums[g] = vpaddq_s32(acc[r][2 * g], acc[r][2 * g + 1]);
        epilogue_neon(p, sums, nb * 16, outrows[r], in, rows[r]);
    }
}

typedef void (*tile_fn)(const aads_qconv *, const int8_t *const *, int32_t, int32_t, int32_t, int8_t *const *, int32_t,
                        const int8_t *, const int32_t *);

static void qconv_neon_driver(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1, tile_fn tile) {
    const int32_t taps = p->kh * p->kw, kq = (p->cin + 3) / 4, nblocks = (p->cout + 15) / 16;
    const int8_t *ptrs[MRN * AADS_MAX_TAPS];
    int8_t *outrows[MRN];
    int32_t rows[MRN];
    for (int32_t row = r0; row < r1; row += MRN) {
        const int32_t nrows = r1 - row < MRN ? r1 - row : MRN;
        for (int r = 0; r < MRN; r++) {
            const int32_t rr = row + (r < nrows ? r : nrows - 1);
            aads_row_taps(p, in, rr, ptrs + r * taps);
            outrows[r] = out + (size_t)rr * (size_t)p->out_stride;
            rows[r] = rr;
        }
        for (int32_t nb = 0; nb < nblocks; nb++) tile(p, ptrs, taps, kq, nb, outrows, nrows, in, rows);
    }
}

void aads_qconv_neon_dot(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1) {
    qconv_neon_driver(p, in, out, r0, r1, tile_dot);
}

void aads_qconv_neon(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1) {
    qconv_neon_driver(p, in, out, r0, r1, tile_smlal);
}

void aads_dwconv_neon(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh0, int32_t oh1) {
    const int32_t C = p->channels;
    const int16x8_t zpin = vdupq_n_s16((int16_t)p->in_zp);
    const int8_t *xs[AADS_MAX_TAPS];
    const int16_t *ws[AADS_MAX_TAPS];
    int32_t res[8];
    for (int32_t oh = oh0; oh < oh1; oh++) {
        for (int32_t ow = 0; ow < p->out_w; ow++) {
            const int nt = aads_dw_inside_taps(p, in, oh, ow, xs, ws);
            int8_t *o = out + ((size_t)oh * p->out_w + ow) * C;
            for (int32_t c = 0; c < C; c += 8) {
                int32x4_t acc0 = vdupq_n_s32(0), acc1 = vdupq_n_s32(0);
                for (int t = 0; t < nt; t++) {
                    // |x - zp| <= 255 and |w| <= 128: the int16 difference is exact; products widen to int32
                    const int16x8_t x = vsubq_s16(vmovl_s8(vld1_s8(xs[t] + c)), zpin);
                    const int16x8_t w = vld1q_s16(ws[t] + c);
                    acc0 = vmlal_s16(acc0, vget_low_s16(x), vget_low_s16(w));
                    acc1 = vmlal_s16(acc1, vget_high_s16(x), vget_high_s16(w));
                }
                const int32_t nn = C - c < 8 ? C - c : 8;
                if (nn == 8 && p->mult_f32 != NULL) {
                    const int32x4_t s[2] = {acc0, acc1};
                    unsigned near = store_requant_f32_neon(s, 2, p->mult_f32 + c, p->offset_f32 + c, p->out_zp,
                                                           p->out_min, p->out_max, p->ref, o + c);
                    if (near) {
                        vst1q_s32(res, acc0);
                        vst1q_s32(res + 4, acc1);
                        while (near) {
                            const int l = __builtin_ctz(near);
                            near &= near - 1;
                            o[c + l] = aads_dwconv_out(p, in, oh, ow, c + l, res[l]);
                        }
                    }
                    continue;
                }
                vst1q_s32(res, acc0);
                vst1q_s32(res + 4, acc1);
                for (int32_t j = 0; j < nn; j++) {
                    o[c + j] = aads_dwconv_out(p, in, oh, ow, c + j, res[j]);
                }
            }
        }
    }
}
#endif
