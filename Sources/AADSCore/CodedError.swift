import Foundation

/// An error that every layer of AADS Edge can report the same way: a stable machine-readable code,
/// a one-line human message, and a JSON form (`{"code": ..., "message": ...}`).
public protocol CodedError: Error, CustomStringConvertible, Sendable {
    /// Stable snake_case identifier, e.g. `corrupt_jpeg`, `unsupported_operator`, `bad_signature`.
    var code: String { get }
    /// One line, no trailing period required, meant for a person.
    var message: String { get }
}

extension CodedError {
    public var description: String { "\(code): \(message)" }

    /// The `{"code": ..., "message": ...}` object printed by `--json`.
    public var jsonObject: [String: String] { ["code": code, "message": message] }
}

/// Wraps any error as a `CodedError`, keeping the code of errors that already have one.
public struct AnyCodedError: CodedError, Equatable, Codable {
    public let code: String
    public let message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public init(_ error: any Error) {
        if let coded = error as? any CodedError {
            self.code = coded.code
            self.message = coded.message
        } else {
            self.code = "internal"
            self.message = String(describing: error)
        }
    }
}
