#include "internal.h"

size_t aads_qconv_packed_size(int32_t cout, int32_t cin, int32_t kh, int32_t kw) {
    const size_t nblocks = ((size_t)cout + 15) / 16, kq = ((size_t)cin + 3) / 4;
    return nblocks * (size_t)kh * (size_t)kw * kq * 64;
}

size_t aads_qconv_pad_bytes(int32_t cin) { return (((size_t)cin + 3) / 4) * 4 + AADS_KERNEL_SLACK; }

void aads_qconv_pack(const int8_t *w, int32_t cout, int32_t cin, int32_t kh, int32_t kw, int8_t *packed, int32_t *wsum) {
    const int32_t taps = kh * kw, kq = (cin + 3) / 4, nblocks = (cout + 15) / 16;
    size_t o = 0;
    for (int32_t nb = 0; nb < nblocks; nb++) {
        for (int32_t t = 0; t < taps; t++) {
            for (int32_t q = 0; q < kq; q++) {
                for (int32_t j = 0; j < 16; j++) {
                    for (int32_t b = 0; b < 4; b++) {
                        const int32_t n = nb * 16 + j, k = q * 4 + b;
                        packed[o++] = (n < cout && k < cin) ? w[((size_t)n * cin + k) * taps + t] : 0;
                    }
                }
            }
        }
    }
    for (int32_t n = 0; n < cout; n++) {
        int32_t s = 0;
        for (size_t i = 0; i < (size_t)cin * taps; i++) s += w[(size_t)n * cin * taps + i];
        wsum[n] = s;
    }
}

void aads_qconv_portable(const aads_qconv *p, const int8_t *in, int8_t *out, int32_t r0, int32_t r1) {
    const int32_t taps = p->kh * p->kw, kq = (p->cin + 3) / 4, nblocks = (p->cout + 15) / 16;
    const int8_t *ptrs[AADS_MAX_TAPS];
    for (int32_t row = r0; row < r1; row++) {
        aads_row_taps(p, in, row, ptrs);
        int8_t *o = out + (size_t)row * (size_t)p->out_stride;
        for (int32_t nb = 0; nb < nblocks; nb++) {
            int32_t acc[16] = {0};
            const int8_t *w = p->weights + (size_t)nb * (size_t)taps * (size_t)kq * 64;
            for (int32_t t = 0; t < taps; t++) {
                const int8_t *a = ptrs[t];
                for (int32_t q = 0; q < kq; q++, w += 64) {
                    const int32_t a0 = a[4 * q], a1 = a[4 * q + 1], a2 = a[4 * q + 2], a3 = a[4 * q + 3];
                    for (int32_t j = 0; j < 16; j++) {
                        acc[j] += a0 * w[4 * j] + a1 * w[4 * j + 1] + a2 * w[4 * j + 2] + a3 * w[4 * j + 3];
                    }
                }
            }
            const int32_t nn = p->cout - nb * 16 < 16 ? p->cout - nb * 16 : 16;
            for (int32_t j = 0; j < nn; j++) {
                const int32_t n = nb * 16 + j;
                o[n] = aads_qconv_out(p, in, row, n, acc[j] - p->in_zp * p->wsum[n]);
            }
        }
    }
}

int8_t aads_requantize(int32_t acc, double mult, double offset, int32_t zp, int32_t out_min, int32_t out_max) {
    return aads_requant(acc, mult, offset, zp, out_min, out_max);
}

// Why AADS_F32_SLACK holds: with P = float(acc) * mult_f32 (exact inside the FMA), P = acc * mult * (1 + e1)(1 + e2)
// and v_f = (P + offset_f32)(1 + e3), offset_f32 = offset (1 + e4), |e| <= 2^-24. If |v_f| >= 1024 the exact value is
// beyond +-1000 as well and both clamp to the same bound. Otherwise |P| < 1024 + 512 and
// |v_f - v| <= 1536 * 2^-23 + 512 * 2^-24 + 1024 * 2^-24 < 2.8e-4 < 2^-11.
int aads_requant_f32_prepare(const double *mult, const double *offset, int32_t n, float *mult_f32, float *offset_f32) {
    for (int32_t i = 0; i < n; i++) {
        if (!(fabs(offset[i]) <= 512.0) || !(fabs(mult[i]) <= 1e30)) return 0;
    }
    for (int32_t i = 0; i < n; i++) {
        mult_f32[i] = (float)mult[i];
        offset_f32[i] = (float)offset[i];
    }
    return 1;
}

int32_t aads_dwconv_cpad(int32_t channels) { return (channels + 15) / 16 * 16; }

void aads_dwconv_pack(const int8_t *w, int32_t channels, int32_t kh, int32_t kw, int16_t *packed) {
    const int32_t taps = kh * kw, cpad = aads_dwconv_cpad(channels);
    for (int32_t t = 0; t < taps; t++) {
        for (int32_t c = 0; c < cpad; c++) {
            packed[(size_t)t * cpad + c] = c < channels ? w[(size_t)c * taps + t] : 0;
        }
    }
}

void aads_dwconv_portable(const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh0, int32_t oh1) {
    const int32_t C = p->channels;
    const int8_t *xs[AADS_MAX_TAPS];
    const int16_t *ws[AADS_MAX_TAPS];
    int32_t acc[64];
    for (int32_t oh = oh0; oh < oh1; oh++) {
        for (int32_t ow = 0; ow < p->out_w; ow++) {
            const int nt = aads_dw_inside_taps(p, in, oh, ow, xs, ws);
            int8_t *o = out + ((size_t)oh * p->out_w + ow) * C;
            for (int32_t c0 = 0; c0 < C; c0 += 64) {
                const int32_t cn = C - c0 < 64 ? C - c0 : 64;
                for (int32_t c = 0; c < cn; c++) acc[c] = 0;
                for (int t = 0; t < nt; t++) {
                    const int8_t *x = xs[t] + c0;
                    const int16_t *w = ws[t] + c0;
                    for (int32_t c = 0; c < cn; c++) acc[c] += ((int32_t)x[c] - p->in_zp) * (int32_t)w[c];
                }
                for (int32_t c = 0; c < cn; c++) {
                    o[c0 + c] = aads_dwconv_out(p, in, oh, ow, c0 + c, acc[c]);
                }
            }
        }
    }
}
