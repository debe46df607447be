// x86-64 kernels: AVX2 (16-bit widening + VPMADDWD, exact for every int8 input) and AVX-512 VNNI (VPDPBUSD on
// activations offset by +128 to unsigned, with the offset removed through the per-channel weight sums).
#include "internal.h"
#if AADS_X86
#include <immintrin.h>

#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

// ---------------------------------------------------------------------------------------------------------------
// AVX-512 VNNI: 4 rows x up to 4 blocks of 16 output channels per tile.

#define MR 4

/// Stores the requantised lanes; returns the lanes within `ref->eps` of a rounding boundary (0 when ref is NULL),
/// which the caller recomputes with the float reference.
AVX512_TARGET static inline __mmask16 store_requant_512(__m512i acc, const double *mult, const double *offset,
                                                         __m512d lo, __m512d hi, __m512i zp, int8_t *dst, __mmask16 mask,
                                                         const aads_qref *ref) {
    const __mmask8 m0 = (__mmask8)(mask & 0xFF), m1 = (__mmask8)(mask >> 8);
    __m512d v0 = _mm512_cvtepi32_pd(_mm512_castsi512_si256(acc));
    __m512d v1 = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(acc, 1));
    v0 = _mm512_fmadd_pd(v0, _mm512_maskz_loadu_pd(m0, mult), _mm512_maskz_loadu_pd(m0, offset));
    v1 = _mm512_fmadd_pd(v1, _mm512_maskz_loadu_pd(m1, mult + 8), _mm512_maskz_loadu_pd(m1, offset + 8));
    v0 = _mm512_min_pd(_mm512_max_pd(v0, lo), hi);
    v1 = _mm512_min_pd(_mm512_max_pd(v1, lo), hi);
    // MXCSR rounding: nearest, ties to even
    __m512i r = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtpd_epi32(v0)), _mm512_cvtpd_epi32(v1), 1);
    _mm512_mask_cvtsepi32_storeu_epi8(dst, mask, _mm512_add_epi32(r, zp));
    if (ref == NULL) return 0;
    const __m512d band = _mm512_set1_pd(0.5 - ref->eps);
    const __m512d d0 = _mm512_abs_pd(_mm512_sub_pd(v0, _mm512_roundscale_pd(v0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    const __m512d d1 = _mm512_abs_pd(_mm512_sub_pd(v1, _mm512_roundscale_pd(v1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    const __mmask16 near = (__mmask16)(_mm512_cmp_pd_mask(d0, band, _CMP_GT_OQ) |
                                       ((unsigned)_mm512_cmp_pd_mask(d1, band, _CMP_GT_OQ) << 8));
    return near & mask;
}

/// The float32 requantisation (see aads_requant_f32_prepare) of a tile's accumulators acc[r][j] (rows r < nrows,
/// blocks of 16 channels j < NB from nb0), the +128 activation offset removed through the weight sums. Outputs
/// within AADS_F32_SLACK (plus the reference band when p->ref is set) of a rounding boundary are redone afterwards,
/// away from the loop, in double precision (and by the float reference). What the loop needs of *p is copied to
/// locals first: the int8 stores may alias any memory, so the compiler would otherwise reload it after every store.
AVX512_TARGET static inline __attribute__((always_inline)) void
tile_512_f32_epilogue(const aads_qconv *p, __m512i acc[MR][4], int32_t nb0, const int NB, int8_t *const *outrows,
                      int32_t nrows, const int8_t *in, const int32_t *rows) {
    const float *mult = p->mult_f32, *offset = p->offset_f32;
    const int32_t *wsum = p->wsum;
    const int32_t cout = p->cout;
    const __m512 lo = _mm512_set1_ps((float)(p->out_min - p->out_zp));
    const __m512 hi = _mm512_set1_ps((float)(p->out_max - p->out_zp));
    const __m512 band = _mm512_set1_ps((float)(0.5 - AADS_F32_SLACK - (p->ref ? p->ref->eps : 0.0)));
    const __m512i zp = _mm512_set1_epi32(p->out_zp);
    const __m512i offs = _mm512_set1_epi32(p->in_zp + 128);
    int8_t *o[MR];
    for (int r = 0; r < MR; r++) o[r] = outrows[r];
    __mmask16 near[MR][4];
    __mmask16 any = 0;
    for (int j = 0; j < NB; j++) {
        const int32_t n0 = (nb0 + j) * 16;
        const int32_t nn = cout - n0 < 16 ? cout - n0 : 16;
        const __mmask16 mask = (__mmask16)((1u << nn) - 1u);
        const __m512i comp = _mm512_mullo_epi32(offs, _mm512_maskz_loadu_epi32(mask, wsum + n0));
        const __m512 m = _mm512_maskz_loadu_ps(mask, mult + n0), of = _mm512_maskz_loadu_ps(mask, offset + n0);
        for (int r = 0; r < MR; r++) {
            if (r >= nrows) break;
            acc[r][j] = _mm512_sub_epi32(acc[r][j], comp);
            __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][j]), m, of);
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            const __m512 rv = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            near[r][j] = _mm512_mask_cmp_ps_mask(mask, _mm512_abs_ps(_mm512_sub_ps(v, rv)), band, _CMP_GT_OQ);
            any |= near[r][j];
            _mm512_mask_cvtsepi32_storeu_epi8(o[r] + n0, mask, _mm512_add_epi32(_mm512_cvtps_epi32(rv), zp));
        }
    }
    if (__builtin_expect(any == 0, 1)) return;
    for (int j = 0; j < NB; j++) {
        const int32_t n0 = (nb0 + j) * 16;
        for (int r = 0; r < nrows; r++) {
            __mmask16 lanes = near[r][j];
            if (!lanes) continue;
            int32_t s32[16];
            _mm512_storeu_si512((void *)s32, acc[r][j]);
            while (lanes) {
                const int l = __builtin_ctz(lanes);
                lanes &= (__mmask16)(lanes - 1);
                outrows[r][n0 + l] = aads_qconv_out(p, in, rows[r], n0 + l, s32[l]);
            }
        }
    }
}

AVX512_TARGET static inline __attribute__((always_inline)) void
tile_512(const aads_qconv *p, const int8_t *const *rowptrs /* [MR][taps] */, int32_t taps, int32_t kq, int32_t nb0,
         const int NB, int8_t *const *outrows, int32_t nrows, const int8_t *in, const int32_t *rows) {
    __m512i acc[MR][4];
    for (int r = 0; r < MR; r++)
        for (int b = 0; b < NB; b++) acc[r][b] = _mm512_setzero_si512();
    const size_t block = (size_t)taps * kq * 64;
    const int8_t *wbase = p->weights + (size_t)nb0 * block;
    const __m512i flip = _mm512_set1_epi32((int32_t)0x80808080u);
    for (int32_t t = 0; t < taps; t++) {
        const int8_t *a0 = rowptrs[0 * taps + t], *a1 = rowptrs[1 * taps + t];
        const int8_t *a2 = rowptrs[2 * taps + t], *a3 = rowptrs[3 * taps + t];
        const int8_t *w = wbase + (size_t)t * kq * 64;
        for (int32_t q = 0; q < kq; q++, w += 64) {
            __m512i b[4];
            for (int j = 0; j < NB; j++) b[j] = _mm512_loadu_si512((const void *)(w + (size_t)j * block));
            const __m512i x0 = _mm512_xor_si512(_mm512_set1_epi32(aads_load32(a0 + 4 * q)), flip);
            const __m512i x1 = _mm512_xor_si512(_mm512_set1_epi32(aads_load32(a1 + 4 * q)), flip);
            const __m512i x2 = _mm512_xor_si512(_mm512_set1_epi32(aads_load32(a2 + 4 * q)), flip);
            const __m512i x3 = _mm512_xor_si512(_mm512_set1_epi32(aads_load32(a3 + 4 * q)), flip);
            for (int j = 0; j < NB; j++) {
                acc[0][j] = _mm512_dpbusd_epi32(acc[0][j], x0, b[j]);
                acc[1][j] = _mm512_dpbusd_epi32(acc[1][j], x1, b[j]);
                acc[2][j] = _mm512_dpbusd_epi32(acc[2][j], x2, b[j]);
                acc[3][j] = _mm512_dpbusd_epi32(acc[3][j], x3, b[j]);
            }
        }
    }
    if (p->mult_f32) {
        tile_512_f32_epilogue(p, acc, nb0, NB, outrows, nrows, in, rows);
        return;
    }
    const __m512d lo = _mm512_set1_pd((double)(p->out_min - p->out_zp));
    const __m512d hi = _mm512_set1_pd((double)(p->out_max - p->out_zp));
    const __m512i zp = _mm512_set1_epi32(p->out_zp);
    const __m512i offs = _mm512_set1_epi32(p->in_zp + 128);
    for (int j = 0; j < NB; j++) {
        const int32_t n0 = (nb0 + j) * 16;
        const int32_t nn = p->cout - n0 < 16 ? p->cout - n0 : 16;
        const __mmask16 mask = (__mmask16)((1u << nn) - 1u);
        const __m512i comp = _mm512_mullo_epi32(offs, _mm512_maskz_loadu_epi32(mask, p->wsum + n0));
        for (int r = 0; r < nrows; r++) {
            __mmask16 near = store_requant_512(_mm512_sub_epi32(acc[r][j], comp), p->mult + n0, p->offset + n0, lo, hi,
                                               zp, outrows[r] + n0, mask, p->ref);
            while (near) {
                const int l = __builtin_ctz(near);
                near &= (__mmask16)(near - 1);
                outrows[r][n0 + l] = aads_qconv_reference_output(p, in, rows[r], n0 + l);
            }
        }
    }
}

AVX512_TARGET void aads_qconv_avx512vnni(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1) {
    const int32_t taps = p->kh * p->kw, kq = (p->cin + 3) / 4, nblocks = (p->cout + 15) / 16;
    const int8_t *ptrs[MR * AADS_MAX_TAPS];
    int8_t *outrows[MR];
    int32_t rows[MR], off[AADS_MAX_TAPS];
    aads_qconv_tap_offsets(p, off);
    for (int32_t row = r0; row < r1; row += MR) {
        const int32_t nrows = r1 - row < MR ? r1 - row : MR;
        aads_tile_rows(p, in, out, off, row, nrows, MR, ptrs, outrows, rows);
        int32_t nb = 0;
        for (; nb + 4 <= nblocks; nb += 4) tile_512(p, ptrs, taps, kq, nb, 4, outrows, nrows, in, rows);
        switch (nblocks - nb) {
        case 3: tile_512(p, ptrs, taps, kq, nb, 3, outrows, nrows, in, rows); break;
        case 2: tile_512(p, ptrs, taps, kq, nb, 2, outrows, nrows, in, rows); break;
        case 1: tile_512(p, ptrs, taps, kq, nb, 1, outrows, nrows, in, rows); break;
        default: break;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2: 2 rows x 16 output channels per tile. Weights and activations are widened to int16 and multiplied with
// VPMADDWD, which cannot saturate for int8 inputs (unlike VPMADDUBSW).

#define MR2 2

/// Requantises 4 accumulators (see aads_requant) into int32 results without the zero point; sets bit i of *near for
/// lanes within `band` of a rounding boundary.
AVX2_TARGET static inline __m128i requant4_avx2(__m128i acc, const double *mult, const double *offset, __m256d lo,
                                                __m256d hi, __m256d band, int shift, unsigned *near) {
    __m256d v = _mm256_fmadd_pd(_mm256_cvtepi32_pd(acc), _mm256_loadu_pd(mult), _mm256_loadu_pd(offset));
    v = _mm256_min_pd(_mm256_max_pd(v, lo), hi);
    const __m256d r = _mm256_round_pd(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256d d = _mm256_andnot_pd(_mm256_set1_pd(-0.0), _mm256_sub_pd(v, r));
    *near |= (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(d, band, _CMP_GT_OQ)) << shift;
    return _mm256_cvtpd_epi32(r);
}

/// Requantises 8 accumulators (4 per half) and stores `nn` <= 8 int8 results; returns the near-half lanes (0 when
/// ref is NULL). `mult` and `offset` must be readable for 8 values.
AVX2_TARGET static inline unsigned store_requant8_avx2(__m256i acc, const double *mult, const double *offset,
                                                       int32_t out_zp, int32_t out_min, int32_t out_max, int8_t *dst,
                                                       int nn, const aads_qref *ref) {
    const __m256d lo = _mm256_set1_pd((double)(out_min - out_zp)), hi = _mm256_set1_pd((double)(out_max - out_zp));
    const __m256d band = _mm256_set1_pd(ref ? 0.5 - ref->eps : 1.0);
    unsigned near = 0;
    const __m128i q0 = requant4_avx2(_mm256_castsi256_si128(acc), mult, offset, lo, hi, band, 0, &near);
    const __m128i q1 = requant4_avx2(_mm256_extracti128_si256(acc, 1), mult + 4, offset + 4, lo, hi, band, 4, &near);
    const __m128i zp = _mm_set1_epi32(out_zp);
    const __m128i w = _mm_packs_epi32(_mm_add_epi32(q0, zp), _mm_add_epi32(q1, zp));
    const __m128i b = _mm_packs_epi16(w, w);
    if (nn == 8) {
        _mm_storel_epi64((__m128i *)dst, b);
    } else {
        int8_t tmp[16];
        _mm_storeu_si128((__m128i *)tmp, b);
        memcpy(dst, tmp, (size_t)nn);
    }
    return near & ((1u << nn) - 1u);
}

/// float32 requantisation (see aads_requant_f32_prepare) of 16 accumulators, s0 holding lanes 0-7 and s1 lanes 8-15.
/// Stores the first `nn` results and returns the lanes within AADS_F32_SLACK (plus the reference band when `ref` is
/// set) of a rounding boundary: the caller replaces their stored value with the double-precision decision.
/// `mult` and `offset` must be readable for 16 values.
AVX2_TARGET static inline unsigned store_requant16_f32(__m256i s0, __m256i s1, const float *mult, const float *offset,
                                                       int32_t out_zp, int32_t out_min, int32_t out_max,
                                                       const aads_qref *ref, int8_t *dst, int nn) {
    const __m256 lo = _mm256_set1_ps((float)(out_min - out_zp)), hi = _mm256_set1_ps((float)(out_max - out_zp));
    const __m256 band = _mm256_set1_ps((float)(0.5 - AADS_F32_SLACK - (ref ? ref->eps : 0.0)));
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_loadu_ps(mult), _mm256_loadu_ps(offset));
    __m256 v1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_loadu_ps(mult + 8), _mm256_loadu_ps(offset + 8));
    v0 = _mm256_min_ps(_mm256_max_ps(v0, lo), hi);
    v1 = _mm256_min_ps(_mm256_max_ps(v1, lo), hi);
    // MXCSR rounding: nearest, ties to even
    const __m256 r0 = _mm256_round_ps(v0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 r1 = _mm256_round_ps(v1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const unsigned near =
        (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v0, r0)), band, _CMP_GT_OQ)) |
        (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v1, r1)), band, _CMP_GT_OQ))
            << 8;
    // Clamped to [out_min - zp, out_max - zp]: int16 holds them, and with the zero point they fit int8.
    __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(_mm256_cvtps_epi32(r0), _mm256_cvtps_epi32(r1)), 0xD8);
    w = _mm256_add_epi16(w, _mm256_set1_epi16((int16_t)out_zp));
    const __m128i b = _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    if (nn == 16) {
        _mm_storeu_si128((__m128i *)dst, b);
        return near;
    }
    int8_t tmp[16];
    _mm_storeu_si128((__m128i *)tmp, b);
    memcpy(dst, tmp, (size_t)nn);
    return near & ((1u << nn) - 1u);
}

/// Outputs of one aads_qconv_avx2 call waiting for the float reference, decided together when the list fills.
#define PENDING_MAX 64
typedef struct {
    aads_qref_pending items[PENDING_MAX];
    int32_t count;
} pending_list;

/// The float32 epilogue of one row's `nn` output channels n0.. (zero point removed: s01 holds channels 0-7, s23
/// 8-15). Values the float32 path cannot decide are decided in double; those near a half step wait in `pending`
/// for the float reference.
AVX2_TARGET static inline __attribute__((always_inline)) void
epilogue_f32_avx2(const aads_qconv *p, __m256i s01, __m256i s23, int32_t n0, int nn, int8_t *o, const int8_t *in,
                  int32_t row, int8_t *out, pending_list *pending) {
    unsigned near = store_requant16_f32(s01, s23, p->mult_f32 + n0, p->offset_f32 + n0, p->out_zp, p->out_min,
                                        p->out_max, p->ref, o + n0, nn);
    if (!near) return;
    int32_t sums[16];
    _mm256_storeu_si256((__m256i *)sums, s01);
    _mm256_storeu_si256((__m256i *)(sums + 8), s23);
    while (near) {
        const int l = __builtin_ctz(near);
        near &= near - 1;
        const int32_t n = n0 + l;
        int is_near;
        o[n] = aads_requant_or_near(sums[l], p->mult[n], p->offset[n], p->out_zp, p->out_min, p->out_max, p->ref,
                                    &is_near);
        if (!is_near) continue;
        if (pending->count == PENDING_MAX) {
            aads_qconv_reference_flush(p, in, out, pending->items, pending->count);
            pending->count = 0;
        }
        pending->items[pending->count++] = (aads_qref_pending){row, n};
    }
}

/// Requantises and stores one row's 16 (or fewer) output channels from its four accumulators
/// acc[g] = [c0 k01, c0 k23, c1 k01, c1 k23 | c2 .., c3 ..] for channels 4g..4g+3.
AVX2_TARGET static inline __attribute__((always_inline)) void epilogue_avx2(const aads_qconv *p, __m256i a0, __m256i a1, __m256i a2, __m256i a3,
                                             int32_t n0, int8_t *o, const int8_t *in, int32_t row,
                                             int8_t *out, pending_list *pending) {
    const __m256i h01 = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a0, a1), 0xD8);
    const __m256i h23 = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a2, a3), 0xD8);
    const int32_t nn = p->cout - n0 < 16 ? p->cout - n0 : 16;
    // wsum and the float32 copies are readable up to the next multiple of 16 channels (see aads_qconv)
    const __m256i zpin = _mm256_set1_epi32(p->in_zp);
    const __m256i s01 =
        _mm256_sub_epi32(h01, _mm256_mullo_epi32(zpin, _mm256_loadu_si256((const __m256i *)(p->wsum + n0))));
    const __m256i s23 =
        _mm256_sub_epi32(h23, _mm256_mullo_epi32(zpin, _mm256_loadu_si256((const __m256i *)(p->wsum + n0 + 8))));
    if (p->mult_f32 != NULL) {
        if (nn == 16) {
            epilogue_f32_avx2(p, s01, s23, n0, 16, o, in, row, out, pending);
        } else {
            epilogue_f32_avx2(p, s01, s23, n0, nn, o, in, row, out, pending);
        }
        return;
    }
    if (nn == 16) {
        unsigned near = store_requant8_avx2(s01, p->mult + n0, p->offset + n0, p->out_zp, p->out_min, p->out_max,
                                            o + n0, 8, p->ref);
        near |= store_requant8_avx2(s23, p->mult + n0 + 8, p->offset + n0 + 8, p->out_zp, p->out_min, p->out_max,
                                    o + n0 + 8, 8, p->ref)
                << 8;
        while (near) {
            const int l = __builtin_ctz(near);
            near &= near - 1;
            o[n0 + l] = aads_qconv_reference_output(p, in, row, n0 + l);
        }
        return;
    }
    int32_t sums[16];
    _mm256_storeu_si256((__m256i *)sums, s01);
    _mm256_storeu_si256((__m256i *)(sums + 8), s23);
    for (int32_t j = 0; j < nn; j++) o[n0 + j] = aads_qconv_out(p, in, row, n0 + j, sums[j]);
}

/// `xw`: the two rows' taps as int16, [row][tap][kq * 4] (widened once per row pair and reused by every block of
/// 16 output channels; a 4-channel group is then broadcast straight from memory).
AVX2_TARGET static inline void tile_avx2(const aads_qconv *p, const int16_t *xw, int32_t taps, int32_t kq, int32_t nb,
                                         int8_t *const *outrows, int32_t nrows, const int8_t *in, const int32_t *rows,
                                         int8_t *out, pending_list *pending) {
    // Accumulators in named variables so that they stay in registers (2 rows x 4 groups of 4 channels).
    __m256i r0g0 = _mm256_setzero_si256(), r0g1 = r0g0, r0g2 = r0g0, r0g3 = r0g0;
    __m256i r1g0 = r0g0, r1g1 = r0g0, r1g2 = r0g0, r1g3 = r0g0;
    const int8_t *w = p->weights + (size_t)nb * taps * kq * 64;
    const int64_t *x0p = (const int64_t *)xw, *x1p = (const int64_t *)(xw + (size_t)taps * kq * 4);
    const int32_t steps = taps * kq;
    for (int32_t i = 0; i < steps; i++, w += 64) {
        // 4 activations as int16, repeated across the register
        const __m256i x0 = _mm256_set1_epi64x(x0p[i]);
        const __m256i x1 = _mm256_set1_epi64x(x1p[i]);
        // 4 output channels x 4 inputs per weight vector
        __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w));
        r0g0 = _mm256_add_epi32(r0g0, _mm256_madd_epi16(b, x0));
        r1g0 = _mm256_add_epi32(r1g0, _mm256_madd_epi16(b, x1));
        b = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16)));
        r0g1 = _mm256_add_epi32(r0g1, _mm256_madd_epi16(b, x0));
        r1g1 = _mm256_add_epi32(r1g1, _mm256_madd_epi16(b, x1));
        b = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 32)));
        r0g2 = _mm256_add_epi32(r0g2, _mm256_madd_epi16(b, x0));
        r1g2 = _mm256_add_epi32(r1g2, _mm256_madd_epi16(b, x1));
        b = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 48)));
        r0g3 = _mm256_add_epi32(r0g3, _mm256_madd_epi16(b, x0));
        r1g3 = _mm256_add_epi32(r1g3, _mm256_madd_epi16(b, x1));
    }
    epilogue_avx2(p, r0g0, r0g1, r0g2, r0g3, nb * 16, outrows[0], in, rows[0], out, pending);
    if (nrows > 1) epilogue_avx2(p, r1g0, r1g1, r1g2, r1g3, nb * 16, outrows[1], in, rows[1], out, pending);
}

/// Widens `kq * 4` int8 values of one tap to int16 (the values past `cin` meet zero weights): 16 at a time, then a
/// last 8 and 4 without a scalar loop (a 3-channel stem's tap is 4 values).
AVX2_TARGET static inline void widen_tap(const int8_t *src, int32_t kq, int16_t *dst) {
    const int32_t n = kq * 4;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(src + i))));
    }
    if (i + 8 <= n) {
        _mm_storeu_si128((__m128i *)(dst + i), _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(src + i))));
        i += 8;
    }
    if (i < n) _mm_storel_epi64((__m128i *)(dst + i), _mm_cvtepi8_epi16(_mm_cvtsi32_si128(aads_load32(src + i))));
}

#define AVX2_WIDE_MAX 16384 // int16 values of both rows' taps kept on the stack

AVX2_TARGET void aads_qconv_avx2(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1) {
    const int32_t taps = p->kh * p->kw, kq = (p->cin + 3) / 4, nblocks = (p->cout + 15) / 16;
    const int8_t *ptrs[MR2 * AADS_MAX_TAPS];
    int8_t *outrows[MR2];
    int32_t rows[MR2], off[AADS_MAX_TAPS];
    aads_qconv_tap_offsets(p, off);
    const size_t per_row = (size_t)taps * (size_t)kq * 4;
    if (per_row * MR2 > AVX2_WIDE_MAX) { // very deep reductions: the portable kernel
        aads_qconv_portable(p, in, out, r0, r1);
        return;
    }
    int16_t xw[AVX2_WIDE_MAX] __attribute__((aligned(32)));
    pending_list pending;
    pending.count = 0;
    for (int32_t row = r0; row < r1; row += MR2) {
        const int32_t nrows = r1 - row < MR2 ? r1 - row : MR2;
        aads_tile_rows(p, in, out, off, row, nrows, MR2, ptrs, outrows, rows);
        for (int r = 0; r < MR2; r++)
            for (int32_t t = 0; t < taps; t++) widen_tap(ptrs[r * taps + t], kq, xw + r * per_row + (size_t)t * kq * 4);
        for (int32_t nb = 0; nb < nblocks; nb++) tile_avx2(p, xw, taps, kq, nb, outrows, nrows, in, rows, out, &pending);
    }
    aads_qconv_reference_flush(p, in, out, pending.items, pending.count);
}

// ---------------------------------------------------------------------------------------------------------------
// Depthwise, AVX2 (AVX-512: dwconv_x86.c).

/// Requantises and stores 16 (or `nn` < 16) channels c.. of output pixel (oh, ow) from their accumulators in channel
/// order (s0: c..c+7, s1: c+8..c+15). mult and offset (and their float32 copies) are padded to a multiple of 16.
AVX2_TARGET static inline __attribute__((always_inline)) void dw_store16(const aads_dwconv *p, const int8_t *in,
                                                                         int32_t oh, int32_t ow, int32_t c, __m256i s0,
                                                                         __m256i s1, int8_t *o, int32_t nn) {
    unsigned near;
    if (p->mult_f32 != NULL) {
        near = store_requant16_f32(s0, s1, p->mult_f32 + c, p->offset_f32 + c, p->out_zp, p->out_min, p->out_max,
                                   p->ref, o + c, nn);
        if (near) {
            int32_t sums[16];
            _mm256_storeu_si256((__m256i *)sums, s0);
            _mm256_storeu_si256((__m256i *)(sums + 8), s1);
            while (near) {
                const int l = __builtin_ctz(near);
                near &= near - 1;
                o[c + l] = aads_dwconv_out(p, in, oh, ow, c + l, sums[l]);
            }
        }
        return;
    }
    near = store_requant8_avx2(s0, p->mult + c, p->offset + c, p->out_zp, p->out_min, p->out_max, o + c,
                               nn < 8 ? nn : 8, p->ref);
    if (nn > 8) {
        near |= store_requant8_avx2(s1, p->mult + c + 8, p->offset + c + 8, p->out_zp, p->out_min, p->out_max,
                                    o + c + 8, nn - 8, p->ref)
                << 8;
    }
    while (near) {
        const int l = __builtin_ctz(near);
        near &= near - 1;
        o[c + l] = aads_dwconv_reference_output(p, in, oh, ow, c + l);
    }
}

/// One output pixel with only the taps that fall inside the image (the border).
AVX2_TARGET static void dw_border_pixel_avx2(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh,
                                             int32_t ow) {
    const int32_t C = p->channels;
    const __m256i zpin = _mm256_set1_epi16((int16_t)p->in_zp);
    const int8_t *xs[AADS_MAX_TAPS];
    const int16_t *ws[AADS_MAX_TAPS];
    const int nt = aads_dw_inside_taps(p, in, oh, ow, xs, ws);
    int8_t *o = out + ((size_t)oh * p->out_w + ow) * C;
    for (int32_t c = 0; c < C; c += 16) {
        // 16 channels: (x - zp) and w as int16; |x - zp| <= 255 and |w| <= 128, so each product fits in int16
        // exactly and is widened to int32 before it is summed.
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
        for (int t = 0; t < nt; t++) {
            const __m256i x = _mm256_sub_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(xs[t] + c))), zpin);
            const __m256i prod = _mm256_mullo_epi16(x, _mm256_loadu_si256((const __m256i *)(ws[t] + c)));
            lo = _mm256_add_epi32(lo, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(prod)));
            hi = _mm256_add_epi32(hi, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(prod, 1)));
        }
        dw_store16(p, in, oh, ow, c, lo, hi, o, C - c < 16 ? C - c : 16);
    }
}

/// The weights of channels c..c+15 interleaved by tap pairs for VPMADDWD (wpair[2q]: channels 0-3 | 8-11 of taps 2q
/// and 2q+1, wpair[2q+1]: channels 4-7 | 12-15; an odd last tap pairs with zeros), and in_zp times each channel's
/// weight sum in channel order (*zw0: c..c+7, *zw1: c+8..c+15).
AVX2_TARGET static inline void dw_weight_pairs(const aads_dwconv *p, int32_t c, __m256i *wpair, __m256i *zw0,
                                               __m256i *zw1) {
    const int32_t cpad = aads_dwconv_cpad(p->channels), taps = p->kh * p->kw;
    __m256i ws0 = _mm256_setzero_si256(), ws1 = ws0;
    for (int32_t q = 0; q < (taps + 1) / 2; q++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(p->weights + (size_t)(2 * q) * cpad + c));
        const __m256i w1 = 2 * q + 1 < taps
                               ? _mm256_loadu_si256((const __m256i *)(p->weights + (size_t)(2 * q + 1) * cpad + c))
                               : _mm256_setzero_si256();
        wpair[2 * q] = _mm256_unpacklo_epi16(w0, w1);
        wpair[2 * q + 1] = _mm256_unpackhi_epi16(w0, w1);
        ws0 = _mm256_add_epi32(ws0, _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(w0)),
                                                     _mm256_cvtepi16_epi32(_mm256_castsi256_si128(w1))));
        ws1 = _mm256_add_epi32(ws1, _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(w0, 1)),
                                                     _mm256_cvtepi16_epi32(_mm256_extracti128_si256(w1, 1))));
    }
    const __m256i zp = _mm256_set1_epi32(p->in_zp);
    *zw0 = _mm256_mullo_epi32(zp, ws0);
    *zw1 = _mm256_mullo_epi32(zp, ws1);
}

#define DW_ROW_TILE 8

AVX2_TARGET void aads_dwconv_avx2(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh0, int32_t oh1) {
    const int32_t C = p->channels, taps = p->kh * p->kw, pairs = (taps + 1) / 2;
    int32_t off[AADS_MAX_TAPS + 1], ow_lo, ow_hi, ih0;
    aads_dw_interior(p, off, &ow_lo, &ow_hi);
    off[taps] = off[0]; // an odd tap count pairs its last tap with zero weights
    // Border pixels: only their taps inside the image.
    for (int32_t oh = oh0; oh < oh1; oh++) {
        const int row_inside = aads_dw_row_inside(p, oh, &ih0);
        for (int32_t ow = 0; ow < (row_inside ? ow_lo : p->out_w); ow++) dw_border_pixel_avx2(p, in, out, oh, ow);
        if (row_inside)
            for (int32_t ow = ow_hi; ow < p->out_w; ow++) dw_border_pixel_avx2(p, in, out, oh, ow);
    }
    // Interior pixels, 16 channels at a time: taps are taken in pairs, x and w interleaved as int16 so that one
    // VPMADDWD forms x_t * w_t + x_t+1 * w_t+1 (at most 2 * 128 * 128); the input zero point is removed once per
    // output through the channel's weight sum. The weight pairs of a block of channels are prepared once for
    // DW_ROW_TILE output rows (a tile of rows keeps their input rows in cache across the blocks).
    __m256i wpair[AADS_MAX_TAPS + 1];
    for (int32_t oh_t = oh0; oh_t < oh1; oh_t += DW_ROW_TILE) {
        for (int32_t c = 0; c < C; c += 16) {
            const int32_t nn = C - c < 16 ? C - c : 16;
            __m256i zw0, zw1;
            dw_weight_pairs(p, c, wpair, &zw0, &zw1);
            for (int32_t oh = oh_t; oh < oh1 && oh < oh_t + DW_ROW_TILE; oh++) {
                if (!aads_dw_row_inside(p, oh, &ih0)) continue;
                for (int32_t ow = ow_lo; ow < ow_hi; ow++) {
                    const int8_t *base = in + ((size_t)ih0 * p->in_w + (size_t)(ow * p->stride_w - p->pad_l)) * C + c;
                    __m256i alo = _mm256_setzero_si256(), ahi = alo;
                    for (int32_t q = 0; q < pairs; q++) {
                        const __m256i x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(base + off[2 * q])));
                        const __m256i x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(base + off[2 * q + 1])));
                        alo = _mm256_add_epi32(alo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), wpair[2 * q]));
                        ahi = _mm256_add_epi32(ahi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), wpair[2 * q + 1]));
                    }
                    // alo holds channels 0-3 | 8-11, ahi 4-7 | 12-15
                    const __m256i s0 = _mm256_sub_epi32(_mm256_permute2x128_si256(alo, ahi, 0x20), zw0);
                    const __m256i s1 = _mm256_sub_epi32(_mm256_permute2x128_si256(alo, ahi, 0x31), zw1);
                    dw_store16(p, in, oh, ow, c, s0, s1, out + ((size_t)oh * p->out_w + ow) * C, nn);
                }
            }
        }
    }
}
#endif
