import AADSCore
import Foundation
import Testing

@Suite struct FailureKindTests {
    struct Plain: Error {}

    @Test func eachClassHasItsExitStatus() {
        #expect(FailureKind.refused.exitStatus == 1)
        #expect(FailureKind.couldNotRun.exitStatus == 2)
    }

    @Test func coreErrorsAreClassified() {
        let table: [(any Error, String, FailureKind)] = [
            (FileIOError(.ioError, "x"), "io_error", .couldNotRun),
            (FileIOError("x"), "io_error", .couldNotRun),
            (FileIOError(.notFound, "x"), "not_found", .couldNotRun),
            (FileIOError(.diskFull, "x"), "disk_full", .refused),
            (NPYError("x"), "bad_npy", .refused),
            (Plain(), "internal", .couldNotRun),
            (AnyCodedError(code: "corrupt_jpeg", message: "x"), "corrupt_jpeg", .refused),
            (AnyCodedError(FileIOError(.ioError, "x")), "io_error", .couldNotRun),
            (AnyCodedError(Plain()), "internal", .couldNotRun),
        ]
        for (error, code, failure) in table {
            #expect(AnyCodedError(error).code == code)
            #expect(FailureKind.of(error) == failure, "\(code)")
        }
    }

    @Test func theWireFormOfAnErrorIsCodeAndMessageOnly() throws {
        let error = AnyCodedError(FileIOError(.ioError, "cannot read"))
        let text = String(decoding: try JSONEncoder().encode(error), as: UTF8.self)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String])
        #expect(object == ["code": "io_error", "message": "cannot read"])
        #expect(try JSONDecoder().decode(AnyCodedError.self, from: Data(text.utf8)) == error)
    }
}
