import AADSCore
import AADSDiagnosis
import Foundation
import GRDB

#if canImport(Glibc)
    import Glibc
#endif

/// Errors of the results journal.
public struct JournalError: CodedError, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case journalError = "journal_error"
        case diskFull = "disk_full"
        case notFound = "journal_not_found"
        /// A journal is there where a new one was to be made.
        case exists = "journal_exists"
    }

    public let kind: Code
    public let message: String
    public var code: String { kind.rawValue }

    public init(_ kind: Code, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// A `journal_error`.
    public init(_ message: String) { self.init(.journalError, message) }

    /// The journal is the service's own storage: when it fails, the work could not be done.
    public var failure: FailureKind { .couldNotRun }

    static func wrap(_ error: any Error, _ what: String) -> JournalError {
        if let journal = error as? JournalError { return journal }
        if let db = error as? DatabaseError {
            return JournalError(
                db.resultCode == .SQLITE_FULL ? .diskFull : .journalError, "\(what): \(db.message ?? db.description)")
        }
        return JournalError("\(what): \(error)")
    }
}

/// One stored diagnosis.
public struct JournalRow: Sendable, Equatable {
    public var id: Int64
    public var imageSHA256: String
    public var slot: String
    public var record: Diagnosis
    public var createdAt: Date
    public var synced: Bool
    /// Resident memory of the service when the row was written, bytes.
    public var rssBytes: Int64?
    /// The first row of the same bytes and model version, when this spool file repeats an earlier one's content.
    public var duplicateOf: Int64?

    /// The JSON object of `results export --format jsonl`.
    public var jsonObject: [String: Any] {
        var o: [String: Any] = [
            "id": id, "file": record.file, "image_sha256": imageSHA256, "decision": record.decision.rawValue,
            "model_version": record.modelVersion, "slot": slot, "created_at": ISO8601.string(createdAt),
            "synced": synced,
            "top3": record.top3.map { ["label": $0.label, "confidence": $0.confidence] as [String: Any] },
            "latency_ms": [
                "decode": record.latency.decode, "backbone": record.latency.backbone,
                "adapter": record.latency.adapter, "total": record.latency.total,
            ],
        ]
        o["crop"] = record.crop ?? NSNull()
        o["crop_confidence"] = record.cropConfidence ?? NSNull()
        o["disease"] = record.disease ?? NSNull()
        o["confidence"] = record.confidence ?? NSNull()
        o["mahalanobis"] = record.mahalanobis ?? NSNull()
        o["threshold"] = record.threshold ?? NSNull()
        o["rss_bytes"] = rssBytes ?? NSNull()
        o["duplicate_of"] = duplicateOf ?? NSNull()
        if let error = record.error { o["error"] = ["code": error.code, "message": error.message] }
        return o
    }
}

/// What an insert did.
public enum InsertOutcome: Sendable, Equatable {
    /// A new row.
    case inserted(id: Int64)
    /// A new row for a spool file whose bytes repeat row `of` (same model version); the row says so in
    /// `duplicate_of`.
    case duplicate(id: Int64, of: Int64)
    /// The same spool file already has its row (it is being re-processed after a crash); nothing was added.
    case alreadyJournaled(id: Int64)

    public var id: Int64 {
        switch self {
        case .inserted(let id), .duplicate(let id, _), .alreadyJournaled(let id): id
        }
    }
}

/// A health check of a slot (the accuracy side of the alerts and the version comparison of the report).
public struct HealthCheckRecord: Sendable, Equatable {
    public var slot: String
    public var modelVersion: String
    public var passed: Bool
    public var cropRoutingAccuracy: Double?
    public var adapterAccuracy: Double?
    public var oodAUROC: Double?
    public var oodFPR: Double?
    public var latencyMs: Double?
    public var memoryMB: Double?
    public var detail: String
    public var createdAt: Date

    public init(
        slot: String, modelVersion: String, passed: Bool, cropRoutingAccuracy: Double? = nil,
        adapterAccuracy: Double? = nil, oodAUROC: Double? = nil, oodFPR: Double? = nil, latencyMs: Double? = nil,
        memoryMB: Double? = nil, detail: String = "", createdAt: Date = Date()
    ) {
        self.slot = slot
        self.modelVersion = modelVersion
        self.passed = passed
        self.cropRoutingAccuracy = cropRoutingAccuracy
        self.adapterAccuracy = adapterAccuracy
        self.oodAUROC = oodAUROC
        self.oodFPR = oodFPR
        self.latencyMs = latencyMs
        self.memoryMB = memoryMB
        self.detail = detail
        self.createdAt = createdAt
    }

    /// The accuracy the alert rule watches: adapter accuracy, else routing accuracy.
    public var accuracy: Double? { adapterAccuracy ?? cropRoutingAccuracy }
}

/// A raised or cleared alert.
public struct AlertRecord: Sendable, Equatable {
    public var rule: String
    public var severity: AlertSeverity
    /// `raised` or `cleared`.
    public var state: String
    public var message: String
    public var value: Double
    public var threshold: Double
    public var modelVersion: String
    public var createdAt: Date

    public init(
        rule: String, severity: AlertSeverity, state: String, message: String, value: Double, threshold: Double,
        modelVersion: String, createdAt: Date
    ) {
        self.rule = rule
        self.severity = severity
        self.state = state
        self.message = message
        self.value = value
        self.threshold = threshold
        self.modelVersion = modelVersion
        self.createdAt = createdAt
    }
}

/// A slot life-cycle event seen by the service (start in trial, commit, rollback, ...).
public struct SlotEventRecord: Sendable, Equatable {
    public var event: String
    public var slot: String
    public var modelVersion: String
    public var detail: String
    public var createdAt: Date

    public init(event: String, slot: String, modelVersion: String, detail: String = "", createdAt: Date = Date()) {
        self.event = event
        self.slot = slot
        self.modelVersion = modelVersion
        self.detail = detail
        self.createdAt = createdAt
    }
}

/// The durable results journal: SQLite through GRDB in WAL mode with `synchronous=FULL`.
///
/// Durability: in WAL mode a commit appends to the WAL file; with `synchronous=FULL` SQLite fsyncs the WAL
/// before the commit returns, so a committed row survives both a SIGKILL and a power cut. (`NORMAL` would
/// survive a SIGKILL — the WAL is in the page cache — but could lose the last commits on power loss; one fsync
/// per image is cheap next to a diagnosis.)
///
/// One row per spool file: a row names its file and the file's identity in the spool (`spool_file_id`: device,
/// inode and modification time, which a rename into `done/` keeps), so re-processing a file after a crash finds
/// its row instead of adding a second, while another file with the same bytes gets a row of its own that points
/// at the first result for those bytes and model version (`duplicate_of`). Rows written before identities were
/// recorded match on file name and content alone.
public final class ResultsJournal: Sendable {
    public let path: String
    let pool: DatabasePool

    /// Opens (creating when `create`) the journal and applies migrations.
    public init(path: String, create: Bool = true) throws {
        self.path = path
        if !create && !FileManager.default.fileExists(atPath: path) {
            throw JournalError(.notFound, "no results journal at \(path)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        if create && !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        // A small, bounded page cache per connection (512 KiB): the service appends and looks rows up by a unique
        // index, so a bigger cache buys nothing but resident memory on a small device.
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA cache_size = -512") }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // The pool has one long-lived writer connection. GRDB switches it to synchronous=NORMAL when it
            // enables WAL; FULL is set afterwards so every commit fsyncs the WAL.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            try Self.migrator.migrate(pool)
        } catch {
            throw JournalError.wrap(error, "cannot open \(path)")
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-results") { db in
            try db.execute(
                sql: """
                    CREATE TABLE results (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        file TEXT NOT NULL,
                        image_sha256 TEXT NOT NULL,
                        decision TEXT NOT NULL,
                        crop TEXT,
                        crop_confidence REAL,
                        disease TEXT,
                        confidence REAL,
                        top3 TEXT NOT NULL DEFAULT '[]',
                        mahalanobis REAL,
                        threshold REAL,
                        model_version TEXT NOT NULL,
                        slot TEXT NOT NULL,
                        latency_decode_ms REAL NOT NULL DEFAULT 0,
                        latency_backbone_ms REAL NOT NULL DEFAULT 0,
                        latency_adapter_ms REAL NOT NULL DEFAULT 0,
                        latency_total_ms REAL NOT NULL DEFAULT 0,
                        error_code TEXT,
                        error_message TEXT,
                        rss_bytes INTEGER,
                        created_at TEXT NOT NULL,
                        synced INTEGER NOT NULL DEFAULT 0,
                        UNIQUE (image_sha256, model_version)
                    );
                    CREATE INDEX results_created_at ON results(created_at);
                    CREATE INDEX results_unsynced ON results(synced, id);
                    CREATE TABLE ab_samples (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        image_sha256 TEXT NOT NULL,
                        baseline_version TEXT NOT NULL,
                        candidate_version TEXT NOT NULL,
                        baseline_decision TEXT NOT NULL,
                        candidate_decision TEXT NOT NULL,
                        baseline_label TEXT NOT NULL,
                        candidate_label TEXT NOT NULL,
                        baseline_latency_ms REAL NOT NULL,
                        candidate_latency_ms REAL NOT NULL,
                        created_at TEXT NOT NULL,
                        UNIQUE (image_sha256, baseline_version, candidate_version)
                    );
                    CREATE TABLE health_checks (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        slot TEXT NOT NULL,
                        model_version TEXT NOT NULL,
                        passed INTEGER NOT NULL,
                        crop_routing_accuracy REAL,
                        adapter_accuracy REAL,
                        ood_auroc REAL,
                        ood_fpr REAL,
                        latency_ms REAL,
                        memory_mb REAL,
                        detail TEXT NOT NULL DEFAULT '',
                        created_at TEXT NOT NULL
                    );
                    CREATE TABLE alerts (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        rule TEXT NOT NULL,
                        severity TEXT NOT NULL,
                        state TEXT NOT NULL,
                        message TEXT NOT NULL,
                        value REAL NOT NULL,
                        threshold REAL NOT NULL,
                        model_version TEXT NOT NULL,
                        created_at TEXT NOT NULL
                    );
                    CREATE TABLE slot_events (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        event TEXT NOT NULL,
                        slot TEXT NOT NULL,
                        model_version TEXT NOT NULL,
                        detail TEXT NOT NULL DEFAULT '',
                        created_at TEXT NOT NULL
                    );
                    """)
        }
        migrator.registerMigration("v2-one-row-per-spool-file", migrate: migrateToOneRowPerSpoolFile)
        return migrator
    }

    /// The results columns v1 and v2 share.
    static let resultColumns = """
        id, file, image_sha256, decision, crop, crop_confidence, disease, confidence, top3, mahalanobis, threshold,
        model_version, slot, latency_decode_ms, latency_backbone_ms, latency_adapter_ms, latency_total_ms,
        error_code, error_message, rss_bytes, created_at, synced
        """

    /// v2: drops `UNIQUE (image_sha256, model_version)`, which left a second spool file with the same bytes without
    /// a row, and adds `spool_file_id` and `duplicate_of`. SQLite cannot drop a constraint, so the table is rebuilt
    /// (in the migration's transaction); every row keeps its id, and the AUTOINCREMENT high-water mark is kept so
    /// an id is never handed out twice.
    static func migrateToOneRowPerSpoolFile(_ db: Database) throws {
        let highWater = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'results'") ?? 0
        try db.execute(
            sql: """
                CREATE TABLE results_v2 (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    file TEXT NOT NULL,
                    image_sha256 TEXT NOT NULL,
                    decision TEXT NOT NULL,
                    crop TEXT,
                    crop_confidence REAL,
                    disease TEXT,
                    confidence REAL,
                    top3 TEXT NOT NULL DEFAULT '[]',
                    mahalanobis REAL,
                    threshold REAL,
                    model_version TEXT NOT NULL,
                    slot TEXT NOT NULL,
                    latency_decode_ms REAL NOT NULL DEFAULT 0,
                    latency_backbone_ms REAL NOT NULL DEFAULT 0,
                    latency_adapter_ms REAL NOT NULL DEFAULT 0,
                    latency_total_ms REAL NOT NULL DEFAULT 0,
                    error_code TEXT,
                    error_message TEXT,
                    rss_bytes INTEGER,
                    created_at TEXT NOT NULL,
                    synced INTEGER NOT NULL DEFAULT 0,
                    spool_file_id TEXT,
                    duplicate_of INTEGER
                );
                INSERT INTO results_v2 (\(resultColumns)) SELECT \(resultColumns) FROM results ORDER BY id;
                DROP TABLE results;
                ALTER TABLE results_v2 RENAME TO results;
                CREATE INDEX results_created_at ON results(created_at);
                CREATE INDEX results_unsynced ON results(synced, id);
                CREATE INDEX results_content ON results(image_sha256, model_version, id);
                CREATE INDEX results_file ON results(file, image_sha256);
                """)
        let top = max(highWater, try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM results") ?? 0)
        try db.execute(sql: "DELETE FROM sqlite_sequence WHERE name IN ('results', 'results_v2')")
        if top > 0 {
            try db.execute(sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('results', ?)", arguments: [top])
        }
    }

    /// The durability settings actually in force on a write connection: (`journal_mode`, `synchronous`),
    /// where synchronous 2 = FULL.
    public func durabilitySettings() throws -> (journalMode: String, synchronous: Int) {
        try write("cannot read pragmas") { db in
            let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? ""
            let sync = try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1
            return (mode, sync)
        }
    }

    // MARK: Results

    /// Stores the diagnosis of one spool file (`record.file`, with its bytes' sha256 and its `spoolFileID`).
    ///
    /// In one transaction: when this file already has its row (the same name and bytes, and the same spool
    /// identity or a row written without one), nothing is added (`.alreadyJournaled`); otherwise a row is added,
    /// with `duplicate_of` set when an earlier row holds the same bytes and model version (`.duplicate`).
    @discardableResult
    public func insert(
        _ record: Diagnosis, imageSHA256: String, slot: String, createdAt: Date = Date(), rssBytes: Int64? = nil,
        spoolFileID: String? = nil
    ) throws -> InsertOutcome {
        let top3JSON = Self.top3JSON(record.top3)
        do {
            return try pool.write { db in
                if let existing = try Self.journaledRow(
                    db, file: record.file, imageSHA256: imageSHA256, spoolFileID: spoolFileID)
                {
                    return .alreadyJournaled(id: existing.id)
                }
                let original = try Int64.fetchOne(
                    db,
                    sql: """
                        SELECT id FROM results WHERE image_sha256 = ? AND model_version = ? AND duplicate_of IS NULL
                        ORDER BY id LIMIT 1
                        """, arguments: [imageSHA256, record.modelVersion])
                try db.execute(
                    sql: """
                        INSERT INTO results (file, image_sha256, decision, crop, crop_confidence, disease, confidence,
                            top3, mahalanobis, threshold, model_version, slot, latency_decode_ms, latency_backbone_ms,
                            latency_adapter_ms, latency_total_ms, error_code, error_message, rss_bytes, created_at,
                            spool_file_id, duplicate_of)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        record.file, imageSHA256, record.decision.rawValue, record.crop, record.cropConfidence,
                        record.disease, record.confidence, top3JSON, record.mahalanobis, record.threshold,
                        record.modelVersion, slot, record.latency.decode, record.latency.backbone,
                        record.latency.adapter, record.latency.total, record.error?.code, record.error?.message,
                        rssBytes, ISO8601.string(createdAt), spoolFileID, original,
                    ])
                let id = db.lastInsertedRowID
                return original.map { .duplicate(id: id, of: $0) } ?? .inserted(id: id)
            }
        } catch {
            throw JournalError.wrap(error, "cannot store result for \(record.file)")
        }
    }

    /// The row of a spool file already journaled (a crash between the commit and the move leaves the file in the
    /// spool): same name and bytes, and the same spool identity or a row written without one.
    public func journaledRow(file: String, imageSHA256: String, spoolFileID: String?) throws
        -> (id: Int64, decision: Decision)?
    {
        try read("cannot query journal") { db in
            try Self.journaledRow(db, file: file, imageSHA256: imageSHA256, spoolFileID: spoolFileID)
        }
    }

    static func journaledRow(_ db: Database, file: String, imageSHA256: String, spoolFileID: String?) throws
        -> (id: Int64, decision: Decision)?
    {
        guard
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT id, decision FROM results WHERE file = ?1 AND image_sha256 = ?2
                        AND (spool_file_id IS NULL OR ?3 IS NULL OR spool_file_id = ?3)
                    ORDER BY id LIMIT 1
                    """, arguments: [file, imageSHA256, spoolFileID])
        else { return nil }
        return (row["id"], try decision(row["decision"]))
    }

    /// Rows in id order, optionally only those created at or after `since`, after `afterID`, or unsynced.
    public func rows(since: Date? = nil, afterID: Int64 = 0, unsyncedOnly: Bool = false, limit: Int? = nil) throws
        -> [JournalRow]
    {
        var sql = "SELECT * FROM results WHERE id > ?"
        var arguments: StatementArguments = [afterID]
        if let since {
            sql += " AND created_at >= ?"
            arguments += [ISO8601.string(since)]
        }
        if unsyncedOnly { sql += " AND synced = 0" }
        sql += " ORDER BY id"
        if let limit { sql += " LIMIT \(max(0, limit))" }
        return try read("cannot read results") { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { try Self.journalRow($0) }
        }
    }

    /// Visits rows in id order, a page at a time, so exporting a large journal needs little memory.
    public func forEachRow(
        since: Date? = nil, unsyncedOnly: Bool = false, pageSize: Int = 1000, _ body: (JournalRow) throws -> Void
    ) throws {
        var after: Int64 = 0
        while true {
            let page = try rows(since: since, afterID: after, unsyncedOnly: unsyncedOnly, limit: pageSize)
            for row in page { try body(row) }
            guard let last = page.last, page.count == pageSize else { return }
            after = last.id
        }
    }

    /// The newest `count` rows (optionally since a time / unsynced only), oldest first.
    public func newestRows(_ count: Int, since: Date? = nil, unsyncedOnly: Bool = false) throws -> [JournalRow] {
        var sql = "SELECT * FROM results WHERE 1"
        var arguments: StatementArguments = []
        if let since {
            sql += " AND created_at >= ?"
            arguments += [ISO8601.string(since)]
        }
        if unsyncedOnly { sql += " AND synced = 0" }
        sql += " ORDER BY id DESC LIMIT \(max(0, count))"
        return try read("cannot read results") { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { try Self.journalRow($0) }.reversed()
        }
    }

    /// The number of result rows.
    public func count() throws -> Int {
        try read("cannot count results") { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM results") ?? 0 }
    }

    /// Marks every row with id ≤ `untilID` as synced; returns how many changed.
    @discardableResult
    public func markSynced(untilID: Int64) throws -> Int {
        try write("cannot mark synced") { db in
            try db.execute(sql: "UPDATE results SET synced = 1 WHERE id <= ? AND synced = 0", arguments: [untilID])
            return db.changesCount
        }
    }

    /// Marks the given rows as synced; returns how many changed.
    @discardableResult
    public func markSynced(ids: [Int64]) throws -> Int {
        guard !ids.isEmpty else { return 0 }
        return try write("cannot mark synced") { db in
            var changed = 0
            for chunk in stride(from: 0, to: ids.count, by: 500).map({ Array(ids[$0..<min($0 + 500, ids.count)]) }) {
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                try db.execute(
                    sql: "UPDATE results SET synced = 1 WHERE synced = 0 AND id IN (\(marks))",
                    arguments: StatementArguments(chunk))
                changed += db.changesCount
            }
            return changed
        }
    }

    /// Retention: deletes rows older than `maxDays` and all but the newest `maxRows` (0 disables a limit).
    /// Returns the number of rows deleted and how many of them were not yet synced.
    @discardableResult
    public func prune(maxRows: Int, maxDays: Int, now: Date = Date()) throws -> (deleted: Int, unsynced: Int) {
        try write("cannot prune journal") { db in
            var condition: [String] = []
            var arguments: StatementArguments = []
            if maxDays > 0 {
                condition.append("created_at < ?")
                arguments += [ISO8601.string(now.addingTimeInterval(-Double(maxDays) * 86_400))]
            }
            if maxRows > 0 {
                condition.append("id <= (SELECT id FROM results ORDER BY id DESC LIMIT 1 OFFSET ?)")
                arguments += [maxRows]
            }
            guard !condition.isEmpty else { return (0, 0) }
            let predicate = condition.joined(separator: " OR ")
            let unsynced =
                try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM results WHERE synced = 0 AND (\(predicate))", arguments: arguments)
                ?? 0
            try db.execute(sql: "DELETE FROM results WHERE \(predicate)", arguments: arguments)
            return (db.changesCount, unsynced)
        }
    }

    // MARK: A/B samples

    /// Stores one shadow comparison; a repeat of the same image and versions is ignored.
    public func insert(_ sample: ABSample) throws {
        try write("cannot store A/B sample") { db in
            try db.execute(
                sql: """
                    INSERT INTO ab_samples (image_sha256, baseline_version, candidate_version, baseline_decision,
                        candidate_decision, baseline_label, candidate_label, baseline_latency_ms, candidate_latency_ms,
                        created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (image_sha256, baseline_version, candidate_version) DO NOTHING
                    """,
                arguments: [
                    sample.imageSHA256, sample.baselineVersion, sample.candidateVersion,
                    sample.baselineDecision.rawValue, sample.candidateDecision.rawValue, sample.baselineLabel,
                    sample.candidateLabel, sample.baselineLatencyMs, sample.candidateLatencyMs,
                    ISO8601.string(sample.createdAt),
                ])
        }
    }

    /// A/B samples, optionally for one candidate version, in insertion order.
    public func abSamples(candidateVersion: String? = nil) throws -> [ABSample] {
        try read("cannot read A/B samples") { db in
            let rows: [Row]
            if let candidateVersion {
                rows = try Row.fetchAll(
                    db, sql: "SELECT * FROM ab_samples WHERE candidate_version = ? ORDER BY id",
                    arguments: [candidateVersion])
            } else {
                rows = try Row.fetchAll(db, sql: "SELECT * FROM ab_samples ORDER BY id")
            }
            return try rows.map { row in
                ABSample(
                    imageSHA256: row["image_sha256"], baselineVersion: row["baseline_version"],
                    candidateVersion: row["candidate_version"],
                    baselineDecision: try Self.decision(row["baseline_decision"]),
                    candidateDecision: try Self.decision(row["candidate_decision"]),
                    baselineLabel: row["baseline_label"], candidateLabel: row["candidate_label"],
                    baselineLatencyMs: row["baseline_latency_ms"], candidateLatencyMs: row["candidate_latency_ms"],
                    createdAt: Self.date(row["created_at"]))
            }
        }
    }

    // MARK: Health checks, alerts, slot events

    /// Stores a health check unless the same run (slot and time) is there already; true when stored.
    @discardableResult
    public func insert(_ check: HealthCheckRecord) throws -> Bool {
        try write("cannot store health check") { db in
            let seen = try Bool.fetchOne(
                db, sql: "SELECT EXISTS(SELECT 1 FROM health_checks WHERE slot = ? AND created_at = ?)",
                arguments: [check.slot, ISO8601.string(check.createdAt)])
            if seen == true { return false }
            try db.execute(
                sql: """
                    INSERT INTO health_checks (slot, model_version, passed, crop_routing_accuracy, adapter_accuracy,
                        ood_auroc, ood_fpr, latency_ms, memory_mb, detail, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    check.slot, check.modelVersion, check.passed, check.cropRoutingAccuracy, check.adapterAccuracy,
                    check.oodAUROC, check.oodFPR, check.latencyMs, check.memoryMB, check.detail,
                    ISO8601.string(check.createdAt),
                ])
            return true
        }
    }

    public func healthChecks() throws -> [HealthCheckRecord] {
        try read("cannot read health checks") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM health_checks ORDER BY id").map { row in
                HealthCheckRecord(
                    slot: row["slot"], modelVersion: row["model_version"], passed: row["passed"],
                    cropRoutingAccuracy: row["crop_routing_accuracy"], adapterAccuracy: row["adapter_accuracy"],
                    oodAUROC: row["ood_auroc"], oodFPR: row["ood_fpr"], latencyMs: row["latency_ms"],
                    memoryMB: row["memory_mb"], detail: row["detail"], createdAt: Self.date(row["created_at"]))
            }
        }
    }

    public func insert(_ alert: AlertRecord) throws {
        try write("cannot store alert") { db in
            try db.execute(
                sql: """
                    INSERT INTO alerts (rule, severity, state, message, value, threshold, model_version, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    alert.rule, alert.severity.rawValue, alert.state, alert.message, alert.value, alert.threshold,
                    alert.modelVersion, ISO8601.string(alert.createdAt),
                ])
        }
    }

    public func alerts() throws -> [AlertRecord] {
        try read("cannot read alerts") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM alerts ORDER BY id").map { row in
                AlertRecord(
                    rule: row["rule"], severity: AlertSeverity(rawValue: row["severity"]) ?? .warning,
                    state: row["state"], message: row["message"], value: row["value"], threshold: row["threshold"],
                    modelVersion: row["model_version"], createdAt: Self.date(row["created_at"]))
            }
        }
    }

    public func insert(_ event: SlotEventRecord) throws {
        try write("cannot store slot event") { db in
            try db.execute(
                sql: "INSERT INTO slot_events (event, slot, model_version, detail, created_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [event.event, event.slot, event.modelVersion, event.detail, ISO8601.string(event.createdAt)])
        }
    }

    public func slotEvents() throws -> [SlotEventRecord] {
        try read("cannot read slot events") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM slot_events ORDER BY id").map { row in
                SlotEventRecord(
                    event: row["event"], slot: row["slot"], modelVersion: row["model_version"], detail: row["detail"],
                    createdAt: Self.date(row["created_at"]))
            }
        }
    }

    // MARK: Helpers

    func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do { return try pool.read(body) } catch { throw JournalError.wrap(error, what) }
    }

    private func write<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do { return try pool.write(body) } catch { throw JournalError.wrap(error, what) }
    }

    static func date(_ text: String?) -> Date {
        text.flatMap(ISO8601.parse) ?? Date(timeIntervalSince1970: 0)
    }

    static func top3JSON(_ top3: [ScoredLabel]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]  // stable column text across runs and platforms
        guard let data = try? encoder.encode(top3) else { return "[]" }
        return String(decoding: data, as: UTF8.self)
    }

    /// A stored decision; one this runtime does not know is a damaged journal, never silently an `error` row.
    static func decision(_ text: String) throws -> Decision {
        guard let decision = Decision(rawValue: text) else {
            throw JournalError("unknown decision \"\(text)\" in the journal")
        }
        return decision
    }

    static func journalRow(_ row: Row) throws -> JournalRow {
        let top3Text: String = row["top3"] ?? "[]"
        let top3 = (try? JSONDecoder().decode([ScoredLabel].self, from: Data(top3Text.utf8))) ?? []
        let errorCode: String? = row["error_code"]
        let errorMessage: String? = row["error_message"]
        let record = Diagnosis(
            file: row["file"], decision: try decision(row["decision"]), crop: row["crop"],
            cropConfidence: row["crop_confidence"], disease: row["disease"], confidence: row["confidence"], top3: top3,
            mahalanobis: row["mahalanobis"], threshold: row["threshold"], modelVersion: row["model_version"],
            latency: StageLatency(
                decode: row["latency_decode_ms"], backbone: row["latency_backbone_ms"],
                adapter: row["latency_adapter_ms"], total: row["latency_total_ms"]),
            error: errorCode.map { AnyCodedError(code: $0, message: errorMessage ?? "") })
        return JournalRow(
            id: row["id"], imageSHA256: row["image_sha256"], slot: row["slot"], record: record,
            createdAt: date(row["created_at"]), synced: row["synced"], rssBytes: row["rss_bytes"],
            duplicateOf: row["duplicate_of"])
    }
}

/// `results export` formats.
public enum ResultsExport {
    public enum Format: String, Sendable, CaseIterable {
        case jsonl, csv
    }

    public static let csvColumns = [
        "id", "created_at", "file", "image_sha256", "decision", "crop", "crop_confidence", "disease", "confidence",
        "top3", "mahalanobis", "threshold", "model_version", "slot", "latency_decode_ms", "latency_backbone_ms",
        "latency_adapter_ms", "latency_total_ms", "error_code", "error_message", "rss_bytes", "synced", "duplicate_of",
    ]

    /// Writes rows in the format, one line each (CSV with a header), to `emit`.
    public static func write(_ rows: [JournalRow], format: Format, header: Bool = true, emit: (String) -> Void) {
        switch format {
        case .jsonl:
            for row in rows { emit(JSONLine.encode(row.jsonObject)) }
        case .csv:
            if header { emit(csvColumns.joined(separator: ",")) }
            for row in rows { emit(csvLine(row)) }
        }
    }

    /// Streams rows a page at a time to standard output, or atomically to `path` (temp file, fsync, rename).
    /// Returns the number of rows.
    @discardableResult
    public static func export(
        journal: ResultsJournal, since: Date? = nil, unsyncedOnly: Bool = false, format: Format, to path: String? = nil
    ) throws -> Int {
        var fd: Int32 = 1
        var temp = ""
        if let path {
            (fd, temp) = try AtomicFile.createTemporary(for: path)
        }
        var buffer = ""
        var count = 0
        func flush() throws {
            try AtomicFile.writeAll(fd: fd, data: Data(buffer.utf8), path: path ?? "standard output")
            buffer = ""
        }
        do {
            if format == .csv { buffer += csvColumns.joined(separator: ",") + "\n" }
            try journal.forEachRow(since: since, unsyncedOnly: unsyncedOnly) { row in
                write([row], format: format, header: false) { buffer += $0 + "\n" }
                count += 1
                if buffer.utf8.count > 1 << 16 { try flush() }
            }
            try flush()
            if let path {
                guard fsync(fd) == 0 else { throw FileIOError(.ioError, "cannot fsync \(temp)") }
                close(fd)
                fd = -1
                guard rename(temp, path) == 0 else {
                    throw FileIOError(
                        .ioError, "cannot rename onto \(path): \(String(cString: strerror(errno)))")
                }
                let directory = (path as NSString).deletingLastPathComponent
                try AtomicFile.syncDirectory(directory.isEmpty ? "." : directory)
            }
        } catch {
            if path != nil {
                if fd >= 0 { close(fd) }
                unlink(temp)
            }
            throw error
        }
        return count
    }

    /// One CSV line (RFC 4180 quoting).
    public static func csvLine(_ row: JournalRow) -> String {
        let r = row.record
        func num(_ v: Double?) -> String { v.map { String($0) } ?? "" }
        let fields: [String] = [
            String(row.id), ISO8601.string(row.createdAt), r.file, row.imageSHA256, r.decision.rawValue, r.crop ?? "",
            num(r.cropConfidence), r.disease ?? "", num(r.confidence), ResultsJournal.top3JSON(r.top3),
            num(r.mahalanobis),
            num(r.threshold), r.modelVersion, row.slot, String(r.latency.decode), String(r.latency.backbone),
            String(r.latency.adapter), String(r.latency.total), r.error?.code ?? "", r.error?.message ?? "",
            row.rssBytes.map(String.init) ?? "", row.synced ? "1" : "0", row.duplicateOf.map(String.init) ?? "",
        ]
        return fields.map(csvQuote).joined(separator: ",")
    }

    static func csvQuote(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
