import AADSCore
import Foundation

/// The outcome class of one image.
public enum DecisionKind: String, Sendable, Codable, CaseIterable {
    case diagnosis
    case unknownCrop = "unknown_crop"
    case ood
    case error
}

/// One image's diagnosis as the service records it; the JSON form matches `aads-edge diagnose --json`.
public struct DiagnosisRecord: Sendable, Equatable, Codable {
    /// One of the top alternatives (crops for `unknown_crop`, diseases otherwise).
    public struct Alternative: Sendable, Equatable, Codable {
        public var label: String
        public var confidence: Double

        public init(label: String, confidence: Double) {
            self.label = label
            self.confidence = confidence
        }
    }

    /// Per-stage wall time in milliseconds.
    public struct Latency: Sendable, Equatable, Codable {
        public var decode: Double
        public var backbone: Double
        public var adapter: Double
        public var total: Double

        public init(decode: Double = 0, backbone: Double = 0, adapter: Double = 0, total: Double = 0) {
            self.decode = decode
            self.backbone = backbone
            self.adapter = adapter
            self.total = total
        }
    }

    /// `{code, message}` of a failed image.
    public struct Failure: Sendable, Equatable, Codable {
        public var code: String
        public var message: String

        public init(code: String, message: String) {
            self.code = code
            self.message = message
        }
    }

    public var file: String
    public var decision: DecisionKind
    public var crop: String?
    public var cropConfidence: Double?
    public var disease: String?
    public var confidence: Double?
    public var top3: [Alternative]
    public var mahalanobis: Double?
    public var threshold: Double?
    public var modelVersion: String
    public var latencyMs: Latency
    public var error: Failure?

    enum CodingKeys: String, CodingKey {
        case file, decision, crop
        case cropConfidence = "crop_confidence"
        case disease, confidence, top3, mahalanobis, threshold
        case modelVersion = "model_version"
        case latencyMs = "latency_ms"
        case error
    }

    public init(
        file: String, decision: DecisionKind, crop: String? = nil, cropConfidence: Double? = nil,
        disease: String? = nil, confidence: Double? = nil, top3: [Alternative] = [], mahalanobis: Double? = nil,
        threshold: Double? = nil, modelVersion: String, latencyMs: Latency = Latency(), error: Failure? = nil
    ) {
        self.file = file
        self.decision = decision
        self.crop = crop
        self.cropConfidence = cropConfidence
        self.disease = disease
        self.confidence = confidence
        self.top3 = top3
        self.mahalanobis = mahalanobis
        self.threshold = threshold
        self.modelVersion = modelVersion
        self.latencyMs = latencyMs
        self.error = error
    }

    /// An `error` record for an image the pipeline could not handle.
    public static func failure(file: String, modelVersion: String, error: any Error, totalMs: Double = 0)
        -> DiagnosisRecord
    {
        let coded = AnyCodedError(error)
        return DiagnosisRecord(
            file: file, decision: .error, modelVersion: modelVersion, latencyMs: Latency(total: totalMs),
            error: Failure(code: coded.code, message: coded.message))
    }

    /// True when the image was judged out of distribution (`ood` or `unknown_crop`).
    public var isOutOfDistribution: Bool { decision == .ood || decision == .unknownCrop }

    /// The label compared between versions in A/B: `crop/disease`, or the decision when there is none.
    public var comparisonLabel: String {
        switch decision {
        case .diagnosis: "\(crop ?? "?")/\(disease ?? "?")"
        case .unknownCrop, .ood, .error: decision.rawValue
        }
    }
}

/// The diagnosis pipeline as the service sees it. Implementations may throw; the service then records an
/// `error` row with the error's code.
public protocol Diagnoser: AnyObject {
    /// The model version every record of this diagnoser carries.
    var modelVersion: String { get }
    /// Diagnoses one JPEG file.
    func diagnose(path: String) throws -> DiagnosisRecord
}
