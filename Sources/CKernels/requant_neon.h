#ifndef AADS_CKERNELS_REQUANT_NEON_H
#define AADS_CKERNELS_REQUANT_NEON_H
// float32 requantisation epilogues shared by the AArch64 kernels (qconv_arm.c, dwconv_arm.c).
#include "internal.h"
#include <arm_neon.h>

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
#endif
