import AADSDiagnosis
import Foundation
import Testing

@testable import AADSDevice

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a service on a background thread; `finish()` stops it and returns the summary.
final class ServiceRunner: @unchecked Sendable {
    let service: FieldService
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<RunSummary, any Error> = .failure(SpoolError("not finished"))

    init(_ service: FieldService) {
        self.service = service
        let thread = Thread { [self] in
            result = Result { try service.run() }
            done.signal()
        }
        thread.start()
    }

    /// Waits for the run to end (it ends by itself with exitWhenIdle, or after `stop`).
    func wait(stop: Bool = true, timeout: Double = 60) throws -> RunSummary {
        if stop { service.requestStop(reason: "test") }
        guard done.wait(timeout: .now() + timeout) == .success else { throw SpoolError("service did not stop") }
        return try result.get()
    }
}

/// Polls `condition` (for work happening on another thread) up to `seconds`.
func eventually(_ seconds: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

@Suite struct FieldServiceTests {
    @Test func thousandImagesAsFastAsTheyComeNoneLostNoneDuplicated() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let service = try makeService(dir)
        let runner = ServiceRunner(service)
        let spool = service.spool.directory
        for i in 0..<1000 {
            try dropImage(
                into: spool, name: String(format: "img-%04d.jpg", i),
                content: i % 97 == 0 ? "CORRUPT \(i)" : "image \(i)")
        }
        #expect(try eventually { try service.journal.count() == 1000 && service.spool.pending().isEmpty })
        let summary = try runner.wait()
        #expect(summary.processed == 1000)
        #expect(summary.duplicates == 0)
        #expect(summary.dropped == 0)
        let rows = try service.journal.rows()
        #expect(rows.count == 1000)
        #expect(Set(rows.map(\.imageSHA256)).count == 1000)
        #expect(Set(rows.map(\.record.file)).count == 1000)
        let failed = listFiles(service.spool.failed)
        let done = listFiles(service.spool.done)
        #expect(failed.count == 11)  // 0, 97, …, 970
        #expect(done.count == 989)
        #expect(rows.filter { $0.record.decision == .error }.count == 11)
        #expect(try service.spool.pending().isEmpty)
        // Every moved file has its row (by content hash).
        let shas = Set(rows.map(\.imageSHA256))
        for name in done.prefix(50) { #expect(shas.contains(try Spool.sha256(path: service.spool.done + "/" + name))) }
    }

    @Test func crashAfterTheRowWasCommittedDoesNotDuplicate() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let diagnoser = SyntheticDiagnoser(modelVersion: "1.0.0")
        let service = try makeService(dir, lifecycle: StaticSlotLifecycle(diagnoser: diagnoser), exitWhenIdle: true)
        // As if the previous run committed the row and died before moving the image.
        let path = try dropImage(into: service.spool.directory, name: "a.jpg", content: "leaf")
        var record = try diagnoser.diagnose(path: path)
        record.file = "a.jpg"
        try service.journal.insert(record, imageSHA256: try Spool.sha256(path: path), slot: "bundle")
        try dropImage(into: service.spool.directory, name: "b.jpg", content: "other leaf")
        let before = diagnoser.callCount
        let summary = try service.run()
        #expect(summary.duplicates == 1)
        #expect(summary.processed == 1)
        #expect(diagnoser.callCount == before + 1)  // only b.jpg was diagnosed
        #expect(try service.journal.count() == 2)
        #expect(listFiles(service.spool.done) == ["a.jpg", "b.jpg"])
        #expect(summary.stopReason == "idle")
    }

    @Test func everySpoolFileGetsARowAlsoWhenItsBytesRepeat() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let diagnoser = SyntheticDiagnoser(modelVersion: "1.0.0")
        let config = testConfig(dir)
        func service() throws -> FieldService {
            try makeService(
                dir, config: config, lifecycle: StaticSlotLifecycle(diagnoser: diagnoser), exitWhenIdle: true)
        }
        let journal = try ResultsJournal(path: config.journalPath)
        let service1 = try service()
        for (i, (name, content)) in [("a.jpg", "leaf"), ("b.jpg", "leaf"), ("c.jpg", "other leaf")].enumerated() {
            let path = try dropImage(into: config.spoolDir, name: name, content: content)
            var times = [
                timespec(tv_sec: 1_700_000_000 + i, tv_nsec: 0), timespec(tv_sec: 1_700_000_000 + i, tv_nsec: 0),
            ]
            utimensat(AT_FDCWD, path, &times, 0)  // processed in this order
        }
        let first = try service1.run()
        #expect(first.processed == 3 && first.repeatedContent == 1 && first.duplicates == 0)
        // The same name and bytes again, after the first a.jpg left the spool: a new file, a new row.
        try dropImage(into: config.spoolDir, name: "a.jpg", content: "leaf")
        let second = try service().run()
        #expect(second.processed == 1 && second.repeatedContent == 1 && second.duplicates == 0)
        let rows = try journal.rows()
        #expect(rows.map(\.record.file) == ["a.jpg", "b.jpg", "c.jpg", "a.jpg"])
        #expect(rows.map(\.duplicateOf) == [nil, rows[0].id, nil, rows[0].id])
        #expect(listFiles(config.spoolDir + "/done") == ["a-1.jpg", "a.jpg", "b.jpg", "c.jpg"])
        let (samples, _) = parseProm(try String(contentsOfFile: config.metrics.file, encoding: .utf8))
        #expect(samples.value("aads_images_duplicate_content_total") == 1)  // this run's
    }

    @Test func crashAfterTheCommitOfARepeatedFileDoesNotAddARow() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let diagnoser = SyntheticDiagnoser(modelVersion: "1.0.0")
        let service = try makeService(dir, lifecycle: StaticSlotLifecycle(diagnoser: diagnoser), exitWhenIdle: true)
        // A first file was journaled and moved; a second with the same bytes was journaled, then the run died
        // before moving it.
        let first = try dropImage(into: service.spool.directory, name: "a.jpg", content: "leaf")
        var record = try diagnoser.diagnose(path: first)
        record.file = "a.jpg"
        let print1 = try Spool.fingerprint(path: first)
        try service.journal.insert(record, imageSHA256: print1.sha256, slot: "bundle", spoolFileID: print1.fileID)
        try service.spool.move("a.jpg", to: service.spool.done)
        let second = try dropImage(into: service.spool.directory, name: "a.jpg", content: "leaf")
        let print2 = try Spool.fingerprint(path: second)
        #expect(print2.sha256 == print1.sha256 && print2.fileID != print1.fileID)
        try service.journal.insert(record, imageSHA256: print2.sha256, slot: "bundle", spoolFileID: print2.fileID)
        let summary = try service.run()
        #expect(summary.duplicates == 1 && summary.processed == 0)
        #expect(try service.journal.count() == 2)
        #expect(listFiles(service.spool.done) == ["a-1.jpg", "a.jpg"])
    }

    @Test func backlogBeyondCapacityDropsOldestAndCountsThem() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        var config = testConfig(dir)
        config.queue.capacity = 3
        let service = try makeService(dir, config: config, exitWhenIdle: true)
        for i in 0..<5 {
            let path = try dropImage(into: service.spool.directory, name: "p\(i).jpg", content: "img \(i)")
            var times = [
                timespec(tv_sec: 1_700_000_000 + i, tv_nsec: 0), timespec(tv_sec: 1_700_000_000 + i, tv_nsec: 0),
            ]
            utimensat(AT_FDCWD, path, &times, 0)
        }
        let summary = try service.run()
        #expect(summary.dropped == 2)
        #expect(listFiles(service.spool.dropped) == ["p0.jpg", "p1.jpg"])
        #expect(listFiles(service.spool.done) == ["p2.jpg", "p3.jpg", "p4.jpg"])
        let (samples, _) = parseProm(try String(contentsOfFile: config.metrics.file, encoding: .utf8))
        #expect(samples.value("aads_images_dropped_total") == 2)
        #expect(samples.value("aads_images_processed_total") == 3)
    }

    @Test func oodImagesTurnTheCommittedLEDAmber() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let gpio = SimulatedGPIO()
        let lines = testConfig(dir).gpio.lines
        let ood = SyntheticDiagnoser(modelVersion: "1.0.0", oodFraction: 0.5)  // every image ood or unknown_crop
        let service = try makeService(
            dir, lifecycle: StaticSlotLifecycle(diagnoser: ood), gpio: gpio, exitWhenIdle: true)
        try dropImage(into: service.spool.directory, name: "x.jpg", content: "x")
        _ = try service.run()
        let lit = gpio.history.filter { $0.value == 1 }.map(\.line)
        #expect(lit == [lines.green, lines.amber])
        #expect(gpio.value(of: lines.amber) == 0)  // all off after stop
    }

    @Test func rollbackLatchesRedAndSwitchesModelAndABIsRecorded() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        var config = testConfig(dir)
        config.ab.fraction = 1
        let gpio = SimulatedGPIO()
        let lifecycle = ScriptedLifecycle(rollbackAfter: 5)
        let service = try makeService(dir, config: config, lifecycle: lifecycle, gpio: gpio, exitWhenIdle: true)
        for i in 0..<8 { try dropImage(into: service.spool.directory, name: "r\(i).jpg", content: "r \(i)") }
        let summary = try service.run()
        #expect(summary.processed == 8)
        #expect(summary.abSamples == 5)
        let rows = try service.journal.rows()
        #expect(rows.prefix(5).allSatisfy { $0.record.modelVersion == "2.0.0" && $0.slot == "b" })
        #expect(rows.suffix(3).allSatisfy { $0.record.modelVersion == "1.0.0" && $0.slot == "a" })
        let samples = try service.journal.abSamples()
        #expect(samples.count == 5)
        #expect(samples.allSatisfy { $0.baselineVersion == "1.0.0" && $0.candidateVersion == "2.0.0" })
        #expect(try service.journal.slotEvents().map(\.event) == ["start_trial", "rolled_back"])
        // Amber during probation, red after the rollback, latched.
        let lines = config.gpio.lines
        let lit = gpio.history.filter { $0.value == 1 }.map(\.line)
        #expect(lit.first == lines.amber)
        #expect(lit.last == lines.red)
        let latch = RedLatch(path: config.redLatchPath)
        #expect(latch.reason == "rollback: probation failed (scripted)")
        #expect(lifecycle.seenComparisons.last == 5)
        // Acknowledged: the next run is green again.
        try latch.acknowledge()
        let again = try makeService(
            dir, config: config,
            lifecycle: StaticSlotLifecycle(diagnoser: SyntheticDiagnoser(modelVersion: "1.0.0", oodFraction: 0)),
            gpio: SimulatedGPIO(), exitWhenIdle: true)
        try dropImage(into: again.spool.directory, name: "z.jpg", content: "z")
        _ = try again.run()
        #expect(!latch.isLatched)
    }

    @Test func everyGateRunIsJournaledOnceAndTheMetricsShowTheLast() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let config = testConfig(dir)
        let run = HealthCheckRecord(
            slot: "b", modelVersion: "1.1.0", passed: true, adapterAccuracy: 0.93,
            createdAt: Date(timeIntervalSince1970: 1_800_000_000))
        // Reported at start and again by a later tick: one row.
        let service = try makeService(dir, config: config, lifecycle: GateRunLifecycle(run), exitWhenIdle: true)
        try dropImage(into: service.spool.directory, name: "g.jpg", content: "g")
        _ = try service.run()
        #expect(try service.journal.healthChecks() == [run])
        // A restarted service shows the last run from the journal, and reports it again without a new row.
        let again = try makeService(dir, config: config, lifecycle: GateRunLifecycle(run), exitWhenIdle: true)
        _ = try again.run()
        #expect(try again.journal.healthChecks().count == 1)
        let (samples, _) = parseProm(try String(contentsOfFile: config.metrics.file, encoding: .utf8))
        #expect(samples.value("aads_last_health_check_passed") == 1)
        #expect(samples.value("aads_last_health_check_timestamp_seconds") == 1_800_000_000)
    }

    @Test func aRecoveredSlotStateRaisesAnAlert() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let service = try makeService(dir, lifecycle: RecoveredStateLifecycle(), exitWhenIdle: true)
        _ = try service.run()
        let alerts = try service.journal.alerts()
        #expect(alerts.map(\.rule) == [AlertEngine.stateRecoveredRule])
        #expect(alerts.first?.message.contains("state.json.prev") == true && alerts.first?.state == "raised")
    }

    @Test func triggerEdgeRunsTheCaptureCommandIntoTheSpool() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        var config = testConfig(dir)
        config.gpio.lines.trigger = 23
        config.gpio.debounceMs = 5
        let camera = dir.file("camera.jpg")
        try Data("fresh leaf".utf8).write(to: URL(fileURLWithPath: camera))
        config.capture.command = "cp \(camera) {path}"
        let gpio = SimulatedGPIO()
        let service = try makeService(dir, config: config, gpio: gpio)
        let runner = ServiceRunner(service)
        // A bouncy press.
        let t = monotonicNanoseconds()
        gpio.inject(.rising, line: 23, atNs: t)
        gpio.inject(.falling, line: 23, atNs: t + 1_000_000)
        gpio.inject(.rising, line: 23, atNs: t + 2_000_000)
        #expect(try eventually(20) { try service.journal.count() == 1 })
        _ = try runner.wait()
        let rows = try service.journal.rows()
        #expect(rows.count == 1)
        #expect(rows.first?.record.file.hasPrefix("capture-") == true)
        #expect(listFiles(service.spool.done).count == 1)
    }

    @Test func modelThatFailsToLoadRefusesToStartAndLatchesRed() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let config = testConfig(dir)
        let service = try makeService(dir, config: config, lifecycle: FailingLifecycle())
        #expect(throws: SpoolError.self) { try service.run() }
        #expect(RedLatch(path: config.redLatchPath).isLatched)
    }
}

final class FailingLifecycle: SlotLifecycle {
    func start() throws -> SlotUpdate { throw SpoolError(.noModel, "broken model") }
    func didProcess(_ record: Diagnosis, serving: ServingModel, ab: ABComparison?) throws -> SlotUpdate { .none }
    func tick(serving: ServingModel, now: Date) throws -> SlotUpdate { .none }
    func abPartner(serving: ServingModel) -> ABPartner? { nil }
}

/// Starts a candidate (2.0.0, slot b) in probation against 1.0.0 and rolls back after N images.
final class ScriptedLifecycle: SlotLifecycle {
    let candidate = SyntheticDiagnoser(modelVersion: "2.0.0", latencyOffsetMs: 5)
    let baseline = SyntheticDiagnoser(modelVersion: "1.0.0")
    let rollbackAfter: Int
    var images = 0
    var seenComparisons: [Int] = []

    init(rollbackAfter: Int) { self.rollbackAfter = rollbackAfter }

    func start() throws -> SlotUpdate {
        SlotUpdate(
            serving: ServingModel(slot: "b", phase: .probation, diagnoser: candidate),
            events: [SlotEventRecord(event: "start_trial", slot: "b", modelVersion: "2.0.0")])
    }

    func didProcess(_ record: Diagnosis, serving: ServingModel, ab: ABComparison?) throws -> SlotUpdate {
        guard serving.modelVersion == "2.0.0" else { return .none }
        images += 1
        if let ab { seenComparisons.append(ab.samples) }
        guard images == rollbackAfter else { return .none }
        return SlotUpdate(
            serving: ServingModel(slot: "a", phase: .committed, diagnoser: baseline),
            rollbackReason: "probation failed (scripted)",
            events: [SlotEventRecord(event: "rolled_back", slot: "b", modelVersion: "2.0.0")])
    }

    func tick(serving: ServingModel, now: Date) throws -> SlotUpdate { .none }

    func abPartner(serving: ServingModel) -> ABPartner? {
        serving.phase == .probation ? ABPartner(diagnoser: baseline, partnerIsCandidate: false) : nil
    }
}

/// Starts as a store whose state file had to be restored does.
final class RecoveredStateLifecycle: SlotLifecycle {
    let model = SyntheticDiagnoser(modelVersion: "1.0.0")

    func start() throws -> SlotUpdate {
        var update = SlotUpdate(serving: ServingModel(slot: "a", phase: .committed, diagnoser: model))
        update.stateRecovery = "state.json does not parse: restored the previous generation from state.json.prev"
        return update
    }

    func didProcess(_ record: Diagnosis, serving: ServingModel, ab: ABComparison?) throws -> SlotUpdate { .none }
    func tick(serving: ServingModel, now: Date) throws -> SlotUpdate { .none }
    func abPartner(serving: ServingModel) -> ABPartner? { nil }
}

/// Reports one health gate run at start and at every tick, as the slot life cycle does for runs it finds.
final class GateRunLifecycle: SlotLifecycle {
    let model = SyntheticDiagnoser(modelVersion: "1.0.0")
    let run: HealthCheckRecord

    init(_ run: HealthCheckRecord) { self.run = run }

    func start() throws -> SlotUpdate {
        SlotUpdate(serving: ServingModel(slot: "a", phase: .committed, diagnoser: model), healthChecks: [run])
    }

    func didProcess(_ record: Diagnosis, serving: ServingModel, ab: ABComparison?) throws -> SlotUpdate {
        SlotUpdate(healthChecks: [run])
    }
    func tick(serving: ServingModel, now: Date) throws -> SlotUpdate { SlotUpdate(healthChecks: [run]) }
    func abPartner(serving: ServingModel) -> ABPartner? { nil }
}
