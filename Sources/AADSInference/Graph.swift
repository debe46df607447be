import Foundation

/// Element types the engine understands.
enum DType: String, Sendable {
    case float32, int8, uint8, int32, int64

    var size: Int {
        switch self {
        case .int8, .uint8: 1
        case .float32, .int32: 4
        case .int64: 8
        }
    }
}

/// A constant tensor (initializer or Constant node), row-major.
struct ConstTensor: Sendable {
    enum Storage: Sendable {
        case float([Float])
        case int8([Int8])
        case uint8([UInt8])
        case int32([Int32])
        case int64([Int64])
    }

    var shape: [Int]
    var storage: Storage

    var count: Int {
        switch storage {
        case .float(let v): v.count
        case .int8(let v): v.count
        case .uint8(let v): v.count
        case .int32(let v): v.count
        case .int64(let v): v.count
        }
    }

    var dtype: DType {
        switch storage {
        case .float: .float32
        case .int8: .int8
        case .uint8: .uint8
        case .int32: .int32
        case .int64: .int64
        }
    }

    /// Values converted to Float.
    var floats: [Float] {
        switch storage {
        case .float(let v): v
        case .int8(let v): v.map { Float($0) }
        case .uint8(let v): v.map { Float($0) }
        case .int32(let v): v.map { Float($0) }
        case .int64(let v): v.map { Float($0) }
        }
    }

    /// Values converted to Int (integer storage only).
    var ints: [Int]? {
        switch storage {
        case .float: nil
        case .int8(let v): v.map { Int($0) }
        case .uint8(let v): v.map { Int($0) }
        case .int32(let v): v.map { Int($0) }
        case .int64(let v): v.map { Int($0) }
        }
    }
}

/// An operator attribute.
enum Attribute: Sendable {
    case int(Int)
    case float(Float)
    case ints([Int])
    case floats([Float])
    case string(String)
    case tensor(ConstTensor)
    case unsupported
}

/// One operator application.
struct Node: Sendable {
    var name: String
    var op: String
    var domain: String
    var inputs: [String]  // "" marks an omitted optional input
    var outputs: [String]
    var attributes: [String: Attribute]

    func int(_ key: String, _ fallback: Int) -> Int {
        if case .int(let v)? = attributes[key] { return v }
        return fallback
    }

    func float(_ key: String, _ fallback: Float) -> Float {
        if case .float(let v)? = attributes[key] { return v }
        if case .int(let v)? = attributes[key] { return Float(v) }
        return fallback
    }

    func ints(_ key: String) -> [Int]? {
        if case .ints(let v)? = attributes[key] { return v }
        if case .int(let v)? = attributes[key] { return [v] }
        return nil
    }

    func string(_ key: String) -> String? {
        if case .string(let v)? = attributes[key] { return v }
        return nil
    }

    /// The i-th input, or nil when absent or empty.
    func input(_ i: Int) -> String? {
        i < inputs.count && !inputs[i].isEmpty ? inputs[i] : nil
    }

    /// How the node is named in messages.
    var label: String { name.isEmpty ? "\(op) → \(outputs.first ?? "?")" : name }
}

/// A graph input as declared by the model.
struct GraphInput: Sendable {
    var name: String
    var dtype: DType
    var shape: [Int]  // symbolic dimensions resolved to 1
    var symbolic: [Bool]
}

/// A validated, topologically sorted ONNX graph.
struct Graph: Sendable {
    var nodes: [Node]
    var constants: [String: ConstTensor]
    var inputs: [GraphInput]
    var outputs: [String]
    var opset: Int
    var producer: String
    var irVersion: Int
}
