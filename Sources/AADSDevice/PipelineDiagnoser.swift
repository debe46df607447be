import AADSDiagnosis
import Foundation

/// The real diagnosis pipeline behind the service's `Diagnoser` protocol.
public final class PipelineDiagnoser: Diagnoser {
    public let pipeline: DiagnosisPipeline

    public init(bundleDirectory: String, options: PipelineOptions = PipelineOptions()) throws {
        pipeline = try DiagnosisPipeline(bundleDirectory: bundleDirectory, options: options)
    }

    public var modelVersion: String { pipeline.manifest.modelVersion }

    public func diagnose(path: String) throws -> DiagnosisRecord {
        DiagnosisRecord(pipeline.diagnose(path: path))
    }

    /// The bundle's own figures, for the latency and accuracy alerts.
    public var baseline: BaselineMetrics {
        let metrics = pipeline.manifest.baselineMetrics ?? [:]
        return BaselineMetrics(latencyMs: metrics["latency_ms"], accuracy: metrics["adapter_accuracy"])
    }
}

extension DiagnosisRecord {
    /// The journal form of a pipeline result.
    public init(_ d: Diagnosis) {
        self.init(
            file: d.file, decision: DecisionKind(rawValue: d.decision.rawValue) ?? .error, crop: d.crop,
            cropConfidence: d.cropConfidence.map(Double.init), disease: d.decision == .unknownCrop ? nil : d.disease,
            confidence: d.decision == .unknownCrop ? nil : d.confidence.map(Double.init),
            top3: d.top3.map { Alternative(label: $0.label, confidence: Double($0.score)) },
            mahalanobis: d.mahalanobis.map(Double.init), threshold: d.threshold.map(Double.init),
            modelVersion: d.modelVersion,
            latencyMs: Latency(
                decode: d.latency.decode, backbone: d.latency.backbone, adapter: d.latency.adapter,
                total: d.latency.total),
            error: d.error.map { Failure(code: $0.code, message: $0.message) })
    }
}
