import AADSDiagnosis

/// The diagnosis pipeline as the service sees it. Implementations may throw; the service then records an
/// `error` row with the error's code.
public protocol Diagnoser: AnyObject {
    /// The model version every result of this diagnoser carries.
    var modelVersion: String { get }
    /// Diagnoses one JPEG file.
    func diagnose(path: String) throws -> Diagnosis
}
