import AADSDiagnosis
import AADSSlots
import Foundation
import Testing

@testable import AADSDevice

@Suite struct ReportTests {
    @Test func demoReportIsOneStaticPageWithEverySection() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        let end = Date(timeIntervalSince1970: 1_750_000_000)
        try DemoData.populate(journal: journal, end: end)
        // The slot store's own event journal joins the timeline; a torn last line is ignored.
        let slots = dir.file("slots")
        try FileManager.default.createDirectory(atPath: slots, withIntermediateDirectories: true)
        try Data(
            (#"{"active":"a","event":"install","generation":2,"slot":"a","ts":"2025-06-14T10:00:00.000Z","version":"0.9.0"}"#
                + "\n"
                + #"{"event":"activ"#).utf8
        ).write(to: URL(fileURLWithPath: slots + "/events.jsonl"))
        let data = try ReportData.load(journal: journal, slotRoot: slots, now: end)
        let html = HTMLReport.render(data)
        for section in [
            "Version comparison", "Latency histogram", "Decisions over time", "On-device A/B", "Alerts",
            "Slot event timeline",
        ] {
            #expect(html.contains(section), "missing \(section)")
        }
        #expect(html.contains("<svg"))
        // Nothing to fetch: no scripts, no links, no external resources (the SVG namespace URI is not a fetch).
        #expect(!html.contains("<script"))
        #expect(!html.contains("src="))
        #expect(!html.contains("href="))
        #expect(!html.contains("url("))
        #expect(html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").range(of: "http") == nil)
        #expect(data.slotEvents.contains { $0.event == "install" && $0.modelVersion == "0.9.0" })
        #expect(data.slotEvents.count == 10)

        // Per-version figures agree with the rows themselves.
        let rows = try journal.rows()
        for v in data.versions {
            let mine = rows.filter { $0.record.modelVersion == v.modelVersion }
            #expect(v.images == mine.count)
            #expect(v.errors == mine.filter { $0.record.decision == .error }.count)
            #expect(v.ood == mine.filter { $0.record.isOutOfDistribution }.count)
            let latencies = mine.filter { $0.record.decision != .error }.map(\.record.latency.total).sorted()
            #expect(abs(v.latencyMeanMs - latencies.reduce(0, +) / Double(latencies.count)) < 1e-6)
            #expect(v.latencyP50Ms == latencies[(latencies.count + 1) / 2 - 1])
            #expect(data.latencyCounts[v.modelVersion]?.reduce(0, +) == latencies.count)
        }
        #expect(data.versions.map(\.modelVersion) == ["1.0.0", "1.1.0", "1.2.0"])
        #expect(data.decisionCounts.values.flatMap(\.values).reduce(0, +) == rows.count)
        #expect(data.abComparisons.count == 2)
        try HTMLReport.write(data, to: dir.file("report.html"))
        #expect(FileManager.default.fileExists(atPath: dir.file("report.html")))
    }

    /// Install, activate, commit and rollback through a real slot store: each appears on the report's
    /// timeline, read back from the store's own journal.
    @Test func slotStoreEventsReachTheTimeline() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let scratch = try ScratchBundles(directory: dir.file("bundles"))
        let store = SlotStore(root: dir.file("slots"))
        try store.install(bundle: scratch.makeDirectory(version: "1.0.0"), verifier: scratch.verifier)
        try store.install(bundle: scratch.makeDirectory(version: "1.1.0"), verifier: scratch.verifier)
        try store.activate(attempts: 2)
        try store.commit()
        try store.install(bundle: scratch.makeDirectory(version: "1.2.0"), verifier: scratch.verifier)
        try store.activate(attempts: 2)
        try store.rollback(reason: "operator")
        // A cut mid-append leaves a torn last line; it is not an event.
        let handle = try #require(FileHandle(forWritingAtPath: store.journal.path))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"active":"a","event":"comm"#.utf8))
        handle.closeFile()

        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        let data = try ReportData.load(journal: journal, slotRoot: store.root)
        let rows = data.slotEvents.map { "\($0.event) \($0.slot) \($0.modelVersion)" }
        #expect(
            rows == [
                "factory_install a 1.0.0", "install b 1.1.0", "activate b 1.1.0", "commit b 1.1.0", "install a 1.2.0",
                "activate a 1.2.0", "rollback b 1.1.0",
            ])
        #expect(data.slotEvents.last?.detail == "from a 1.2.0: operator")
        let html = HTMLReport.render(data)
        #expect(html.contains("<b>7</b><span>slot events</span>"))
        for event in ["factory_install", "install", "activate", "commit", "rollback"] {
            #expect(html.contains("<td>\(event)</td>"), "\(event) missing from the timeline table")
        }
    }

    @Test func textIsEscaped() {
        #expect(HTMLReport.esc(#"<b>"x" & 'y'</b>"#) == "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;")
    }

    @Test func emptyJournalStillRenders() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let data = try ReportData.load(journal: ResultsJournal(path: dir.file("r.sqlite")))
        let html = HTMLReport.render(data)
        #expect(html.contains("No results yet."))
        #expect(html.hasSuffix("</html>\n"))
    }
}
