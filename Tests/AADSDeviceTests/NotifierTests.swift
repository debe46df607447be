import Foundation
import Testing

@testable import AADSDevice

#if canImport(Glibc)
    import Glibc
#endif

/// A datagram socket standing in for systemd's notify socket.
final class FakeNotifySocket {
    let fd: Int32
    /// The `NOTIFY_SOCKET` value (a path, or `@name` for the abstract namespace).
    let address: String
    private var pathToRemove: String?

    init(abstract: Bool, directory: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let name: String
        if abstract {
            name = "aads-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            address = "@" + name
        } else {
            name = directory + "/notify.sock"
            address = name
            pathToRemove = name
        }
        var bytes = Array(name.utf8)
        if abstract { bytes.insert(0, at: 0) }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let length = socklen_t(2 + bytes.count + (abstract ? 0 : 1))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard rc == 0 else { throw NotifyError("bind failed: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        if let pathToRemove { unlink(pathToRemove) }
    }

    /// Receives one datagram (nil after the 5 s timeout).
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }

    /// Receives datagrams until one contains `needle`; returns everything received.
    func receive(until needle: String, max: Int = 100) -> [String] {
        var all: [String] = []
        for _ in 0..<max {
            guard let m = receive() else { break }
            all.append(m)
            if m.contains(needle) { break }
        }
        return all
    }
}

@Suite struct NotifierTests {
    @Test func sendsToAPathSocket() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let fake = try FakeNotifySocket(abstract: false, directory: dir.path)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": fake.address])
        #expect(notifier.isEnabled)
        try notifier.ready(status: "serving")
        #expect(fake.receive() == "READY=1\nSTATUS=serving")
        try notifier.watchdog()
        #expect(fake.receive() == "WATCHDOG=1")
        try notifier.stopping(status: "bye")
        #expect(fake.receive() == "STOPPING=1\nSTATUS=bye")
    }

    @Test func sendsToAnAbstractSocket() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let fake = try FakeNotifySocket(abstract: true, directory: dir.path)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": fake.address])
        try notifier.status("two\nlines")
        #expect(fake.receive() == "STATUS=two lines")
    }

    @Test func withoutSocketEverythingIsANoOp() throws {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(try notifier.send("READY=1") == false)
        #expect(notifier.watchdogInterval == nil)
    }

    @Test func watchdogIntervalIsHalfTheTimeout() {
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "60000000"]) == 30)
        #expect(
            SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "\(getpid())"])
                == 1.5)
        // Meant for another process, zero, or garbage: no watchdog.
        #expect(
            SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"]) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "0"]) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "soon"]) == nil)
    }

    @Test func serviceSendsReadyWatchdogAndStopping() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let fake = try FakeNotifySocket(abstract: true, directory: dir.path)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": fake.address, "WATCHDOG_USEC": "200000"])
        let config = testConfig(dir)
        let service = try FieldService(
            config: config, lifecycle: StaticSlotLifecycle(diagnoser: SyntheticDiagnoser()),
            journal: ResultsJournal(path: config.journalPath), metrics: MetricsExporter(path: nil), gpio: nil,
            notifier: notifier)
        let thread = Thread {
            _ = try? service.run()
        }
        thread.start()
        let messages = fake.receive(until: "WATCHDOG=1")
        #expect(messages.first?.hasPrefix("READY=1\nSTATUS=serving slot bundle") == true)
        #expect(messages.last == "WATCHDOG=1")
        // Several pings at ~100 ms while idle.
        #expect(fake.receive() == "WATCHDOG=1")
        service.requestStop(reason: "test")
        let rest = fake.receive(until: "STOPPING=1")
        #expect(rest.last?.hasPrefix("STOPPING=1\nSTATUS=stopping (test)") == true)
    }
}
