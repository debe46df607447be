#ifndef AADS_CKERNELS_H
#define AADS_CKERNELS_H
// Integer dot-product kernels for the inference engine, in C because Swift cannot express the int8 dot-product
// instructions (VPDPBUSD, VPMADDWD, SDOT, SMLAL), and the float kernels beside them (same variants, same
// per-architecture files). Every optimised int8 variant computes exactly what the portable variant computes; the
// Swift reference kernels in AADSInference are the specification they are tested against.
//
// Activations are int8 NHWC. Buffers handed to the kernels must stay readable for AADS_KERNEL_SLACK bytes past
// their last element (dot products read whole groups of 4 channels and mask the extra ones with zero weights).
#include <stddef.h>
#include <stdint.h>

#define AADS_KERNEL_SLACK 64
#define AADS_MAX_TAPS 128

/// The requantisation of one accumulator (the specification every variant follows).
int8_t aads_requantize(int32_t acc, double mult, double offset, int32_t zp, int32_t out_min, int32_t out_max);

/// Fills float32 copies of `n` requantisation multipliers and offsets for kernels that requantise in float32 first.
/// Returns 0 (and the kernels must not be given the copies) unless every |offset| <= 512 and every multiplier is
/// finite and at most 1e30. Under those bounds the float32 value fma(float(acc), mult, offset) of an output that is not
/// clamped lies within AADS_F32_SLACK steps of the exact one, so rounding it gives the exact result everywhere except
/// within that distance of a rounding boundary, where the kernels decide in double precision instead.
int aads_requant_f32_prepare(const double *mult, const double *offset, int32_t n, float *mult_f32, float *offset_f32);
#define AADS_F32_SLACK (1.0 / 2048)

enum {
    AADS_VARIANT_PORTABLE = 0,
    AADS_VARIANT_AVX2 = 1,
    AADS_VARIANT_AVX512VNNI = 2,
    AADS_VARIANT_NEON = 3,
    AADS_VARIANT_NEON_DOT = 4,
    AADS_VARIANT_COUNT = 5
};

/// A hint to the CPU inside a polling loop (x86 PAUSE, Arm YIELD).
static inline void aads_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// 1 when `variant` is compiled in and the CPU supports it.
int aads_variant_available(int variant);
/// The fastest available variant.
int aads_variant_best(void);
const char *aads_variant_name(int variant);

/// Float-reference rounding. An int8 Conv/Gemm of a QDQ graph is specified as DequantizeLinear → float operator →
/// QuantizeLinear; the kernels compute it exactly (int32 accumulation, double requantisation), which differs from a
/// float32 evaluation only where the exact value lies within float rounding noise of a half step. When `ref` is set,
/// each output within `eps` of such a boundary is recomputed in float32 exactly as ONNX Runtime's CPU provider
/// evaluates the float graph (x86-64 MLAS: summation order, fused multiply-adds, K blocking), so that the int8 result
/// equals that reference bit for bit instead of drifting from it one rare rounding at a time.
enum {
    /// SGEMM kernel: products accumulated with FMA in blocks of `kblock`, block sums added in order.
    AADS_SUM_SGEMM = 0,
    /// One output row (M = 1), B not transposed: products rounded, added in groups of 4 (then 2, then 1), each group
    /// sum added to the running result.
    AADS_SUM_M1 = 1,
    /// One output row, B transposed (Gemm transB = 1): 8 interleaved partial sums reduced as the kernel's shuffles do,
    /// which depends on the output column's position among `n_total` columns.
    AADS_SUM_M1_TRANS_B = 2
};
typedef struct aads_qref {
    int32_t order;      // AADS_SUM_*
    int32_t kblock;     // AADS_SUM_SGEMM
    int32_t bias_first; // the bias starts the sum (Gemm: C = bias, beta = 1) instead of being added to it (Conv)
    int32_t n_total;    // AADS_SUM_M1_TRANS_B
    float in_scale, out_scale;
    const float *weight_scales; // per output channel (of this group)
    const float *bias;          // per output channel (of this group), float32 as DequantizeLinear gives it; or NULL
    double eps;                 // half-width of the band around x.5 that is decided by the float reference
} aads_qref;

/// Convolution (or matrix product, with a 1x1 kernel on a 1x1 image) of int8 NHWC activations with int8 weights,
/// int32 accumulation and per-output-channel requantisation in double precision (exact for practical purposes,
/// so the result is the correctly rounded QuantizeLinear of the real-valued convolution):
///   acc[n] = sum over taps and k of (x - in_zp) * w[n][k][tap]      (padding reads count as in_zp)
///   v[n]   = fma(double(acc[n]), mult[n], offset[n])                 (mult = sx*sw/sy, offset = bias/sy)
///   y[n]   = round_half_even(clamp(v[n], out_min - out_zp, out_max - out_zp)) + out_zp
typedef struct aads_qconv {
    int32_t in_h, in_w, in_stride;    // input image; in_stride = bytes between pixels
    int32_t out_h, out_w, out_stride; // output image; out_stride = bytes between pixels
    int32_t kh, kw, stride_h, stride_w, pad_t, pad_l, dil_h, dil_w;
    int32_t cin;  // channels per tap (of this group)
    int32_t cout; // output channels (of this group)
    int32_t in_zp, out_zp, out_min, out_max;
    const int8_t *weights; // packed by aads_qconv_pack
    const int32_t *wsum;   // [cout] sum of the weights of each output channel
    const double *mult;    // [cout]
    const double *offset;  // [cout]
    const int8_t *pad;     // aads_qconv_pad_bytes(cin) bytes equal to in_zp
    const aads_qref *ref;  // NULL: exact rounding only
    // Optional float32 copies of mult and offset (aads_requant_f32_prepare), or NULL. They and wsum must be readable
    // up to the next multiple of 16 output channels (the AVX2 kernel loads whole blocks).
    const float *mult_f32, *offset_f32;
} aads_qconv;

size_t aads_qconv_packed_size(int32_t cout, int32_t cin, int32_t kh, int32_t kw);
size_t aads_qconv_pad_bytes(int32_t cin);
/// Packs ONNX-layout weights w[cout][cin][kh][kw] (one group) into blocks of 16 output channels x 4 input channels.
void aads_qconv_pack(const int8_t *w, int32_t cout, int32_t cin, int32_t kh, int32_t kw, int8_t *packed, int32_t *wsum);
/// Computes output pixels [row_begin, row_end) (row = oh * out_w + ow) of one image.
/// `in` and `out` point at the first channel of this group in pixel 0.
void aads_qconv_run(int variant, const aads_qconv *p, const int8_t *in, int8_t *out, int32_t row_begin, int32_t row_end);

/// Depthwise convolution (one input channel per output channel), int8 NHWC, requantised like aads_qconv.
typedef struct aads_dwconv {
    int32_t in_h, in_w, channels, out_h, out_w;
    int32_t kh, kw, stride_h, stride_w, pad_t, pad_l, dil_h, dil_w;
    int32_t in_zp, out_zp, out_min, out_max;
    const int16_t *weights; // [kh*kw][cpad], cpad = aads_dwconv_cpad(channels), zero padded
    const double *mult;     // [cpad]
    const double *offset;   // [cpad]
    const aads_qref *ref;   // NULL: exact rounding only (order must be AADS_SUM_M1)
    const float *mult_f32, *offset_f32; // optional float32 copies (aads_requant_f32_prepare), or NULL
} aads_dwconv;

int32_t aads_dwconv_cpad(int32_t channels);
/// Packs ONNX-layout weights w[channels][1][kh][kw].
void aads_dwconv_pack(const int8_t *w, int32_t channels, int32_t kh, int32_t kw, int16_t *packed);
/// Computes output rows [oh_begin, oh_end) of one image.
void aads_dwconv_run(int variant, const aads_dwconv *p, const int8_t *in, int8_t *out, int32_t oh_begin, int32_t oh_end);

/// The float-reference value of output channel `n` of output pixel `row` (see aads_qref), quantized. `in` as for
/// aads_qconv_run. Requires p->ref.
int8_t aads_qconv_reference_output(const aads_qconv *p, const int8_t *in, int32_t row, int32_t n);
/// The same for a depthwise convolution's output (oh, ow, channel c).
int8_t aads_dwconv_reference_output(const aads_dwconv *p, const int8_t *in, int32_t oh, int32_t ow, int32_t c);

/// Float convolution, NCHW, one image, output channels [oc_begin, oc_end). Weights w[cout][cin/group][kh][kw].
/// Each output is its bias plus the terms in order of input channel and tap; every variant but the portable one
/// adds each term with one fused multiply-add, so those variants give identical results. With `clamp` set, the
/// kernel clamps each sum y before it stores it (an activation such as Relu or Relu6 fused into the convolution):
/// m = y > clamp_lo ? y : clamp_lo, then m < clamp_hi ? m : clamp_hi (a NaN sum comes out as clamp_lo).
typedef struct aads_fconv {
    int32_t cin, in_h, in_w, cout, out_h, out_w, group;
    int32_t kh, kw, stride_h, stride_w, pad_t, pad_l, dil_h, dil_w;
    const float *weights;
    const float *bias; // may be NULL
    int32_t clamp;     // 0: sums stored as they are
    float clamp_lo, clamp_hi;
} aads_fconv;
void aads_fconv_run(int variant, const aads_fconv *p, const float *in, float *out, int32_t oc_begin, int32_t oc_end);
/// Output channels that `variant`'s pointwise kernel computes together from each input register it loads.
int32_t aads_fconv_tile_rows(int variant);
/// 1 when `variant` computes `p`, given at least 8 of its channels at once, channel-blocked (a depthwise convolution
/// of small planes or a kernel above 3x3, on AVX-512 16 channels per register, on NEON 4): callers should then hand
/// it channels in multiples of 16.
int aads_fconv_channel_blocked(int variant, const aads_fconv *p);

/// C[m][n] = alpha * sum_k A[m][k] B[k][n] + beta * bias (bias broadcast by the caller into C beforehand when beta != 0);
/// A is M x K (or K x M when trans_a), B is K x N (or N x K when trans_b). Rows [m_begin, m_end).
void aads_fgemm(int32_t m, int32_t n, int32_t k, const float *a, int32_t trans_a, const float *b, int32_t trans_b,
                float alpha, float *c, int32_t accumulate, int32_t m_begin, int32_t m_end);

/// Elementwise int8 Add/Mul of equal-shaped tensors (or with a single-value `b`), as DequantizeLinear → float
/// Add/Mul → QuantizeLinear computes it in float32:
///   x = float(a - za) * sa;  z = float(b - zb) * sb;  v = (x + z) / sc  (or x * z / sc)
///   y = round_half_even(clamp(v, out_min - zc, out_max - zc)) + zc
typedef struct aads_qbinary {
    float sa, sb, sc;
    int32_t za, zb, zc, out_min, out_max;
    int32_t mul;      // 0: Add, 1: Mul
    int32_t b_scalar; // 1: b has one element, broadcast
} aads_qbinary;
void aads_qbinary_run(int variant, const aads_qbinary *p, const int8_t *a, const int8_t *b, int8_t *y, size_t n);

/// QuantizeLinear of one float NCHW image into int8 NHWC (channels innermost): y = sat(round_half_even(x / scale) + zp),
/// NaN → zp. `c` = 1 quantizes a flat array.
void aads_quantize_nchw_to_nhwc(int variant, const float *x, int8_t *y, int32_t c, int32_t hw, float scale, int32_t zp);

#endif
