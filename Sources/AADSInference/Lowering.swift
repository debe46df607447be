import CKernels
import Foundation

/// A quantized constant: int8 (uint8 shifted by −128) or int32 data with per-tensor or per-axis parameters.
struct QConst: Sendable {
    var shape: [Int]
    var int8: [Int8]?
    var int32: [Int32]?
    var scales: [Float]
    var zeroPoints: [Int32]
    var axis: Int

    var count: Int { shape.reduce(1, *) }
    var perTensor: Bool { scales.count == 1 }

    /// Parameters of element `i` (row-major).
    func paramIndex(_ i: Int) -> Int {
        guard !perTensor else { return 0 }
        let inner = shape[(axis + 1)...].reduce(1, *)
        return (i / inner) % shape[axis]
    }

    func dequantized() -> [Float] {
        (0..<count).map { i in
            let p = paramIndex(i)
            let q = int8.map { Int32($0[i]) } ?? int32.map { $0[i] } ?? 0
            return Float(Int64(q) - Int64(zeroPoints[p])) * scales[p]
        }
    }
}

/// The executable form of a model: runtime values and the steps that compute them, in order.
struct Program: Sendable {
    var values: [Value]
    var steps: [any Step]
    var valueIds: [String: Int]
    /// Float tensors of the ONNX graph that lowering folded into an int8 operator, mapped to the int8 value that
    /// holds (the quantized form of) the same data.
    var aliases: [String: String]
    /// Float values produced by DequantizeLinear steps: their int8 source value.
    var dequantizedFrom: [Int: Int]
    var inputs: [GraphInput]
    var outputs: [String]
    /// Conv/Gemm/MatMul node name → the float-domain name of its data input in the ONNX graph.
    var dataInputOfNode: [String: String]
    /// Graph input name → parameters of the QuantizeLinear it feeds (when it feeds exactly one).
    var inputQuantization: [String: (output: String, q: QParams)]

    func producerIndex() -> [Int: Int] {
        var p: [Int: Int] = [:]
        for (i, s) in steps.enumerated() { for o in s.outputs { p[o] = i } }
        return p
    }
}

/// Turns a validated graph into a `Program`, lowering QDQ groups to integer operators.
struct Lowering {
    var g: Graph
    let metas: [String: TensorMeta]
    var values: [Value] = []
    var valueIds: [String: Int] = [:]
    var steps: [any Step] = []
    var aliases: [String: String] = [:]
    var dequantizedFrom: [Int: Int] = [:]
    var qconsts: [String: QConst] = [:]
    var consumers: [String: [Int]] = [:]
    var producer: [String: Int] = [:]
    var absorbed = Set<Int>()
    let graphOutputs: Set<String>
    var dataInputOfNode: [String: String] = [:]

    init(graph: consuming Graph, metas: [String: TensorMeta]) {
        g = consume graph
        self.metas = metas
        graphOutputs = Set(g.outputs)
        for (i, n) in g.nodes.enumerated() {
            for input in n.inputs where !input.isEmpty { consumers[input, default: []].append(i) }
            for o in n.outputs { producer[o] = i }
        }
    }

    static func lower(_ graph: consuming Graph, metas: [String: TensorMeta]) throws -> Program {
        var l = Lowering(graph: consume graph, metas: metas)
        try l.run()
        var inputQ: [String: (output: String, q: QParams)] = [:]
        for input in l.g.inputs where input.dtype == .float32 {
            guard let cons = l.consumers[input.name], cons.count == 1 else { continue }
            let n = l.g.nodes[cons[0]]
            if n.op == "QuantizeLinear", let q = try? l.tensorParams(n), let id = l.valueIds[n.outputs[0]],
                l.values[id].quant != nil
            {
                inputQ[input.name] = (n.outputs[0], q)
            }
        }
        for o in l.g.outputs where l.valueIds[o] == nil && l.aliases[o] == nil {
            throw fail(.unsupportedModel, "graph output '\(o)' is not computed at run time")
        }
        return Program(
            values: l.values, steps: l.steps, valueIds: l.valueIds, aliases: l.aliases,
            dequantizedFrom: l.dequantizedFrom, inputs: l.g.inputs, outputs: l.g.outputs,
            dataInputOfNode: l.dataInputOfNode, inputQuantization: inputQ)
    }

    // MARK: - Values

    mutating func addValue(_ name: String, quant: QParams?) -> Int {
        if let id = valueIds[name] { return id }
        let id = values.count
        values.append(Value(name: name, shape: metas[name]?.shape ?? [], quant: quant))
        valueIds[name] = id
        return id
    }

    func runtime(_ name: String, _ node: Node) throws -> Int {
        guard let id = valueIds[name] else {
            throw fail(.unsupportedOperator, "node '\(node.label)' reads '\(name)', which is not computed at run time")
        }
        return id
    }

    func shape(_ name: String) -> [Int] { metas[name]?.shape ?? [] }

    /// Per-tensor parameters of a QuantizeLinear/DequantizeLinear node (uint8 mapped onto int8).
    func tensorParams(_ node: Node) throws -> QParams {
        guard let s = node.input(1).flatMap({ g.constants[$0] }), s.count == 1, let scale = s.floats.first else {
            throw fail(
                .unsupportedOperator,
                "\(node.op) node '\(node.label)': per-axis activation quantization is not supported")
        }
        var zp: Int32 = 0
        var shift: Int32 = -128  // uint8 when the zero point is absent
        if let z = node.input(2).flatMap({ g.constants[$0] }) {
            guard z.count == 1, let v = z.ints?.first else {
                throw fail(.unsupportedOperator, "\(node.op) node '\(node.label)': unsupported zero point")
            }
            guard z.dtype == .int8 || z.dtype == .uint8 else {
                throw fail(
                    .unsupportedOperator,
                    "\(node.op) node '\(node.label)': \(z.dtype.rawValue) quantization is not supported")
            }
            zp = Int32(truncatingIfNeeded: v)
            shift = z.dtype == .uint8 ? -128 : 0
        }
        return QParams(scale: scale, zeroPoint: zp + shift)
    }

    /// Parameters of a (possibly per-axis) quantization node reading constant data of `shape`.
    func constParams(_ node: Node, rank: Int) throws -> (scales: [Float], zps: [Int32], axis: Int, shift: Int32) {
        guard let s = node.input(1).flatMap({ g.constants[$0] }) else {
            throw fail(.badModel, "\(node.op) node '\(node.label)' lacks its scale")
        }
        let scales = s.floats
        var zps = [Int32](repeating: 0, count: scales.count)
        var shift: Int32 = node.op == "QuantizeLinear" ? -128 : 0
        if let z = node.input(2).flatMap({ g.constants[$0] }) {
            zps = (z.ints ?? []).map { Int32(truncatingIfNeeded: $0) }
            shift = z.dtype == .uint8 ? -128 : 0
        }
        let axis =
            scales.count == 1 || rank == 0
            ? 0 : (try ShapeInference.normalizeAxis(node.int("axis", 1), rank: rank, node))
        return (scales, zps.map { $0 &+ shift }, axis, shift)
    }

    // MARK: - Driver

    mutating func run() throws {
        for input in g.inputs {
            switch input.dtype {
            case .float32: _ = addValue(input.name, quant: nil)
            case .int8, .uint8:
                // The parameters come from the DequantizeLinear that reads the input.
                guard let c = consumers[input.name]?.first, g.nodes[c].op == "DequantizeLinear" else {
                    throw fail(.unsupportedModel, "int8 graph input '\(input.name)' must feed a DequantizeLinear")
                }
                _ = addValue(input.name, quant: try tensorParams(g.nodes[c]))
            default:
                throw fail(.unsupportedModel, "graph input '\(input.name)' has type \(input.dtype.rawValue)")
            }
        }
        for (i, node) in g.nodes.enumerated() where !absorbed.contains(i) {
            switch node.op {
            case "QuantizeLinear": try lowerQuantize(node)
            case "DequantizeLinear": try lowerDequantize(node)
            default:
                if try lowerInt8(i, node) { continue }
                try lowerFloat(node)
            }
        }
    }

    mutating func lowerQuantize(_ node: Node) throws {
        let x = node.inputs[0]
        let y = node.outputs[0]
        if let c = g.constants[x], case .float(let data) = c.storage {
            // Constant folding: quantized weights stored as float.
            let p = try constParams(node, rank: c.shape.count)
            var qc = QConst(shape: c.shape, int8: nil, int32: nil, scales: p.scales, zeroPoints: p.zps, axis: p.axis)
            qc.int8 = data.enumerated().map { i, v in
                let k = qc.paramIndex(i)
                return quantize(v, QParams(scale: p.scales[k], zeroPoint: p.zps[k]))
            }
            qconsts[y] = qc
            return
        }
        let q = try tensorParams(node)
        let xi = try runtime(x, node)
        guard values[xi].quant == nil else {
            throw fail(.unsupportedOperator, "QuantizeLinear node '\(node.label)' reads an int8 tensor")
        }
        let yi = addValue(y, quant: q)
        steps.append(QuantizeStep(input: xi, output: yi, shape: values[xi].shape, q: q, node: node.name))
    }

    mutating func lowerDequantize(_ node: Node) throws {
        let x = node.inputs[0]
        let y = node.outputs[0]
        if let c = g.constants[x] {
            let p = try constParams(node, rank: c.shape.count)
            var qc = QConst(shape: c.shape, int8: nil, int32: nil, scales: p.scales, zeroPoints: p.zps, axis: p.axis)
            switch c.storage {
            case .int8(let v): qc.int8 = v
            case .uint8(let v): qc.int8 = v.map { Int8(truncatingIfNeeded: Int32($0) - 128) }
            case .int32(let v): qc.int32 = v
            default:
                throw fail(.unsupportedOperator, "DequantizeLinear node '\(node.label)' reads \(c.dtype.rawValue) data")
            }
            qconsts[y] = qc
            return
        }
        if let folded = qconsts[x] {
            // DequantizeLinear of a folded QuantizeLinear of a constant: same parameters.
            qconsts[y] = folded
            return
        }
        let xi = try runtime(x, node)
        let q = try tensorParams(node)
        guard let vq = values[xi].quant, vq == q else {
            throw fail(
                .unsupportedOperator, "DequantizeLinear node '\(node.label)' does not match the parameters of '\(x)'")
        }
        let yi = addValue(y, quant: nil)
        dequantizedFrom[yi] = xi
        steps.append(DequantizeStep(input: xi, output: yi, shape: values[xi].shape, q: q, node: node.name))
    }

    // MARK: - Int8 patterns

    /// An int8 runtime tensor read through a per-tensor DequantizeLinear.
    func q8(_ name: String) -> (id: Int, q: QParams)? {
        guard let p = producer[name], g.nodes[p].op == "DequantizeLinear", let src = valueIds[g.nodes[p].inputs[0]],
            let q = values[src].quant
        else { return nil }
        return (src, q)
    }

    /// The QuantizeLinear that ends an int8 group starting at float tensor `name`, with Relu/Clip in between.
    struct Chain {
        var output: String
        var q: QParams
        var lo: Float = -.infinity
        var hi: Float = .infinity
        var nodes: [Int] = []
        var floats: [String] = []

        var qmin: Int32 { lo == -.infinity ? -128 : Int32(quantize(lo, q)) }
        var qmax: Int32 { hi == .infinity ? 127 : Int32(quantize(hi, q)) }
        var hasClamp: Bool { lo != -.infinity || hi != .infinity }
        func clamp(_ x: Float) -> Float { min(max(x, lo), hi) }
    }

    func chain(from name: String) -> Chain? {
        var cur = name
        var lo = -Float.infinity
        var hi = Float.infinity
        var nodes: [Int] = []
        var floats = [name]
        while true {
            guard !graphOutputs.contains(cur), let cons = consumers[cur], cons.count == 1 else { return nil }
            let c = g.nodes[cons[0]]
            guard c.inputs.first == cur, !absorbed.contains(cons[0]) else { return nil }
            switch c.op {
            case "Relu":
                lo = max(lo, 0)
            case "Clip":
                guard case .clip(let a, let b)? = UnaryFunction.of(c, constants: g.constants) else { return nil }
                lo = max(lo, a)
                hi = min(hi, b)
            case "QuantizeLinear":
                guard let q = try? tensorParams(c) else { return nil }
                return Chain(output: c.outputs[0], q: q, lo: lo, hi: hi, nodes: nodes + [cons[0]], floats: floats)
            default:
                return nil
            }
            nodes.append(cons[0])
            cur = c.outputs[0]
            floats.append(cur)
        }
    }

    mutating func finish(_ chain: Chain) -> Int {
        absorbed.formUnion(chain.nodes)
        for f in chain.floats { aliases[f] = chain.output }
        return addValue(chain.output, quant: chain.q)
    }

    /// Drops a weight or bias constant once it has been prepacked, when nothing else reads it, so that the
    /// model's raw weights and their packed form are not held at the same time.
    mutating func release(_ name: String?) {
        guard let name, consumers[name]?.count == 1 else { return }
        if let p = producer[name], g.nodes[p].op == "DequantizeLinear" {
            let c = g.nodes[p].inputs[0]
            qconsts[name] = nil
            if consumers[c]?.count == 1 { g.constants[c] = nil }
        } else if g.constants[name] != nil {
            g.constants[name] = nil
        }
    }

    /// Weight of a Conv/Gemm/MatMul as symmetric int8 with one scale per output channel.
    func symmetricWeight(_ name: String, outAxis: Int, outCount: Int) -> (w: [Int8], scales: [Float])? {
        guard let c = qconsts[name], let data = c.int8, c.zeroPoints.allSatisfy({ $0 == 0 }) else { return nil }
        if c.perTensor { return (data, [Float](repeating: c.scales[0], count: outCount)) }
        guard c.axis == outAxis, c.scales.count == outCount else { return nil }
        return (data, c.scales)
    }

    /// The real-valued bias per output channel (a DequantizeLinear'd int32 bias as ONNX Runtime dequantizes it).
    func realBias(_ name: String?, count n: Int) -> [Double]? {
        guard let name else { return [Double](repeating: 0, count: n) }
        var real: [Float]
        if let c = qconsts[name] {
            real = c.dequantized()
        } else if let c = g.constants[name], case .float(let v) = c.storage {
            real = v
        } else {
            return nil
        }
        if real.count == 1 { real = [Float](repeating: real[0], count: n) }
        guard real.count == n, real.allSatisfy({ $0.isFinite }) else { return nil }
        return real.map { Double($0) }
    }

    mutating func lowerInt8(_ index: Int, _ node: Node) throws -> Bool {
        switch node.op {
        case "Conv": return try lowerQConv(node)
        case "Gemm", "MatMul": return try lowerQGemm(node)
        case "Add", "Mul": return try lowerQBinary(node)
        case "GlobalAveragePool", "AveragePool", "MaxPool": return try lowerQPool(node)
        case "Concat": return try lowerQConcat(node)
        case "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu": return try lowerQUnary(node)
        case "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout": return try lowerQReshape(node)
        default: return false
        }
    }

    mutating func lowerQConv(_ node: Node) throws -> Bool {
        guard let x = q8(node.inputs[0]), let ch = chain(from: node.outputs[0]) else { return false }
        let xs = shape(node.inputs[0])
        let ws = shape(node.inputs[1])
        let ys = shape(node.outputs[0])
        let group = node.int("group", 1)
        guard let (w, wScales) = symmetricWeight(node.inputs[1], outAxis: 0, outCount: ws[0]),
            let bias = realBias(node.input(2), count: ws[0])
        else { return false }
        let win = try ShapeInference.window(node, inH: xs[2], inW: xs[3], kernel: (ws[2], ws[3]))
        let taps = win.kh * win.kw
        guard taps <= Int(AADS_MAX_TAPS), ws[1] * taps <= 65536 else { return false }
        dataInputOfNode[node.name] = node.inputs[0]
        let y = finish(ch)
        if group == xs[1] && group == ws[0] && ws[1] == 1 {
            let weights = try QDepthwiseWeights(
                weights: w, channels: ws[0], kh: ws[2], kw: ws[3], weightScales: wScales, bias: bias,
                inScale: x.q.scale, outScale: ch.q.scale)
            steps.append(
                QDepthwiseStep(
                    input: x.id, output: y, node: node.name, weights: weights, batch: xs[0], inH: xs[2], inW: xs[3],
                    window: win, inZp: x.q.zeroPoint, outQ: ch.q, outMin: ch.qmin, outMax: ch.qmax))
        } else {
            let weights = try QConvWeights(
                weights: w, groups: group, cout: ws[0], cinPerGroup: ws[1], kh: ws[2], kw: ws[3], weightScales: wScales,
                bias: bias, inScale: x.q.scale, outScale: ch.q.scale, inZeroPoint: x.q.zeroPoint)
            steps.append(
                QConvStep(
                    input: x.id, output: y, node: node.name, weights: weights, batch: xs[0],
                    inShape: (xs[1], xs[2], xs[3]), outShape: (ys[1], ys[2], ys[3]), window: win,
                    inZp: x.q.zeroPoint, outQ: ch.q, outMin: ch.qmin, outMax: ch.qmax))
        }
        release(node.inputs[1])
        release(node.input(2))
        return true
    }

    mutating func lowerQGemm(_ node: Node) throws -> Bool {
        guard let x = q8(node.inputs[0]), let ch = chain(from: node.outputs[0]) else { return false }
        let xs = shape(node.inputs[0])
        let ws = shape(node.inputs[1])
        guard xs.count >= 2, xs.count <= 3, ws.count == 2 else { return false }
        var transB = false
        var bias: String?
        if node.op == "Gemm" {
            guard node.int("transA", 0) == 0, node.float("alpha", 1) == 1, node.float("beta", 1) == 1 else {
                return false
            }
            transB = node.int("transB", 0) != 0
            bias = node.input(2)
            if let b = bias, shape(b).reduce(1, *) != (transB ? ws[0] : ws[1]) { return false }
        }
        let (k, n) = transB ? (ws[1], ws[0]) : (ws[0], ws[1])
        guard let (wRaw, wScales) = symmetricWeight(node.inputs[1], outAxis: transB ? 0 : 1, outCount: n),
            let b32 = realBias(bias, count: n), k <= 65536
        else { return false }
        var w = wRaw
        if !transB {
            w = [Int8](repeating: 0, count: k * n)
            for kk in 0..<k { for j in 0..<n { w[j * k + kk] = wRaw[kk * n + j] } }
        }
        let rows = xs.dropLast().reduce(1, *)
        dataInputOfNode[node.name] = node.inputs[0]
        let y = finish(ch)
        let weights = try QConvWeights(
            weights: w, groups: 1, cout: n, cinPerGroup: k, kh: 1, kw: 1, weightScales: wScales, bias: b32,
            inScale: x.q.scale, outScale: ch.q.scale, inZeroPoint: x.q.zeroPoint)
        let win = Window(
            kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, padTop: 0, padLeft: 0, padBottom: 0, padRight: 0, outH: 1,
            outW: rows)
        let step = QConvStep(
            input: x.id, output: y, node: node.name, weights: weights, batch: 1, inShape: (k, 1, rows),
            outShape: (n, 1, rows), window: win, inZp: x.q.zeroPoint, outQ: ch.q, outMin: ch.qmin, outMax: ch.qmax,
            gemmWeightTransposed: transB)
        steps.append(step)
        release(node.inputs[1])
        release(bias)
        return true
    }

    /// An int8 operand of an elementwise op: a DequantizeLinear'd runtime tensor or per-tensor constant.
    func q8Operand(_ name: String) throws -> (QOperand, QParams, [Int], Bool)? {
        if let x = q8(name) { return (.value(x.id), x.q, values[x.id].shape, values[x.id].nhwc) }
        if let c = qconsts[name], c.perTensor, let data = c.int8 {
            return (
                .constant(try AlignedBuffer(data)), QParams(scale: c.scales[0], zeroPoint: c.zeroPoints[0]), c.shape,
                false
            )
        }
        return nil
    }

    mutating func lowerQBinary(_ node: Node) throws -> Bool {
        guard let a = try q8Operand(node.inputs[0]), let b = try q8Operand(node.inputs[1]),
            let ch = chain(from: node.outputs[0])
        else { return false }
        if case .constant = a.0, case .constant = b.0 { return false }
        let outShape = shape(node.outputs[0])
        let y = finish(ch)
        let bc = Broadcast(out: outShape, outNHWC: values[y].nhwc, operands: [(a.2, a.3), (b.2, b.3)])
        steps.append(
            QBinaryStep(
                op: node.op == "Add" ? .add : .mul, a: a.0, b: b.0, qa: a.1, qb: b.1, qc: ch.q, output: y,
                broadcast: bc,
                node: node.name, outMin: ch.qmin, outMax: ch.qmax))
        return true
    }

    mutating func lowerQPool(_ node: Node) throws -> Bool {
        guard let x = q8(node.inputs[0]), let ch = chain(from: node.outputs[0]) else { return false }
        let xs = shape(node.inputs[0])
        if node.op == "GlobalAveragePool" {
            guard !ch.hasClamp else { return false }
            let y = finish(ch)
            steps.append(QGlobalAveragePoolStep(input: x.id, output: y, shape: xs, qi: x.q, qo: ch.q, node: node.name))
            return true
        }
        guard let ks = node.ints("kernel_shape") else { return false }
        let win = try ShapeInference.window(
            node, inH: xs[2], inW: xs[3], kernel: (ks[0], ks[1]), ceilMode: node.int("ceil_mode", 0) != 0)
        let isMax = node.op == "MaxPool"
        if !isMax && ch.hasClamp { return false }
        let table: [Int8]? =
            isMax && (x.q != ch.q || ch.hasClamp) ? makeTable(from: x.q, to: ch.q) { ch.clamp($0) } : nil
        let y = finish(ch)
        steps.append(
            QPoolStep(
                input: x.id, output: y, isMax: isMax, countIncludePad: node.int("count_include_pad", 0) != 0, shape: xs,
                window: win, qi: x.q, qo: ch.q, table: table, node: node.name))
        return true
    }

    mutating func lowerQConcat(_ node: Node) throws -> Bool {
        var ins: [(id: Int, q: QParams)] = []
        for name in node.inputs {
            guard let x = q8(name) else { return false }
            ins.append(x)
        }
        guard let ch = chain(from: node.outputs[0]), let first = ins.first else { return false }
        let rank = values[first.id].shape.count
        let axis = try ShapeInference.normalizeAxis(node.int("axis", 0), rank: rank, node)
        let nhwc = values[first.id].nhwc
        let order = nhwc ? [0, 2, 3, 1] : Array(0..<rank)
        let pos = order.firstIndex(of: axis) ?? axis
        var inners: [Int] = []
        var outer = 1
        for (k, x) in ins.enumerated() {
            let storage = order.map { values[x.id].shape[$0] }
            if k == 0 { outer = storage[..<pos].reduce(1, *) }
            inners.append(storage[pos...].reduce(1, *))
        }
        let tables: [[Int8]?] = ins.map {
            $0.q != ch.q || ch.hasClamp ? makeTable(from: $0.q, to: ch.q) { ch.clamp($0) } : nil
        }
        let y = finish(ch)
        steps.append(
            QConcatStep(inputs: ins.map(\.id), output: y, outer: outer, inners: inners, tables: tables, node: node.name)
        )
        return true
    }

    mutating func lowerQUnary(_ node: Node) throws -> Bool {
        guard let x = q8(node.inputs[0]), let f = UnaryFunction.of(node, constants: g.constants),
            let ch = chain(from: node.outputs[0])
        else { return false }
        let table = makeTable(from: x.q, to: ch.q) { ch.clamp(f.apply($0)) }
        let y = finish(ch)
        steps.append(QTableStep(input: x.id, output: y, count: values[x.id].count, table: table, node: node.name))
        return true
    }

    mutating func lowerQReshape(_ node: Node) throws -> Bool {
        guard let x = q8(node.inputs[0]), let ch = chain(from: node.outputs[0]) else { return false }
        let table: [Int8]? = x.q != ch.q || ch.hasClamp ? makeTable(from: x.q, to: ch.q) { ch.clamp($0) } : nil
        let y = finish(ch)
        steps.append(
            QReshapeStep(
                input: x.id, output: y, inShape: values[x.id].shape, inNHWC: values[x.id].nhwc,
                outShape: values[y].shape,
                outNHWC: values[y].nhwc, table: table, node: node.name))
        return true
    }

    // MARK: - Float operators

    /// A constant read as float (dequantizing quantized constants).
    func floatConst(_ name: String) -> [Float]? {
        if let c = qconsts[name] { return c.dequantized() }
        if let c = g.constants[name], case .float(let v) = c.storage { return v }
        return nil
    }

    mutating func floatOperand(_ name: String, _ node: Node) throws -> (FOperand, [Int]) {
        if let v = floatConst(name) { return (.constant(try AlignedBuffer(v)), shape(name)) }
        let id = try runtime(name, node)
        guard values[id].quant == nil else {
            throw fail(.unsupportedOperator, "\(node.op) node '\(node.label)' reads int8 tensor '\(name)' directly")
        }
        return (.value(id), values[id].shape)
    }

    mutating func floatInput(_ name: String, _ node: Node) throws -> Int {
        let id = try runtime(name, node)
        guard values[id].quant == nil else {
            throw fail(.unsupportedOperator, "\(node.op) node '\(node.label)' reads int8 tensor '\(name)' directly")
        }
        return id
    }

    mutating func lowerFloat(_ node: Node) throws {
        let outName = node.outputs[0]
        let outShape = shape(outName)
        switch node.op {
        case "Conv":
            let x = try floatInput(node.inputs[0], node)
            guard let w = floatConst(node.inputs[1]) else {
                throw fail(.unsupportedOperator, "Conv node '\(node.label)': the weights must be constant")
            }
            var bias: [Float]?
            if let b = node.input(2) {
                guard let v = floatConst(b) else {
                    throw fail(.unsupportedOperator, "Conv node '\(node.label)': the bias must be constant")
                }
                bias = v
            }
            let xs = values[x].shape
            let ws = shape(node.inputs[1])
            let win = try ShapeInference.window(node, inH: xs[2], inW: xs[3], kernel: (ws[2], ws[3]))
            dataInputOfNode[node.name] = node.inputs[0]
            let y = addValue(outName, quant: nil)
            steps.append(
                try FConvStep(
                    input: x, output: y, node: node.name, inShape: xs, outShape: outShape, weights: w, weightShape: ws,
                    bias: bias, group: node.int("group", 1), window: win))
            release(node.inputs[1])
            release(node.input(2))
        case "Gemm", "MatMul":
            let x = try floatInput(node.inputs[0], node)
            guard let wv = floatConst(node.inputs[1]) else {
                throw fail(.unsupportedOperator, "\(node.op) node '\(node.label)': the second input must be constant")
            }
            let xs = values[x].shape
            let ws = shape(node.inputs[1])
            let transA = node.op == "Gemm" && node.int("transA", 0) != 0
            let transB = node.op == "Gemm" && node.int("transB", 0) != 0
            let (k, n) = transB ? (ws[1], ws[0]) : (ws[0], ws[1])
            let m = node.op == "Gemm" ? (transA ? xs[1] : xs[0]) : xs.dropLast().reduce(1, *)
            var c: [Float]?
            if node.op == "Gemm", let cName = node.input(2) {
                guard let cv = floatConst(cName) else {
                    throw fail(.unsupportedOperator, "Gemm node '\(node.label)': the bias must be constant")
                }
                let beta = node.float("beta", 1)
                let bc = Broadcast(out: [m, n], outNHWC: false, operands: [(shape(cName), false)])
                var full = [Float](repeating: 0, count: m * n)
                cv.withUnsafeBufferPointer { src in
                    bc.forEachRow { o, oa, _, len, sa, _ in
                        for i in 0..<len { full[o + i] = beta * src[oa + i * sa] }
                    }
                }
                c = full
            }
            dataInputOfNode[node.name] = node.inputs[0]
            let y = addValue(outName, quant: nil)
            // Released first, the graph's copy leaves `wv` the weight's only reference: the step keeps that array.
            release(node.inputs[1])
            release(node.input(2))
            steps.append(
                try FGemmStep(
                    input: x, output: y, node: node.name, m: m, n: n, k: k, transA: transA,
                    alpha: node.op == "Gemm" ? node.float("alpha", 1) : 1, weights: consume wv, c: c, weightShape: ws,
                    weightTransposed: transB))
        case "Add", "Mul":
            let a = try floatOperand(node.inputs[0], node)
            let b = try floatOperand(node.inputs[1], node)
            if case .constant = a.0, case .constant = b.0 {
                throw fail(.unsupportedOperator, "\(node.op) node '\(node.label)' has only constant inputs")
            }
            let y = addValue(outName, quant: nil)
            let bc = Broadcast(out: outShape, outNHWC: false, operands: [(a.1, false), (b.1, false)])
            steps.append(
                FBinaryStep(
                    op: node.op == "Add" ? .add : .mul, a: a.0, b: b.0, output: y, broadcast: bc, node: node.name))
        case "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Identity", "Dropout":
            let x = try floatInput(node.inputs[0], node)
            guard let f = UnaryFunction.of(node, constants: g.constants) else {
                throw fail(.unsupportedOperator, "node '\(node.label)' (\(node.op)) is not supported")
            }
            let y = addValue(outName, quant: nil)
            steps.append(FUnaryStep(input: x, output: y, f: f, count: values[x].count, node: node.name))
        case "Reshape", "Flatten", "Squeeze", "Unsqueeze":
            let x = try floatInput(node.inputs[0], node)
            let y = addValue(outName, quant: nil)
            steps.append(FUnaryStep(input: x, output: y, f: .identity, count: values[x].count, node: node.name))
        case "GlobalAveragePool":
            let x = try floatInput(node.inputs[0], node)
            let y = addValue(outName, quant: nil)
            steps.append(
                FPoolStep(
                    input: x, output: y, kind: .globalAverage, shape: values[x].shape, window: nil, node: node.name))
        case "AveragePool", "MaxPool":
            let x = try floatInput(node.inputs[0], node)
            let xs = values[x].shape
            let ks = node.ints("kernel_shape") ?? [1, 1]
            let win = try ShapeInference.window(
                node, inH: xs[2], inW: xs[3], kernel: (ks[0], ks[1]), ceilMode: node.int("ceil_mode", 0) != 0)
            let y = addValue(outName, quant: nil)
            let kind: FPoolStep.Kind =
                node.op == "MaxPool" ? .max : .average(countIncludePad: node.int("count_include_pad", 0) != 0)
            steps.append(FPoolStep(input: x, output: y, kind: kind, shape: xs, window: win, node: node.name))
        case "Concat":
            let ins = try node.inputs.map { try floatInput($0, node) }
            let rank = outShape.count
            let axis = try ShapeInference.normalizeAxis(node.int("axis", 0), rank: rank, node)
            let outer = outShape[..<axis].reduce(1, *)
            let inners = ins.map { values[$0].shape[axis...].reduce(1, *) }
            let y = addValue(outName, quant: nil)
            steps.append(FConcatStep(inputs: ins, output: y, outer: outer, inners: inners, node: node.name))
        case "Softmax":
            let x = try floatInput(node.inputs[0], node)
            let axis = try ShapeInference.normalizeAxis(node.int("axis", -1), rank: outShape.count, node)
            let y = addValue(outName, quant: nil)
            steps.append(FSoftmaxStep(input: x, output: y, shape: outShape, axis: axis, node: node.name))
        default:
            throw fail(.unsupportedOperator, "operator '\(node.op)' (node '\(node.label)') is not supported")
        }
    }
}
