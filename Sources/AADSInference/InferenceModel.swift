import AADSCore
import CKernels
import Foundation

/// How an int8 operator of a QDQ graph rounds an output whose exact value lies within float noise of a half step.
public enum Rounding: String, Sendable, CaseIterable {
    /// As ONNX Runtime's CPU provider evaluates the float QDQ graph: such outputs are recomputed in float32 in its
    /// order of operations, so the int8 results equal ONNX Runtime's reference bit for bit. The verification mode
    /// (tests, the training tools' features and parity check); it costs about 40 % more time.
    case onnxRuntime = "onnxruntime"
    /// The correctly rounded exact value (integer accumulation, double-precision requantisation) everywhere: the
    /// default.
    case exact
}

/// Options of an `InferenceModel`.
public struct EngineOptions: Sendable {
    /// Threads used inside one inference (output rows/channels are split between them). 1 runs on the caller.
    public var threads: Int = 1
    /// Rounding of near-half int8 results.
    public var rounding: Rounding = .exact

    public init(threads: Int = 1, rounding: Rounding = .exact) {
        self.threads = max(1, min(threads, 64))
        self.rounding = rounding
    }
}

/// A graph input or output as the caller sees it.
public struct TensorInfo: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    /// "float32", "int8" or "uint8".
    public var elementType: String
    /// For a float input that the model quantizes first (or an output it dequantizes last): the int8 parameters.
    public var scale: Float?
    public var zeroPoint: Int32?

    public init(name: String, shape: [Int], elementType: String, scale: Float? = nil, zeroPoint: Int32? = nil) {
        (self.name, self.shape, self.elementType, self.scale, self.zeroPoint) = (
            name, shape, elementType, scale, zeroPoint
        )
    }
}

/// An ONNX model loaded for inference: int8 QDQ groups run as integer kernels, everything else in float.
///
/// Thread safety: a model runs one inference at a time. Calls from several threads are serialised by an internal
/// lock, so one instance can be shared, but concurrent throughput needs one instance per thread (models made by
/// `adapted(weightDeltas:)` share their unchanged weights, so extra instances are cheap).
///
/// Memory: each distinct combination of start tensor and requested outputs gets a static memory plan on first use;
/// later runs with the same combination allocate nothing but the returned tensors.
public final class InferenceModel: @unchecked Sendable {
    let program: Program
    public let info: ModelInfo
    public let options: EngineOptions
    let variant: Int32
    /// Bytes of prepacked weights this model owns that are not shared with the model it was adapted from.
    public let extraWeightBytes: Int

    private let lock = NSLock()
    private var threadLimit = Int.max
    private var plans: [PlanKey: ExecutionPlan] = [:]
    private var planOrder: [PlanKey] = []

    struct PlanKey: Hashable {
        var seeds: [Int]
        var outputs: [Int]
    }

    public convenience init(path: String, options: EngineOptions = .init()) throws {
        try self.init(graph: try ModelLoader.parse(path: path), options: options, variant: aads_variant_best())
    }

    public convenience init(data: Data, options: EngineOptions = .init()) throws {
        try self.init(data: data, options: options, variant: aads_variant_best())
    }

    /// `variant`: the kernel variant (AADS_VARIANT_*), for tests that compare variants.
    convenience init(data: Data, options: EngineOptions, variant: Int32) throws {
        try self.init(graph: try ModelLoader.parse(data), options: options, variant: variant)
    }

    init(graph: consuming Graph, options: EngineOptions, variant: Int32) throws {
        let shapes = try ShapeInference.run(graph)
        var info = ModelInfo(graph: graph, shapes: shapes, program: nil, reasons: [])
        // Lowering owns the graph from here on and releases each weight once it is prepacked.
        let program = try Lowering.lower(consume graph, metas: shapes.metas)
        info.attach(program)
        self.program = program
        self.info = info
        self.options = options
        self.variant = aads_variant_available(variant) != 0 ? variant : Int32(AADS_VARIANT_PORTABLE)
        self.extraWeightBytes = 0
    }

    init(program: Program, info: ModelInfo, options: EngineOptions, variant: Int32, extraWeightBytes: Int) {
        (self.program, self.info, self.options, self.variant, self.extraWeightBytes) =
            (program, info, options, variant, extraWeightBytes)
    }

    /// Reads a model and reports what it contains and whether it can run, without refusing unsupported operators.
    public static func inspect(path: String) throws -> ModelInfo {
        try inspect(graph: try ModelLoader.parse(path: path))
    }

    public static func inspect(data: Data) throws -> ModelInfo {
        try inspect(graph: try ModelLoader.parse(data))
    }

    static func inspect(graph: Graph) throws -> ModelInfo {
        var reasons: [String] = []
        for n in graph.nodes where !supportedOperators.contains(n.op) || !(n.domain.isEmpty || n.domain == "ai.onnx") {
            reasons.append(
                "operator '\(n.op)'\(n.domain.isEmpty ? "" : " of domain '\(n.domain)'") (node '\(n.label)') is not supported"
            )
        }
        var shapes: ShapeInference.Result?
        var program: Program?
        if reasons.isEmpty {
            do {
                shapes = try ShapeInference.run(graph)
                program = try Lowering.lower(graph, metas: shapes?.metas ?? [:])
            } catch {
                reasons.append(AnyCodedError(error).message)
            }
        }
        return ModelInfo(graph: graph, shapes: shapes, program: program, reasons: reasons)
    }

    public var inputs: [TensorInfo] { info.inputs }
    public var outputs: [TensorInfo] { info.outputs }

    /// Name of the kernel variant in use ("avx512vnni", "avx2", "neon-dotprod", "neon", "portable").
    public var kernelVariant: String { String(cString: aads_variant_name(variant)) }

    // MARK: - Running

    /// Runs the model. `inputs` maps every graph input name to a float tensor of its shape (for int8/uint8 graph
    /// inputs the floats are the integer values). `outputs` names graph outputs or any intermediate tensor
    /// (int8 tensors are returned dequantized); nil means the graph outputs.
    public func run(_ inputs: [String: Tensor], outputs: [String]? = nil) throws -> [String: Tensor] {
        lock.lock()
        defer { lock.unlock() }
        for name in inputs.keys where !program.inputs.contains(where: { $0.name == name }) {
            throw fail(.badInput, "the model has no input named '\(name)'")
        }
        var seeds: [(Int, Tensor)] = []
        for input in program.inputs {
            guard let t = inputs[input.name] else { throw fail(.badInput, "input '\(input.name)' is missing") }
            guard t.shape == input.shape else {
                throw fail(.badInput, "input '\(input.name)' has shape \(t.shape); the model expects \(input.shape)")
            }
            guard let id = program.valueIds[input.name] else {
                throw fail(.badInput, "input '\(input.name)' is unused")
            }
            seeds.append((id, t))
        }
        let outNames = outputs ?? program.outputs
        let outIds = try resolveOutputs(outNames)
        let plan = try plan(seeds: seeds.map(\.0), outputs: outIds.map(\.1))
        for (id, t) in seeds {
            let input = program.inputs.first { program.valueIds[$0.name] == id }
            write(t, to: id, plan: plan, rawIntegers: input?.dtype != .float32, unsigned: input?.dtype == .uint8)
        }
        plan.execute(threads: min(options.threads, threadLimit), variant: variant, rounding: options.rounding)
        return collect(outIds, plan: plan, given: [:])
    }

    /// Runs the graph from an intermediate tensor onward: only the nodes between `tensorName` and `outputs` run.
    /// `tensorName` may be any float tensor of the ONNX graph (e.g. what `inputTensorName(ofNode:)` returns).
    public func run(from tensorName: String, value: Tensor, outputs: [String]) throws -> [String: Tensor] {
        try run(starts: [tensorName: value], outputs: outputs)
    }

    /// Runs the part of the graph between several start tensors and `outputs` (see `run(from:value:outputs:)`).
    public func run(starts: [String: Tensor], outputs: [String]) throws -> [String: Tensor] {
        lock.lock()
        defer { lock.unlock() }
        guard !outputs.isEmpty else { throw fail(.badInput, "no outputs requested") }
        guard !starts.isEmpty else { throw fail(.badInput, "no start tensor given") }
        var seeds: [(Int, Tensor)] = []
        for (tensorName, value) in starts.sorted(by: { $0.key < $1.key }) {
            if let id = program.valueIds[tensorName] {
                guard program.values[id].shape == value.shape else {
                    throw fail(.badInput, "'\(tensorName)' has shape \(program.values[id].shape), got \(value.shape)")
                }
                seeds.append((id, value))
                // A dequantized tensor: int8 consumers read its quantized source.
                if let src = program.dequantizedFrom[id] { seeds.append((src, value)) }
            } else if let alias = program.aliases[tensorName], let id = program.valueIds[alias] {
                guard program.values[id].shape == value.shape else {
                    throw fail(.badInput, "'\(tensorName)' has shape \(program.values[id].shape), got \(value.shape)")
                }
                seeds.append((id, value))
            } else {
                throw fail(.unknownTensor, "the model has no tensor named '\(tensorName)'")
            }
        }
        var given: [String: Tensor] = [:]
        for o in outputs { if let v = starts[o] { given[o] = v } }
        let remaining = outputs.filter { starts[$0] == nil }
        if remaining.isEmpty { return given }
        let outIds = try resolveOutputs(remaining)
        let plan = try plan(seeds: seeds.map(\.0), outputs: outIds.map(\.1))
        for (id, t) in seeds { write(t, to: id, plan: plan, rawIntegers: false, unsigned: false) }
        plan.execute(threads: min(options.threads, threadLimit), variant: variant, rounding: options.rounding)
        return collect(outIds, plan: plan, given: given)
    }

    /// Runs the model on an already quantized image: valid when the model's (only) float input feeds a
    /// QuantizeLinear with the same scale and zero point (see `inputs[0].scale` / `.zeroPoint`).
    public func run(quantizedInput: QuantizedTensor, outputs: [String]? = nil) throws -> [String: Tensor] {
        lock.lock()
        defer { lock.unlock() }
        guard program.inputs.count == 1, let input = program.inputs.first,
            let (qName, q) = program.inputQuantization[input.name], let id = program.valueIds[qName]
        else {
            throw fail(.badInput, "the model does not start by quantizing its input")
        }
        guard quantizedInput.shape == input.shape else {
            throw fail(.badInput, "input has shape \(quantizedInput.shape); the model expects \(input.shape)")
        }
        guard quantizedInput.zeroPoint == q.zeroPoint, abs(quantizedInput.scale - q.scale) <= 1e-6 * q.scale else {
            throw fail(
                .badInput,
                "input is quantized with scale \(quantizedInput.scale), zero point \(quantizedInput.zeroPoint); the model uses \(q.scale), \(q.zeroPoint)"
            )
        }
        let outIds = try resolveOutputs(outputs ?? program.outputs)
        let plan = try plan(seeds: [id], outputs: outIds.map(\.1))
        guard let dst = plan.pointer(id)?.assumingMemoryBound(to: Int8.self) else {
            throw fail(.badInput, "the quantized input is not used")
        }
        quantizedInput.data.withUnsafeBufferPointer { src in
            let shape = input.shape
            if shape.count == 4 {
                let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3])
                for b in 0..<n {
                    for ch in 0..<c { for i in 0..<hw { dst[(b * hw + i) * c + ch] = src[(b * c + ch) * hw + i] } }
                }
            } else {
                for i in 0..<src.count { dst[i] = src[i] }
            }
        }
        plan.execute(threads: min(options.threads, threadLimit), variant: variant, rounding: options.rounding)
        return collect(outIds, plan: plan, given: [:])
    }

    /// The float-domain data input of a Conv/Gemm/MatMul node: what `run(from:value:outputs:)` takes to start there.
    public func inputTensorName(ofNode nodeName: String) -> String? { program.dataInputOfNode[nodeName] }

    /// Names of every tensor that can be requested as an output or used as a start.
    public var tensorNames: [String] { (Array(program.valueIds.keys) + Array(program.aliases.keys)).sorted() }

    /// The shape of a named tensor of the graph, or nil when there is no such tensor.
    public func shape(ofTensor name: String) -> [Int]? { valueId(name).map { program.values[$0].shape } }

    /// Whether computing `tensor` reads `source`, directly or through earlier steps (false when either is unknown).
    public func tensor(_ tensor: String, dependsOn source: String) -> Bool {
        guard let target = valueId(tensor), let start = valueId(source) else { return false }
        var sources: Set<Int> = [start]
        if let quantized = program.dequantizedFrom[start] { sources.insert(quantized) }
        let producer = program.producerIndex()
        var stack = [target]
        var seen = Set<Int>()
        while let v = stack.popLast() {
            if sources.contains(v) { return true }
            guard seen.insert(v).inserted, let step = producer[v] else { continue }
            stack.append(contentsOf: program.steps[step].inputs)
        }
        return false
    }

    private func valueId(_ name: String) -> Int? {
        program.valueIds[name] ?? program.aliases[name].flatMap { program.valueIds[$0] }
    }

    // MARK: - Internals

    func resolveOutputs(_ names: [String]) throws -> [(String, Int)] {
        guard !names.isEmpty else { throw fail(.badInput, "no outputs requested") }
        return try names.map { name in
            if let id = program.valueIds[name] { return (name, id) }
            if let alias = program.aliases[name], let id = program.valueIds[alias] { return (name, id) }
            throw fail(.unknownTensor, "the model has no tensor named '\(name)'")
        }
    }

    /// Plans kept per model; the least recently made one is dropped beyond this.
    static let maxPlans = 8

    func plan(seeds: [Int], outputs: [Int]) throws -> ExecutionPlan {
        let key = PlanKey(seeds: seeds, outputs: outputs)
        if let p = plans[key] { return p }
        let p = try ExecutionPlan(
            program: program, seeds: seeds, outputs: outputs, threads: options.threads, variant: variant)
        if plans.count >= Self.maxPlans, let oldest = planOrder.first {
            plans[oldest] = nil
            planOrder.removeFirst()
        }
        plans[key] = p
        planOrder.append(key)
        return p
    }

    /// Threads the next runs use: `options.threads` unless lowered, for a caller that keeps one of them busy with
    /// other work (decoding the next image) meanwhile.
    public var threads: Int {
        get {
            lock.lock()
            defer { lock.unlock() }
            return min(options.threads, threadLimit)
        }
        set {
            lock.lock()
            defer { lock.unlock() }
            threadLimit = max(1, newValue)
        }
    }

    /// Memory of the activation arenas of the plans made so far.
    public var planBytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return plans.values.reduce(0) { $0 + $1.arena.byteCount }
    }

    func write(_ t: Tensor, to id: Int, plan: ExecutionPlan, rawIntegers: Bool, unsigned: Bool) {
        guard let dst = plan.pointer(id) else { return }
        let v = program.values[id]
        t.data.withUnsafeBufferPointer { src in
            guard let base = src.baseAddress else { return }
            if let q = v.quant {
                let out = dst.assumingMemoryBound(to: Int8.self)
                if rawIntegers {
                    // Integer graph input: the floats are the stored integers.
                    let shift: Float = unsigned ? -128 : 0
                    var tmp = [Int8](repeating: 0, count: src.count)
                    for i in 0..<src.count {
                        tmp[i] = Int8(max(-128, min(127, (src[i] + shift).rounded(.toNearestOrEven))))
                    }
                    tmp.withUnsafeBufferPointer { tb in
                        DequantizeStep.applyRaw(tb.baseAddress!, out, shape: v.shape)
                    }
                } else {
                    QuantizeStep.apply(base, out, shape: v.shape, q: q, variant: variant)
                }
            } else {
                dst.assumingMemoryBound(to: Float.self).update(from: base, count: src.count)
            }
        }
    }

    func collect(_ outs: [(String, Int)], plan: ExecutionPlan, given: [String: Tensor]) -> [String: Tensor] {
        var result = given
        for (name, id) in outs {
            let v = program.values[id]
            guard let p = plan.pointer(id) else { continue }
            var data = [Float](repeating: 0, count: v.count)
            data.withUnsafeMutableBufferPointer { dst in
                guard let base = dst.baseAddress else { return }
                if let q = v.quant {
                    DequantizeStep.apply(p.assumingMemoryBound(to: Int8.self), base, shape: v.shape, q: q)
                } else {
                    base.update(from: p.assumingMemoryBound(to: Float.self), count: v.count)
                }
            }
            result[name] = Tensor(shape: v.shape, data: data)
        }
        return result
    }
}
