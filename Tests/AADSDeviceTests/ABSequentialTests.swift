import AADSCore
import AADSDiagnosis
import AADSTestSupport
import Foundation
import Testing

@testable import AADSDevice

/// Seeded shadow-run simulations: identical versions, and candidates that really are worse.
struct ABSimulation {
    var rng: SplitMix64
    /// Candidate latency multiplier (1 = same as the baseline).
    var slowdown = 1.0
    /// Added to the candidate's probability of calling an image OOD.
    var extraOOD = 0.0

    init(seed: UInt64, slowdown: Double = 1, extraOOD: Double = 0) {
        rng = SplitMix64(seed: seed)
        self.slowdown = slowdown
        self.extraOOD = extraOOD
    }

    mutating func normal() -> Double {
        let u1 = max(rng.unit(), 1e-300)
        let u2 = rng.unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    /// One version's latency on an image of cost `base`: multiplicative jitter and an occasional stall.
    mutating func latency(base: Double) -> Double {
        var ms = base * exp(0.05 * normal())
        if rng.unit() < 0.03 { ms += -15 * log(max(rng.unit(), 1e-300)) }
        return ms
    }

    /// One image run by both versions.
    mutating func sample(_ i: Int) -> ABSample {
        let base = 30 * exp(0.15 * normal())
        let hard = rng.unit() < 0.05
        let pOOD = hard ? 0.6 : 0.02
        let baselineOOD = rng.unit() < pOOD
        let candidateOOD = rng.unit() < min(1, pOOD + extraOOD)
        let bl = latency(base: base)
        let cl = latency(base: base) * slowdown
        return ABSample(
            imageSHA256: String(format: "%064x", i), baselineVersion: "1.0.0", candidateVersion: "1.1.0",
            baselineDecision: baselineOOD ? .ood : .diagnosis, candidateDecision: candidateOOD ? .ood : .diagnosis,
            baselineLabel: baselineOOD ? "ood" : "tomato/healthy",
            candidateLabel: candidateOOD ? "ood" : "tomato/healthy",
            baselineLatencyMs: bl, candidateLatencyMs: cl, createdAt: Date(timeIntervalSince1970: 0))
    }
}

/// Repeated looks: probation asks for the verdict after every A/B sample.
@Suite struct ABSequentialTests {
    static let alpha = 0.05
    static let minSamples = 30

    /// Share of runs in which some look from `minSamples` on calls the candidate worse, asking
    /// `candidateNotWorse` of a fresh comparison after every sample, exactly as probation does.
    static func worseRate(runs: Int, samples: Int, seed: UInt64, slowdown: Double = 1, extraOOD: Double = 0) -> Double {
        var worse = 0
        for run in 0..<runs {
            var sim = ABSimulation(seed: seed &+ UInt64(run) &* 7919, slowdown: slowdown, extraOOD: extraOOD)
            var list: [ABSample] = []
            for i in 0..<samples {
                list.append(sim.sample(i))
                if ABComparison(samples: list).candidateNotWorse(alpha: alpha, minSamples: minSamples) == false {
                    worse += 1
                    break
                }
            }
        }
        return Double(worse) / Double(runs)
    }

    /// Upper bound on the rate the simulation may show while the true rate is at most `alpha`: the bound minus
    /// three binomial standard errors, so passing is not luck.
    static func ceiling(_ alpha: Double, runs: Int) -> Double {
        alpha - 3 * (alpha * (1 - alpha) / Double(runs)).squareRoot()
    }

    /// Identical versions, 120 looks each (the old rule, Welch and z-test at every look, called 7 % of such
    /// runs worse, 10 % with 200 looks, 16 % with 400).
    @Test func identicalVersionsAreCalledWorseAtMostAlpha() {
        let runs = 400
        let rate = Self.worseRate(runs: runs, samples: 120, seed: 11)
        #expect(
            rate <= Self.ceiling(Self.alpha, runs: runs), "identical versions called worse in \(rate * 100)% of runs")
    }

    /// The same with longer probations and many more runs, through the evidence alone (what
    /// `candidateNotWorse` reads), each metric against its half of alpha.
    @Test func eachMetricSpendsAtMostHalfOfAlpha() {
        let runs = 2000
        var latency = 0
        var ood = 0
        var either = 0
        for run in 0..<runs {
            var sim = ABSimulation(seed: 101 &+ UInt64(run) &* 104_729)
            var evidence = ABEvidence()
            for i in 0..<300 { evidence.add(sim.sample(i)) }
            // The evidence keeps its largest value, so the last look sees every earlier crossing.
            if evidence.latencyEValue >= 2 / Self.alpha { latency += 1 }
            if evidence.oodEValue >= 2 / Self.alpha { ood += 1 }
            if evidence.candidateWorse(alpha: Self.alpha) { either += 1 }
        }
        let half = Self.ceiling(Self.alpha / 2, runs: runs)
        #expect(Double(latency) / Double(runs) <= half, "latency: \(latency) of \(runs)")
        #expect(Double(ood) / Double(runs) <= half, "OOD: \(ood) of \(runs)")
        #expect(Double(either) / Double(runs) <= Self.ceiling(Self.alpha, runs: runs), "either: \(either) of \(runs)")
    }

    @Test func aSlowerCandidateIsCaught() {
        // 10 % slower on the same images.
        #expect(Self.worseRate(runs: 200, samples: 150, seed: 23, slowdown: 1.10) >= 0.95)
        // Faster is never worse on latency.
        for run in 0..<100 {
            var sim = ABSimulation(seed: 29 &+ UInt64(run), slowdown: 0.90)
            var evidence = ABEvidence()
            for i in 0..<150 { evidence.add(sim.sample(i)) }
            #expect(evidence.latencyEValue < 2 / Self.alpha, "run \(run): \(evidence.latencyEValue)")
        }
    }

    @Test func aCandidateCallingMoreImagesOODIsCaught() {
        // 10 points more OOD calls: caught in most probations of 300 A/B samples.
        var caught = 0
        let runs = 300
        for run in 0..<runs {
            var sim = ABSimulation(seed: 31 &+ UInt64(run) &* 7919, extraOOD: 0.10)
            var evidence = ABEvidence()
            for i in 0..<300 { evidence.add(sim.sample(i)) }
            if evidence.candidateWorse(alpha: Self.alpha) { caught += 1 }
        }
        #expect(Double(caught) / Double(runs) >= 0.9, "caught \(caught) of \(runs)")
    }

    /// The comparison the caller builds after each sample agrees with the running evidence, and once worse
    /// stays worse.
    @Test func verdictIsMonotoneAndMatchesTheRunningEvidence() {
        for run in 0..<20 {
            var sim = ABSimulation(seed: 7 &+ UInt64(run), slowdown: 1.04)
            var list: [ABSample] = []
            var evidence = ABEvidence()
            var wasWorse = false
            for i in 0..<120 {
                let s = sim.sample(i)
                list.append(s)
                evidence.add(s)
                let comparison = ABComparison(samples: list)
                #expect(comparison.evidence == evidence)
                let verdict = comparison.candidateNotWorse(alpha: Self.alpha, minSamples: Self.minSamples)
                if list.count < Self.minSamples {
                    #expect(verdict == nil)
                } else {
                    #expect(verdict == !evidence.candidateWorse(alpha: Self.alpha))
                    if wasWorse { #expect(verdict == false) }
                    wasWorse = verdict == false
                }
            }
        }
    }
}
