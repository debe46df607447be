/// Just enough of the protobuf wire format to find an ONNX model's initializers without decoding them,
/// so that the loader can decode one weight tensor at a time instead of the whole model at once.
enum ModelWire {
    /// One field of a message: its number, wire type, its bytes (tag included) and, for a
    /// length-delimited field, its payload.
    struct Field {
        var number: UInt64
        var wireType: UInt64
        var bytes: Range<Int>
        var payload: Range<Int>
    }

    /// The serialized model with the graph's initializers left out, and where each initializer's
    /// `TensorProto` lies in the original bytes, in file order.
    struct Split {
        var skeleton: [UInt8]
        var initializers: [Range<Int>]
    }

    static let modelGraph: UInt64 = 7  // ModelProto.graph
    static let graphInitializer: UInt64 = 5  // GraphProto.initializer
    static let lengthDelimited: UInt64 = 2

    /// Splits `bytes` (a serialized `ModelProto`), or returns nil when it is not the usual layout — not
    /// well-formed, no graph or more than one graph field (protobuf would merge them), no initializers —
    /// and the whole model should be decoded as one message instead.
    static func split(_ bytes: UnsafeRawBufferPointer) -> Split? {
        guard let top = fields(bytes, in: 0..<bytes.count) else { return nil }
        let graphs = top.filter { $0.number == modelGraph }
        guard graphs.count == 1, graphs[0].wireType == lengthDelimited,
            let inner = fields(bytes, in: graphs[0].payload)
        else { return nil }
        func isInitializer(_ f: Field) -> Bool { f.number == graphInitializer && f.wireType == lengthDelimited }
        let initializers = inner.filter(isInitializer).map(\.payload)
        guard !initializers.isEmpty else { return nil }

        var graph: [UInt8] = []
        for f in inner where !isInitializer(f) { graph.append(contentsOf: bytes[f.bytes]) }
        var skeleton: [UInt8] = []
        skeleton.reserveCapacity(bytes.count - initializers.reduce(0) { $0 + $1.count } + 16)
        for f in top {
            if f.number == modelGraph {
                appendVarint(modelGraph << 3 | lengthDelimited, to: &skeleton)
                appendVarint(UInt64(graph.count), to: &skeleton)
                skeleton.append(contentsOf: graph)
            } else {
                skeleton.append(contentsOf: bytes[f.bytes])
            }
        }
        return Split(skeleton: skeleton, initializers: initializers)
    }

    static let tensorRawData: UInt64 = 9  // TensorProto.raw_data

    /// Splits the `TensorProto` in `range` into its other fields (re-serialized, small) and the payload of its
    /// one `raw_data` field, or returns nil when it has no such field, several, or is not well-formed.
    static func splitRawData(_ bytes: UnsafeRawBufferPointer, in range: Range<Int>) -> ([UInt8], Range<Int>)? {
        guard let fields = fields(bytes, in: range) else { return nil }
        let raw = fields.filter { $0.number == tensorRawData }
        guard raw.count == 1, raw[0].wireType == lengthDelimited else { return nil }
        var rest: [UInt8] = []
        for f in fields where f.number != tensorRawData { rest.append(contentsOf: bytes[f.bytes]) }
        return (rest, raw[0].payload)
    }

    /// The fields of the message in `range`, or nil if it is not well-formed (a truncated field, a
    /// varint over 10 bytes, field number 0, a group or an unknown wire type).
    static func fields(_ bytes: UnsafeRawBufferPointer, in range: Range<Int>) -> [Field]? {
        var fields: [Field] = []
        var offset = range.lowerBound
        while offset < range.upperBound {
            let start = offset
            guard let tag = varint(bytes, at: &offset, end: range.upperBound), tag >> 3 != 0 else { return nil }
            let wireType = tag & 7
            var payload = offset..<offset
            switch wireType {
            case 0:
                guard varint(bytes, at: &offset, end: range.upperBound) != nil else { return nil }
            case 1, 5:
                let size = wireType == 1 ? 8 : 4
                guard range.upperBound - offset >= size else { return nil }
                offset += size
            case lengthDelimited:
                guard let length = varint(bytes, at: &offset, end: range.upperBound),
                    length <= UInt64(range.upperBound - offset)
                else { return nil }
                payload = offset..<(offset + Int(length))
                offset = payload.upperBound
            default:
                return nil
            }
            fields.append(Field(number: tag >> 3, wireType: wireType, bytes: start..<offset, payload: payload))
        }
        return fields
    }

    static func varint(_ bytes: UnsafeRawBufferPointer, at offset: inout Int, end: Int) -> UInt64? {
        var value: UInt64 = 0
        for shift in stride(from: UInt64(0), to: 70, by: 7) {
            guard offset < end else { return nil }
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
        }
        return nil
    }

    static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }
}
