import AADSSlots
import AADSTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A FIFO given where a file is expected is refused at once, never waited on.
@Suite struct FIFOInputTests {
    /// Runs the CLI, killing it after `timeout` seconds; `timedOut` tells a hang from an answer.
    func runWithTimeout(_ args: [String], timeout: Double = 20) throws -> (
        status: Int32, timedOut: Bool, stdout: String
    ) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestBinary.aadsEdge)
        process.arguments = args
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("fifo-out-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = FileHandle.nullDevice
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        try process.run()
        let timedOut = finished.wait(timeout: .now() + timeout) == .timedOut
        if timedOut {
            kill(process.processIdentifier, SIGKILL)
            finished.wait()
        }
        return (process.terminationStatus, timedOut, (try? String(contentsOf: out, encoding: .utf8)) ?? "")
    }

    @Test func fileByteSourceRefusesAFIFOWithoutBlocking() throws {
        let dir = tempDirectory("fifo-source")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/b.fifo"
        #expect(mkfifo(fifo, 0o644) == 0)
        let finished = DispatchSemaphore(value: 0)
        let box = ErrorBox()
        Thread {
            do { _ = try FileByteSource(path: fifo) } catch { box.error = error as? SlotError }
            finished.signal()
        }.start()
        guard finished.wait(timeout: .now() + 10) == .success else {
            Issue.record("opening a FIFO blocked")
            return
        }
        #expect(box.error?.code == "bad_archive")
    }

    @Test func everyCommandTakingAFileAnswersPromptlyOnAFIFO() throws {
        guard TestBinary.isBuilt else { return }
        let dir = tempDirectory("fifo-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/b.fifo"
        #expect(mkfifo(fifo, 0o644) == 0)
        let commands: [[String]] = [
            ["bundle", "verify", fifo, "--trusted", Fixtures.trusted, "--json"],
            ["slot", "install", fifo, "--root", dir + "/root", "--trusted", Fixtures.trusted, "--json"],
            ["decode", fifo, "--json"],
            ["model", "info", fifo, "--json"],
            ["diagnose", fifo, "--bundle", Fixtures.repositoryPath("firmware-config/factory-bundle"), "--json"],
        ]
        for args in commands {
            let result = try runWithTimeout(args)
            #expect(!result.timedOut, "\(args.prefix(2).joined(separator: " ")) hung on a FIFO")
            #expect(result.status != 0, "\(args.prefix(2).joined(separator: " ")) accepted a FIFO")
            #expect(result.stdout.contains("\"error\""), "\(args.prefix(2).joined(separator: " ")): \(result.stdout)")
        }
        // The store lock was released: a second install answers as promptly.
        let again = try runWithTimeout([
            "slot", "install", fifo, "--root", dir + "/root", "--trusted", Fixtures.trusted,
        ])
        #expect(!again.timedOut)
    }
}

final class ErrorBox: @unchecked Sendable {
    var error: SlotError?
}
