// Float32 kernels: convolution (NCHW) and matrix products. Every output is a sum in a fixed order (bias first,
// then the terms by input channel and tap). The optimised variants add each term with one fused multiply-add,
// so they are bit-equal to each other and to a scalar fmaf chain; the portable variant multiplies and adds
// separately (a fused multiply-add is a library call on x86-64 CPUs without FMA) and is the fallback.
#include "cpu.h"
#include "internal.h"

// Portable rows: 4 output rows x 256 columns per block, so each input row segment is read once per 4 rows.
static void rows_portable(int32_t m, int32_t n, int32_t k, const float *w, int32_t ldw, const float *bias,
                          const float *x, size_t ldx, float *out, size_t ldo, aads_fclamp clamp) {
    float acc[AADS_FTILE_ROWS_PORTABLE][256];
    for (int32_t p0 = 0; p0 < n; p0 += 256) {
        const int32_t np = n - p0 < 256 ? n - p0 : 256;
        for (int32_t r0 = 0; r0 < m; r0 += AADS_FTILE_ROWS_PORTABLE) {
            const int32_t nr = m - r0 < AADS_FTILE_ROWS_PORTABLE ? m - r0 : AADS_FTILE_ROWS_PORTABLE;
            for (int32_t r = 0; r < nr; r++) {
                const float b = bias ? bias[r0 + r] : 0.0f;
                for (int32_t i = 0; i < np; i++) acc[r][i] = b;
            }
            for (int32_t kk = 0; kk < k; kk++) {
                const float *xr = x + (size_t)kk * ldx + p0;
                for (int32_t r = 0; r < nr; r++) {
                    const float wv = w[(size_t)(r0 + r) * ldw + kk];
                    float *a = acc[r];
                    for (int32_t i = 0; i < np; i++) a[i] += wv * xr[i];
                }
            }
            for (int32_t r = 0; r < nr; r++) {
                float *o = out + (size_t)(r0 + r) * ldo + p0;
                for (int32_t i = 0; i < np; i++) o[i] = aads_fclamp_apply(clamp, acc[r][i]);
            }
        }
    }
}

AADS_FCONV_DIRECT(direct_portable, static, AADS_MAC_PLAIN)

typedef struct {
    aads_frows_fn rows;
    /// Rows of the pointwise tile.
    int32_t tile_rows;
    aads_fdirect_fn direct;
    /// Any group, stride 1 or 2 along rows, at most 8 tap columns, row by row; NULL where there is none.
    aads_fdirect_fn rowwise;
    /// Depthwise convolutions (aads_fdw_blocked_fits) channel-blocked, 16 (AVX-512) or 4 (NEON) channels per
    /// register; NULL where there is none.
    aads_fdirect_fn depthwise;
} fkernels;

static fkernels kernels_for(int variant) {
    if (!aads_variant_available(variant)) variant = AADS_VARIANT_PORTABLE;
    switch (variant) {
#if AADS_X86
    case AADS_VARIANT_AVX2:
        return (fkernels){aads_frows_avx2, AADS_FTILE_ROWS_AVX2, aads_fdirect_avx2, aads_fconv_rowwise_avx2, NULL};
    case AADS_VARIANT_AVX512VNNI:
        return (fkernels){aads_frows_avx512, AADS_FTILE_ROWS_AVX512, aads_fdirect_avx512, aads_fconv_rowwise_avx512,
                          aads_fdw_blocked_avx512};
#endif
#if AADS_ARM64
    case AADS_VARIANT_NEON:
    case AADS_VARIANT_NEON_DOT:
        return (fkernels){aads_frows_neon, AADS_FTILE_ROWS_NEON, aads_fdirect_neon, NULL, aads_fdw_blocked_neon};
#endif
    default: return (fkernels){rows_portable, AADS_FTILE_ROWS_PORTABLE, direct_portable, NULL, NULL};
    }
}

int32_t aads_fconv_tile_rows(int variant) { return kernels_for(variant).tile_rows; }

/// Whether `k` computes `p` channel-blocked (aads_fconv_channel_blocked).
static int channel_blocked(fkernels k, const aads_fconv *p) { return k.depthwise != NULL && aads_fdw_blocked_pays(p); }

int aads_fconv_channel_blocked(int variant, const aads_fconv *p) { return channel_blocked(kernels_for(variant), p); }

/// Input columns per im2col block, and the largest kh*kw*cin unfolded (the block lives on the stack: 64 KB).
#define IM2COL_COLS 64
#define IM2COL_MAX_K 256

/// Output row `oh`, columns [ow0, ow0 + nw), of a one-group convolution as a matrix product over unfolded input:
/// cols[(ic * kh + ky) * kw + kx][j] is the input under tap (ky, kx) of output column ow0 + j, or 0 in the padding.
static void conv_row_im2col(aads_frows_fn rows, const aads_fconv *p, const float *in, float *out, int32_t oc_begin,
                            int32_t oc_end, int32_t oh, int32_t ow0, int32_t nw) {
    float cols[IM2COL_MAX_K * IM2COL_COLS];
    const size_t in_plane = (size_t)p->in_h * p->in_w;
    int32_t row = 0;
    for (int32_t ic = 0; ic < p->cin; ic++) {
        for (int32_t ky = 0; ky < p->kh; ky++) {
            const int32_t ih = oh * p->stride_h - p->pad_t + ky * p->dil_h;
            for (int32_t kx = 0; kx < p->kw; kx++, row++) {
                float *c = cols + (size_t)row * IM2COL_COLS;
                for (int32_t j = 0; j < nw; j++) {
                    const int32_t iw = (ow0 + j) * p->stride_w - p->pad_l + kx * p->dil_w;
                    const int inside = ih >= 0 && ih < p->in_h && iw >= 0 && iw < p->in_w;
                    c[j] = inside ? in[(size_t)ic * in_plane + (size_t)ih * p->in_w + iw] : 0.0f;
                }
            }
        }
    }
    const int32_t k = p->cin * p->kh * p->kw;
    const size_t out_plane = (size_t)p->out_h * p->out_w;
    rows(oc_end - oc_begin, nw, k, p->weights + (size_t)oc_begin * k, k, p->bias ? p->bias + oc_begin : NULL, cols,
         IM2COL_COLS, out + (size_t)oc_begin * out_plane + (size_t)oh * p->out_w + ow0, out_plane, aads_fclamp_of(p));
}

void aads_fconv_run(int variant, const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end) {
    const fkernels k = kernels_for(variant);
    const size_t plane = (size_t)p->in_h * p->in_w;
    if (p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_t == 0 && p->pad_l == 0 &&
        p->group == 1 && p->out_h == p->in_h && p->out_w == p->in_w) {
        k.rows(oc_end - oc_begin, (int32_t)plane, p->cin, p->weights + (size_t)oc_begin * p->cin, p->cin,
               p->bias ? p->bias + oc_begin : NULL, in, plane, out + (size_t)oc_begin * plane, plane,
               aads_fclamp_of(p));
        return;
    }
    // channel-blocked where it pays and at least half a register of channels fills each one
    if (oc_end - oc_begin >= 8 && channel_blocked(k, p)) {
        k.depthwise(p, in, out, oc_begin, oc_end);
        return;
    }
    if (k.rowwise && (p->stride_w == 1 || p->stride_w == 2) && p->kw <= 8) {
        k.rowwise(p, in, out, oc_begin, oc_end);
        return;
    }
    if (p->group == 1 && p->cin * p->kh * p->kw <= IM2COL_MAX_K) {
        for (int32_t oh = 0; oh < p->out_h; oh++) {
            for (int32_t ow0 = 0; ow0 < p->out_w; ow0 += IM2COL_COLS) {
                const int32_t nw = p->out_w - ow0 < IM2COL_COLS ? p->out_w - ow0 : IM2COL_COLS;
                conv_row_im2col(k.rows, p, in, out, oc_begin, oc_end, oh, ow0, nw);
            }
        }
        return;
    }
    k.direct(p, in, out, oc_begin, oc_end);
}

void aads_fgemm(int32_t m, int32_t n, int32_t k, const float *a, int32_t trans_a, const float *b, int32_t trans_b,
                float alpha, float *c, int32_t accumulate, int32_t m_begin, int32_t m_end) {
    (void)m;
    for (int32_t i = m_begin; i < m_end; i++) {
        float *crow = c + (size_t)i * n;
        if (!accumulate) {
            for (int32_t j = 0; j < n; j++) crow[j] = 0.0f;
        }
        if (!trans_b) {
            for (int32_t kk = 0; kk < k; kk++) {
                const float av = alpha * (trans_a ? a[(size_t)kk * m + i] : a[(size_t)i * k + kk]);
                const float *brow = b + (size_t)kk * n;
                for (int32_t j = 0; j < n; j++) crow[j] += av * brow[j];
            }
        } else {
            for (int32_t j = 0; j < n; j++) {
                const float *brow = b + (size_t)j * k;
                float s = 0.0f;
                for (int32_t kk = 0; kk < k; kk++) s += (trans_a ? a[(size_t)kk * m + i] : a[(size_t)i * k + kk]) * brow[kk];
                crow[j] += alpha * s;
            }
        }
    }
}
