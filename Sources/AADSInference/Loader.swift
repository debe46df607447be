import AADSCore
import Foundation
import SwiftProtobuf

/// Parses and validates ONNX model bytes into a `Graph`.
enum ModelLoader {
    /// Largest number of elements of any single tensor (initializer or activation).
    static let maxElements = 1 << 26
    /// Largest single dimension.
    static let maxDimension = 1 << 24
    /// Largest accepted model file.
    static let maxFileBytes = 1 << 30

    static func parse(_ data: Data) throws -> Graph {
        guard data.count <= maxFileBytes else { throw fail(.tooLarge, "model file is \(data.count) bytes") }
        return try data.withUnsafeBytes { try parse($0, release: { _ in }) }
    }

    /// Parses the file at `path`. The file is mapped, and its pages are given back as the initializers in
    /// them are decoded, so a load never holds the whole file and a decoded copy of every weight at once.
    static func parse(path: String) throws -> Graph {
        let file: MappedFile
        do {
            file = try MappedFile(path: path)
        } catch {
            throw fail(.ioError, "cannot read \(path): \(error.reason)")
        }
        guard file.bytes.count <= maxFileBytes else {
            throw fail(.tooLarge, "model file is \(file.bytes.count) bytes")
        }
        return try parse(file.bytes, release: file.release)
    }

    /// Decodes the model without its initializers, then each initializer on its own from `bytes`,
    /// calling `release` with the part of `bytes` that is no longer needed. Models of an unusual layout
    /// (see `ModelWire.split`) are decoded as one message.
    static func parse(_ bytes: UnsafeRawBufferPointer, release: (Range<Int>) -> Void) throws -> Graph {
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = 64
        func decoded<M>(_ make: () throws -> M) throws -> M {
            do { return try make() } catch { throw fail(.badModel, "not a valid ONNX protobuf (\(error))") }
        }
        func view(_ range: Range<Int>) -> Data {  // no copy: the decoder copies what it keeps
            guard let base = bytes.baseAddress, !range.isEmpty else { return Data() }
            return Data(
                bytesNoCopy: UnsafeMutableRawPointer(mutating: base + range.lowerBound), count: range.count,
                deallocator: .none)
        }
        guard let split = ModelWire.split(bytes) else {
            let model = try decoded { try Onnx_ModelProto(serializedBytes: view(bytes.indices), options: options) }
            return try convert(model)
        }
        let skeleton = try decoded { try Onnx_ModelProto(serializedBytes: split.skeleton, options: options) }
        return try withoutActuallyEscaping(release) { release in
            try convert(skeleton) { add in
                var released = 0
                func consumed(upTo offset: Int) {
                    let end = offset / MappedFile.pageSize * MappedFile.pageSize
                    if end > released {
                        release(released..<end)
                        released = end
                    }
                }
                for range in split.initializers {
                    // The raw data is left out of the decoded message and read in place, its pages given back as it is
                    // converted: the decoder would copy it, holding a large weight twice on top of its conversion.
                    guard let (rest, raw) = ModelWire.splitRawData(bytes, in: range) else {
                        let tensor = try decoded {
                            try Onnx_TensorProto(serializedBytes: view(range), options: options)
                        }
                        consumed(upTo: range.upperBound)  // the decoded message holds its own copy of the bytes
                        try add(tensor, nil)
                        continue
                    }
                    let tensor = try decoded { try Onnx_TensorProto(serializedBytes: rest, options: options) }
                    let data = RawData(bytes: UnsafeRawBufferPointer(rebasing: bytes[raw])) {
                        consumed(upTo: raw.lowerBound + $0)
                    }
                    try add(tensor, data)
                    consumed(upTo: range.upperBound)
                }
            }
        }
    }

    /// An initializer's raw data read in place from the model file; `consumed(n)` is told that its first `n` bytes
    /// will not be read again.
    struct RawData {
        var bytes: UnsafeRawBufferPointer
        var consumed: (Int) -> Void
    }

    /// Builds the graph, releasing each initializer's protobuf bytes as soon as it has been converted.
    /// `moreInitializers` hands over initializers decoded apart from `proto`, one at a time.
    static func convert(
        _ proto: consuming Onnx_ModelProto,
        moreInitializers: ((Onnx_TensorProto, RawData?) throws -> Void) throws -> Void = { _ in }
    ) throws -> Graph {
        var model = proto
        guard model.hasGraph else { throw fail(.badModel, "the model has no graph") }
        let producer = [model.producerName, model.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        let irVersion = Int(clamping: model.irVersion)
        var opset: Int?
        for entry in model.opsetImport where entry.domain.isEmpty || entry.domain == "ai.onnx" {
            opset = Int(clamping: entry.version)
        }
        guard let opset else { throw fail(.badModel, "the model imports no version of the default operator set") }
        guard opset >= 13 else {
            throw fail(.unsupportedModel, "operator set \(opset) is too old; version 13 or later is required")
        }
        var g = model.graph
        model = Onnx_ModelProto()
        var initializers = g.initializer
        g.initializer = []
        var constants: [String: ConstTensor] = [:]
        func add(_ t: Onnx_TensorProto, _ raw: RawData?) throws {
            guard !t.name.isEmpty else { throw fail(.badModel, "an initializer has no name") }
            guard constants[t.name] == nil else { throw fail(.badModel, "initializer '\(t.name)' is defined twice") }
            constants[t.name] = try constant(t, context: "initializer '\(t.name)'", raw: raw)
        }
        for i in initializers.indices {
            let t = initializers[i]
            initializers[i] = Onnx_TensorProto()
            try add(t, nil)
        }
        try moreInitializers(add)
        guard g.sparseInitializer.isEmpty else {
            throw fail(.unsupportedModel, "sparse initializers are not supported")
        }

        var inputs: [GraphInput] = []
        for vi in g.input where constants[vi.name] == nil {
            inputs.append(try graphInput(vi))
        }
        guard !inputs.isEmpty else { throw fail(.badModel, "the graph has no inputs") }

        var nodes: [Node] = []
        for (i, n) in g.node.enumerated() {
            var attributes: [String: Attribute] = [:]
            for a in n.attribute { attributes[a.name] = try attribute(a, node: n.name) }
            let node = Node(
                name: n.name.isEmpty ? "\(n.opType)_\(i)" : n.name, op: n.opType, domain: n.domain,
                inputs: n.input, outputs: n.output, attributes: attributes)
            guard !node.outputs.isEmpty, !node.outputs.contains(where: { $0.isEmpty }) else {
                throw fail(.badModel, "node '\(node.label)' has an unnamed output")
            }
            if node.op == "Constant" && (node.domain.isEmpty || node.domain == "ai.onnx") {
                guard node.outputs.count == 1, node.inputs.isEmpty else {
                    throw fail(.badModel, "Constant node '\(node.label)' must have no inputs and one output")
                }
                guard constants[node.outputs[0]] == nil else {
                    throw fail(.badModel, "tensor '\(node.outputs[0])' is defined twice")
                }
                constants[node.outputs[0]] = try constantNode(node)
                continue
            }
            nodes.append(node)
        }
        let outputs = g.output.map(\.name)
        guard !outputs.isEmpty else { throw fail(.badModel, "the graph has no outputs") }
        let sorted = try topologicalSort(nodes, inputs: inputs.map(\.name), constants: constants, outputs: outputs)
        return Graph(
            nodes: sorted, constants: constants, inputs: inputs, outputs: outputs, opset: opset,
            producer: producer, irVersion: irVersion)
    }

    // MARK: - Tensors

    static func checkedCount(_ dims: [Int], context: String) throws -> Int {
        var count = 1
        for d in dims {
            guard d >= 0 else { throw fail(.badModel, "\(context) has a negative dimension \(d)") }
            guard d <= maxDimension else { throw fail(.tooLarge, "\(context) has a dimension of \(d)") }
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, p <= maxElements else {
                throw fail(.tooLarge, "\(context) has more than \(maxElements) elements")
            }
            count = p
        }
        return count
    }

    /// `raw`: the tensor's raw data when it was left out of `t` (then read from there instead).
    static func constant(_ t: Onnx_TensorProto, context: String, raw mapped: RawData? = nil) throws -> ConstTensor {
        if t.dataLocation == .external || !t.externalData.isEmpty {
            throw fail(.unsupportedModel, "\(context) keeps its data in an external file, which is refused")
        }
        if t.hasSegment { throw fail(.unsupportedModel, "\(context) is a segmented tensor") }
        for d in t.dims where d < 0 || d > Int64(maxDimension) {
            throw fail(d < 0 ? .badModel : .tooLarge, "\(context) has dimension \(d)")
        }
        let shape = t.dims.map { Int($0) }
        let count = try checkedCount(shape, context: context)
        let message = t.rawData
        return try message.withUnsafeBytes { bytes in
            try constant(t, shape: shape, count: count, context: context, raw: mapped ?? RawData(bytes: bytes) { _ in })
        }
    }

    private static func constant(
        _ t: Onnx_TensorProto, shape: [Int], count: Int, context: String, raw: RawData
    ) throws -> ConstTensor {
        func rawCheck(_ size: Int) throws -> Bool {
            if raw.bytes.isEmpty { return false }
            guard raw.bytes.count == count * size else {
                throw fail(.badModel, "\(context): raw data holds \(raw.bytes.count) bytes, \(count * size) expected")
            }
            return true
        }
        func typedCheck(_ n: Int) throws {
            guard n == count else {
                throw fail(.badModel, "\(context): \(n) values for \(count) elements")
            }
        }
        switch t.dataType {
        case 1:
            if try rawCheck(4) {
                let floats = decode(raw, count, UInt32.self) { Float(bitPattern: $0) }
                return ConstTensor(shape: shape, storage: .float(floats))
            }
            try typedCheck(t.floatData.count)
            return ConstTensor(shape: shape, storage: .float(t.floatData))
        case 2:
            if try rawCheck(1) { return ConstTensor(shape: shape, storage: .uint8(decode(raw, count, UInt8.self))) }
            try typedCheck(t.int32Data.count)
            return ConstTensor(shape: shape, storage: .uint8(t.int32Data.map { UInt8(truncatingIfNeeded: $0) }))
        case 3:
            if try rawCheck(1) { return ConstTensor(shape: shape, storage: .int8(decode(raw, count, Int8.self))) }
            try typedCheck(t.int32Data.count)
            return ConstTensor(shape: shape, storage: .int8(t.int32Data.map { Int8(truncatingIfNeeded: $0) }))
        case 6:
            if try rawCheck(4) { return ConstTensor(shape: shape, storage: .int32(decode(raw, count, Int32.self))) }
            try typedCheck(t.int32Data.count)
            return ConstTensor(shape: shape, storage: .int32(t.int32Data))
        case 7:
            if try rawCheck(8) { return ConstTensor(shape: shape, storage: .int64(decode(raw, count, Int64.self))) }
            try typedCheck(t.int64Data.count)
            return ConstTensor(shape: shape, storage: .int64(t.int64Data))
        case 11:
            // Doubles are narrowed to float (some exporters write scalar constants as double).
            if try rawCheck(8) {
                let floats = decode(raw, count, UInt64.self) { Float(Double(bitPattern: $0)) }
                return ConstTensor(shape: shape, storage: .float(floats))
            }
            try typedCheck(t.doubleData.count)
            return ConstTensor(shape: shape, storage: .float(t.doubleData.map { Float($0) }))
        default:
            throw fail(.unsupportedModel, "\(context) has element type \(t.dataType), which is not supported")
        }
    }

    /// Little-endian `T`s from `raw`, each turned into an element by `element`, in one pass (no array of `T`),
    /// telling `raw` after each megabyte or so how far it got.
    static func decode<T: FixedWidthInteger, Element>(
        _ raw: RawData, _ count: Int, _: T.Type, _ element: (T) -> Element
    ) -> [Element] {
        let size = T.bitWidth / 8
        let chunk = max(1, (1 << 20) / size)
        return [Element](unsafeUninitializedCapacity: count) { buffer, initialized in
            var start = 0
            while start < count {
                let end = min(count, start + chunk)
                for i in start..<end {
                    let bits = T(littleEndian: raw.bytes.loadUnaligned(fromByteOffset: i * size, as: T.self))
                    (buffer.baseAddress! + i).initialize(to: element(bits))
                }
                raw.consumed(end * size)
                start = end
            }
            initialized = count
        }
    }

    static func decode<T: FixedWidthInteger>(_ raw: RawData, _ count: Int, _: T.Type) -> [T] {
        decode(raw, count, T.self) { $0 }
    }

    static func dtype(_ code: Int32) -> DType? {
        switch code {
        case 1: .float32
        case 2: .uint8
        case 3: .int8
        case 6: .int32
        case 7: .int64
        default: nil
        }
    }

    static func graphInput(_ vi: Onnx_ValueInfoProto) throws -> GraphInput {
        guard !vi.name.isEmpty else { throw fail(.badModel, "a graph input has no name") }
        guard vi.hasType, case .tensorType(let tt)? = vi.type.value else {
            throw fail(.unsupportedModel, "graph input '\(vi.name)' is not a tensor")
        }
        guard let dt = dtype(tt.elemType) else {
            throw fail(.unsupportedModel, "graph input '\(vi.name)' has element type \(tt.elemType)")
        }
        guard tt.hasShape else { throw fail(.unsupportedModel, "graph input '\(vi.name)' has no shape") }
        var shape: [Int] = []
        var symbolic: [Bool] = []
        for d in tt.shape.dim {
            if case .dimValue(let v)? = d.value {
                guard v > 0 else { throw fail(.badModel, "graph input '\(vi.name)' has dimension \(v)") }
                guard v <= Int64(maxDimension) else {
                    throw fail(.tooLarge, "graph input '\(vi.name)' has dimension \(v)")
                }
                shape.append(Int(v))
                symbolic.append(false)
            } else {
                shape.append(1)
                symbolic.append(true)
            }
        }
        _ = try checkedCount(shape, context: "graph input '\(vi.name)'")
        return GraphInput(name: vi.name, dtype: dt, shape: shape, symbolic: symbolic)
    }

    static func attribute(_ a: Onnx_AttributeProto, node: String) throws -> Attribute {
        switch a.type {
        case .int: return .int(Int(clamping: a.i))
        case .float: return .float(a.f)
        case .ints: return .ints(a.ints.map { Int(clamping: $0) })
        case .floats: return .floats(a.floats)
        case .string: return .string(String(decoding: a.s, as: UTF8.self))
        case .tensor: return .tensor(try constant(a.t, context: "attribute '\(a.name)' of node '\(node)'"))
        default:
            if a.hasI { return .int(Int(clamping: a.i)) }
            if a.hasF { return .float(a.f) }
            if !a.ints.isEmpty { return .ints(a.ints.map { Int(clamping: $0) }) }
            return .unsupported
        }
    }

    static func constantNode(_ node: Node) throws -> ConstTensor {
        switch (
            node.attributes["value"], node.attributes["value_float"], node.attributes["value_floats"],
            node.attributes["value_int"], node.attributes["value_ints"]
        ) {
        case (.tensor(let t)?, _, _, _, _): return t
        case (_, .float(let f)?, _, _, _): return ConstTensor(shape: [], storage: .float([f]))
        case (_, _, .floats(let f)?, _, _): return ConstTensor(shape: [f.count], storage: .float(f))
        case (_, _, _, .int(let i)?, _): return ConstTensor(shape: [], storage: .int64([Int64(i)]))
        case (_, _, _, _, .ints(let i)?): return ConstTensor(shape: [i.count], storage: .int64(i.map { Int64($0) }))
        default: throw fail(.unsupportedOperator, "Constant node '\(node.label)' has no supported value attribute")
        }
    }

    // MARK: - Graph structure

    /// Orders the nodes so that every tensor is produced before it is read; refuses cycles, undefined tensors and
    /// tensors produced twice.
    static func topologicalSort(_ nodes: [Node], inputs: [String], constants: [String: ConstTensor], outputs: [String])
        throws -> [Node]
    {
        var producer: [String: Int] = [:]
        var defined = Set(inputs)
        for name in inputs where constants[name] != nil {
            throw fail(.badModel, "'\(name)' is both a graph input and an initializer")
        }
        defined.formUnion(constants.keys)
        for (i, n) in nodes.enumerated() {
            for o in n.outputs {
                guard producer[o] == nil, !defined.contains(o) else {
                    throw fail(.badModel, "tensor '\(o)' is defined twice (again by node '\(n.label)')")
                }
                producer[o] = i
            }
        }
        var indegree = [Int](repeating: 0, count: nodes.count)
        var dependents = [[Int]](repeating: [], count: nodes.count)
        for (i, n) in nodes.enumerated() {
            var seen = Set<Int>()
            for input in n.inputs where !input.isEmpty {
                if let p = producer[input] {
                    if seen.insert(p).inserted {
                        indegree[i] += 1
                        dependents[p].append(i)
                    }
                } else if !defined.contains(input) {
                    throw fail(
                        .missingInitializer,
                        "node '\(n.label)' reads '\(input)', which no node, graph input or initializer provides")
                }
            }
        }
        for o in outputs where producer[o] == nil && !defined.contains(o) {
            throw fail(.badModel, "graph output '\(o)' is not produced by any node")
        }
        // Kahn's algorithm, keeping the file order among ready nodes.
        var ready = (0..<nodes.count).filter { indegree[$0] == 0 }.reversed() as [Int]
        var order: [Int] = []
        order.reserveCapacity(nodes.count)
        while let i = ready.popLast() {
            order.append(i)
            for d in dependents[i].reversed() {
                indegree[d] -= 1
                if indegree[d] == 0 { ready.append(d) }
            }
        }
        if order.count < nodes.count {
            let stuck = (0..<nodes.count).first { indegree[$0] > 0 }.map { nodes[$0].label } ?? "?"
            throw fail(.cycle, "the graph has a cycle through node '\(stuck)'")
        }
        return order.map { nodes[$0] }
    }
}
