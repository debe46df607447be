import Foundation

/// Element types an `.npy` file can hold that AADS Edge reads.
public enum NPYDType: String, Sendable {
    case float32 = "<f4"
    case float64 = "<f8"
    case int8 = "|i1"
    case uint8 = "|u1"
    case int32 = "<i4"
    case int64 = "<i8"

    public var byteSize: Int {
        switch self {
        case .int8, .uint8: 1
        case .float32, .int32: 4
        case .float64, .int64: 8
        }
    }
}

/// Errors reading or writing `.npy` files.
public struct NPYError: CodedError {
    /// Always `bad_npy`, a refused file.
    public let code = "bad_npy"
    public let message: String
    public init(_ message: String) { self.message = message }
}

/// A dense array in row-major (C) order, as stored in a numpy `.npy` file (format 1.0/2.0).
public struct NPYArray: Sendable, Equatable {
    public var shape: [Int]
    public var dtype: NPYDType
    /// Raw little-endian element bytes, `shape.product * dtype.byteSize` long.
    public var bytes: [UInt8]

    public init(shape: [Int], dtype: NPYDType, bytes: [UInt8]) {
        self.shape = shape
        self.dtype = dtype
        self.bytes = bytes
    }

    /// A float32 array.
    public init(shape: [Int], floats: [Float]) {
        self.shape = shape
        self.dtype = .float32
        self.bytes = floats.withUnsafeBytes { Array($0) }
    }

    /// A signed 8-bit array.
    public init(shape: [Int], int8: [Int8]) {
        self.shape = shape
        self.dtype = .int8
        self.bytes = int8.withUnsafeBytes { Array($0) }
    }

    public var count: Int { shape.reduce(1, *) }

    /// The elements converted to `Float`.
    public func floats() -> [Float] {
        let n = count
        return bytes.withUnsafeBytes { raw -> [Float] in
            switch dtype {
            case .float32: return (0..<n).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
            case .float64: return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self)) }
            case .int8: return (0..<n).map { Float(raw.load(fromByteOffset: $0, as: Int8.self)) }
            case .uint8: return (0..<n).map { Float(raw.load(fromByteOffset: $0, as: UInt8.self)) }
            case .int32: return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
            case .int64: return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
            }
        }
    }

    /// The elements as `Int8` (only for `int8` arrays).
    public func int8s() throws -> [Int8] {
        guard dtype == .int8 else { throw NPYError("expected int8, found \(dtype.rawValue)") }
        return bytes.map { Int8(bitPattern: $0) }
    }
}

/// Reader and writer for numpy's `.npy` format.
public enum NPY {
    private static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    /// Parses `.npy` bytes. Fortran-ordered arrays and unsupported dtypes are refused.
    public static func decode(_ data: Data) throws -> NPYArray {
        let bytes = [UInt8](data)
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw NPYError("not an .npy file") }
        let major = bytes[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw NPYError("truncated header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw NPYError("unsupported .npy version \(major)")
        }
        guard headerStart + headerLength <= bytes.count else { throw NPYError("truncated header") }
        let header = String(decoding: bytes[headerStart..<headerStart + headerLength], as: UTF8.self)
        guard let descr = field("descr", in: header) else { throw NPYError("header has no descr") }
        let descrValue = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\" "))
        let normalized = descrValue.replacingOccurrences(of: "=", with: "<").replacingOccurrences(
            of: "<i1", with: "|i1"
        )
        .replacingOccurrences(of: "<u1", with: "|u1")
        guard let dtype = NPYDType(rawValue: normalized) else { throw NPYError("unsupported dtype \(descrValue)") }
        if let fortran = field("fortran_order", in: header), fortran.contains("True") {
            throw NPYError("Fortran-ordered arrays are not supported")
        }
        guard let shapeText = field("shape", in: header) else { throw NPYError("header has no shape") }
        let inner = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let value = Int(trimmed), value >= 0, value < 1 << 31 else {
                throw NPYError("bad shape \(shapeText)")
            }
            shape.append(value)
        }
        var count = 1
        for dim in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= 1 << 31 else { throw NPYError("array too large") }
            count = product
        }
        let start = headerStart + headerLength
        let needed = count * dtype.byteSize
        guard bytes.count - start >= needed else { throw NPYError("truncated data: need \(needed) bytes") }
        return NPYArray(shape: shape, dtype: dtype, bytes: Array(bytes[start..<start + needed]))
    }

    /// Reads an `.npy` file.
    public static func read(_ path: String) throws -> NPYArray {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NPYError("cannot read \(path)")
        }
        return try decode(data)
    }

    /// Encodes in format 1.0 with a header padded to a multiple of 64 bytes.
    public static func encode(_ array: NPYArray) -> Data {
        let shapeText: String
        switch array.shape.count {
        case 0: shapeText = "()"
        case 1: shapeText = "(\(array.shape[0]),)"
        default: shapeText = "(" + array.shape.map(String.init).joined(separator: ", ") + ")"
        }
        var header = "{'descr': '\(array.dtype.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data(magic)
        data.append(contentsOf: [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
        data.append(contentsOf: Array(header.utf8))
        data.append(contentsOf: array.bytes)
        return data
    }

    /// Writes an `.npy` file atomically.
    public static func write(_ array: NPYArray, to path: String) throws {
        try AtomicFile.write(encode(array), to: path)
    }

    private static func field(_ name: String, in header: String) -> String? {
        guard let keyRange = header.range(of: "'\(name)'") ?? header.range(of: "\"\(name)\"") else { return nil }
        guard let colon = header[keyRange.upperBound...].firstIndex(of: ":") else { return nil }
        var rest = header[header.index(after: colon)...].drop(while: { $0 == " " })
        if rest.first == "(" {
            guard let close = rest.firstIndex(of: ")") else { return nil }
            return String(rest[...close])
        }
        if let comma = rest.firstIndex(where: { $0 == "," || $0 == "}" }) {
            rest = rest[..<comma]
        }
        return String(rest)
    }
}
