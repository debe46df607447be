import AADSCore
import AADSDevice
import ArgumentParser
import Foundation

struct ReportCommand: AADSCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write one static HTML page (inline SVG, no scripts, no network) from the results journal.")

    @OptionGroup var location: JournalOption
    @Option(name: .long, help: "Slot store root; its events.jsonl joins the slot timeline (default: slot_root).")
    var root: String?
    @Option(name: .long, help: "The HTML file to write.") var out: String
    @Flag(name: .long, help: .hidden) var demo = false
    @OptionGroup var output: OutputOptions

    static let errorPolicy = ErrorPolicy.always(.couldNotRun)

    func body() throws {
        let (config, path) = try location.resolve()
        if demo {
            guard !FileManager.default.fileExists(atPath: path) else {
                throw JournalError(.exists, "--demo fills a new journal; \(path) exists")
            }
            try DemoData.populate(journal: ResultsJournal(path: path))
        }
        let journal = try ResultsJournal(path: path, create: false)
        let data = try ReportData.load(journal: journal, slotRoot: root ?? config.slotRoot, ab: config.ab)
        try HTMLReport.write(data, to: out)
        if output.json {
            print(JSONLine.encode(["out": out, "results": data.totalRows, "versions": data.versions.count]))
        } else {
            print(
                "wrote \(out): \(data.totalRows) results, \(data.versions.count) versions, \(data.alerts.count) alerts, \(data.slotEvents.count) slot events"
            )
        }
    }
}
