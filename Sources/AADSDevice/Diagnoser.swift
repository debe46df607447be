import AADSDiagnosis

/// The diagnosis pipeline as the service sees it. Implementations may throw; the service then records an
/// `error` row with the error's code.
public protocol Diagnoser: AnyObject {
    /// The model version every result of this diagnoser carries.
    var modelVersion: String { get }
    /// Diagnoses one JPEG file.
    func diagnose(path: String) throws -> Diagnosis
    /// A decoder that prepares the next image on another thread while this diagnoser works on the current one,
    /// or nil when it decodes only within `diagnose(path:)`.
    func makeDecoder() -> ImageDecoder?
    /// Diagnoses an image prepared by a decoder of `makeDecoder()`.
    func diagnose(prepared: PreparedImage) throws -> Diagnosis
}

extension Diagnoser {
    public func makeDecoder() -> ImageDecoder? { nil }
    public func diagnose(prepared: PreparedImage) throws -> Diagnosis { try diagnose(path: prepared.path) }
}
