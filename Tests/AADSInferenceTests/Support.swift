import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSInference

/// The inference fixtures (Tests/Fixtures/inference, Tests/Fixtures/models).
extension Fixtures {
    static func inference(_ name: String) -> String { path("inference/\(name)") }
    static func models(_ name: String) -> String { path("models/\(name)") }
    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    static func tensor(_ path: String) throws -> Tensor { Tensor(try NPY.read(path)) }
}

/// Agreement of an int8 output with a reference: share of elements within one quantization step, largest error.
struct Agreement: CustomStringConvertible {
    var withinOneStep: Double
    var maxSteps: Double
    var sameTop1: Bool

    init(_ a: Tensor, _ b: Tensor, step: Float) {
        precondition(a.count == b.count)
        var ok = 0
        var worst: Float = 0
        for (x, y) in zip(a.data, b.data) {
            let d = abs(x - y) / step
            worst = max(worst, d)
            if d <= 1.001 { ok += 1 }
        }
        withinOneStep = Double(ok) / Double(max(1, a.count))
        maxSteps = Double(worst)
        sameTop1 = argmax(a.data) == argmax(b.data)
    }

    var description: String { "within1=\(withinOneStep) maxSteps=\(maxSteps) top1=\(sameTop1)" }
}

func argmax(_ v: [Float]) -> Int {
    var best = 0
    for i in v.indices where v[i] > v[best] { best = i }
    return best
}

func maxAbsDiff(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.data, b.data).map { abs($0 - $1) }.max() ?? 0
}
