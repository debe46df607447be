import AADSCore
import AADSDiagnosis
import AADSTestSupport
import Foundation
import Testing

@testable import AADSDevice

#if canImport(Glibc)
    import Glibc
#endif

/// Drives the real `aads-edge` binary (TestBinary.aadsEdge) with the synthetic diagnoser (`AADS_FAKE_DIAGNOSER=1`).
enum CLI {
    static func start(_ arguments: [String], environment extra: [String: String] = [:], stderr: String? = nil) throws
        -> Process
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestBinary.aadsEdge)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["AADS_FAKE_DIAGNOSER"] = "1"
        env["AADS_LOG_LEVEL"] = "warning"
        env.removeValue(forKey: "NOTIFY_SOCKET")
        for (k, v) in extra { env[k] = v }
        process.environment = env
        process.standardOutput = FileHandle.nullDevice
        if let stderr {
            _ = FileManager.default.createFile(atPath: stderr, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: stderr)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        return process
    }

    /// Runs to completion; returns (status, stdout).
    static func run(_ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestBinary.aadsEdge)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

@Suite(.serialized) struct ProcessTests {
    func runArguments(_ dir: TempDir) -> [String] {
        let config = dir.file("device.json")
        let json =
            #"{"state_dir": "\#(dir.file("state"))", "gpio": {"backend": "off"}, "queue": {"capacity": 100000, "poll_interval_ms": 50}, "metrics": {"interval_s": 0.5}}"#
        _ = FileManager.default.createFile(atPath: config, contents: Data(json.utf8))
        return [
            "run", "--config", config, "--spool", dir.file("spool"), "--journal", dir.file("results.sqlite"),
            "--metrics-file", dir.file("aads.prom"), "--root", dir.file("slots"),
        ]
    }

    @Test func binaryIsBuilt() {
        #expect(
            FileManager.default.isExecutableFile(atPath: TestBinary.aadsEdge),
            "aads-edge not found at \(TestBinary.aadsEdge); run swift build first")
    }

    @Test func killNineAtRandomMomentsLeavesExactlyOneRowPerImage() throws {
        guard FileManager.default.isExecutableFile(atPath: TestBinary.aadsEdge) else {
            Issue.record("aads-edge not built at \(TestBinary.aadsEdge)")
            return
        }
        let dir = TempDir("aads-kill")
        defer { dir.cleanup() }
        let spool = dir.file("spool")
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        // 400 images keep the suite quick; `AADS_KILL_TEST_IMAGES=1000` (or tools/bench/service --kill) runs the full size.
        let count = ProcessInfo.processInfo.environment["AADS_KILL_TEST_IMAGES"].flatMap(Int.init) ?? 400
        for i in 0..<count {
            try dropImage(
                into: spool, name: String(format: "k-%04d.jpg", i),
                content: i % 89 == 0 ? "CORRUPT \(i)" : "kill test \(i)")
        }
        var rng = SplitMix64(seed: 99)
        var kills = 0
        var finished = false
        for _ in 0..<300 {
            let process = try CLI.start(
                runArguments(dir) + ["--exit-when-idle"], environment: ["AADS_FAKE_DELAY_MS": "1"])
            let delay = 0.03 + rng.unit() * 0.25
            let exited = DispatchSemaphore(value: 0)
            process.terminationHandler = { _ in exited.signal() }
            if exited.wait(timeout: .now() + delay) == .timedOut {
                kill(process.processIdentifier, SIGKILL)
                exited.wait()
                // The run may have finished on its own between the timeout and the kill.
                if process.terminationReason == .uncaughtSignal {
                    kills += 1
                    continue
                }
            }
            #expect(process.terminationStatus == 0)
            finished = true
            break
        }
        #expect(finished)
        #expect(kills >= 3)
        let journal = try ResultsJournal(path: dir.file("results.sqlite"), create: false)
        let rows = try journal.rows()
        #expect(rows.count == count)
        #expect(Set(rows.map(\.imageSHA256)).count == count)
        let s = try Spool(directory: spool)
        #expect(try s.pending().isEmpty)
        let moved = listFiles(s.done) + listFiles(s.failed)
        #expect(moved.count == count)
        #expect(listFiles(s.failed).count == (count + 88) / 89)  // 0, 89, 178, …
        // Every image — wherever it ended — has exactly one row, by content.
        var bySha: [String: Int] = [:]
        for row in rows { bySha[row.imageSHA256, default: 0] += 1 }
        for name in listFiles(s.done) { #expect(bySha[try Spool.sha256(path: s.done + "/" + name)] == 1) }
        for name in listFiles(s.failed) { #expect(bySha[try Spool.sha256(path: s.failed + "/" + name)] == 1) }
    }

    @Test func sigtermDrainsTheImageInHandAndExitsZero() throws {
        guard FileManager.default.isExecutableFile(atPath: TestBinary.aadsEdge) else {
            Issue.record("aads-edge not built at \(TestBinary.aadsEdge)")
            return
        }
        let dir = TempDir("aads-term")
        defer { dir.cleanup() }
        let spool = dir.file("spool")
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        for i in 0..<50 { try dropImage(into: spool, name: String(format: "t-%02d.jpg", i), content: "term \(i)") }
        let fake = try FakeNotifySocket(abstract: true, directory: dir.path)
        let process = try CLI.start(
            runArguments(dir), environment: ["AADS_FAKE_DELAY_MS": "100", "NOTIFY_SOCKET": fake.address])
        #expect(fake.receive()?.hasPrefix("READY=1") == true)
        let journal = dir.file("results.sqlite")
        #expect(eventually(10) { ((try? ResultsJournal(path: journal, create: false).count()) ?? 0) >= 2 })
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        #expect(fake.receive(until: "STOPPING=1").last?.hasPrefix("STOPPING=1") == true)
        // Stopped early, and every moved image has its row; nothing half-done.
        let rows = try ResultsJournal(path: journal, create: false).rows()
        let done = listFiles(spool + "/done")
        #expect(rows.count == done.count)
        #expect(rows.count < 50)
        #expect(try Spool(directory: spool).pending().count == 50 - rows.count)
    }

    @Test func configErrorRefusesToStart() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let config = dir.file("bad.json")
        _ = FileManager.default.createFile(
            atPath: config, contents: Data(#"{"gpio": {"lines": {"green": "17"}}}"#.utf8))
        let (status, output) = try CLI.run(["run", "--config", config, "--spool", dir.file("s")])
        #expect(status == 2)
        #expect(output.contains("gpio.lines.green: expected an integer"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("s")))
    }

    @Test func resultsAndABCommandsReadTheJournal() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("r.sqlite")
        let journal = try ResultsJournal(path: path)
        let record = Diagnosis(
            file: "a.jpg", decision: .ood, crop: "corn", cropConfidence: 0.9, modelVersion: "1.0.0")
        for i in 0..<3 { try journal.insert(record, imageSHA256: String(format: "%064x", i), slot: "a") }
        let (s1, csv) = try CLI.run(["results", "export", "--journal", path, "--format", "csv"])
        #expect(s1 == 0)
        #expect(csv.split(separator: "\n").count == 4)
        let (s2, marked) = try CLI.run(["results", "mark-synced", "--journal", path, "--ids", "1,3", "--json"])
        #expect(s2 == 0)
        #expect(marked.trimmingCharacters(in: .whitespacesAndNewlines) == #"{"marked":2}"#)
        let (s3, listed) = try CLI.run(["results", "list", "--journal", path, "--unsynced", "--json"])
        #expect(s3 == 0)
        #expect(listed.split(separator: "\n").count == 1)
        #expect(listed.contains(#""id":2"#))
        let (s4, ab) = try CLI.run(["ab", "report", "--journal", path])
        #expect(s4 == 0)
        #expect(ab.contains("no A/B samples"))
        let (s5, missing) = try CLI.run(["results", "list", "--journal", dir.file("none.sqlite"), "--json"])
        #expect(s5 == 2)
        #expect(missing.contains(#""code":"journal_not_found""#))
    }
}
