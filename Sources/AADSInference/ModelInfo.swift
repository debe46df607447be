import AADSCore
import Foundation

/// What a model contains and whether the engine runs it.
public struct ModelInfo: Sendable {
    public var inputs: [TensorInfo]
    public var outputs: [TensorInfo]
    public var opset: Int
    public var producer: String
    /// Operator type → number of nodes (QuantizeLinear/DequantizeLinear included).
    public var operators: [String: Int]
    /// Elements of the weights and biases of Conv, Gemm and MatMul nodes.
    public var parameters: Int
    /// Multiply-accumulates of one inference.
    public var macs: Int
    /// Whether every node is supported.
    public var supported: Bool
    /// Why not, one line per problem.
    public var reasons: [String]
    /// Kernel kind → number of lowered steps (e.g. "qconv", "qdepthwise", "fgemm").
    public var kernels: [String: Int]

    init(graph: borrowing Graph, shapes: ShapeInference.Result?, program: Program?, reasons: [String]) {
        var dqParams: [String: (Float, Int32, String)] = [:]
        var qOfInput: [String: (Float, Int32)] = [:]
        var consumers: [String: [Node]] = [:]
        for n in graph.nodes { for i in n.inputs { consumers[i, default: []].append(n) } }
        func params(_ n: Node) -> (Float, Int32, String)? {
            guard let s = n.input(1).flatMap({ graph.constants[$0] }), s.count == 1, let scale = s.floats.first else {
                return nil
            }
            let z = n.input(2).flatMap { graph.constants[$0] }
            let zp = Int32(clamping: z?.ints?.first ?? 0)
            return (scale, zp, z?.dtype.rawValue ?? "uint8")
        }
        for n in graph.nodes {
            if n.op == "DequantizeLinear", let p = params(n) { dqParams[n.outputs[0]] = p }
            if n.op == "QuantizeLinear", let x = n.input(0), consumers[x]?.count == 1, let p = params(n) {
                qOfInput[x] = (p.0, p.2 == "uint8" ? p.1 &- 128 : p.1)
            }
        }
        inputs = graph.inputs.map { i in
            let q = qOfInput[i.name]
            return TensorInfo(name: i.name, shape: i.shape, elementType: i.dtype.rawValue, scale: q?.0, zeroPoint: q?.1)
        }
        outputs = graph.outputs.map { o in
            let dq = dqParams[o]
            return TensorInfo(
                name: o, shape: shapes?.metas[o]?.shape ?? [],
                elementType: shapes?.metas[o]?.dtype.rawValue ?? "float32",
                scale: dq?.0, zeroPoint: dq.map { $0.2 == "uint8" ? $0.1 &- 128 : $0.1 })
        }
        opset = graph.opset
        producer = graph.producer
        var hist: [String: Int] = [:]
        for n in graph.nodes { hist[n.op, default: 0] += 1 }
        operators = hist
        // Parameters: constants read (directly or through DequantizeLinear) as weights or biases.
        var producerOf: [String: Node] = [:]
        for n in graph.nodes { for o in n.outputs { producerOf[o] = n } }
        func constCount(_ name: String, depth: Int = 0) -> Int {
            if let c = graph.constants[name] { return c.count }
            if depth < 4, let p = producerOf[name], p.op == "DequantizeLinear" || p.op == "QuantizeLinear",
                let x = p.input(0)
            {
                return constCount(x, depth: depth + 1)
            }
            return 0
        }
        var params = 0
        for n in graph.nodes where ["Conv", "Gemm", "MatMul"].contains(n.op) {
            for i in 1..<3 { if let x = n.input(i) { params += constCount(x) } }
        }
        parameters = params
        macs = shapes?.macs.values.reduce(0) { $0.addingReportingOverflow($1).overflow ? Int.max : $0 + $1 } ?? 0
        self.reasons = reasons
        supported = false
        kernels = [:]
        if let program { attach(program) }
    }

    /// Records the lowered program: kernel histogram, and supported when nothing was refused.
    mutating func attach(_ program: Program) {
        supported = reasons.isEmpty
        var kinds: [String: Int] = [:]
        for s in program.steps { kinds[s.kind, default: 0] += 1 }
        kernels = kinds
    }

    /// The JSON object printed by `model info --json`.
    public var jsonObject: [String: Any] {
        func tensor(_ t: TensorInfo) -> [String: Any] {
            var o: [String: Any] = ["name": t.name, "shape": t.shape, "type": t.elementType]
            if let s = t.scale { o["scale"] = Double(s) }
            if let z = t.zeroPoint { o["zero_point"] = Int(z) }
            return o
        }
        return [
            "inputs": inputs.map(tensor), "outputs": outputs.map(tensor), "opset": opset, "producer": producer,
            "operators": operators, "parameters": parameters, "macs": macs, "supported": supported, "reasons": reasons,
            "kernels": kernels,
        ]
    }
}
