import AADSCore

/// Errors in a model bundle's content or in running the diagnosis pipeline.
/// Every one refuses the bundle (or the golden set it names): the default classification.
public struct DiagnosisError: CodedError, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case badManifest = "bad_manifest"
        case missingFile = "missing_file"
        case badTensor = "bad_tensor"
        case shapeMismatch = "shape_mismatch"
        case unknownCrop = "unknown_crop"
        case unknownLayer = "unknown_layer"
        case unsupportedBundle = "unsupported_bundle"
    }

    public let kind: Code
    public let message: String
    public var code: String { kind.rawValue }

    public init(_ kind: Code, _ message: String) {
        self.kind = kind
        self.message = message
    }

    static func badManifest(_ message: String) -> DiagnosisError { DiagnosisError(.badManifest, message) }
    static func missingFile(_ path: String) -> DiagnosisError {
        DiagnosisError(.missingFile, "bundle file missing: \(path)")
    }
    static func badTensor(_ message: String) -> DiagnosisError { DiagnosisError(.badTensor, message) }
    static func shapeMismatch(_ message: String) -> DiagnosisError { DiagnosisError(.shapeMismatch, message) }
}
