import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSInference

/// The models of Tests/Fixtures/models (EfficientNet-Lite0 with real weights, small MobileNet/ResNet-style nets)
/// against ONNX Runtime's outputs listed in its index.json.
@Suite(.serialized) struct ReferenceModelTests {
    struct Case: Sendable {
        var input: String
        var outputs: [String: String]
    }

    struct ModelEntry: Sendable, CustomStringConvertible {
        var name: String
        var file: String
        var int8: Bool
        var scales: [String: Float]
        var cases: [Case]
        var description: String { name }
    }

    static func index() -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: Fixtures.models("index.json")),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [:] }
        return object
    }

    static let entries: [ModelEntry] = {
        let models = index()["models"] as? [[String: Any]] ?? []
        return models.map { m in
            var scales: [String: Float] = [:]
            for o in m["outputs"] as? [[String: Any]] ?? [] {
                if let s = o["scale"] as? Double, let n = o["name"] as? String { scales[n] = Float(s) }
            }
            let cases = (m["cases"] as? [[String: Any]] ?? []).map {
                Case(input: $0["input"] as? String ?? "", outputs: $0["outputs"] as? [String: String] ?? [:])
            }
            return ModelEntry(
                name: m["name"] as? String ?? "", file: m["file"] as? String ?? "",
                int8: (m["kind"] as? String) == "int8",
                scales: scales, cases: cases)
        }
    }()

    @Test(arguments: entries)
    func matchesOnnxRuntime(_ entry: ModelEntry) throws {
        let model = try InferenceModel(
            path: Fixtures.models(entry.file), options: EngineOptions(rounding: .onnxRuntime))
        let inputName = try #require(model.inputs.first?.name)
        let outputNames = entry.cases.first.map { Array($0.outputs.keys).sorted() } ?? []
        for c in entry.cases {
            let x = try Fixtures.tensor(Fixtures.models(c.input))
            let out = try model.run([inputName: x], outputs: outputNames)
            for (name, file) in c.outputs {
                let ref = try Fixtures.tensor(Fixtures.models(file))
                let got = try #require(out[name])
                #expect(got.shape == ref.shape)
                let classifier = name == outputNames.first { $0 != "features" && $0 != "embedding" }
                if entry.int8, let step = entry.scales[name] {
                    let a = Agreement(got, ref, step: step)
                    print("[agreement] \(entry.name) \(name) \(c.input): \(a)")
                    #expect(a.withinOneStep >= 0.99, "\(entry.name) \(name) \(c.input): \(a)")
                    // Near-half results follow ONNX Runtime's float arithmetic, so the int8 values are identical.
                    let same = zip(got.data, ref.data).filter { abs($0 - $1) < step * 0.01 }.count
                    #expect(
                        Double(same) >= 0.99 * Double(got.count), "\(entry.name) \(name) \(c.input): \(same) identical")
                    if classifier { #expect(a.sameTop1, "\(entry.name) \(name) \(c.input): \(a)") }
                } else if entry.int8 {
                    // Float output computed from int8 tensors (mixed graph).
                    let d = maxAbsDiff(got, ref)
                    print("[agreement] \(entry.name) \(name) \(c.input): max abs diff \(d)")
                    #expect(d <= 0.02, "\(entry.name) \(name) \(c.input): \(d)")
                    #expect(argmax(got.data) == argmax(ref.data), "\(entry.name) \(name) \(c.input)")
                } else {
                    let d = maxAbsDiff(got, ref)
                    print("[agreement] \(entry.name) \(name) \(c.input): max abs diff \(d)")
                    #expect(d <= 1e-3, "\(entry.name) \(name) \(c.input): \(d)")
                    if classifier { #expect(argmax(got.data) == argmax(ref.data)) }
                }
            }
        }
    }
}

/// Each selected layer of the int8 EfficientNet-Lite0, fed with ONNX Runtime's int8 input of that layer, must give
/// ONNX Runtime's int8 output (tools/fixtures/inference, Tests/Fixtures/inference/effnet_layers).
@Suite struct EfficientNetLayerTests {
    static let dir = Fixtures.inference("effnet_layers")

    static func manifest() -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: dir + "/layers.json"),
            let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [:] }
        return o
    }

    static let layers: [String] = (manifest()["layers"] as? [[String: Any]] ?? []).compactMap { $0["node"] as? String }

    static let model = Result {
        try InferenceModel(
            path: Fixtures.models("efficientnet_lite0_int8.onnx"), options: EngineOptions(rounding: .onnxRuntime))
    }

    func int8Tensor(_ model: InferenceModel, _ qName: String) throws -> Tensor {
        let files = EfficientNetLayerTests.manifest()["files"] as? [String: String] ?? [:]
        let file = try #require(files[qName])
        let raw = try NPY.read(EfficientNetLayerTests.dir + "/" + file)
        let id = try #require(model.program.valueIds[qName])
        let q = try #require(model.program.values[id].quant)
        let ints = try raw.int8s()
        return Tensor(shape: raw.shape, data: ints.map { dequantize($0, q) })
    }

    /// Runs one layer of `model` from ONNX Runtime's int8 input of that layer: (engine output, reference, step).
    func runLayer(_ model: InferenceModel, _ node: String) throws -> (got: Tensor, ref: Tensor, step: Float) {
        let entries = EfficientNetLayerTests.manifest()["layers"] as? [[String: Any]] ?? []
        let entry = try #require(entries.first { $0["node"] as? String == node })
        let inputs = try #require(entry["inputs"] as? [String: String])
        let output = try #require(entry["output"] as? String)
        var starts: [String: Tensor] = [:]
        for (dqName, qName) in inputs { starts[dqName] = try int8Tensor(model, qName) }
        let got = try #require(try model.run(starts: starts, outputs: [output])[output])
        let q = try #require(model.program.values[model.program.valueIds[output] ?? 0].quant)
        return (got, try int8Tensor(model, output), q.scale)
    }

    @Test(arguments: layers)
    func layerMatchesOnnxRuntime(_ node: String) throws {
        let (got, ref, step) = try runLayer(try EfficientNetLayerTests.model.get(), node)
        let exact = zip(got.data, ref.data).filter { abs($0 - $1) < step * 0.01 }.count
        print("[layer] \(node): exact \(Double(exact) / Double(got.count)) \(Agreement(got, ref, step: step))")
        #expect(exact == got.count, "\(node): \(exact) of \(got.count) identical")
    }

    static let exactModel = Result {
        try InferenceModel(
            path: Fixtures.models("efficientnet_lite0_int8.onnx"), options: EngineOptions(rounding: .exact))
    }

    /// With exact rounding a layer differs from ONNX Runtime only where its float arithmetic lands on the other
    /// side of a half step: by one step, rarely.
    @Test(arguments: layers)
    func exactRoundingLayerIsWithinOneStep(_ node: String) throws {
        let (got, ref, step) = try runLayer(try EfficientNetLayerTests.exactModel.get(), node)
        let a = Agreement(got, ref, step: step)
        let exact = zip(got.data, ref.data).filter { abs($0 - $1) < step * 0.01 }.count
        #expect(a.maxSteps <= 1.001, "\(node): \(a)")
        #expect(Double(exact) >= 0.999 * Double(got.count), "\(node): \(exact) of \(got.count) identical")
    }

    /// Running from an intermediate tensor reproduces ONNX Runtime's outputs (fixtures of Tests/Fixtures/models).
    @Test func runFromIntermediateMatchesOnnxRuntime() throws {
        let model = try EfficientNetLayerTests.model.get()
        let index = ReferenceModelTests.index()
        let inter = try #require(index["intermediates"] as? [String: Any])
        let cases = try #require(inter["cases"] as? [[String: Any]])
        let entry = try #require(ReferenceModelTests.entries.first { $0.name == "efficientnet_lite0_int8" })
        for c in cases {
            let input = try #require(c["input"] as? String)
            let tensors = try #require(c["tensors"] as? [String: String])
            let refCase = try #require(entry.cases.first { $0.input == input })
            for (name, file) in tensors {
                let x = try Fixtures.tensor(Fixtures.models(file))
                let out = try model.run(from: name, value: x, outputs: ["features", "logits"])
                for o in ["features", "logits"] {
                    let ref = try Fixtures.tensor(Fixtures.models(try #require(refCase.outputs[o])))
                    let a = Agreement(try #require(out[o]), ref, step: try #require(entry.scales[o]))
                    print("[from] \(name) \(o) \(input): \(a)")
                    #expect(a.withinOneStep >= 0.99 && a.sameTop1, "\(name) \(o) \(input): \(a)")
                }
            }
        }
    }
}
