import AADSTestSupport
import Foundation
import Testing

@testable import AADSHealth

/// `HealthCheck.run` on the factory bundle, one test per row of firmware-config/health.json: the golden set is
/// measured through the real pipeline and the run's decision is checked for an input on each side of the row's
/// bound. A relative row is moved across its bound through the reference the run compares with; an absolute row
/// (OOD AUROC, error rate) through the bound itself, placed just above and just below the measured figure.
/// Latency is the one figure that differs from run to run, so its sides lie a factor of ten away. The runs use
/// the factory bundle with a golden set of two photos per crop and four OOD photos, so that each stays quick.
@Suite(.serialized) struct HealthCheckTests {
    /// Where the suite's bundle is made; removed when the test process exits.
    static let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
        "aads-health-check-\(UUID())"
    ).path

    /// The factory bundle (linked, not copied) with a smaller golden/labels.csv.
    static let bundle: Result<String, any Error> = Result {
        let factory = Fixtures.factoryBundle
        let dir = directory
        atexit { try? FileManager.default.removeItem(atPath: HealthCheckTests.directory) }
        let files = FileManager.default
        try files.createDirectory(atPath: dir + "/golden", withIntermediateDirectories: true)
        for name in try files.contentsOfDirectory(atPath: factory) where name != "golden" {
            try files.createSymbolicLink(atPath: dir + "/" + name, withDestinationPath: factory + "/" + name)
        }
        for name in try files.contentsOfDirectory(atPath: factory + "/golden") where name != "labels.csv" {
            try files.createSymbolicLink(
                atPath: dir + "/golden/" + name, withDestinationPath: factory + "/golden/" + name)
        }
        let rows = try String(contentsOfFile: factory + "/golden/labels.csv", encoding: .utf8)
            .split(separator: "\n").map(String.init)
        var kept = [rows[0]]
        var perCrop: [String: Int] = [:]
        for row in rows.dropFirst() {
            let crop = row.split(separator: ",").dropFirst().first.map(String.init) ?? ""
            let limit = crop == "ood" ? 4 : 2
            if perCrop[crop, default: 0] < limit {
                perCrop[crop, default: 0] += 1
                kept.append(row)
            }
        }
        try (kept.joined(separator: "\n") + "\n").write(
            toFile: dir + "/golden/labels.csv", atomically: true, encoding: .utf8)
        return dir
    }

    /// Its golden-set figures, measured once for the suite; every run measures them again.
    static let measurement = Result { try HealthCheck().measure(bundleDirectory: try bundle.get()) }

    /// The policy a device applies.
    let policy: HealthPolicy
    let bundle: String
    let measured: HealthMetrics

    init() throws {
        policy = try HealthPolicy.load(path: Fixtures.healthPolicy)
        bundle = try Self.bundle.get()
        measured = try Self.measurement.get()
    }

    func run(_ policy: HealthPolicy? = nil, reference: [String: Double]) -> HealthReport {
        HealthCheck(policy: policy ?? self.policy).run(bundleDirectory: bundle, reference: reference)
    }

    /// The checks that found something, by action.
    func findings(_ report: HealthReport, _ action: HealthVerdict.Action) -> [String] {
        report.verdict?.findings.filter { $0.action == action }.map(\.check).sorted() ?? []
    }

    /// The figures the deterministic rows compare (everything but latency), as a reference.
    var stable: [String: Double] {
        measured.dictionary.filter { ["crop_routing_accuracy", "adapter_accuracy", "ood_fpr"].contains($0.key) }
    }

    @Test func policyFileIsTheDevicesMatrix() {
        // The rows below move each bound from these values; a change to health.json shows up here first.
        #expect(policy.accuracyDropMax == 0.01)
        #expect(policy.oodAurocMin == 0.90)
        #expect(policy.fprIncreaseMax == 0.01)
        #expect(policy.latencyIncreaseWarn == 0.10)
        #expect(policy.memoryIncreaseWarn == 0.20)
        #expect(policy.errorRateMax == 0.005)
        #expect(policy.crashFrequencyMax == 0.001)
        #expect(policy.checkTimeoutSeconds == 300)
        #expect(policy.probationMinutes == 60)
    }

    @Test func againstItsOwnFiguresTheFactoryBundlePasses() {
        let report = run(reference: stable)
        #expect(report.checks.map(\.name) == ["load", "golden_set"])
        #expect(report.checks.allSatisfy { $0.passed })
        #expect(report.verdict?.action == .pass)
        #expect(report.passed)
    }

    /// accuracy_drop_max: routing and adapter accuracy may fall at most 0.01 below the reference.
    @Test(arguments: ["crop_routing_accuracy", "adapter_accuracy"])
    func accuracyDropMax(key: String) throws {
        let value = try #require(measured.dictionary[key])
        let within = run(reference: [key: value + policy.accuracyDropMax - 0.002])
        #expect(findings(within, .rollback) == [])
        #expect(within.passed)
        let beyond = run(reference: [key: value + policy.accuracyDropMax + 0.002])
        #expect(findings(beyond, .rollback) == [key])
        #expect(beyond.verdict?.action == .rollback)
        #expect(!beyond.passed)
        #expect(beyond.failures.count == 1 && beyond.failures[0].hasPrefix(key + ": "))
    }

    /// ood_auroc_min: an absolute floor (0.90; the factory bundle is well above it).
    @Test func oodAurocMin() {
        #expect(measured.oodAuroc >= policy.oodAurocMin)
        var below = policy
        below.oodAurocMin = measured.oodAuroc - 0.001
        let above = run(below, reference: stable)
        #expect(findings(above, .rollback) == [])
        #expect(above.passed)
        var over = policy
        over.oodAurocMin = measured.oodAuroc + 0.001
        let under = run(over, reference: stable)
        #expect(findings(under, .rollback) == ["ood_auroc"])
        #expect(!under.passed)
    }

    /// fpr_increase_max: the OOD false-positive rate may rise at most 0.01 over the reference.
    @Test func fprIncreaseMax() {
        let within = run(reference: ["ood_fpr": measured.oodFpr - policy.fprIncreaseMax + 0.002])
        #expect(findings(within, .rollback) == [])
        #expect(within.passed)
        let beyond = run(reference: ["ood_fpr": measured.oodFpr - policy.fprIncreaseMax - 0.002])
        #expect(findings(beyond, .rollback) == ["ood_fpr"])
        #expect(!beyond.passed)
    }

    /// latency_increase_warn: more than 10 % slower than the reference warns; the slot is kept.
    @Test func latencyIncreaseWarn() {
        #expect(measured.latencyMs > 0)
        let faster = run(reference: ["latency_ms": measured.latencyMs * 10])
        #expect(findings(faster, .warn) == [])
        #expect(faster.verdict?.action == .pass)
        let slower = run(reference: ["latency_ms": measured.latencyMs / (1 + policy.latencyIncreaseWarn) / 10])
        #expect(findings(slower, .warn) == ["latency_ms"])
        #expect(slower.verdict?.action == .warn)
        #expect(slower.passed)
        #expect(slower.warnings.count == 1 && slower.failures.isEmpty)
    }

    /// memory_increase_warn: more than 20 % more adapter memory than the reference warns; the slot is kept.
    @Test func memoryIncreaseWarn() {
        #expect(measured.memoryPerAdapterMb > 0)
        let bound = measured.memoryPerAdapterMb / (1 + policy.memoryIncreaseWarn)
        let within = run(reference: ["memory_per_adapter_mb": bound * 1.01])
        #expect(findings(within, .warn) == [])
        #expect(within.verdict?.action == .pass)
        let beyond = run(reference: ["memory_per_adapter_mb": bound * 0.99])
        #expect(findings(beyond, .warn) == ["memory_per_adapter_mb"])
        #expect(beyond.verdict?.action == .warn)
        #expect(beyond.passed)
    }

    /// error_rate_max: an absolute ceiling (0.005) on golden images the pipeline fails on.
    @Test func errorRateMax() {
        #expect(measured.errorRate <= policy.errorRateMax)
        var above = policy
        above.errorRateMax = measured.errorRate + 0.001
        let within = run(above, reference: stable)
        #expect(findings(within, .rollback) == [])
        #expect(within.passed)
        var below = policy
        below.errorRateMax = measured.errorRate - 0.001
        let beyond = run(below, reference: stable)
        #expect(findings(beyond, .rollback) == ["error_rate"])
        #expect(!beyond.passed)
    }

    /// check_timeout_seconds: a check that takes longer fails the run (here the model load).
    @Test func checkTimeoutSeconds() {
        let inTime = run(reference: stable)
        #expect(inTime.checks.first { $0.name == "load" }?.passed == true)
        var short = policy
        short.checkTimeoutSeconds = 0.000_001
        let late = run(short, reference: stable)
        #expect(late.checks.map(\.name) == ["load"])
        #expect(late.checks.first?.passed == false)
        #expect(late.checks.first?.detail.hasPrefix("timed out") == true)
        #expect(late.verdict == nil)
        #expect(!late.passed)
    }

    /// crash_frequency_max: decided during probation (the slot layer counts unclean exits), not by the health
    /// run, which has seen no crashes; the matrix rolls back only above the bound.
    @Test func crashFrequencyMax() {
        var strict = policy
        strict.crashFrequencyMax = 0
        let report = run(strict, reference: stable)
        #expect(findings(report, .rollback) == [])
        #expect(report.passed)
        let atBound = policy.evaluate(candidate: measured, reference: stable, crashFrequency: policy.crashFrequencyMax)
        #expect(atBound.action == .pass)
        let above = policy.evaluate(
            candidate: measured, reference: stable, crashFrequency: policy.crashFrequencyMax * 1.5)
        #expect(above.findings.map(\.check) == ["crash_frequency"])
        #expect(above.action == .rollback)
    }

    /// probation_minutes: how long probation lasts once the health run has passed; the run itself does not
    /// read it, so its decision is the same on either side.
    @Test func probationMinutes() {
        for minutes in [0.0, policy.probationMinutes * 10] {
            var changed = policy
            changed.probationMinutes = minutes
            let report = run(changed, reference: stable)
            #expect(report.verdict?.findings == [])
            #expect(report.passed)
        }
    }
}
