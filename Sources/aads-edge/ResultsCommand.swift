import AADSCore
import AADSDevice
import ArgumentParser
import Foundation

extension ResultsExport.Format: ExpressibleByArgument {}

/// Where the journal is: `--journal FILE`, else the config's `journal_path`.
struct JournalOption: ParsableArguments {
    @OptionGroup var configOption: ConfigOption
    @Option(name: .long, help: "Results journal, SQLite (default: the config's journal_path).") var journal: String?

    func resolve() throws -> (DeviceConfig, String) {
        let config = try configOption.load()
        return (config, journal ?? config.journalPath)
    }

    func open() throws -> (DeviceConfig, ResultsJournal) {
        let (config, path) = try resolve()
        return (config, try ResultsJournal(path: path, create: false))
    }
}

func parseSince(_ text: String?) throws -> Date? {
    guard let text else { return nil }
    guard let date = ISO8601.parseSince(text) else {
        throw ValidationError(
            "--since: expected an ISO 8601 time (2024-05-01T12:00:00Z), a date, or an age like 24h / 7d")
    }
    return date
}

struct ResultsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "results", abstract: "Read, export and mark the results journal.",
        subcommands: [List.self, Export.self, MarkSynced.self, Prune.self])

    struct List: AADSCommand {
        static let configuration = CommandConfiguration(abstract: "List results (a table, or JSON lines with --json).")
        @OptionGroup var location: JournalOption
        @Option(name: .long, help: "Only results at or after this time (ISO 8601, or an age: 24h, 7d).") var since:
            String?
        @Option(name: .long, help: "At most this many rows (the newest).") var limit: Int?
        @Flag(name: .long, help: "Only rows not yet synced.") var unsynced = false
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.always(.couldNotRun)

        func body() throws {
            let (_, journal) = try location.open()
            let from = try parseSince(since)
            let rows =
                try limit.map { try journal.newestRows($0, since: from, unsyncedOnly: unsynced) }
                ?? journal.rows(since: from, unsyncedOnly: unsynced)
            if output.json {
                ResultsExport.write(rows, format: .jsonl) { print($0) }
            } else {
                print(
                    "id      created_at                file                            decision      crop/disease                     conf   version       synced"
                )
                for row in rows {
                    let r = row.record
                    let label =
                        r.decision == .diagnosis
                        ? "\(r.crop ?? "")/\(r.disease ?? "")" : (r.error?.code ?? r.crop ?? "")
                    print(
                        pad(String(row.id), 8) + pad(ISO8601.string(row.createdAt), 26) + pad(r.file, 32)
                            + pad(r.decision.rawValue, 14)
                            + pad(label, 33) + pad(r.confidence.map { String(format: "%.3f", $0) } ?? "-", 7)
                            + pad(r.modelVersion, 14)
                            + (row.synced ? "yes" : "no"))
                }
                print("\(rows.count) rows")
            }
        }
    }

    struct Export: AADSCommand {
        static let configuration = CommandConfiguration(abstract: "Export results as JSON lines or CSV.")
        @OptionGroup var location: JournalOption
        @Option(name: .long, help: "Only results at or after this time (ISO 8601, or an age: 24h, 7d).") var since:
            String?
        @Option(name: .long, help: "jsonl or csv.") var format: ResultsExport.Format = .jsonl
        @Flag(name: .long, help: "Only rows not yet synced.") var unsynced = false
        @Option(name: .long, help: "Write to this file (atomically) instead of standard output.") var out: String?
        /// No `--json`: standard output is the export; errors are one line on standard error.
        var output: OutputOptions { .text }

        static let errorPolicy = ErrorPolicy.always(.couldNotRun)

        func body() throws {
            let (_, journal) = try location.open()
            let count = try ResultsExport.export(
                journal: journal, since: try parseSince(since), unsyncedOnly: unsynced, format: format, to: out)
            if let out { printError("exported \(count) rows to \(out)") }
        }
    }

    struct MarkSynced: AADSCommand {
        static let configuration = CommandConfiguration(
            commandName: "mark-synced",
            abstract: "Mark rows as synced (uploaded): every row up to an id, or listed ids.")
        @OptionGroup var location: JournalOption
        @Option(name: .long, help: "Mark every row with id <= ID.") var until: Int64?
        @Option(name: .long, parsing: .upToNextOption, help: "Mark these ids (space or comma separated).") var ids:
            [String] = []
        @OptionGroup var output: OutputOptions

        func validate() throws {
            guard (until == nil) != ids.isEmpty else {
                throw ValidationError("give exactly one of --until ID or --ids ID...")
            }
        }

        static let errorPolicy = ErrorPolicy.always(.couldNotRun)

        func body() throws {
            let (_, journal) = try location.open()
            let changed: Int
            if let until {
                changed = try journal.markSynced(untilID: until)
            } else {
                var list: [Int64] = []
                for part in ids.flatMap({ $0.split(separator: ",") }) {
                    guard let id = Int64(part.trimmingCharacters(in: .whitespaces)) else {
                        throw AnyCodedError(code: "bad_argument", message: "not a row id: \(part)")
                    }
                    list.append(id)
                }
                changed = try journal.markSynced(ids: list)
            }
            print(output.json ? JSONLine.encode(["marked": changed]) : "marked \(changed) rows synced")
        }
    }

    struct Prune: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply retention now (the service also does it hourly).")
        @OptionGroup var location: JournalOption
        @Option(name: .long, help: "Keep at most N rows (default: retention.max_rows).") var maxRows: Int?
        @Option(name: .long, help: "Keep at most D days (default: retention.max_days).") var maxDays: Int?
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.always(.couldNotRun)

        func body() throws {
            let (config, journal) = try location.open()
            let (deleted, unsynced) = try journal.prune(
                maxRows: maxRows ?? config.retention.maxRows, maxDays: maxDays ?? config.retention.maxDays)
            print(
                output.json
                    ? JSONLine.encode(["deleted": deleted, "unsynced_deleted": unsynced])
                    : "deleted \(deleted) rows (\(unsynced) never synced)")
        }
    }
}

func pad(_ s: String, _ width: Int) -> String {
    let clipped = s.count >= width ? String(s.prefix(width - 1)) : s
    return clipped + String(repeating: " ", count: width - clipped.count)
}
