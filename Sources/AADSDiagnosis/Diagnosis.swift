import AADSCore
import Foundation

/// What the pipeline concluded about one image.
public enum Decision: String, Sendable, Codable, CaseIterable {
    case diagnosis
    case unknownCrop = "unknown_crop"
    case ood
    case error
}

/// A label with its probability: one of the top alternatives (crops for `unknown_crop`, diseases otherwise).
public struct ScoredLabel: Sendable, Equatable, Codable {
    public var label: String
    public var confidence: Double

    public init(label: String, confidence: Double) {
        self.label = label
        self.confidence = confidence
    }
}

/// Per-stage wall time in milliseconds.
public struct StageLatency: Sendable, Equatable, Codable {
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

/// The result for one image: what the pipeline returns, what `diagnose --json` prints, what the `Diagnoser`s of
/// the field service return and what the results journal and the report store and read.
///
/// Its JSON form is the one of `diagnose --json`: every key present, `null` for a missing value; an `error` row
/// carries only `file`, `decision`, `model_version` and `error`. Decoding refuses an unknown decision.
public struct Diagnosis: Sendable, Equatable, Codable {
    public var file: String
    public var decision: Decision
    public var crop: String?
    public var cropConfidence: Double?
    public var disease: String?
    public var confidence: Double?
    /// Top alternatives: diseases for `diagnosis`/`ood`, crops for `unknown_crop`.
    public var top3: [ScoredLabel]
    public var mahalanobis: Double?
    public var threshold: Double?
    public var modelVersion: String
    public var latency: StageLatency
    public var error: AnyCodedError?

    public init(
        file: String, decision: Decision, crop: String? = nil, cropConfidence: Double? = nil,
        disease: String? = nil, confidence: Double? = nil, top3: [ScoredLabel] = [], mahalanobis: Double? = nil,
        threshold: Double? = nil, modelVersion: String, latency: StageLatency = StageLatency(),
        error: AnyCodedError? = nil
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
        self.latency = latency
        self.error = error
    }

    /// An `error` decision for an image that could not be processed.
    public static func failure(file: String, modelVersion: String, error: any Error, totalMs: Double = 0)
        -> Diagnosis
    {
        Diagnosis(
            file: file, decision: .error, modelVersion: modelVersion, latency: StageLatency(total: totalMs),
            error: AnyCodedError(error))
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

    // MARK: JSON

    enum CodingKeys: String, CodingKey {
        case file, decision, crop
        case cropConfidence = "crop_confidence"
        case disease, confidence, top3, mahalanobis, threshold
        case modelVersion = "model_version"
        case latency = "latency_ms"
        case error
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        file = try c.decode(String.self, forKey: .file)
        let text = try c.decode(String.self, forKey: .decision)
        guard let decision = Decision(rawValue: text) else {
            throw DecodingError.dataCorruptedError(
                forKey: .decision, in: c, debugDescription: "unknown decision \"\(text)\"")
        }
        self.decision = decision
        crop = try c.decodeIfPresent(String.self, forKey: .crop)
        cropConfidence = try c.decodeIfPresent(Double.self, forKey: .cropConfidence)
        disease = try c.decodeIfPresent(String.self, forKey: .disease)
        confidence = try c.decodeIfPresent(Double.self, forKey: .confidence)
        top3 = try c.decodeIfPresent([ScoredLabel].self, forKey: .top3) ?? []
        mahalanobis = try c.decodeIfPresent(Double.self, forKey: .mahalanobis)
        threshold = try c.decodeIfPresent(Double.self, forKey: .threshold)
        modelVersion = try c.decode(String.self, forKey: .modelVersion)
        latency = try c.decodeIfPresent(StageLatency.self, forKey: .latency) ?? StageLatency()
        error = try c.decodeIfPresent(AnyCodedError.self, forKey: .error)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(file, forKey: .file)
        try c.encode(decision, forKey: .decision)
        try c.encode(modelVersion, forKey: .modelVersion)
        if let error {
            try c.encode(error, forKey: .error)
            return
        }
        try c.encode(crop, forKey: .crop)
        try c.encode(cropConfidence, forKey: .cropConfidence)
        try c.encode(disease, forKey: .disease)
        try c.encode(confidence, forKey: .confidence)
        try c.encode(top3, forKey: .top3)
        try c.encode(mahalanobis, forKey: .mahalanobis)
        try c.encode(threshold, forKey: .threshold)
        try c.encode(latency, forKey: .latency)
    }

    /// The figures as `diagnose --json` prints them: confidences, distances and thresholds to 4 decimals,
    /// latencies as `JSONLine.rounded` leaves them.
    public var rounded: Diagnosis {
        func four(_ value: Double?) -> Double? { value.map { JSONLine.rounded($0, 4) } }
        var copy = self
        copy.cropConfidence = four(cropConfidence)
        copy.confidence = four(confidence)
        copy.top3 = top3.map { ScoredLabel(label: $0.label, confidence: JSONLine.rounded($0.confidence, 4)) }
        copy.mahalanobis = four(mahalanobis)
        copy.threshold = four(threshold)
        copy.latency = StageLatency(
            decode: JSONLine.rounded(latency.decode), backbone: JSONLine.rounded(latency.backbone),
            adapter: JSONLine.rounded(latency.adapter), total: JSONLine.rounded(latency.total))
        return copy
    }

    /// The JSON object of `diagnose --json`: the `Codable` form of `rounded`.
    public var jsonObject: [String: Any] {
        guard let data = try? JSONEncoder().encode(rounded),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return ["file": file, "decision": decision.rawValue, "model_version": modelVersion] }
        return object
    }
}
