import AADSCore
import Foundation

/// What the pipeline concluded about one image.
public enum Decision: String, Sendable, Codable {
    case diagnosis
    case unknownCrop = "unknown_crop"
    case ood
    case error
}

/// A label with its probability.
public struct ScoredLabel: Sendable, Equatable {
    public var label: String
    public var score: Float
}

/// Per-stage wall time in milliseconds.
public struct StageLatency: Sendable {
    public var decode: Double = 0
    public var backbone: Double = 0
    public var adapter: Double = 0
    public var total: Double = 0
}

/// The result for one image, as printed by `diagnose --json` and stored in the results journal.
public struct Diagnosis: Sendable {
    public var file: String
    public var decision: Decision
    public var crop: String?
    public var cropConfidence: Float?
    public var disease: String?
    public var confidence: Float?
    /// Top alternatives: diseases for `diagnosis`/`ood`, crops for `unknown_crop`.
    public var top3: [ScoredLabel] = []
    public var mahalanobis: Float?
    public var threshold: Float?
    public var modelVersion: String
    public var latency = StageLatency()
    public var error: AnyCodedError?

    public init(file: String, decision: Decision, modelVersion: String) {
        self.file = file
        self.decision = decision
        self.modelVersion = modelVersion
    }

    /// An `error` decision for an image that could not be processed.
    public static func failure(file: String, modelVersion: String, error: any Error) -> Diagnosis {
        var result = Diagnosis(file: file, decision: .error, modelVersion: modelVersion)
        result.error = AnyCodedError(error)
        return result
    }

    /// The JSON object of `diagnose --json`.
    public var jsonObject: [String: Any] {
        var object: [String: Any] = ["file": file, "decision": decision.rawValue, "model_version": modelVersion]
        if let error {
            object["error"] = error.jsonObject
            return object
        }
        func number(_ value: Float?) -> Any { value.map { JSONLine.rounded(Double($0), 4) } ?? NSNull() }
        object["crop"] = crop ?? NSNull()
        object["crop_confidence"] = number(cropConfidence)
        object["disease"] = disease ?? NSNull()
        object["confidence"] = number(confidence)
        object["top3"] = top3.map {
            ["label": $0.label, "confidence": JSONLine.rounded(Double($0.score), 4)] as [String: Any]
        }
        object["mahalanobis"] = number(mahalanobis)
        object["threshold"] = number(threshold)
        object["latency_ms"] = [
            "decode": JSONLine.rounded(latency.decode), "backbone": JSONLine.rounded(latency.backbone),
            "adapter": JSONLine.rounded(latency.adapter), "total": JSONLine.rounded(latency.total),
        ]
        return object
    }
}
