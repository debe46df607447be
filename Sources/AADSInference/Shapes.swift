import Foundation

/// Shape and element type of a tensor.
struct TensorMeta: Sendable {
    var shape: [Int]
    var dtype: DType
    var count: Int { shape.reduce(1, *) }
}

/// Resolved spatial geometry of a Conv or pooling node.
struct Window: Sendable, Equatable {
    var kh: Int, kw: Int
    var sh: Int, sw: Int
    var dh: Int, dw: Int
    var padTop: Int, padLeft: Int, padBottom: Int, padRight: Int
    var outH: Int, outW: Int

    /// Calls `body(ih, iw)` for each tap of output pixel (oh, ow) that lies inside an h x w input, row by row.
    @inline(__always)
    func forEachTapInside(oh: Int, ow: Int, h: Int, w: Int, _ body: (Int, Int) -> Void) {
        for ky in 0..<kh {
            let ih = oh * sh - padTop + ky * dh
            guard ih >= 0, ih < h else { continue }
            for kx in 0..<kw {
                let iw = ow * sw - padLeft + kx * dw
                guard iw >= 0, iw < w else { continue }
                body(ih, iw)
            }
        }
    }
}

/// The operators the engine runs.
let supportedOperators: Set<String> = [
    "QuantizeLinear", "DequantizeLinear", "Conv", "Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "LeakyRelu",
    "Mul", "Add", "GlobalAveragePool", "AveragePool", "MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze",
    "Concat", "Gemm", "MatMul", "Softmax", "Identity", "Dropout",
]

/// Shape inference for the supported operators, with the consistency checks that make later stages safe.
enum ShapeInference {
    struct Result: Sendable {
        var metas: [String: TensorMeta]
        /// Multiply-accumulates per node name.
        var macs: [String: Int]
    }

    static func run(_ g: Graph, inputShapes: [String: [Int]]? = nil) throws -> Result {
        var metas: [String: TensorMeta] = [:]
        for (name, c) in g.constants { metas[name] = TensorMeta(shape: c.shape, dtype: c.dtype) }
        for i in g.inputs { metas[i.name] = TensorMeta(shape: inputShapes?[i.name] ?? i.shape, dtype: i.dtype) }
        var macs: [String: Int] = [:]
        for node in g.nodes {
            guard node.domain.isEmpty || node.domain == "ai.onnx" else {
                throw fail(
                    .unsupportedOperator,
                    "operator '\(node.op)' of domain '\(node.domain)' (node '\(node.label)') is not supported")
            }
            guard supportedOperators.contains(node.op) else {
                throw fail(.unsupportedOperator, "operator '\(node.op)' (node '\(node.label)') is not supported")
            }
            let (outs, m) = try infer(node, metas: metas, constants: g.constants, opset: g.opset)
            guard outs.count >= 1, outs.count <= node.outputs.count else {
                throw fail(.badModel, "node '\(node.label)' has \(node.outputs.count) outputs")
            }
            for (name, meta) in zip(node.outputs, outs) {
                _ = try ModelLoader.checkedCount(meta.shape, context: "tensor '\(name)'")
                metas[name] = meta
            }
            macs[node.name] = m
        }
        return Result(metas: metas, macs: macs)
    }

    static func meta(_ node: Node, _ i: Int, _ metas: [String: TensorMeta]) throws -> TensorMeta {
        guard let name = node.input(i) else {
            throw fail(.badModel, "node '\(node.label)' lacks input \(i)")
        }
        guard let m = metas[name] else {
            throw fail(.missingInitializer, "node '\(node.label)' reads '\(name)', which is not defined")
        }
        return m
    }

    static func requireFloat(_ node: Node, _ m: TensorMeta, _ what: String = "input") throws {
        guard m.dtype == .float32 else {
            throw fail(
                .unsupportedOperator,
                "\(node.op) node '\(node.label)' needs a float \(what), got \(m.dtype.rawValue)")
        }
    }

    static func constInts(_ node: Node, _ i: Int, _ constants: [String: ConstTensor], what: String) throws -> [Int]? {
        guard let name = node.input(i) else { return nil }
        guard let c = constants[name], let v = c.ints else {
            throw fail(
                .unsupportedOperator,
                "\(node.op) node '\(node.label)': the \(what) input must be a constant integer tensor")
        }
        return v
    }

    static func normalizeAxis(_ axis: Int, rank: Int, _ node: Node) throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0, a < rank else {
            throw fail(.shapeMismatch, "node '\(node.label)': axis \(axis) is out of range for rank \(rank)")
        }
        return a
    }

    static func broadcast(_ a: [Int], _ b: [Int], _ node: Node) throws -> [Int] {
        let r = max(a.count, b.count)
        let pa = [Int](repeating: 1, count: r - a.count) + a
        let pb = [Int](repeating: 1, count: r - b.count) + b
        var out: [Int] = []
        for (x, y) in zip(pa, pb) {
            guard x == y || x == 1 || y == 1 else {
                throw fail(.shapeMismatch, "node '\(node.label)': shapes \(a) and \(b) do not broadcast")
            }
            out.append(x == 1 ? y : x)
        }
        return out
    }

    /// Resolves kernel, strides, dilations and padding of a Conv or pool on an [N, C, H, W] input.
    static func window(_ node: Node, inH: Int, inW: Int, kernel: (Int, Int), ceilMode: Bool = false) throws -> Window {
        let (kh, kw) = kernel
        let strides = node.ints("strides") ?? [1, 1]
        let dil = node.ints("dilations") ?? [1, 1]
        guard strides.count == 2, dil.count == 2, strides.allSatisfy({ $0 >= 1 && $0 <= 64 }),
            dil.allSatisfy({ $0 >= 1 && $0 <= 64 }), kh >= 1, kw >= 1, kh <= 64, kw <= 64
        else {
            throw fail(.unsupportedOperator, "node '\(node.label)': unsupported kernel, strides or dilations")
        }
        let ekh = (kh - 1) * dil[0] + 1
        let ekw = (kw - 1) * dil[1] + 1
        var w = Window(
            kh: kh, kw: kw, sh: strides[0], sw: strides[1], dh: dil[0], dw: dil[1], padTop: 0, padLeft: 0,
            padBottom: 0, padRight: 0, outH: 0, outW: 0)
        let autoPad = node.string("auto_pad") ?? "NOTSET"
        switch autoPad {
        case "NOTSET":
            let pads = node.ints("pads") ?? [0, 0, 0, 0]
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 && $0 <= 64 }) else {
                throw fail(.unsupportedOperator, "node '\(node.label)': unsupported pads \(pads)")
            }
            (w.padTop, w.padLeft, w.padBottom, w.padRight) = (pads[0], pads[1], pads[2], pads[3])
            func out(_ n: Int, _ p: Int, _ k: Int, _ s: Int) -> Int {
                let span = n + p - k
                if span < 0 { return 0 }
                return (ceilMode ? (span + s - 1) / s : span / s) + 1
            }
            w.outH = out(inH, w.padTop + w.padBottom, ekh, w.sh)
            w.outW = out(inW, w.padLeft + w.padRight, ekw, w.sw)
            if ceilMode {
                // The last window must start inside the input or the leading padding.
                if (w.outH - 1) * w.sh >= inH + w.padTop { w.outH -= 1 }
                if (w.outW - 1) * w.sw >= inW + w.padLeft { w.outW -= 1 }
            }
        case "SAME_UPPER", "SAME_LOWER":
            w.outH = (inH + w.sh - 1) / w.sh
            w.outW = (inW + w.sw - 1) / w.sw
            let th = max(0, (w.outH - 1) * w.sh + ekh - inH)
            let tw = max(0, (w.outW - 1) * w.sw + ekw - inW)
            if autoPad == "SAME_UPPER" {
                (w.padTop, w.padLeft) = (th / 2, tw / 2)
            } else {
                (w.padTop, w.padLeft) = ((th + 1) / 2, (tw + 1) / 2)
            }
            (w.padBottom, w.padRight) = (th - w.padTop, tw - w.padLeft)
        case "VALID":
            w.outH = inH >= ekh ? (inH - ekh) / w.sh + 1 : 0
            w.outW = inW >= ekw ? (inW - ekw) / w.sw + 1 : 0
        default:
            throw fail(.unsupportedOperator, "node '\(node.label)': auto_pad \(autoPad) is not supported")
        }
        guard w.outH >= 1, w.outW >= 1 else {
            throw fail(.shapeMismatch, "node '\(node.label)': the window does not fit the \(inH)x\(inW) input")
        }
        guard w.padTop < ekh, w.padBottom < ekh, w.padLeft < ekw, w.padRight < ekw else {
            throw fail(.unsupportedOperator, "node '\(node.label)': padding larger than the kernel")
        }
        return w
    }

    static func quantParams(
        _ node: Node, _ metas: [String: TensorMeta], _ constants: [String: ConstTensor], dataShape: [Int]
    )
        throws -> DType
    {
        guard let sName = node.input(1), let scale = constants[sName], case .float = scale.storage else {
            throw fail(.unsupportedOperator, "\(node.op) node '\(node.label)': the scale must be a float constant")
        }
        var zpType: DType = .uint8
        if let zName = node.input(2) {
            guard let zp = constants[zName] else {
                throw fail(.unsupportedOperator, "\(node.op) node '\(node.label)': the zero point must be a constant")
            }
            guard zp.count == scale.count else {
                throw fail(.shapeMismatch, "\(node.op) node '\(node.label)': scale and zero point differ in size")
            }
            zpType = zp.dtype
        }
        guard scale.floats.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw fail(.badModel, "\(node.op) node '\(node.label)': scales must be positive and finite")
        }
        if scale.count != 1 || scale.shape.count > 1 {
            guard scale.shape.count == 1, !dataShape.isEmpty else {
                throw fail(
                    .unsupportedOperator, "\(node.op) node '\(node.label)': blocked quantization is not supported")
            }
            let axis = try normalizeAxis(node.int("axis", 1), rank: dataShape.count, node)
            guard dataShape[axis] == scale.count else {
                throw fail(
                    .shapeMismatch,
                    "\(node.op) node '\(node.label)': \(scale.count) scales for axis of \(dataShape[axis])")
            }
        }
        return zpType
    }

    static func infer(_ node: Node, metas: [String: TensorMeta], constants: [String: ConstTensor], opset: Int)
        throws -> ([TensorMeta], Int)
    {
        func m(_ i: Int) throws -> TensorMeta { try meta(node, i, metas) }
        switch node.op {
        case "QuantizeLinear":
            let x = try m(0)
            try requireFloat(node, x)
            let t = try quantParams(node, metas, constants, dataShape: x.shape)
            guard t == .int8 || t == .uint8 else {
                throw fail(.unsupportedOperator, "QuantizeLinear node '\(node.label)' produces \(t.rawValue)")
            }
            return ([TensorMeta(shape: x.shape, dtype: t)], 0)
        case "DequantizeLinear":
            let x = try m(0)
            guard x.dtype == .int8 || x.dtype == .uint8 || (x.dtype == .int32 && constants[node.inputs[0]] != nil)
            else {
                throw fail(.unsupportedOperator, "DequantizeLinear node '\(node.label)' reads \(x.dtype.rawValue)")
            }
            _ = try quantParams(node, metas, constants, dataShape: x.shape)
            if let z = node.input(2), constants[z]?.dtype != x.dtype {
                throw fail(.badModel, "DequantizeLinear node '\(node.label)': zero point type differs from the data")
            }
            return ([TensorMeta(shape: x.shape, dtype: .float32)], 0)
        case "Conv":
            let x = try m(0)
            let w = try m(1)
            try requireFloat(node, x)
            try requireFloat(node, w, "weight")
            guard x.shape.count == 4, w.shape.count == 4 else {
                throw fail(.unsupportedOperator, "Conv node '\(node.label)': only 2-D convolutions are supported")
            }
            let group = node.int("group", 1)
            let (c, mOut) = (x.shape[1], w.shape[0])
            guard group >= 1, c % group == 0, mOut % group == 0, w.shape[1] * group == c else {
                throw fail(
                    .shapeMismatch,
                    "Conv node '\(node.label)': weight \(w.shape) does not fit input \(x.shape) with group \(group)")
            }
            if let ks = node.ints("kernel_shape"), ks != [w.shape[2], w.shape[3]] {
                throw fail(.shapeMismatch, "Conv node '\(node.label)': kernel_shape \(ks) differs from the weight")
            }
            if node.input(2) != nil {
                let b = try m(2)
                guard b.count == mOut, b.shape.count == 1 else {
                    throw fail(.shapeMismatch, "Conv node '\(node.label)': bias \(b.shape) for \(mOut) channels")
                }
            }
            let win = try window(node, inH: x.shape[2], inW: x.shape[3], kernel: (w.shape[2], w.shape[3]))
            let out = [x.shape[0], mOut, win.outH, win.outW]
            let macs = out.reduce(1, *) * (c / group) * win.kh * win.kw
            return ([TensorMeta(shape: out, dtype: .float32)], macs)
        case "Relu", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Identity", "Dropout":
            let x = try m(0)
            try requireFloat(node, x)
            return ([TensorMeta(shape: x.shape, dtype: .float32)], 0)
        case "Clip":
            let x = try m(0)
            try requireFloat(node, x)
            for i in 1..<3 {
                if let name = node.input(i) {
                    guard let c = constants[name], c.count == 1, case .float = c.storage else {
                        throw fail(
                            .unsupportedOperator, "Clip node '\(node.label)': min and max must be float constants")
                    }
                }
            }
            return ([TensorMeta(shape: x.shape, dtype: .float32)], 0)
        case "Softmax":
            let x = try m(0)
            try requireFloat(node, x)
            _ = try normalizeAxis(node.int("axis", -1), rank: x.shape.count, node)
            return ([TensorMeta(shape: x.shape, dtype: .float32)], 0)
        case "Add", "Mul":
            let a = try m(0)
            let b = try m(1)
            try requireFloat(node, a)
            try requireFloat(node, b)
            let out = try broadcast(a.shape, b.shape, node)
            return ([TensorMeta(shape: out, dtype: .float32)], 0)
        case "GlobalAveragePool":
            let x = try m(0)
            try requireFloat(node, x)
            guard x.shape.count == 4 else {
                throw fail(
                    .unsupportedOperator, "GlobalAveragePool node '\(node.label)': only 4-D inputs are supported")
            }
            return ([TensorMeta(shape: [x.shape[0], x.shape[1], 1, 1], dtype: .float32)], 0)
        case "AveragePool", "MaxPool":
            let x = try m(0)
            try requireFloat(node, x)
            guard x.shape.count == 4 else {
                throw fail(.unsupportedOperator, "\(node.op) node '\(node.label)': only 2-D pooling is supported")
            }
            guard node.outputs.count == 1 else {
                throw fail(.unsupportedOperator, "MaxPool node '\(node.label)': the indices output is not supported")
            }
            guard let ks = node.ints("kernel_shape"), ks.count == 2 else {
                throw fail(.badModel, "\(node.op) node '\(node.label)' needs a 2-D kernel_shape")
            }
            if node.op == "MaxPool" && node.int("storage_order", 0) != 0 {
                throw fail(.unsupportedOperator, "MaxPool node '\(node.label)': storage_order 1 is not supported")
            }
            let win = try window(
                node, inH: x.shape[2], inW: x.shape[3], kernel: (ks[0], ks[1]), ceilMode: node.int("ceil_mode", 0) != 0)
            return ([TensorMeta(shape: [x.shape[0], x.shape[1], win.outH, win.outW], dtype: .float32)], 0)
        case "Flatten":
            let x = try m(0)
            try requireFloat(node, x)
            let r = x.shape.count
            var axis = node.int("axis", 1)
            if axis < 0 { axis += r }
            guard axis >= 0, axis <= r else {
                throw fail(.shapeMismatch, "Flatten node '\(node.label)': axis out of range")
            }
            let out = [x.shape[..<axis].reduce(1, *), x.shape[axis...].reduce(1, *)]
            return ([TensorMeta(shape: out, dtype: .float32)], 0)
        case "Reshape":
            let x = try m(0)
            try requireFloat(node, x)
            guard let spec = try constInts(node, 1, constants, what: "shape") else {
                throw fail(.badModel, "Reshape node '\(node.label)' lacks its shape input")
            }
            let allowZero = node.int("allowzero", 0) != 0
            var out: [Int] = []
            var inferred: Int?
            for (i, d) in spec.enumerated() {
                if d == -1 {
                    guard inferred == nil else {
                        throw fail(.shapeMismatch, "Reshape node '\(node.label)': two -1 dimensions")
                    }
                    inferred = i
                    out.append(1)
                } else if d == 0 && !allowZero {
                    guard i < x.shape.count else {
                        throw fail(.shapeMismatch, "Reshape node '\(node.label)': 0 beyond the input rank")
                    }
                    out.append(x.shape[i])
                } else {
                    guard d >= 1, d <= ModelLoader.maxDimension else {
                        throw fail(.shapeMismatch, "Reshape node '\(node.label)': dimension \(d)")
                    }
                    out.append(d)
                }
            }
            let known = try ModelLoader.checkedCount(out, context: "Reshape node '\(node.label)'")
            if let i = inferred {
                guard known > 0, x.count % known == 0 else {
                    throw fail(.shapeMismatch, "Reshape node '\(node.label)': \(x.shape) cannot become \(spec)")
                }
                out[i] = x.count / known
            }
            guard out.reduce(1, *) == x.count else {
                throw fail(.shapeMismatch, "Reshape node '\(node.label)': \(x.shape) cannot become \(spec)")
            }
            return ([TensorMeta(shape: out, dtype: .float32)], 0)
        case "Squeeze":
            let x = try m(0)
            try requireFloat(node, x)
            let axesSpec = try constInts(node, 1, constants, what: "axes") ?? node.ints("axes")
            var out: [Int] = []
            if let axesSpec {
                let axes = Set(try axesSpec.map { try normalizeAxis($0, rank: x.shape.count, node) })
                for (i, d) in x.shape.enumerated() {
                    if axes.contains(i) {
                        guard d == 1 else {
                            throw fail(.shapeMismatch, "Squeeze node '\(node.label)': axis \(i) has size \(d)")
                        }
                    } else {
                        out.append(d)
                    }
                }
            } else {
                out = x.shape.filter { $0 != 1 }
            }
            return ([TensorMeta(shape: out, dtype: .float32)], 0)
        case "Unsqueeze":
            let x = try m(0)
            try requireFloat(node, x)
            guard let axesSpec = try constInts(node, 1, constants, what: "axes") ?? node.ints("axes") else {
                throw fail(.badModel, "Unsqueeze node '\(node.label)' lacks axes")
            }
            let rank = x.shape.count + axesSpec.count
            let axes = Set(try axesSpec.map { try normalizeAxis($0, rank: rank, node) })
            guard axes.count == axesSpec.count else {
                throw fail(.shapeMismatch, "Unsqueeze node '\(node.label)': repeated axes")
            }
            var out: [Int] = []
            var it = x.shape.makeIterator()
            for i in 0..<rank { out.append(axes.contains(i) ? 1 : (it.next() ?? 1)) }
            return ([TensorMeta(shape: out, dtype: .float32)], 0)
        case "Concat":
            guard !node.inputs.isEmpty else { throw fail(.badModel, "Concat node '\(node.label)' has no inputs") }
            let first = try m(0)
            let axis = try normalizeAxis(node.int("axis", 0), rank: first.shape.count, node)
            var out = first.shape
            out[axis] = 0
            for i in 0..<node.inputs.count {
                let x = try m(i)
                try requireFloat(node, x)
                guard x.shape.count == first.shape.count,
                    (0..<x.shape.count).allSatisfy({ $0 == axis || x.shape[$0] == first.shape[$0] })
                else {
                    throw fail(.shapeMismatch, "Concat node '\(node.label)': \(x.shape) does not fit \(first.shape)")
                }
                out[axis] += x.shape[axis]
            }
            return ([TensorMeta(shape: out, dtype: .float32)], 0)
        case "Gemm":
            let a = try m(0)
            let b = try m(1)
            try requireFloat(node, a)
            try requireFloat(node, b)
            guard a.shape.count == 2, b.shape.count == 2 else {
                throw fail(.shapeMismatch, "Gemm node '\(node.label)' needs 2-D inputs, got \(a.shape) and \(b.shape)")
            }
            let ta = node.int("transA", 0) != 0
            let tb = node.int("transB", 0) != 0
            let (mm, k) = ta ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
            let (k2, n) = tb ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
            guard k == k2 else {
                throw fail(.shapeMismatch, "Gemm node '\(node.label)': \(a.shape) and \(b.shape) do not multiply")
            }
            if node.input(2) != nil {
                let c = try m(2)
                try requireFloat(node, c, "bias")
                let bc = try broadcast(c.shape, [mm, n], node)
                guard bc == [mm, n] else { throw fail(.shapeMismatch, "Gemm node '\(node.label)': bias \(c.shape)") }
            }
            return ([TensorMeta(shape: [mm, n], dtype: .float32)], mm * n * k)
        case "MatMul":
            let a = try m(0)
            let b = try m(1)
            try requireFloat(node, a)
            try requireFloat(node, b)
            guard a.shape.count >= 2, b.shape.count == 2 else {
                throw fail(.unsupportedOperator, "MatMul node '\(node.label)': only [..., M, K] x [K, N] is supported")
            }
            guard a.shape.last == b.shape[0] else {
                throw fail(.shapeMismatch, "MatMul node '\(node.label)': \(a.shape) and \(b.shape) do not multiply")
            }
            let out = Array(a.shape.dropLast()) + [b.shape[1]]
            return ([TensorMeta(shape: out, dtype: .float32)], a.count * b.shape[1])
        default:
            throw fail(.unsupportedOperator, "operator '\(node.op)' (node '\(node.label)') is not supported")
        }
    }
}
