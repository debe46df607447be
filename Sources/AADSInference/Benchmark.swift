import AADSCore
import Foundation

/// Latency figures of `InferenceModel.benchmark`.
public struct BenchmarkResult: Sendable {
    public var iterations: Int
    public var threads: Int
    public var p50Ms: Double
    public var p95Ms: Double
    public var minMs: Double
    public var meanMs: Double
    /// Multiply-accumulates per second at the median latency.
    public var macsPerSecond: Double
    /// Peak resident set size of the process (VmHWM), in MB, when the system reports it.
    public var peakRSSMB: Double?
    public var kernel: String

    public var jsonObject: [String: Any] {
        var o: [String: Any] = [
            "iterations": iterations, "threads": threads, "p50_ms": JSONLine.rounded(p50Ms),
            "p95_ms": JSONLine.rounded(p95Ms), "min_ms": JSONLine.rounded(minMs), "mean_ms": JSONLine.rounded(meanMs),
            "macs_per_s": macsPerSecond.rounded(), "kernel": kernel,
        ]
        if let r = peakRSSMB { o["peak_rss_mb"] = JSONLine.rounded(r, 2) }
        return o
    }
}

extension InferenceModel {
    /// Deterministic inputs of the model's shapes (values in [-1, 1); integers for int8/uint8 inputs).
    public func syntheticInputs() -> [String: Tensor] {
        var state: UInt64 = 0x1234_5678
        var result: [String: Tensor] = [:]
        for input in inputs {
            let count = input.shape.reduce(1, *)
            let data = (0..<count).map { _ -> Float in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let u = Float(state >> 40) / Float(1 << 24)
                switch input.elementType {
                case "int8": return (u * 255).rounded(.down) - 128
                case "uint8": return (u * 255).rounded(.down)
                default: return u * 2 - 1
                }
            }
            result[input.name] = Tensor(shape: input.shape, data: data)
        }
        return result
    }

    /// Runs the model `warmup + iterations` times on synthetic inputs and reports latency percentiles.
    public func benchmark(warmup: Int = 3, iterations: Int = 20) throws -> BenchmarkResult {
        let feeds = syntheticInputs()
        for _ in 0..<max(0, warmup) { _ = try run(feeds) }
        var times: [Double] = []
        for _ in 0..<max(1, iterations) {
            let clock = Stopwatch()
            _ = try run(feeds)
            times.append(clock.elapsedMs)
        }
        times.sort()
        func pct(_ p: Double) -> Double { times[min(times.count - 1, Int((Double(times.count - 1) * p).rounded()))] }
        let p50 = pct(0.5)
        return BenchmarkResult(
            iterations: times.count, threads: options.threads, p50Ms: p50, p95Ms: pct(0.95), minMs: times[0],
            meanMs: times.reduce(0, +) / Double(times.count), macsPerSecond: Double(info.macs) / (p50 / 1000),
            peakRSSMB: ProcessMemory.peakResidentBytes().map { Double($0) / 1_048_576 }, kernel: kernelVariant)
    }

    /// Time per step (ONNX node and kernel kind), averaged over `iterations` runs on synthetic inputs, slowest first.
    public func profile(iterations: Int = 10) throws -> [(node: String, kind: String, ms: Double)] {
        let feeds = syntheticInputs()
        _ = try run(feeds)
        let seeds = program.inputs.compactMap { program.valueIds[$0.name] }
        let outs = program.outputs.compactMap {
            program.valueIds[$0] ?? program.aliases[$0].flatMap { program.valueIds[$0] }
        }
        let p = try plan(seeds: seeds, outputs: outs)
        var times: [Double] = []
        for _ in 0..<max(1, iterations) {
            p.executeTimed(threads: options.threads, variant: variant, rounding: options.rounding, times: &times)
        }
        return zip(p.steps, times).map { ($0.node, $0.kind, $1 / Double(max(1, iterations))) }.sorted { $0.ms > $1.ms }
    }

    /// The `k` largest values of a tensor with their flat indices, largest first (ties: lower index first).
    public static func topK(_ t: Tensor, k: Int) -> [(index: Int, score: Float)] {
        let order = t.data.indices.sorted { t.data[$0] != t.data[$1] ? t.data[$0] > t.data[$1] : $0 < $1 }
        return order.prefix(max(0, k)).map { ($0, t.data[$0]) }
    }
}
