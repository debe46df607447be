import AADSTestSupport
import Foundation
import Testing

/// `--policy` and the default `health.json` as the `aads-edge` process sees them.
@Suite struct PolicyCommandTests {
    /// Runs the CLI in `directory`; returns its exit status, standard output and standard error.
    func run(_ arguments: [String], in directory: String) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestBinary.aadsEdge)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        var environment = ProcessInfo.processInfo.environment
        environment["AADS_CONFIG_DIR"] = nil
        process.environment = environment
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (
            process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self)
        )
    }

    func error(_ stdout: String) throws -> [String: String] {
        let object = try JSONSerialization.jsonObject(
            with: Data(stdout.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
        return try #require((object as? [String: Any])?["error"] as? [String: String])
    }

    @Test(arguments: [["health"], ["slot", "activate"]])
    func aMissingPolicyFileIsRefused(command: [String]) throws {
        try #require(FileManager.default.isExecutableFile(atPath: TestBinary.aadsEdge), "aads-edge not built")
        let s = Scratch()
        defer { s.cleanup() }
        try FileManager.default.createDirectory(atPath: s.path + "/store", withIntermediateDirectories: true)
        let missing = s.path + "/no/such.json"
        let r = try run(command + ["--root", s.path + "/store", "--policy", missing, "--json"], in: s.path)
        #expect(r.status == 2)
        let e = try error(r.stdout)
        #expect(e["code"] == "not_found")
        #expect(e["message"]?.contains(missing) == true)
    }

    @Test func theBuiltInThresholdsAreUsedOnlyWithAWarning() throws {
        try #require(FileManager.default.isExecutableFile(atPath: TestBinary.aadsEdge), "aads-edge not built")
        try #require(!FileManager.default.fileExists(atPath: "/etc/aads-edge/health.json"))
        let s = Scratch()
        defer { s.cleanup() }
        try FileManager.default.createDirectory(atPath: s.path + "/store", withIntermediateDirectories: true)
        // No firmware-config in this working directory nor next to the built executable.
        let r = try run(["health", "--root", s.path + "/store", "--json"], in: s.path)
        #expect(r.stderr.contains("warning: no health.json found"))
        #expect(r.stderr.contains("built-in thresholds"))
        #expect(r.status == 2)  // the empty store holds no model
    }
}

/// `health` arguments that cannot run: exit 2 with a usage or not-found code.
@Suite struct HealthArgumentTests {
    @Test func aMissingBundleOrAnUnknownSlotCannotRun() throws {
        try #require(FileManager.default.isExecutableFile(atPath: TestBinary.aadsEdge), "aads-edge not built")
        let s = Scratch()
        defer { s.cleanup() }
        let tests = PolicyCommandTests()
        let policy = URL(fileURLWithPath: Fixtures.factoryBundle).deletingLastPathComponent().path + "/health.json"
        let missing = s.path + "/no-bundle"
        let bundle = try tests.run(["health", "--bundle", missing, "--policy", policy, "--json"], in: s.path)
        #expect(bundle.status == 2)
        #expect(try tests.error(bundle.stdout)["code"] == "not_found")
        #expect(try tests.error(bundle.stdout)["message"]?.contains(missing) == true)

        try FileManager.default.createDirectory(atPath: s.path + "/store", withIntermediateDirectories: true)
        let slot = try tests.run(
            ["health", "--root", s.path + "/store", "--slot", "c", "--policy", policy, "--json"], in: s.path)
        #expect(slot.status == 2)
        #expect(try tests.error(slot.stdout)["code"] == "bad_argument")
    }
}
