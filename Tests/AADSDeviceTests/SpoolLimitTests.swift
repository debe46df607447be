import Foundation
import Testing

@testable import AADSDevice

#if canImport(Glibc)
    import Glibc
#endif

/// Files the service must refuse before reading them in full.
@Suite struct SpoolLimitTests {
    /// A sparse file of `bytes` (cheap on disk), dropped into the spool by rename.
    func dropSparse(into spool: String, name: String, bytes: Int) throws {
        let temp = spool + "/.tmp-" + name
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SpoolError("cannot create \(temp)") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else { throw SpoolError("cannot extend \(temp)") }
        guard rename(temp, spool + "/" + name) == 0 else { throw SpoolError("rename failed") }
    }

    /// A JPEG start with a baseline frame header of `width` × `height`, and nothing after it.
    func jpegHeader(width: Int, height: Int) -> Data {
        var bytes: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00]  // SOI, a tiny APP0
        bytes += [0xFF, 0xC0, 0x00, 0x11, 0x08]  // SOF0, length 17, 8-bit
        bytes += [UInt8(height >> 8), UInt8(height & 0xFF), UInt8(width >> 8), UInt8(width & 0xFF), 3]
        bytes += [1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]
        return Data(bytes)
    }

    @Test func aHugeFileIsRefusedFromItsSizeWithoutBeingRead() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let spool = try Spool(directory: dir.file("spool"))
        try dropSparse(into: spool.directory, name: "huge.jpg", bytes: 2 << 30)
        let clock = Date()
        let error = #expect(throws: SpoolError.self) { try Spool.fingerprint(path: spool.path(of: "huge.jpg")) }
        #expect(error?.code == "too_large")
        #expect(Date().timeIntervalSince(clock) < 1)
    }

    @Test func aFrameAboveThePixelLimitIsRefusedFromItsHeader() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("wide.jpg")
        try jpegHeader(width: 60_000, height: 60_000).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: SpoolError.self) { try Spool.fingerprint(path: path) }
        #expect(error?.code == "too_large")
        #expect(error?.message.contains("60000x60000") == true)
        // Within the limit, the same header is hashed as usual.
        try jpegHeader(width: 4000, height: 3000).write(to: URL(fileURLWithPath: path))
        #expect(try Spool.fingerprint(path: path).sha256.count == 64)
        #expect(Spool.frameSize(jpeg: ArraySlice(jpegHeader(width: 640, height: 480)))! == (640, 480))
    }

    @Test func theServiceMovesAHugeFileToFailedPromptlyAndGoesOn() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let service = try makeService(dir)
        let runner = ServiceRunner(service)
        let spool = service.spool
        let clock = Date()
        try dropSparse(into: spool.directory, name: "huge.jpg", bytes: 2 << 30)
        try dropImage(into: spool.directory, name: "good.jpg", content: "image after the huge one")
        #expect(try eventually(20) { listFiles(spool.failed) == ["huge.jpg"] && listFiles(spool.done) == ["good.jpg"] })
        #expect(Date().timeIntervalSince(clock) < 5)
        let summary = try runner.wait()
        #expect(summary.failed == 1)
        #expect(summary.processed == 1)
        #expect(service.metrics.render().contains("code=\"too_large\""))
    }
}
