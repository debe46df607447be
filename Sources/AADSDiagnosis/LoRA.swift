import AADSCore

/// Low-rank weight deltas of one crop adapter: ΔW = (alpha / rank) · B · A for each target node.
public enum LoRAMerge {
    /// The dense delta (out × k, row-major) from `a` [rank, k] and `b` [out, rank].
    public static func delta(a: UnsafeBufferPointer<Float>, b: UnsafeBufferPointer<Float>, rank: Int, alpha: Float)
        -> [Float]
    {
        let k = a.count / rank
        let out = b.count / rank
        let scale = alpha / Float(rank)
        var delta = [Float](repeating: 0, count: out * k)
        for o in 0..<out {
            for r in 0..<rank {
                let coefficient = scale * b[o * rank + r]
                if coefficient == 0 { continue }
                let row = r * k
                for i in 0..<k { delta[o * k + i] += coefficient * a[row + i] }
            }
        }
        return delta
    }

    /// Reads `<target>.lora_A` [rank, k] and `<target>.lora_B` [out, rank] for every target.
    public static func deltas(file: SafeTensorsFile, targets: [String], rank: Int, alpha: Float) throws -> [String:
        [Float]]
    {
        var result: [String: [Float]] = [:]
        for target in targets {
            let (_, a) = try file.floats(target + ".lora_A", shape: [rank, -1])
            let (_, b) = try file.floats(target + ".lora_B", shape: [-1, rank])
            result[target] = delta(a: a, b: b, rank: rank, alpha: alpha)
        }
        return result
    }
}
