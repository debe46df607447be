// Stand-alone test of the C kernels for cross-compiled targets (run under qemu-aarch64-static by
// tools/test-neon; natively on x86-64 the same file checks the AVX2 and AVX-512 variants): every available variant
// must equal a plain reference convolution bit for bit over randomized shapes, for general and depthwise convolutions.
#include "CKernels.h"
#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint64_t next(void) {
    rng_state += 0x9E3779B97F4A7C15ull;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int rnd(int lo, int hi) { return lo + (int)(next() % (uint64_t)(hi - lo + 1)); }
static double rndd(double lo, double hi) { return lo + (hi - lo) * (double)(next() >> 11) / 9007199254740992.0; }

typedef struct {
    int n, c, h, w, m, group, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oh, ow;
    int32_t in_zp, out_zp, out_min, out_max;
} conv_case;

static void reference(const conv_case *k, const int8_t *x, const int8_t *wt, const double *mult, const double *offset,
                      int8_t *y) {
    const int cg = k->c / k->group, mg = k->m / k->group;
    for (int b = 0; b < k->n; b++)
        for (int oh = 0; oh < k->oh; oh++)
            for (int ow = 0; ow < k->ow; ow++)
                for (int oc = 0; oc < k->m; oc++) {
                    const int g = oc / mg;
                    int32_t acc = 0;
                    for (int ky = 0; ky < k->kh; ky++) {
                        const int ih = oh * k->sh - k->pt + ky * k->dh;
                        if (ih < 0 || ih >= k->h) continue;
                        for (int kx = 0; kx < k->kw; kx++) {
                            const int iw = ow * k->sw - k->pl + kx * k->dw;
                            if (iw < 0 || iw >= k->w) continue;
                            for (int ic = 0; ic < cg; ic++) {
                                const int32_t xv = x[((b * k->h + ih) * k->w + iw) * k->c + g * cg + ic] - k->in_zp;
                                acc += xv * wt[((oc * cg + ic) * k->kh + ky) * k->kw + kx];
                            }
                        }
                    }
                    y[((b * k->oh + oh) * k->ow + ow) * k->m + oc] =
                        aads_requantize(acc, mult[oc], offset[oc], k->out_zp, k->out_min, k->out_max);
                }
}

/// depthwise: 0 general convolution, 1 depthwise of any shape, 2 depthwise 3x3 or 5x5 with stride 1 or 2 and no
/// dilation (the shapes with dedicated kernels), over more channels and larger images.
static conv_case random_case(int depthwise) {
    conv_case k;
    memset(&k, 0, sizeof k);
    k.n = rnd(1, 2);
    k.kh = rnd(1, 7);
    k.kw = rnd(1, 7);
    k.dh = k.dw = rnd(0, 4) == 0 ? 2 : 1;
    k.sh = rnd(1, 3);
    k.sw = rnd(1, 3);
    if (depthwise == 2) {
        k.kh = k.kw = rnd(0, 1) ? 3 : 5;
        k.sh = k.sw = rnd(1, 2);
        k.dh = k.dw = 1;
    }
    k.pt = rnd(0, k.kh - 1);
    k.pl = rnd(0, k.kw - 1);
    k.pb = rnd(0, k.kh - 1);
    k.pr = rnd(0, k.kw - 1);
    const int ekh = (k.kh - 1) * k.dh + 1, ekw = (k.kw - 1) * k.dw + 1;
    k.h = rnd(1, depthwise == 2 ? 24 : 11);
    k.w = rnd(1, depthwise == 2 ? 24 : 11);
    if (k.h < ekh - k.pt - k.pb) k.h = ekh - k.pt - k.pb;
    if (k.w < ekw - k.pl - k.pr) k.w = ekw - k.pl - k.pr;
    k.oh = (k.h + k.pt + k.pb - ekh) / k.sh + 1;
    k.ow = (k.w + k.pl + k.pr - ekw) / k.sw + 1;
    static const int dwc[] = {1, 3, 8, 16, 17, 31, 32, 33, 48, 70};
    static const int cin[] = {1, 2, 3, 4, 5, 7, 8, 16, 19, 33};
    static const int cout[] = {1, 3, 8, 15, 16, 17, 32, 40, 64, 65};
    static const int dwc_fast[] = {1, 5, 16, 17, 32, 47, 96, 144, 272, 330, 1040};
    if (depthwise == 2) {
        k.c = k.m = k.group = dwc_fast[rnd(0, 10)];
    } else if (depthwise) {
        k.c = k.m = k.group = dwc[rnd(0, 9)];
    } else {
        static const int groups[] = {1, 1, 1, 2, 3};
        k.group = groups[rnd(0, 4)];
        k.c = k.group * cin[rnd(0, 9)];
        k.m = k.group * cout[rnd(0, 9)];
    }
    k.in_zp = rnd(-128, 127);
    k.out_zp = rnd(-128, 127);
    k.out_min = -128;
    k.out_max = 127;
    if (rnd(0, 2) == 0) {
        k.out_min = rnd(-128, 0);
        k.out_max = rnd(k.out_min, 127);
    }
    return k;
}

/// One randomized case. float_ref: also decide near-half outputs by the float reference (with a band of a whole
/// step, so every output takes that path); then every variant must equal the portable variant.
static int run_case(int index, int depthwise, int float_ref, const int *variants, int nvariants) {
    conv_case k = random_case(depthwise);
    const int cg = k.c / k.group, mg = k.m / k.group, taps = k.kh * k.kw;
    const size_t nx = (size_t)k.n * k.h * k.w * k.c, nw = (size_t)k.m * cg * taps, ny = (size_t)k.n * k.oh * k.ow * k.m;
    int8_t *x = calloc(nx + AADS_KERNEL_SLACK, 1), *wt = calloc(nw + 1, 1);
    int8_t *ref = calloc(ny + 1, 1), *got = calloc(ny + AADS_KERNEL_SLACK, 1);
    double *mult = calloc((size_t)k.m + 64, sizeof(double)), *offset = calloc((size_t)k.m + 64, sizeof(double));
    for (size_t i = 0; i < nx; i++) x[i] = (int8_t)next();
    for (size_t i = 0; i < nw; i++) wt[i] = (int8_t)next();
    wt[0] = -128;
    x[nx - 1] = -128;
    for (int i = 0; i < k.m; i++) {
        mult[i] = rndd(0.2, 3) / ((double)cg * taps * 64);
        offset[i] = (double)(int)rndd(-40, 40) + (rnd(0, 1) ? 0.5 : 0);
    }
    if (k.m > 1) mult[1] = 0.5;
    // Every other case: offsets a hair off x.5, ties once rounded to float32, which the kernels that requantise in
    // float32 must decide in double (channel 1's even accumulators land on them).
    if (index % 2 == 0) {
        for (int i = 0; i < k.m; i++) offset[i] += rnd(0, 1) ? 1e-9 : -1e-9;
    }
    reference(&k, x, wt, mult, offset, ref);
    // Float32 copies of the requantisation for the kernels that use them, in two cases of three.
    const int cpad_all = aads_dwconv_cpad(k.m);
    float *mf = calloc((size_t)cpad_all + 16, sizeof(float)), *of = calloc((size_t)cpad_all + 16, sizeof(float));
    const int use_f32 = index % 3 != 2 && aads_requant_f32_prepare(mult, offset, cpad_all, mf, of);
    float *wscales = calloc((size_t)k.m + 16, sizeof(float)), *fbias = calloc((size_t)k.m + 16, sizeof(float));
    for (int i = 0; i < k.m; i++) {
        wscales[i] = (float)mult[i];
        fbias[i] = (float)offset[i];
    }
    aads_qref qrefs[64];
    for (int g = 0; g < k.group && g < 64; g++) { // a depthwise convolution uses the first only
        aads_qref q = {mg == 1 ? AADS_SUM_M1 : AADS_SUM_SGEMM, 16, 0, mg, 1.0f, 1.0f, wscales + g * mg, fbias + g * mg, 0.5};
        qrefs[g] = q;
    }
    int failures = 0;
    // With the float reference, the portable variant (the first) gives the expected output.
    for (int vi = 0; vi < nvariants; vi++) {
        const int v = variants[vi];
        memset(got, 0x55, ny);
        if (depthwise) {
            const int cpad = aads_dwconv_cpad(k.c);
            int16_t *packed = calloc((size_t)cpad * taps, sizeof(int16_t));
            double *pm = calloc((size_t)cpad, sizeof(double)), *po = calloc((size_t)cpad, sizeof(double));
            memcpy(pm, mult, sizeof(double) * k.m);
            memcpy(po, offset, sizeof(double) * k.m);
            aads_dwconv_pack(wt, k.c, k.kh, k.kw, packed);
            aads_dwconv p = {k.h, k.w, k.c, k.oh, k.ow, k.kh, k.kw, k.sh, k.sw, k.pt, k.pl, k.dh, k.dw,
                             k.in_zp, k.out_zp, k.out_min, k.out_max, packed, pm, po, float_ref ? qrefs : NULL,
                             use_f32 ? mf : NULL, use_f32 ? of : NULL};
            for (int b = 0; b < k.n; b++)
                aads_dwconv_run(v, &p, x + (size_t)b * k.h * k.w * k.c, got + (size_t)b * k.oh * k.ow * k.m, 0, k.oh);
            free(packed);
            free(pm);
            free(po);
        } else {
            const size_t per = aads_qconv_packed_size(mg, cg, k.kh, k.kw);
            int8_t *packed = calloc(per * k.group, 1);
            int32_t *wsum = calloc((size_t)k.m + 16, sizeof(int32_t)); // readable to the next 16 channels
            const size_t padn = aads_qconv_pad_bytes(cg);
            int8_t *pad = malloc(padn);
            memset(pad, k.in_zp, padn);
            for (int g = 0; g < k.group; g++)
                aads_qconv_pack(wt + (size_t)g * mg * cg * taps, mg, cg, k.kh, k.kw, packed + g * per, wsum + g * mg);
            for (int g = 0; g < k.group; g++) {
                aads_qconv p = {k.h, k.w, k.c, k.oh, k.ow, k.m, k.kh, k.kw, k.sh, k.sw, k.pt, k.pl, k.dh, k.dw,
                                cg, mg, k.in_zp, k.out_zp, k.out_min, k.out_max, packed + g * per, wsum + g * mg,
                                mult + g * mg, offset + g * mg, pad, float_ref ? qrefs + g : NULL,
                                use_f32 ? mf + g * mg : NULL, use_f32 ? of + g * mg : NULL};
                for (int b = 0; b < k.n; b++)
                    aads_qconv_run(v, &p, x + (size_t)b * k.h * k.w * k.c + g * cg,
                                   got + (size_t)b * k.oh * k.ow * k.m + g * mg, 0, k.oh * k.ow);
            }
            free(packed);
            free(wsum);
            free(pad);
        }
        if (float_ref && vi == 0) {
            memcpy(ref, got, ny);
            continue;
        }
        size_t bad = 0;
        for (size_t i = 0; i < ny; i++) bad += got[i] != ref[i];
        if (bad) {
            printf("FAIL case %d (%s%s) variant %s: %zu of %zu differ (c%d m%d g%d k%dx%d s%d,%d)\n", index,
                   depthwise ? "depthwise" : "conv", float_ref ? ", float reference" : "", aads_variant_name(v), bad,
                   ny, k.c, k.m, k.group, k.kh, k.kw, k.sh, k.sw);
            failures++;
        }
    }
    free(wscales);
    free(fbias);
    free(mf);
    free(of);
    free(x);
    free(wt);
    free(ref);
    free(got);
    free(mult);
    free(offset);
    return failures;
}

/// One float convolution case: every variant but the portable one must equal a chain of fmaf (bias, then the taps
/// inside the image by input channel, tap row and tap column), clamped when the case has a clamp, bit for bit; any
/// range of output channels computes exactly those. A clamped case may hold a NaN input, whose sums must come out
/// as the clamp's low bound. Shapes as in Tests/AADSInferenceTests/FloatKernelTests.swift.
static int run_float_case(int index, const int *variants, int nvariants) {
    aads_fconv p;
    do { // a shape with at least one output pixel
        memset(&p, 0, sizeof p);
        p.group = 1, p.kh = 1, p.kw = 1, p.stride_h = 1, p.dil_h = 1;
        switch (index % 4) {
        case 0: p.cin = rnd(1, 70), p.cout = rnd(1, 13), p.in_h = rnd(1, 12), p.in_w = rnd(1, 40); break;
        case 1:
            p.cin = rnd(1, 8), p.cout = rnd(1, 11), p.kh = rnd(0, 1) ? 3 : 5, p.kw = rnd(0, 1) ? 1 : 3;
            p.stride_h = rnd(1, 2), p.pad_t = rnd(0, 2), p.dil_h = rnd(1, 2), p.in_h = rnd(5, 20), p.in_w = rnd(5, 90);
            // now and then a stem's plane, taller than one band of a kernel's row buffer
            if (rnd(0, 3) == 0) p.cin = 3, p.dil_h = 1, p.in_h = rnd(100, 240), p.in_w = rnd(100, 230);
            break;
        case 2:
            // one in three over more channels than a register holds (channel-blocked kernels)
            p.cin = p.cout = p.group = rnd(0, 2) ? rnd(1, 9) : rnd(10, 40);
            p.kh = p.kw = rnd(0, 1) ? 3 : 5, p.stride_h = rnd(1, 2);
            p.pad_t = p.kh / 2, p.dil_h = rnd(0, 3) ? 1 : 2, p.in_h = rnd(1, 9), p.in_w = rnd(1, 150);
            // now and then a plane taller than one band
            if (rnd(0, 3) == 0) p.cin = p.cout = p.group = 2, p.in_h = rnd(140, 300), p.in_w = rnd(100, 150);
            // or, one in three, many channels over a plane that a channel-blocked kernel takes in bands of rows
            if (rnd(0, 2) == 0) p.cin = p.cout = p.group = rnd(16, 48), p.dil_h = 1, p.in_h = rnd(20, 70), p.in_w = rnd(20, 70);
            break;
        default:
            p.cin = rnd(29, 40), p.cout = rnd(1, 6), p.kh = p.kw = 3, p.pad_t = 1, p.stride_h = rnd(1, 2);
            p.in_h = rnd(3, 9), p.in_w = rnd(3, 12);
            break;
        }
        p.stride_w = p.stride_h, p.pad_l = p.pad_t, p.dil_w = p.dil_h;
        p.out_h = (p.in_h + 2 * p.pad_t - p.dil_h * (p.kh - 1) - 1) / p.stride_h + 1;
        p.out_w = (p.in_w + 2 * p.pad_l - p.dil_w * (p.kw - 1) - 1) / p.stride_w + 1;
    } while (p.out_h < 1 || p.out_w < 1);
    const int cin_g = p.cin / p.group, cout_g = p.cout / p.group, taps = p.kh * p.kw;
    const size_t nx = (size_t)p.cin * p.in_h * p.in_w, nw = (size_t)p.cout * cin_g * taps;
    const size_t plane = (size_t)p.out_h * p.out_w, ny = (size_t)p.cout * plane;
    float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float)), *b = malloc((size_t)p.cout * sizeof(float));
    float *ref = malloc(ny * sizeof(float)), *got = malloc(ny * sizeof(float));
    for (size_t i = 0; i < nx; i++) x[i] = (float)rndd(-2, 2);
    for (size_t i = 0; i < nw; i++) w[i] = (float)rndd(-1, 1);
    for (int i = 0; i < p.cout; i++) b[i] = (float)rndd(-1, 1);
    p.weights = w, p.bias = rnd(0, 3) ? b : NULL;
    if (rnd(0, 2) == 0) {
        static const float bounds[3][2] = {{0.0f, 6.0f}, {-0.5f, 0.4f}, {0.0f, INFINITY}};
        const int which = rnd(0, 2);
        p.clamp = 1, p.clamp_lo = bounds[which][0], p.clamp_hi = bounds[which][1];
        if (rnd(0, 1)) x[rnd(0, (int)nx - 1)] = NAN;
    }
    for (int oc = 0; oc < p.cout; oc++) {
        for (int oh = 0; oh < p.out_h; oh++) {
            for (int ow = 0; ow < p.out_w; ow++) {
                float acc = p.bias ? b[oc] : 0.0f;
                for (int ic = 0; ic < cin_g; ic++) {
                    for (int t = 0; t < taps; t++) {
                        const int ih = oh * p.stride_h - p.pad_t + (t / p.kw) * p.dil_h;
                        const int iw = ow * p.stride_w - p.pad_l + (t % p.kw) * p.dil_w;
                        if (ih < 0 || ih >= p.in_h || iw < 0 || iw >= p.in_w) continue;
                        const float xv = x[((size_t)(oc / cout_g * cin_g + ic) * p.in_h + ih) * p.in_w + iw];
                        acc = fmaf(w[((size_t)oc * cin_g + ic) * taps + t], xv, acc);
                    }
                }
                if (p.clamp) {
                    const float m = acc > p.clamp_lo ? acc : p.clamp_lo;
                    acc = m < p.clamp_hi ? m : p.clamp_hi;
                }
                ref[(size_t)oc * plane + (size_t)oh * p.out_w + ow] = acc;
            }
        }
    }
    int failures = 0;
    for (int vi = 0; vi < nvariants; vi++) {
        if (variants[vi] == AADS_VARIANT_PORTABLE) continue;
        const int lo = rnd(0, p.cout - 1), hi = rnd(lo + 1, p.cout);
        for (size_t i = 0; i < ny; i++) got[i] = NAN;
        aads_fconv_run(variants[vi], &p, x, got, lo, hi);
        int bad = 0;
        for (size_t i = 0; i < ny; i++) {
            const int inside = i >= (size_t)lo * plane && i < (size_t)hi * plane;
            bad += inside ? got[i] != ref[i] : !isnan(got[i]);
        }
        if (bad) {
            printf("float case %d (cin %d cout %d %dx%d group %d %dx%d stride %d clamp %d) variant %s: %d of %zu "
                   "wrong\n",
                   index, p.cin, p.cout, p.in_h, p.in_w, p.group, p.kh, p.kw, p.stride_h, p.clamp,
                   aads_variant_name(variants[vi]), bad, ny);
            failures++;
        }
    }
    free(x);
    free(w);
    free(b);
    free(ref);
    free(got);
    return failures;
}

int main(int argc, char **argv) {
    const int cases = argc > 1 ? atoi(argv[1]) : 300;
    int variants[AADS_VARIANT_COUNT], nvariants = 0;
    printf("variants:");
    for (int v = 0; v < AADS_VARIANT_COUNT; v++) {
        if (aads_variant_available(v)) {
            variants[nvariants++] = v;
            printf(" %s", aads_variant_name(v));
        }
    }
    printf(" (best %s)\n", aads_variant_name(aads_variant_best()));
    int failures = 0;
    for (int i = 0; i < cases; i++) failures += run_case(i, i % 2, 0, variants, nvariants);
    printf("%d cases x %d variants: %s\n", cases, nvariants, failures ? "FAILED" : "all equal to the reference");
    int ref_failures = 0;
    for (int i = 0; i < cases; i++) ref_failures += run_case(i, i % 2, 1, variants, nvariants);
    printf("%d cases x %d variants with the float reference rounding: %s\n", cases, nvariants,
           ref_failures ? "FAILED" : "all equal to the portable variant");
    failures += ref_failures;
    int dw_failures = 0;
    for (int i = 0; i < cases; i++) dw_failures += run_case(i, 2, i % 4 == 3, variants, nvariants);
    printf("%d depthwise 3x3/5x5 cases x %d variants (one in four with the float reference): %s\n", cases, nvariants,
           dw_failures ? "FAILED" : "all equal");
    failures += dw_failures;
    int float_failures = 0;
    for (int i = 0; i < cases; i++) float_failures += run_float_case(i, variants, nvariants);
    printf("%d float convolution cases x %d optimised variants: %s\n", cases, nvariants - 1,
           float_failures ? "FAILED" : "all equal to the fused chain");
    failures += float_failures;
    return failures ? 1 : 0;
}
