import AADSCore
import AADSDiagnosis
import AADSSlots
import Foundation

/// One check of a health run.
public struct CheckResult: Sendable {
    public var name: String
    public var passed: Bool
    public var detail: String
    public var durationMs: Double
}

/// Everything a health run found; `passed` is the gate's answer.
public struct HealthReport: Sendable {
    public var bundleDirectory: String
    public var modelVersion: String?
    public var checks: [CheckResult] = []
    public var metrics: HealthMetrics?
    public var verdict: HealthVerdict?

    public var passed: Bool {
        checks.allSatisfy(\.passed) && verdict.map { $0.action != .rollback } ?? false
    }

    /// The rows a failing gate journals.
    public var failures: [String] {
        checks.filter { !$0.passed }.map { "\($0.name): \($0.detail)" }
            + (verdict?.findings.filter { $0.action == .rollback }.map { "\($0.check): \($0.detail)" } ?? [])
    }

    public var warnings: [String] {
        verdict?.findings.filter { $0.action == .warn }.map { "\($0.check): \($0.detail)" } ?? []
    }

    public var jsonObject: [String: Any] {
        var object: [String: Any] = [
            "bundle": bundleDirectory, "passed": passed,
            "checks": checks.map {
                ["name": $0.name, "passed": $0.passed, "detail": $0.detail, "ms": JSONLine.rounded($0.durationMs)]
                    as [String: Any]
            },
            "failures": failures, "warnings": warnings,
        ]
        if let modelVersion { object["model_version"] = modelVersion }
        if let metrics { object["metrics"] = metrics.dictionary.mapValues { JSONLine.rounded($0, 4) } }
        return object
    }
}

/// Runs a bundle's health checks: file integrity (for slots), model load, and the golden set through the
/// real pipeline, then the decision matrix against a reference.
public struct HealthCheck: Sendable {
    public var policy: HealthPolicy
    public var threads: Int

    public init(policy: HealthPolicy = .defaults, threads: Int = 1) {
        self.policy = policy
        self.threads = threads
    }

    /// Reads `golden/labels.csv`-style rows: `path,crop,class` with a header line; paths relative to the bundle.
    public static func goldenItems(bundleDirectory: String, labels: String) throws -> [GoldenItem] {
        let path = bundleDirectory + "/" + labels
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DiagnosisError(.missingFile, "golden set labels \(labels) missing")
        }
        var items: [GoldenItem] = []
        for (number, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            if number == 0 && fields.first == "path" { continue }
            guard fields.count == 3, !fields[0].isEmpty, !fields[0].hasPrefix("/"), !fields[0].contains("..") else {
                throw DiagnosisError(.badManifest, "\(labels) line \(number + 1): expected path,crop,class")
            }
            items.append(GoldenItem(path: bundleDirectory + "/" + fields[0], crop: fields[1], label: fields[2]))
        }
        guard !items.isEmpty else { throw DiagnosisError(.badManifest, "\(labels) lists no images") }
        return items
    }

    /// Runs `body` on its own thread, giving up after `seconds` (a hung check fails instead of hanging the gate).
    static func withTimeout<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () throws -> T) -> Result<
        T, any Error
    >? {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            box.result = Result { try body() }
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        return box.result
    }

    /// Measures the golden set only (used to write a bundle's baseline metrics).
    public func measure(bundleDirectory: String) throws -> HealthMetrics {
        let pipeline = try DiagnosisPipeline(
            bundleDirectory: bundleDirectory, options: PipelineOptions(threads: threads))
        return try Self.measure(pipeline: pipeline)
    }

    /// Measures a loaded pipeline's golden set (the service's timed re-checks use the model it serves).
    public static func measure(pipeline: DiagnosisPipeline) throws -> HealthMetrics {
        guard let golden = pipeline.manifest.goldenSet else {
            throw DiagnosisError(.badManifest, "the bundle has no golden_set")
        }
        let items = try goldenItems(bundleDirectory: pipeline.bundleDirectory, labels: golden.labels)
        var metrics = Evaluation.run(pipeline: pipeline, items: items.map(\.evaluationItem)).healthMetrics
        let adapterBytes = pipeline.residentAdapterBytes.values
        metrics.memoryPerAdapterMb = adapterBytes.isEmpty ? 0 : Double(adapterBytes.max() ?? 0) / 1_048_576
        metrics.peakRssMb = Double(ProcessMemory.peakResidentBytes() ?? 0) / 1_048_576
        return metrics
    }

    /// The full health run. `slot` enables the integrity check; `reference` is what the matrix compares
    /// against (nil: the manifest's `baseline_metrics`).
    public func run(
        bundleDirectory: String, store: SlotStore? = nil, slot: SlotID? = nil, reference: [String: Double]? = nil
    )
        -> HealthReport
    {
        var report = HealthReport(bundleDirectory: bundleDirectory)
        let timeout = policy.checkTimeoutSeconds
        if let store, let slot {
            var clock = Stopwatch()
            do {
                try store.checkIntegrity(slot, level: .deep)
                report.checks.append(
                    CheckResult(
                        name: "integrity", passed: true, detail: "every file matches its hash", durationMs: clock.lap())
                )
            } catch {
                report.checks.append(
                    CheckResult(
                        name: "integrity", passed: false, detail: AnyCodedError(error).message, durationMs: clock.lap())
                )
                return report
            }
        }
        let threads = self.threads
        var clock = Stopwatch()
        let loaded = Self.withTimeout(timeout) {
            UncheckedBox(
                try DiagnosisPipeline(bundleDirectory: bundleDirectory, options: PipelineOptions(threads: threads)))
        }
        let pipeline: DiagnosisPipeline
        switch loaded {
        case .none:
            report.checks.append(
                CheckResult(
                    name: "load", passed: false, detail: "timed out after \(Int(timeout)) s", durationMs: clock.lap()))
            return report
        case .failure(let error)?:
            report.checks.append(
                CheckResult(name: "load", passed: false, detail: AnyCodedError(error).message, durationMs: clock.lap()))
            return report
        case .success(let box)?:
            pipeline = box.value
            report.modelVersion = pipeline.manifest.modelVersion
            report.checks.append(
                CheckResult(name: "load", passed: true, detail: "backbone and router loaded", durationMs: clock.lap()))
        }
        let shared = UncheckedBox(pipeline)
        let measured = Self.withTimeout(timeout) { try Self.measure(pipeline: shared.value) }
        switch measured {
        case .none:
            report.checks.append(
                CheckResult(
                    name: "golden_set", passed: false, detail: "timed out after \(Int(timeout)) s",
                    durationMs: clock.lap()))
        case .failure(let error)?:
            report.checks.append(
                CheckResult(
                    name: "golden_set", passed: false, detail: AnyCodedError(error).message, durationMs: clock.lap()))
        case .success(let metrics)?:
            report.metrics = metrics
            report.checks.append(
                CheckResult(
                    name: "golden_set", passed: true, detail: "\(metrics.images) images", durationMs: clock.lap()))
            let baseline = reference ?? pipeline.manifest.baselineMetrics ?? [:]
            report.verdict = policy.evaluate(candidate: metrics, reference: baseline)
        }
        return report
    }
}

/// Carries a result from a worker thread to a waiter; a semaphore orders the write before the read.
final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}

/// Moves a non-Sendable value across a thread hop whose ordering a semaphore guarantees.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

extension HealthMetrics {
    /// As slot metrics (stored in the slot state and compared with the next candidate).
    public var slotMetrics: SlotMetrics { dictionary.mapValues { .number($0) } }

    /// Numbers of a slot's stored metrics.
    public static func numbers(_ metrics: SlotMetrics) -> [String: Double] {
        metrics.compactMapValues { if case .number(let value) = $0 { value } else { nil } }
    }
}

/// The slot layer's health gate backed by `HealthCheck`: the candidate is compared with the fallback's
/// metrics measured on this device, or with its own manifest's `baseline_metrics` when there are none.
public struct GoldenSetGate: SlotHealthGate {
    public let check: HealthCheck

    public init(check: HealthCheck) {
        self.check = check
    }

    /// Compares the candidate with the fallback's figures measured on this device. When none were recorded
    /// (a factory-installed fallback), the fallback's golden set is measured here first; only when that
    /// fails does the comparison use the bundle's `baseline_metrics`, measured where it was built, with a
    /// warning saying so.
    public func evaluate(_ candidate: GateCandidate) -> GateVerdict {
        var baseline = HealthMetrics.numbers(candidate.baseline)
        var measured: SlotMetrics = [:]
        var notes: [String] = []
        if baseline.isEmpty, let fallback = candidate.fallbackBundlePath {
            do {
                let figures = try check.measure(bundleDirectory: fallback)
                measured = figures.slotMetrics
                baseline = figures.dictionary
            } catch {
                notes.append(
                    "reference: the bundle's baseline_metrics (measured where it was built): the fallback could not "
                        + "be measured on this device (\(AnyCodedError(error).message))")
            }
        }
        // A slot's bundle directory is `<root>/<slot>`: its store is the parent directory.
        let store = SlotStore(root: (candidate.bundlePath as NSString).deletingLastPathComponent)
        let report = check.run(
            bundleDirectory: candidate.bundlePath, store: store, slot: candidate.slot,
            reference: baseline.isEmpty ? nil : baseline)
        return GateVerdict(
            passed: report.passed, metrics: report.metrics?.slotMetrics ?? [:], failures: report.failures,
            warnings: report.warnings + notes, fallbackMetrics: measured)
    }
}
