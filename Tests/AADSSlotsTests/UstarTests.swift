import AADSTestSupport
import Foundation
import Testing

@testable import AADSSlots

@Suite struct UstarTests {
    @Test func readsPythonTarfileArchiveExactly() throws {
        let (members, _) = try Fixtures.corpus()
        let entries = try Ustar.read(FileByteSource(path: Fixtures.bundles + "/good.tar"))
        #expect(entries.map(\.path) == members.map { $0["path"] as? String ?? "" })
        #expect(
            entries.map { $0.kind == .directory ? "directory" : "file" } == members.map { $0["type"] as? String ?? "" })
        #expect(entries.map { Int($0.size) } == members.map { $0["size"] as? Int ?? -1 })
    }

    @Test func writerRoundTripsAndIsReadableAsUstar() throws {
        let files: [(String, Data)] = [
            ("a.txt", Data("hello".utf8)), ("dir/b.bin", Data(repeating: 7, count: 1000)),
            (String(repeating: "p", count: 90) + "/" + String(repeating: "n", count: 60), Data("long".utf8)),
        ]
        var archive = Data()
        for (path, data) in files {
            archive.append(contentsOf: try Ustar.header(path: path, kind: .file, size: UInt64(data.count), mode: 0o644))
            archive.append(data)
            archive.append(Ustar.padding(for: UInt64(data.count)))
        }
        archive.append(Ustar.trailer)
        let entries = try Ustar.read(DataByteSource(archive))
        #expect(entries.map(\.path) == files.map(\.0))
        for (entry, (_, data)) in zip(entries, files) {
            #expect(entry.size == UInt64(data.count))
            let start = Int(entry.dataOffset)
            #expect(archive.subdata(in: start..<start + data.count) == data)
        }
        // Header layout checked against the POSIX field positions, not our reader.
        let h = try Ustar.header(path: "x", kind: .file, size: 5, mode: 0o644)
        #expect(String(decoding: h[124..<135], as: UTF8.self) == "00000000005")
        #expect(String(decoding: h[257..<262], as: UTF8.self) == "ustar")
        let sum = h.enumerated().reduce(0) { $0 + Int((148..<156).contains($1.offset) ? 32 : $1.element) }
        #expect(String(decoding: h[148..<154], as: UTF8.self) == String(format: "%06o", sum))
    }

    @Test func refusesPathsThatCannotBeSplit() {
        #expect(throws: SlotError.self) {
            try Ustar.header(path: String(repeating: "x", count: 150), kind: .file, size: 0, mode: 0o644)
        }
    }

    @Test func normalisesAndRefusesUnsafePaths() throws {
        #expect(try Ustar.normalise("./a/b") == "a/b")
        #expect(try Ustar.normalise("./") == nil)
        #expect(try Ustar.normalise("dir/", directory: true) == "dir")
        for bad in ["/abs", "../x", "a/../b", "a//b", "a/./b", "a\u{1}b", "a/.."] {
            #expect(throws: SlotError.self, "\(bad)") { try Ustar.normalise(bad) }
        }
    }

    @Test func strictOctal() throws {
        #expect(try Ustar.octal(ArraySlice(Array("0000644 \0".utf8)), field: "m", at: 0) == 0o644)
        #expect(try Ustar.octal(ArraySlice(Array("  17\0\0".utf8)), field: "m", at: 0) == 0o17)
        #expect(throws: SlotError.self) { try Ustar.octal(ArraySlice(Array("0008".utf8)), field: "m", at: 0) }
        #expect(throws: SlotError.self) { try Ustar.octal(ArraySlice(Array("12 3".utf8)), field: "m", at: 0) }
        #expect(throws: SlotError.self) { try Ustar.octal(ArraySlice([0x80, 0, 0, 1]), field: "size", at: 0) }
    }

    @Test func entryCountAndSizeLimits() throws {
        var archive = Data()
        for i in 0..<5 {
            archive.append(contentsOf: try Ustar.header(path: "f\(i)", kind: .file, size: 10, mode: 0o644))
            archive.append(Data(count: 512))
        }
        archive.append(Ustar.trailer)
        #expect(try Ustar.read(DataByteSource(archive)).count == 5)
        #expect(code { try Ustar.read(DataByteSource(archive), limits: BundleLimits(maxEntries: 4)) } == "too_large")
        #expect(code { try Ustar.read(DataByteSource(archive), limits: BundleLimits(maxFileSize: 9)) } == "too_large")
        #expect(code { try Ustar.read(DataByteSource(archive), limits: BundleLimits(maxTotalSize: 40)) } == "too_large")
    }

    @Test func fileUsedAsDirectoryIsRefused() throws {
        var archive = Data()
        for path in ["a", "a/b"] {
            archive.append(contentsOf: try Ustar.header(path: path, kind: .file, size: 0, mode: 0o644))
        }
        archive.append(Ustar.trailer)
        #expect(code { try Ustar.read(DataByteSource(archive)) } == "duplicate_entry")
    }

    @Test func dataAfterTheEndOfArchiveMarkerIsRefused() throws {
        let good = try Data(contentsOf: URL(fileURLWithPath: Fixtures.bundles + "/good.tar"))
        #expect(code { try Ustar.read(DataByteSource(good + Data(count: 4096))) } == nil)  // zero padding
        #expect(code { try Ustar.read(DataByteSource(good + Data("appended".utf8))) } == "trailing_data")
        // Garbage inside the record padding, right after the marker's first block.
        let marker = Int(try #require(Ustar.read(DataByteSource(good)).last).dataOffset + 512)
        var inside = good
        inside[inside.startIndex + marker + 600] = 0x41
        #expect(code { try Ustar.read(DataByteSource(inside)) } == "trailing_data")
        // The whole bundle is refused, before anything is verified or written.
        let path = tempDirectory("trailing") + "/trailing.tar"
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        try (good + Data(repeating: 0x55, count: 700)).write(to: URL(fileURLWithPath: path))
        let verifier = try BundleVerifier(trustedDirectory: Fixtures.trusted)
        #expect(code { try verifier.verify(path: path) } == "trailing_data")
    }

    @Test func everyTruncationOfAGoodArchiveIsRefusedCleanly() throws {
        let good = try Data(contentsOf: URL(fileURLWithPath: Fixtures.bundles + "/good.tar"))
        let end = try #require(Ustar.read(DataByteSource(good)).last).dataOffset
        // Every cut before the last member's data is complete must be refused, never crash.
        for cut in stride(from: 0, to: Int(end), by: 37) {
            #expect(code { try Ustar.read(DataByteSource(good.prefix(cut))) } == "truncated_archive", "cut \(cut)")
        }
    }
}

/// The error code thrown by `body`, or nil.
func code(_ body: () throws -> Any) -> String? {
    do {
        _ = try body()
        return nil
    } catch let error as SlotError {
        return error.code
    } catch {
        return "other: \(error)"
    }
}
