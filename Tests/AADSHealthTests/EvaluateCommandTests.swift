import AADSDiagnosis
import AADSTestSupport
import Foundation
import Testing

@testable import AADSHealth

/// `aads-edge evaluate` as a process, checked against `aads-edge diagnose` on the same photos.
@Suite(.serialized) struct EvaluateCommandTests {
    /// Runs the CLI; returns its exit status and standard output.
    func run(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
        let result = try TestBinary.run(arguments)
        return (result.status, result.stdout)
    }

    func object(_ line: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test func figuresMatchDiagnoseOnTheSameFiles() throws {
        try #require(FileManager.default.isExecutableFile(atPath: TestBinary.aadsEdge), "aads-edge not built")
        let s = Scratch()
        defer { s.cleanup() }
        // Three known classes, a class the first crop's adapter lacks, a crop the router lacks, two OOD photos.
        let golden = try GoldenPhotos(classes: 5, ood: 2)
        let known = golden.leaves.prefix(3).map { "\($0.crop)/\($0.label)" }
        let missingClass = golden.leaves[0].crop + "/no_such_class"
        var layout: [(String, String, String)] = golden.leaves.prefix(3).map {
            ($0.path, "root/\($0.crop)/\($0.label)/a.jpg", "\($0.crop)/\($0.label)")
        }
        layout.append((golden.leaves[3].path, "root/\(missingClass)/a.jpg", missingClass))
        layout.append((golden.leaves[4].path, "root/cabbage/black_rot/a.jpg", "cabbage/black_rot"))
        layout.append((golden.ood[0], "ood/a/first.jpg", "ood"))
        layout.append((golden.ood[1], "ood/second.jpg", "ood"))
        var files: [String] = []
        for (source, target, _) in layout { files.append(try s.copy(source, to: target)) }
        let broken = try s.write("not a jpeg", to: "root/\(known[0])/b.jpg")
        try s.write("about these photos", to: "root/README.txt")

        let evaluated = try run([
            "evaluate", "--bundle", Fixtures.factoryBundle, s.path + "/root", "--ood", s.path + "/ood", "--json",
        ])
        #expect(evaluated.status == 0)
        let r = try object(evaluated.stdout.trimmingCharacters(in: .whitespacesAndNewlines))

        let diagnosed = try run(["diagnose", "--bundle", Fixtures.factoryBundle, "--json"] + files + [broken])
        #expect(diagnosed.status == 1)  // the broken photo
        let lines = try diagnosed.stdout.split(separator: "\n").map { try object(String($0)) }
        try #require(lines.count == files.count + 1)
        #expect(lines.last?["decision"] as? String == "error")

        // Expected figures, counted from diagnose.
        var correct = 0
        var rejected = 0
        var unknownRejected = 0
        var oodRejected = 0
        var predictions: [String: [String: Int]] = [:]
        for ((_, _, label), line) in zip(layout, lines) {
            let decision = line["decision"] as? String ?? ""
            let accepted = decision == "diagnosis"
            let predicted =
                accepted ? "\(line["crop"] as? String ?? "")/\(line["disease"] as? String ?? "")" : "rejected"
            predictions[label, default: [:]][predicted, default: 0] += 1
            switch label {
            case "ood": if !accepted { oodRejected += 1 }
            case missingClass, "cabbage/black_rot": if !accepted { unknownRejected += 1 }
            default:
                if predicted == label { correct += 1 }
                if !accepted { rejected += 1 }
            }
        }
        #expect(r["model_version"] as? String == golden.manifest.modelVersion)
        #expect(r["images"] as? Int == 8)
        #expect(r["skipped_files"] as? Int == 1)
        let inDistribution = try #require(r["in_distribution"] as? [String: Any])
        #expect(inDistribution["images"] as? Int == 3)
        #expect(inDistribution["correct"] as? Int == correct)
        #expect(inDistribution["rejected"] as? Int == rejected)
        #expect(inDistribution["accuracy"] as? Double == ((Double(correct) / 3) * 10_000).rounded() / 10_000)
        let unknown = try #require(r["unknown_crop_rejected"] as? [String: Any])
        #expect(unknown["images"] as? Int == 2)
        #expect(unknown["rejected"] as? Int == unknownRejected)
        #expect(unknown["labels"] as? [String] == ["cabbage/black_rot", missingClass].sorted())
        let ood = try #require(r["ood"] as? [String: Any])
        #expect(ood["images"] as? Int == 2)
        #expect(ood["rejected"] as? Int == oodRejected)
        #expect(ood["auroc"] is Double)
        let errors = try #require(r["errors"] as? [String: Any])
        #expect(errors["count"] as? Int == 1)
        #expect((errors["files"] as? [[String: Any]])?.first?["file"] as? String == broken)

        // The confusion matrix holds exactly diagnose's predictions.
        let confusion = try #require(r["confusion"] as? [String: Any])
        let rows = try #require(confusion["rows"] as? [String])
        let columns = try #require(confusion["columns"] as? [String])
        let matrix = try #require(confusion["matrix"] as? [[Int]])
        let classNames = EvaluationScoring.classNames(golden.manifest)
        #expect(rows == known + ["cabbage/black_rot", missingClass].sorted() + ["ood"])
        #expect(columns == classNames + ["rejected"])
        for (i, row) in rows.enumerated() {
            for (j, column) in columns.enumerated() {
                #expect(matrix[i][j] == predictions[row]?[column] ?? 0, "\(row) → \(column)")
            }
        }
        let classes = try #require(r["classes"] as? [[String: Any]])
        #expect(classes.map { $0["class"] as? String } == classNames)
        let latency = try #require(r["latency_ms"] as? [String: Double])
        #expect((latency["p50"] ?? 0) > 0 && (latency["p95"] ?? 0) >= (latency["p50"] ?? 0))

        // The readable form says the same.
        let text = try run(["evaluate", "--bundle", Fixtures.factoryBundle, s.path + "/root", "--ood", s.path + "/ood"])
        #expect(text.status == 0)
        #expect(text.stdout.contains("\(correct) of 3 diagnosed as their class"))
        #expect(text.stdout.contains("error \(broken): not_jpeg"))
    }

    @Test func badInputExitsTwoWithAJSONError() throws {
        try #require(FileManager.default.isExecutableFile(atPath: TestBinary.aadsEdge), "aads-edge not built")
        let s = Scratch()
        defer { s.cleanup() }
        try s.copy(try GoldenPhotos(classes: 1, ood: 1).ood[0], to: "root/tomato/healthy/a.jpg")
        try FileManager.default.createDirectory(atPath: s.path + "/empty/x", withIntermediateDirectories: true)
        let cases: [([String], String)] = [
            (["--bundle", Fixtures.factoryBundle, s.path + "/missing"], "not_found"),
            (["--bundle", Fixtures.factoryBundle, s.path + "/empty"], "no_images"),
            (["--bundle", Fixtures.factoryBundle, s.path + "/root", "--ood", s.path + "/empty"], "no_images"),
            (["--bundle", s.path, s.path + "/root"], "missing_file"),
            (["--slots", s.path + "/no-store", s.path + "/root"], "not_found"),
            (["--slots", s.path + "/empty/x", s.path + "/root"], "no_active_slot"),
        ]
        for (arguments, code) in cases {
            let result = try run(["evaluate", "--json"] + arguments)
            #expect(result.status == 2, "\(arguments)")
            let error = try object(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))["error"]
            #expect((error as? [String: Any])?["code"] as? String == code, "\(arguments)")
        }
        // Usage errors: no folder, or no bundle.
        #expect(try run(["evaluate", "--bundle", Fixtures.factoryBundle]).status == 2)
        #expect(try run(["evaluate", s.path + "/root"]).status == 2)
    }
}
