import AADSDiagnosis
import AADSTestSupport
import Foundation
import Testing

@testable import AADSHealth

@Suite struct DecisionMatrixTests {
    let reference: [String: Double] = [
        "crop_routing_accuracy": 0.99, "adapter_accuracy": 0.96, "ood_auroc": 0.95, "ood_fpr": 0.03,
        "latency_ms": 20, "memory_per_adapter_mb": 1.0,
    ]

    func healthy() -> HealthMetrics {
        HealthMetrics(
            cropRoutingAccuracy: 0.99, adapterAccuracy: 0.955, oodAuroc: 0.94, oodFpr: 0.035, latencyMs: 21,
            memoryPerAdapterMb: 1.1, errorRate: 0)
    }

    @Test func withinBoundsPasses() {
        #expect(HealthPolicy.defaults.evaluate(candidate: healthy(), reference: reference).action == .pass)
    }

    @Test func eachRollbackRowTriggers() {
        let policy = HealthPolicy.defaults
        var m = healthy()
        m.adapterAccuracy = 0.945  // 1.5 points below
        #expect(policy.evaluate(candidate: m, reference: reference).findings.map(\.check) == ["adapter_accuracy"])
        m = healthy()
        m.oodAuroc = 0.89
        #expect(policy.evaluate(candidate: m, reference: reference).action == .rollback)
        m = healthy()
        m.oodFpr = 0.045  // +1.5 points
        #expect(policy.evaluate(candidate: m, reference: reference).findings.map(\.check) == ["ood_fpr"])
        m = healthy()
        m.errorRate = 0.006
        #expect(policy.evaluate(candidate: m, reference: reference).action == .rollback)
        #expect(policy.evaluate(candidate: healthy(), reference: reference, crashFrequency: 0.002).action == .rollback)
    }

    @Test func latencyAndMemoryOnlyWarn() {
        var m = healthy()
        m.latencyMs = 22.5
        m.memoryPerAdapterMb = 1.3
        let verdict = HealthPolicy.defaults.evaluate(candidate: m, reference: reference)
        #expect(verdict.action == .warn)
        #expect(Set(verdict.findings.map(\.check)) == ["latency_ms", "memory_per_adapter_mb"])
    }

    @Test func policyFileOverridesDefaultsAndRejectsGarbage() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("aads-health-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(#"{"ood_auroc_min": 0.8, "probation_minutes": 5}"#.utf8).write(
            to: URL(fileURLWithPath: dir + "/h.json"))
        let policy = try HealthPolicy.load(path: dir + "/h.json")
        #expect(policy.oodAurocMin == 0.8)
        #expect(policy.probationMinutes == 5)
        #expect(policy.accuracyDropMax == 0.01)
        try Data(#"{"ood_auroc_min": "high"}"#.utf8).write(to: URL(fileURLWithPath: dir + "/bad.json"))
        #expect(throws: HealthError.self) { try HealthPolicy.load(path: dir + "/bad.json") }
    }
}

@Suite struct RankStatisticsTests {
    struct Case: Decodable {
        let scores: [Double]
        let positives: [Bool]
        let auroc: Double
        let p50: Double
        let p95: Double
    }

    @Test func aurocAndQuantilesMatchScipyAndNumpy() throws {
        let path = Fixtures.url("health/rank_statistics.json")
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: path))
        #expect(cases.count >= 3)
        for c in cases {
            let auroc = try #require(RankStatistics.auroc(scores: c.scores, positives: c.positives))
            #expect(abs(auroc - c.auroc) < 1e-12)
            #expect(abs(RankStatistics.quantile(c.scores, 0.5) - c.p50) < 1e-9)
            #expect(abs(RankStatistics.quantile(c.scores, 0.95) - c.p95) < 1e-9)
        }
        #expect(RankStatistics.auroc(scores: [1, 2], positives: [true, true]) == nil)
    }
}

/// Which `health.json` a command uses: a named file must exist; the default is found in fixed places,
/// not relative to the working directory alone, and the built-in values are a stated last resort.
@Suite struct PolicyLocationTests {
    let dir: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("aads-policy-\(UUID())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    func write(_ text: String, to relative: String) throws {
        let path = dir + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    @Test func aNamedFileThatIsMissingIsAnError() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try #require(throws: HealthError.self) {
            try HealthPolicy.resolve(path: dir + "/no-such.json", environment: [:], warn: { _ in })
        }
        #expect(error.code == "not_found")
        #expect(error.message.contains(dir + "/no-such.json"))
    }

    @Test func theDefaultIsFoundInEtcThenNextToTheExecutable() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try write(#"{"ood_auroc_min": 0.7}"#, to: "prefix/firmware-config/health.json")
        let exe = dir + "/prefix/bin/aads-edge"
        var warnings: [String] = []
        var policy = try HealthPolicy.resolve(
            path: nil, environment: [:], executable: exe, etc: dir + "/etc", warn: { warnings.append($0) })
        #expect(policy.oodAurocMin == 0.7)
        try write(#"{"ood_auroc_min": 0.6}"#, to: "etc/health.json")
        policy = try HealthPolicy.resolve(
            path: nil, environment: [:], executable: exe, etc: dir + "/etc", warn: { warnings.append($0) })
        #expect(policy.oodAurocMin == 0.6)
        #expect(warnings.isEmpty)
    }

    @Test func aConfigDirectoryWithoutAPolicyIsAnError() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: HealthError.self) {
            try HealthPolicy.resolve(path: nil, environment: ["AADS_CONFIG_DIR": dir], warn: { _ in })
        }
    }
}
