import AADSCore
import Foundation

extension InferenceModel {
    /// A copy of this model with changed weights in some Conv/Gemm/MatMul nodes.
    ///
    /// Keys are node names; each delta has the element count of the node's weight in the model's own layout
    /// ([out, in/group, kh, kw] for Conv, the stored B for Gemm/MatMul). For int8 layers W' = dequantize(W) + delta
    /// is requantized per output channel (symmetric, scale max|W'|/127; channels whose delta is all zero keep their
    /// quantization) and the bias is requantized to int32 at the new scale. Float layers add the delta directly.
    /// Every unaffected layer's prepacked weights are shared with this model; `extraWeightBytes` reports what the
    /// new model owns alone.
    public func adapted(weightDeltas: [String: [Float]]) throws -> InferenceModel {
        var program = self.program
        var extra = 0
        for (nodeName, delta) in weightDeltas.sorted(by: { $0.key < $1.key }) {
            guard let index = program.steps.firstIndex(where: { $0.node == nodeName && Self.adaptable($0) }) else {
                throw fail(.unknownTensor, "no Conv, Gemm or MatMul node named '\(nodeName)'")
            }
            guard delta.allSatisfy({ $0.isFinite }) else {
                throw fail(.badInput, "the delta for '\(nodeName)' contains NaN or infinity")
            }
            let (step, bytes) = try Self.adapt(program.steps[index], delta: delta)
            program.steps[index] = step
            extra += bytes
        }
        return InferenceModel(
            program: program, info: info, options: options, variant: variant,
            extraWeightBytes: extraWeightBytes + extra)
    }

    static func adaptable(_ step: any Step) -> Bool {
        step is QConvStep || step is QDepthwiseStep || step is FConvStep || step is FGemmStep
    }

    static func checkCount(_ delta: [Float], _ expected: Int, _ node: String) throws {
        guard delta.count == expected else {
            throw fail(
                .shapeMismatch, "the delta for '\(node)' has \(delta.count) elements; the weight has \(expected)")
        }
    }

    /// Symmetric per-channel requantization of W' = Float(q)·scale + delta, channel by channel (`rows` channels of
    /// `perRow` elements). Channels with an all-zero delta keep their values and scale.
    static func requantize(q: [Int8], scales: [Float], delta: [Float], rows: Int, perRow: Int) -> ([Int8], [Float]) {
        var outQ = q
        var outScales = scales
        for c in 0..<rows {
            let range = c * perRow..<(c + 1) * perRow
            guard range.contains(where: { delta[$0] != 0 }) else { continue }
            let real = range.map { Float(q[$0]) * scales[c] + delta[$0] }
            let maxAbs = real.map { abs($0) }.max() ?? 0
            let s: Float = maxAbs > 0 ? maxAbs / 127 : 1
            outScales[c] = s
            for (i, v) in zip(range, real) { outQ[i] = Int8(max(-127, min(127, (v / s).rounded(.toNearestOrEven)))) }
        }
        return (outQ, outScales)
    }

    /// The bias requantized to int32 at the new scale (inScale × weightScale), as a real value.
    static func requantizedBias(_ bias: [Double], inScale: Float, old: [Float], new: [Float]) -> [Double] {
        bias.indices.map { c in
            guard old[c] != new[c] else { return bias[c] }
            let unit = Double(inScale) * Double(new[c])
            let q = (bias[c] / unit).rounded(.toNearestOrEven)
            return max(-2_147_483_648, min(2_147_483_647, q)) * unit
        }
    }

    static func adapt(_ step: any Step, delta: [Float]) throws -> (any Step, Int) {
        switch step {
        case let s as QConvStep:
            let w = s.weights
            let cout = w.groups * w.coutPerGroup
            let perRow = w.cinPerGroup * w.kh * w.kw
            try checkCount(delta, cout * perRow, s.node)
            // The engine keeps Gemm/MatMul weights as [N][K]; a [K][N] model weight's delta is transposed.
            var d = delta
            if s.gemmWeightTransposed == false {
                let (k, n) = (perRow, cout)
                d = [Float](repeating: 0, count: k * n)
                for kk in 0..<k { for j in 0..<n { d[j * k + kk] = delta[kk * n + j] } }
            }
            let (q, scales) = requantize(q: w.unpacked(), scales: w.weightScales, delta: d, rows: cout, perRow: perRow)
            let bias = requantizedBias(w.bias, inScale: w.inScale, old: w.weightScales, new: scales)
            let nw = try QConvWeights(
                weights: q, groups: w.groups, cout: cout, cinPerGroup: w.cinPerGroup, kh: w.kh, kw: w.kw,
                weightScales: scales, bias: bias, inScale: w.inScale, outScale: w.outScale, inZeroPoint: s.inZp)
            let ns = QConvStep(
                input: s.inputs[0], output: s.outputs[0], node: s.node, weights: nw, batch: s.batch,
                inShape: s.inShape, outShape: s.outShape, window: s.window, inZp: s.inZp, outQ: s.outQ,
                outMin: s.outMin, outMax: s.outMax, gemmWeightTransposed: s.gemmWeightTransposed)
            return (ns, nw.byteCount)
        case let s as QDepthwiseStep:
            let w = s.weights
            let perRow = w.kh * w.kw
            try checkCount(delta, w.channels * perRow, s.node)
            let (q, scales) = requantize(
                q: w.unpacked(), scales: w.weightScales, delta: delta, rows: w.channels, perRow: perRow)
            let bias = requantizedBias(w.bias, inScale: w.inScale, old: w.weightScales, new: scales)
            let nw = try QDepthwiseWeights(
                weights: q, channels: w.channels, kh: w.kh, kw: w.kw, weightScales: scales, bias: bias,
                inScale: w.inScale, outScale: w.outScale)
            let ns = QDepthwiseStep(
                input: s.inputs[0], output: s.outputs[0], node: s.node, weights: nw, batch: s.batch, inH: s.inHW.0,
                inW: s.inHW.1, window: s.window, inZp: s.inZp, outQ: s.outQ, outMin: s.outMin, outMax: s.outMax)
            return (ns, nw.byteCount)
        case let s as FConvStep:
            let w = s.floatWeights
            try checkCount(delta, w.count, s.node)
            let ns = try s.replacingWeights(zip(w, delta).map { $0 + $1 })
            return (ns, w.count * 4)
        case let s as FGemmStep:
            let w = s.modelWeights
            try checkCount(delta, w.count, s.node)
            let ns = try s.replacingWeights(zip(w, delta).map { $0 + $1 })
            return (ns, w.count * 4)
        default:
            throw fail(.unsupportedOperator, "node '\(step.node)' has no adaptable weights")
        }
    }
}
