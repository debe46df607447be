import AADSCore
import Foundation
import Testing

@testable import AADSDevice

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct SpoolTests {
    @Test func pendingIsOldestFirstAndOnlyVisibleJPEGs() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let spool = try Spool(directory: dir.file("spool"))
        let names = ["c.jpg", "a.JPG", "b.jpeg", "notes.txt", ".partial.jpg"]
        for (i, name) in names.enumerated() {
            let path = spool.path(of: name)
            try Data("x\(i)".utf8).write(to: URL(fileURLWithPath: path))
            // c oldest, then a, then b.
            var times = [
                timespec(tv_sec: 1_700_000_000 + i * 10, tv_nsec: 0),
                timespec(tv_sec: 1_700_000_000 + i * 10, tv_nsec: 0),
            ]
            utimensat(AT_FDCWD, path, &times, 0)
        }
        #expect(try spool.pending() == ["c.jpg", "a.JPG", "b.jpeg"])
        for sub in ["done", "failed", "dropped", ".incoming"] {
            var isDir: ObjCBool = false
            #expect(
                FileManager.default.fileExists(atPath: spool.directory + "/" + sub, isDirectory: &isDir)
                    && isDir.boolValue)
        }
    }

    @Test func moveNeverOverwrites() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let spool = try Spool(directory: dir.file("spool"))
        try dropImage(into: spool.directory, name: "x.jpg", content: "first")
        #expect(try spool.move("x.jpg", to: spool.done) == spool.done + "/x.jpg")
        try dropImage(into: spool.directory, name: "x.jpg", content: "second")
        #expect(try spool.move("x.jpg", to: spool.done) == spool.done + "/x-1.jpg")
        #expect(try spool.move("gone.jpg", to: spool.done) == nil)
        #expect(try String(contentsOfFile: spool.done + "/x.jpg", encoding: .utf8) == "first")
        #expect(try spool.pending().isEmpty)
    }

    @Test func sha256MatchesKnownVectors() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("abc.jpg")
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        #expect(try Spool.sha256(path: path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        try Data().write(to: URL(fileURLWithPath: path))
        #expect(try Spool.sha256(path: path) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(throws: SpoolError.self) { try Spool.sha256(path: dir.file("missing.jpg")) }
    }

    @Test func inotifyWakesOnRenameAndWakeInterrupts() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let spool = try Spool(directory: dir.file("spool"))
        let watcher = SpoolWatcher(directory: spool.directory)
        #expect(watcher.usesInotify)
        #expect(!watcher.wait(timeoutMs: 0))
        try dropImage(into: spool.directory, name: "new.jpg", content: "n")
        #expect(watcher.wait(timeoutMs: 2000))
        #expect(!watcher.wait(timeoutMs: 0))  // drained
        watcher.wake()
        #expect(watcher.wait(timeoutMs: 2000))
        let polling = SpoolWatcher(directory: spool.directory, useInotify: false)
        #expect(!polling.usesInotify)
        #expect(!polling.wait(timeoutMs: 1))
    }

    @Test func captureWritesIntoTheSpoolByRename() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let spool = try Spool(directory: dir.file("spool"))
        let source = dir.file("camera.jpg")
        try Data("JPEGDATA".utf8).write(to: URL(fileURLWithPath: source))
        let runner = CaptureRunner(template: "cp \(source) {path}", spool: spool, timeoutSeconds: 10)
        let date = try #require(ISO8601.parse("2025-06-01T10:20:30.456Z"))
        let path = try runner.capture(at: date)
        #expect(path == spool.directory + "/capture-20250601T102030.456Z.jpg")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "JPEGDATA")
        // A second capture in the same millisecond gets its own name.
        #expect(try runner.capture(at: date) == spool.directory + "/capture-20250601T102030.456Z-1.jpg")
        #expect(listFiles(spool.incoming).isEmpty)
    }

    @Test func failedCaptureLeavesNothingBehind() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let spool = try Spool(directory: dir.file("spool"))
        #expect(throws: SpoolError.self) {
            try CaptureRunner(template: "false {path}", spool: spool, timeoutSeconds: 5).capture()
        }
        #expect(throws: SpoolError.self) {
            try CaptureRunner(template: "true {path}", spool: spool, timeoutSeconds: 5).capture()
        }
        let slow = dir.file("slow-camera.sh")
        try Data("#!/bin/sh\nsleep 5\n".utf8).write(to: URL(fileURLWithPath: slow))
        chmod(slow, 0o755)
        do {
            try CaptureRunner(template: "\(slow) {path}", spool: spool, timeoutSeconds: 0.2).capture()
            Issue.record("a hanging capture command returned")
        } catch let error as SpoolError {
            #expect(error.code == "capture_timeout")
        }
        #expect(try spool.pending().isEmpty)
        #expect(listFiles(spool.incoming).isEmpty)
        #expect(
            CaptureRunner.arguments(template: "libcamera-still  -n -o {path}", path: "/s/x.jpg") == [
                "libcamera-still", "-n", "-o", "/s/x.jpg",
            ])
    }
}
