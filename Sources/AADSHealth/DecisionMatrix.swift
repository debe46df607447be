import AADSCore
import Foundation

/// The rollout decision matrix of `firmware-config/health.json` (AADS-ULoRA v5.5 defaults).
public struct HealthPolicy: Codable, Sendable, Equatable {
    /// Accuracy (routing or adapter) may fall at most this much (absolute) below the reference.
    public var accuracyDropMax: Double = 0.01
    /// OOD AUROC must be at least this.
    public var oodAurocMin: Double = 0.90
    /// OOD false-positive rate may rise at most this much (absolute).
    public var fprIncreaseMax: Double = 0.01
    /// Relative latency increase that raises a warning (kept, investigated).
    public var latencyIncreaseWarn: Double = 0.10
    /// Relative memory increase that raises a warning.
    public var memoryIncreaseWarn: Double = 0.20
    /// Error rate above which the slot is rolled back.
    public var errorRateMax: Double = 0.005
    /// Crash frequency (crashes per diagnosis in probation) above which the slot is rolled back.
    public var crashFrequencyMax: Double = 0.001
    /// Seconds one check may take before it counts as failed.
    public var checkTimeoutSeconds: Double = 300
    /// Probation commits after this many minutes within the error bounds, or earlier once the device's
    /// `probation.images` diagnoses succeeded (device.json).
    public var probationMinutes: Double = 60

    public init() {}

    enum CodingKeys: String, CodingKey {
        case accuracyDropMax = "accuracy_drop_max"
        case oodAurocMin = "ood_auroc_min"
        case fprIncreaseMax = "fpr_increase_max"
        case latencyIncreaseWarn = "latency_increase_warn"
        case memoryIncreaseWarn = "memory_increase_warn"
        case errorRateMax = "error_rate_max"
        case crashFrequencyMax = "crash_frequency_max"
        case checkTimeoutSeconds = "check_timeout_seconds"
        case probationMinutes = "probation_minutes"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = HealthPolicy.defaults
        accuracyDropMax = try c.decodeIfPresent(Double.self, forKey: .accuracyDropMax) ?? d.accuracyDropMax
        oodAurocMin = try c.decodeIfPresent(Double.self, forKey: .oodAurocMin) ?? d.oodAurocMin
        fprIncreaseMax = try c.decodeIfPresent(Double.self, forKey: .fprIncreaseMax) ?? d.fprIncreaseMax
        latencyIncreaseWarn = try c.decodeIfPresent(Double.self, forKey: .latencyIncreaseWarn) ?? d.latencyIncreaseWarn
        memoryIncreaseWarn = try c.decodeIfPresent(Double.self, forKey: .memoryIncreaseWarn) ?? d.memoryIncreaseWarn
        errorRateMax = try c.decodeIfPresent(Double.self, forKey: .errorRateMax) ?? d.errorRateMax
        crashFrequencyMax = try c.decodeIfPresent(Double.self, forKey: .crashFrequencyMax) ?? d.crashFrequencyMax
        checkTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .checkTimeoutSeconds) ?? d.checkTimeoutSeconds
        probationMinutes = try c.decodeIfPresent(Double.self, forKey: .probationMinutes) ?? d.probationMinutes
    }

    public static let defaults = HealthPolicy()

    /// Reads a policy file; a missing one is a `not_found` error, an unreadable or broken one `bad_config`.
    public static func load(path: String) throws -> HealthPolicy {
        guard FileManager.default.fileExists(atPath: path) else {
            throw HealthError(.notFound, "no such policy file: \(path)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw HealthError(.badConfig, "cannot read policy file \(path)")
        }
        do {
            return try JSONDecoder().decode(HealthPolicy.self, from: data)
        } catch {
            throw HealthError(.badConfig, "\(path): \(error)")
        }
    }

    /// Where the device looks for `health.json` when no policy file is named:
    /// `$AADS_CONFIG_DIR/health.json` (which must then exist), then `/etc/aads-edge/health.json`, then
    /// `firmware-config/health.json` next to the installed executable (`<prefix>/bin/aads-edge` →
    /// `<prefix>/firmware-config/health.json`, also `<bindir>/firmware-config/health.json`), then
    /// `./firmware-config/health.json`. Nil when none of them exists.
    public static func defaultPath(
        environment: [String: String] = ProcessInfo.processInfo.environment, executable: String? = nil,
        etc: String = "/etc/aads-edge"
    ) throws -> String? {
        if let env = environment["AADS_CONFIG_DIR"], !env.isEmpty {
            let path = (env as NSString).appendingPathComponent("health.json")
            guard FileManager.default.fileExists(atPath: path) else {
                throw HealthError(.notFound, "no such policy file: \(path) (from AADS_CONFIG_DIR)")
            }
            return path
        }
        for candidate in defaultCandidates(executable: executable, etc: etc)
        where FileManager.default.fileExists(atPath: candidate) {
            return candidate
        }
        return nil
    }

    /// The places `defaultPath` tries after `$AADS_CONFIG_DIR`, in order.
    public static func defaultCandidates(executable: String? = nil, etc: String = "/etc/aads-edge") -> [String] {
        var candidates = [(etc as NSString).appendingPathComponent("health.json")]
        if let exe = executable ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) {
            let bin = (exe as NSString).deletingLastPathComponent
            candidates.append(
                ((bin as NSString).deletingLastPathComponent as NSString)
                    .appendingPathComponent("firmware-config/health.json"))
            candidates.append((bin as NSString).appendingPathComponent("firmware-config/health.json"))
        }
        candidates.append("firmware-config/health.json")
        return candidates
    }

    /// The policy to use: the named file (which must exist), else the first default location that exists,
    /// else the built-in values, stated through `warn` as a last resort.
    public static func resolve(
        path: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
        executable: String? = nil, etc: String = "/etc/aads-edge", warn: (String) -> Void
    ) throws -> HealthPolicy {
        if let path { return try load(path: path) }
        if let found = try defaultPath(environment: environment, executable: executable, etc: etc) {
            return try load(path: found)
        }
        let looked = defaultCandidates(executable: executable, etc: etc).joined(separator: ", ")
        warn("no health.json found (looked in \(looked)); using the built-in thresholds")
        return .defaults
    }
}

/// Errors of the health layer.
public struct HealthError: CodedError, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case notFound = "not_found"
        case badConfig = "bad_config"
        case unreadable
        case noImages = "no_images"
        case noActiveSlot = "no_active_slot"
        case badManifest = "bad_manifest"
    }

    public let kind: Code
    public let message: String
    public var code: String { kind.rawValue }

    public init(_ kind: Code, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// A golden-set manifest that cannot be parsed refuses the bundle; the rest could not run (a missing or
    /// broken policy file or folder, no photos, no model).
    public var failure: FailureKind { kind == .badManifest ? .refused : .couldNotRun }
}

/// What the gate decided, with the reasons.
public struct HealthVerdict: Sendable, Equatable {
    public enum Action: String, Sendable { case pass, warn, rollback }

    public struct Finding: Sendable, Equatable {
        public var check: String
        public var action: Action
        public var detail: String
    }

    public var findings: [Finding]

    /// The strongest action of all findings (`pass` when there are none).
    public var action: Action {
        if findings.contains(where: { $0.action == .rollback }) { return .rollback }
        if findings.contains(where: { $0.action == .warn }) { return .warn }
        return .pass
    }
}

extension HealthPolicy {
    /// Applies the decision matrix to a candidate's measured metrics against a reference (the previous
    /// good slot's measurement on this device, or the manifest's `baseline_metrics`). Reference keys that
    /// are missing are not compared; absolute bounds (AUROC, error rate) always apply.
    public func evaluate(candidate: HealthMetrics, reference: [String: Double], crashFrequency: Double = 0)
        -> HealthVerdict
    {
        var findings: [HealthVerdict.Finding] = []
        func drop(_ key: String, _ value: Double, _ label: String) {
            guard let base = reference[key] else { return }
            if base - value > accuracyDropMax + 1e-12 {
                findings.append(
                    .init(
                        check: key, action: .rollback,
                        detail: "\(label) \(percent(value)) is \(percent(base - value)) below \(percent(base))"))
            }
        }
        drop("crop_routing_accuracy", candidate.cropRoutingAccuracy, "routing accuracy")
        drop("adapter_accuracy", candidate.adapterAccuracy, "adapter accuracy")
        if candidate.oodAuroc < oodAurocMin {
            findings.append(
                .init(
                    check: "ood_auroc", action: .rollback,
                    detail: "OOD AUROC \(fixed(candidate.oodAuroc)) is below \(fixed(oodAurocMin))"))
        }
        if let base = reference["ood_fpr"], candidate.oodFpr - base > fprIncreaseMax + 1e-12 {
            findings.append(
                .init(
                    check: "ood_fpr", action: .rollback,
                    detail: "OOD FPR rose from \(percent(base)) to \(percent(candidate.oodFpr))"))
        }
        if let base = reference["latency_ms"], base > 0, candidate.latencyMs > base * (1 + latencyIncreaseWarn) {
            findings.append(
                .init(
                    check: "latency_ms", action: .warn,
                    detail:
                        "latency \(fixed(candidate.latencyMs)) ms is more than \(percent(latencyIncreaseWarn)) over \(fixed(base)) ms"
                ))
        }
        if let base = reference["memory_per_adapter_mb"], base > 0,
            candidate.memoryPerAdapterMb > base * (1 + memoryIncreaseWarn)
        {
            findings.append(
                .init(
                    check: "memory_per_adapter_mb", action: .warn,
                    detail:
                        "adapter memory \(fixed(candidate.memoryPerAdapterMb)) MB is more than \(percent(memoryIncreaseWarn)) over \(fixed(base)) MB"
                ))
        }
        if candidate.errorRate > errorRateMax {
            findings.append(
                .init(
                    check: "error_rate", action: .rollback,
                    detail: "error rate \(percent(candidate.errorRate)) is above \(percent(errorRateMax))"))
        }
        if crashFrequency > crashFrequencyMax {
            findings.append(
                .init(
                    check: "crash_frequency", action: .rollback,
                    detail: "crash frequency \(percent(crashFrequency)) is above \(percent(crashFrequencyMax))"))
        }
        return HealthVerdict(findings: findings)
    }
}

func percent(_ value: Double) -> String { String(format: "%.2f%%", value * 100) }
func fixed(_ value: Double) -> String { String(format: "%.3f", value) }
