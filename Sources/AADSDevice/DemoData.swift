import AADSCore
import AADSDiagnosis
import Foundation

/// Fills a journal with a plausible season of field data (three model versions, a rollback, alerts, A/B
/// shadow runs) so the report can be looked at without a device (`aads-edge report --demo`). Deterministic for a
/// seed.
public enum DemoData {
    public static func populate(journal: ResultsJournal, end: Date = Date(), seed: UInt64 = 7) throws {
        var rng = SplitMix64(seed: seed)
        let start = end.addingTimeInterval(-6 * 86_400)
        struct Phase {
            let version: String
            let slot: String
            let from: Double
            let to: Double
            let latency: Double
            let ood: Double
            let errors: Double
            let rssMB: Double
        }
        // Days from `start`.
        let phases = [
            Phase(version: "1.0.0", slot: "a", from: 0, to: 2.5, latency: 38, ood: 0.06, errors: 0.004, rssMB: 41),
            Phase(version: "1.1.0", slot: "b", from: 2.5, to: 3.2, latency: 47, ood: 0.14, errors: 0.02, rssMB: 52),
            Phase(version: "1.0.0", slot: "a", from: 3.2, to: 4.0, latency: 38, ood: 0.06, errors: 0.004, rssMB: 41),
            Phase(version: "1.2.0", slot: "b", from: 4.0, to: 6.0, latency: 31, ood: 0.05, errors: 0.003, rssMB: 39),
        ]
        let crops: [(String, [String])] = [
            ("tomato", ["healthy", "early_blight", "late_blight", "septoria_leaf_spot", "bacterial_spot"]),
            ("pepper", ["healthy", "bacterial_spot"]), ("corn", ["healthy", "common_rust", "northern_leaf_blight"]),
        ]
        var n = 0
        for phase in phases {
            var t = phase.from * 86_400
            while t < phase.to * 86_400 {
                // Daylight only: more pictures around noon.
                let hour = (t.truncatingRemainder(dividingBy: 86_400)) / 3600
                t += hour < 6 || hour > 20 ? 1800 : 120 + rng.unit() * 600
                guard t < phase.to * 86_400 else { break }
                n += 1
                let date = start.addingTimeInterval(t)
                let sha = String(format: "%016llx%016llx%032x", rng.next(), rng.next(), n)
                let (crop, diseases) = crops[Int(rng.unit() * 3) % 3]
                let disease = diseases[Int(rng.unit() * Double(diseases.count)) % diseases.count]
                let latency = max(8, rng.normal(phase.latency, phase.latency * 0.15))
                let u = rng.unit()
                var record: Diagnosis
                let l = StageLatency(
                    decode: latency * 0.2, backbone: latency * 0.55, adapter: latency * 0.25, total: latency)
                if u < phase.errors {
                    record = Diagnosis(
                        file: "IMG_\(n).jpg", decision: .error, modelVersion: phase.version,
                        latency: StageLatency(total: 2),
                        error: .init(code: "corrupt_jpeg", message: "premature end of JPEG data"))
                } else if u < phase.errors + phase.ood / 2 {
                    record = Diagnosis(
                        file: "IMG_\(n).jpg", decision: .unknownCrop, cropConfidence: 0.4, modelVersion: phase.version,
                        latency: l)
                } else if u < phase.errors + phase.ood {
                    record = Diagnosis(
                        file: "IMG_\(n).jpg", decision: .ood, crop: crop, cropConfidence: 0.9, disease: disease,
                        confidence: 0.6,
                        mahalanobis: 41, threshold: 27, modelVersion: phase.version, latency: l)
                } else {
                    record = Diagnosis(
                        file: "IMG_\(n).jpg", decision: .diagnosis, crop: crop, cropConfidence: 0.97, disease: disease,
                        confidence: 0.8 + 0.19 * rng.unit(), top3: [.init(label: disease, confidence: 0.9)],
                        mahalanobis: 12,
                        threshold: 27, modelVersion: phase.version, latency: l)
                }
                let rss = Int64((phase.rssMB + rng.normal(0, 0.5)) * 1_048_576)
                try journal.insert(record, imageSHA256: sha, slot: phase.slot, createdAt: date, rssBytes: rss)
            }
        }
        func at(_ days: Double) -> Date { start.addingTimeInterval(days * 86_400) }
        let events: [(Double, String, String, String, String)] = [
            (0, "start", "a", "1.0.0", "committed slot"),
            (2.45, "install", "b", "1.1.0", "signed bundle verified"),
            (2.5, "activate", "b", "1.1.0", "trial, 3 attempts"),
            (2.52, "health_pass", "b", "1.1.0", "golden set 96.1%"),
            (3.2, "rollback", "b", "1.1.0", "A/B: candidate significantly worse"),
            (3.95, "install", "b", "1.2.0", "signed bundle verified"),
            (4.0, "activate", "b", "1.2.0", "trial, 3 attempts"),
            (4.02, "health_pass", "b", "1.2.0", "golden set 98.9%"),
            (4.6, "commit", "b", "1.2.0", "probation 200 images, 0.0% errors"),
        ]
        for e in events {
            try journal.insert(
                SlotEventRecord(event: e.1, slot: e.2, modelVersion: e.3, detail: e.4, createdAt: at(e.0)))
        }
        try journal.insert(
            HealthCheckRecord(
                slot: "a", modelVersion: "1.0.0", passed: true, cropRoutingAccuracy: 0.991, adapterAccuracy: 0.962,
                oodAUROC: 0.94, oodFPR: 0.045, latencyMs: 37, memoryMB: 1.7, createdAt: at(0)))
        try journal.insert(
            HealthCheckRecord(
                slot: "b", modelVersion: "1.1.0", passed: true, cropRoutingAccuracy: 0.985, adapterAccuracy: 0.951,
                oodAUROC: 0.90, oodFPR: 0.08, latencyMs: 46, memoryMB: 2.3, createdAt: at(2.52)))
        try journal.insert(
            HealthCheckRecord(
                slot: "b", modelVersion: "1.2.0", passed: true, cropRoutingAccuracy: 0.994, adapterAccuracy: 0.971,
                oodAUROC: 0.95, oodFPR: 0.04, latencyMs: 30, memoryMB: 1.6, createdAt: at(4.02)))
        let alerts: [(Double, String, AlertSeverity, String, String, Double, Double)] = [
            (
                2.8, "latency_increase", .warning, "raised",
                "mean latency 47.2 ms over the last 200 images exceeds baseline 38.0 ms by more than 10%", 47.2, 41.8
            ),
            (
                3.1, "error_rate", .critical, "raised", "error rate 2.00% over the last 200 images exceeds 1.00%", 0.02,
                0.01
            ),
            (3.2, "latency_increase", .warning, "cleared", "model rolled back", 38.1, 41.8),
        ]
        for a in alerts {
            try journal.insert(
                AlertRecord(
                    rule: a.1, severity: a.2, state: a.3, message: a.4, value: a.5, threshold: a.6,
                    modelVersion: "1.1.0", createdAt: at(a.0)))
        }
        for (candidate, latency, ood, count, day) in [("1.1.0", 47.0, 0.14, 60, 2.6), ("1.2.0", 31.0, 0.05, 80, 4.1)] {
            for i in 0..<count {
                let bl = max(8, rng.normal(38, 5))
                let cl = max(8, rng.normal(latency, latency * 0.15))
                let bOOD = rng.unit() < 0.06
                let cOOD = rng.unit() < ood
                let agree = rng.unit() < 0.93
                try journal.insert(
                    ABSample(
                        imageSHA256: String(format: "ab%062x", i + (candidate == "1.1.0" ? 0 : 1000)),
                        baselineVersion: "1.0.0",
                        candidateVersion: candidate, baselineDecision: bOOD ? .ood : .diagnosis,
                        candidateDecision: cOOD ? .ood : .diagnosis,
                        baselineLabel: bOOD ? "ood" : "tomato/early_blight",
                        candidateLabel: cOOD ? "ood" : (agree ? "tomato/early_blight" : "tomato/late_blight"),
                        baselineLatencyMs: bl,
                        candidateLatencyMs: cl, createdAt: at(day + Double(i) / 1000)))
            }
        }
        _ = try journal.markSynced(untilID: Int64(n * 3 / 4))
    }
}
