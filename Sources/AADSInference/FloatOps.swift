import CKernels
import Foundation

/// Float convolution, NCHW.
final class FConvStep: Step, @unchecked Sendable {
    let inputs: [Int], outputs: [Int], node: String
    let weights: AlignedBuffer, bias: AlignedBuffer?
    let param: aads_fconv
    let batch: Int, weightShape: [Int]
    var kind: String { "fconv" }

    init(
        input: Int, output: Int, node: String, inShape: [Int], outShape: [Int], weights: [Float], weightShape: [Int],
        bias: [Float]?, group: Int, window: Window
    ) throws {
        (inputs, outputs, self.node, self.weightShape) = ([input], [output], node, weightShape)
        self.weights = try AlignedBuffer(weights)
        self.bias = try bias.map { try AlignedBuffer($0) }
        batch = inShape[0]
        param = aads_fconv(
            cin: Int32(inShape[1]), in_h: Int32(inShape[2]), in_w: Int32(inShape[3]), cout: Int32(outShape[1]),
            out_h: Int32(outShape[2]), out_w: Int32(outShape[3]), group: Int32(group), kh: Int32(window.kh),
            kw: Int32(window.kw), stride_h: Int32(window.sh), stride_w: Int32(window.sw), pad_t: Int32(window.padTop),
            pad_l: Int32(window.padLeft), dil_h: Int32(window.dh), dil_w: Int32(window.dw),
            weights: UnsafePointer(self.weights.pointer(Float.self)),
            bias: self.bias.map { UnsafePointer($0.pointer(Float.self)) })
    }

    /// The same convolution with other weights (ONNX layout).
    func replacingWeights(_ w: [Float]) throws -> FConvStep {
        let copy = try FConvStep(
            input: inputs[0], output: outputs[0], node: node, inShape: [], outShape: [], weights: w,
            weightShape: weightShape, bias: nil, group: 1,
            window: Window(
                kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, padTop: 0, padLeft: 0, padBottom: 0, padRight: 0, outH: 1,
                outW: 1),
            sharing: self)
        return copy
    }

    /// Copies geometry and bias from `other`, with new weights.
    private init(
        input: Int, output: Int, node: String, inShape: [Int], outShape: [Int], weights: [Float], weightShape: [Int],
        bias: [Float]?, group: Int, window: Window, sharing other: FConvStep
    ) throws {
        (inputs, outputs, self.node, self.weightShape) = ([input], [output], node, weightShape)
        self.weights = try AlignedBuffer(weights)
        self.bias = other.bias
        batch = other.batch
        var p = other.param
        p.weights = UnsafePointer(self.weights.pointer(Float.self))
        param = p
    }

    var floatWeights: [Float] {
        Array(UnsafeBufferPointer(start: weights.pointer(Float.self), count: weightShape.reduce(1, *)))
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.f32(inputs[0])
        let y = ctx.f32(outputs[0])
        let inImage = Int(param.cin * param.in_h * param.in_w)
        let outImage = Int(param.cout * param.out_h * param.out_w)
        let p = param
        for b in 0..<batch {
            parallelFor(Int(p.cout), threads: ctx.threads) { lo, hi in
                var pp = p
                aads_fconv_run(&pp, x + b * inImage, y + b * outImage, Int32(lo), Int32(hi))
            }
        }
    }
}

/// Float Gemm / MatMul with a constant right-hand side: Y = alpha·A·B + beta·C.
final class FGemmStep: Step, @unchecked Sendable {
    let inputs: [Int], outputs: [Int], node: String
    let m: Int, n: Int, k: Int, transA: Bool, alpha: Float
    /// B as [K][N].
    let b: AlignedBuffer
    /// beta·C broadcast to [M][N], or nil.
    let c: [Float]?
    /// The weight as stored in the model (for adaptation): shape and whether it was [N][K].
    let weightShape: [Int], weightTransposed: Bool
    var kind: String { "fgemm" }

    /// `weights`: B as the model stores it, [K][N], or [N][K] when `weightTransposed`.
    init(
        input: Int, output: Int, node: String, m: Int, n: Int, k: Int, transA: Bool, alpha: Float, weights: [Float],
        c: [Float]?, weightShape: [Int], weightTransposed: Bool
    ) throws {
        (inputs, outputs, self.node) = ([input], [output], node)
        (self.m, self.n, self.k, self.transA, self.alpha, self.c) = (m, n, k, transA, alpha, c)
        if weightTransposed {  // straight into the kernel's layout: no second full-size copy while loading
            b = try AlignedBuffer(byteCount: k * n * MemoryLayout<Float>.stride)
            let p = b.pointer(Float.self)
            weights.withUnsafeBufferPointer { w in
                for j in 0..<n { for kk in 0..<k { p[kk * n + j] = w[j * k + kk] } }
            }
        } else {
            b = try AlignedBuffer(weights)
        }
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
        let p = b.pointer(Float.self)
        if !weightTransposed { return Array(UnsafeBufferPointer(start: p, count: k * n)) }
        var out = [Float](repeating: 0, count: k * n)
        for j in 0..<n { for kk in 0..<k { out[j * k + kk] = p[kk * n + j] } }
        return out
    }

    func run(_ ctx: ExecContext) {
        let x = ctx.f32(inputs[0])
        let y = ctx.f32(outputs[0])
        if let c { y.update(from: c, count: m * n) }
        let (m, n, k, ta, alpha, acc) = (m, n, k, transA, alpha, c != nil)
        let bp = b.pointer(Float.self)
        parallelFor(m, threads: ctx.threads) { lo, hi in
            aads_fgemm(Int32(m), Int32(n), Int32(k), x, ta ? 1 : 0, bp, 0, alpha, y, acc ? 1 : 0, Int32(lo), Int32(hi))
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
        case .clip(let lo, let hi): return min(max(x, lo), hi)
        case .hardSigmoid(let a, let b): return max(0, min(1, a * x + b))
        case .leakyRelu(let a): return x >= 0 ? x : a * x
        }
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

    func run(_ ctx: ExecContext) {
        let x = ctx.f32(inputs[0])
        let y = ctx.f32(outputs[0])
        let f = self.f
        switch f {
        case .identity: if y != x { y.update(from: x, count: count) }
        case .relu: for i in 0..<count { y[i] = x[i] > 0 ? x[i] : 0 }
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
