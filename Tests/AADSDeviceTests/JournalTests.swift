import AADSCore
import AADSDiagnosis
import Foundation
import GRDB
import Testing

@testable import AADSDevice

@Suite struct JournalTests {
    static let full = Diagnosis(
        file: "IMG_1.jpg", decision: .diagnosis, crop: "tomato", cropConfidence: 0.97, disease: "early_blight",
        confidence: 0.94,
        top3: [.init(label: "early_blight", confidence: 0.94), .init(label: "late_blight", confidence: 0.04)],
        mahalanobis: 12.5, threshold: 27.25, modelVersion: "1.2.0",
        latency: .init(decode: 4.5, backbone: 20.25, adapter: 6.125, total: 31.0))

    @Test func walAndFullSync() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        let settings = try journal.durabilitySettings()
        #expect(settings.journalMode == "wal")
        #expect(settings.synchronous == 2)
    }

    @Test func everyFieldRoundTrips() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        let when = try #require(ISO8601.parse("2025-06-01T10:00:00.250Z"))
        let outcome = try journal.insert(
            Self.full, imageSHA256: "ab" + String(repeating: "0", count: 62), slot: "b", createdAt: when,
            rssBytes: 42_000_000)
        #expect(outcome == .inserted(id: 1))
        var failed = Diagnosis.failure(
            file: "bad.jpg", modelVersion: "1.2.0", error: AnyCodedError(code: "corrupt_jpeg", message: "premature end")
        )
        failed.latency.total = 1.5
        try journal.insert(failed, imageSHA256: "cd" + String(repeating: "0", count: 62), slot: "b", createdAt: when)
        let rows = try journal.rows()
        #expect(rows.count == 2)
        #expect(rows[0].record == Self.full)
        #expect(rows[0].slot == "b")
        #expect(rows[0].createdAt == when)
        #expect(rows[0].rssBytes == 42_000_000)
        #expect(!rows[0].synced)
        #expect(rows[1].record == failed)
        #expect(rows[1].record.error == .init(code: "corrupt_jpeg", message: "premature end"))
    }

    @Test func oneRowPerSpoolFileAndRepeatedBytesAreMarked() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        let sha = String(repeating: "e", count: 64)
        #expect(try journal.insert(Self.full, imageSHA256: sha, slot: "a", spoolFileID: "8:1:1.0") == .inserted(id: 1))
        // The same file again (re-processed after a crash): no second row.
        #expect(
            try journal.insert(Self.full, imageSHA256: sha, slot: "a", spoolFileID: "8:1:1.0")
                == .alreadyJournaled(id: 1))
        #expect(try journal.journaledRow(file: "IMG_1.jpg", imageSHA256: sha, spoolFileID: "8:1:1.0")?.id == 1)
        // Another file with the same bytes, under another name or under the same name later: a row each.
        var copy = Self.full
        copy.file = "copy.jpg"
        #expect(
            try journal.insert(copy, imageSHA256: sha, slot: "a", spoolFileID: "8:2:2.0") == .duplicate(id: 2, of: 1))
        #expect(try journal.journaledRow(file: "IMG_1.jpg", imageSHA256: sha, spoolFileID: "8:3:3.0") == nil)
        #expect(
            try journal.insert(Self.full, imageSHA256: sha, slot: "a", spoolFileID: "8:3:3.0")
                == .duplicate(id: 3, of: 1))
        #expect(try journal.count() == 3)
        #expect(try journal.rows().map(\.duplicateOf) == [nil, 1, 1])
        // Another model version of the same bytes is a first result of its own.
        var other = Self.full
        other.modelVersion = "1.3.0"
        #expect(try journal.insert(other, imageSHA256: sha, slot: "b", spoolFileID: "8:4:4.0") == .inserted(id: 4))
        let exported = try journal.rows().map(\.jsonObject)
        #expect(exported[1]["duplicate_of"] as? Int64 == 1)
        #expect(exported[3]["duplicate_of"] is NSNull)
        let rows = try journal.rows()
        #expect(ResultsExport.csvLine(rows[1]).hasSuffix(",0,1"))  // synced, duplicate_of
        #expect(ResultsExport.csvLine(rows[3]).hasSuffix(",0,"))
    }

    /// A journal written by the previous schema (`UNIQUE (image_sha256, model_version)`) upgrades in place: no row
    /// lost, ids and the AUTOINCREMENT high-water mark kept, and a file it journaled is still recognised.
    @Test func upgradeFromTheUniqueContentSchemaKeepsEveryRow() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("r.sqlite")
        let shas = (0..<5).map { String(format: "%064x", $0) }
        do {
            let queue = try DatabaseQueue(path: path)
            try ResultsJournal.migrator.migrate(queue, upTo: "v1-results")
            try queue.write { db in
                for (i, sha) in shas.enumerated() {
                    try db.execute(
                        sql: """
                            INSERT INTO results (file, image_sha256, decision, crop, confidence, top3, model_version,
                                slot, latency_total_ms, rss_bytes, created_at, synced)
                            VALUES (?, ?, 'diagnosis', 'tomato', 0.9, '[]', '1.2.0', 'a', 12.5, 1000, ?, ?)
                            """, arguments: ["IMG_\(i).jpg", sha, "2025-06-01T10:00:0\(i).000Z", i < 2])
                }
                // The newest row pruned: its id must not come back.
                try db.execute(sql: "DELETE FROM results WHERE id = 5")
            }
            #expect(
                try queue.read { db in try db.columns(in: "results").map(\.name) }.contains("duplicate_of") == false)
        }
        let journal = try ResultsJournal(path: path)
        let rows = try journal.rows()
        #expect(rows.map(\.id) == [1, 2, 3, 4])
        #expect(rows.map(\.record.file) == ["IMG_0.jpg", "IMG_1.jpg", "IMG_2.jpg", "IMG_3.jpg"])
        #expect(rows.map(\.imageSHA256) == Array(shas.prefix(4)))
        #expect(rows.map(\.synced) == [true, true, false, false])
        #expect(rows.allSatisfy { $0.duplicateOf == nil && $0.record.latency.total == 12.5 && $0.rssBytes == 1000 })
        // A file the old version journaled but had not moved yet is recognised by name and bytes.
        #expect(try journal.journaledRow(file: "IMG_3.jpg", imageSHA256: shas[3], spoolFileID: "8:9:9.0")?.id == 4)
        // Same bytes in another file: a row now, pointing at the old one; ids continue past the pruned one.
        var copy = Self.full
        copy.file = "copy.jpg"
        #expect(
            try journal.insert(copy, imageSHA256: shas[3], slot: "a", spoolFileID: "8:9:9.0")
                == .duplicate(id: 6, of: 4))
        // Opening again does not migrate twice.
        #expect(try ResultsJournal(path: path).count() == 5)
    }

    @Test func markSyncedByIdAndList() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        for i in 0..<10 { try journal.insert(Self.full, imageSHA256: String(format: "%064x", i), slot: "a") }
        #expect(try journal.markSynced(untilID: 4) == 4)
        #expect(try journal.markSynced(untilID: 4) == 0)
        #expect(try journal.markSynced(ids: [4, 6, 8, 99]) == 2)
        #expect(try journal.rows(unsyncedOnly: true).map(\.id) == [5, 7, 9, 10])
    }

    @Test func sinceFilter() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        let base = Date(timeIntervalSince1970: 1_750_000_000)
        for i in 0..<5 {
            try journal.insert(
                Self.full, imageSHA256: String(format: "%064x", i), slot: "a",
                createdAt: base.addingTimeInterval(Double(i) * 3600))
        }
        #expect(try journal.rows(since: base.addingTimeInterval(2 * 3600)).map(\.id) == [3, 4, 5])
    }

    @Test func retentionByRowsAndDays() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        let now = Date(timeIntervalSince1970: 1_750_000_000)
        for i in 0..<20 {
            // One row per day, the oldest 19 days ago.
            try journal.insert(
                Self.full, imageSHA256: String(format: "%064x", i), slot: "a",
                createdAt: now.addingTimeInterval(Double(i - 19) * 86_400))
        }
        try journal.markSynced(untilID: 3)
        let byDays = try journal.prune(maxRows: 0, maxDays: 10, now: now)
        // Rows older than 10 days: days −19 … −11, nine rows, three of them synced.
        #expect(byDays.deleted == 9)
        #expect(byDays.unsynced == 6)
        #expect(try journal.count() == 11)
        let byRows = try journal.prune(maxRows: 4, maxDays: 0, now: now)
        #expect(byRows.deleted == 7)
        #expect(try journal.rows().map(\.id) == [17, 18, 19, 20])
        #expect(try journal.prune(maxRows: 0, maxDays: 0, now: now).deleted == 0)
    }

    @Test func exportFormats() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        var tricky = Self.full
        tricky.file = "field, row \"7\".jpg"
        try journal.insert(tricky, imageSHA256: String(repeating: "1", count: 64), slot: "a")
        let rows = try journal.rows()
        var jsonl: [String] = []
        ResultsExport.write(rows, format: .jsonl) { jsonl.append($0) }
        #expect(jsonl.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(jsonl[0].utf8)) as? [String: Any])
        #expect(object["file"] as? String == tricky.file)
        #expect(object["decision"] as? String == "diagnosis")
        #expect(object["confidence"] as? Double == 0.94)
        #expect((object["latency_ms"] as? [String: Any])?["backbone"] as? Double == 20.25)
        #expect((object["top3"] as? [[String: Any]])?.count == 2)
        #expect(object["synced"] as? Bool == false)

        var csv: [String] = []
        ResultsExport.write(rows, format: .csv) { csv.append($0) }
        #expect(csv.count == 2)
        #expect(csv[0] == ResultsExport.csvColumns.joined(separator: ","))
        let fields = parseCSVLine(csv[1])
        #expect(fields.count == ResultsExport.csvColumns.count)
        #expect(fields[2] == tricky.file)
        #expect(fields[9] == #"[{"confidence":0.94,"label":"early_blight"},{"confidence":0.04,"label":"late_blight"}]"#)
    }

    @Test func pagedExportToAFileAndNewestRows() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let journal = try ResultsJournal(path: dir.file("r.sqlite"))
        // 1,200 rows: the export pages through them 1,000 at a time.
        for i in 0..<1200 { try journal.insert(Self.full, imageSHA256: String(format: "%064x", i), slot: "a") }
        try journal.markSynced(untilID: 100)
        #expect(
            try ResultsExport.export(journal: journal, unsyncedOnly: true, format: .csv, to: dir.file("out.csv"))
                == 1100)
        let lines = try String(contentsOfFile: dir.file("out.csv"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1101)
        #expect(parseCSVLine(String(lines[1])).first == "101")
        #expect(parseCSVLine(String(lines[1100])).first == "1200")
        #expect(listFiles(dir.path).sorted() == ["out.csv", "r.sqlite", "r.sqlite-shm", "r.sqlite-wal"])
        var visited = 0
        try journal.forEachRow(pageSize: 333) { _ in visited += 1 }
        #expect(visited == 1200)
        #expect(try journal.newestRows(3).map(\.id) == [1198, 1199, 1200])
    }

    @Test func anUnknownStoredDecisionIsAnErrorNotAnErrorRow() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let path = dir.file("r.sqlite")
        let sha = String(repeating: "0", count: 64)
        do {
            let journal = try ResultsJournal(path: path)
            try journal.insert(Self.full, imageSHA256: sha, slot: "a")
            #expect(try journal.rows().map(\.record) == [Self.full])
        }
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in try db.execute(sql: "UPDATE results SET decision = 'maybe'") }
        try queue.close()
        let journal = try ResultsJournal(path: path)
        let error = #expect(throws: JournalError.self) { try journal.rows() }
        #expect(error?.kind == .journalError)
        #expect(error?.message.contains("unknown decision \"maybe\"") == true)
        #expect(throws: JournalError.self) {
            try journal.journaledRow(file: Self.full.file, imageSHA256: sha, spoolFileID: nil)
        }
    }

    @Test func missingJournalIsAnErrorWhenNotCreating() {
        #expect(throws: JournalError.self) { try ResultsJournal(path: "/nonexistent/x.sqlite", create: false) }
    }
}

/// An RFC 4180 line parser, independent of the writer.
func parseCSVLine(_ line: String) -> [String] {
    var fields: [String] = []
    var current = ""
    var quoted = false
    var chars = Array(line)
    var i = 0
    while i < chars.count {
        let c = chars[i]
        if quoted {
            if c == "\"" {
                if i + 1 < chars.count && chars[i + 1] == "\"" {
                    current.append("\"")
                    i += 1
                } else {
                    quoted = false
                }
            } else {
                current.append(c)
            }
        } else if c == "\"" {
            quoted = true
        } else if c == "," {
            fields.append(current)
            current = ""
        } else {
            current.append(c)
        }
        i += 1
    }
    fields.append(current)
    chars.removeAll()
    return fields
}
