import AADSCore
import AADSDiagnosis
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Which status LED is lit (one at a time).
public enum LEDColor: String, Sendable, CaseIterable {
    case off, green, amber, red
}

/// The life-cycle phase of the slot being served.
public enum SlotPhase: String, Sendable, Codable {
    /// A committed (`good`) slot.
    case committed
    /// A freshly activated slot, before its health gate.
    case trial
    /// Passed its health gate, counting probation images before commit.
    case probation
    /// No slot information (e.g. a bundle served directly).
    case unknown
}

/// What the LED policy looks at.
public struct LEDInputs: Sendable, Equatable {
    public var phase: SlotPhase
    /// A current fault: the journal cannot be written, the model cannot load, a critical alert is active.
    public var fault: Bool
    /// A fault or rollback happened and has not been acknowledged.
    public var redLatched: Bool
    /// The decision of the last image (`diagnosis`, `unknown_crop`, `ood`, `error`), nil before the first.
    public var lastDecision: Decision?

    public init(phase: SlotPhase, fault: Bool = false, redLatched: Bool = false, lastDecision: Decision? = nil) {
        self.phase = phase
        self.fault = fault
        self.redLatched = redLatched
        self.lastDecision = lastDecision
    }
}

/// The status LED rules: red = fault or an unacknowledged rollback; amber = trial/probation or the last
/// image was `ood`/`unknown_crop`; green = serving a committed slot and healthy.
public enum LEDPolicy {
    public static func color(for inputs: LEDInputs) -> LEDColor {
        if inputs.fault || inputs.redLatched { return .red }
        switch inputs.phase {
        case .trial, .probation: return .amber
        case .committed, .unknown: break
        }
        if inputs.lastDecision == .ood || inputs.lastDecision == .unknownCrop { return .amber }
        return .green
    }
}

/// Drives the three status LEDs on a `GPIOBackend`, honouring active-low wiring.
public final class LEDController: @unchecked Sendable {
    private let backend: (any GPIOBackend)?
    private let lines: DeviceConfig.GPIOLines
    private let activeLow: Bool
    private let lock = NSLock()
    public private(set) var color: LEDColor = .off

    /// Requests the three LED lines as outputs, all off. A nil backend makes every call a no-op.
    public init(backend: (any GPIOBackend)?, lines: DeviceConfig.GPIOLines, activeLow: Bool) throws {
        self.backend = backend
        self.lines = lines
        self.activeLow = activeLow
        if let backend {
            for line in [lines.green, lines.amber, lines.red] {
                try backend.requestOutput(line: line, value: activeLow ? 1 : 0)
            }
        }
    }

    /// Physical level for a logical on/off.
    private func level(_ on: Bool) -> Int { on != activeLow ? 1 : 0 }

    /// Lights exactly one LED (or none); writes only when the colour changes.
    public func show(_ newColor: LEDColor) throws {
        lock.lock()
        defer { lock.unlock() }
        guard newColor != color else { return }
        if let backend {
            // Turn the old one off first so two never glow together.
            for (line, which) in [(lines.green, LEDColor.green), (lines.amber, .amber), (lines.red, .red)]
            where which != newColor {
                try backend.setValue(line: line, value: level(false))
            }
            if let line = line(for: newColor) { try backend.setValue(line: line, value: level(true)) }
        }
        color = newColor
    }

    private func line(for color: LEDColor) -> UInt32? {
        switch color {
        case .green: lines.green
        case .amber: lines.amber
        case .red: lines.red
        case .off: nil
        }
    }
}

/// The red-LED latch: a small file that exists while a fault or rollback awaits acknowledgement.
/// `aads-edge ack` (or deleting the file) acknowledges it; the service re-reads it every tick.
public struct RedLatch: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public var isLatched: Bool { FileManager.default.fileExists(atPath: path) }

    /// The reason recorded by the first latch, nil when not latched.
    public var reason: String? {
        guard let data = FileManager.default.contents(atPath: path),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return isLatched ? "unknown" : nil }
        return object["reason"] as? String
    }

    /// Latches red with a reason; a latch already present is kept (the first cause is the interesting one).
    public func latch(reason: String, at date: Date = Date()) throws {
        guard !isLatched else { return }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let line = JSONLine.encode(["reason": reason, "latched_at": ISO8601.string(date)])
        try AtomicFile.write(Data((line + "\n").utf8), to: path)
    }

    /// Acknowledges: removes the latch. Returns the reason it held, nil when nothing was latched.
    @discardableResult
    public func acknowledge() throws -> String? {
        guard isLatched else { return nil }
        let held = reason
        guard unlink(path) == 0 || errno == ENOENT else {
            throw FileIOError(.ioError, "cannot remove \(path): \(String(cString: strerror(errno)))")
        }
        let directory = (path as NSString).deletingLastPathComponent
        try? AtomicFile.syncDirectory(directory.isEmpty ? "." : directory)
        return held
    }
}
