import AADSDiagnosis
import Foundation
import Testing

@testable import AADSDevice

/// A minimal Prometheus text-format reader, independent of the writer: `name{labels} value` lines.
struct PromSample: Equatable {
    var name: String
    var labels: [String: String]
    var value: Double
}

func parseProm(_ text: String) -> (samples: [PromSample], types: [String: String]) {
    var samples: [PromSample] = []
    var types: [String: String] = [:]
    for line in text.split(separator: "\n") {
        if line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            if parts.count == 4 { types[String(parts[2])] = String(parts[3]) }
            continue
        }
        if line.hasPrefix("#") || line.isEmpty { continue }
        guard let space = line.lastIndex(of: " ") else { continue }
        let head = line[..<space]
        guard let value = Double(line[line.index(after: space)...]) else { continue }
        var name = String(head)
        var labels: [String: String] = [:]
        if let brace = head.firstIndex(of: "{"), head.hasSuffix("}") {
            name = String(head[..<brace])
            let body = head[head.index(after: brace)..<head.index(before: head.endIndex)]
            for pair in body.split(separator: ",") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2 {
                    labels[String(kv[0])] = String(kv[1]).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                }
            }
        }
        samples.append(PromSample(name: name, labels: labels, value: value))
    }
    return (samples, types)
}

extension Array where Element == PromSample {
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
    }
}

@Suite struct MetricsTests {
    @Test func everyFamilyHasHelpRatiosAreNamedSoAndKnownSeriesStartAtZero() throws {
        let text = MetricsExporter(path: nil).render()
        let lines = text.split(separator: "\n").map(String.init)
        let families = lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        #expect(families.count >= 18)
        for (index, line) in lines.enumerated() where line.hasPrefix("# TYPE ") {
            let name = line.split(separator: " ")[2]
            #expect(index > 0 && lines[index - 1].hasPrefix("# HELP \(name) "), "\(name) has no # HELP")
        }
        #expect(!families.contains { $0.hasSuffix("_rate") }, "ratio gauges end in _ratio")
        let (samples, _) = parseProm(text)
        for code in MetricsExporter.knownErrorCodes {
            #expect(samples.value("aads_errors_total", ["code": code]) == 0, "aads_errors_total{code=\"\(code)\"}")
        }
        for rule in MetricsExporter.knownAlertRules {
            #expect(samples.value("aads_alert_active", ["rule": rule]) == 0)
            #expect(samples.value("aads_alerts_raised_total", ["rule": rule]) == 0)
        }
    }

    @Test func fileParsesBackToWhatWasRecorded() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("aads_edge.prom")
        let metrics = MetricsExporter(path: path, oodWindow: 4)
        let latencies = [3.0, 12.0, 40.0, 40.0, 120.0]
        let decisions: [Decision] = [.diagnosis, .ood, .diagnosis, .unknownCrop, .error]
        for (l, d) in zip(latencies, decisions) {
            var r = Diagnosis(
                file: "x.jpg", decision: d, modelVersion: "1.0.0",
                latency: .init(decode: 1, backbone: 2, adapter: 0, total: l))
            if d == .error { r.error = .init(code: "corrupt_jpeg", message: "bad") }
            metrics.record(r)
        }
        metrics.recordDropped(3)
        metrics.setQueueDepth(7)
        metrics.setActiveSlot(slot: "a", version: "1.0.0")
        metrics.setActiveSlot(slot: "b", version: "1.1.0")
        metrics.recordHealthCheck(passed: true, at: Date(timeIntervalSince1970: 1_700_000_000))
        metrics.setAlert(rule: "error_rate", active: true, raised: true)
        try metrics.writeFile()

        let text = try String(contentsOfFile: path, encoding: .utf8)
        let (s, types) = parseProm(text)
        #expect(types["aads_diagnosis_latency_seconds"] == "histogram")
        #expect(types["aads_decisions_total"] == "counter")
        #expect(s.value("aads_images_processed_total") == 5)
        #expect(s.value("aads_decisions_total", ["decision": "diagnosis"]) == 2)
        #expect(s.value("aads_decisions_total", ["decision": "ood"]) == 1)
        #expect(s.value("aads_decisions_total", ["decision": "unknown_crop"]) == 1)
        #expect(s.value("aads_decisions_total", ["decision": "error"]) == 1)
        #expect(s.value("aads_errors_total", ["code": "corrupt_jpeg"]) == 1)
        #expect(s.value("aads_images_dropped_total") == 3)
        #expect(s.value("aads_queue_depth") == 7)
        // OOD window of 4: the last four decisions are ood, diagnosis, unknown_crop, error → 2/4.
        #expect(s.value("aads_ood_ratio") == 0.5)
        #expect(s.value("aads_active_slot_info", ["slot": "b", "version": "1.1.0"]) == 1)
        #expect(s.value("aads_active_slot_info", ["slot": "a"]) == nil)
        #expect(s.value("aads_last_health_check_passed") == 1)
        #expect(s.value("aads_last_health_check_timestamp_seconds") == 1_700_000_000)
        #expect(s.value("aads_alert_active", ["rule": "error_rate"]) == 1)
        #expect(s.value("aads_alerts_raised_total", ["rule": "error_rate"]) == 1)
        #expect((s.value("aads_process_resident_memory_bytes") ?? 0) > 1_000_000)
        // Histogram of total latency in seconds: cumulative buckets.
        let total = ["stage": "total"]
        #expect(s.value("aads_diagnosis_latency_seconds_count", total) == 5)
        #expect(abs((s.value("aads_diagnosis_latency_seconds_sum", total) ?? 0) - 0.215) < 1e-9)
        #expect(s.value("aads_diagnosis_latency_seconds_bucket", ["stage": "total", "le": "0.005"]) == 1)
        #expect(s.value("aads_diagnosis_latency_seconds_bucket", ["stage": "total", "le": "0.02"]) == 2)
        #expect(s.value("aads_diagnosis_latency_seconds_bucket", ["stage": "total", "le": "0.05"]) == 4)
        #expect(s.value("aads_diagnosis_latency_seconds_bucket", ["stage": "total", "le": "0.1"]) == 4)
        #expect(s.value("aads_diagnosis_latency_seconds_bucket", ["stage": "total", "le": "+Inf"]) == 5)
        #expect(s.value("aads_diagnosis_latency_seconds_count", ["stage": "backbone"]) == 5)
        // Written atomically: no temp file left behind.
        #expect(listFiles(dir.path) == ["aads_edge.prom"])
    }
}
