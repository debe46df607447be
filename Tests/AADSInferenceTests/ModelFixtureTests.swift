import AADSCore
import AADSTestSupport
import CKernels
import Foundation
import Testing

@testable import AADSInference

/// Small MobileNet- and ResNet-style models built and quantized by tools/fixtures/inference, against the
/// outputs ONNX Runtime computed for them.
@Suite struct ModelFixtureTests {
    static let models = ["mobilenet", "resnet"]

    @Test(arguments: models)
    func int8MatchesOnnxRuntime(_ name: String) throws {
        let model = try InferenceModel(
            path: Fixtures.inference("\(name)_int8.onnx"), options: EngineOptions(rounding: .onnxRuntime))
        for i in 0..<3 {
            let x = try Fixtures.tensor(Fixtures.inference("\(name)_in\(i).npy"))
            let out = try model.run(["input": x], outputs: ["logits", "features"])
            for o in ["logits", "features"] {
                let ref = try Fixtures.tensor(Fixtures.inference("\(name)_int8_\(o)_\(i).npy"))
                let step = try #require(model.outputs.first { $0.name == o }?.scale)
                let got = try #require(out[o])
                #expect(got.shape == ref.shape)
                let a = Agreement(got, ref, step: step)
                print("[agreement] \(name) \(o) image \(i): \(a)")
                #expect(a.withinOneStep >= 0.99, "\(name) \(o) image \(i): \(a)")
                if o == "logits" { #expect(a.sameTop1, "\(name) image \(i): \(a)") }
            }
        }
    }

    @Test(arguments: models)
    func fp32MatchesOnnxRuntime(_ name: String) throws {
        let model = try InferenceModel(path: Fixtures.inference("\(name)_fp32.onnx"))
        for i in 0..<3 {
            let x = try Fixtures.tensor(Fixtures.inference("\(name)_in\(i).npy"))
            let out = try model.run(["input": x], outputs: ["logits", "features"])
            for o in ["logits", "features"] {
                let ref = try Fixtures.tensor(Fixtures.inference("\(name)_fp32_\(o)_\(i).npy"))
                let got = try #require(out[o])
                #expect(maxAbsDiff(got, ref) <= 1e-3, "\(name) \(o) image \(i)")
            }
        }
    }

    @Test func mixedGraphMatchesOnnxRuntime() throws {
        let model = try InferenceModel(
            path: Fixtures.inference("mixed_int8.onnx"), options: EngineOptions(rounding: .onnxRuntime))
        #expect(model.info.kernels["fgemm"] == 1)
        for i in 0..<3 {
            let x = try Fixtures.tensor(Fixtures.inference("mobilenet_in\(i).npy"))
            let out = try model.run(["input": x])
            let features = try Fixtures.tensor(Fixtures.inference("mixed_int8_features_\(i).npy"))
            let step = try #require(model.outputs.first { $0.name == "features" }?.scale)
            #expect(Agreement(try #require(out["features"]), features, step: step).withinOneStep >= 0.99)
            let logits = try Fixtures.tensor(Fixtures.inference("mixed_int8_logits_\(i).npy"))
            let got = try #require(out["logits"])
            // Float classifier on int8 features: a one-step difference in a feature moves the logits slightly.
            #expect(maxAbsDiff(got, logits) <= 0.05)
            #expect(argmax(got.data) == argmax(logits.data))
        }
    }
}

@Test func uint8ActivationsMatchOnnxRuntime() throws {
    let model = try InferenceModel(
        path: Fixtures.inference("mobilenet_uint8.onnx"), options: EngineOptions(rounding: .onnxRuntime))
    #expect((model.info.kernels["qconv"] ?? 0) + (model.info.kernels["qdepthwise"] ?? 0) >= 8)
    for i in 0..<3 {
        let x = try Fixtures.tensor(Fixtures.inference("mobilenet_in\(i).npy"))
        let out = try model.run(["input": x])
        for o in ["logits", "features"] {
            let ref = try Fixtures.tensor(Fixtures.inference("mobilenet_uint8_\(o)_\(i).npy"))
            let step = try #require(model.outputs.first { $0.name == o }?.scale)
            let a = Agreement(try #require(out[o]), ref, step: step)
            #expect(a.withinOneStep >= 0.99 && a.maxSteps <= 1.001, "uint8 \(o) image \(i): \(a)")
        }
    }
}
