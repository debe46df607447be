import AADSCore
import AADSDiagnosis
import AADSTestSupport
import Foundation
import Testing

@testable import AADSDevice

@Suite struct AlertTests {
    var config: DeviceConfig.Alerts {
        var c = DeviceConfig.defaults.alerts
        c.window = 10
        c.memoryWindowSeconds = 60
        return c
    }

    @Test func latencyAboveBaselineByMoreThanTenPercent() {
        let engine = AlertEngine(config: config, latencyBaselineMs: 40)
        var raised: [AlertTransition] = []
        for _ in 0..<10 { raised += engine.observe(latencyMs: 44, isError: false) }  // exactly +10%: no alert
        #expect(raised.isEmpty)
        for _ in 0..<10 { raised += engine.observe(latencyMs: 44.5, isError: false) }
        #expect(raised.map(\.alert.rule) == ["latency_increase"])
        #expect(raised.first?.raised == true)
        #expect(raised.first?.alert.severity == .warning)
        #expect(abs((raised.first?.alert.threshold ?? 0) - 44) < 1e-9)
        // Raised once, not on every image.
        #expect(engine.observe(latencyMs: 50, isError: false).isEmpty)
        var cleared: [AlertTransition] = []
        for _ in 0..<10 { cleared += engine.observe(latencyMs: 40, isError: false) }
        #expect(cleared.map(\.raised) == [false])
    }

    @Test func baselineFromFirstWindowWhenUnknown() {
        let engine = AlertEngine(config: config)
        for _ in 0..<10 { _ = engine.observe(latencyMs: 20, isError: false) }
        #expect(engine.latencyBaselineMs == 20)
        var t: [AlertTransition] = []
        for _ in 0..<10 { t += engine.observe(latencyMs: 23, isError: false) }
        #expect(t.map(\.alert.rule) == ["latency_increase"])
    }

    /// Images timed while the next one was decoded beside them count for the error rate, not for the latency.
    @Test func untimedImagesCountForErrorsOnly() {
        let engine = AlertEngine(config: config, latencyBaselineMs: 40)
        var t: [AlertTransition] = []
        for i in 0..<10 { t += engine.observe(latencyMs: i % 2 == 0 ? 40 : nil, isError: false) }
        #expect(t.isEmpty)
        // Slow untimed images raise nothing; the timed ones alone are above the baseline.
        for i in 0..<10 { t += engine.observe(latencyMs: i % 2 == 0 ? 46 : nil, isError: false) }
        #expect(t.map(\.alert.rule) == ["latency_increase"])
        // The mean of the timed images only (40 and 46 ms), never pulled down or up by the untimed ones.
        let mean = t.first?.alert.value ?? 0
        #expect(mean > 44 && mean <= 46)
        let errors = engine.observe(latencyMs: nil, isError: true)
        #expect(errors.map(\.alert.rule) == ["error_rate"])
    }

    @Test func errorRateAboveOnePercentIsCritical() {
        var c = config
        c.window = 200
        let engine = AlertEngine(config: c, latencyBaselineMs: 30)
        var t: [AlertTransition] = []
        // 2 errors in 200 = exactly 1%: fine. A third makes 1.5%.
        for i in 0..<200 { t += engine.observe(latencyMs: 30, isError: i == 10 || i == 100) }
        #expect(t.isEmpty)
        t += engine.observe(latencyMs: 30, isError: true)
        #expect(t.map(\.alert.rule) == ["error_rate"])
        #expect(t.first?.alert.severity == .critical)
    }

    @Test func memoryGrowthAgainstThePreviousWindow() {
        let engine = AlertEngine(config: config)
        var t: [AlertTransition] = []
        // Window 1 closes at 60.
        for s in stride(from: 0.0, through: 60, by: 10) { t += engine.observeMemory(bytes: 100e6, at: s) }
        for s in stride(from: 70.0, through: 120, by: 10) { t += engine.observeMemory(bytes: 118e6, at: s) }  // +18%
        #expect(t.isEmpty)
        for s in stride(from: 130.0, through: 180, by: 10) { t += engine.observeMemory(bytes: 145e6, at: s) }  // +22.9%
        #expect(t.map(\.alert.rule) == ["memory_growth"])
        for s in stride(from: 190.0, through: 240, by: 10) { t += engine.observeMemory(bytes: 146e6, at: s) }
        #expect(t.last?.raised == false)
    }

    @Test func accuracyDropFromHealthChecks() {
        let engine = AlertEngine(config: config)
        #expect(engine.observeHealth(accuracy: 0.93, baseline: 0.96).isEmpty)
        let t = engine.observeHealth(accuracy: 0.90, baseline: 0.96)
        #expect(t.map(\.alert.rule) == ["accuracy_drop"])
        #expect(t.first?.alert.severity == .critical)
        #expect(engine.observeHealth(accuracy: 0.95, baseline: 0.96).map(\.raised) == [false])
    }
}

@Suite struct ABTests {
    @Test func samplerIsDeterministicAndHitsTheFraction() {
        let sampler = ABSampler(fraction: 0.1)
        var rng = SplitMix64(seed: 3)
        var chosen = 0
        for _ in 0..<20_000 {
            let sha = String(format: "%016llx%016llx%016llx%016llx", rng.next(), rng.next(), rng.next(), rng.next())
            let pick = sampler.selects(sha256Hex: sha)
            #expect(pick == sampler.selects(sha256Hex: sha))
            if pick { chosen += 1 }
        }
        // Binomial(20000, 0.1): sd ≈ 42; ±5 sd.
        #expect(abs(chosen - 2000) < 212)
        #expect(ABSampler.unitValue(sha256Hex: "0000000000000000" + String(repeating: "f", count: 48)) == 0)
        #expect(ABSampler.unitValue(sha256Hex: "8000000000000000") == 0.5)
        #expect(!ABSampler(fraction: 0).selects(sha256Hex: String(repeating: "0", count: 64)))
        #expect(ABSampler(fraction: 1).selects(sha256Hex: String(repeating: "f", count: 64)))
    }

    func samples(candidateLatency: Double, candidateOOD: Int, n: Int = 100) -> [ABSample] {
        var list: [ABSample] = []
        for i in 0..<n {
            let baselineOOD = i < 5
            let candidateIsOOD = i < candidateOOD
            let candidateLabel: String =
                candidateIsOOD ? "ood" : (i % 10 == 9 ? "tomato/late_blight" : "tomato/healthy")
            list.append(
                ABSample(
                    imageSHA256: String(format: "%064x", i), baselineVersion: "1.0.0", candidateVersion: "1.1.0",
                    baselineDecision: baselineOOD ? .ood : .diagnosis,
                    candidateDecision: candidateIsOOD ? .ood : .diagnosis,
                    baselineLabel: baselineOOD ? "ood" : "tomato/healthy", candidateLabel: candidateLabel,
                    baselineLatencyMs: 30 + Double(i % 7), candidateLatencyMs: candidateLatency + Double(i % 5)))
        }
        return list
    }

    @Test func comparisonFigures() throws {
        let c = ABComparison(samples: samples(candidateLatency: 31, candidateOOD: 5))
        #expect(c.samples == 100)
        #expect(c.baselineOODRate == 0.05)
        #expect(c.candidateOODRate == 0.05)
        // Disagreements: i % 10 == 9 among i ≥ 5 → 10 of them.
        #expect(c.agreementRate == 0.9)
        #expect(abs(c.baselineLatencyMeanMs - Statistics.mean((0..<100).map { 30 + Double($0 % 7) })) < 1e-12)
        #expect(c.candidateNotWorse(alpha: 0.05, minSamples: 30) == true)
        #expect(c.candidateNotWorse(alpha: 0.05, minSamples: 101) == nil)
        let slower = ABComparison(samples: samples(candidateLatency: 40, candidateOOD: 5))
        #expect(slower.candidateNotWorse(alpha: 0.05, minSamples: 30) == false)
        let moreOOD = ABComparison(samples: samples(candidateLatency: 31, candidateOOD: 20))
        #expect((moreOOD.oodTest?.pValue ?? 1) < 0.05)
        #expect(moreOOD.candidateNotWorse(alpha: 0.05, minSamples: 30) == false)
        // Faster is never "worse".
        let faster = ABComparison(samples: samples(candidateLatency: 20, candidateOOD: 2))
        #expect(faster.candidateNotWorse(alpha: 0.05, minSamples: 30) == true)
    }

    @Test func reportGroupsPairsAndStoresInJournal() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        for s in samples(candidateLatency: 31, candidateOOD: 5) { try journal.insert(s) }
        for s in samples(candidateLatency: 31, candidateOOD: 5) { try journal.insert(s) }  // repeats ignored
        let comparisons = try ABReport.comparisons(journal: journal)
        #expect(comparisons.count == 1)
        #expect(comparisons.first?.samples == 100)
        let text = ABReport.text(comparisons, alpha: 0.05, minSamples: 30)
        #expect(text.contains("1.0.0 -> 1.1.0: 100 samples, agreement 90.0%"))
        #expect(text.contains("not significantly worse"))
        // Paired statistics, effect sizes with intervals, the decision matrix and the one-sided verdict.
        #expect(text.contains("paired difference +"))
        #expect(text.contains("(95% CI "))
        #expect(text.contains("paired t p="))
        #expect(text.contains("McNemar exact p=1"))
        #expect(text.contains("diagnosed                  95     0   (same label 85)"))
        #expect(text.contains("OOD                         0     5"))
        #expect(text.contains("(alpha 0.05, one-sided)"))
        let json = try #require(comparisons.first?.jsonObject(alpha: 0.05, minSamples: 30))
        let latency = try #require(json["latency_ms"] as? [String: Any])
        #expect(latency["paired_t"] is [String: Any])
        #expect(latency["difference"] is [String: Any])
        let matrix = try #require(json["agreement_matrix"] as? [String: Int])
        #expect(
            matrix == [
                "both_diagnosed": 95, "both_diagnosed_same_label": 85, "candidate_only_ood": 0,
                "baseline_only_ood": 0, "both_ood": 5,
            ])
        let sequential = try #require(json["sequential"] as? [String: Any])
        #expect(sequential["per_metric_threshold"] as? Double == 0.025)
    }

    /// Latency is compared image by image: a shift hidden by the spread between images is still seen.
    @Test func latencyAndOODArePaired() throws {
        let list = samples(candidateLatency: 31, candidateOOD: 12)
        let c = ABComparison(samples: list)
        let paired = try #require(
            Statistics.pairedTTest(list.map(\.candidateLatencyMs), list.map(\.baselineLatencyMs)))
        #expect(abs((c.latencyTest?.statistic ?? 0) - paired.statistic) < 1e-12)
        #expect(abs((c.latencyTest?.pValue ?? 0) - paired.pValue) < 1e-12)
        let ci = try #require(
            Statistics.pairedMeanDifference(list.map(\.candidateLatencyMs), list.map(\.baselineLatencyMs)))
        #expect(abs((c.latencyDifference?.lower ?? 0) - ci.lower) < 1e-12)
        #expect(abs((c.latencyDifference?.upper ?? 0) - ci.upper) < 1e-12)
        // 7 images only the candidate called OOD, none only the baseline: McNemar's exact p = 2 / 2^7.
        #expect(c.oodMatrix == [[88, 7], [0, 5]])
        #expect(abs((c.oodTest?.pValue ?? 0) - 2.0 / 128) < 1e-15)
        let d = try #require(c.oodDifference)
        #expect(abs(d.estimate - 0.07) < 1e-12 && d.lower > 0)
    }
}
