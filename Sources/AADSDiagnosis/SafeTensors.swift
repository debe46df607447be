import AADSCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A read-only, memory-mapped `.safetensors` file: an 8-byte little-endian header length, a JSON header
/// of `{name: {dtype, shape, data_offsets}}`, then the tensor bytes. Tensors are read in place.
public final class SafeTensorsFile: @unchecked Sendable {
    /// One tensor's place in the file.
    public struct Entry: Sendable {
        public let dtype: String
        public let shape: [Int]
        public let range: Range<Int>
    }

    public let path: String
    public let entries: [String: Entry]
    /// Bytes mapped for this file (what it costs in page cache, not in anonymous memory).
    public let mappedBytes: Int
    private let base: UnsafeRawPointer
    private let dataStart: Int

    /// Maps `path` and validates its header. Every tensor must lie inside the file, have a supported
    /// dtype and a byte length equal to its element count times the element size.
    public init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw DiagnosisError.missingFile(path) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DiagnosisError.badTensor("cannot stat \(path)") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw DiagnosisError.badTensor("\(path) is not a regular file") }
        let size = Int(info.st_size)
        guard size >= 8 else { throw DiagnosisError.badTensor("\(path): too short for a safetensors file") }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw DiagnosisError.badTensor("cannot map \(path)")
        }
        let pointer = UnsafeRawPointer(mapped)
        do {
            let declared = UInt64(littleEndian: pointer.loadUnaligned(as: UInt64.self))
            let headerLength = declared > UInt64(size) ? size : Int(declared)
            guard headerLength <= size - 8, headerLength <= 100 << 20 else {
                throw DiagnosisError.badTensor("\(path): header length \(declared) exceeds the file")
            }
            let headerData = Data(bytes: pointer + 8, count: headerLength)
            guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
                throw DiagnosisError.badTensor("\(path): header is not a JSON object")
            }
            let dataStart = 8 + headerLength
            var entries: [String: Entry] = [:]
            for (name, value) in header where name != "__metadata__" {
                guard let spec = value as? [String: Any], let dtype = spec["dtype"] as? String,
                    let shape = spec["shape"] as? [Int], let offsets = spec["data_offsets"] as? [Int],
                    offsets.count == 2
                else { throw DiagnosisError.badTensor("\(path): tensor \(name) has a malformed entry") }
                guard let elementSize = Self.elementSize(dtype) else {
                    throw DiagnosisError.badTensor("\(path): tensor \(name) has unsupported dtype \(dtype)")
                }
                guard shape.allSatisfy({ $0 >= 0 && $0 < 1 << 31 }) else {
                    throw DiagnosisError.badTensor("\(path): tensor \(name) has a bad shape \(shape)")
                }
                let (count, overflow) = shape.reduce((1, false)) { acc, dim in
                    let (p, o) = acc.0.multipliedReportingOverflow(by: dim)
                    return (p, acc.1 || o)
                }
                guard !overflow, offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= size - dataStart,
                    offsets[1] - offsets[0] == count * elementSize
                else {
                    throw DiagnosisError.badTensor(
                        "\(path): tensor \(name) lies outside the file or has a wrong length")
                }
                entries[name] = Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
            }
            self.path = path
            self.entries = entries
            self.mappedBytes = size
            self.base = pointer
            self.dataStart = dataStart
        } catch {
            munmap(mapped, size)
            throw error
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), mappedBytes) }

    private static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "F32", "I32", "U32": 4
        case "F64", "I64", "U64": 8
        case "F16", "BF16", "I16", "U16": 2
        case "I8", "U8", "BOOL": 1
        default: nil
        }
    }

    /// The raw bytes of a tensor, valid while this object lives.
    public func bytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let entry = entries[name] else { throw DiagnosisError.badTensor("\(path): no tensor \(name)") }
        return UnsafeRawBufferPointer(start: base + dataStart + entry.range.lowerBound, count: entry.range.count)
    }

    /// A float32 tensor viewed in place (no copy), checked against an expected shape (`-1` matches any
    /// size in that dimension). The view is valid while this object lives.
    public func floats(_ name: String, shape expected: [Int]? = nil) throws -> (
        shape: [Int], values: UnsafeBufferPointer<Float>
    ) {
        guard let entry = entries[name] else { throw DiagnosisError.badTensor("\(path): no tensor \(name)") }
        guard entry.dtype == "F32" else {
            throw DiagnosisError.badTensor("\(path): tensor \(name) is \(entry.dtype), expected F32")
        }
        if let expected {
            let matches =
                expected.count == entry.shape.count && zip(expected, entry.shape).allSatisfy { $0 == -1 || $0 == $1 }
            guard matches else {
                throw DiagnosisError.shapeMismatch(
                    "\(path): tensor \(name) has shape \(entry.shape), expected \(expected)")
            }
        }
        let raw = try bytes(name)
        guard Int(bitPattern: raw.baseAddress) % MemoryLayout<Float>.alignment == 0 else {
            throw DiagnosisError.badTensor("\(path): tensor \(name) is not 4-byte aligned")
        }
        return (entry.shape, raw.bindMemory(to: Float.self))
    }
}
