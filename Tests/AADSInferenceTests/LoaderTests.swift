import AADSCore
import AADSTestSupport
import Foundation
import SwiftProtobuf
import Testing

@testable import AADSInference

/// Small models built directly as ONNX protobuf messages, valid and broken.
enum TinyModel {
    static func tensor(_ name: String, _ dims: [Int64], floats: [Float]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = dims
        t.dataType = 1
        t.rawData = floats.withUnsafeBytes { Data($0) }
        return t
    }

    static func valueInfo(_ name: String, _ dims: [Int64]) -> Onnx_ValueInfoProto {
        var v = Onnx_ValueInfoProto()
        v.name = name
        var tt = Onnx_TypeProto.Tensor()
        tt.elemType = 1
        var shape = Onnx_TensorShapeProto()
        shape.dim = dims.map { d in
            var dim = Onnx_TensorShapeProto.Dimension()
            dim.dimValue = d
            return dim
        }
        tt.shape = shape
        var type = Onnx_TypeProto()
        type.tensorType = tt
        v.type = type
        return v
    }

    static func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String, ints: [String: [Int64]] = [:])
        -> Onnx_NodeProto
    {
        var n = Onnx_NodeProto()
        n.opType = op
        n.input = inputs
        n.output = outputs
        n.name = name
        for (k, v) in ints {
            var a = Onnx_AttributeProto()
            a.name = k
            a.type = .ints
            a.ints = v
            n.attribute.append(a)
        }
        return n
    }

    /// input [1,3,8,8] → Conv 3x3 pad 1 (4 channels) → Relu → output [1,4,8,8].
    static func valid() -> Onnx_ModelProto {
        var g = Onnx_GraphProto()
        g.name = "tiny"
        g.input = [valueInfo("x", [1, 3, 8, 8])]
        g.output = [valueInfo("y", [1, 4, 8, 8])]
        g.initializer = [
            tensor("w", [4, 3, 3, 3], floats: (0..<108).map { Float($0 % 7) / 10 - 0.3 }),
            tensor("b", [4], floats: [0.1, -0.2, 0.3, 0]),
        ]
        g.node = [
            node(
                "Conv", ["x", "w", "b"], ["c"], name: "conv", ints: ["pads": [1, 1, 1, 1], "kernel_shape": [3, 3]]),
            node("Relu", ["c"], ["y"], name: "relu"),
        ]
        var m = Onnx_ModelProto()
        m.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 13
        m.opsetImport = [opset]
        m.graph = g
        return m
    }

    static func bytes(_ m: Onnx_ModelProto) throws -> Data { try m.serializedData() }
}

@Suite struct LoaderTests {
    func code(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let e as InferenceError {
            return e.code
        } catch {
            return "other: \(error)"
        }
    }

    func load(_ m: Onnx_ModelProto) throws { _ = try InferenceModel(data: try TinyModel.bytes(m)) }

    @Test func validTinyModelRunsLikeAFloatReference() throws {
        let model = try InferenceModel(data: try TinyModel.bytes(TinyModel.valid()))
        let x = Tensor(shape: [1, 3, 8, 8], data: (0..<192).map { Float($0 % 11) / 5 - 1 })
        let y = try #require(try model.run(["x": x])["y"])
        // Direct evaluation of the convolution.
        let w = (0..<108).map { Float($0 % 7) / 10 - 0.3 }
        let b: [Float] = [0.1, -0.2, 0.3, 0]
        for oc in 0..<4 {
            for oh in 0..<8 {
                for ow in 0..<8 {
                    var s = b[oc]
                    for ic in 0..<3 {
                        for ky in 0..<3 {
                            for kx in 0..<3 {
                                let ih = oh + ky - 1
                                let iw = ow + kx - 1
                                guard ih >= 0, ih < 8, iw >= 0, iw < 8 else { continue }
                                s += w[((oc * 3 + ic) * 3 + ky) * 3 + kx] * x.data[(ic * 8 + ih) * 8 + iw]
                            }
                        }
                    }
                    #expect(abs(y.data[(oc * 8 + oh) * 8 + ow] - max(0, s)) < 1e-5)
                }
            }
        }
    }

    @Test func weightsStoredAsDoublesOrTypedFloatsLoadLikeRawFloats() throws {
        let x = Tensor(shape: [1, 3, 8, 8], data: (0..<192).map { Float($0 % 13) / 6 - 1 })
        let reference = try InferenceModel(data: try TinyModel.bytes(TinyModel.valid())).run(["x": x])
        let floats = TinyModel.valid().graph.initializer[0]
        let values = (0..<108).map { Float($0 % 7) / 10 - 0.3 }
        var doubles = floats
        doubles.dataType = 11
        doubles.rawData = values.map { Double($0) }.withUnsafeBytes { Data($0) }
        var typed = floats
        typed.rawData = Data()
        typed.floatData = values
        for w in [doubles, typed] {
            var m = TinyModel.valid()
            m.graph.initializer[0] = w
            #expect(try InferenceModel(data: try TinyModel.bytes(m)).run(["x": x]) == reference)
        }
    }

    @Test func truncatedAndGarbageBytesAreBadModels() throws {
        let data = try TinyModel.bytes(TinyModel.valid())
        for cut in [1, 7, data.count / 3, data.count / 2, data.count - 1] {
            let c = code { _ = try InferenceModel(data: data.prefix(cut)) }
            #expect(c == "bad_model" || c == "missing_initializer", "cut at \(cut): \(c ?? "loaded")")
        }
        #expect(code { _ = try InferenceModel(data: Data("hello, not a model".utf8)) } == "bad_model")
        #expect(code { _ = try InferenceModel(data: Data()) } == "bad_model")
    }

    @Test func anUnreadableFileCouldNotRunABadModelIsRefused() {
        let missing = #expect(throws: InferenceError.self) { _ = try InferenceModel(path: "/nonexistent/model.onnx") }
        #expect(missing?.code == "io_error")
        #expect(missing.map { FailureKind.of($0) } == .couldNotRun)
        let garbage = #expect(throws: InferenceError.self) { _ = try InferenceModel(data: Data("not a model".utf8)) }
        #expect(garbage?.code == "bad_model")
        #expect(garbage?.failure == .refused)
    }

    @Test func missingInitializer() {
        var m = TinyModel.valid()
        m.graph.initializer.removeFirst()
        #expect(code { try load(m) } == "missing_initializer")
    }

    @Test func cycle() {
        var m = TinyModel.valid()
        m.graph.node = [
            TinyModel.node("Relu", ["y"], ["c"], name: "a"),
            TinyModel.node("Relu", ["c"], ["y"], name: "b"),
        ]
        #expect(code { try load(m) } == "cycle")
    }

    @Test func unsupportedOperatorNamesOpAndNode() throws {
        var m = TinyModel.valid()
        m.graph.node[1] = TinyModel.node("Tanh", ["c"], ["y"], name: "my_tanh")
        do {
            try load(m)
            Issue.record("loaded")
        } catch let e as InferenceError {
            #expect(e.code == "unsupported_operator")
            #expect(e.message.contains("Tanh") && e.message.contains("my_tanh"))
        }
        let info = try InferenceModel.inspect(data: try TinyModel.bytes(m))
        #expect(!info.supported)
        #expect(info.reasons.contains { $0.contains("my_tanh") })
    }

    @Test func absurdDimensionsAreTooLarge() {
        var m = TinyModel.valid()
        m.graph.input = [TinyModel.valueInfo("x", [1, 3, 1 << 40, 1 << 40])]
        #expect(code { try load(m) } == "too_large")
        var m2 = TinyModel.valid()
        m2.graph.initializer[0].dims = [4, 3, 1 << 30, 1 << 30]
        #expect(code { try load(m2) } == "too_large")
        var m3 = TinyModel.valid()
        m3.graph.input = [TinyModel.valueInfo("x", [1, 3, 8000, 8000])]
        #expect(code { try load(m3) } == "too_large")
    }

    @Test func inconsistentDataAndShapes() {
        var m = TinyModel.valid()
        m.graph.initializer[0].dims = [4, 3, 3, 2]
        #expect(code { try load(m) } == "bad_model")
        var m2 = TinyModel.valid()
        m2.graph.initializer[0] = TinyModel.tensor("w", [4, 2, 3, 3], floats: [Float](repeating: 0, count: 72))
        #expect(code { try load(m2) } == "shape_mismatch")
        var m3 = TinyModel.valid()
        m3.graph.input = [TinyModel.valueInfo("x", [1, 3, 2, 2])]
        m3.graph.node[0] = TinyModel.node("Conv", ["x", "w", "b"], ["c"], name: "conv")
        #expect(code { try load(m3) } == "shape_mismatch")
    }

    @Test func externalDataAndOldOpsetsAreRefused() {
        var m = TinyModel.valid()
        m.graph.initializer[0].dataLocation = .external
        #expect(code { try load(m) } == "unsupported_model")
        var m2 = TinyModel.valid()
        m2.opsetImport[0].version = 11
        #expect(code { try load(m2) } == "unsupported_model")
    }

    @Test func badRunInputs() throws {
        let model = try InferenceModel(data: try TinyModel.bytes(TinyModel.valid()))
        let good = Tensor(zeros: [1, 3, 8, 8])
        #expect(code { _ = try model.run(["x": Tensor(zeros: [1, 3, 4, 4])]) } == "bad_input")
        #expect(code { _ = try model.run([:]) } == "bad_input")
        #expect(code { _ = try model.run(["x": good, "other": good]) } == "bad_input")
        #expect(code { _ = try model.run(["x": good], outputs: ["nope"]) } == "unknown_tensor")
        #expect(code { _ = try model.run(from: "nope", value: good, outputs: ["y"]) } == "unknown_tensor")
        // An intermediate as output, and starting from it.
        let c = try #require(try model.run(["x": good], outputs: ["c"])["c"])
        let y1 = try #require(try model.run(["x": good])["y"])
        let y2 = try #require(try model.run(from: "c", value: c, outputs: ["y"])["y"])
        #expect(y1 == y2)
    }
}

@Test func errorMessagesStayOnOneLine() throws {
    var m = TinyModel.valid()
    m.graph.output = [TinyModel.valueInfo("\n\nout\r\u{1}" + String(repeating: "x", count: 1000), [1])]
    do {
        _ = try InferenceModel(data: try TinyModel.bytes(m))
        Issue.record("loaded")
    } catch let e as InferenceError {
        #expect(e.code == "bad_model")
        #expect(!e.message.contains("\n") && !e.message.contains("\r") && e.message.count <= 401)
    }
}

@Test func nodesWithoutInputsAreReportedNotFatal() throws {
    for op in ["Conv", "QuantizeLinear", "DequantizeLinear", "Gemm", "Add", "Concat", "Reshape", "Tanh"] {
        var m = TinyModel.valid()
        m.graph.node.append(TinyModel.node(op, [], ["extra_\(op)"], name: "bare"))
        m.graph.output.append(TinyModel.valueInfo("extra_\(op)", [1]))
        let info = try InferenceModel.inspect(data: try TinyModel.bytes(m))
        #expect(!info.supported, "\(op)")
        #expect(throws: InferenceError.self) { _ = try InferenceModel(data: try TinyModel.bytes(m)) }
    }
}

@Test func extremeQuantizationConstantsDoNotTrap() throws {
    // Bias through DequantizeLinear of int32 data at the type's limits, with a non-zero zero point.
    var m = TinyModel.valid()
    var bq = Onnx_TensorProto()
    bq.name = "bq"
    bq.dims = [4]
    bq.dataType = 6
    bq.int32Data = [Int32.min, Int32.max, -1, 0]
    var zp = Onnx_TensorProto()
    zp.name = "bzp"
    zp.dims = [4]
    zp.dataType = 6
    zp.int32Data = [Int32.max, Int32.min, 1, 0]
    m.graph.initializer.append(bq)
    m.graph.initializer.append(zp)
    m.graph.initializer.append(TinyModel.tensor("bs", [4], floats: [1e-3, 1e-3, 1e-3, 1e-3]))
    var dq = TinyModel.node("DequantizeLinear", ["bq", "bs", "bzp"], ["b2"], name: "dq")
    var axis = Onnx_AttributeProto()
    axis.name = "axis"
    axis.type = .int
    axis.i = 0
    dq.attribute = [axis]
    m.graph.node.insert(dq, at: 0)
    m.graph.node[1].input[2] = "b2"
    let model = try InferenceModel(data: try TinyModel.bytes(m))
    let y = try #require(try model.run(["x": Tensor(zeros: [1, 3, 8, 8])])["y"])
    #expect(y.shape == [1, 4, 8, 8])
}

/// Loading initializers one at a time from the file (`ModelWire.split`) must build the same graph as
/// decoding the whole model as one protobuf message.
@Suite struct SplitLoadTests {
    /// Nodes and constants of a graph in comparable form.
    struct Content: Equatable {
        var nodes: [String]
        var constants: [String: [Float]]
        var shapes: [String: [Int]]
        var types: [String: String]
        var inputs: [String]
        var outputs: [String]

        init(_ g: Graph) {
            nodes = g.nodes.map { n in
                "\(n.name) \(n.op) \(n.inputs) -> \(n.outputs) \(n.attributes.keys.sorted())"
            }
            constants = g.constants.mapValues(\.floats)
            shapes = g.constants.mapValues(\.shape)
            types = g.constants.mapValues { $0.dtype.rawValue }
            inputs = g.inputs.map { "\($0.name) \($0.dtype) \($0.shape)" }
            outputs = g.outputs
        }
    }

    func whole(_ data: Data) throws -> Content {
        Content(try ModelLoader.convert(try Onnx_ModelProto(serializedBytes: data)))
    }

    func wasSplit(_ data: Data) -> ModelWire.Split? { data.withUnsafeBytes { ModelWire.split($0) } }

    @Test(arguments: ["efficientnet_lite0_int8.onnx", "mobilenet_style_fp32.onnx", "resnet_style_int8.onnx"])
    func fixtureModelsLoadTheSameFromTheFile(_ name: String) throws {
        let path = Fixtures.models(name)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let split = try #require(wasSplit(data))
        #expect(split.skeleton.count <= data.count - split.initializers.reduce(0) { $0 + $1.count })
        let fromFile = Content(try ModelLoader.parse(path: path))
        #expect(fromFile.constants.count == split.initializers.count)
        #expect(fromFile == (try whole(data)))
    }

    @Test func rawDataIsReadInPlaceAndGivenBackAsItIsConverted() throws {
        // The float32 EfficientNet-Lite0's classifier weight is 5 MB: its pages go back a megabyte at a time as
        // they are converted, instead of all at once after the decoder has copied the whole weight.
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.models("efficientnet_lite0_fp32.onnx")))
        var released: [Range<Int>] = []
        let graph = try data.withUnsafeBytes { try ModelLoader.parse($0) { released.append($0) } }
        #expect(Content(graph) == (try whole(data)))
        #expect(released.count > 17)
        #expect(released.allSatisfy { $0.count <= (1 << 20) + 2 * MappedFile.pageSize })
        #expect(zip(released, released.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
    }

    @Test func initializersAmongOtherGraphFieldsKeepTheirOrderAndNeighbours() throws {
        // One graph field whose payload is three graph messages back to back (protobuf merges them):
        // nodes and name, then the initializers, then inputs and outputs.
        let model = TinyModel.valid()
        var nodes = Onnx_GraphProto()
        nodes.node = model.graph.node
        nodes.name = model.graph.name
        var weights = Onnx_GraphProto()
        weights.initializer = model.graph.initializer
        var io = Onnx_GraphProto()
        io.input = model.graph.input
        io.output = model.graph.output
        let graph: [UInt8] = try nodes.serializedBytes() + weights.serializedBytes() + io.serializedBytes()
        var top = model
        top.clearGraph()
        var bytes: [UInt8] = try top.serializedBytes()
        ModelWire.appendVarint(7 << 3 | 2, to: &bytes)
        ModelWire.appendVarint(UInt64(graph.count), to: &bytes)
        bytes += graph
        let data = Data(bytes)

        let split = try #require(wasSplit(data))
        #expect(split.initializers.count == 2)
        let skeleton = try Onnx_ModelProto(serializedBytes: split.skeleton)
        #expect(skeleton.graph.initializer.isEmpty)
        #expect(skeleton.graph.node.map(\.name) == ["conv", "relu"])
        #expect(skeleton.graph.input.map(\.name) == ["x"] && skeleton.graph.name == "tiny")
        let loaded = Content(try ModelLoader.parse(data))
        #expect(loaded == (try whole(try TinyModel.bytes(model))))
        #expect(loaded.constants.keys.sorted() == ["b", "w"])
    }

    @Test func twoGraphFieldsAreDecodedAsOneMessage() throws {
        // Two concatenated models: protobuf merges their graphs, so the split is refused and the
        // whole message is decoded.
        let model = TinyModel.valid()
        var first = Onnx_ModelProto()
        first.graph.initializer = model.graph.initializer
        var second = model
        second.graph.initializer = []
        let data = try TinyModel.bytes(first) + TinyModel.bytes(second)
        #expect(wasSplit(data) == nil)
        #expect(Content(try ModelLoader.parse(data)) == (try whole(try TinyModel.bytes(model))))
    }

    @Test func aDamagedInitializerIsABadModel() throws {
        var bytes = [UInt8](try TinyModel.bytes(TinyModel.valid()))
        let split = try #require(bytes.withUnsafeBytes { ModelWire.split($0) })
        bytes[split.initializers[1].lowerBound] = 0x0f  // field 1 with wire type 7, which does not exist
        let error = #expect(throws: InferenceError.self) { try ModelLoader.parse(Data(bytes)) }
        #expect(error?.code == "bad_model")
    }

    @Test func malformedWireDataIsNotSplit() {
        let cases: [[UInt8]] = [
            [0x3a, 0x05, 0x01],  // graph field longer than the bytes
            [0x00, 0x01],  // field number 0
            [0x0b],  // a group
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],  // an 11-byte varint
        ]
        for bytes in cases {
            #expect(bytes.withUnsafeBytes { ModelWire.split($0) } == nil, "\(bytes)")
        }
    }
}
