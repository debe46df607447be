import CKernels
import Foundation

/// Float convolution, NCHW.
final class FConvStep: Step, @unchecked Sendable {
    let inputs: [Int], outputs: [Int], node: String
    /// Weights [cout][cin/group][kh][kw] and bias: the arrays the loader decoded, kept as they are (no copy, so a
    /// load never holds a weight twice). The kernel is given pointers to them while it runs.
    let weights: [Float], bias: [Float]?
    /// Geometry; its weight and bias pointers are filled in at run time.
    let param: aads_fconv
    let batch: Int, weightShape: [Int]
    var kind: String { "fconv" }

    init(
        input: Int, output: Int, node: String, inShape: [Int], outShape: [Int], weights: [Float], weightShape: [Int],
        bias: [Float]?, group: Int, window: Window
    ) throws {
        (inputs, outputs, self.node, self.weightShape) = ([input], [output], node, weightShape)
        (self.weights, self.bias) = (weights, bias)
        batch = inShape[0]
        param = aads_fconv(
            cin: Int32(inShape[1]), in_h: Int32(inShape[2]), in_w: Int32(inShape[3]), cout: Int32(outShape[1]),
            out_h: Int32(outShape[2]), out_w: Int32(outShape[3]), group: Int32(group), kh: Int32(window.kh),
            kw: Int32(window.kw), stride_h: Int32(window.sh), stride_w: Int32(window.sw), pad_t: Int32(window.padTop),
            pad_l: Int32(window.padLeft), dil_h: Int32(window.dh), dil_w: Int32(window.dw), weights: nil, bias: nil,
            clamp: 0, clamp_lo: 0, clamp_hi: 0)
    }

    /// Copies `other`, with new weights, output or parameters.
    private init(_ other: FConvStep, weights: [Float]? = nil, output: Int? = nil, param: aads_fconv? = nil) {
        (inputs, node, weightShape) = (other.inputs, other.node, other.weightShape)
        outputs = output.map { [$0] } ?? other.outputs
        (self.weights, bias, batch) = (weights ?? other.weights, other.bias, other.batch)
        self.param = param ?? other.param
    }

    /// The same convolution with other weights (ONNX layout).
    func replacingWeights(_ w: [Float]) throws -> FConvStep { FConvStep(self, weights: w) }

    /// This convolution followed by `activation` (reading its output) as one step, whose kernels clamp each sum
    /// before storing it, or nil when the activation is not a clamp (Relu: 0...∞; Clip) or one is fused already.
    /// The clamp is `FUnaryStep`'s, so the results are the same.
    func clamped(by activation: FUnaryStep) -> FConvStep? {
        guard param.clamp == 0, activation.inputs[0] == outputs[0] else { return nil }
        var p = param
        switch activation.f {
        case .relu: (p.clamp, p.clamp_lo, p.clamp_hi) = (1, 0, .infinity)
        case .clip(let lo, let hi): (p.clamp, p.clamp_lo, p.clamp_hi) = (1, lo, hi)
        default: return nil
        }
        return FConvStep(self, output: activation.outputs[0], param: p)
    }

    var floatWeights: [Float] { weights }

    var inPlane: Int { Int(param.in_h) * Int(param.in_w) }
    var outPlane: Int { Int(param.out_h) * Int(param.out_w) }

    /// One output channel per input channel, computed from that channel alone (and not by the pointwise kernel,
    /// which a one-channel 1×1 convolution would be routed to: its rounding differs).
    var isDepthwise: Bool {
        param.group > 1 && param.group == param.cin && param.cout == param.cin
            && !FConvStep.channels(1, of: param).isPointwise
    }

    /// The geometry of `n` output channels alone: a depthwise convolution's read `n` input channels, a
    /// convolution of one group's read every input channel.
    static func channels(_ n: Int32, of p: aads_fconv) -> aads_fconv {
        var part = p
        if part.group > 1 { (part.cin, part.group) = (n, n) }
        part.cout = n
        return part
    }

    /// Calls `body` with the kernel's parameters pointing at the weights and bias.
    @inline(__always)
    func withParam<R>(_ body: (aads_fconv) -> R) -> R {
        weights.withUnsafeBufferPointer { w in
            func go(_ b: UnsafePointer<Float>?) -> R {
                var p = param
                (p.weights, p.bias) = (w.baseAddress, b)
                return body(p)
            }
            guard let bias else { return go(nil) }
            return bias.withUnsafeBufferPointer { go($0.baseAddress) }
        }
    }

    /// Computes output channels `c..<c + n` of one image into `out` (`n` output planes) from `x`: the image's
    /// input channels, or for a depthwise convolution input channels `c..<c + n` alone.
    @inline(__always)
    static func runChannels(
        _ variant: Int32, _ p: aads_fconv, _ c: Int, _ n: Int, _ x: UnsafePointer<Float>,
        _ out: UnsafeMutablePointer<Float>
    ) {
        var part = channels(Int32(n), of: p)
        part.weights = p.weights + c * Int(p.cin / p.group) * Int(p.kh) * Int(p.kw)
        part.bias = p.bias.map { $0 + c }
        aads_fconv_run(variant, &part, x, out, 0, Int32(n))
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.f32(inputs[0])
        let y = ctx.f32(outputs[0])
        let inImage = Int(param.cin) * inPlane
        let outImage = Int(param.cout) * outPlane
        withParam { p in
            for b in 0..<batch {
                parallelFor(Int(p.cout), threads: ctx.threads) { lo, hi in
                    var pp = p
                    aads_fconv_run(ctx.variant, &pp, x + b * inImage, y + b * outImage, Int32(lo), Int32(hi))
                }
            }
        }
    }
}

extension aads_fconv {
    /// Whether `aads_fconv_run` takes its pointwise (1×1 matrix product) path for these parameters.
    var isPointwise: Bool {
        kh == 1 && kw == 1 && stride_h == 1 && stride_w == 1 && pad_t == 0 && pad_l == 0 && group == 1
            && out_h == in_h && out_w == in_w
    }
}

/// A convolution of one group, its elementwise activations and the depthwise convolution reading them, run a few
/// channels at a time: a block of the first convolution's channels goes to planes of scratch memory (see
/// `blockSize`), the activations run over them there, and the depthwise convolution's same channels read them from
/// there (its own activations then run on those output channels while they are in cache). The first convolution's
/// output (in an inverted residual block, the expansion: the largest tensor of the network) never exists whole.
/// Each channel is computed by the same kernels as the separate steps, so the results are identical.
final class FConvDepthwiseStep: Step, @unchecked Sendable {
    let inputs: [Int], outputs: [Int], node: String
    let first: FConvStep, activations: [FUnaryStep], depthwise: FConvStep
    /// Activations of the depthwise convolution's output, applied to each block of channels in place.
    let after: [FUnaryStep]
    /// Threads that may run channels, each with its own scratch planes.
    let planes: Int
    /// Channels computed together.
    let block: Int
    var kind: String { "fconv+dwconv" }
    var scratchBytes: Int { planes * block * first.outPlane * MemoryLayout<Float>.stride }

    /// `variant`: the kernel variant the step runs on.
    init(
        first: FConvStep, activations: [FUnaryStep], depthwise: FConvStep, after: [FUnaryStep] = [], threads: Int,
        variant: Int32
    ) {
        (inputs, outputs, node) = (first.inputs, after.last?.outputs ?? depthwise.outputs, first.node)
        (self.first, self.activations, self.depthwise, planes) = (first, activations, depthwise, max(1, threads))
        self.after = after
        var dw = depthwise.param
        block = FConvDepthwiseStep.blockSize(
            plane: first.outPlane, channels: Int(first.param.cout), pointwise: first.param.isPointwise,
            tileRows: Int(aads_fconv_tile_rows(variant)), channelBlocked: aads_fconv_channel_blocked(variant, &dw) != 0)
    }

    /// For large planes after a pointwise convolution, the pointwise kernel's tile of rows (`tileRows`: 6 with
    /// AVX2 and AVX-512, 4 otherwise), the channels it computes in one pass over the input: a block of 4 on AVX2
    /// filled only part of its 6-row tile and read the input, which outgrows the core's cache at 112×112, 24 times
    /// instead of 16 (in isolation, 16→96 at 112×112 with its depthwise convolution 1.99 → 1.57 ms, 24→144 at 56×56 1.18 →
    /// 0.99 ms; blocks of 12 or more were slower again). After another convolution (the stem), 16: each call
    /// prepares the input's rows again (the stem with its depthwise convolution 0.91 ms by 4, 0.74 ms by 16). Planes
    /// of at most 14×14 values take as many channels as fill about 128 KB, a multiple of 12 (both tiles' rows
    /// divide it): each kernel call's fixed work (panels, padding, setup) is then shared by more channels, while
    /// the block still stays in the core's cache (a 7×7 layer's 1152 channels in two blocks took about a fifth
    /// less time than by four). A channel-blocked depthwise kernel (`channelBlocked`, see
    /// `aads_fconv_channel_blocked`) gets 16 channels at a time on larger planes too.
    static func blockSize(plane: Int, channels: Int, pointwise: Bool, tileRows: Int, channelBlocked: Bool) -> Int {
        guard plane <= 14 * 14 else { return min(channels, channelBlocked ? 16 : pointwise ? tileRows : 16) }
        return min(channels, max(4, 32_768 / plane / 12 * 12))
    }

    /// Whether `first`, then `activations` in order, then `depthwise` can run as one such step (the values between
    /// them must be read by nobody else; the caller checks that).
    static func fits(first: FConvStep, activations: [FUnaryStep], depthwise: FConvStep) -> Bool {
        let p = first.param
        guard p.group == 1, first.batch == depthwise.batch, depthwise.isDepthwise,
            depthwise.param.cin == p.cout, depthwise.param.in_h == p.out_h, depthwise.param.in_w == p.out_w
        else { return false }
        return activations.allSatisfy { $0.count == first.batch * Int(p.cout) * first.outPlane }
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.f32(inputs[0])
        let y = ctx.f32(outputs[0])
        let (plane, channels) = (first.outPlane, Int(first.param.cout))
        let inImage = Int(first.param.cin) * first.inPlane
        let outImage = channels * depthwise.outPlane
        let outPlane = depthwise.outPlane
        let scratch = ctx.scratch.assumingMemoryBound(to: Float.self)
        let chunks = max(1, min(ctx.threads, planes, channels))
        first.withParam { pf in
            depthwise.withParam { pd in
                for b in 0..<batch {
                    let xb = UnsafePointer(x + b * inImage)
                    let yb = y + b * outImage
                    let chunk = { (i: Int) in
                        let tmp = scratch + i * self.block * plane
                        let end = channels * (i + 1) / chunks
                        for c in stride(from: channels * i / chunks, to: end, by: self.block) {
                            let n = min(self.block, end - c)
                            FConvStep.runChannels(ctx.variant, pf, c, n, xb, tmp)
                            for a in self.activations { FUnaryStep.apply(a.f, tmp, tmp, count: n * plane) }
                            FConvStep.runChannels(ctx.variant, pd, c, n, tmp, yb + c * outPlane)
                            for a in self.after {
                                FUnaryStep.apply(a.f, yb + c * outPlane, yb + c * outPlane, count: n * outPlane)
                            }
                        }
                    }
                    if chunks == 1 {
                        chunk(0)
                    } else {
                        // The chunks write disjoint channels of the output, each through its own scratch plane.
                        parallelChunks(chunks, threads: ctx.threads, chunk)
                    }
                }
            }
        }
    }

    private var batch: Int { first.batch }
}

/// Float Gemm / MatMul with a constant right-hand side: Y = alpha·A·B + beta·C.
final class FGemmStep: Step, @unchecked Sendable {
    let inputs: [Int], outputs: [Int], node: String
    let m: Int, n: Int, k: Int, transA: Bool, alpha: Float
    /// B as [K][N].
    let b: [Float]
    /// beta·C broadcast to [M][N], or nil.
    let c: [Float]?
    /// The weight as stored in the model (for adaptation): shape and whether it was [N][K].
    let weightShape: [Int], weightTransposed: Bool
    var kind: String { "fgemm" }

    /// `weights`: B as the model stores it, [K][N], or [N][K] when `weightTransposed`. The array itself becomes the
    /// step's B (transposed in place when needed), so a caller that hands over its only reference has the weight
    /// in memory once.
    init(
        input: Int, output: Int, node: String, m: Int, n: Int, k: Int, transA: Bool, alpha: Float,
        weights: consuming [Float], c: [Float]?, weightShape: [Int], weightTransposed: Bool
    ) throws {
        (inputs, outputs, self.node) = ([input], [output], node)
        (self.m, self.n, self.k, self.transA, self.alpha, self.c) = (m, n, k, transA, alpha, c)
        var w = consume weights
        if weightTransposed { transposeInPlace(&w, rows: n, cols: k) }
        b = w
        (self.weightShape, self.weightTransposed) = (weightShape, weightTransposed)
    }

    /// The same product with another weight in the model's layout.
    func replacingWeights(_ w: [Float]) throws -> FGemmStep {
        try FGemmStep(
            input: inputs[0], output: outputs[0], node: node, m: m, n: n, k: k, transA: transA, alpha: alpha,
            weights: w, c: c, weightShape: weightShape, weightTransposed: weightTransposed)
    }

    /// B in the model's own layout.
    var modelWeights: [Float] {
        var out = b
        if weightTransposed { transposeInPlace(&out, rows: k, cols: n) }
        return out
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.f32(inputs[0])
        let y = ctx.f32(outputs[0])
        if let c { y.update(from: c, count: m * n) }
        let (m, n, k, ta, alpha, acc) = (m, n, k, transA, alpha, c != nil)
        b.withUnsafeBufferPointer { bp in
            let bp = bp.baseAddress
            parallelFor(m, threads: ctx.threads) { lo, hi in
                aads_fgemm(
                    Int32(m), Int32(n), Int32(k), x, ta ? 1 : 0, bp, 0, alpha, y, acc ? 1 : 0, Int32(lo), Int32(hi))
            }
        }
    }
}

/// Transposes a `rows`×`cols` row-major matrix in place, following each cycle of the permutation (one bit per
/// element marks what has moved), so a large weight is never held twice.
func transposeInPlace(_ a: inout [Float], rows: Int, cols: Int) {
    let count = rows * cols
    guard rows > 1, cols > 1, a.count == count else { return }
    var moved = [UInt64](repeating: 0, count: (count + 63) / 64)
    a.withUnsafeMutableBufferPointer { p in
        for start in 1..<(count - 1) where moved[start >> 6] & (1 << UInt64(start & 63)) == 0 {
            // The element at i = r·cols + c belongs at c·rows + r.
            var (i, carried) = (start, p[start])
            repeat {
                let next = (i % cols) * rows + i / cols
                swap(&carried, &p[next])
                moved[next >> 6] |= 1 << UInt64(next & 63)
                i = next
            } while i != start
        }
    }
}

/// Float operand: runtime value or constant.
enum FOperand: Sendable {
    case value(Int)
    case constant(AlignedBuffer)
}

/// Float Add / Mul with broadcasting.
final class FBinaryStep: Step, @unchecked Sendable {
    enum Op: Sendable { case add, mul }
    let inputs: [Int], outputs: [Int], node: String
    let op: Op, a: FOperand, b: FOperand, bc: Broadcast
    var kind: String { op == .add ? "fadd" : "fmul" }

    init(op: Op, a: FOperand, b: FOperand, output: Int, broadcast: Broadcast, node: String) {
        var ins: [Int] = []
        if case .value(let i) = a { ins.append(i) }
        if case .value(let i) = b { ins.append(i) }
        (inputs, outputs, self.node, self.op, self.a, self.b, bc) = (ins, [output], node, op, a, b, broadcast)
    }

    func run(_ ctx: ExecContext) {
        func ptr(_ o: FOperand) -> UnsafeMutablePointer<Float> {
            switch o {
            case .value(let i): ctx.f32(i)
            case .constant(let buf): buf.pointer(Float.self)
            }
        }
        let pa = ptr(a)
        let pb = ptr(b)
        let pc = ctx.f32(outputs[0])
        let isAdd = op == .add
        if bc.contiguous.count == 2 && bc.contiguous.allSatisfy({ $0 }) {
            // Same shape and storage (a residual add): one vectorised run over every element, not a call per row.
            let n = bc.dims.reduce(1, *)
            if isAdd {
                for i in 0..<n { pc[i] = pa[i] + pb[i] }
            } else {
                for i in 0..<n { pc[i] = pa[i] * pb[i] }
            }
            return
        }
        bc.forEachRow { o, oa, ob, n, sa, sb in
            if isAdd {
                for i in 0..<n { pc[o + i] = pa[oa + i * sa] + pb[ob + i * sb] }
            } else {
                for i in 0..<n { pc[o + i] = pa[oa + i * sa] * pb[ob + i * sb] }
            }
        }
    }
}

/// Float elementwise functions.
enum UnaryFunction: Sendable, Equatable {
    case relu, sigmoid, hardSwish, identity
    case clip(Float, Float)
    case hardSigmoid(alpha: Float, beta: Float)
    case leakyRelu(Float)

    @inline(__always)
    func apply(_ x: Float) -> Float {
        switch self {
        case .relu: return x > 0 ? x : 0
        case .identity: return x
        case .sigmoid: return 1 / (1 + Foundation.exp(-x))
        case .hardSwish: return x * max(0, min(1, x * (1.0 / 6.0) + 0.5))
        case .clip(let lo, let hi): return UnaryFunction.clamp(x, lo, hi)
        case .hardSigmoid(let a, let b): return max(0, min(1, a * x + b))
        case .leakyRelu(let a): return x >= 0 ? x : a * x
        }
    }

    /// Clip as the convolution kernels clamp (aads_fconv): a NaN becomes lo.
    @inline(__always)
    static func clamp(_ x: Float, _ lo: Float, _ hi: Float) -> Float {
        let m = x > lo ? x : lo
        return m < hi ? m : hi
    }

    static func of(_ node: Node, constants: [String: ConstTensor]) -> UnaryFunction? {
        switch node.op {
        case "Relu": return .relu
        case "Sigmoid": return .sigmoid
        case "HardSwish": return .hardSwish
        case "Identity", "Dropout": return .identity
        case "HardSigmoid": return .hardSigmoid(alpha: node.float("alpha", 0.2), beta: node.float("beta", 0.5))
        case "LeakyRelu": return .leakyRelu(node.float("alpha", 0.01))
        case "Clip":
            var lo = -Float.infinity
            var hi = Float.infinity
            if let n = node.input(1), let c = constants[n] { lo = c.floats.first ?? lo }
            if let n = node.input(2), let c = constants[n] { hi = c.floats.first ?? hi }
            if node.attributes["min"] != nil { lo = node.float("min", lo) }
            if node.attributes["max"] != nil { hi = node.float("max", hi) }
            return .clip(lo, hi)
        default: return nil
        }
    }
}

final class FUnaryStep: Step {
    let inputs: [Int], outputs: [Int], node: String
    let f: UnaryFunction, count: Int
    var kind: String { "funary" }
    var writesInPlace: Bool { true }

    init(input: Int, output: Int, f: UnaryFunction, count: Int, node: String) {
        (inputs, outputs, self.node, self.f, self.count) = ([input], [output], node, f, count)
    }

    func run(_ ctx: ExecContext) { FUnaryStep.apply(f, ctx.f32(inputs[0]), ctx.f32(outputs[0]), count: count) }

    /// y = f(x) over `count` elements; `y` may be `x`.
    @inline(__always)
    static func apply(
        _ f: UnaryFunction, _ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int
    ) {
        switch f {
        case .identity: if y != x { y.update(from: x, count: count) }
        case .relu: for i in 0..<count { y[i] = x[i] > 0 ? x[i] : 0 }
        // ReLU6 and other clips: the bounds outside the loop, so that it vectorises.
        case .clip(let lo, let hi): for i in 0..<count { y[i] = UnaryFunction.clamp(x[i], lo, hi) }
        default: for i in 0..<count { y[i] = f.apply(x[i]) }
        }
    }
}

/// Float pools on NCHW: GlobalAveragePool, AveragePool, MaxPool.
final class FPoolStep: Step {
    enum Kind: Sendable {
        case globalAverage
        case average(countIncludePad: Bool)
        case max
    }
    let inputs: [Int], outputs: [Int], node: String
    let poolKind: Kind, shape: [Int], win: Window?
    var kind: String { "fpool" }

    init(input: Int, output: Int, kind: Kind, shape: [Int], window: Window?, node: String) {
        (inputs, outputs, self.node, poolKind, self.shape, win) = ([input], [output], node, kind, shape, window)
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.f32(inputs[0])
        let y = ctx.f32(outputs[0])
        let (nc, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        guard let win else {
            for i in 0..<nc {
                var s: Float = 0
                for j in 0..<h * w { s += x[i * h * w + j] }
                y[i] = s / Float(h * w)
            }
            return
        }
        for i in 0..<nc {
            let plane = x + i * h * w
            for oh in 0..<win.outH {
                for ow in 0..<win.outW {
                    var acc: Float = 0
                    var best = -Float.infinity
                    var valid = 0
                    for ky in 0..<win.kh {
                        let ih = oh * win.sh - win.padTop + ky * win.dh
                        guard ih >= 0, ih < h else { continue }
                        for kx in 0..<win.kw {
                            let iw = ow * win.sw - win.padLeft + kx * win.dw
                            guard iw >= 0, iw < w else { continue }
                            let v = plane[ih * w + iw]
                            acc += v
                            best = max(best, v)
                            valid += 1
                        }
                    }
                    let o = y + (i * win.outH + oh) * win.outW + ow
                    switch poolKind {
                    case .max: o.pointee = best
                    case .globalAverage: o.pointee = acc / Float(max(1, valid))
                    case .average(let include):
                        if include {
                            let h0 = oh * win.sh - win.padTop
                            let w0 = ow * win.sw - win.padLeft
                            let h1 = min(h0 + (win.kh - 1) * win.dh + 1, h + win.padBottom)
                            let w1 = min(w0 + (win.kw - 1) * win.dw + 1, w + win.padRight)
                            let cnt = ((h1 - h0 + win.dh - 1) / win.dh) * ((w1 - w0 + win.dw - 1) / win.dw)
                            o.pointee = acc / Float(max(1, cnt))
                        } else {
                            o.pointee = acc / Float(max(1, valid))
                        }
                    }
                }
            }
        }
    }
}

/// Float Concat on row-major storage.
final class FConcatStep: Step {
    let inputs: [Int], outputs: [Int], node: String
    let outer: Int, inners: [Int]
    var kind: String { "fconcat" }

    init(inputs: [Int], output: Int, outer: Int, inners: [Int], node: String) {
        (self.inputs, outputs, self.node, self.outer, self.inners) = (inputs, [output], node, outer, inners)
    }

    func run(_ ctx: ExecContext) {
        let y = ctx.f32(outputs[0])
        let total = inners.reduce(0, +)
        var offset = 0
        for (k, id) in inputs.enumerated() {
            let x = ctx.f32(id)
            let inner = inners[k]
            for o in 0..<outer { (y + o * total + offset).update(from: x + o * inner, count: inner) }
            offset += inner
        }
    }
}

/// Float Softmax over one axis.
final class FSoftmaxStep: Step {
    let inputs: [Int], outputs: [Int], node: String
    let outer: Int, axis: Int, inner: Int
    var kind: String { "fsoftmax" }

    init(input: Int, output: Int, shape: [Int], axis: Int, node: String) {
        (inputs, outputs, self.node) = ([input], [output], node)
        outer = shape[..<axis].reduce(1, *)
        self.axis = shape[axis]
        inner = shape[(axis + 1)...].reduce(1, *)
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.f32(inputs[0])
        let y = ctx.f32(outputs[0])
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * axis * inner + i
                var m = -Float.infinity
                for a in 0..<axis { m = max(m, x[base + a * inner]) }
                var s: Float = 0
                for a in 0..<axis {
                    let e = Foundation.exp(x[base + a * inner] - m)
                    y[base + a * inner] = e
                    s += e
                }
                for a in 0..<axis { y[base + a * inner] /= s }
            }
        }
    }
}
