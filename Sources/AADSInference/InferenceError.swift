import AADSCore

/// Why a model could not be loaded or run. Codes are stable snake_case strings.
public struct InferenceError: CodedError, Equatable {
    public enum Kind: String, Sendable {
        /// Not a readable ONNX protobuf, or structurally invalid (bad types, inconsistent tensor data).
        case badModel = "bad_model"
        /// Valid ONNX that this engine does not run (old opset, external data, unsupported data types).
        case unsupportedModel = "unsupported_model"
        /// An operator (or an operator configuration) the engine does not implement.
        case unsupportedOperator = "unsupported_operator"
        /// A node reads a tensor that no node, graph input or initializer provides.
        case missingInitializer = "missing_initializer"
        /// Tensor shapes do not fit together.
        case shapeMismatch = "shape_mismatch"
        /// The graph is not a DAG.
        case cycle = "cycle"
        /// A tensor or the memory plan exceeds the engine's limits.
        case tooLarge = "too_large"
        /// A run was given inputs that do not match the model.
        case badInput = "bad_input"
        /// A requested tensor name is not in the model.
        case unknownTensor = "unknown_tensor"
        /// The model file could not be read.
        case ioError = "io_error"
    }

    public let kind: Kind
    public let message: String
    public var code: String { kind.rawValue }

    /// A model file that cannot be read could not run; every other failure refuses the model.
    public var failure: FailureKind { kind == .ioError ? .couldNotRun : .refused }

    /// Messages quote names from the model file: they are kept on one line and at most 400 characters.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        var line = ""
        for scalar in message.unicodeScalars {
            switch scalar {
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            default: line.unicodeScalars.append(scalar.properties.generalCategory == .control ? "?" : scalar)
            }
        }
        self.message = line.count > 400 ? String(line.prefix(400)) + "…" : line
    }
}

@inline(__always)
func fail(_ kind: InferenceError.Kind, _ message: String) -> InferenceError {
    InferenceError(kind, message)
}
