import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Errors from durable file operations.
public struct FileIOError: CodedError, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case ioError = "io_error"
        /// `ENOSPC`: a refusal of what was to be written (`disk_full` refuses a bundle install the same way).
        case diskFull = "disk_full"
        case notFound = "not_found"
    }

    public let kind: Code
    public let message: String
    public var code: String { kind.rawValue }

    public init(_ kind: Code, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// An `io_error`.
    public init(_ message: String) { self.init(.ioError, message) }

    public var failure: FailureKind { kind == .diskFull ? .refused : .couldNotRun }

    static func errno(_ what: String, _ path: String) -> FileIOError {
        let err = Glibc.errno
        let reason = String(cString: strerror(err))
        return FileIOError(err == ENOSPC ? .diskFull : .ioError, "\(what) \(path): \(reason)")
    }
}

/// Durable file writes: temp file, fsync, rename, fsync of the directory.
public enum AtomicFile {
    /// Creates the temporary file that will be renamed to `path`, next to it. The directory must exist
    /// (nothing creates missing parents): `not_found` naming it otherwise.
    public static func createTemporary(for path: String, mode: mode_t = 0o644) throws -> (fd: Int32, path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        let temp = (directory.isEmpty ? "." : directory) + "/.\(base).tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else {
            var isDirectory: ObjCBool = false
            if Glibc.errno == ENOENT || Glibc.errno == ENOTDIR,
                !FileManager.default.fileExists(atPath: directory.isEmpty ? "." : directory, isDirectory: &isDirectory)
                    || !isDirectory.boolValue
            {
                throw FileIOError(.notFound, "cannot write \(path): no such directory \(directory)")
            }
            throw FileIOError.errno("cannot create", temp)
        }
        return (fd, temp)
    }

    /// Writes `data` to `path` so that a reader (or a power cut) sees either the old or the new content.
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o644) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let (fd, temp) = try createTemporary(for: path, mode: mode)
        do {
            try writeAll(fd: fd, data: data, path: temp)
            guard fsync(fd) == 0 else { throw FileIOError.errno("cannot fsync", temp) }
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        close(fd)
        guard rename(temp, path) == 0 else {
            let failure = FileIOError.errno("cannot rename onto", path)
            unlink(temp)
            throw failure
        }
        try syncDirectory(directory.isEmpty ? "." : directory)
    }

    /// fsyncs a directory so that a rename or create inside it is durable.
    public static func syncDirectory(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileIOError.errno("cannot open directory", directory) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileIOError.errno("cannot fsync directory", directory) }
        #if AADS_TEST_HOOKS
            DurabilityTrace.record(.syncedDirectory(directory))
        #endif
    }

    /// Creates `directory` and any missing parents, fsyncing each new directory's parent so the new
    /// entries survive a power cut. An existing directory is left as it is.
    public static func createDirectory(_ directory: String, mode: mode_t = 0o755) throws {
        var missing: [String] = []
        var path = directory
        var isDirectory: ObjCBool = false
        while !path.isEmpty, path != "/", !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            missing.append(path)
            path = (path as NSString).deletingLastPathComponent
        }
        for path in missing.reversed() {
            guard mkdir(path, mode) == 0 || Glibc.errno == EEXIST else {
                throw FileIOError.errno("cannot create directory", path)
            }
            let parent = (path as NSString).deletingLastPathComponent
            try syncDirectory(parent.isEmpty ? "." : parent)
        }
    }

    /// Writes every byte of `data` to `fd`, retrying on short writes and EINTR.
    public static func writeAll(fd: Int32, data: Data, path: String) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            guard var pointer = raw.baseAddress else { return }
            var remaining = raw.count
            while remaining > 0 {
                let written = Glibc.write(fd, pointer, remaining)
                if written < 0 {
                    if Glibc.errno == EINTR { continue }
                    throw FileIOError.errno("cannot write", path)
                }
                remaining -= written
                pointer += written
            }
        }
    }
}

/// An append-only file of lines, each write fsync'd before returning (used for event journals).
public enum DurableLog {
    /// Appends one line (a trailing newline is added) and fsyncs the file; the append that creates
    /// the file also fsyncs its directory, so the new file survives a power cut.
    public static func append(line: String, to path: String) throws {
        var created = false
        var fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        if fd < 0 && Glibc.errno == ENOENT {
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
            created = fd >= 0
            if fd < 0 && Glibc.errno == EEXIST { fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC) }
        }
        guard fd >= 0 else { throw FileIOError.errno("cannot open", path) }
        defer { close(fd) }
        try AtomicFile.writeAll(fd: fd, data: Data((line + "\n").utf8), path: path)
        guard fsync(fd) == 0 else { throw FileIOError.errno("cannot fsync", path) }
        if created {
            #if AADS_TEST_HOOKS
                DurabilityTrace.record(.createdFile(path))
            #endif
            let directory = (path as NSString).deletingLastPathComponent
            try AtomicFile.syncDirectory(directory.isEmpty ? "." : directory)
        }
    }

    /// Reads whole lines; a torn (unterminated) last line is ignored.
    public static func readLines(_ path: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return [] }
        var text = String(decoding: data, as: UTF8.self)
        if !text.hasSuffix("\n") {
            if let cut = text.lastIndex(of: "\n") {
                text = String(text[...cut])
            } else {
                return []
            }
        }
        return text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }
}

#if AADS_TEST_HOOKS
    /// Test builds only: the order in which durable operations created files and fsynced directories,
    /// so tests can check that every new directory entry is followed by an fsync of its directory.
    public enum DurabilityTrace {
        public enum Step: Equatable, Sendable {
            case createdFile(String)
            case syncedDirectory(String)
        }

        private static let lock = NSLock()
        nonisolated(unsafe) private static var steps: [Step] = []

        static func record(_ step: Step) {
            lock.lock()
            defer { lock.unlock() }
            steps.append(step)
        }

        /// The steps recorded so far that mention a path under `prefix`.
        public static func steps(under prefix: String) -> [Step] {
            lock.lock()
            defer { lock.unlock() }
            return steps.filter {
                switch $0 {
                case .createdFile(let path), .syncedDirectory(let path): path.hasPrefix(prefix)
                }
            }
        }
    }
#endif
