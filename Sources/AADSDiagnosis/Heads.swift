import AADSCore
import Foundation

/// A dense layer y = W·x + b over float32 weights viewed in place from a safetensors file.
public struct LinearLayer: @unchecked Sendable {
    public let outputs: Int
    public let inputs: Int
    private let weight: UnsafeBufferPointer<Float>
    private let bias: UnsafeBufferPointer<Float>
    private let storage: SafeTensorsFile

    /// Reads `<prefix>weight` [out, in] and `<prefix>bias` [out].
    public init(
        file: SafeTensorsFile, prefix: String = "", inputs expectedInputs: Int? = nil,
        outputs expectedOutputs: Int? = nil
    ) throws {
        let (shape, weight) = try file.floats(prefix + "weight", shape: [expectedOutputs ?? -1, expectedInputs ?? -1])
        let (_, bias) = try file.floats(prefix + "bias", shape: [shape[0]])
        self.outputs = shape[0]
        self.inputs = shape[1]
        self.weight = weight
        self.bias = bias
        self.storage = file
    }

    /// W·x + b. `x` must have `inputs` elements.
    public func apply(_ x: [Float]) throws -> [Float] {
        guard x.count == inputs else {
            throw DiagnosisError.shapeMismatch("layer expects \(inputs) inputs, got \(x.count)")
        }
        var y = [Float](repeating: 0, count: outputs)
        x.withUnsafeBufferPointer { xp in
            for o in 0..<outputs {
                var acc: Float = 0
                let row = o * inputs
                for i in 0..<inputs { acc += weight[row + i] * xp[i] }
                y[o] = acc + bias[o]
            }
        }
        return y
    }
}

/// Numerically stable softmax.
public func softmax(_ logits: [Float]) -> [Float] {
    guard let peak = logits.max() else { return [] }
    let exps = logits.map { expf($0 - peak) }
    let sum = exps.reduce(0, +)
    return exps.map { $0 / sum }
}

/// Indices of the `k` largest values, largest first (ties by lower index).
public func topIndices(_ values: [Float], _ k: Int) -> [Int] {
    Array(values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }.prefix(k))
}
