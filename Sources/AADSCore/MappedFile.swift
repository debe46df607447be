#if canImport(Glibc)
    import Glibc
#endif

/// A whole file mapped read-only (`MAP_PRIVATE`), unmapped when the object is released. Its pages are
/// file-backed: they count in the resident set only while touched, and `release` gives them back early.
public final class MappedFile: @unchecked Sendable {
    /// Why a file could not be mapped.
    public struct Failure: Error, Sendable {
        public let path: String
        /// The system's reason, e.g. "No such file or directory".
        public let reason: String
    }

    public let path: String
    /// The file's bytes, valid while this object lives (empty, with no address, for an empty file).
    public let bytes: UnsafeRawBufferPointer

    public init(path: String) throws(Failure) {
        self.path = path
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below as not a regular file.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw Failure(path: path, reason: Self.lastError()) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Failure(path: path, reason: Self.lastError()) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw Failure(path: path, reason: "not a regular file") }
        let size = Int(info.st_size)
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw Failure(path: path, reason: Self.lastError())
        }
        bytes = UnsafeRawBufferPointer(start: mapped, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }

    /// The system's page size, the unit in which `release` works.
    public static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Drops the resident pages lying wholly inside `range` (byte offsets into the file). The bytes stay
    /// readable: touching them again reads the file. For consuming a large file front to back without
    /// holding all of it at once.
    public func release(_ range: Range<Int>) {
        guard let base = bytes.baseAddress else { return }
        let page = Self.pageSize
        let start = (max(0, range.lowerBound) + page - 1) / page * page
        let upper = min(range.upperBound, bytes.count)
        let end = upper == bytes.count ? upper : upper / page * page
        guard end > start else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}
