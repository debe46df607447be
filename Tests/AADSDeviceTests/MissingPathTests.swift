import AADSTestSupport
import Foundation
import Testing

/// Commands that read a slot store or write an output file create no missing directories.
@Suite struct MissingPathTests {
    func error(_ output: String) throws -> [String: String] {
        let line = try #require(output.split(separator: "\n").last.map(String.init))
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return try #require(object?["error"] as? [String: String])
    }

    @Test(arguments: [
        ["slot", "start"], ["slot", "commit"], ["slot", "rollback"], ["slot", "activate", "--no-health-check"],
        ["slot", "status"], ["slot", "mark-healthy"], ["health"],
    ])
    func aMistypedRootIsRefusedAndNotCreated(command: [String]) throws {
        try #require(FileManager.default.isExecutableFile(atPath: TestBinary.aadsEdge), "aads-edge not built")
        let dir = TempDir()
        defer { dir.cleanup() }
        let typo = dir.file("slts")
        let (status, output) = try CLI.run(command + ["--root", typo, "--json"])
        #expect(status == 2, "\(output)")
        let e = try error(output)
        #expect(e["code"] == "not_found")
        #expect(e["message"]?.contains(typo) == true)
        #expect(!FileManager.default.fileExists(atPath: typo))
    }

    @Test func outputFilesInAMissingDirectoryAreRefused() throws {
        try #require(FileManager.default.isExecutableFile(atPath: TestBinary.aadsEdge), "aads-edge not built")
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = dir.file("results.sqlite")
        let (made, madeOutput) = try CLI.run([
            "report", "--demo", "--journal", journal, "--root", dir.file("slots"), "--out", dir.file("r.html"),
        ])
        try #require(made == 0, "\(madeOutput)")

        let report = try CLI.run(["report", "--journal", journal, "--out", dir.file("no/such/r.html"), "--json"])
        #expect(report.0 == 2)
        #expect(try error(report.1)["code"] == "not_found")
        #expect(try error(report.1)["message"]?.contains("no such directory") == true)

        let export = try CLI.run(["results", "export", "--journal", journal, "--out", dir.file("gone/rows.jsonl")])
        #expect(export.0 == 2)
        #expect(export.1.contains("no such directory") && export.1.contains("/gone [not_found]"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("no")))
        #expect(!FileManager.default.fileExists(atPath: dir.file("gone")))
    }
}
