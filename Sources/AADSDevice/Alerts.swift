import Foundation

public enum AlertSeverity: String, Sendable, Codable {
    /// Logged and exported.
    case warning
    /// Logged, exported, and latches the red LED.
    case critical
}

/// An active alert condition.
public struct Alert: Sendable, Equatable {
    public var rule: String
    public var severity: AlertSeverity
    public var message: String
    public var value: Double
    public var threshold: Double
}

/// A change of an alert: raised, or cleared because the condition went away.
public struct AlertTransition: Sendable, Equatable {
    public var alert: Alert
    public var raised: Bool
}

/// The original AADS alert rules over a running service: latency more than 10% above the slot's baseline
/// (rolling mean), error rate above 1%, memory growth over 20% against the previous window, and an accuracy
/// drop seen by a health check. Pure state; time comes from the caller.
public final class AlertEngine {
    public static let latencyRule = "latency_increase"
    public static let errorRule = "error_rate"
    public static let memoryRule = "memory_growth"
    public static let accuracyRule = "accuracy_drop"
    /// Raised by the service (not by this engine) when the slot store's state file had to be restored or rebuilt.
    public static let stateRecoveredRule = "slot_state_recovered"

    public let config: DeviceConfig.Alerts
    /// Latency baseline in ms: the slot's measured baseline when known, else the first full window.
    public private(set) var latencyBaselineMs: Double?
    public private(set) var active: [String: Alert] = [:]

    private var latencies: [Double?] = []
    private var errorFlags: [Bool] = []
    private var cursor = 0
    private var memoryWindowStart: Double?
    private var memorySamples: [Double] = []
    private var previousMemoryMean: Double?

    public init(config: DeviceConfig.Alerts, latencyBaselineMs: Double? = nil) {
        self.config = config
        self.latencyBaselineMs = latencyBaselineMs
    }

    /// Starts over for a newly served model (a new baseline, empty windows); active alerts are cleared.
    public func reset(latencyBaselineMs: Double?) -> [AlertTransition] {
        self.latencyBaselineMs = latencyBaselineMs
        latencies.removeAll()
        errorFlags.removeAll()
        cursor = 0
        let cleared = active.values.filter { $0.rule != Self.memoryRule && $0.rule != Self.accuracyRule }
        for a in cleared { active[a.rule] = nil }
        return cleared.map { AlertTransition(alert: $0, raised: false) }
    }

    /// Feeds one processed image; `latencyMs` nil when its time is not comparable with images diagnosed one at a
    /// time (it shared the processor with the decode of the next image): it then counts for the error rate only.
    public func observe(latencyMs: Double?, isError: Bool) -> [AlertTransition] {
        let window = config.window
        if latencies.count < window {
            latencies.append(latencyMs)
            errorFlags.append(isError)
        } else {
            latencies[cursor] = latencyMs
            errorFlags[cursor] = isError
            cursor = (cursor + 1) % window
        }
        guard latencies.count == window else { return [] }
        var transitions: [AlertTransition] = []
        // Latency over successful images only: an error's time says nothing about the model's speed.
        let okLatencies = zip(latencies, errorFlags).compactMap { $0.1 ? nil : $0.0 }
        if !okLatencies.isEmpty {
            let mean = okLatencies.reduce(0, +) / Double(okLatencies.count)
            if latencyBaselineMs == nil { latencyBaselineMs = mean }
            if let baseline = latencyBaselineMs, baseline > 0 {
                let limit = baseline * (1 + config.latencyIncrease)
                transitions += update(
                    rule: Self.latencyRule, severity: .warning, condition: mean > limit, value: mean, threshold: limit,
                    message: String(
                        format:
                            "mean latency %.1f ms over the last %d images exceeds baseline %.1f ms by more than %.0f%%",
                        mean, window, baseline, config.latencyIncrease * 100))
            }
        }
        let rate = Double(errorFlags.filter { $0 }.count) / Double(window)
        transitions += update(
            rule: Self.errorRule, severity: .critical, condition: rate > config.errorRate, value: rate,
            threshold: config.errorRate,
            message: String(
                format: "error rate %.2f%% over the last %d images exceeds %.2f%%", rate * 100, window,
                config.errorRate * 100))
        return transitions
    }

    /// Feeds a resident-memory sample taken at `time` (seconds on any monotonic clock).
    public func observeMemory(bytes: Double, at time: Double) -> [AlertTransition] {
        if memoryWindowStart == nil { memoryWindowStart = time }
        memorySamples.append(bytes)
        guard let start = memoryWindowStart, time - start >= config.memoryWindowSeconds else { return [] }
        let mean = memorySamples.reduce(0, +) / Double(memorySamples.count)
        memorySamples.removeAll()
        memoryWindowStart = time
        defer { previousMemoryMean = mean }
        guard let previous = previousMemoryMean, previous > 0 else { return [] }
        let growth = mean / previous - 1
        return update(
            rule: Self.memoryRule, severity: .warning, condition: growth > config.memoryGrowth, value: growth,
            threshold: config.memoryGrowth,
            message: String(
                format: "resident memory grew %.1f%% over the previous window (%.1f MB → %.1f MB)",
                growth * 100, previous / 1e6, mean / 1e6))
    }

    /// Feeds a health check's accuracy against the slot's baseline accuracy.
    public func observeHealth(accuracy: Double, baseline: Double) -> [AlertTransition] {
        let drop = baseline - accuracy
        return update(
            rule: Self.accuracyRule, severity: .critical, condition: drop > config.accuracyDrop, value: accuracy,
            threshold: baseline - config.accuracyDrop,
            message: String(
                format: "health-check accuracy %.3f is %.3f below the baseline %.3f", accuracy, drop, baseline))
    }

    private func update(
        rule: String, severity: AlertSeverity, condition: Bool, value: Double, threshold: Double, message: String
    ) -> [AlertTransition] {
        let alert = Alert(rule: rule, severity: severity, message: message, value: value, threshold: threshold)
        if condition {
            guard active[rule] == nil else {
                active[rule] = alert
                return []
            }
            active[rule] = alert
            return [AlertTransition(alert: alert, raised: true)]
        }
        guard active[rule] != nil else { return [] }
        active[rule] = nil
        return [AlertTransition(alert: alert, raised: false)]
    }
}
