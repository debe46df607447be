import Foundation
import Testing

@testable import AADSDevice

#if canImport(Glibc)
    import Glibc
#endif

/// Spool entries that are not plain files: never followed, never read, never left behind.
@Suite struct SpoolEntryTests {
    @Test func aSymlinkIsNeverFollowedAndItsTargetNeverRead() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let secret = dir.file("secret")
        try Data("SECRET-CONTENT".utf8).write(to: URL(fileURLWithPath: secret))
        let spool = try Spool(directory: dir.file("spool"))
        #expect(symlink(secret, spool.path(of: "passwd.jpg")) == 0)
        #expect(try spool.pending() == ["passwd.jpg"])
        let error = #expect(throws: SpoolError.self) { try Spool.fingerprint(path: spool.path(of: "passwd.jpg")) }
        #expect(error?.code == "not_regular_file")
        #expect(error?.message.contains("SECRET") == false)
    }

    @Test func aFIFOIsRefusedWithoutBlocking() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let spool = try Spool(directory: dir.file("spool"))
        #expect(mkfifo(spool.path(of: "pipe.jpg"), 0o644) == 0)
        // On a thread, so a regression that blocks in open() fails the test instead of hanging it.
        let path = spool.path(of: "pipe.jpg")
        let box = ResultBox()
        let finished = DispatchSemaphore(value: 0)
        Thread {
            box.result = Result { try Spool.fingerprint(path: path) }
            finished.signal()
        }.start()
        guard finished.wait(timeout: .now() + 10) == .success else {
            Issue.record("fingerprint blocked on a FIFO")
            return
        }
        #expect(throws: SpoolError.self) { try box.result?.get() }
        let error = box.error
        #expect(error?.code == "not_regular_file")
        #expect(error?.message.contains("FIFO") == true)
    }

    @Test func everyOddEntryGoesToFailedAndTheGoodImageIsProcessed() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let secret = dir.file("secret")
        try Data("SECRET-CONTENT".utf8).write(to: URL(fileURLWithPath: secret))
        let service = try makeService(dir)
        let spool = service.spool
        #expect(symlink(secret, spool.path(of: "passwd.jpg")) == 0)
        #expect(symlink(dir.file("missing"), spool.path(of: "dangling.jpg")) == 0)
        #expect(symlink(dir.path, spool.path(of: "dirlink.jpg")) == 0)
        #expect(mkfifo(spool.path(of: "pipe.jpg"), 0o644) == 0)
        #expect(mkdir(spool.path(of: "folder.jpg"), 0o755) == 0)
        // A name that is not UTF-8: "bad\xff.jpg".
        let rawName: [UInt8] = Array(spool.directory.utf8) + Array("/bad".utf8) + [0xFF] + Array(".jpg".utf8) + [0]
        let fd = rawName.withUnsafeBufferPointer {
            $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644) }
        }
        #expect(fd >= 0)
        close(fd)
        try Data("partial".utf8).write(to: URL(fileURLWithPath: spool.path(of: ".partial.jpg")))
        try dropImage(into: spool.directory, name: "good.jpg", content: "a good image")

        let runner = ServiceRunner(service)
        let refused = ["bad%FF.jpg", "dangling.jpg", "dirlink.jpg", "folder.jpg", "passwd.jpg", "pipe.jpg"]
        #expect(try eventually(20) { listFiles(spool.failed) == refused && listFiles(spool.done) == ["good.jpg"] })
        let summary = try runner.wait()
        #expect(summary.failed == refused.count)
        #expect(summary.processed == 1)
        // The links moved as links; their targets are untouched.
        #expect(try String(contentsOfFile: secret, encoding: .utf8) == "SECRET-CONTENT")
        var st = stat()
        #expect(lstat(spool.failed + "/passwd.jpg", &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK)
        #expect(service.metrics.render().contains("code=\"not_regular_file\""))
        #expect(service.metrics.render().contains("code=\"invalid_name\""))
        // Dotfiles are captures still being written: skipped by design, left in place.
        #expect(FileManager.default.fileExists(atPath: spool.path(of: ".partial.jpg")))
    }

    @Test func symlinkedStateDirectoriesAreRefusedAtStart() throws {
        for sub in ["done", "failed", "dropped"] {
            let dir = TempDir()
            defer { dir.cleanup() }
            let spoolDir = dir.file("spool")
            try FileManager.default.createDirectory(atPath: spoolDir, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: dir.file("elsewhere"), withIntermediateDirectories: true)
            #expect(symlink(dir.file("elsewhere"), spoolDir + "/" + sub) == 0)
            let error = #expect(throws: SpoolError.self) { _ = try Spool(directory: spoolDir) }
            #expect(error?.code == "spool_state_dir")
            #expect(error?.message.contains("symbolic link") == true)
            #expect(throws: SpoolError.self) { _ = try makeService(dir) }
        }
    }
}

/// A fingerprint result handed from a background thread.
final class ResultBox: @unchecked Sendable {
    var result: Result<(sha256: String, fileID: String), any Error>?
    var error: SpoolError? {
        guard case .failure(let e)? = result else { return nil }
        return e as? SpoolError
    }
}
