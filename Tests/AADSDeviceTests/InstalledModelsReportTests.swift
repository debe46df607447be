import AADSDiagnosis
import AADSSlots
import AADSTestSupport
import Foundation
import Testing

@testable import AADSDevice

/// The field report's "Installed models" section: each slot's version, changelog and baseline figures.
@Suite struct InstalledModelsReportTests {
    @Test func reportShowsEachInstalledSlotWithItsChangelogAndBaseline() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let scratch = try ScratchBundles(directory: dir.file("scratch"))
        let store = SlotStore(root: dir.file("slots"))
        let first = try scratch.makeDirectory(version: "1.0.0")
        let second = try scratch.makeDirectory(
            version: "1.1.0",
            extra: [
                "changelog": .string("Adapters retrained on <field> photos & more\nNew class: corn/gray_leaf_spot"),
                "baseline_metrics": .object(["adapter_accuracy": .number(0.9312), "ood_auroc": .number(0.95)]),
                "training_report": .object(["photos": .number(4812)]),
            ])
        _ = try store.install(bundle: first, verifier: scratch.verifier)
        _ = try store.install(bundle: second, verifier: scratch.verifier)

        let journal = try ResultsJournal(path: dir.file("results.sqlite"))
        let data = try ReportData.load(journal: journal, slotRoot: store.root)
        #expect(data.installedModels.map(\.version) == ["1.0.0", "1.1.0"])
        let html = HTMLReport.render(data)
        #expect(html.contains("<h2>Installed models</h2>"))
        #expect(html.contains("<td>a (active)</td><td>1.0.0</td><td>good</td>"))
        #expect(html.contains("<td>b</td><td>1.1.0</td><td>installed</td>"))
        #expect(
            html.contains("Adapters retrained on &lt;field&gt; photos &amp; more<br>New class: corn/gray_leaf_spot"))
        #expect(html.contains("adapter_accuracy 0.9312<br>ood_auroc 0.9500"))
        #expect(html.contains("no changelog"))

        // Without a slot store there is no such section.
        #expect(!HTMLReport.render(try ReportData.load(journal: journal)).contains("Installed models"))
    }

    /// The diagnosis layer reads the changelog too, and a manifest without one still loads.
    @Test func diagnosisManifestReadsTheChangelog() throws {
        let factory = Fixtures.factoryBundle + "/manifest.json"
        var object = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: factory))) as? [String: Any])
        object["changelog"] = nil
        object["training_report"] = nil
        #expect(try AADSDiagnosis.BundleManifest.parse(JSONSerialization.data(withJSONObject: object)).changelog == nil)
        object["changelog"] = "first field-trained release"
        object["training_report"] = ["photos": 4812, "notes": ["free", "form"]]
        let changed = try JSONSerialization.data(withJSONObject: object)
        #expect(try AADSDiagnosis.BundleManifest.parse(changed).changelog == "first field-trained release")
        object["changelog"] = 7
        #expect(throws: (any Error).self) {
            try AADSDiagnosis.BundleManifest.parse(try JSONSerialization.data(withJSONObject: object))
        }
    }
}
