/// A dense float32 tensor in row-major order (NCHW for images).
public struct Tensor: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) does not match \(data.count) elements")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    public var count: Int { data.count }

    /// As a float32 `.npy` array.
    public var npy: NPYArray { NPYArray(shape: shape, floats: data) }

    /// From any numeric `.npy` array.
    public init(_ array: NPYArray) {
        self.init(shape: array.shape, data: array.floats())
    }
}

/// An int8 tensor with one scale and zero point: real = scale × (q − zeroPoint).
public struct QuantizedTensor: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Int8]
    public var scale: Float
    public var zeroPoint: Int32

    public init(shape: [Int], data: [Int8], scale: Float, zeroPoint: Int32) {
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) does not match \(data.count) elements")
        self.shape = shape
        self.data = data
        self.scale = scale
        self.zeroPoint = zeroPoint
    }

    /// The real values.
    public func dequantized() -> Tensor {
        Tensor(shape: shape, data: data.map { scale * Float(Int32($0) - zeroPoint) })
    }
}

/// ONNX QuantizeLinear semantics: round half to even, add zero point, saturate to int8.
@inlinable
public func quantizeInt8(_ value: Float, scale: Float, zeroPoint: Int32) -> Int8 {
    let q = (value / scale).rounded(.toNearestOrEven) + Float(zeroPoint)
    return Int8(max(-128, min(127, q.isNaN ? Float(zeroPoint) : q)))
}
