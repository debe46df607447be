import CKernels
import Foundation

/// Float NCHW → int8 (NHWC for rank 4): ONNX QuantizeLinear.
final class QuantizeStep: Step {
    let inputs: [Int], outputs: [Int], node: String
    let shape: [Int]
    let q: QParams
    var kind: String { "quantize" }

    init(input: Int, output: Int, shape: [Int], q: QParams, node: String) {
        (inputs, outputs, self.shape, self.q, self.node) = ([input], [output], shape, q, node)
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.f32(inputs[0])
        let y = ctx.i8(outputs[0])
        QuantizeStep.apply(x, y, shape: shape, q: q, variant: ctx.variant)
    }

    static func apply(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Int8>, shape: [Int], q: QParams, variant: Int32
    ) {
        if shape.count == 4 {
            let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3])
            for b in 0..<n {
                aads_quantize_nchw_to_nhwc(
                    variant, x + b * c * hw, y + b * c * hw, Int32(c), Int32(hw), q.scale, q.zeroPoint)
            }
        } else {
            aads_quantize_nchw_to_nhwc(variant, x, y, 1, Int32(shape.reduce(1, *)), q.scale, q.zeroPoint)
        }
    }

    /// The specification of `apply` (and of `aads_quantize_nchw_to_nhwc`).
    static func reference(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Int8>, shape: [Int], q: QParams) {
        let inv = q
        if shape.count == 4 {
            let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3])
            for b in 0..<n {
                for ch in 0..<c {
                    let src = x + (b * c + ch) * hw
                    let dst = y + b * hw * c + ch
                    for i in 0..<hw { dst[i * c] = quantize(src[i], inv) }
                }
            }
        } else {
            for i in 0..<shape.reduce(1, *) { y[i] = quantize(x[i], inv) }
        }
    }
}

/// int8 (NHWC for rank 4) → float NCHW: ONNX DequantizeLinear.
final class DequantizeStep: Step {
    let inputs: [Int], outputs: [Int], node: String
    let shape: [Int]
    let q: QParams
    var kind: String { "dequantize" }

    init(input: Int, output: Int, shape: [Int], q: QParams, node: String) {
        (inputs, outputs, self.shape, self.q, self.node) = ([input], [output], shape, q, node)
    }

    func run(_ ctx: ExecContext) {
        DequantizeStep.apply(ctx.i8(inputs[0]), ctx.f32(outputs[0]), shape: shape, q: q)
    }

    /// Copies int8 data from NCHW (logical) order into the engine's storage order.
    static func applyRaw(_ x: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Int8>, shape: [Int]) {
        if shape.count == 4 {
            let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3])
            for b in 0..<n {
                for ch in 0..<c { for i in 0..<hw { y[(b * hw + i) * c + ch] = x[(b * c + ch) * hw + i] } }
            }
        } else {
            y.update(from: x, count: shape.reduce(1, *))
        }
    }

    static func apply(_ x: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Float>, shape: [Int], q: QParams) {
        if shape.count == 4 {
            let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3])
            for b in 0..<n {
                for ch in 0..<c {
                    let src = x + b * hw * c + ch
                    let dst = y + (b * c + ch) * hw
                    for i in 0..<hw { dst[i] = dequantize(src[i * c], q) }
                }
            }
        } else {
            for i in 0..<shape.reduce(1, *) { y[i] = dequantize(x[i], q) }
        }
    }
}

/// Prepacked int8 weights of a convolution or matrix product with their requantisation constants.
final class QConvWeights: @unchecked Sendable {
    let groups: Int, coutPerGroup: Int, cinPerGroup: Int, kh: Int, kw: Int
    /// ONNX-layout weights are not kept; `unpacked()` recovers them from `packed`.
    let packed: AlignedBuffer
    let packedPerGroup: Int
    let wsum: AlignedBuffer, mult: AlignedBuffer, offset: AlignedBuffer, pad: AlignedBuffer
    /// Per output channel: the weight scale and the real-valued bias.
    let weightScales: [Float]
    let bias: [Double]
    let inScale: Float, outScale: Float
    /// Per output channel, float32: weight scales and dequantized bias, for the float reference (`aads_qref`).
    let refScales: AlignedBuffer, refBias: AlignedBuffer
    let requantF32: RequantF32?

    var byteCount: Int {
        packed.byteCount + wsum.byteCount + mult.byteCount + offset.byteCount + pad.byteCount + refScales.byteCount
            + refBias.byteCount + (requantF32?.byteCount ?? 0)
    }

    /// `weights`: ONNX layout [cout][cin/groups][kh][kw]; `bias`: real values.
    init(
        weights: [Int8], groups: Int, cout: Int, cinPerGroup: Int, kh: Int, kw: Int, weightScales: [Float],
        bias: [Double], inScale: Float, outScale: Float, inZeroPoint: Int32
    ) throws {
        let coutG = cout / groups
        (self.groups, self.coutPerGroup, self.cinPerGroup, self.kh, self.kw) = (groups, coutG, cinPerGroup, kh, kw)
        let perGroup = aads_qconv_packed_size(Int32(coutG), Int32(cinPerGroup), Int32(kh), Int32(kw))
        packedPerGroup = perGroup
        let packed = try AlignedBuffer(byteCount: perGroup * groups)
        let wsum = try AlignedBuffer(byteCount: cout * 4)
        let groupWeights = coutG * cinPerGroup * kh * kw
        weights.withUnsafeBufferPointer { w in
            guard let base = w.baseAddress else { return }
            for g in 0..<groups {
                aads_qconv_pack(
                    base + g * groupWeights, Int32(coutG), Int32(cinPerGroup), Int32(kh), Int32(kw),
                    packed.pointer(Int8.self) + g * perGroup, wsum.pointer(Int32.self) + g * coutG)
            }
        }
        (self.packed, self.wsum) = (packed, wsum)
        self.bias = bias
        self.weightScales = weightScales
        (self.inScale, self.outScale) = (inScale, outScale)
        let mults = requantMultipliers(inScale: inScale, weightScales: weightScales, outScale: outScale)
        let offsets = bias.map { $0 / Double(outScale) }
        mult = try AlignedBuffer(mults)
        offset = try AlignedBuffer(offsets)
        requantF32 = RequantF32(mult: mult, offset: offset, count: cout)
        refScales = try AlignedBuffer(weightScales)
        refBias = try AlignedBuffer(bias.map { Float($0) })
        let padBytes = aads_qconv_pad_bytes(Int32(cinPerGroup))
        pad = try AlignedBuffer(byteCount: padBytes)
        memset(pad.raw, Int32(Int8(truncatingIfNeeded: inZeroPoint)), padBytes)
    }

    /// The int8 weights in ONNX layout [cout][cin/groups][kh][kw].
    func unpacked() -> [Int8] {
        let taps = kh * kw
        let kq = (cinPerGroup + 3) / 4
        var out = [Int8](repeating: 0, count: groups * coutPerGroup * cinPerGroup * taps)
        let p = packed.pointer(Int8.self)
        for g in 0..<groups {
            for n in 0..<coutPerGroup {
                for k in 0..<cinPerGroup {
                    for t in 0..<taps {
                        let (nb, j, q, b) = (n / 16, n % 16, k / 4, k % 4)
                        let off = g * packedPerGroup + (((nb * taps + t) * kq + q) * 16 + j) * 4 + b
                        out[((g * coutPerGroup + n) * cinPerGroup + k) * taps + t] = p[off]
                    }
                }
            }
        }
        return out
    }
}

/// Integer convolution (or Gemm/MatMul as a 1x1 convolution over rows) with fused activation clamp.
final class QConvStep: Step, @unchecked Sendable {
    let inputs: [Int], outputs: [Int], node: String
    let weights: QConvWeights
    let batch: Int, inShape: (c: Int, h: Int, w: Int), outShape: (c: Int, h: Int, w: Int)
    let params: [aads_qconv]
    let window: Window
    let inZp: Int32, outQ: QParams, outMin: Int32, outMax: Int32
    /// For Gemm/MatMul: whether the model stores the weight as [N][K] (true) or [K][N] (false); nil for Conv.
    let gemmWeightTransposed: Bool?
    /// The `aads_qref` of each group (nil only if it could not be allocated: then rounding is exact).
    let refBuffer: AlignedBuffer?
    var kind: String { gemmWeightTransposed == nil ? "qconv" : "qgemm" }

    init(
        input: Int, output: Int, node: String, weights: QConvWeights, batch: Int, inShape: (c: Int, h: Int, w: Int),
        outShape: (c: Int, h: Int, w: Int), window: Window, inZp: Int32, outQ: QParams, outMin: Int32, outMax: Int32,
        gemmWeightTransposed: Bool? = nil, band: Double = referenceRoundingBand
    ) {
        self.gemmWeightTransposed = gemmWeightTransposed
        (inputs, outputs, self.node, self.weights) = ([input], [output], node, weights)
        (self.batch, self.inShape, self.outShape, self.window) = (batch, inShape, outShape, window)
        (self.inZp, self.outQ, self.outMin, self.outMax) = (inZp, outQ, outMin, outMax)
        // How ONNX Runtime sums each output in float (see aads_qref): Conv as im2col + SGEMM (or the M = 1 kernel
        // when a group has one filter); Gemm/MatMul of one row with the M = 1 kernels.
        let cg = weights.coutPerGroup
        var ref = aads_qref(
            order: Int32(AADS_SUM_SGEMM), kblock: 0, bias_first: 0, n_total: Int32(cg), in_scale: weights.inScale,
            out_scale: weights.outScale, weight_scales: nil, bias: nil, eps: band)
        let k = weights.cinPerGroup * window.kh * window.kw
        if let transposed = gemmWeightTransposed {
            ref.bias_first = 1
            if outShape.w == 1 {
                ref.order = Int32(transposed ? AADS_SUM_M1_TRANS_B : AADS_SUM_M1)
            } else {
                ref.kblock = Int32(mlasStrideK(n: cg, k: k))
            }
        } else if cg == 1 {
            ref.order = Int32(AADS_SUM_M1)
        } else {
            ref.kblock = Int32(mlasStrideK(n: outShape.h * outShape.w, k: k))
        }
        var refs: [aads_qref] = []
        for g in 0..<weights.groups {
            ref.weight_scales = UnsafePointer(weights.refScales.pointer(Float.self) + g * cg)
            ref.bias = UnsafePointer(weights.refBias.pointer(Float.self) + g * cg)
            refs.append(ref)
        }
        // The buffer keeps the structs at a fixed address for the kernels' parameters below.
        refBuffer = try? AlignedBuffer(refs)
        var ps: [aads_qconv] = []
        for g in 0..<weights.groups {
            ps.append(
                aads_qconv(
                    in_h: Int32(inShape.h), in_w: Int32(inShape.w), in_stride: Int32(inShape.c),
                    out_h: Int32(outShape.h), out_w: Int32(outShape.w), out_stride: Int32(outShape.c),
                    kh: Int32(window.kh), kw: Int32(window.kw), stride_h: Int32(window.sh), stride_w: Int32(window.sw),
                    pad_t: Int32(window.padTop), pad_l: Int32(window.padLeft), dil_h: Int32(window.dh),
                    dil_w: Int32(window.dw), cin: Int32(weights.cinPerGroup), cout: Int32(cg), in_zp: inZp,
                    out_zp: outQ.zeroPoint, out_min: outMin, out_max: outMax,
                    weights: UnsafePointer(weights.packed.pointer(Int8.self) + g * weights.packedPerGroup),
                    wsum: UnsafePointer(weights.wsum.pointer(Int32.self) + g * cg),
                    mult: UnsafePointer(weights.mult.pointer(Double.self) + g * cg),
                    offset: UnsafePointer(weights.offset.pointer(Double.self) + g * cg),
                    pad: UnsafePointer(weights.pad.pointer(Int8.self)),
                    ref: refBuffer.map { UnsafePointer($0.pointer(aads_qref.self) + g) },
                    mult_f32: weights.requantF32.map { UnsafePointer($0.mult.pointer(Float.self) + g * cg) },
                    offset_f32: weights.requantF32.map { UnsafePointer($0.offset.pointer(Float.self) + g * cg) }))
        }
        params = ps
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.i8(inputs[0])
        let y = ctx.i8(outputs[0])
        let rows = outShape.h * outShape.w
        let inImage = inShape.c * inShape.h * inShape.w
        let outImage = outShape.c * rows
        let variant = ctx.variant
        for b in 0..<batch {
            for g in 0..<params.count {
                let xi = x + b * inImage + g * weights.cinPerGroup
                let yi = y + b * outImage + g * weights.coutPerGroup
                let p = params[g]
                let work = rows * weights.coutPerGroup * weights.cinPerGroup * window.kh * window.kw
                let exact = ctx.rounding == .exact
                parallelFor(rows, threads: ctx.threads, minChunk: 8, work: work, minWorkPerChunk: ctx.minWorkPerChunk) {
                    lo, hi in
                    var pp = p
                    if exact { pp.ref = nil }
                    aads_qconv_run(variant, &pp, xi, yi, Int32(lo), Int32(hi))
                }
            }
        }
    }
}

/// Half-width of the band around x.5 (in output steps) within which an int8 Conv/Gemm output is decided by the
/// float reference. ONNX Runtime's float32 evaluation strays from the exact value by at most ~5e-4 steps on
/// EfficientNet-Lite0 (K up to 1152); the band is four times that.
let referenceRoundingBand = 1.0 / 512

/// Whether a requantised int8 value `v` (before the zero point; clamped to int8) lies within the reference band of a
/// rounding boundary, so that `Rounding.onnxRuntime` decides it by the float reference.
func isNearHalf(_ v: Double, zeroPoint: Int32) -> Bool {
    let c = max(-128 - Double(zeroPoint), min(127 - Double(zeroPoint), v))
    return abs(c - c.rounded(.toNearestOrEven)) > 0.5 - referenceRoundingBand
}

/// The K blocking of ONNX Runtime's SGEMM (MLAS) for an N-column output: the panel of 128 x 128 is made deeper when
/// N is small. Products are summed with FMA within a block; block sums are added in order.
func mlasStrideK(n: Int, k: Int) -> Int {
    var (strideN, strideK) = (128, 128)
    if n >= k {
        while strideK / 2 >= k { (strideN, strideK) = (strideN * 2, strideK / 2) }
    } else {
        while strideN > 16 && strideN / 2 >= n { (strideN, strideK) = (strideN / 2, strideK * 2) }
    }
    return strideK
}

/// Float32 copies of requantisation multipliers and offsets for kernels that requantise in float32 first
/// (`aads_requant_f32_prepare`).
struct RequantF32 {
    let mult: AlignedBuffer, offset: AlignedBuffer
    var byteCount: Int { mult.byteCount + offset.byteCount }

    /// nil when the bounds that keep float32 within `AADS_F32_SLACK` do not hold: the kernels then stay in double.
    init?(mult: AlignedBuffer, offset: AlignedBuffer, count: Int) {
        guard let m = try? AlignedBuffer(byteCount: count * 4), let o = try? AlignedBuffer(byteCount: count * 4),
            aads_requant_f32_prepare(
                mult.pointer(Double.self), offset.pointer(Double.self), Int32(count), m.pointer(Float.self),
                o.pointer(Float.self)) == 1
        else { return nil }
        (self.mult, self.offset) = (m, o)
    }
}

/// Per output channel: inScale × weightScale / outScale in double precision.
func requantMultipliers(inScale: Float, weightScales: [Float], outScale: Float) -> [Double] {
    weightScales.map { Double(inScale) * Double($0) / Double(outScale) }
}

/// Prepacked depthwise weights.
final class QDepthwiseWeights: @unchecked Sendable {
    let channels: Int, kh: Int, kw: Int, cpad: Int
    let packed: AlignedBuffer, mult: AlignedBuffer, offset: AlignedBuffer
    let weightScales: [Float]
    let bias: [Double]
    let inScale: Float, outScale: Float
    /// Per channel, float32: weight scales and dequantized bias; and the `aads_qref` that points at them.
    let refScales: AlignedBuffer, refBias: AlignedBuffer, ref: AlignedBuffer
    let requantF32: RequantF32?
    var byteCount: Int {
        packed.byteCount + mult.byteCount + offset.byteCount + refScales.byteCount + refBias.byteCount
            + (requantF32?.byteCount ?? 0)
    }

    init(
        weights: [Int8], channels: Int, kh: Int, kw: Int, weightScales: [Float], bias: [Double], inScale: Float,
        outScale: Float, band: Double = referenceRoundingBand
    )
        throws
    {
        (self.channels, self.kh, self.kw) = (channels, kh, kw)
        cpad = Int(aads_dwconv_cpad(Int32(channels)))
        let packed = try AlignedBuffer(byteCount: cpad * kh * kw * 2)
        weights.withUnsafeBufferPointer { w in
            guard let base = w.baseAddress else { return }
            aads_dwconv_pack(base, Int32(channels), Int32(kh), Int32(kw), packed.pointer(Int16.self))
        }
        self.packed = packed
        let padding = [Double](repeating: 0, count: cpad - channels)
        let mults = requantMultipliers(inScale: inScale, weightScales: weightScales, outScale: outScale) + padding
        let offsets = bias.map { $0 / Double(outScale) } + padding
        mult = try AlignedBuffer(mults)
        offset = try AlignedBuffer(offsets)
        requantF32 = RequantF32(mult: mult, offset: offset, count: cpad)
        (self.weightScales, self.bias, self.inScale, self.outScale) = (weightScales, bias, inScale, outScale)
        // One filter per group: ONNX Runtime sums each output with its M = 1 SGEMM kernel.
        let refScales = try AlignedBuffer(weightScales)
        let refBias = try AlignedBuffer(bias.map { Float($0) })
        ref = try AlignedBuffer([
            aads_qref(
                order: Int32(AADS_SUM_M1), kblock: 0, bias_first: 0, n_total: 1, in_scale: inScale,
                out_scale: outScale, weight_scales: UnsafePointer(refScales.pointer(Float.self)),
                bias: UnsafePointer(refBias.pointer(Float.self)), eps: band)
        ])
        (self.refScales, self.refBias) = (refScales, refBias)
    }

    func unpacked() -> [Int8] {
        let taps = kh * kw
        var out = [Int8](repeating: 0, count: channels * taps)
        let p = packed.pointer(Int16.self)
        for c in 0..<channels {
            for t in 0..<taps { out[c * taps + t] = Int8(truncatingIfNeeded: p[t * cpad + c]) }
        }
        return out
    }
}

final class QDepthwiseStep: Step, @unchecked Sendable {
    let inputs: [Int], outputs: [Int], node: String
    let weights: QDepthwiseWeights
    let batch: Int, param: aads_dwconv, inImage: Int, outImage: Int, outH: Int
    let window: Window, inZp: Int32, outQ: QParams, outMin: Int32, outMax: Int32, inHW: (Int, Int)
    var kind: String { "qdepthwise" }

    init(
        input: Int, output: Int, node: String, weights: QDepthwiseWeights, batch: Int, inH: Int, inW: Int,
        window: Window, inZp: Int32, outQ: QParams, outMin: Int32, outMax: Int32
    ) {
        (inputs, outputs, self.node, self.weights, self.batch) = ([input], [output], node, weights, batch)
        (self.window, self.inZp, self.outQ, self.outMin, self.outMax, self.inHW) = (
            window, inZp, outQ, outMin, outMax, (inH, inW)
        )
        let c = weights.channels
        param = aads_dwconv(
            in_h: Int32(inH), in_w: Int32(inW), channels: Int32(c), out_h: Int32(window.outH),
            out_w: Int32(window.outW),
            kh: Int32(window.kh), kw: Int32(window.kw), stride_h: Int32(window.sh), stride_w: Int32(window.sw),
            pad_t: Int32(window.padTop), pad_l: Int32(window.padLeft), dil_h: Int32(window.dh), dil_w: Int32(window.dw),
            in_zp: inZp, out_zp: outQ.zeroPoint, out_min: outMin, out_max: outMax,
            weights: UnsafePointer(weights.packed.pointer(Int16.self)),
            mult: UnsafePointer(weights.mult.pointer(Double.self)),
            offset: UnsafePointer(weights.offset.pointer(Double.self)),
            ref: UnsafePointer(weights.ref.pointer(aads_qref.self)),
            mult_f32: weights.requantF32.map { UnsafePointer($0.mult.pointer(Float.self)) },
            offset_f32: weights.requantF32.map { UnsafePointer($0.offset.pointer(Float.self)) })
        (inImage, outImage, outH) = (c * inH * inW, c * window.outH * window.outW, window.outH)
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.i8(inputs[0])
        let y = ctx.i8(outputs[0])
        let variant = ctx.variant
        var p = param
        if ctx.rounding == .exact { p.ref = nil }
        for b in 0..<batch {
            let xi = x + b * inImage
            let yi = y + b * outImage
            let work = outImage * window.kh * window.kw
            parallelFor(outH, threads: ctx.threads, minChunk: 1, work: work, minWorkPerChunk: ctx.minWorkPerChunk) {
                lo, hi in
                var pp = p
                aads_dwconv_run(variant, &pp, xi, yi, Int32(lo), Int32(hi))
            }
        }
    }
}

/// How an operand of an elementwise operation is read: strides (in elements) per output storage dimension.
struct Broadcast: Sendable {
    /// Output dimensions in storage order.
    var dims: [Int]
    /// Per operand, stride per storage dimension (0 where broadcast).
    var strides: [[Int]]
    /// Operands whose storage equals the output's element by element.
    var contiguous: [Bool]

    /// `shapes`: logical shapes of the operands; `nhwc`: their storage; `out`: logical output shape and storage.
    init(out: [Int], outNHWC: Bool, operands: [(shape: [Int], nhwc: Bool)]) {
        let r = out.count
        let order = outNHWC ? [0, 2, 3, 1] : Array(0..<r)
        dims = order.map { out[$0] }
        var all: [[Int]] = []
        var contiguous: [Bool] = []
        for (shape, nhwc) in operands {
            let padded = [Int](repeating: 1, count: r - shape.count) + shape
            var logical = [Int](repeating: 0, count: r)
            if nhwc {
                // logical (n, c, h, w) strides of NHWC storage
                let (c, h, w) = (padded[1], padded[2], padded[3])
                logical = [h * w * c, 1, w * c, c]
            } else {
                var s = 1
                for i in stride(from: r - 1, through: 0, by: -1) {
                    logical[i] = s
                    s *= padded[i]
                }
            }
            for i in 0..<r where padded[i] == 1 { logical[i] = 0 }
            let st = order.map { logical[$0] }
            all.append(st)
            var expect = 1
            var cont = true
            for i in stride(from: r - 1, through: 0, by: -1) where dims[i] > 1 {
                if st[i] != expect { cont = false }
                expect *= dims[i]
            }
            contiguous.append(cont && padded == out)
        }
        strides = all
        self.contiguous = contiguous
    }

    /// Calls `body(outOffset, offsetA, offsetB, n, strideA, strideB)` for runs along the innermost dimension.
    func forEachRow(_ body: (Int, Int, Int, Int, Int, Int) -> Void) {
        let r = dims.count
        if r == 0 {
            body(0, 0, 0, 1, 0, 0)
            return
        }
        let inner = dims[r - 1]
        let sa = strides[0][r - 1]
        let sb = strides.count > 1 ? strides[1][r - 1] : 0
        let outer = dims.dropLast().reduce(1, *)
        var idx = [Int](repeating: 0, count: r - 1)
        var oa = 0
        var ob = 0
        for row in 0..<outer {
            body(row * inner, oa, ob, inner, sa, sb)
            var d = r - 2
            while d >= 0 {
                idx[d] += 1
                oa += strides[0][d]
                if strides.count > 1 { ob += strides[1][d] }
                if idx[d] < dims[d] { break }
                oa -= strides[0][d] * dims[d]
                if strides.count > 1 { ob -= strides[1][d] * dims[d] }
                idx[d] = 0
                d -= 1
            }
        }
    }
}

/// Where an int8 operand comes from: a runtime value or a constant stored in the step.
enum QOperand: Sendable {
    case value(Int)
    case constant(AlignedBuffer)
}

/// int8 Add / Mul with broadcasting.
final class QBinaryStep: Step, @unchecked Sendable {
    enum Op: Sendable { case add, mul }
    let inputs: [Int], outputs: [Int], node: String
    let op: Op
    let a: QOperand, b: QOperand
    let qa: QParams, qb: QParams, qc: QParams
    let bc: Broadcast
    let outMin: Int32, outMax: Int32
    var kind: String { op == .add ? "qadd" : "qmul" }

    init(
        op: Op, a: QOperand, b: QOperand, qa: QParams, qb: QParams, qc: QParams, output: Int, broadcast: Broadcast,
        node: String, outMin: Int32 = -128, outMax: Int32 = 127
    ) {
        (self.outMin, self.outMax) = (outMin, outMax)
        var ins: [Int] = []
        if case .value(let i) = a { ins.append(i) }
        if case .value(let i) = b { ins.append(i) }
        (inputs, outputs, self.node, self.op) = (ins, [output], node, op)
        (self.a, self.b, self.qa, self.qb, self.qc, self.bc) = (a, b, qa, qb, qc, broadcast)
    }

    func run(_ ctx: ExecContext) {
        func ptr(_ o: QOperand) -> UnsafeMutablePointer<Int8> {
            switch o {
            case .value(let i): ctx.i8(i)
            case .constant(let buf): buf.pointer(Int8.self)
            }
        }
        let pa = ptr(a)
        let pb = ptr(b)
        let pc = ctx.i8(outputs[0])
        let n = bc.dims.reduce(1, *)
        let bScalar = bc.strides[1].allSatisfy { $0 == 0 }
        if bc.contiguous[0] && (bc.contiguous[1] || bScalar) {
            let p = aads_qbinary(
                sa: qa.scale, sb: qb.scale, sc: qc.scale, za: qa.zeroPoint, zb: qb.zeroPoint, zc: qc.zeroPoint,
                out_min: outMin, out_max: outMax, mul: op == .mul ? 1 : 0, b_scalar: bScalar ? 1 : 0)
            let variant = ctx.variant
            parallelFor(n, threads: ctx.threads, minChunk: 16384, work: n * 4) { lo, hi in
                var pp = p
                aads_qbinary_run(variant, &pp, pa + lo, bScalar ? pb : pb + lo, pc + lo, hi - lo)
            }
            return
        }
        QBinaryStep.apply(op: op, pa, pb, pc, qa, qb, qc, bc, outMin, outMax)
    }

    static func apply(
        op: Op, _ pa: UnsafePointer<Int8>, _ pb: UnsafePointer<Int8>, _ pc: UnsafeMutablePointer<Int8>, _ qa: QParams,
        _ qb: QParams, _ qc: QParams, _ bc: Broadcast, _ outMin: Int32 = -128, _ outMax: Int32 = 127
    ) {
        // DequantizeLinear → float Add/Mul → QuantizeLinear, in the same float32 operations ONNX Runtime performs.
        let lo = Float(outMin - qc.zeroPoint)
        let hi = Float(outMax - qc.zeroPoint)
        let za = qa.zeroPoint
        let zb = qb.zeroPoint
        let zc = qc.zeroPoint
        let sa = qa.scale
        let sb = qb.scale
        let sc = qc.scale
        let isAdd = op == .add
        bc.forEachRow { o, oa, ob, n, stA, stB in
            for i in 0..<n {
                let x = Float(Int32(pa[oa + i * stA]) - za) * sa
                let y = Float(Int32(pb[ob + i * stB]) - zb) * sb
                var v = (isAdd ? x + y : x * y) / sc
                v = v < lo ? lo : v
                v = v > hi ? hi : v
                if v.isNaN { v = 0 }
                pc[o + i] = Int8(Int32(v.rounded(.toNearestOrEven)) + zc)
            }
        }
    }
}

/// int8 GlobalAveragePool on NHWC: integer sums, one float rescale per channel (QLinearGlobalAveragePool).
final class QGlobalAveragePoolStep: Step {
    let inputs: [Int], outputs: [Int], node: String
    let n: Int, c: Int, hw: Int
    let qi: QParams, qo: QParams
    var kind: String { "qglobalavgpool" }

    init(input: Int, output: Int, shape: [Int], qi: QParams, qo: QParams, node: String) {
        (inputs, outputs, self.node) = ([input], [output], node)
        (n, c, hw, self.qi, self.qo) = (shape[0], shape[1], shape[2] * shape[3], qi, qo)
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.i8(inputs[0])
        let y = ctx.i8(outputs[0])
        let mult = Double(qi.scale) / (Double(hw) * Double(qo.scale))
        let bias = -qi.zeroPoint * Int32(hw)
        let c = self.c
        let hw = self.hw
        let acc = ctx.scratch.assumingMemoryBound(to: Int32.self)
        for b in 0..<n {
            for i in 0..<c { acc[i] = bias }
            let base = x + b * hw * c
            for p in 0..<hw {
                let row = base + p * c
                for i in 0..<c { acc[i] &+= Int32(row[i]) }
            }
            for i in 0..<c {
                if ctx.rounding == .onnxRuntime && isNearHalf(Double(acc[i]) * mult, zeroPoint: qo.zeroPoint) {
                    y[b * c + i] = referenceMean(base + i, stride: c)
                } else {
                    y[b * c + i] = requantize(acc[i], mult: mult, offset: 0, qo.zeroPoint, -128, 127)
                }
            }
        }
    }

    /// The mean of one channel as ONNX Runtime's float GlobalAveragePool computes it (MLAS: four interleaved float32
    /// partial sums, reduced pairwise, then the leftover values in order, divided by the count), quantized like
    /// QuantizeLinear. For near-half results only (see `Rounding.onnxRuntime`).
    func referenceMean(_ x: UnsafeMutablePointer<Int8>, stride: Int) -> Int8 {
        func value(_ p: Int) -> Float { Float(Int32(x[p * stride]) - qi.zeroPoint) * qi.scale }
        var lanes: (Float, Float, Float, Float) = (0, 0, 0, 0)
        let full = hw / 4 * 4
        var p = 0
        while p < full {
            lanes.0 += value(p)
            lanes.1 += value(p + 1)
            lanes.2 += value(p + 2)
            lanes.3 += value(p + 3)
            p += 4
        }
        var sum = (lanes.0 + lanes.2) + (lanes.1 + lanes.3)
        while p < hw {
            sum += value(p)
            p += 1
        }
        return quantize(sum / Float(hw), qo)
    }

    var scratchBytes: Int { c * 4 }
}

/// int8 MaxPool / AveragePool on NHWC.
final class QPoolStep: Step {
    let inputs: [Int], outputs: [Int], node: String
    let isMax: Bool, countIncludePad: Bool
    let n: Int, c: Int, h: Int, w: Int
    let win: Window
    let qi: QParams, qo: QParams
    let lut: [Int8]?
    var kind: String { isMax ? "qmaxpool" : "qavgpool" }

    /// `table`: for MaxPool, the requantisation (and clamp) applied to the maximum, when needed.
    init(
        input: Int, output: Int, isMax: Bool, countIncludePad: Bool, shape: [Int], window: Window, qi: QParams,
        qo: QParams, table: [Int8]?, node: String
    ) {
        (inputs, outputs, self.node, self.isMax, self.countIncludePad) = (
            [input], [output], node, isMax, countIncludePad
        )
        (n, c, h, w, win, self.qi, self.qo) = (shape[0], shape[1], shape[2], shape[3], window, qi, qo)
        lut = table
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.i8(inputs[0])
        let y = ctx.i8(outputs[0])
        let (c, h, w, win) = (self.c, self.h, self.w, self.win)
        let acc = ctx.scratch.assumingMemoryBound(to: Int32.self)
        do {
            for b in 0..<n {
                for oh in 0..<win.outH {
                    for ow in 0..<win.outW {
                        let out = y + ((b * win.outH + oh) * win.outW + ow) * c
                        for i in 0..<c { acc[i] = isMax ? -128 : 0 }
                        var valid: Int32 = 0
                        win.forEachTapInside(oh: oh, ow: ow, h: h, w: w) { ih, iw in
                            valid += 1
                            let px = x + ((b * h + ih) * w + iw) * c
                            if isMax {
                                for i in 0..<c { acc[i] = max(acc[i], Int32(px[i])) }
                            } else {
                                for i in 0..<c { acc[i] &+= Int32(px[i]) - qi.zeroPoint }
                            }
                        }
                        if isMax {
                            if let lut {
                                for i in 0..<c { out[i] = lut[Int(acc[i]) + 128] }
                            } else {
                                for i in 0..<c { out[i] = Int8(truncatingIfNeeded: acc[i]) }
                            }
                        } else {
                            let count = countIncludePad ? poolCount(oh: oh, ow: ow) : valid
                            let m = Double(qi.scale) / (Double(max(1, count)) * Double(qo.scale))
                            for i in 0..<c {
                                if ctx.rounding == .onnxRuntime
                                    && isNearHalf(Double(acc[i]) * m, zeroPoint: qo.zeroPoint)
                                {
                                    out[i] = referenceMean(x, b: b, oh: oh, ow: ow, channel: i, count: count)
                                } else {
                                    out[i] = requantize(acc[i], mult: m, offset: 0, qo.zeroPoint, -128, 127)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    var scratchBytes: Int { c * 4 }

    /// One output of the average as ONNX Runtime's float AveragePool computes it: the window's float32 values summed
    /// row by row, divided by the count, quantized like QuantizeLinear. For near-half results only.
    func referenceMean(_ x: UnsafeMutablePointer<Int8>, b: Int, oh: Int, ow: Int, channel: Int, count: Int32) -> Int8 {
        var sum: Float = 0
        win.forEachTapInside(oh: oh, ow: ow, h: h, w: w) { ih, iw in
            sum += Float(Int32(x[((b * h + ih) * w + iw) * c + channel]) - qi.zeroPoint) * qi.scale
        }
        return quantize(sum / Float(max(1, count)), qo)
    }

    /// Window size including padding but not beyond the padded input (ONNX count_include_pad).
    func poolCount(oh: Int, ow: Int) -> Int32 {
        let h0 = oh * win.sh - win.padTop
        let w0 = ow * win.sw - win.padLeft
        let h1 = min(h0 + (win.kh - 1) * win.dh + 1, h + win.padBottom)
        let w1 = min(w0 + (win.kw - 1) * win.dw + 1, w + win.padRight)
        let hs = (h1 - h0 + win.dh - 1) / win.dh
        let ws = (w1 - w0 + win.dw - 1) / win.dw
        return Int32(hs * ws)
    }
}

/// y = quantize(f(dequantize(x))) for every int8 value of the input scale.
func makeTable(from qi: QParams, to qo: QParams, _ f: (Float) -> Float) -> [Int8] {
    (0..<256).map { i in quantize(f(dequantize(Int8(truncatingIfNeeded: i - 128), qi)), qo) }
}

func makeRequantTable(from qi: QParams, to qo: QParams) -> [Int8] { makeTable(from: qi, to: qo) { $0 } }

/// int8 elementwise function through a 256-entry table (Relu, Clip, Sigmoid, HardSigmoid, HardSwish, LeakyRelu,
/// or a change of scale). Exact with respect to dequantize → float function → quantize.
final class QTableStep: Step {
    let inputs: [Int], outputs: [Int], node: String
    let table: [Int8]
    let count: Int
    var kind: String { "qtable" }
    var writesInPlace: Bool { true }

    init(input: Int, output: Int, count: Int, table: [Int8], node: String) {
        (inputs, outputs, self.node, self.count, self.table) = ([input], [output], node, count, table)
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.i8(inputs[0])
        let y = ctx.i8(outputs[0])
        table.withUnsafeBufferPointer { t in
            for i in 0..<count { y[i] = t[Int(x[i]) + 128] }
        }
    }
}

/// int8 Concat (with per-input requantisation tables when scales differ).
final class QConcatStep: Step {
    let inputs: [Int], outputs: [Int], node: String
    let outer: Int
    let inners: [Int]
    let tables: [[Int8]?]
    var kind: String { "qconcat" }

    init(inputs: [Int], output: Int, outer: Int, inners: [Int], tables: [[Int8]?], node: String) {
        (self.inputs, outputs, self.node, self.outer, self.inners, self.tables) = (
            inputs, [output], node, outer, inners, tables
        )
    }

    func run(_ ctx: ExecContext) {
        let y = ctx.i8(outputs[0])
        let total = inners.reduce(0, +)
        var offset = 0
        for (k, id) in inputs.enumerated() {
            let x = ctx.i8(id)
            let inner = inners[k]
            for o in 0..<outer {
                let src = x + o * inner
                let dst = y + o * total + offset
                if let t = tables[k] {
                    for i in 0..<inner { dst[i] = t[Int(src[i]) + 128] }
                } else {
                    dst.update(from: src, count: inner)
                }
            }
            offset += inner
        }
    }
}

/// int8 Reshape / Flatten / Squeeze / Unsqueeze / Identity: a copy in logical (row-major) order between storages,
/// with a requantisation table when the scales differ.
final class QReshapeStep: Step {
    let inputs: [Int], outputs: [Int], node: String
    let inShape: [Int], outShape: [Int], inNHWC: Bool, outNHWC: Bool
    let table: [Int8]?
    var kind: String { "qreshape" }

    init(
        input: Int, output: Int, inShape: [Int], inNHWC: Bool, outShape: [Int], outNHWC: Bool, table: [Int8]?,
        node: String
    ) {
        (inputs, outputs, self.node, self.inShape, self.outShape) = ([input], [output], node, inShape, outShape)
        (self.inNHWC, self.outNHWC, self.table) = (inNHWC, outNHWC, table)
    }

    /// Storage offset of the logical row-major index `i` of a tensor.
    static func offset(_ i: Int, _ shape: [Int], _ nhwc: Bool) -> Int {
        guard nhwc else { return i }
        let (c, h, w) = (shape[1], shape[2], shape[3])
        let n = i / (c * h * w)
        var r = i % (c * h * w)
        let ch = r / (h * w)
        r %= h * w
        return ((n * h + r / w) * w + r % w) * c + ch
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.i8(inputs[0])
        let y = ctx.i8(outputs[0])
        let count = inShape.reduce(1, *)
        let inSpatial = inNHWC ? inShape[2] * inShape[3] : 1
        let outSpatial = outNHWC ? outShape[2] * outShape[3] : 1
        if inSpatial == 1 && outSpatial == 1 {
            if let t = table {
                for i in 0..<count { y[i] = t[Int(x[i]) + 128] }
            } else {
                y.update(from: x, count: count)
            }
            return
        }
        for i in 0..<count {
            let v = x[QReshapeStep.offset(i, inShape, inNHWC)]
            y[QReshapeStep.offset(i, outShape, outNHWC)] = table.map { $0[Int(v) + 128] } ?? v
        }
    }
}
