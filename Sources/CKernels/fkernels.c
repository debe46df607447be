#include "cpu.h"
#include "internal.h"

// Pointwise (1x1, stride 1, no padding, one group) convolution as a matrix product: 4 output channels x 256
// pixels per block, so each input row segment is read once per 4 channels.
#define POINTWISE_BODY                                                                                            \
    const size_t plane = (size_t)p->in_h * p->in_w;                                                               \
    float acc[4][256];                                                                                           \
    for (size_t p0 = 0; p0 < plane; p0 += 256) {                                                                 \
        const int32_t np = plane - p0 < 256 ? (int32_t)(plane - p0) : 256;                                       \
        for (int32_t oc = oc_begin; oc < oc_end; oc += 4) {                                                       \
            const int32_t nc = oc_end - oc < 4 ? oc_end - oc : 4;                                                 \
            for (int32_t j = 0; j < nc; j++) {                                                                    \
                const float b = p->bias ? p->bias[oc + j] : 0.0f;                                                 \
                for (int32_t i = 0; i < np; i++) acc[j][i] = b;                                                   \
            }                                                                                                     \
            for (int32_t ic = 0; ic < p->cin; ic++) {                                                             \
                const float *x = in + (size_t)ic * plane + p0;                                                    \
                for (int32_t j = 0; j < nc; j++) {                                                                \
                    const float w = p->weights[(size_t)(oc + j) * p->cin + ic];                                   \
                    float *a = acc[j];                                                                            \
                    for (int32_t i = 0; i < np; i++) a[i] += w * x[i];                                            \
                }                                                                                                 \
            }                                                                                                     \
            for (int32_t j = 0; j < nc; j++) {                                                                    \
                float *o = out + (size_t)(oc + j) * plane + p0;                                                   \
                for (int32_t i = 0; i < np; i++) o[i] = acc[j][i];                                                \
            }                                                                                                     \
        }                                                                                                         \
    }

static void pointwise_portable(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end) {
    POINTWISE_BODY
}

#if AADS_X86
__attribute__((target("avx2,fma"))) static void pointwise_avx2(const aads_fconv *p, const float *in, float *out,
                                                                int32_t oc_begin, int32_t oc_end) {
    POINTWISE_BODY
}
#endif

static void fconv_direct(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end);

void aads_fconv_run(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end) {
    if (p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_t == 0 && p->pad_l == 0 &&
        p->group == 1 && p->out_h == p->in_h && p->out_w == p->in_w) {
#if AADS_X86
        if (aads_x86_has_avx2()) {
            pointwise_avx2(p, in, out, oc_begin, oc_end);
            return;
        }
#endif
        pointwise_portable(p, in, out, oc_begin, oc_end);
        return;
    }
    fconv_direct(p, in, out, oc_begin, oc_end);
}

static void fconv_direct(const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end) {
    const int32_t cin_g = p->cin / p->group, cout_g = p->cout / p->group;
    const size_t in_plane = (size_t)p->in_h * p->in_w, out_plane = (size_t)p->out_h * p->out_w;
    for (int32_t oc = oc_begin; oc < oc_end; oc++) {
        const int32_t g = oc / cout_g;
        float *o = out + (size_t)oc * out_plane;
        const float b = p->bias ? p->bias[oc] : 0.0f;
        for (size_t i = 0; i < out_plane; i++) o[i] = b;
        for (int32_t ic = 0; ic < cin_g; ic++) {
            const float *x = in + (size_t)(g * cin_g + ic) * in_plane;
            const float *w = p->weights + ((size_t)oc * cin_g + ic) * p->kh * p->kw;
            for (int32_t ky = 0; ky < p->kh; ky++) {
                for (int32_t kx = 0; kx < p->kw; kx++) {
                    const float wv = w[ky * p->kw + kx];
                    // output columns whose input column is inside the image
                    const int32_t off = kx * p->dil_w - p->pad_l;
                    int32_t ow0 = 0, ow1 = p->out_w;
                    while (ow0 < ow1 && ow0 * p->stride_w + off < 0) ow0++;
                    while (ow1 > ow0 && (ow1 - 1) * p->stride_w + off >= p->in_w) ow1--;
                    for (int32_t oh = 0; oh < p->out_h; oh++) {
                        const int32_t ih = oh * p->stride_h - p->pad_t + ky * p->dil_h;
                        if (ih < 0 || ih >= p->in_h) continue;
                        const float *xr = x + (size_t)ih * p->in_w + off;
                        float *orow = o + (size_t)oh * p->out_w;
                        if (p->stride_w == 1) {
                            for (int32_t ow = ow0; ow < ow1; ow++) orow[ow] += wv * xr[ow];
                        } else {
                            for (int32_t ow = ow0; ow < ow1; ow++) orow[ow] += wv * xr[ow * p->stride_w];
                        }
                    }
                }
            }
        }
    }
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
