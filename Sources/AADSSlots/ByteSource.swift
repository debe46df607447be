import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Random-access bytes: an archive in memory (fuzzing, tests) or a file read with `pread`.
public protocol ByteSource {
    /// Total length in bytes.
    var count: UInt64 { get }
    /// Reads up to `count` bytes at `offset`; fewer only at the end of the source.
    func read(at offset: UInt64, count: Int) throws -> Data
}

/// Bytes held in memory.
public struct DataByteSource: ByteSource {
    public let data: Data
    public init(_ data: Data) { self.data = data }
    public var count: UInt64 { UInt64(data.count) }

    public func read(at offset: UInt64, count: Int) throws -> Data {
        guard offset < UInt64(data.count), count > 0 else { return Data() }
        let start = data.startIndex + Int(offset)
        let end = start + min(count, data.count - Int(offset))
        return data.subdata(in: start..<end)
    }
}

/// A regular file opened read-only (never following a symlink, and with `O_NONBLOCK` so a FIFO is refused
/// instead of blocking the open); closed on deinit.
public final class FileByteSource: ByteSource {
    public let path: String
    public let count: UInt64
    private let fd: Int32

    public init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            throw SlotError(.ioError, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw SlotError(.badArchive, "\(path) is not a regular file")
        }
        self.fd = fd
        self.path = path
        self.count = UInt64(info.st_size)
    }

    deinit { close(fd) }

    public func read(at offset: UInt64, count: Int) throws -> Data {
        guard count > 0 else { return Data() }
        var buffer = Data(count: count)
        var filled = 0
        try buffer.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) in
            guard let base = raw.baseAddress else { return }
            while filled < count {
                let n = pread(fd, base + filled, count - filled, off_t(offset) + off_t(filled))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SlotError(.ioError, "cannot read \(path): \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                filled += n
            }
        }
        if filled < count { buffer.removeSubrange(filled..<count) }
        return buffer
    }
}
