import AADSCore
import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Spool failures.
public struct SpoolError: CodedError, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case spoolError = "spool_error"
        case spoolStateDirectory = "spool_state_dir"
        case noModel = "no_model"
        case captureFailed = "capture_failed"
        case captureTimeout = "capture_timeout"
        /// The image named in the spool went away before it was read.
        case fileVanished = "file_vanished"
        case notRegularFile = "not_regular_file"
        case unreadableImage = "unreadable_image"
        case tooLarge = "too_large"
    }

    public let kind: Code
    public let message: String
    public var code: String { kind.rawValue }

    public init(_ kind: Code, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// A `spool_error`.
    public init(_ message: String) { self.init(.spoolError, message) }

    /// One spooled file refused (gone, not a regular file, unreadable, too large), or the spool, the model or
    /// the camera could not run.
    public var failure: FailureKind {
        switch kind {
        case .fileVanished, .notRegularFile, .unreadableImage, .tooLarge: .refused
        case .spoolError, .spoolStateDirectory, .noModel, .captureFailed, .captureTimeout: .couldNotRun
        }
    }
}

/// The spool directory: cameras drop `*.jpg` in it by rename; each image ends in `done/`, `failed/` or
/// (when the backlog overflows) `dropped/`. `.incoming/` holds captures still being written.
public struct Spool: Sendable {
    public let directory: String
    public var done: String { directory + "/done" }
    public var failed: String { directory + "/failed" }
    public var dropped: String { directory + "/dropped" }
    public var incoming: String { directory + "/.incoming" }

    /// Creates the spool and its sub-directories when missing. A state directory (`done/`, `failed/`,
    /// `dropped/`, `.incoming/`) that is a symbolic link or not a directory is refused with `spool_state_dir`:
    /// images moved through it would leave the spool.
    public init(directory: String) throws {
        self.directory = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        for d in [self.directory, done, failed, dropped, incoming] {
            do {
                try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            } catch {
                throw SpoolError("cannot create spool directory \(d): \(error.localizedDescription)")
            }
        }
        for d in [done, failed, dropped, incoming] {
            var st = stat()
            guard lstat(d, &st) == 0 else {
                throw SpoolError(
                    .spoolStateDirectory, "cannot stat spool directory \(d): \(String(cString: strerror(errno)))")
            }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: continue
            case S_IFLNK:
                throw SpoolError(
                    .spoolStateDirectory, "spool directory \(d) is a symbolic link; it must be a real directory")
            default:
                throw SpoolError(.spoolStateDirectory, "spool directory \(d) is not a directory")
            }
        }
    }

    /// True for names the service processes: visible `*.jpg` / `*.jpeg` entries. Dotfiles are skipped by design:
    /// they are captures still being written (the camera renames them into place when complete).
    public static func isImageName(_ name: String) -> Bool {
        guard !name.hasPrefix(".") else { return false }
        let lower = name.lowercased()
        return lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg")
    }

    /// Waiting images, oldest first (modification time, then name). Every entry with an image name counts,
    /// whatever its type (`lstat`, never following a link): a symbolic link, directory or FIFO is listed so the
    /// service refuses it into `failed/` instead of leaving it in the spool.
    public func pending() throws -> [String] {
        guard let dir = opendir(directory) else {
            throw SpoolError("cannot read spool \(directory): \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        var entries: [(name: String, mtime: timespec)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard Self.isImageName(name) else { continue }
            var st = stat()
            guard lstat(directory + "/" + name, &st) == 0 else { continue }
            entries.append((name, st.st_mtim))
        }
        entries.sort { a, b in
            if a.mtime.tv_sec != b.mtime.tv_sec { return a.mtime.tv_sec < b.mtime.tv_sec }
            if a.mtime.tv_nsec != b.mtime.tv_nsec { return a.mtime.tv_nsec < b.mtime.tv_nsec }
            return a.name < b.name
        }
        return entries.map(\.name)
    }

    public func path(of name: String) -> String { directory + "/" + name }

    /// Moves every visible entry whose name is not valid UTF-8 (which no `String` path can name) into `failed/`,
    /// renamed with each byte outside printable ASCII written as `%XX`. Returns the new names.
    public func quarantineUndecodableNames() throws -> [String] {
        guard let dir = opendir(directory) else {
            throw SpoolError("cannot read spool \(directory): \(String(cString: strerror(errno)))")
        }
        var raw: [[UInt8]] = []
        while let entry = readdir(dir) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            guard bytes.first != UInt8(ascii: "."), String(validating: bytes, as: UTF8.self) == nil else { continue }
            raw.append(bytes)
        }
        closedir(dir)
        var moved: [String] = []
        for bytes in raw {
            let escaped = bytes.map { b in
                (0x20..<0x7F).contains(b) && b != UInt8(ascii: "%")
                    ? String(UnicodeScalar(b)) : String(format: "%%%02X", b)
            }.joined()
            var target = escaped
            var counter = 1
            while access(failed + "/" + target, F_OK) == 0 {
                target = "\(counter)-" + escaped
                counter += 1
            }
            let source = Array(directory.utf8) + [UInt8(ascii: "/")] + bytes + [0]
            let result = source.withUnsafeBufferPointer { s in
                s.withMemoryRebound(to: CChar.self) { rename($0.baseAddress!, failed + "/" + target) }
            }
            guard result == 0 else {
                if errno == ENOENT { continue }
                throw SpoolError("cannot move \(escaped) to \(failed): \(String(cString: strerror(errno)))")
            }
            moved.append(target)
        }
        return moved
    }

    /// Moves a spool file into `destination` (done/failed/dropped); never overwrites an older file of the same
    /// name. Returns the new path, nil if the file had already gone.
    ///
    /// Not fsync'd by default: the durable record is the journal row, committed before the move. A move lost to
    /// a power cut puts the image back in the spool, where its existing row makes the retry a no-op.
    @discardableResult
    public func move(_ name: String, to destination: String, durable: Bool = false) throws -> String? {
        let source = path(of: name)
        var target = destination + "/" + name
        var counter = 1
        while access(target, F_OK) == 0 {
            let base = (name as NSString).deletingPathExtension
            let ext = (name as NSString).pathExtension
            target = destination + "/\(base)-\(counter).\(ext)"
            counter += 1
        }
        guard rename(source, target) == 0 else {
            if errno == ENOENT { return nil }
            throw SpoolError("cannot move \(source) to \(destination): \(String(cString: strerror(errno)))")
        }
        if durable {
            try AtomicFile.syncDirectory(destination)
            try AtomicFile.syncDirectory(directory)
        }
        return target
    }

    /// The lowercase hex sha256 of a file's bytes.
    public static func sha256(path: String) throws -> String {
        try fingerprint(path: path).sha256
    }

    /// Limits a spool file must meet before it is read in full; the defaults are the decoder's.
    public struct Limits: Sendable, Equatable {
        /// Largest file accepted, from `fstat` of the opened file.
        public var maxFileBytes: Int
        /// Largest width × height accepted, from the JPEG frame header.
        public var maxPixels: Int

        public init(maxFileBytes: Int = 64 << 20, maxPixels: Int = 100_000_000) {
            self.maxFileBytes = maxFileBytes
            self.maxPixels = maxPixels
        }
    }

    /// A spool file's identity and content: `fileID` is `device:inode:mtime` of the open file (a rename, into
    /// `done/` or back after a lost move, keeps it; another file dropped under the same name gets another) and
    /// `sha256` the lowercase hex sha256 of its bytes, both from the same open file.
    ///
    /// Before any byte is hashed, the file's size (from `fstat`) and the frame size in its JPEG header are checked
    /// against `limits`: a file above either is refused at once with `too_large`, however big it is.
    ///
    /// The file is opened with `O_NOFOLLOW | O_NONBLOCK`: a symbolic link is never followed and a FIFO never
    /// blocks; anything but a regular file is refused with `not_regular_file`.
    public static func fingerprint(path: String, limits: Limits = Limits()) throws -> (sha256: String, fileID: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            switch errno {
            case ENOENT:
                throw SpoolError(.fileVanished, "cannot open \(path): \(String(cString: strerror(errno)))")
            case ELOOP: throw SpoolError(.notRegularFile, "\(path) is a symbolic link, not a regular file")
            default:
                throw SpoolError(
                    .unreadableImage, "cannot open \(path): \(String(cString: strerror(errno)))")
            }
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw SpoolError(.unreadableImage, "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SpoolError(.notRegularFile, "\(path) is a \(fileTypeName(st.st_mode)), not a regular file")
        }
        let size = Int(st.st_size)
        if size > limits.maxFileBytes {
            throw SpoolError(
                .tooLarge, "file is \(size) bytes, above the limit of \(limits.maxFileBytes)")
        }
        if let (width, height) = try frameSize(fd: fd, path: path), width * height > limits.maxPixels {
            throw SpoolError(
                .tooLarge,
                "\(width)x\(height) is \(width * height) pixels, above the limit of \(limits.maxPixels)")
        }
        return (try sha256(fd: fd, path: path), fileID(st))
    }

    /// A file's identity as `fingerprint` gives it: device, inode and modification time.
    static func fileID(_ st: stat) -> String {
        "\(st.st_dev):\(st.st_ino):\(st.st_mtim.tv_sec).\(String(format: "%09ld", st.st_mtim.tv_nsec))"
    }

    /// The identity of the regular file at `path` (not following a symbolic link), or nil.
    static func fileID(path: String) -> String? {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return fileID(st)
    }

    /// A file type's name for messages.
    static func fileTypeName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "directory"
        case S_IFIFO: "FIFO"
        case S_IFLNK: "symbolic link"
        case S_IFSOCK: "socket"
        case S_IFCHR: "character device"
        case S_IFBLK: "block device"
        default: "special file"
        }
    }

    /// The width and height in the first JPEG frame header (SOFn) within the file's first 256 KiB, read with
    /// `pread`; nil when there is none there (the decoder then judges the file).
    static func frameSize(fd: Int32, path: String) throws -> (width: Int, height: Int)? {
        var prefix = [UInt8](repeating: 0, count: 256 << 10)
        var count = 0
        while count < prefix.count {
            let n = prefix.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + count, $0.count - count, off_t(count)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SpoolError(.unreadableImage, "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            count += n
        }
        return frameSize(jpeg: prefix[0..<count])
    }

    /// The frame size in a JPEG's marker segments before the first scan; nil when the bytes end first or are not
    /// a JPEG.
    static func frameSize(jpeg bytes: ArraySlice<UInt8>) -> (width: Int, height: Int)? {
        let base = bytes.startIndex
        let end = bytes.endIndex
        guard end - base >= 4, bytes[base] == 0xFF, bytes[base + 1] == 0xD8 else { return nil }
        var position = base + 2
        while position + 1 < end {
            guard bytes[position] == 0xFF else { return nil }
            var markerPosition = position + 1
            while markerPosition < end, bytes[markerPosition] == 0xFF { markerPosition += 1 }
            guard markerPosition < end else { return nil }
            let marker = bytes[markerPosition]
            position = markerPosition + 1
            switch marker {
            case 0xD9, 0xDA: return nil
            case 0x01, 0xD0...0xD7: continue
            default: break
            }
            guard position + 2 <= end else { return nil }
            let length = Int(bytes[position]) << 8 | Int(bytes[position + 1])
            guard length >= 2, position + length <= end else { return nil }
            // SOF0…SOF15 except DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
            if (0xC0...0xCF).contains(marker), marker != 0xC4, marker != 0xC8, marker != 0xCC {
                guard length >= 7 else { return nil }
                let height = Int(bytes[position + 3]) << 8 | Int(bytes[position + 4])
                let width = Int(bytes[position + 5]) << 8 | Int(bytes[position + 6])
                return (width, height)
            }
            position += length
        }
        return nil
    }

    static func sha256(fd: Int32, path: String) throws -> String {
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SpoolError(.unreadableImage, "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// Wakes the service when something lands in the spool: inotify (`IN_MOVED_TO | IN_CLOSE_WRITE`) when
/// available, plain timeouts (polling) otherwise. `wake()` interrupts a wait from another thread.
public final class SpoolWatcher: @unchecked Sendable {
    private var inotifyFD: Int32 = -1
    private var pipeFDs: [Int32] = [-1, -1]
    /// True when inotify is in use; false means the caller is polling.
    public let usesInotify: Bool

    public init(directory: String, useInotify: Bool = true) {
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            }
            pipeFDs = fds
        }
        var watching = false
        if useInotify {
            let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
            if fd >= 0 {
                let mask = UInt32(IN_MOVED_TO) | UInt32(IN_CLOSE_WRITE)
                if inotify_add_watch(fd, directory, mask) >= 0 {
                    inotifyFD = fd
                    watching = true
                } else {
                    close(fd)
                }
            }
        }
        usesInotify = watching
    }

    deinit {
        if inotifyFD >= 0 { close(inotifyFD) }
        for fd in pipeFDs where fd >= 0 { close(fd) }
    }

    /// Waits up to `timeoutMs` for a spool event or a `wake()`. Returns true when woken by either,
    /// false on timeout. Pending events are drained (the caller rescans the directory anyway).
    @discardableResult
    public func wait(timeoutMs: Int) -> Bool {
        var fds: [pollfd] = []
        if inotifyFD >= 0 { fds.append(pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0)) }
        if pipeFDs[0] >= 0 { fds.append(pollfd(fd: pipeFDs[0], events: Int16(POLLIN), revents: 0)) }
        guard !fds.isEmpty else {
            usleep(UInt32(max(0, timeoutMs)) * 1000)
            return false
        }
        let ready = poll(&fds, nfds_t(fds.count), Int32(max(0, timeoutMs)))
        guard ready > 0 else { return false }
        drain()
        return true
    }

    /// Interrupts `wait` (safe from any thread or a signal handler queue).
    public func wake() {
        guard pipeFDs[1] >= 0 else { return }
        var byte: UInt8 = 1
        _ = write(pipeFDs[1], &byte, 1)
    }

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        for fd in [inotifyFD, pipeFDs[0]] where fd >= 0 {
            while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
        }
    }
}

/// Runs the capture command on a trigger: the camera writes into `.incoming/`, and a finished capture is
/// renamed into the spool so the service never sees half a file.
public struct CaptureRunner: Sendable {
    public let template: String
    public let spool: Spool
    public let timeoutSeconds: Double

    public init(template: String, spool: Spool, timeoutSeconds: Double) {
        self.template = template
        self.spool = spool
        self.timeoutSeconds = timeoutSeconds
    }

    /// `capture-20240501T120000.123Z.jpg`-style names, sortable, from the capture time.
    public static func fileName(for date: Date) -> String {
        let stamp = ISO8601.string(date).replacingOccurrences(of: "-", with: "").replacingOccurrences(of: ":", with: "")
        return "capture-\(stamp).jpg"
    }

    /// The argument vector: the template split on spaces with `{path}` substituted (no shell involved).
    public static func arguments(template: String, path: String) -> [String] {
        template.split(separator: " ", omittingEmptySubsequences: true).map {
            $0.replacingOccurrences(of: "{path}", with: path)
        }
    }

    /// Runs one capture; returns the spool path of the new image.
    @discardableResult
    public func capture(at date: Date = Date()) throws -> String {
        var name = Self.fileName(for: date)
        var counter = 1
        while access(spool.path(of: name), F_OK) == 0 || access(spool.incoming + "/" + name, F_OK) == 0 {
            name = (Self.fileName(for: date) as NSString).deletingPathExtension + "-\(counter).jpg"
            counter += 1
        }
        let temp = spool.incoming + "/" + name
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = Self.arguments(template: template, path: temp)
        process.standardInput = FileHandle.nullDevice
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        do {
            try process.run()
        } catch {
            throw SpoolError(.captureFailed, "cannot run capture command: \(error.localizedDescription)")
        }
        if done.wait(timeout: .now() + timeoutSeconds) == .timedOut {
            process.terminate()
            if done.wait(timeout: .now() + 2) == .timedOut { kill(process.processIdentifier, SIGKILL) }
            unlink(temp)
            throw SpoolError(.captureTimeout, "capture command did not finish in \(timeoutSeconds) s")
        }
        guard process.terminationStatus == 0, process.terminationReason == .exit else {
            unlink(temp)
            throw SpoolError(.captureFailed, "capture command exited with status \(process.terminationStatus)")
        }
        var st = stat()
        guard stat(temp, &st) == 0, st.st_size > 0 else {
            unlink(temp)
            throw SpoolError(.captureFailed, "capture command wrote no image to \(temp)")
        }
        // Make the bytes durable before they become visible to the service.
        let fd = open(temp, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
        let final = spool.path(of: name)
        guard rename(temp, final) == 0 else {
            throw SpoolError(
                .captureFailed, "cannot move capture into the spool: \(String(cString: strerror(errno)))")
        }
        try AtomicFile.syncDirectory(spool.directory)
        return final
    }
}
