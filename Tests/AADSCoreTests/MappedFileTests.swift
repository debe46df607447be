import Foundation
import Testing

@testable import AADSCore

@Suite struct MappedFileTests {
    func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mapped-\(UUID().uuidString)").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func mapsTheWholeFileAndStaysReadableAfterRelease() throws {
        let page = MappedFile.pageSize
        let content = (0..<(3 * page + 123)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let path = try temporaryFile(content)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try MappedFile(path: path)
        #expect(Array(file.bytes) == content)
        file.release(page / 2..<(2 * page + 5))  // only the page wholly inside is dropped
        #expect(Array(file.bytes) == content)
        file.release(0..<content.count)  // everything, the partial last page included
        #expect(Array(file.bytes) == content)
    }

    @Test func anEmptyFileHasNoBytes() throws {
        let path = try temporaryFile([])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try MappedFile(path: path)
        #expect(file.bytes.isEmpty)
        file.release(0..<10)
    }

    @Test func aMissingFileOrADirectoryIsAFailureWithTheSystemsReason() {
        let missing = #expect(throws: MappedFile.Failure.self) { try MappedFile(path: "/nonexistent/model.onnx") }
        #expect(missing?.reason == "No such file or directory")
        let directory = #expect(throws: MappedFile.Failure.self) { try MappedFile(path: "/") }
        #expect(directory?.reason == "not a regular file")
    }
}
