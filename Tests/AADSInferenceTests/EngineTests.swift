import AADSCore
import AADSTestSupport
import CKernels
import Foundation
import Testing

@testable import AADSInference

@Suite(.serialized) struct EngineTests {
    static let effnet = Result { try InferenceModel(path: Fixtures.models("efficientnet_lite0_int8.onnx")) }
    static func photo(_ name: String = "skimage-coffee") throws -> Tensor {
        try Fixtures.tensor(Fixtures.models("inputs/224/\(name).npy"))
    }

    @Test func adaptedWithZeroDeltasIsIdentical() throws {
        let model = try EngineTests.effnet.get()
        let nodes = ["classifier", "conv_head", "blocks.3.dw_conv", "stem_conv"]
        var deltas: [String: [Float]] = [:]
        for n in nodes {
            let step = try #require(model.program.steps.first { $0.node == n })
            let count: Int
            if let s = step as? QConvStep {
                count = s.weights.groups * s.weights.coutPerGroup * s.weights.cinPerGroup * s.weights.kh * s.weights.kw
            } else {
                let s = try #require(step as? QDepthwiseStep)
                count = s.weights.channels * s.weights.kh * s.weights.kw
            }
            deltas[n] = [Float](repeating: 0, count: count)
        }
        let adapted = try model.adapted(weightDeltas: deltas)
        let x = try EngineTests.photo()
        let a = try model.run(["input": x])
        let b = try adapted.run(["input": x])
        #expect(a == b)
        // Unaffected layers share their prepacked weights; affected ones are the only extra memory.
        var shared = 0
        for (s, t) in zip(model.program.steps, adapted.program.steps) {
            if nodes.contains(s.node) { #expect(s !== t) } else if s === t { shared += 1 }
        }
        #expect(shared == model.program.steps.count - nodes.count)
        #expect(adapted.extraWeightBytes > 0 && adapted.extraWeightBytes < 2_000_000)
    }

    /// The classifier with a weight delta against a float reference: dequantize → add delta → float product →
    /// quantize with the output's parameters.
    @Test func adaptedClassifierMatchesFloatReference() throws {
        let model = try EngineTests.effnet.get()
        let graph = try ModelLoader.parse(path: Fixtures.models("efficientnet_lite0_int8.onnx"))
        let gemm = try #require(graph.nodes.first { $0.name == "classifier" })
        func dq(_ name: String) throws -> (ConstTensor, [Float]) {
            let n = try #require(graph.nodes.first { $0.op == "DequantizeLinear" && $0.outputs[0] == name })
            return (try #require(graph.constants[n.inputs[0]]), try #require(graph.constants[n.inputs[1]]).floats)
        }
        let (wq, ws) = try dq(gemm.inputs[1])
        let (bq, bs) = try dq(gemm.inputs[2])
        let w = try #require(wq.ints)
        let b = try #require(bq.ints)
        let transB = gemm.int("transB", 0) != 0
        #expect(transB && wq.shape == [1000, 1280])
        let (n, k) = (1000, 1280)
        var r = SplitMix64(seed: 5)
        let delta = (0..<n * k).map { _ in Float(r.double(-0.02, 0.02)) }
        let adapted = try model.adapted(weightDeltas: ["classifier": delta])
        let logitsInfo = try #require(model.outputs.first { $0.name == "logits" })
        let q = QParams(scale: try #require(logitsInfo.scale), zeroPoint: try #require(logitsInfo.zeroPoint))
        for photo in ["skimage-coffee", "sklearn-flower"] {
            let f = try Fixtures.tensor(Fixtures.models("outputs/efficientnet_lite0_int8/\(photo).features.npy"))
            let got = try #require(try adapted.run(from: "features", value: f, outputs: ["logits"])["logits"])
            var expected = [Float](repeating: 0, count: n)
            for j in 0..<n {
                var s = Double(Float(b[j]) * bs[bs.count == 1 ? 0 : j])
                for kk in 0..<k {
                    let wv = Double(Float(w[j * k + kk]) * ws[j] + delta[j * k + kk])
                    s += Double(f.data[kk]) * wv
                }
                expected[j] = dequantize(quantize(Float(s), q), q)
            }
            let a = Agreement(got, Tensor(shape: [1, n], data: expected), step: q.scale)
            print("[adapted] \(photo): \(a)")
            #expect(a.maxSteps <= 1.001, "\(photo): \(a)")
            // and the delta did change the result
            let base = try #require(try model.run(from: "features", value: f, outputs: ["logits"])["logits"])
            #expect(base != got)
        }
        #expect(throws: InferenceError.self) { _ = try model.adapted(weightDeltas: ["classifier": [0, 1]]) }
        #expect(throws: InferenceError.self) { _ = try model.adapted(weightDeltas: ["no_such_node": [0]]) }
    }

    @Test func threadsGiveIdenticalResults() throws {
        let path = Fixtures.models("efficientnet_lite0_int8.onnx")
        let one = try EngineTests.effnet.get()
        let two = try InferenceModel(path: path, options: EngineOptions(threads: 2))
        let three = try InferenceModel(path: path, options: EngineOptions(threads: 3))
        let x = try EngineTests.photo("sklearn-flower")
        let a = try one.run(["input": x], outputs: ["logits", "features", "blocks.6.add_QuantizeLinear_Output"])
        #expect(try two.run(["input": x], outputs: ["logits", "features", "blocks.6.add_QuantizeLinear_Output"]) == a)
        #expect(
            try three.run(["input": x], outputs: ["logits", "features", "blocks.6.add_QuantizeLinear_Output"]) == a)
        let fp32 = try InferenceModel(path: Fixtures.models("mobilenet_style_fp32.onnx"))
        let fp32x2 = try InferenceModel(
            path: Fixtures.models("mobilenet_style_fp32.onnx"), options: EngineOptions(threads: 2))
        let y = try Fixtures.tensor(Fixtures.models("inputs/64/skimage-rocket.npy"))
        #expect(try fp32.run(["input": y]) == fp32x2.run(["input": y]))
    }

    @Test func portableKernelsGiveTheSameModelOutputs() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.inference("resnet_int8.onnx")))
        let x = try Fixtures.tensor(Fixtures.inference("resnet_in0.npy"))
        let best = try InferenceModel(data: data, options: EngineOptions(), variant: aads_variant_best())
        let portable = try InferenceModel(data: data, options: EngineOptions(), variant: Int32(AADS_VARIANT_PORTABLE))
        #expect(portable.kernelVariant == "portable")
        #expect(try best.run(["input": x]) == portable.run(["input": x]))
    }

    @Test func quantizedInputEqualsFloatInput() throws {
        let model = try EngineTests.effnet.get()
        let info = try #require(model.inputs.first)
        let (scale, zp) = (try #require(info.scale), try #require(info.zeroPoint))
        let x = try EngineTests.photo("skimage-rocket")
        let q = QuantizedTensor(
            shape: x.shape, data: x.data.map { quantizeInt8($0, scale: scale, zeroPoint: zp) }, scale: scale,
            zeroPoint: zp)
        #expect(try model.run(quantizedInput: q) == model.run(["input": x]))
        let wrong = QuantizedTensor(shape: x.shape, data: q.data, scale: scale * 2, zeroPoint: zp)
        #expect(throws: InferenceError.self) { _ = try model.run(quantizedInput: wrong) }
    }

    @Test func runsReuseTheirMemoryPlan() throws {
        let model = try InferenceModel(path: Fixtures.inference("mobilenet_int8.onnx"))
        let x = try Fixtures.tensor(Fixtures.inference("mobilenet_in0.npy"))
        let first = try model.run(["input": x])
        let bytes = model.planBytes
        for _ in 0..<3 { #expect(try model.run(["input": x]) == first) }
        #expect(model.planBytes == bytes)
        // Activations share memory: the arena is smaller than all activations side by side.
        let plan = try #require(
            try model.plan(
                seeds: [model.program.valueIds["input"] ?? -1],
                outputs: model.program.outputs.compactMap { model.program.valueIds[$0] }) as ExecutionPlan?)
        #expect(plan.arena.byteCount < plan.unsharedBytes)
    }

    @Test func elementwiseStepsWriteOverInputsThatDieThere() throws {
        let model = try InferenceModel(path: Fixtures.models("mobilenet_style_fp32.onnx"))
        let ids = model.program.valueIds
        func plan(_ outputs: [String]) throws -> ExecutionPlan {
            try model.plan(seeds: [ids["input"] ?? -1], outputs: outputs.compactMap { ids[$0] })
        }
        let full = try plan(model.program.outputs)
        let unary = full.steps.filter { $0 is FUnaryStep }
        #expect(unary.count >= 3)
        for step in unary {
            #expect(full.pointer(step.inputs[0]) == full.pointer(step.outputs[0]), "\(step.node)")
        }
        // Asked for as an output, the tensor before an activation keeps its own buffer and its values.
        let x = try Fixtures.tensor(Fixtures.models("inputs/64/skimage-rocket.npy"))
        let out = try model.run(["input": x], outputs: ["stem_conv", "stem_hswish"])
        let (conv, act) = (try #require(out["stem_conv"]), try #require(out["stem_hswish"]))
        #expect(zip(conv.data, act.data).contains { abs($0 - $1) > 0.1 })  // not overwritten by the activation
        for (c, a) in zip(conv.data, act.data) { #expect(abs(a - c * max(0, min(1, c / 6 + 0.5))) <= 1e-6) }
        let separate = try plan(["stem_conv", "stem_hswish"])
        #expect(separate.pointer(ids["stem_conv"] ?? -1) != separate.pointer(ids["stem_hswish"] ?? -1))
    }

    @Test func expansionsRunChannelByChannelWithIdenticalResults() throws {
        let path = Fixtures.models("efficientnet_lite0_fp32.onnx")
        let model = try InferenceModel(path: path)
        let ids = model.program.valueIds
        let outputs = model.program.outputs.compactMap { ids[$0] }
        let full = try model.plan(seeds: [ids["input"] ?? -1], outputs: outputs)
        // Each depthwise convolution runs with the convolution and activation before it (the stem, then every
        // block's expansion): the 96×112×112 expansion of the second block never exists whole, and the
        // activations need 2.4 MB instead of 6.0 MB.
        let steps = full.steps.compactMap { $0 as? FConvDepthwiseStep }
        #expect(steps.count == 16)
        // Large planes go 16 channels at a time after the stem and a pointwise tile's rows of channels at a time
        // after an expansion (AVX2 and AVX-512: 6, else 4), or 16 where the depthwise kernel is channel-blocked
        // (AVX-512 and NEON: the 5×5 one at 56×56 and both at 28×28); 14×14 and 7×7 ones in blocks of many channels
        // (1152 in two).
        let rows = Int(aads_fconv_tile_rows(model.variant))
        #expect(rows == ([AADS_VARIANT_AVX2, AADS_VARIANT_AVX512VNNI].contains(Int(model.variant)) ? 6 : 4))
        let blocked = [AADS_VARIANT_AVX512VNNI, AADS_VARIANT_NEON, AADS_VARIANT_NEON_DOT].contains(Int(model.variant))
        let channelBlocked = steps.filter { aads_fconv_channel_blocked(model.variant, [$0.depthwise.param]) != 0 }
        #expect(channelBlocked.count == (blocked ? 13 : 0))
        let large = Array(repeating: rows, count: 2) + Array(repeating: blocked ? 16 : rows, count: 3)
        let small = [156, 156, 156, 156, 156, 156, 660, 660, 660, 660]
        #expect(steps.map(\.block) == [16] + large + small)
        #expect(full.arena.byteCount < 2_500_000)
        // Every ReLU6 (a Clip after a convolution) is the clamp of that convolution's kernels: no pass of its own.
        #expect(!full.steps.contains { ($0 as? FUnaryStep)?.f == .clip(0, 6) })
        #expect(steps.allSatisfy { $0.activations.isEmpty && $0.after.isEmpty })
        #expect(steps.allSatisfy { $0.first.param.clamp == 1 && $0.depthwise.param.clamp == 1 })
        let head = try #require(full.steps.first { $0.node == "conv_head" } as? FConvStep)
        #expect((head.param.clamp, head.param.clamp_lo, head.param.clamp_hi) == (1, 0, 6))

        // Asking for every tensor keeps each in its own buffer, step by step: the same outputs, bit for bit.
        let x = try EngineTests.photo("skimage-chelsea")
        let names = model.program.outputs
        let fused = try model.run(["input": x], outputs: names)
        let everything = Array(ids.keys.filter { $0 != "input" })
        let separate = try model.run(["input": x], outputs: everything)
        for name in names { #expect(fused[name] == separate[name], "\(name)") }
        let two = try InferenceModel(path: path, options: EngineOptions(threads: 2))
        #expect(try two.run(["input": x], outputs: names) == fused)
    }

    @Test func infoDescribesTheModel() throws {
        let info = try InferenceModel.inspect(path: Fixtures.models("efficientnet_lite0_int8.onnx"))
        #expect(info.supported && info.reasons.isEmpty)
        #expect(info.operators["Conv"] == 49)
        #expect(info.inputs.map(\.shape) == [[1, 3, 224, 224]])
        #expect(info.outputs.map(\.name).sorted() == ["features", "logits"])
        // EfficientNet-Lite0: 4.65 M parameters, ~0.39 G multiply-accumulates
        #expect(info.parameters > 4_500_000 && info.parameters < 4_800_000)
        #expect(info.macs > 350_000_000 && info.macs < 420_000_000)
        #expect(info.kernels["qdepthwise"] == 13 || info.kernels["qdepthwise"] == 16)
        let model = try EngineTests.effnet.get()
        #expect(model.inputTensorName(ofNode: "classifier") == "features")
        #expect(model.inputTensorName(ofNode: "conv_head") == "blocks.15.project_conv_DequantizeLinear_Output")
        #expect(model.inputTensorName(ofNode: "pool") == nil)
    }
}
