import AADSCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Errors talking to the service manager.
public struct NotifyError: CodedError {
    /// Always `notify_failed`: could not run.
    public let code = "notify_failed"
    public var failure: FailureKind { .couldNotRun }
    public let message: String
    public init(_ message: String) { self.message = message }
}

/// The sd_notify protocol, spoken directly: datagrams of `KEY=value` lines to `$NOTIFY_SOCKET`
/// (a filesystem path, or an abstract socket when it starts with `@`). Without the variable every call
/// is a no-op, so the service runs the same outside systemd.
public final class SystemdNotifier: @unchecked Sendable {
    public let socketPath: String?
    /// Half of `WATCHDOG_USEC`, nil when the watchdog is off (or meant for another process).
    public let watchdogInterval: Double?
    private let fd: Int32
    private let lock = NSLock()

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        watchdogInterval = Self.watchdogInterval(environment: environment)
        fd = path == nil ? -1 : socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Half the watchdog timeout in seconds, as sd_watchdog_enabled(3) recommends pinging.
    public static func watchdogInterval(environment: [String: String]) -> Double? {
        guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 else { return nil }
        if let pidText = environment["WATCHDOG_PID"], let pid = Int32(pidText), pid != getpid() { return nil }
        return Double(usec) / 1e6 / 2
    }

    public var isEnabled: Bool { socketPath != nil && fd >= 0 }

    /// Sends one notification (lines `KEY=value`). Returns false when not running under systemd.
    @discardableResult
    public func send(_ state: String) throws -> Bool {
        guard let socketPath, fd >= 0 else { return false }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        let abstract = pathBytes.first == UInt8(ascii: "@")
        if abstract { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { throw NotifyError("NOTIFY_SOCKET path too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in pathBytes.enumerated() { raw[i] = byte }
            if !abstract { raw[pathBytes.count] = 0 }
        }
        let length = socklen_t(
            (MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2) + pathBytes.count + (abstract ? 0 : 1))
        let payload = Array(state.utf8)
        lock.lock()
        defer { lock.unlock() }
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                payload.withUnsafeBytes { bytes in
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), sa, length)
                }
            }
        }
        guard sent == payload.count else {
            throw NotifyError("cannot send to \(socketPath): \(String(cString: strerror(errno)))")
        }
        return true
    }

    /// `READY=1` with a status line.
    public func ready(status: String) throws { try send("READY=1\nSTATUS=\(status)") }
    /// `WATCHDOG=1`.
    public func watchdog() throws { try send("WATCHDOG=1") }
    /// `STOPPING=1` with a status line.
    public func stopping(status: String) throws { try send("STOPPING=1\nSTATUS=\(status)") }
    /// `STATUS=...` (one line).
    public func status(_ text: String) throws { try send("STATUS=\(text.replacingOccurrences(of: "\n", with: " "))") }
}
