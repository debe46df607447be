import AADSCore
import Foundation

/// One image run by both versions while a candidate is in probation.
public struct ABSample: Sendable, Equatable {
    public var imageSHA256: String
    public var baselineVersion: String
    public var candidateVersion: String
    public var baselineDecision: DecisionKind
    public var candidateDecision: DecisionKind
    public var baselineLabel: String
    public var candidateLabel: String
    public var baselineLatencyMs: Double
    public var candidateLatencyMs: Double
    public var createdAt: Date

    public init(
        imageSHA256: String, baselineVersion: String, candidateVersion: String, baselineDecision: DecisionKind,
        candidateDecision: DecisionKind, baselineLabel: String, candidateLabel: String, baselineLatencyMs: Double,
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
    public init(imageSHA256: String, baseline: DiagnosisRecord, candidate: DiagnosisRecord, createdAt: Date = Date()) {
        self.init(
            imageSHA256: imageSHA256, baselineVersion: baseline.modelVersion, candidateVersion: candidate.modelVersion,
            baselineDecision: baseline.decision, candidateDecision: candidate.decision,
            baselineLabel: baseline.comparisonLabel, candidateLabel: candidate.comparisonLabel,
            baselineLatencyMs: baseline.latencyMs.total, candidateLatencyMs: candidate.latencyMs.total,
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

/// The comparison of one candidate against its baseline.
public struct ABComparison: Sendable, Equatable {
    public var baselineVersion: String
    public var candidateVersion: String
    public var samples: Int
    public var agreementRate: Double
    public var baselineLatencyMeanMs: Double
    public var candidateLatencyMeanMs: Double
    public var baselineOODRate: Double
    public var candidateOODRate: Double
    /// Welch's t-test of candidate − baseline latency.
    public var latencyTest: Statistics.TestResult?
    /// Two-proportion z-test of candidate − baseline OOD rate.
    public var oodTest: Statistics.TestResult?

    /// Builds the comparison from samples of one baseline/candidate pair.
    public init(samples list: [ABSample]) {
        baselineVersion = list.first?.baselineVersion ?? ""
        candidateVersion = list.first?.candidateVersion ?? ""
        samples = list.count
        let n = Double(max(1, list.count))
        agreementRate = Double(list.filter(\.agree).count) / n
        let bl = list.map(\.baselineLatencyMs)
        let cl = list.map(\.candidateLatencyMs)
        baselineLatencyMeanMs = Statistics.mean(bl)
        candidateLatencyMeanMs = Statistics.mean(cl)
        let bo = list.filter(\.baselineOOD).count
        let co = list.filter(\.candidateOOD).count
        baselineOODRate = Double(bo) / n
        candidateOODRate = Double(co) / n
        latencyTest = Statistics.welchTTest(cl, bl)
        oodTest = Statistics.twoProportionZTest(x1: co, n1: list.count, x2: bo, n2: list.count)
    }

    /// "Not significantly worse" at `alpha`: neither latency nor OOD rate is higher with p < alpha.
    /// Nil (no verdict yet) with fewer than `minSamples` samples.
    public func candidateNotWorse(alpha: Double, minSamples: Int) -> Bool? {
        guard samples >= minSamples else { return nil }
        if let t = latencyTest, t.statistic > 0, t.pValue < alpha { return false }
        if let z = oodTest, z.statistic > 0, z.pValue < alpha { return false }
        return true
    }

    public func jsonObject(alpha: Double, minSamples: Int) -> [String: Any] {
        func test(_ t: Statistics.TestResult?) -> Any {
            guard let t else { return NSNull() }
            var o: [String: Any] = ["statistic": t.statistic, "p_value": t.pValue]
            if let df = t.degreesOfFreedom { o["df"] = df }
            return o
        }
        var o: [String: Any] = [
            "baseline_version": baselineVersion, "candidate_version": candidateVersion, "samples": samples,
            "agreement_rate": agreementRate,
            "latency_ms": [
                "baseline_mean": baselineLatencyMeanMs, "candidate_mean": candidateLatencyMeanMs,
                "welch_t": test(latencyTest),
            ] as [String: Any],
            "ood_rate": [
                "baseline": baselineOODRate, "candidate": candidateOODRate, "z_test": test(oodTest),
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
        func p(_ t: Statistics.TestResult?) -> String { t.map { String(format: "%.3g", $0.pValue) } ?? "n/a" }
        for c in comparisons {
            let verdict: String
            switch c.candidateNotWorse(alpha: alpha, minSamples: minSamples) {
            case true?: verdict = "not significantly worse"
            case false?: verdict = "significantly worse"
            case nil: verdict = "not enough samples (\(c.samples) < \(minSamples))"
            }
            lines.append(
                "\(c.baselineVersion) -> \(c.candidateVersion): \(c.samples) samples, agreement \(f(c.agreementRate * 100, 1))%"
            )
            lines.append(
                "  latency ms   baseline \(f(c.baselineLatencyMeanMs, 2))  candidate \(f(c.candidateLatencyMeanMs, 2))  Welch t p=\(p(c.latencyTest))"
            )
            lines.append(
                "  OOD rate     baseline \(f(c.baselineOODRate))  candidate \(f(c.candidateOODRate))  z-test p=\(p(c.oodTest))"
            )
            lines.append("  verdict      \(verdict) (alpha \(alpha))")
        }
        return lines.joined(separator: "\n")
    }
}
