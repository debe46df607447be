// Every libgpiod call of AADS Edge lives in this file (libgpiod 1.6, the v1 API of Debian 12 and
// Raspberry Pi OS bookworm). A port to libgpiod 2.x (request configs, edge event buffers) touches only this file.
import AADSCore
import CGPIOD
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A GPIO chip driven through libgpiod 1.6.
public final class LibGPIODBackend: GPIOBackend, @unchecked Sendable {
    private let lock = NSLock()
    private var chip: OpaquePointer?
    private var lines: [UInt32: OpaquePointer] = [:]
    private let consumer: String
    public let chipName: String

    /// Opens `chip` (name, number, label or path). A missing chip throws `gpio_chip_not_found`.
    public init(chip: String, consumer: String = "aads-edge") throws {
        self.chipName = chip
        self.consumer = consumer
        guard let handle = gpiod_chip_open_lookup(chip) else {
            let reason = String(cString: strerror(errno))
            throw GPIOError.chipNotFound(chip, reason)
        }
        self.chip = handle
    }

    deinit { close() }

    private func line(_ offset: UInt32) throws -> OpaquePointer {
        if let existing = lines[offset] { return existing }
        guard let chip else { throw GPIOError(.closed, "GPIO chip \(chipName) is closed") }
        guard let handle = gpiod_chip_get_line(chip, offset) else {
            throw GPIOError(.badLine, "line \(offset) of \(chipName): \(String(cString: strerror(errno)))")
        }
        return handle
    }

    public func requestOutput(line offset: UInt32, value: Int) throws {
        lock.lock()
        defer { lock.unlock() }
        let handle = try line(offset)
        guard gpiod_line_request_output(handle, consumer, Int32(value)) == 0 else {
            throw GPIOError(
                .lineBusy,
                "cannot request line \(offset) of \(chipName) as output: \(String(cString: strerror(errno)))")
        }
        lines[offset] = handle
    }

    public func setValue(line offset: UInt32, value: Int) throws {
        lock.lock()
        defer { lock.unlock() }
        guard let handle = lines[offset] else {
            throw GPIOError(.lineNotRequested, "line \(offset) is not requested")
        }
        guard gpiod_line_set_value(handle, Int32(value)) == 0 else {
            throw GPIOError(.writeFailed, "cannot set line \(offset): \(String(cString: strerror(errno)))")
        }
    }

    public func requestEdges(line offset: UInt32) throws {
        lock.lock()
        defer { lock.unlock() }
        let handle = try line(offset)
        guard gpiod_line_request_both_edges_events(handle, consumer) == 0 else {
            throw GPIOError(
                .lineBusy,
                "cannot request edge events on line \(offset) of \(chipName): \(String(cString: strerror(errno)))")
        }
        lines[offset] = handle
    }

    /// Waits without holding the lock so LED writes are never blocked by the trigger.
    public func waitForEdge(line offset: UInt32, timeoutNs: UInt64) throws -> GPIOEdgeEvent? {
        lock.lock()
        let handle = lines[offset]
        lock.unlock()
        guard let handle else { throw GPIOError(.lineNotRequested, "line \(offset) is not requested") }
        var timeout = timespec(tv_sec: Int(timeoutNs / 1_000_000_000), tv_nsec: Int(timeoutNs % 1_000_000_000))
        let ready = gpiod_line_event_wait(handle, &timeout)
        if ready < 0 {
            if errno == EINTR { return nil }
            throw GPIOError(.readFailed, "waiting for line \(offset): \(String(cString: strerror(errno)))")
        }
        guard ready == 1 else { return nil }
        var event = gpiod_line_event()
        guard gpiod_line_event_read(handle, &event) == 0 else {
            throw GPIOError(.readFailed, "reading line \(offset): \(String(cString: strerror(errno)))")
        }
        var stamp = UInt64(event.ts.tv_sec) * 1_000_000_000 + UInt64(event.ts.tv_nsec)
        // Kernels before 5.7 stamp v1 events with CLOCK_REALTIME; fall back to our monotonic clock then.
        let now = monotonicNanoseconds()
        if stamp > now || now - stamp > 5_000_000_000 { stamp = now }
        let kind: GPIOEdgeEvent.Kind = event.event_type == Int32(GPIOD_LINE_EVENT_RISING_EDGE) ? .rising : .falling
        return GPIOEdgeEvent(line: offset, kind: kind, timestampNs: stamp)
    }

    public func close() {
        lock.lock()
        defer { lock.unlock() }
        for handle in lines.values { gpiod_line_release(handle) }
        lines.removeAll()
        if let chip { gpiod_chip_close(chip) }
        chip = nil
    }
}
