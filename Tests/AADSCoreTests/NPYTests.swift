import Foundation
import Testing

@testable import AADSCore

@Suite struct NPYTests {
    @Test func roundTripsFloat32() throws {
        let array = NPYArray(shape: [1, 3, 2, 2], floats: (0..<12).map { Float($0) * 0.5 - 1 })
        let decoded = try NPY.decode(NPY.encode(array))
        #expect(decoded == array)
        #expect(decoded.floats()[3] == 0.5)
    }

    @Test func headerIsPaddedTo64Bytes() {
        let data = NPY.encode(NPYArray(shape: [5], int8: [1, 2, 3, 4, 5]))
        #expect((data.count - 5) % 64 == 0)
    }

    @Test func refusesGarbageAndTruncation() {
        #expect(throws: NPYError.self) { try NPY.decode(Data([1, 2, 3])) }
        var data = NPY.encode(NPYArray(shape: [4], floats: [1, 2, 3, 4]))
        data.removeLast(3)
        #expect(throws: NPYError.self) { try NPY.decode(data) }
    }
}

@Suite struct DurableFileTests {
    @Test func atomicWriteReplacesContent() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("aads-core-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.json"
        try AtomicFile.write(Data("one".utf8), to: path)
        try AtomicFile.write(Data("two".utf8), to: path)
        #expect(String(decoding: FileManager.default.contents(atPath: path)!, as: UTF8.self) == "two")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["state.json"])
    }

    @Test func tornLastLineIsIgnored() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("aads-log-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try DurableLog.append(line: "{\"a\":1}", to: path)
        try DurableLog.append(line: "{\"b\":2}", to: path)
        let handle = FileHandle(forWritingAtPath: path)!
        handle.seekToEndOfFile()
        handle.write(Data("{\"c\":".utf8))
        handle.closeFile()
        #expect(DurableLog.readLines(path) == ["{\"a\":1}", "{\"b\":2}"])
    }
}
