import AADSCore
import AADSDiagnosis
import AADSSlots
import Foundation
import GRDB

/// Per model version figures for the version comparison.
public struct VersionSummary: Sendable, Equatable {
    public var modelVersion: String
    public var slots: [String]
    public var images: Int
    public var errors: Int
    public var ood: Int
    public var latencyMeanMs: Double
    public var latencyP50Ms: Double
    public var latencyP95Ms: Double
    /// Mean resident memory of the service while this version served, MB.
    public var rssMeanMB: Double?
    public var firstSeen: Date
    public var lastSeen: Date
    /// From the latest health check of this version.
    public var accuracy: Double?
    public var oodAUROC: Double?
    public var memoryMB: Double?

    public var oodRate: Double { images > 0 ? Double(ood) / Double(images) : 0 }
    public var errorRate: Double { images > 0 ? Double(errors) / Double(images) : 0 }
}

/// Everything `aads-edge report` shows, gathered from the journal (and the slot store's event journal).
public struct ReportData: Sendable {
    public var generatedAt: Date
    public var totalRows: Int
    public var unsyncedRows: Int
    public var versions: [VersionSummary]
    /// Histogram of total latency: bucket upper edges (ms) and per version counts.
    public var latencyEdgesMs: [Double]
    public var latencyCounts: [String: [Int]]
    /// Decisions per time bucket (`yyyy-MM-dd` or `yyyy-MM-ddTHH`).
    public var decisionBuckets: [String]
    public var decisionCounts: [String: [Decision: Int]]
    public var alerts: [AlertRecord]
    public var slotEvents: [SlotEventRecord]
    public var abComparisons: [ABComparison]
    public var healthChecks: [HealthCheckRecord]
    public var ab: DeviceConfig.AB
    /// The slots holding a model: version, changelog and baseline figures from their manifests.
    public var installedModels: [InstalledModel] = []

    /// Reads a journal; `slotRoot` adds the slot store's `events.jsonl` to the timeline when present.
    public static func load(
        journal: ResultsJournal, slotRoot: String? = nil, ab: DeviceConfig.AB = DeviceConfig.defaults.ab,
        now: Date = Date()
    ) throws
        -> ReportData
    {
        let edges: [Double] = [5, 10, 15, 20, 25, 30, 35, 40, 50, 60, 80, 100, 150, 200, 300, 500, .infinity]
        let health = try journal.healthChecks()
        var data = try journal.read("cannot read journal for the report") { db -> ReportData in
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM results") ?? 0
            let unsynced = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM results WHERE synced = 0") ?? 0
            var versions: [VersionSummary] = []
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT model_version, COUNT(*) AS n, SUM(decision = 'error') AS errors,
                        SUM(decision IN ('ood', 'unknown_crop')) AS ood,
                        AVG(CASE WHEN decision != 'error' THEN latency_total_ms END) AS latency,
                        AVG(rss_bytes) AS rss, MIN(created_at) AS first, MAX(created_at) AS last,
                        GROUP_CONCAT(DISTINCT slot) AS slots
                    FROM results GROUP BY model_version ORDER BY MIN(id)
                    """)
            var latencyCounts: [String: [Int]] = [:]
            for row in rows {
                let version: String = row["model_version"]
                // Percentiles from the most recent 20,000 images of the version keep the report fast on big journals.
                let latencies = try Double.fetchAll(
                    db,
                    sql: """
                        SELECT latency_total_ms FROM (SELECT latency_total_ms FROM results
                        WHERE model_version = ? AND decision != 'error' ORDER BY id DESC LIMIT 20000) ORDER BY latency_total_ms
                        """, arguments: [version])
                var counts = [Int](repeating: 0, count: edges.count)
                for l in latencies {
                    let i = edges.firstIndex(where: { l <= $0 }) ?? edges.count - 1
                    counts[i] += 1
                }
                latencyCounts[version] = counts
                let rss: Double? = row["rss"]
                let check = health.last(where: { $0.modelVersion == version })
                versions.append(
                    VersionSummary(
                        modelVersion: version,
                        slots: ((row["slots"] as String?) ?? "").split(separator: ",").map(String.init),
                        images: row["n"], errors: row["errors"] ?? 0, ood: row["ood"] ?? 0,
                        latencyMeanMs: row["latency"] ?? 0, latencyP50Ms: percentile(latencies, 0.5),
                        latencyP95Ms: percentile(latencies, 0.95), rssMeanMB: rss.map { $0 / 1_048_576 },
                        firstSeen: ResultsJournal.date(row["first"]), lastSeen: ResultsJournal.date(row["last"]),
                        accuracy: check?.accuracy, oodAUROC: check?.oodAUROC, memoryMB: check?.memoryMB))
            }
            // Decisions per day, or per hour when everything fits in two days.
            let span = (versions.map(\.lastSeen).max() ?? now).timeIntervalSince(versions.map(\.firstSeen).min() ?? now)
            let prefix = span < 2 * 86_400 ? 13 : 10
            var buckets: [String] = []
            var decisionCounts: [String: [Decision: Int]] = [:]
            for row in try Row.fetchAll(
                db,
                sql:
                    "SELECT substr(created_at, 1, \(prefix)) AS bucket, decision, COUNT(*) AS n FROM results GROUP BY bucket, decision ORDER BY bucket"
            ) {
                let bucket: String = row["bucket"]
                if decisionCounts[bucket] == nil { buckets.append(bucket) }
                decisionCounts[bucket, default: [:]][try ResultsJournal.decision(row["decision"])] = row["n"]
            }
            return ReportData(
                generatedAt: now, totalRows: total, unsyncedRows: unsynced, versions: versions, latencyEdgesMs: edges,
                latencyCounts: latencyCounts, decisionBuckets: buckets, decisionCounts: decisionCounts, alerts: [],
                slotEvents: [], abComparisons: [], healthChecks: health, ab: ab)
        }
        data.alerts = try journal.alerts()
        data.abComparisons = try ABReport.comparisons(journal: journal)
        var events = try journal.slotEvents()
        if let slotRoot { events += SlotStoreEvents.read(root: slotRoot) }
        data.slotEvents = events.sorted { $0.createdAt < $1.createdAt }
        if let slotRoot { data.installedModels = (try? SlotStore(root: slotRoot).installedModels()) ?? [] }
        return data
    }

    /// Nearest-rank percentile of sorted values.
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((q * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count - 1, max(0, rank - 1))]
    }
}

/// The slot store's event journal (`<root>/events.jsonl`) as timeline rows, read through the store's own
/// event type; a torn last line is ignored.
public enum SlotStoreEvents {
    public static func read(root: String) -> [SlotEventRecord] {
        SlotStore(root: root).journal.read().map(record)
    }

    /// A timeline row: a rollback is shown on the slot it went to, with that slot's version.
    static func record(_ e: SlotEvent) -> SlotEventRecord {
        let slot = e.slot ?? e.to
        let version = e.version ?? e.toVersion
        var detail = e.reason ?? e.message ?? ""
        if e.event == .rollback, let from = e.from {
            let source = "from \(from.rawValue)" + (e.fromVersion.map { " \($0)" } ?? "")
            detail = detail.isEmpty ? source : source + ": " + detail
        }
        return SlotEventRecord(
            event: e.event.rawValue, slot: slot?.rawValue ?? "", modelVersion: version ?? "", detail: detail,
            createdAt: e.at)
    }
}

/// Renders the report as one static HTML page: inline CSS and SVG, no scripts, no network.
public enum HTMLReport {
    static let versionColors = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#b83280", "#4a5568"]
    static let decisionColors: [Decision: String] = [
        .diagnosis: "#38a169", .unknownCrop: "#d69e2e", .ood: "#dd6b20", .error: "#e53e3e",
    ]

    /// Writes the page atomically.
    public static func write(_ data: ReportData, to path: String) throws {
        try AtomicFile.write(Data(render(data).utf8), to: path)
    }

    public static func render(_ data: ReportData) -> String {
        var html = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>AADS Edge field report</title>
            <style>
            body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:0;background:#f4f6f8;color:#1a202c}
            header{background:#1c4532;color:#fff;padding:18px 32px}
            header h1{margin:0;font-size:24px}
            header p{margin:4px 0 0;opacity:.85;font-size:14px}
            main{max-width:1160px;margin:0 auto;padding:16px 24px 40px}
            section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:16px 20px;margin:16px 0}
            h2{font-size:18px;margin:0 0 12px;color:#22543d}
            table{border-collapse:collapse;width:100%;font-size:13px}
            th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e2e8f0}
            th{background:#f7fafc;font-weight:600}
            td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
            .cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px}
            .card{background:#f7fafc;border-radius:6px;padding:10px 14px}
            .card b{display:block;font-size:22px}
            .card span{font-size:12px;color:#4a5568}
            .grid{display:grid;grid-template-columns:repeat(2,1fr);gap:8px 24px}
            .muted{color:#718096;font-size:13px}
            .sev-critical{color:#c53030;font-weight:600}
            .sev-warning{color:#b7791f;font-weight:600}
            .legend{font-size:12px;margin:4px 0 8px}
            .legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;border-radius:2px}
            svg text{font-family:inherit}
            </style></head><body>
            <header><h1>AADS Edge field report</h1>
            <p>Generated \(esc(ISO8601.string(data.generatedAt))) · \(data.totalRows) results · \(data.unsyncedRows) not yet synced</p></header>
            <main>

            """
        html += summaryCards(data)
        html += installedModelsSection(data)
        html += versionSection(data)
        html += latencySection(data)
        html += decisionsSection(data)
        html += abSection(data)
        html += alertsSection(data)
        html += timelineSection(data)
        html += "</main></body></html>\n"
        return html
    }

    // MARK: Sections

    static func summaryCards(_ d: ReportData) -> String {
        let images = d.versions.reduce(0) { $0 + $1.images }
        let ood = d.versions.reduce(0) { $0 + $1.ood }
        let errors = d.versions.reduce(0) { $0 + $1.errors }
        let current = d.versions.max(by: { $0.lastSeen < $1.lastSeen })
        let raised = d.alerts.filter { $0.state == "raised" }.count
        func card(_ value: String, _ label: String) -> String {
            "<div class=\"card\"><b>\(esc(value))</b><span>\(esc(label))</span></div>"
        }
        return """
            <section><h2>Summary</h2><div class="cards">
            \(card(current?.modelVersion ?? "–", "model version serving"))
            \(card(String(images), "images diagnosed"))
            \(card(pct(images > 0 ? Double(ood) / Double(images) : 0), "OOD / unknown crop"))
            \(card(pct(images > 0 ? Double(errors) / Double(images) : 0), "errors"))
            \(card(String(raised), "alerts raised"))
            \(card(String(d.slotEvents.count), "slot events"))
            </div></section>

            """
    }

    static func versionSection(_ d: ReportData) -> String {
        guard !d.versions.isEmpty else {
            return "<section><h2>Version comparison</h2><p class=\"muted\">No results yet.</p></section>\n"
        }
        var rows = ""
        for (i, v) in d.versions.enumerated() {
            rows += """
                <tr><td><i style="display:inline-block;width:10px;height:10px;background:\(color(i))"></i> \(esc(v.modelVersion))</td>
                <td>\(esc(v.slots.joined(separator: ", ")))</td><td class="num">\(v.images)</td>
                <td class="num">\(opt(v.accuracy, pct))</td><td class="num">\(opt(v.oodAUROC, { fmt($0, 3) }))</td>
                <td class="num">\(fmt(v.latencyP50Ms, 1))</td><td class="num">\(fmt(v.latencyP95Ms, 1))</td>
                <td class="num">\(opt(v.rssMeanMB, { fmt($0, 1) }))</td><td class="num">\(opt(v.memoryMB, { fmt($0, 2) }))</td>
                <td class="num">\(pct(v.oodRate))</td><td class="num">\(pct(v.errorRate))</td>
                <td>\(esc(shortDate(v.firstSeen))) – \(esc(shortDate(v.lastSeen)))</td></tr>

                """
        }
        let items = d.versions.enumerated().map { (i, v) in (v.modelVersion, color(i), v) }
        func chart(
            _ title: String, _ value: (VersionSummary) -> Double?, _ format: (Double) -> String, maxValue: Double? = nil
        ) -> String {
            barChart(title: title, bars: items.map { ($0.0, $0.1, value($0.2)) }, format: format, maxValue: maxValue)
        }
        return """
            <section><h2>Version comparison</h2>
            <table><tr><th>version</th><th>slots</th><th class="num">images</th><th class="num">accuracy</th>
            <th class="num">OOD AUROC</th><th class="num">p50 ms</th><th class="num">p95 ms</th><th class="num">RSS MB</th>
            <th class="num">adapter MB</th><th class="num">OOD rate</th><th class="num">errors</th><th>served</th></tr>
            \(rows)</table>
            <div class="grid" style="margin-top:14px">
            \(chart("Accuracy (health check)", { $0.accuracy }, pct, maxValue: 1))
            \(chart("OOD AUROC (health check)", { $0.oodAUROC }, { fmt($0, 3) }, maxValue: 1))
            \(chart("Latency p50 (ms)", { $0.latencyP50Ms }, { fmt($0, 1) }))
            \(chart("Memory: service RSS (MB)", { $0.rssMeanMB }, { fmt($0, 1) }))
            </div></section>

            """
    }

    static func latencySection(_ d: ReportData) -> String {
        guard !d.versions.isEmpty else { return "" }
        let labels = d.latencyEdgesMs.enumerated().map { (i, e) -> String in
            e.isInfinite ? ">\(Int(d.latencyEdgesMs[max(0, i - 1)]))" : "≤\(Int(e))"
        }
        let series = d.versions.enumerated().map { (i, v) in
            (v.modelVersion, color(i), (d.latencyCounts[v.modelVersion] ?? []).map(Double.init))
        }
        return """
            <section><h2>Latency histogram (total ms per image)</h2>
            \(legend(series.map { ($0.0, $0.1) }))
            \(groupedBars(labels: labels, series: series, width: 1100, height: 260, yLabel: "images"))
            </section>

            """
    }

    static func decisionsSection(_ d: ReportData) -> String {
        guard !d.decisionBuckets.isEmpty else { return "" }
        let kinds = Decision.allCases
        let labels = d.decisionBuckets.map {
            $0.count > 10 ? String($0.suffix(8)).replacingOccurrences(of: "T", with: " ") + ":00" : String($0.suffix(5))
        }
        let series = kinds.map { k in
            (k.rawValue, decisionColors[k] ?? "#999", d.decisionBuckets.map { Double(d.decisionCounts[$0]?[k] ?? 0) })
        }
        let unit = (d.decisionBuckets.first?.count ?? 10) > 10 ? "hour" : "day"
        return """
            <section><h2>Decisions over time (per \(unit))</h2>
            \(legend(series.map { ($0.0, $0.1) }))
            \(stackedBars(labels: labels, series: series, width: 1100, height: 240))
            </section>

            """
    }

    static func abSection(_ d: ReportData) -> String {
        guard !d.abComparisons.isEmpty else { return "" }
        var rows = ""
        for c in d.abComparisons {
            let verdict: String
            switch c.candidateNotWorse(alpha: d.ab.alpha, minSamples: d.ab.minSamples) {
            case true?: verdict = "not significantly worse"
            case false?: verdict = "<span class=\"sev-critical\">significantly worse</span>"
            case nil: verdict = "<span class=\"muted\">too few samples</span>"
            }
            rows += """
                <tr><td>\(esc(c.baselineVersion)) → \(esc(c.candidateVersion))</td><td class="num">\(c.samples)</td>
                <td class="num">\(pct(c.agreementRate))</td>
                <td class="num">\(fmt(c.baselineLatencyMeanMs, 1)) / \(fmt(c.candidateLatencyMeanMs, 1))</td>
                <td class="num">\(opt(c.latencyTest?.pValue, { String(format: "%.3g", $0) }))</td>
                <td class="num">\(pct(c.baselineOODRate)) / \(pct(c.candidateOODRate))</td>
                <td class="num">\(opt(c.oodTest?.pValue, { String(format: "%.3g", $0) }))</td><td>\(verdict)</td></tr>

                """
        }
        return """
            <section><h2>On-device A/B (shadow runs)</h2>
            <table><tr><th>baseline → candidate</th><th class="num">samples</th><th class="num">agreement</th>
            <th class="num">latency ms (b / c)</th><th class="num">Welch p</th><th class="num">OOD rate (b / c)</th>
            <th class="num">z-test p</th><th>verdict (α = \(d.ab.alpha))</th></tr>\(rows)</table></section>

            """
    }

    static func alertsSection(_ d: ReportData) -> String {
        guard !d.alerts.isEmpty else {
            return "<section><h2>Alerts</h2><p class=\"muted\">No alerts.</p></section>\n"
        }
        var rows = ""
        for a in d.alerts.suffix(200) {
            rows += """
                <tr><td>\(esc(shortDate(a.createdAt)))</td><td class="sev-\(a.severity.rawValue)">\(esc(a.severity.rawValue))</td>
                <td>\(esc(a.rule))</td><td>\(esc(a.state))</td><td>\(esc(a.modelVersion))</td><td>\(esc(a.message))</td></tr>

                """
        }
        return """
            <section><h2>Alerts</h2><table><tr><th>time</th><th>severity</th><th>rule</th><th>state</th><th>version</th>
            <th>message</th></tr>\(rows)</table></section>

            """
    }

    static func timelineSection(_ d: ReportData) -> String {
        guard !d.slotEvents.isEmpty else {
            return "<section><h2>Slot events</h2><p class=\"muted\">No slot events.</p></section>\n"
        }
        var rows = ""
        for e in d.slotEvents.suffix(200) {
            rows +=
                "<tr><td>\(esc(shortDate(e.createdAt)))</td><td>\(esc(e.event))</td><td>\(esc(e.slot))</td><td>\(esc(e.modelVersion))</td><td>\(esc(e.detail))</td></tr>\n"
        }
        return """
            <section><h2>Slot event timeline</h2>
            \(timeline(d.slotEvents, width: 1100))
            <table><tr><th>time</th><th>event</th><th>slot</th><th>version</th><th>detail</th></tr>\(rows)</table></section>

            """
    }

    // MARK: SVG charts

    static func barChart(
        title: String, bars: [(String, String, Double?)], format: (Double) -> String, maxValue: Double?
    ) -> String {
        let rowHeight = 26.0
        let width = 520.0
        let labelWidth = 130.0
        let valueWidth = 70.0
        let height = 28 + rowHeight * Double(bars.count) + 6
        let top = max(maxValue ?? 0, bars.compactMap(\.2).max() ?? 0)
        var svg =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(esc(title))\">"
        svg += "<text x=\"0\" y=\"16\" font-size=\"13\" font-weight=\"600\" fill=\"#2d3748\">\(esc(title))</text>"
        let span = width - labelWidth - valueWidth
        for (i, bar) in bars.enumerated() {
            let y = 28 + rowHeight * Double(i)
            svg +=
                "<text x=\"\(labelWidth - 8)\" y=\"\(y + 16)\" font-size=\"12\" text-anchor=\"end\" fill=\"#4a5568\">\(esc(bar.0))</text>"
            svg +=
                "<rect x=\"\(labelWidth)\" y=\"\(y + 3)\" width=\"\(span)\" height=\"\(rowHeight - 8)\" fill=\"#edf2f7\" rx=\"3\"/>"
            if let value = bar.2 {
                let w = top > 0 ? span * min(1, value / top) : 0
                svg +=
                    "<rect x=\"\(labelWidth)\" y=\"\(y + 3)\" width=\"\(f1(w))\" height=\"\(rowHeight - 8)\" fill=\"\(bar.1)\" rx=\"3\"/>"
                svg +=
                    "<text x=\"\(labelWidth + span + 6)\" y=\"\(y + 16)\" font-size=\"12\" fill=\"#2d3748\">\(esc(format(value)))</text>"
            } else {
                svg +=
                    "<text x=\"\(labelWidth + span + 6)\" y=\"\(y + 16)\" font-size=\"12\" fill=\"#a0aec0\">n/a</text>"
            }
        }
        return svg + "</svg>"
    }

    /// Vertical bars, one group per label, one bar per series.
    static func groupedBars(
        labels: [String], series: [(String, String, [Double])], width: Double, height: Double, yLabel: String
    ) -> String {
        let left = 50.0
        let bottom = 30.0
        let top = 10.0
        let plotW = width - left - 10
        let plotH = height - bottom - top
        let maxV = max(1, series.flatMap(\.2).max() ?? 1)
        let ticks = niceTicks(maxV)
        let yMax = ticks.last ?? maxV
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\">"
        svg += axes(left: left, top: top, plotW: plotW, plotH: plotH, ticks: ticks, yMax: yMax, yLabel: yLabel)
        let groupW = plotW / Double(max(1, labels.count))
        let barW = max(1, (groupW - 6) / Double(max(1, series.count)))
        for (i, label) in labels.enumerated() {
            let gx = left + groupW * Double(i) + 3
            for (s, entry) in series.enumerated() where i < entry.2.count {
                let h = plotH * entry.2[i] / yMax
                svg +=
                    "<rect x=\"\(f1(gx + barW * Double(s)))\" y=\"\(f1(top + plotH - h))\" width=\"\(f1(barW))\" height=\"\(f1(h))\" fill=\"\(entry.1)\"><title>\(esc(entry.0)) \(esc(label)): \(Int(entry.2[i]))</title></rect>"
            }
            svg +=
                "<text x=\"\(f1(gx + groupW / 2 - 3))\" y=\"\(f1(top + plotH + 16))\" font-size=\"11\" text-anchor=\"middle\" fill=\"#4a5568\">\(esc(label))</text>"
        }
        return svg + "</svg>"
    }

    /// Stacked vertical bars: one bar per label, segments per series.
    static func stackedBars(labels: [String], series: [(String, String, [Double])], width: Double, height: Double)
        -> String
    {
        let left = 50.0
        let bottom = 30.0
        let top = 10.0
        let plotW = width - left - 10
        let plotH = height - bottom - top
        let totals = labels.indices.map { i in series.reduce(0) { $0 + (i < $1.2.count ? $1.2[i] : 0) } }
        let ticks = niceTicks(max(1, totals.max() ?? 1))
        let yMax = ticks.last ?? 1
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\">"
        svg += axes(left: left, top: top, plotW: plotW, plotH: plotH, ticks: ticks, yMax: yMax, yLabel: "images")
        let slot = plotW / Double(max(1, labels.count))
        let barW = max(2, min(60, slot * 0.7))
        let every = max(1, Int((Double(labels.count) / (plotW / 70)).rounded(.up)))
        for (i, label) in labels.enumerated() {
            let x = left + slot * Double(i) + (slot - barW) / 2
            var y = top + plotH
            for entry in series where i < entry.2.count && entry.2[i] > 0 {
                let h = plotH * entry.2[i] / yMax
                y -= h
                svg +=
                    "<rect x=\"\(f1(x))\" y=\"\(f1(y))\" width=\"\(f1(barW))\" height=\"\(f1(h))\" fill=\"\(entry.1)\"><title>\(esc(label)) \(esc(entry.0)): \(Int(entry.2[i]))</title></rect>"
            }
            if i % every == 0 {
                svg +=
                    "<text x=\"\(f1(x + barW / 2))\" y=\"\(f1(top + plotH + 16))\" font-size=\"11\" text-anchor=\"middle\" fill=\"#4a5568\">\(esc(label))</text>"
            }
        }
        return svg + "</svg>"
    }

    static func axes(
        left: Double, top: Double, plotW: Double, plotH: Double, ticks: [Double], yMax: Double, yLabel: String
    ) -> String {
        var svg = ""
        for t in ticks {
            let y = top + plotH - plotH * t / yMax
            svg +=
                "<line x1=\"\(left)\" x2=\"\(f1(left + plotW))\" y1=\"\(f1(y))\" y2=\"\(f1(y))\" stroke=\"#e2e8f0\"/>"
            svg +=
                "<text x=\"\(left - 6)\" y=\"\(f1(y + 4))\" font-size=\"11\" text-anchor=\"end\" fill=\"#718096\">\(Int(t))</text>"
        }
        svg +=
            "<line x1=\"\(left)\" x2=\"\(f1(left + plotW))\" y1=\"\(f1(top + plotH))\" y2=\"\(f1(top + plotH))\" stroke=\"#a0aec0\"/>"
        svg +=
            "<text x=\"12\" y=\"\(f1(top + plotH / 2))\" font-size=\"11\" fill=\"#718096\" transform=\"rotate(-90 12 \(f1(top + plotH / 2)))\" text-anchor=\"middle\">\(esc(yLabel))</text>"
        return svg
    }

    static func timeline(_ events: [SlotEventRecord], width: Double) -> String {
        let shown = Array(events.suffix(40))
        guard let first = shown.first?.createdAt, let last = shown.last?.createdAt else { return "" }
        let left = 40.0
        let right = 40.0
        let span = max(1, last.timeIntervalSince(first))
        let axisY = 40.0
        // Greedy lanes: a label goes to the first lane where it does not overlap the previous label.
        var laneEnds: [Double] = []
        var placed: [(x: Double, lane: Int, anchor: String, text: String, color: String, event: SlotEventRecord)] = []
        for e in shown {
            let x = left + (width - left - right) * e.createdAt.timeIntervalSince(first) / span
            let text = "\(e.event) \(e.slot) \(e.modelVersion)"
            let textWidth = Double(text.count) * 6.4
            let anchor = x > width - textWidth / 2 - 10 ? "end" : (x < textWidth / 2 + 10 ? "start" : "middle")
            let startX = anchor == "start" ? x : (anchor == "end" ? x - textWidth : x - textWidth / 2)
            let lane = laneEnds.firstIndex(where: { $0 + 8 < startX }) ?? laneEnds.count
            if lane == laneEnds.count { laneEnds.append(0) }
            laneEnds[lane] = startX + textWidth
            placed.append((x, lane, anchor, text, eventColor(e.event), e))
        }
        let height = axisY + 30 + Double(max(1, laneEnds.count)) * 24
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\">"
        svg +=
            "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(axisY)\" y2=\"\(axisY)\" stroke=\"#4a5568\" stroke-width=\"2\"/>"
        svg += "<text x=\"\(left)\" y=\"20\" font-size=\"11\" fill=\"#718096\">\(esc(shortDate(first)))</text>"
        svg +=
            "<text x=\"\(width - right)\" y=\"20\" font-size=\"11\" text-anchor=\"end\" fill=\"#718096\">\(esc(shortDate(last)))</text>"
        func labelY(_ lane: Int) -> Double { axisY + 26 + Double(lane) * 24 }
        for p in placed {
            svg +=
                "<line x1=\"\(f1(p.x))\" x2=\"\(f1(p.x))\" y1=\"\(axisY)\" y2=\"\(f1(labelY(p.lane) - 10))\" stroke=\"\(p.color)\" stroke-dasharray=\"2,2\"/>"
        }
        for p in placed {
            svg +=
                "<circle cx=\"\(f1(p.x))\" cy=\"\(axisY)\" r=\"6\" fill=\"\(p.color)\"><title>\(esc(ISO8601.string(p.event.createdAt))) \(esc(p.event.event)) \(esc(p.event.detail))</title></circle>"
            // A white halo keeps labels readable over the connectors of neighbours.
            svg +=
                "<text x=\"\(f1(p.x))\" y=\"\(f1(labelY(p.lane)))\" font-size=\"11\" text-anchor=\"\(p.anchor)\" fill=\"#2d3748\" stroke=\"#fff\" stroke-width=\"4\" paint-order=\"stroke\">\(esc(p.text))</text>"
        }
        return svg + "</svg>"
    }

    static func eventColor(_ event: String) -> String {
        let e = event.lowercased()
        if e.contains("rollback") || e.contains("rolled") || e.contains("fail") || e.contains("bad") {
            return "#e53e3e"
        }
        if e.contains("commit") || e.contains("good") || e.contains("pass") { return "#38a169" }
        if e.contains("trial") || e.contains("activat") || e.contains("probation") { return "#d69e2e" }
        return "#3182ce"
    }

    static func legend(_ items: [(String, String)]) -> String {
        "<div class=\"legend\">" + items.map { "<i style=\"background:\($0.1)\"></i>\(esc($0.0))" }.joined() + "</div>"
    }

    static func niceTicks(_ maxValue: Double) -> [Double] {
        let raw = maxValue / 4
        let magnitude = pow(10, floor(log10(max(raw, 1e-9))))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        let step1 = max(1, step.rounded(.up))
        var ticks: [Double] = []
        var t = 0.0
        while t < maxValue + step1 {
            ticks.append(t)
            if t >= maxValue { break }
            t += step1
        }
        return ticks
    }

    // MARK: Formatting

    static func color(_ i: Int) -> String { versionColors[i % versionColors.count] }
    static func f1(_ v: Double) -> String { String(format: "%.1f", v) }
    static func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }
    static func pct(_ v: Double) -> String { String(format: "%.1f%%", v * 100) }
    static func opt(_ v: Double?, _ f: (Double) -> String) -> String { v.map(f) ?? "–" }

    static func shortDate(_ d: Date) -> String {
        let s = ISO8601.string(d)
        return String(s.prefix(16)).replacingOccurrences(of: "T", with: " ")
    }

    /// HTML-escapes text (and attribute values).
    public static func esc(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}
