import AADSCore
import AADSDiagnosis
import Foundation

/// One image run by both versions while a candidate is in probation.
public struct ABSample: Sendable, Equatable {
    public var imageSHA256: String
    public var baselineVersion: String
    public var candidateVersion: String
    public var baselineDecision: Decision
    public var candidateDecision: Decision
    public var baselineLabel: String
    public var candidateLabel: String
    public var baselineLatencyMs: Double
    public var candidateLatencyMs: Double
    public var createdAt: Date

    public init(
        imageSHA256: String, baselineVersion: String, candidateVersion: String, baselineDecision: Decision,
        candidateDecision: Decision, baselineLabel: String, candidateLabel: String, baselineLatencyMs: Double,
        candidateLatencyMs: Double, createdAt: Date = Date()
    ) {
        self.imageSHA256 = imageSHA256
        self.baselineVersion = baselineVersion
        self.candidateVersion = candidateVersion
        self.baselineDecision = baselineDecision
        self.candidateDecision = candidateDecision
        self.baselineLabel = baselineLabel
        self.candidateLabel = candidateLabel
        self.baselineLatencyMs = baselineLatencyMs
        self.candidateLatencyMs = candidateLatencyMs
        self.createdAt = createdAt
    }

    /// Builds a sample from the two versions' records of the same image.
    public init(imageSHA256: String, baseline: Diagnosis, candidate: Diagnosis, createdAt: Date = Date()) {
        self.init(
            imageSHA256: imageSHA256, baselineVersion: baseline.modelVersion, candidateVersion: candidate.modelVersion,
            baselineDecision: baseline.decision, candidateDecision: candidate.decision,
            baselineLabel: baseline.comparisonLabel, candidateLabel: candidate.comparisonLabel,
            baselineLatencyMs: baseline.latency.total, candidateLatencyMs: candidate.latency.total,
            createdAt: createdAt)
    }

    public var agree: Bool { baselineLabel == candidateLabel }
    public var baselineOOD: Bool { baselineDecision == .ood || baselineDecision == .unknownCrop }
    public var candidateOOD: Bool { candidateDecision == .ood || candidateDecision == .unknownCrop }
}

/// Chooses the shadow-run images deterministically from their sha256: the same image is always in or out,
/// on every device and after every restart.
public struct ABSampler: Sendable {
    public let fraction: Double

    public init(fraction: Double) { self.fraction = min(1, max(0, fraction)) }

    /// The first 64 bits of the hex digest as a number in [0, 1).
    public static func unitValue(sha256Hex: String) -> Double {
        var value: UInt64 = 0
        var digits = 0
        for c in sha256Hex.utf8 {
            guard digits < 16 else { break }
            let nibble: UInt64
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = UInt64(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = UInt64(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = UInt64(c - UInt8(ascii: "A") + 10)
            default: continue
            }
            value = value << 4 | nibble
            digits += 1
        }
        // 53 significant bits map exactly onto a Double in [0, 1).
        return Double(value >> 11) / Double(UInt64(1) << 53)
    }

    public func selects(sha256Hex: String) -> Bool {
        fraction > 0 && Self.unitValue(sha256Hex: sha256Hex) < fraction
    }
}

/// Anytime-valid, one-sided evidence that a candidate is worse than its baseline, one paired sample at a time.
///
/// "Worse" is one-sided: a higher mean latency on the same images, or more images called OOD (ood or unknown
/// crop). Each of the two gets half of alpha (Bonferroni) and is an e-process, an e-value whose largest value so
/// far is compared with 2/alpha: the paired t-test's scale-invariant Bayes factor for latency
/// (``Statistics/oneSidedTTestEValue(n:mean:sumSquaredDeviations:g:)``) and a sequential McNemar test on the
/// pairs where exactly one version called the image OOD (``Statistics/oneSidedSignEValue(b:c:)``). By Ville's
/// inequality two identical versions are then called worse with probability at most alpha however many times
/// the verdict is asked for, so probation may ask after every image and stop at any time. (The OOD part is exact;
/// the latency part is exact for normally distributed differences, and the seeded simulation in the tests, with
/// heavy-tailed stalls, stays well inside its half.) The price of looking at every image is power: a fixed
/// test at one planned look would detect smaller differences with the same samples.
public struct ABEvidence: Sendable, Equatable {
    /// Prior variance of the standardized latency effect (mean difference / sd of the differences) mixed over:
    /// the e-value grows fastest for effects near √0.2 ≈ 0.45 sd, i.e. around 50 samples; any value keeps the
    /// error rate, it only moves the power.
    public static let latencyPriorVariance = 0.2

    public private(set) var samples = 0
    /// Pairs with a finite latency on both sides.
    public private(set) var latencyPairs = 0
    /// Mean of candidate − baseline latency, ms.
    public private(set) var meanLatencyDifferenceMs = 0.0
    /// Sum of squared deviations of the latency differences from their mean (Welford).
    public private(set) var latencySumSquaredDeviations = 0.0
    /// Images only the candidate called OOD.
    public private(set) var candidateOnlyOOD = 0
    /// Images only the baseline called OOD.
    public private(set) var baselineOnlyOOD = 0
    /// Largest latency e-value so far (1 = no evidence).
    public private(set) var latencyEValue = 1.0
    /// Largest OOD e-value so far.
    public private(set) var oodEValue = 1.0

    public init() {}

    public init(samples list: [ABSample]) {
        for s in list { add(s) }
    }

    public mutating func add(_ sample: ABSample) {
        samples += 1
        let d = sample.candidateLatencyMs - sample.baselineLatencyMs
        if d.isFinite {
            latencyPairs += 1
            let delta = d - meanLatencyDifferenceMs
            meanLatencyDifferenceMs += delta / Double(latencyPairs)
            latencySumSquaredDeviations += delta * (d - meanLatencyDifferenceMs)
            let (n, m, ss, g) = (
                latencyPairs, meanLatencyDifferenceMs, latencySumSquaredDeviations, Self.latencyPriorVariance
            )
            // The one-sided value is at most twice the two-sided one: skip the t CDF when it cannot set a new high.
            if 2 * Statistics.twoSidedTTestEValue(n: n, mean: m, sumSquaredDeviations: ss, g: g) > latencyEValue {
                latencyEValue = max(
                    latencyEValue, Statistics.oneSidedTTestEValue(n: n, mean: m, sumSquaredDeviations: ss, g: g))
            }
        }
        if sample.candidateOOD != sample.baselineOOD {
            if sample.candidateOOD { candidateOnlyOOD += 1 } else { baselineOnlyOOD += 1 }
            oodEValue = max(oodEValue, Statistics.oneSidedSignEValue(b: candidateOnlyOOD, c: baselineOnlyOOD))
        }
    }

    /// Always-valid one-sided p-value for "candidate latency is higher": 1 / the largest e-value so far.
    public var latencyPValue: Double { min(1, 1 / latencyEValue) }
    /// Always-valid one-sided p-value for "candidate calls more images OOD".
    public var oodPValue: Double { min(1, 1 / oodEValue) }

    /// True when either one-sided always-valid p-value is at most alpha / 2.
    public func candidateWorse(alpha: Double) -> Bool {
        latencyEValue >= 2 / alpha || oodEValue >= 2 / alpha
    }
}

/// The comparison of one candidate against its baseline. Both versions ran on the same images, so every
/// statistic is paired.
public struct ABComparison: Sendable, Equatable {
    public var baselineVersion: String
    public var candidateVersion: String
    public var samples: Int
    public var agreementRate: Double
    public var baselineLatencyMeanMs: Double
    public var candidateLatencyMeanMs: Double
    public var baselineOODRate: Double
    public var candidateOODRate: Double
    /// Decisions side by side: [baseline OOD][candidate OOD], index 0 = diagnosed, 1 = OOD or unknown crop.
    public var oodMatrix: [[Int]]
    /// Both diagnosed and gave the same label.
    public var sameDiagnosis: Int
    /// The sequential evidence behind ``candidateNotWorse(alpha:minSamples:)``.
    public var evidence: ABEvidence

    /// Builds the comparison from samples of one baseline/candidate pair, in the order they were taken.
    public init(samples list: [ABSample]) {
        baselineVersion = list.first?.baselineVersion ?? ""
        candidateVersion = list.first?.candidateVersion ?? ""
        samples = list.count
        let n = Double(max(1, list.count))
        var agree = 0
        var same = 0
        var (neither, candidateOnly, baselineOnly, both) = (0, 0, 0, 0)
        var baselineSum = 0.0
        var candidateSum = 0.0
        for s in list {
            let (b, c) = (s.baselineOOD, s.candidateOOD)
            switch (b, c) {
            case (false, false): neither += 1
            case (false, true): candidateOnly += 1
            case (true, false): baselineOnly += 1
            case (true, true): both += 1
            }
            if s.agree {
                agree += 1
                if !b, !c { same += 1 }
            }
            baselineSum += s.baselineLatencyMs
            candidateSum += s.candidateLatencyMs
        }
        agreementRate = Double(agree) / n
        sameDiagnosis = same
        oodMatrix = [[neither, candidateOnly], [baselineOnly, both]]
        baselineLatencyMeanMs = list.isEmpty ? .nan : baselineSum / n
        candidateLatencyMeanMs = list.isEmpty ? .nan : candidateSum / n
        baselineOODRate = Double(baselineOnly + both) / n
        candidateOODRate = Double(candidateOnly + both) / n
        evidence = ABEvidence(samples: list)
    }

    /// Standard deviation of the paired latency differences, ms.
    public var latencyDifferenceSDMs: Double {
        evidence.latencyPairs > 1
            ? (evidence.latencySumSquaredDeviations / Double(evidence.latencyPairs - 1)).squareRoot() : .nan
    }

    /// Paired t-test of candidate − baseline latency (scipy.stats.ttest_rel), two-sided, one look.
    public var latencyTest: Statistics.TestResult? {
        let n = evidence.latencyPairs
        let sd = latencyDifferenceSDMs
        guard n > 1, sd > 0, sd.isFinite else { return nil }
        let t = evidence.meanLatencyDifferenceMs / (sd / Double(n).squareRoot())
        let df = Double(n - 1)
        return Statistics.TestResult(
            statistic: t, degreesOfFreedom: df, pValue: Statistics.studentTTwoSidedP(t: t, df: df))
    }

    /// Mean candidate − baseline latency, ms, with its 95 % t interval (one look).
    public var latencyDifference: Statistics.Interval? {
        let n = evidence.latencyPairs
        guard n > 1 else { return nil }
        let m = evidence.meanLatencyDifferenceMs
        let half =
            Statistics.studentTQuantile(0.975, df: Double(n - 1)) * latencyDifferenceSDMs / Double(n).squareRoot()
        return Statistics.Interval(estimate: m, lower: m - half, upper: m + half, level: 0.95)
    }

    /// Standardized latency effect d_z: mean difference / sd of the differences.
    public var latencyEffectSize: Double? {
        let sd = latencyDifferenceSDMs
        return sd > 0 && sd.isFinite ? evidence.meanLatencyDifferenceMs / sd : nil
    }

    /// McNemar's exact test on the images only one version called OOD, two-sided, one look.
    public var oodTest: Statistics.TestResult? {
        samples > 0 ? Statistics.mcNemarExact(b: evidence.candidateOnlyOOD, c: evidence.baselineOnlyOOD) : nil
    }

    /// Candidate − baseline OOD rate with its 95 % paired (Wald) interval, one look.
    public var oodDifference: Statistics.Interval? {
        Statistics.pairedProportionDifference(
            b: evidence.candidateOnlyOOD, c: evidence.baselineOnlyOOD, n: samples)
    }

    /// The probation verdict. One-sided: "worse" means higher latency or more OOD calls on the same images, never
    /// faster or fewer. True: not significantly worse, the candidate may commit. False: significantly worse,
    /// roll back. Nil: fewer than `minSamples` samples, no verdict yet.
    ///
    /// Sequential with an honest error rate: the evidence is anytime-valid (``ABEvidence``), so asking after every
    /// image calls identical versions worse with probability at most `alpha` in total (alpha/2 for latency,
    /// alpha/2 for OOD), however long probation runs and without knowing its length in advance. Once false it
    /// stays false as samples are added.
    public func candidateNotWorse(alpha: Double, minSamples: Int) -> Bool? {
        guard samples >= minSamples else { return nil }
        return !evidence.candidateWorse(alpha: alpha)
    }

    public func jsonObject(alpha: Double, minSamples: Int) -> [String: Any] {
        func test(_ t: Statistics.TestResult?) -> Any {
            guard let t else { return NSNull() }
            var o: [String: Any] = ["statistic": t.statistic, "p_value": t.pValue]
            if let df = t.degreesOfFreedom { o["df"] = df }
            return o
        }
        func interval(_ i: Statistics.Interval?) -> Any {
            guard let i else { return NSNull() }
            return ["estimate": i.estimate, "lower": i.lower, "upper": i.upper, "level": i.level]
        }
        var o: [String: Any] = [
            "baseline_version": baselineVersion, "candidate_version": candidateVersion, "samples": samples,
            "agreement_rate": agreementRate,
            "latency_ms": [
                "baseline_mean": baselineLatencyMeanMs, "candidate_mean": candidateLatencyMeanMs,
                "difference": interval(latencyDifference), "effect_size_dz": latencyEffectSize ?? NSNull(),
                "paired_t": test(latencyTest),
            ] as [String: Any],
            "ood_rate": [
                "baseline": baselineOODRate, "candidate": candidateOODRate, "difference": interval(oodDifference),
                "mcnemar_exact": test(oodTest),
            ] as [String: Any],
            "agreement_matrix": [
                "both_diagnosed": oodMatrix[0][0], "both_diagnosed_same_label": sameDiagnosis,
                "candidate_only_ood": oodMatrix[0][1], "baseline_only_ood": oodMatrix[1][0],
                "both_ood": oodMatrix[1][1],
            ],
            "sequential": [
                "sided": "one-sided (worse = higher latency or more OOD)", "alpha": alpha,
                "per_metric_threshold": alpha / 2,
                "latency_e_value": evidence.latencyEValue, "latency_p_value": evidence.latencyPValue,
                "ood_e_value": evidence.oodEValue, "ood_p_value": evidence.oodPValue,
            ] as [String: Any],
        ]
        o["candidate_not_worse"] = candidateNotWorse(alpha: alpha, minSamples: minSamples) ?? NSNull()
        return o
    }
}

/// `aads-edge ab report`: every baseline/candidate pair recorded in a journal.
public enum ABReport {
    public static func comparisons(_ samples: [ABSample]) -> [ABComparison] {
        var order: [String] = []
        var groups: [String: [ABSample]] = [:]
        for s in samples {
            let key = s.baselineVersion + "\u{0}" + s.candidateVersion
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(s)
        }
        return order.compactMap { groups[$0] }.map { ABComparison(samples: $0) }
    }

    public static func comparisons(journal: ResultsJournal) throws -> [ABComparison] {
        comparisons(try journal.abSamples())
    }

    /// A readable table.
    public static func text(_ comparisons: [ABComparison], alpha: Double, minSamples: Int) -> String {
        guard !comparisons.isEmpty else { return "no A/B samples recorded" }
        var lines: [String] = []
        func f(_ v: Double, _ d: Int = 3) -> String { String(format: "%.\(d)f", v) }
        func signed(_ v: Double, _ d: Int) -> String { String(format: "%+.\(d)f", v) }
        func p(_ v: Double?) -> String { v.map { String(format: "%.3g", $0) } ?? "n/a" }
        func ci(_ i: Statistics.Interval?, _ d: Int, scale: Double = 1) -> String {
            guard let i else { return "n/a" }
            return
                "\(signed(i.estimate * scale, d)) (95% CI \(signed(i.lower * scale, d)) to \(signed(i.upper * scale, d)))"
        }
        for c in comparisons {
            let verdict: String
            switch c.candidateNotWorse(alpha: alpha, minSamples: minSamples) {
            case true?: verdict = "not significantly worse"
            case false?: verdict = "significantly worse"
            case nil: verdict = "not enough samples (\(c.samples) < \(minSamples))"
            }
            let m = c.oodMatrix
            lines += [
                "\(c.baselineVersion) -> \(c.candidateVersion): \(c.samples) samples, agreement \(f(c.agreementRate * 100, 1))%",
                "  latency ms   baseline \(f(c.baselineLatencyMeanMs, 2))  candidate \(f(c.candidateLatencyMeanMs, 2))",
                "               paired difference \(ci(c.latencyDifference, 2))  d_z \(c.latencyEffectSize.map { f($0, 2) } ?? "n/a")  paired t p=\(p(c.latencyTest?.pValue))",
                "  OOD rate     baseline \(f(c.baselineOODRate))  candidate \(f(c.candidateOODRate))",
                "               difference \(ci(c.oodDifference, 1, scale: 100)) points  McNemar exact p=\(p(c.oodTest?.pValue))",
                "  decisions    baseline \\ candidate   diagnosed   OOD",
                "               diagnosed           \(String(format: "%9d %5d", m[0][0], m[0][1]))   (same label \(c.sameDiagnosis))",
                "               OOD                 \(String(format: "%9d %5d", m[1][0], m[1][1]))",
                "  sequential   one-sided always-valid p: latency \(p(c.evidence.latencyPValue))  OOD \(p(c.evidence.oodPValue))  (worse if either <= alpha/2 = \(alpha / 2))",
                "  verdict      \(verdict) (alpha \(alpha), one-sided)",
            ]
        }
        return lines.joined(separator: "\n")
    }
}
