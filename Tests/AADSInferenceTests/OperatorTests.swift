import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSInference

/// One small model per operator configuration (Tests/Fixtures/inference/ops, made by tools/fixtures/inference),
/// float and QDQ, against ONNX Runtime.
@Suite struct OperatorTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String, model: String, kind: String, inputs: [String: String], output: String, step: Float?
        var description: String { name }
    }

    static let cases: [Case] = {
        guard let data = FileManager.default.contents(atPath: Fixtures.inference("ops/ops.json")),
            let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
        else { return [] }
        return list.map {
            Case(
                name: $0["name"] as? String ?? "", model: $0["model"] as? String ?? "",
                kind: $0["kind"] as? String ?? "",
                inputs: $0["inputs"] as? [String: String] ?? [:], output: $0["output"] as? String ?? "",
                step: ($0["step"] as? Double).map { Float($0) })
        }
    }()

    @Test func fixturesExist() { #expect(OperatorTests.cases.count >= 40) }

    @Test(arguments: cases)
    func matchesOnnxRuntime(_ c: Case) throws {
        let model = try InferenceModel(
            path: Fixtures.inference("ops/" + c.model), options: EngineOptions(rounding: .onnxRuntime))
        var feeds: [String: Tensor] = [:]
        for (name, file) in c.inputs { feeds[name] = try Fixtures.tensor(Fixtures.inference("ops/" + file)) }
        let got = try #require(try model.run(feeds)["y"])
        let ref = try Fixtures.tensor(Fixtures.inference("ops/" + c.output))
        #expect(got.shape == ref.shape, "\(c.name)")
        if let step = c.step {
            let a = Agreement(got, ref, step: step)
            #expect(a.maxSteps <= 1.001 && a.withinOneStep >= 0.99, "\(c.name): \(a)")
        } else {
            let scale = max(1, ref.data.map { abs($0) }.max() ?? 1)
            #expect(maxAbsDiff(got, ref) <= 1e-5 * scale, "\(c.name): \(maxAbsDiff(got, ref))")
        }
    }
}
