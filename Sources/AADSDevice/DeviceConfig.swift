import AADSCore
import Foundation

/// A configuration problem: the key path (`gpio.lines.green`) and why it is wrong.
public struct ConfigError: CodedError {
    /// Always `bad_config`: could not run.
    public let code = "bad_config"
    public var failure: FailureKind { .couldNotRun }
    public let keyPath: String
    public let reason: String
    /// One line: control characters from the file (a key `"a\nb"`, a value) are shown as JSON escapes.
    public var message: String {
        let text = keyPath.isEmpty ? reason : "\(keyPath): \(reason)"
        return text.unicodeScalars.map { scalar in
            scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}"
                ? String(format: "\\u%04x", scalar.value) : String(scalar)
        }.joined()
    }

    public init(_ keyPath: String, _ reason: String) {
        self.keyPath = keyPath
        self.reason = reason
    }
}

/// Which GPIO implementation drives the LEDs and reads the trigger.
public enum GPIOBackendKind: String, Sendable, CaseIterable {
    case libgpiod, simulated, off
}

/// What the service does when the spool backlog exceeds `queue.capacity`.
public enum DropPolicy: String, Sendable, CaseIterable {
    /// Drop the oldest waiting images (the freshest photo is the most useful one).
    case oldest
    /// Refuse the newest arrivals.
    case newest
}

/// The field service's configuration (`firmware-config/device.json`).
public struct DeviceConfig: Sendable, Equatable {
    public struct Metrics: Sendable, Equatable {
        /// node_exporter textfile-collector file (should end in `.prom`); empty disables the metrics file.
        public var file: String
        public var intervalSeconds: Double
    }

    public struct GPIOLines: Sendable, Equatable {
        public var green: UInt32
        public var amber: UInt32
        public var red: UInt32
        /// The capture button or sensor; nil when there is none.
        public var trigger: UInt32?
    }

    public struct GPIO: Sendable, Equatable {
        public var backend: GPIOBackendKind
        /// A chip name, number or path as `gpiod_chip_open_lookup` accepts (`gpiochip0`, `0`, `/dev/gpiochip0`).
        public var chip: String
        public var lines: GPIOLines
        public var activeLow: Bool
        /// When false a missing chip is a logged warning and the service runs without LEDs.
        public var required: Bool
        public var debounceMs: Int
    }

    public struct Capture: Sendable, Equatable {
        /// Command run on a trigger; `{path}` is replaced by the file to write. Split on spaces, no shell.
        public var command: String
        public var timeoutSeconds: Double
    }

    public struct Queue: Sendable, Equatable {
        /// Most images waiting in the spool; beyond it images are dropped (moved to `dropped/`).
        public var capacity: Int
        public var drop: DropPolicy
        /// Rescan interval when inotify is unavailable (and a safety rescan otherwise).
        public var pollIntervalMs: Int
    }

    public struct Retention: Sendable, Equatable {
        /// Keep at most this many result rows (0 = unlimited).
        public var maxRows: Int
        /// Keep rows at most this many days (0 = unlimited).
        public var maxDays: Int
    }

    public struct Probation: Sendable, Equatable {
        /// Images a trial slot must serve before it can be committed.
        public var images: Int
        /// Must be absent or equal health.json's `error_rate_max`, the one error-rate bound (checked at start).
        public var maxErrorRate: Double?
        /// When true the A/B comparison must show the candidate is not significantly worse.
        public var requireABNotWorse: Bool
    }

    public struct AB: Sendable, Equatable {
        /// Fraction of live images shadow-run on the other version while a candidate is in probation.
        public var fraction: Double
        /// Significance level of the "not significantly worse" tests.
        public var alpha: Double
        /// Fewest shadow samples before a comparison is judged.
        public var minSamples: Int
    }

    public struct Alerts: Sendable, Equatable {
        /// Rolling window of images for latency and error rate.
        public var window: Int
        /// Alert when the rolling mean latency exceeds the baseline by this fraction (0.10 = 10%).
        public var latencyIncrease: Double
        /// Alert when the rolling error rate exceeds this (0.01 = 1%).
        public var errorRate: Double
        /// Alert when resident memory grows by this fraction over the previous window (0.20 = 20%).
        public var memoryGrowth: Double
        /// Seconds per memory window.
        public var memoryWindowSeconds: Double
        /// Alert when a health check's accuracy falls this far below the slot's baseline (absolute).
        public var accuracyDrop: Double
        /// Hours between re-checks of the serving model on its golden set, which estimate the accuracy drop
        /// (live images carry no labels); 0 disables them.
        public var goldenRecheckHours: Double
    }

    public var spoolDir: String
    public var journalPath: String
    public var slotRoot: String
    /// Holds the red-LED latch file and other small service state.
    public var stateDir: String
    public var metrics: Metrics
    public var gpio: GPIO
    public var capture: Capture
    public var queue: Queue
    public var retention: Retention
    public var probation: Probation
    public var ab: AB
    public var alerts: Alerts
    /// Threads for each image: the backbone's layers, and the bands of a JPEG with restart markers.
    public var threads: Int

    /// The red-LED latch: present while a fault or rollback waits to be acknowledged (`aads-edge ack`).
    public var redLatchPath: String { (stateDir as NSString).appendingPathComponent("red-latch.json") }

    /// Defaults suitable for a Raspberry Pi with the LEDs on GPIO 17/27/22 and a button on 23.
    public static let defaults = DeviceConfig(
        spoolDir: "/var/lib/aads-edge/spool",
        journalPath: "/var/lib/aads-edge/results.sqlite",
        slotRoot: "/var/lib/aads-edge/slots",
        stateDir: "/var/lib/aads-edge",
        metrics: Metrics(file: "/var/lib/prometheus/node-exporter/aads_edge.prom", intervalSeconds: 15),
        gpio: GPIO(
            backend: .libgpiod, chip: "gpiochip0", lines: GPIOLines(green: 17, amber: 27, red: 22, trigger: 23),
            activeLow: false, required: false, debounceMs: 50),
        capture: Capture(command: "libcamera-still -n -o {path}", timeoutSeconds: 30),
        queue: Queue(capacity: 256, drop: .oldest, pollIntervalMs: 1000),
        retention: Retention(maxRows: 500_000, maxDays: 365),
        probation: Probation(images: 200, maxErrorRate: nil, requireABNotWorse: true),
        ab: AB(fraction: 0.25, alpha: 0.05, minSamples: 30),
        alerts: Alerts(
            window: 200, latencyIncrease: 0.10, errorRate: 0.01, memoryGrowth: 0.20, memoryWindowSeconds: 600,
            accuracyDrop: 0.05, goldenRecheckHours: 24),
        threads: 1
    )

    /// Loads and validates a config file. Every key is optional (defaults above); unknown keys are errors.
    public static func load(path: String) throws -> DeviceConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("", "cannot read config file \(path)")
        }
        return try decode(data)
    }

    /// Parses and validates config JSON.
    public static func decode(_ data: Data) throws -> DeviceConfig {
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw ConfigError("", "not valid JSON")
        }
        guard case .object(let object) = root else { throw ConfigError("", "expected a JSON object at the top level") }
        if let duplicate = JSONDuplicateKeys.first(in: data) {
            throw ConfigError(duplicate, "duplicate key")
        }
        var c = DeviceConfig.defaults
        let r = ConfigReader(object, path: "")
        c.spoolDir = try r.string("spool_dir", c.spoolDir)
        c.journalPath = try r.string("journal_path", c.journalPath)
        c.slotRoot = try r.string("slot_root", c.slotRoot)
        c.stateDir = try r.string("state_dir", c.stateDir)
        c.threads = try r.int("threads", c.threads, min: 1, max: 64)
        if let m = try r.object("metrics") {
            c.metrics.file = try m.string("file", c.metrics.file, allowEmpty: true)
            c.metrics.intervalSeconds = try m.double("interval_s", c.metrics.intervalSeconds, min: 0.1)
            try m.finish()
        }
        if let g = try r.object("gpio") {
            c.gpio.backend = try g.choice("backend", c.gpio.backend)
            c.gpio.chip = try g.string("chip", c.gpio.chip)
            if let l = try g.object("lines") {
                c.gpio.lines.green = try l.line("green", c.gpio.lines.green)
                c.gpio.lines.amber = try l.line("amber", c.gpio.lines.amber)
                c.gpio.lines.red = try l.line("red", c.gpio.lines.red)
                c.gpio.lines.trigger = try l.optionalLine("trigger", c.gpio.lines.trigger)
                try l.finish()
                let lines = c.gpio.lines
                let all = [lines.green, lines.amber, lines.red] + (lines.trigger.map { [$0] } ?? [])
                if Set(all).count != all.count {
                    throw ConfigError(l.path, "line offsets must be distinct")
                }
            }
            c.gpio.activeLow = try g.bool("active_low", c.gpio.activeLow)
            c.gpio.required = try g.bool("required", c.gpio.required)
            c.gpio.debounceMs = try g.int("debounce_ms", c.gpio.debounceMs, min: 0, max: 10_000)
            try g.finish()
        }
        if let cap = try r.object("capture") {
            c.capture.command = try cap.string("command", c.capture.command)
            if !c.capture.command.contains("{path}") {
                throw ConfigError(cap.key("command"), "must contain {path}")
            }
            c.capture.timeoutSeconds = try cap.double("timeout_s", c.capture.timeoutSeconds, min: 0.1, max: 3_600)
            try cap.finish()
        }
        if let q = try r.object("queue") {
            c.queue.capacity = try q.int("capacity", c.queue.capacity, min: 1, max: 10_000_000)
            c.queue.drop = try q.choice("drop", c.queue.drop)
            c.queue.pollIntervalMs = try q.int("poll_interval_ms", c.queue.pollIntervalMs, min: 10, max: 3_600_000)
            try q.finish()
        }
        if let ret = try r.object("retention") {
            c.retention.maxRows = try ret.int("max_rows", c.retention.maxRows, min: 0, max: Int(Int32.max))
            c.retention.maxDays = try ret.int("max_days", c.retention.maxDays, min: 0, max: 36_500)
            try ret.finish()
        }
        if let p = try r.object("probation") {
            c.probation.images = try p.int("images", c.probation.images, min: 1, max: 10_000_000)
            c.probation.maxErrorRate = try p.optionalDouble("max_error_rate", min: 0, max: 1)
            c.probation.requireABNotWorse = try p.bool("require_ab_not_worse", c.probation.requireABNotWorse)
            try p.finish()
        }
        if let a = try r.object("ab") {
            c.ab.fraction = try a.double("fraction", c.ab.fraction, min: 0, max: 1)
            c.ab.alpha = try a.double("alpha", c.ab.alpha, min: 1e-9, max: 0.5)
            c.ab.minSamples = try a.int("min_samples", c.ab.minSamples, min: 2, max: 10_000_000)
            try a.finish()
        }
        if c.probation.requireABNotWorse {
            // Probation waits for the A/B verdict: the expected shadow samples must reach min_samples.
            let expected = Double(c.probation.images) * c.ab.fraction
            guard expected >= Double(c.ab.minSamples) else {
                throw ConfigError(
                    "probation.require_ab_not_worse",
                    String(
                        format:
                            "probation.images × ab.fraction = %d × %g = %.1f expected A/B samples, below ab.min_samples %d: "
                            + "raise probation.images or ab.fraction, or lower ab.min_samples",
                        c.probation.images, c.ab.fraction, expected, c.ab.minSamples))
            }
        }
        if let al = try r.object("alerts") {
            c.alerts.window = try al.int("window", c.alerts.window, min: 10, max: 1_000_000)
            c.alerts.latencyIncrease = try al.double("latency_increase", c.alerts.latencyIncrease, min: 0, max: 100)
            c.alerts.errorRate = try al.double("error_rate", c.alerts.errorRate, min: 0, max: 1)
            c.alerts.memoryGrowth = try al.double("memory_growth", c.alerts.memoryGrowth, min: 0, max: 100)
            c.alerts.memoryWindowSeconds = try al.double("memory_window_s", c.alerts.memoryWindowSeconds, min: 1)
            c.alerts.accuracyDrop = try al.double("accuracy_drop", c.alerts.accuracyDrop, min: 0, max: 1)
            c.alerts.goldenRecheckHours = try al.double(
                "golden_recheck_hours", c.alerts.goldenRecheckHours, min: 0, max: 8760)
            try al.finish()
        }
        try r.finish()
        return c
    }
}

/// A parsed JSON value that keeps booleans and numbers apart (JSONSerialization does not on every platform).
enum JSONValue: Decodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let d = try? container.decode(Double.self) {
            self = .number(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }
}

/// Reads one JSON object of the config, tracking the key path for error messages and refusing unknown keys.
final class ConfigReader {
    let object: [String: JSONValue]
    let path: String
    private var seen: Set<String> = []

    init(_ object: [String: JSONValue], path: String) {
        self.object = object
        self.path = path
    }

    func key(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    /// The value, or nil when absent. JSON null is refused: it would otherwise silently mean the default
    /// (only `optionalLine` gives null a meaning).
    private func raw(_ name: String) throws -> JSONValue? {
        seen.insert(name)
        guard let value = object[name] else { return nil }
        if case .null = value { throw ConfigError(key(name), "must not be null (leave the key out for the default)") }
        return value
    }

    /// Throws for the first key not read, so a typo never silently falls back to a default.
    func finish() throws {
        if let unknown = object.keys.filter({ !seen.contains($0) }).sorted().first {
            throw ConfigError(key(unknown), "unknown key")
        }
    }

    func object(_ name: String) throws -> ConfigReader? {
        guard let value = try raw(name) else { return nil }
        guard case .object(let dict) = value else { throw ConfigError(key(name), "expected an object") }
        return ConfigReader(dict, path: key(name))
    }

    func string(_ name: String, _ fallback: String, allowEmpty: Bool = false) throws -> String {
        guard let value = try raw(name) else { return fallback }
        guard case .string(let text) = value else { throw ConfigError(key(name), "expected a string") }
        if !allowEmpty && text.isEmpty { throw ConfigError(key(name), "must not be empty") }
        return text
    }

    func bool(_ name: String, _ fallback: Bool) throws -> Bool {
        guard let value = try raw(name) else { return fallback }
        guard case .bool(let b) = value else { throw ConfigError(key(name), "expected true or false") }
        return b
    }

    func int(_ name: String, _ fallback: Int, min: Int, max: Int) throws -> Int {
        guard let value = try raw(name) else { return fallback }
        guard case .number(let d) = value, d.isFinite, d.rounded() == d, abs(d) < 9.0e15 else {
            throw ConfigError(key(name), "expected an integer")
        }
        let v = Int(d)
        guard v >= min, v <= max else { throw ConfigError(key(name), "must be between \(min) and \(max), got \(v)") }
        return v
    }

    func double(_ name: String, _ fallback: Double, min: Double, max: Double = .greatestFiniteMagnitude) throws
        -> Double
    {
        guard let value = try raw(name) else { return fallback }
        guard case .number(let v) = value, v.isFinite else { throw ConfigError(key(name), "expected a number") }
        guard v >= min, v <= max else {
            let range = max == .greatestFiniteMagnitude ? "at least \(min)" : "between \(min) and \(max)"
            throw ConfigError(key(name), "must be \(range), got \(v)")
        }
        return v
    }

    /// A number when the key is present, nil when it is absent.
    func optionalDouble(_ name: String, min: Double, max: Double) throws -> Double? {
        object[name] == nil ? nil : try double(name, 0, min: min, max: max)
    }

    func line(_ name: String, _ fallback: UInt32) throws -> UInt32 {
        UInt32(try int(name, Int(fallback), min: 0, max: 1023))
    }

    /// A line offset where an explicit `null` means "no such line".
    func optionalLine(_ name: String, _ fallback: UInt32?) throws -> UInt32? {
        if case .null? = object[name] {
            seen.insert(name)
            return nil
        }
        guard object[name] != nil else {
            seen.insert(name)
            return fallback
        }
        return UInt32(try int(name, 0, min: 0, max: 1023))
    }

    func choice<T: RawRepresentable & CaseIterable>(_ name: String, _ fallback: T) throws -> T
    where T.RawValue == String {
        guard let value = try raw(name) else { return fallback }
        let options = T.allCases.map(\.rawValue).joined(separator: ", ")
        guard case .string(let text) = value else { throw ConfigError(key(name), "expected one of \(options)") }
        guard let parsed = T(rawValue: text) else {
            throw ConfigError(key(name), "expected one of \(options), got \"\(text)\"")
        }
        return parsed
    }
}

/// Finds a key repeated within one JSON object (JSON parsers keep one of them silently). Runs on text that
/// already parsed as JSON; returns the repeated key's path (`capture.timeout_s`), or nil.
enum JSONDuplicateKeys {
    static func first(in data: Data) -> String? {
        let bytes = [UInt8](data)
        // One frame per open object or array: the object's path and the keys seen in it (nil for arrays).
        var frames: [(path: String, keys: Set<String>?, lastKey: String?)] = []
        var i = 0
        while i < bytes.count {
            let byte = bytes[i]
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var path = ""
                if let top = frames.last {
                    path = top.keys == nil ? top.path : join(top.path, top.lastKey ?? "")
                }
                frames.append((path, byte == UInt8(ascii: "{") ? [] : nil, nil))
                i += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if !frames.isEmpty { frames.removeLast() }
                i += 1
            case UInt8(ascii: "\""):
                var end = i + 1
                while end < bytes.count && bytes[end] != UInt8(ascii: "\"") {
                    end += bytes[end] == UInt8(ascii: "\\") ? 2 : 1
                }
                let literal = Data(bytes[i...min(end, bytes.count - 1)])
                var next = end + 1
                while next < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[next]) { next += 1 }
                if next < bytes.count, bytes[next] == UInt8(ascii: ":"), let top = frames.indices.last,
                    frames[top].keys != nil
                {
                    let key =
                        (try? JSONDecoder().decode(String.self, from: literal))
                        ?? String(decoding: literal, as: UTF8.self)
                    if frames[top].keys?.insert(key).inserted == false { return join(frames[top].path, key) }
                    frames[top].lastKey = key
                }
                i = end + 1
            default:
                i += 1
            }
        }
        return nil
    }

    private static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : path + "." + key }
}
