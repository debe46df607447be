import AADSCore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The slot store's append-only event journal (`events.jsonl`): one `SlotEvent` per line, each line
/// fsync'd. A torn last line (a cut mid-append) is ignored on read and cut off before the next append,
/// so it never glues onto the following event.
public struct SlotJournal: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// Appends one event (keys sorted).
    public func append(_ event: SlotEvent) throws {
        let line = try event.line()
        try repairTornTail()
        if CrashPoint.journalMidAppend.isArmed {
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            if fd >= 0 {
                let half = Data(line.utf8.prefix(max(1, line.utf8.count / 2)))
                try? AtomicFile.writeAll(fd: fd, data: half, path: path)
                fsync(fd)
            }
            CrashPoint.die()
        }
        do { try DurableLog.append(line: line, to: path) } catch { throw SlotError.wrap(error) }
    }

    /// Every whole line, decoded; a torn last line and lines that are not events are skipped.
    public func read() -> [SlotEvent] {
        DurableLog.readLines(path).compactMap(SlotEvent.decode(line:))
    }

    /// The last `count` events.
    public func last(_ count: Int) -> [SlotEvent] {
        Array(read().suffix(max(0, count)))
    }

    /// Cuts an unterminated last line left by a crash mid-append.
    func repairTornTail() throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return }  // no journal yet
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0 else { return }
        var last: UInt8 = 0
        guard pread(fd, &last, 1, info.st_size - 1) == 1, last != UInt8(ascii: "\n") else { return }
        // Scan back for the previous newline.
        var end = Int64(info.st_size)
        var cut: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: 4096)
        search: while end > 0 {
            let start = max(0, end - Int64(buffer.count))
            let n = pread(fd, &buffer, Int(end - start), off_t(start))
            guard n > 0 else { break }
            for i in stride(from: n - 1, through: 0, by: -1) where buffer[i] == UInt8(ascii: "\n") {
                cut = start + Int64(i) + 1
                break search
            }
            end = start
        }
        guard ftruncate(fd, off_t(cut)) == 0, fsync(fd) == 0 else {
            throw SlotError(.ioError, "cannot repair torn journal \(path)")
        }
    }
}
