import AADSSlots
import AADSTestSupport
import Foundation
import Testing

/// The signed `changelog` and `training_report` of a manifest, and what `slot status` shows of them.
@Suite struct ManifestNotesTests {
    static let changelog = "Router retrained on 4,812 field photos.\nNew class: tomato/leaf_mold."
    static let trainingReport: [String: OpaqueJSON] = [
        "photos": .number(4812), "split": .object(["train": .number(0.8), "val": .number(0.2)]),
        "source": .string("field-2026-05"),
    ]
    static let baseline: [String: OpaqueJSON] = ["adapter_accuracy": .number(0.93), "ood_auroc": .number(0.95)]

    func bundle(_ scratch: ScratchBundles, version: String, notes: Bool) throws -> String {
        try scratch.makeDirectory(
            version: version,
            extra: notes
                ? [
                    "changelog": .string(Self.changelog), "training_report": .object(Self.trainingReport),
                    "baseline_metrics": .object(Self.baseline),
                ] : [:])
    }

    @Test func notesAreReadAndOldManifestsStillParse() throws {
        let dir = tempDirectory("notes")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scratch = try ScratchBundles(directory: dir)
        let with = try bundle(scratch, version: "1.1.0", notes: true)
        let without = try bundle(scratch, version: "1.0.0", notes: false)
        let verified = try scratch.verifier.verify(path: with)
        #expect(verified.manifest.changelog == Self.changelog)
        #expect(verified.manifest.trainingReport == Self.trainingReport)
        #expect(verified.manifest.baselineMetrics == Self.baseline)
        let old = try scratch.verifier.verify(path: without)
        #expect(old.manifest.changelog == nil && old.manifest.trainingReport == nil)
    }

    @Test func notesOfTheWrongTypeAreRefused() throws {
        func manifest(_ extra: String) -> Data {
            Data(#"{"schema_version": 1, "model_version": "1.0.0", "files": [], \#(extra)}"#.utf8)
        }
        #expect(code { try BundleManifest.parse(manifest(#""changelog": "ok""#)) } == nil)
        #expect(code { try BundleManifest.parse(manifest(#""changelog": 3"#)) } == "bad_manifest")
        #expect(code { try BundleManifest.parse(manifest(#""training_report": {"a": [1, null]}"#)) } == nil)
        #expect(code { try BundleManifest.parse(manifest(#""training_report": "done""#)) } == "bad_manifest")
    }

    /// The changelog is signed: changing it after signing voids the signature.
    @Test func aChangedChangelogBreaksTheSignature() throws {
        let dir = tempDirectory("notes-signed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scratch = try ScratchBundles(directory: dir)
        let path = try bundle(scratch, version: "1.1.0", notes: true) + "/manifest.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try text.replacingOccurrences(of: "4,812", with: "9,999").write(
            toFile: path, atomically: true, encoding: .utf8)
        #expect(
            code { try scratch.verifier.verify(path: (path as NSString).deletingLastPathComponent) } == "bad_signature")
    }

    @Test func slotStatusShowsEachSlotsVersionChangelogAndBaseline() throws {
        let dir = tempDirectory("notes-status")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scratch = try ScratchBundles(directory: dir)
        let store = SlotStore(root: dir + "/store")
        _ = try store.install(bundle: try bundle(scratch, version: "1.0.0", notes: false), verifier: scratch.verifier)
        _ = try store.install(bundle: try bundle(scratch, version: "1.1.0", notes: true), verifier: scratch.verifier)
        let status = try store.status()
        #expect(status.models.map(\.slot) == [.a, .b])
        #expect(status.models.map(\.version) == ["1.0.0", "1.1.0"])
        let slots = try #require(status.jsonObject["slots"] as? [String: [String: Any]])
        #expect(slots["a"]?["changelog"] is NSNull)
        #expect(slots["a"]?["training_report"] is NSNull)
        #expect((slots["a"]?["baseline_metrics"] as? [String: Any])?.isEmpty == true)
        #expect(slots["b"]?["version"] as? String == "1.1.0")
        #expect(slots["b"]?["changelog"] as? String == Self.changelog)
        #expect(
            (slots["b"]?["baseline_metrics"] as? [String: Double]) == ["adapter_accuracy": 0.93, "ood_auroc": 0.95])
        let report = try #require(slots["b"]?["training_report"] as? [String: Any])
        #expect(report["photos"] as? Double == 4812 && report["source"] as? String == "field-2026-05")

        // The same through the command line, text and JSON.
        guard TestBinary.isBuilt else {
            Issue.record("aads-edge not built at \(TestBinary.aadsEdge)")
            return
        }
        let json = try TestBinary.run(["slot", "status", "--root", store.root, "--json"])
        #expect(json.status == 0)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let b = try #require((object["slots"] as? [String: Any])?["b"] as? [String: Any])
        #expect(b["changelog"] as? String == Self.changelog)
        #expect((b["training_report"] as? [String: Any])?["split"] as? [String: Double] == ["train": 0.8, "val": 0.2])
        let text = try TestBinary.run(["slot", "status", "--root", store.root])
        #expect(text.status == 0)
        #expect(text.stdout.contains("changelog: Router retrained on 4,812 field photos."))
        #expect(text.stdout.contains("New class: tomato/leaf_mold."))
        #expect(text.stdout.contains(#"baseline {"adapter_accuracy":0.93,"ood_auroc":0.95}"#))
    }
}
