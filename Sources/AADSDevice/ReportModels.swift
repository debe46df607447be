import AADSSlots
import Foundation

extension HTMLReport {
    /// The models in the slots: each one's version, state, changelog and the baseline figures signed with it.
    static func installedModelsSection(_ d: ReportData) -> String {
        guard !d.installedModels.isEmpty else { return "" }
        var rows = ""
        for m in d.installedModels {
            let baseline = m.baselineMetrics.sorted { $0.key < $1.key }.map { key, value in
                "\(esc(key)) \(esc(value.doubleValue.map { fmt($0, 4) } ?? value.stringValue ?? "\(value.anyValue)"))"
            }.joined(separator: "<br>")
            let changelog = m.changelog.map { esc($0).replacingOccurrences(of: "\n", with: "<br>") }
            rows += """
                <tr><td>\(esc(m.slot.rawValue))\(m.active ? " (active)" : "")</td><td>\(esc(m.version ?? "–"))</td>\
                <td>\(esc(m.state.rawValue))</td>\
                <td>\(changelog ?? "<span class=\"muted\">no changelog</span>")</td>\
                <td>\(baseline.isEmpty ? "<span class=\"muted\">none</span>" : baseline)</td></tr>

                """
        }
        return """
            <section><h2>Installed models</h2>
            <table><tr><th>slot</th><th>version</th><th>state</th><th>changelog</th><th>baseline figures</th></tr>
            \(rows)</table></section>

            """
    }
}
