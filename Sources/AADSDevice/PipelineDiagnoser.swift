import AADSDiagnosis
import Foundation

/// The real diagnosis pipeline behind the service's `Diagnoser` protocol.
public final class PipelineDiagnoser: Diagnoser {
    public let pipeline: DiagnosisPipeline

    public init(bundleDirectory: String, options: PipelineOptions = PipelineOptions()) throws {
        pipeline = try DiagnosisPipeline(bundleDirectory: bundleDirectory, options: options)
    }

    public var modelVersion: String { pipeline.manifest.modelVersion }

    public func diagnose(path: String) throws -> Diagnosis {
        pipeline.diagnose(path: path)
    }

    /// With two or more threads, one decodes the next image while the others run the model.
    public func makeDecoder() -> ImageDecoder? { pipeline.options.threads > 1 ? pipeline.makeDecoder() : nil }

    public func diagnose(prepared: PreparedImage) throws -> Diagnosis { pipeline.diagnose(prepared) }

    /// The bundle's own figures, for the latency and accuracy alerts.
    public var baseline: BaselineMetrics {
        let metrics = pipeline.manifest.baselineMetrics ?? [:]
        return BaselineMetrics(latencyMs: metrics["latency_ms"], accuracy: metrics["adapter_accuracy"])
    }
}
