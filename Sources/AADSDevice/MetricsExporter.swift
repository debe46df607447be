import AADSCore
import AADSDiagnosis
import AADSImage
import CoreMetrics
import Foundation

import class Prometheus.PrometheusCollectorRegistry
import struct Prometheus.PrometheusMetricsFactory

#if canImport(Glibc)
    import Glibc
#endif

/// Resident memory of this process, bytes; nil where unavailable.
public func residentMemoryBytes() -> Int64? {
    ProcessMemory.residentBytes().map(Int64.init)
}

/// The service's metrics, kept in a private Prometheus registry through the swift-metrics API and written
/// atomically to a node_exporter textfile-collector file.
public final class MetricsExporter: @unchecked Sendable {
    public let registry: PrometheusCollectorRegistry
    /// Where `writeFile()` writes; nil keeps the metrics in memory only.
    public let path: String?
    private let factory: PrometheusMetricsFactory
    private let lock = NSLock()

    private let latency: [String: CoreMetrics.Timer]
    private var decisions: [Decision: CoreMetrics.Counter] = [:]
    private var errors: [String: CoreMetrics.Counter] = [:]
    private let processed: CoreMetrics.Counter
    private let dropped: CoreMetrics.Counter
    private let duplicateContent: CoreMetrics.Counter
    private let queueDepth: CoreMetrics.Gauge
    private let oodRate: CoreMetrics.Gauge
    private let rss: CoreMetrics.Gauge
    private let healthPass: CoreMetrics.Gauge
    private let healthTime: CoreMetrics.Gauge
    private let healthAccuracy: CoreMetrics.Gauge
    private let accuracyBaseline: CoreMetrics.Gauge
    private let latencyBaseline: CoreMetrics.Gauge
    private var activeSlot: (key: String, gauge: CoreMetrics.Gauge)?
    private var alertActive: [String: CoreMetrics.Gauge] = [:]
    private var alertsRaised: [String: CoreMetrics.Counter] = [:]
    private let abSamples: CoreMetrics.Counter
    private let abAgreement: CoreMetrics.Gauge
    private let redLatched: CoreMetrics.Gauge
    private var oodWindow: [Bool] = []
    private var oodCursor = 0
    private let oodWindowSize: Int

    /// Error codes a live image can end with; each series is exported from start at 0, so `rate()` and
    /// alert rules work before the first error.
    public static let knownErrorCodes =
        ImageError.Code.allCases.map(\.rawValue) + [
            "bad_input", "invalid_name", "not_regular_file", "file_vanished", "unreadable_image", "capture_failed",
            "capture_timeout",
        ]

    /// The alert rules, each exported from start (`aads_alert_active` 0, `aads_alerts_raised_total` 0).
    public static let knownAlertRules = [
        AlertEngine.latencyRule, AlertEngine.errorRule, AlertEngine.memoryRule, AlertEngine.accuracyRule,
        AlertEngine.stateRecoveredRule,
    ]

    /// `# HELP` text of every family.
    public static let help: [String: String] = [
        "aads_diagnosis_latency_seconds": "Time per diagnosis stage (decode, backbone, adapter, total).",
        "aads_decisions_total": "Diagnoses by decision.",
        "aads_images_processed_total": "Spool images processed (one journal row each).",
        "aads_images_dropped_total": "Spool images dropped because the queue was full.",
        "aads_images_duplicate_content_total": "Spool images whose bytes repeat an earlier image.",
        "aads_errors_total": "Images that ended in an error, by error code.",
        "aads_queue_depth": "Images waiting in the spool.",
        "aads_ood_ratio": "Share of out-of-distribution or unknown-crop decisions over the rolling window.",
        "aads_process_resident_memory_bytes": "Resident memory of the service.",
        "aads_last_health_check_passed": "1 if the last health check passed, 0 if it failed, -1 before any.",
        "aads_last_health_check_timestamp_seconds": "Unix time of the last health check (0 before any).",
        "aads_last_health_check_accuracy_ratio": "Adapter accuracy on the golden set in the last health check.",
        "aads_accuracy_baseline_ratio": "Golden-set adapter accuracy of the serving slot measured on this device.",
        "aads_latency_baseline_seconds": "Mean diagnosis latency the latency alert compares with (0 until known).",
        "aads_active_slot_info": "The serving slot and model version (value 1).",
        "aads_alert_active": "1 while an alert rule is firing.",
        "aads_alerts_raised_total": "Times an alert rule was raised.",
        "aads_ab_samples_total": "Images shadow-run on both versions during probation.",
        "aads_ab_agreement_ratio": "Share of A/B samples on which both versions agree.",
        "aads_red_latched": "1 while the red LED is latched awaiting acknowledgement.",
    ]

    /// Latency buckets in milliseconds (the histogram is exported in seconds).
    public static let latencyBucketsMs: [Int] = [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000]

    public init(path: String?, oodWindow: Int = 200) {
        self.path = path.flatMap { $0.isEmpty ? nil : $0 }
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.latencyBucketsMs.map { .milliseconds($0) }
        self.factory = factory
        oodWindowSize = max(1, oodWindow)
        latency = Dictionary(
            uniqueKeysWithValues: ["decode", "backbone", "adapter", "total"].map {
                (
                    $0,
                    CoreMetrics.Timer(
                        label: "aads_diagnosis_latency_seconds", dimensions: [("stage", $0)], factory: factory)
                )
            })
        for kind in Decision.allCases {
            decisions[kind] = CoreMetrics.Counter(
                label: "aads_decisions_total", dimensions: [("decision", kind.rawValue)], factory: factory)
        }
        processed = CoreMetrics.Counter(label: "aads_images_processed_total", factory: factory)
        dropped = CoreMetrics.Counter(label: "aads_images_dropped_total", factory: factory)
        duplicateContent = CoreMetrics.Counter(label: "aads_images_duplicate_content_total", factory: factory)
        queueDepth = CoreMetrics.Gauge(label: "aads_queue_depth", factory: factory)
        oodRate = CoreMetrics.Gauge(label: "aads_ood_ratio", factory: factory)
        rss = CoreMetrics.Gauge(label: "aads_process_resident_memory_bytes", factory: factory)
        healthPass = CoreMetrics.Gauge(label: "aads_last_health_check_passed", factory: factory)
        healthTime = CoreMetrics.Gauge(label: "aads_last_health_check_timestamp_seconds", factory: factory)
        healthAccuracy = CoreMetrics.Gauge(label: "aads_last_health_check_accuracy_ratio", factory: factory)
        accuracyBaseline = CoreMetrics.Gauge(label: "aads_accuracy_baseline_ratio", factory: factory)
        latencyBaseline = CoreMetrics.Gauge(label: "aads_latency_baseline_seconds", factory: factory)
        abSamples = CoreMetrics.Counter(label: "aads_ab_samples_total", factory: factory)
        abAgreement = CoreMetrics.Gauge(label: "aads_ab_agreement_ratio", factory: factory)
        redLatched = CoreMetrics.Gauge(label: "aads_red_latched", factory: factory)
        healthPass.record(-1)
        healthTime.record(0)
        healthAccuracy.record(0)
        accuracyBaseline.record(0)
        latencyBaseline.record(0)
        abAgreement.record(0)
        for code in Self.knownErrorCodes {
            errors[code] = CoreMetrics.Counter(
                label: "aads_errors_total", dimensions: [("code", code)], factory: factory)
        }
        for rule in Self.knownAlertRules {
            alertActive[rule] = CoreMetrics.Gauge(
                label: "aads_alert_active", dimensions: [("rule", rule)], factory: factory)
            alertActive[rule]?.record(0)
            alertsRaised[rule] = CoreMetrics.Counter(
                label: "aads_alerts_raised_total", dimensions: [("rule", rule)], factory: factory)
        }
        queueDepth.record(0)
        oodRate.record(0)
        redLatched.record(0)
    }

    /// Counts one diagnosis: latency per stage, decision, error code, rolling OOD rate.
    public func record(_ record: Diagnosis) {
        lock.lock()
        defer { lock.unlock() }
        processed.increment()
        decisions[record.decision]?.increment()
        let l = record.latency
        for (stage, ms) in [("decode", l.decode), ("backbone", l.backbone), ("adapter", l.adapter), ("total", l.total)]
        {
            if ms > 0 || stage == "total" { latency[stage]?.recordNanoseconds(Int64(max(0, ms) * 1e6)) }
        }
        if let error = record.error {
            let code = Self.sanitizeLabel(error.code)
            if errors[code] == nil {
                errors[code] = CoreMetrics.Counter(
                    label: "aads_errors_total", dimensions: [("code", code)], factory: factory)
            }
            errors[code]?.increment()
        }
        let ood = record.isOutOfDistribution
        if oodWindow.count < oodWindowSize {
            oodWindow.append(ood)
        } else {
            oodWindow[oodCursor] = ood
            oodCursor = (oodCursor + 1) % oodWindowSize
        }
        oodRate.record(Double(oodWindow.filter { $0 }.count) / Double(oodWindow.count))
    }

    /// Counts an error that produced no diagnosis record (e.g. an unreadable spool file).
    public func recordError(code: String) {
        lock.lock()
        defer { lock.unlock() }
        let code = Self.sanitizeLabel(code)
        if errors[code] == nil {
            errors[code] = CoreMetrics.Counter(
                label: "aads_errors_total", dimensions: [("code", code)], factory: factory)
        }
        errors[code]?.increment()
    }

    public func recordDropped(_ count: Int = 1) { dropped.increment(by: Int64(count)) }

    /// Counts a spool file whose bytes repeat an earlier image's (it has its own row, marked `duplicate_of`).
    public func recordDuplicateContent() { duplicateContent.increment() }

    public func setQueueDepth(_ depth: Int) { queueDepth.record(Int64(depth)) }

    public func setResidentMemory(_ bytes: Int64) { rss.record(bytes) }

    public func setRedLatched(_ latched: Bool) { redLatched.record(latched ? 1 : 0) }

    /// `aads_active_slot_info{slot, version} 1`; the previous series is removed.
    public func setActiveSlot(slot: String, version: String) {
        lock.lock()
        defer { lock.unlock() }
        let key = slot + "\u{0}" + version
        guard activeSlot?.key != key else { return }
        activeSlot?.gauge.destroy()
        let gauge = CoreMetrics.Gauge(
            label: "aads_active_slot_info",
            dimensions: [("slot", Self.sanitizeLabel(slot)), ("version", Self.sanitizeLabel(version))], factory: factory
        )
        gauge.record(1)
        activeSlot = (key, gauge)
    }

    public func recordHealthCheck(passed: Bool, at date: Date, accuracy: Double? = nil) {
        healthPass.record(passed ? 1 : 0)
        healthTime.record(date.timeIntervalSince1970)
        if let accuracy { healthAccuracy.record(accuracy) }
    }

    /// The figures the alerts compare with (nil: not known yet, exported as 0).
    public func setBaselines(latencyMs: Double?, accuracy: Double?) {
        latencyBaseline.record((latencyMs ?? 0) / 1000)
        accuracyBaseline.record(accuracy ?? 0)
    }

    /// `aads_alert_active{rule}` 1/0, and `aads_alerts_raised_total{rule}` on each raise.
    public func setAlert(rule: String, active: Bool, raised: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if alertActive[rule] == nil {
            alertActive[rule] = CoreMetrics.Gauge(
                label: "aads_alert_active", dimensions: [("rule", rule)], factory: factory)
            alertsRaised[rule] = CoreMetrics.Counter(
                label: "aads_alerts_raised_total", dimensions: [("rule", rule)], factory: factory)
        }
        alertActive[rule]?.record(active ? 1 : 0)
        if raised { alertsRaised[rule]?.increment() }
    }

    public func recordABSample(agreementRate: Double) {
        abSamples.increment()
        abAgreement.record(agreementRate)
    }

    /// The Prometheus text exposition of every metric, each family with its `# HELP` line.
    public func render() -> String {
        var out = ""
        for line in registry.emitToString().split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# TYPE ") {
                let name = line.split(separator: " ")[2]
                if let text = Self.help[String(name)] { out += "# HELP \(name) \(text)\n" }
            }
            out += line + "\n"
        }
        return out.hasSuffix("\n\n") ? String(out.dropLast()) : out
    }

    /// Writes the text atomically (temp, fsync, rename) so node_exporter never reads half a file.
    public func writeFile() throws {
        guard let path else { return }
        if let rssBytes = residentMemoryBytes() { setResidentMemory(rssBytes) }
        try AtomicFile.write(Data(render().utf8), to: path)
    }

    /// Prometheus label values may hold anything, but keep them printable and short.
    static func sanitizeLabel(_ value: String) -> String {
        String(value.prefix(64).map { $0.isLetter || $0.isNumber || "._-+".contains($0) ? $0 : "_" })
    }
}
