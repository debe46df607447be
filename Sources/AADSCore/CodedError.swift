import Foundation

/// What a failure means for whoever asked: the tool's exit status (1 or 2) and the service's handling.
public enum FailureKind: String, Sendable, CaseIterable {
    /// A checked condition failed: the input or request was judged and turned down (a damaged image, a refused
    /// bundle or state transition, a model that fails its check). Exit status 1.
    case refused
    /// The work could not be done at all: I/O, a missing or broken file, store, key or configuration, an
    /// argument, an internal error. Exit status 2.
    case couldNotRun = "could_not_run"

    /// The process exit status of this class.
    public var exitStatus: Int32 {
        switch self {
        case .refused: 1
        case .couldNotRun: 2
        }
    }

    /// The class of any error: a `CodedError`'s own, `couldNotRun` for anything else (an `internal` error).
    public static func of(_ error: any Error) -> FailureKind {
        (error as? any CodedError)?.failure ?? .couldNotRun
    }
}

/// An error that every layer of AADS Edge can report the same way: a stable machine-readable code,
/// a one-line human message, a JSON form (`{"code": ..., "message": ...}`) and a class (`failure`).
///
/// Each module's error type draws its codes from its own `Code` (or `Kind`) enum and says which of them
/// refuse and which could not run; the command line maps the class to the exit status in one place.
public protocol CodedError: Error, CustomStringConvertible, Sendable {
    /// Stable snake_case identifier, e.g. `corrupt_jpeg`, `unsupported_operator`, `bad_signature`.
    var code: String { get }
    /// One line, no trailing period required, meant for a person.
    var message: String { get }
    /// Refused (exit 1) or could not run (exit 2). Default: `refused`, what an input that fails a module's
    /// checks is; types whose failures include the environment say which of their codes could not run.
    var failure: FailureKind { get }
}

extension CodedError {
    public var description: String { "\(code): \(message)" }

    public var failure: FailureKind { .refused }

    /// The `{"code": ..., "message": ...}` object printed by `--json`.
    public var jsonObject: [String: String] { ["code": code, "message": message] }
}

/// Wraps any error as a `CodedError`, keeping the code and class of errors that already have them. Its JSON
/// form is `{"code", "message"}`; equality compares those two.
public struct AnyCodedError: CodedError, Equatable, Codable {
    public let code: String
    public let message: String
    public var failure: FailureKind = .refused

    enum CodingKeys: String, CodingKey {
        case code, message
    }

    public init(code: String, message: String, failure: FailureKind = .refused) {
        self.code = code
        self.message = message
        self.failure = failure
    }

    public init(_ error: any Error) {
        if let coded = error as? any CodedError {
            self.code = coded.code
            self.message = coded.message
            self.failure = coded.failure
        } else {
            self.code = "internal"
            self.message = String(describing: error)
            self.failure = .couldNotRun
        }
    }

    public static func == (a: AnyCodedError, b: AnyCodedError) -> Bool {
        a.code == b.code && a.message == b.message
    }
}
