import AADSCore
import AADSDiagnosis
import Foundation

/// What a health check measures on a slot's golden set (keys as in a manifest's `baseline_metrics`).
public struct HealthMetrics: Sendable, Equatable, Codable {
    public var cropRoutingAccuracy: Double
    public var adapterAccuracy: Double
    public var oodAuroc: Double
    public var oodFpr: Double
    public var latencyMs: Double
    public var latencyP95Ms: Double
    public var memoryPerAdapterMb: Double
    public var peakRssMb: Double
    public var errorRate: Double
    public var images: Int

    public init(
        cropRoutingAccuracy: Double = 0, adapterAccuracy: Double = 0, oodAuroc: Double = 0, oodFpr: Double = 0,
        latencyMs: Double = 0, latencyP95Ms: Double = 0, memoryPerAdapterMb: Double = 0, peakRssMb: Double = 0,
        errorRate: Double = 0, images: Int = 0
    ) {
        self.cropRoutingAccuracy = cropRoutingAccuracy
        self.adapterAccuracy = adapterAccuracy
        self.oodAuroc = oodAuroc
        self.oodFpr = oodFpr
        self.latencyMs = latencyMs
        self.latencyP95Ms = latencyP95Ms
        self.memoryPerAdapterMb = memoryPerAdapterMb
        self.peakRssMb = peakRssMb
        self.errorRate = errorRate
        self.images = images
    }

    /// As a `baseline_metrics`-style dictionary.
    public var dictionary: [String: Double] {
        [
            "crop_routing_accuracy": cropRoutingAccuracy, "adapter_accuracy": adapterAccuracy, "ood_auroc": oodAuroc,
            "ood_fpr": oodFpr, "latency_ms": latencyMs, "latency_p95_ms": latencyP95Ms,
            "memory_per_adapter_mb": memoryPerAdapterMb, "peak_rss_mb": peakRssMb, "error_rate": errorRate,
            "images": Double(images),
        ]
    }

    /// From a `baseline_metrics`-style dictionary; absent keys are nil so they are not compared.
    public static func partial(_ dictionary: [String: Double]) -> [String: Double] { dictionary }
}

/// Rank statistics used by the health gate.
public enum RankStatistics {
    /// Area under the ROC curve of `scores` separating `positives` (true) from negatives, ties counted half
    /// (the Mann–Whitney U statistic divided by n₊·n₋). nil when either class is empty.
    public static func auroc(scores: [Double], positives: [Bool]) -> Double? {
        let pairs = zip(scores, positives).sorted { $0.0 < $1.0 }
        let nPositive = positives.filter { $0 }.count
        let nNegative = positives.count - nPositive
        guard nPositive > 0, nNegative > 0 else { return nil }
        var rankSumPositive = 0.0
        var index = 0
        while index < pairs.count {
            var end = index
            while end + 1 < pairs.count && pairs[end + 1].0 == pairs[index].0 { end += 1 }
            let averageRank = Double(index + end) / 2 + 1
            for k in index...end where pairs[k].1 { rankSumPositive += averageRank }
            index = end + 1
        }
        let u = rankSumPositive - Double(nPositive * (nPositive + 1)) / 2
        return u / Double(nPositive * nNegative)
    }

    /// The q-quantile (0...1) with linear interpolation (numpy's default).
    public static func quantile(_ values: [Double], _ q: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let position = q * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down))
        let upper = min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
    }
}

/// One labelled golden-set image: `crop`/`label` are `ood` for images the model must reject.
public struct GoldenItem: Sendable, Equatable {
    public var path: String
    public var crop: String
    public var label: String
    public var isOOD: Bool { crop == "ood" }

    /// As an evaluation item: a golden leaf must be diagnosed as its crop and class.
    public var evaluationItem: EvaluationItem {
        EvaluationItem(path: path, expected: isOOD ? .ood : .leaf(crop: crop, label: label))
    }
}

/// Scores golden-set diagnoses into `HealthMetrics` through `EvaluationScoring`, the scoring of
/// `aads-edge evaluate`: routing accuracy over known-crop images, adapter accuracy over the correctly routed
/// ones (an image counts as correct when its predicted class matches, rejected or not), OOD AUROC of
/// `EvaluationScoring.oodScore`, OOD false-positive rate (known-crop images rejected), error rate over all
/// images, latency p50/p95.
public enum GoldenScoring {
    public static func score(items: [GoldenItem], diagnoses: [Diagnosis], classes: [String] = []) -> HealthMetrics {
        EvaluationScoring.score(items: items.map(\.evaluationItem), diagnoses: diagnoses, classes: classes)
            .healthMetrics
    }
}
