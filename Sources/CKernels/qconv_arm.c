// AArch64 kernels: SDOT (Armv8.2 dot product, selected at run time) and an SMULL/SADALP fallback for plain NEON.
// Both use the signed activations directly (no offset) and remove the zero point through the weight sums.
#include "internal.h"
#if AADS_ARM64
#include "requant_neon.h"

#if defined(__clang__)
#define DOT_TARGET __attribute__((target("dotprod")))
#else
#define DOT_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

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
    int32_t rows[MRN], off[AADS_MAX_TAPS];
    aads_qconv_tap_offsets(p, off);
    for (int32_t row = r0; row < r1; row += MRN) {
        const int32_t nrows = r1 - row < MRN ? r1 - row : MRN;
        aads_tile_rows(p, in, out, off, row, nrows, MRN, ptrs, outrows, rows);
        for (int32_t nb = 0; nb < nblocks; nb++) tile(p, ptrs, taps, kq, nb, outrows, nrows, in, rows);
    }
}

void aads_qconv_neon_dot(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1) {
    qconv_neon_driver(p, in, out, r0, r1, tile_dot);
}

void aads_qconv_neon(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1) {
    qconv_neon_driver(p, in, out, r0, r1, tile_smlal);
}
#endif
