import AADSCore

/// Errors in a model bundle's content or in running the diagnosis pipeline.
public struct DiagnosisError: CodedError {
    public let code: String
    public let message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    static func badManifest(_ message: String) -> DiagnosisError { DiagnosisError("bad_manifest", message) }
    static func missingFile(_ path: String) -> DiagnosisError {
        DiagnosisError("missing_file", "bundle file missing: \(path)")
    }
    static func badTensor(_ message: String) -> DiagnosisError { DiagnosisError("bad_tensor", message) }
    static func shapeMismatch(_ message: String) -> DiagnosisError { DiagnosisError("shape_mismatch", message) }
}
