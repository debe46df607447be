import AADSCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// GPIO failures: a missing chip, a line that cannot be requested, a failed read or write.
public struct GPIOError: CodedError, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case chipNotFound = "gpio_chip_not_found"
        case closed = "gpio_closed"
        case badLine = "gpio_bad_line"
        case lineBusy = "gpio_line_busy"
        case lineNotRequested = "gpio_line_not_requested"
        case readFailed = "gpio_read_failed"
        case writeFailed = "gpio_write_failed"
    }

    public let kind: Code
    public let message: String
    public var code: String { kind.rawValue }

    public init(_ kind: Code, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The hardware is missing or misbehaves: could not run.
    public var failure: FailureKind { .couldNotRun }

    public static func chipNotFound(_ chip: String, _ reason: String) -> GPIOError {
        GPIOError(.chipNotFound, "GPIO chip \(chip) not found (\(reason))")
    }
}

/// One edge seen on an input line. Timestamps are CLOCK_MONOTONIC nanoseconds.
public struct GPIOEdgeEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case rising, falling
    }

    public var line: UInt32
    public var kind: Kind
    public var timestampNs: UInt64

    public init(line: UInt32, kind: Kind, timestampNs: UInt64) {
        self.line = line
        self.kind = kind
        self.timestampNs = timestampNs
    }
}

/// Lines of one GPIO chip: outputs for the LEDs, an edge-detecting input for the trigger.
/// Values are physical levels (0/1); active-low inversion is done by the callers.
public protocol GPIOBackend: AnyObject, Sendable {
    /// Requests `line` as an output driven to `value`.
    func requestOutput(line: UInt32, value: Int) throws
    /// Drives a previously requested output.
    func setValue(line: UInt32, value: Int) throws
    /// Requests `line` as an input reporting both edges.
    func requestEdges(line: UInt32) throws
    /// Waits up to `timeoutNs` for one edge on `line`; nil on timeout.
    func waitForEdge(line: UInt32, timeoutNs: UInt64) throws -> GPIOEdgeEvent?
    /// Releases every line and the chip. Idempotent.
    func close()
}

/// CLOCK_MONOTONIC in nanoseconds, the clock kernel GPIO events are stamped with.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// An in-memory GPIO chip for tests and for running without hardware: records every value written
/// and lets a test inject edges with chosen timestamps (in the spirit of NIOEmbedded).
public final class SimulatedGPIO: GPIOBackend, @unchecked Sendable {
    private let condition = NSCondition()
    private var outputs: [UInt32: Int] = [:]
    private var inputs: Set<UInt32> = []
    private var pending: [GPIOEdgeEvent] = []
    private var writes: [(line: UInt32, value: Int)] = []
    private var closed = false

    public init() {}

    public func requestOutput(line: UInt32, value: Int) throws {
        condition.lock()
        defer { condition.unlock() }
        guard !inputs.contains(line) else {
            throw GPIOError(.lineBusy, "line \(line) is already an input")
        }
        outputs[line] = value
        writes.append((line, value))
    }

    public func setValue(line: UInt32, value: Int) throws {
        condition.lock()
        defer { condition.unlock() }
        guard outputs[line] != nil else {
            throw GPIOError(.lineNotRequested, "line \(line) is not an output")
        }
        outputs[line] = value
        writes.append((line, value))
    }

    public func requestEdges(line: UInt32) throws {
        condition.lock()
        defer { condition.unlock() }
        guard outputs[line] == nil else { throw GPIOError(.lineBusy, "line \(line) is already an output") }
        inputs.insert(line)
    }

    /// Returns a queued edge at once; otherwise waits (in real time) up to `timeoutNs` for one to be injected.
    public func waitForEdge(line: UInt32, timeoutNs: UInt64) throws -> GPIOEdgeEvent? {
        condition.lock()
        defer { condition.unlock() }
        guard inputs.contains(line) else {
            throw GPIOError(.lineNotRequested, "line \(line) is not an input")
        }
        let deadline = Date(timeIntervalSinceNow: Double(timeoutNs) / 1e9)
        while true {
            if let index = pending.firstIndex(where: { $0.line == line }) {
                return pending.remove(at: index)
            }
            if closed || timeoutNs == 0 || !condition.wait(until: deadline) { return nil }
        }
    }

    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// Queues an edge as if the kernel had reported it.
    public func inject(_ kind: GPIOEdgeEvent.Kind, line: UInt32, atNs timestamp: UInt64) {
        condition.lock()
        pending.append(GPIOEdgeEvent(line: line, kind: kind, timestampNs: timestamp))
        condition.broadcast()
        condition.unlock()
    }

    /// The current level of an output line, nil if never requested.
    public func value(of line: UInt32) -> Int? {
        condition.lock()
        defer { condition.unlock() }
        return outputs[line]
    }

    /// Every value written, in order.
    public var history: [(line: UInt32, value: Int)] {
        condition.lock()
        defer { condition.unlock() }
        return writes
    }
}

/// Turns raw edges into debounced presses: a level counts only once it has been stable for the debounce
/// interval; a press is a transition of the stable level to active. Pure state: time comes from the caller.
public struct Debouncer: Sendable {
    public let intervalNs: UInt64
    public let activeLow: Bool
    /// The last stable logical level (true = active).
    public private(set) var stableActive = false
    private var pending: (active: Bool, at: UInt64)?

    public init(intervalMs: Int, activeLow: Bool) {
        self.intervalNs = UInt64(max(0, intervalMs)) * 1_000_000
        self.activeLow = activeLow
    }

    /// Records a raw edge; an edge inside the interval of the previous one restarts the wait (a bounce).
    public mutating func record(_ event: GPIOEdgeEvent) {
        let high = event.kind == .rising
        pending = (high != activeLow, event.timestampNs)
    }

    /// When the pending level will have been stable long enough, if an edge is pending.
    public var deadlineNs: UInt64? { pending.map { $0.at &+ intervalNs } }

    /// Settles the pending level if it has been stable until `nowNs`; returns true for a new press.
    public mutating func settle(nowNs: UInt64) -> Bool {
        guard let p = pending, nowNs >= p.at, nowNs - p.at >= intervalNs else { return false }
        pending = nil
        let press = p.active && !stableActive
        stableActive = p.active
        return press
    }
}

/// Watches the trigger line and calls `onPress` for each debounced press.
public final class TriggerMonitor: @unchecked Sendable {
    private let backend: any GPIOBackend
    private let line: UInt32
    private let lock = NSLock()
    private var debouncer: Debouncer
    private var running = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    private let onPress: @Sendable (UInt64) -> Void
    private let now: @Sendable () -> UInt64

    public init(
        backend: any GPIOBackend, line: UInt32, activeLow: Bool, debounceMs: Int,
        now: @escaping @Sendable () -> UInt64 = monotonicNanoseconds,
        onPress: @escaping @Sendable (UInt64) -> Void
    ) throws {
        self.backend = backend
        self.line = line
        self.debouncer = Debouncer(intervalMs: debounceMs, activeLow: activeLow)
        self.onPress = onPress
        self.now = now
        try backend.requestEdges(line: line)
    }

    /// One deterministic step: takes every edge already queued (waiting up to `waitNs` for the first),
    /// then settles at `nowNs` (the monitor's clock after the wait when nil). Returns the presses reported.
    @discardableResult
    public func step(nowNs: UInt64? = nil, waitNs: UInt64 = 0) throws -> Int {
        var presses = 0
        var wait = waitNs
        while let event = try backend.waitForEdge(line: line, timeoutNs: wait) {
            wait = 0
            lock.lock()
            // A stable level reached before this edge still counts.
            if debouncer.settle(nowNs: event.timestampNs) {
                presses += 1
                lock.unlock()
                onPress(event.timestampNs)
                lock.lock()
            }
            debouncer.record(event)
            lock.unlock()
        }
        let t = nowNs ?? now()
        lock.lock()
        let pressed = debouncer.settle(nowNs: t)
        lock.unlock()
        if pressed {
            presses += 1
            onPress(t)
        }
        return presses
    }

    /// Runs `step` on a background thread until `stop()`.
    public func start() {
        lock.lock()
        guard !running else {
            lock.unlock()
            return
        }
        running = true
        lock.unlock()
        let thread = Thread { [self] in
            defer { finished.signal() }
            while isRunning {
                lock.lock()
                let deadline = debouncer.deadlineNs
                lock.unlock()
                let t = now()
                let wait: UInt64 = deadline.map { $0 > t ? min($0 - t, 200_000_000) : 0 } ?? 200_000_000
                do {
                    try step(waitNs: wait)
                } catch {
                    Thread.sleep(forTimeInterval: 1)
                }
            }
        }
        thread.name = "aads-trigger"
        self.thread = thread
        thread.start()
    }

    private var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return running
    }

    /// Stops the background thread and waits for it to leave the backend, so the lines can be released safely.
    public func stop() {
        lock.lock()
        let wasRunning = running
        running = false
        lock.unlock()
        if wasRunning && thread != nil { finished.wait() }
    }
}
