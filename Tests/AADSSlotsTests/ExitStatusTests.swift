import AADSCore
import AADSSlots
import AADSTestSupport
import Foundation
import Testing

/// Error → class → exit status, at the level of the slot layer's codes and of the command line.
@Suite struct ExitStatusTests {
    /// The slot layer's codes that mean "could not run"; every other one refuses (exit 1 in `bundle` and
    /// `slot`), `disk_full` included.
    static let couldNotRun: Set<String> = ["io_error", "no_trusted_keys", "bad_key", "bad_argument", "not_found"]

    @Test func everySlotErrorKindHasItsClass() {
        for kind in SlotError.Kind.allCases {
            let expected: FailureKind = Self.couldNotRun.contains(kind.rawValue) ? .couldNotRun : .refused
            #expect(SlotError(kind, "x").failure == expected, "\(kind.rawValue)")
            #expect(FailureKind.of(SlotError(kind, "x")) == expected, "\(kind.rawValue)")
        }
    }

    /// The same mapping seen from outside: status and the `--json` error code of each command.
    @Test func commandsExitWithTheClassOfTheirError() throws {
        guard TestBinary.isBuilt else { return }
        let dir = tempDirectory("exit-status")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/no-keys", withIntermediateDirectories: true)
        let factory = Fixtures.repositoryPath("firmware-config/factory-bundle")
        let table: [(args: [String], status: Int32, code: String)] = [
            (
                ["bundle", "verify", Fixtures.bundles + "/bad-signature.tar", "--trusted", Fixtures.trusted], 1,
                "bad_signature"
            ),
            (
                ["bundle", "verify", Fixtures.bundles + "/good.tar", "--trusted", dir + "/no-keys"], 2,
                "no_trusted_keys"
            ),
            (
                ["bundle", "verify", Fixtures.bundles + "/good.tar", "--trusted", Fixtures.trusted, "--floor", "x"], 2,
                "bad_argument"
            ),
            (["slot", "status", "--root", dir + "/no-store"], 2, "not_found"),
            (["slot", "commit", "--root", dir + "/no-store"], 2, "not_found"),
            (["drill", "--scenario", "nonsense"], 2, "bad_argument"),
            // A missing bundle file is the same code as in `bundle verify`, but `diagnose` could not run.
            (["diagnose", dir + "/a.jpg", "--bundle", dir + "/no-bundle"], 2, "missing_file"),
            (["model", "info", dir + "/missing.onnx"], 1, "io_error"),
            (["diagnose", dir + "/missing.jpg", "--bundle", factory], 1, ""),
            (
                [
                    "slot", "install", Fixtures.bundles + "/hash-mismatch.tar", "--root", dir + "/r", "--trusted",
                    Fixtures.trusted,
                ], 1, "hash_mismatch"
            ),
            (["bundle", "keygen", "--out", dir + "/no-dir/key"], 2, "io_error"),
            (["results", "list", "--journal", dir + "/none.db"], 2, "journal_not_found"),
            (["health", "--bundle", dir + "/no-bundle"], 2, "not_found"),
            (["decode", "--size", "0", dir + "/a.jpg"], 2, ""),
        ]
        for row in table {
            let result = try TestBinary.run(row.args + ["--json"])
            let name = row.args.prefix(2).joined(separator: " ")
            #expect(result.status == row.status, "\(name): \(result.stdout)")
            guard !row.code.isEmpty else { continue }
            let line = try #require(result.stdout.split(separator: "\n").last.map(String.init), "\(name)")
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect((object?["error"] as? [String: Any])?["code"] as? String == row.code, "\(name): \(line)")
        }
    }

    /// Commands without `--json` report on standard error, in the same one-line form.
    @Test func commandsWithoutJSONReportOnStandardError() throws {
        guard TestBinary.isBuilt else { return }
        let dir = tempDirectory("exit-status-text")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let table: [(args: [String], status: Int32, code: String)] = [
            (["results", "export", "--journal", dir + "/none.db"], 2, "journal_not_found"),
            (["run", "--config", dir + "/none.json"], 2, "bad_config"),
        ]
        for row in table {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: TestBinary.aadsEdge)
            process.arguments = row.args
            let errors = Pipe()
            process.standardOutput = FileHandle.nullDevice
            process.standardError = errors
            try process.run()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            let name = row.args.prefix(2).joined(separator: " ")
            #expect(process.terminationStatus == row.status, "\(name): \(text)")
            #expect(text.hasPrefix("error: ") && text.hasSuffix(" [\(row.code)]\n"), "\(name): \(text)")
        }
    }
}
