import AADSCore
import Foundation
import Testing

@testable import AADSSlots

/// A temporary store with scratch bundles; removed at deinit.
final class Bench {
    let dir: String
    let scratch: ScratchBundles
    let store: SlotStore

    init(_ name: String, options: SlotStoreOptions = SlotStoreOptions(diskFullAfterBytes: nil)) throws {
        dir = tempDirectory(name)
        scratch = try ScratchBundles(directory: dir + "/bundles")
        var options = options
        options.trustedKeys = options.trustedKeys ?? scratch.verifier.trusted
        store = SlotStore(root: dir + "/root", options: options)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func archive(_ version: String) throws -> String {
        let path = scratch.directory + "/bundle-\(version).tar"
        if FileManager.default.fileExists(atPath: path) { return path }
        return try scratch.makeArchive(version: version)
    }

    @discardableResult
    func install(_ version: String, allowDowngrade: Bool = false) throws -> InstallResult {
        try store.install(bundle: archive(version), verifier: scratch.verifier, allowDowngrade: allowDowngrade)
    }

    var state: StoreState { get throws { try store.loadState() } }

    /// 1.0.0 in a (the fallback), 1.1.0 in b committed and serving; floor 1.1.0.
    static func committedPair(_ name: String) throws -> Bench {
        let bench = try Bench(name)
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try bench.store.activate()
        try bench.store.commit()
        return bench
    }
}

@Suite struct SlotStoreTests {
    @Test func factoryInstallMakesTheFirstBundleGoodAndActive() throws {
        let bench = try Bench("factory")
        let result = try bench.install("1.0.0")
        #expect(result.factory && result.slot == .a)
        let raw = try rawState(bench.store.root)
        #expect(raw["active"] as? String == "a")
        #expect((raw["a"] as? [String: Any])?["state"] as? String == "good")
        #expect(raw["floor"] as? String == "1.0.0")
        #expect(try bench.store.beginRuntimeStart(verify: .deep).slot == .a)
    }

    @Test func fullCycleInstallActivateCommit() throws {
        let bench = try Bench("cycle")
        try bench.install("1.0.0")
        let second = try bench.install("1.1.0")
        #expect(!second.factory && second.slot == .b)
        #expect(try bench.state.b.state == .installed)
        #expect(try bench.state.active == .a)  // installing never changes what serves
        try bench.store.activate(attempts: 2)
        var state = try bench.state
        #expect(state.active == .b && state.fallback == .a && state.b.state == .trial && state.trial?.attemptsLeft == 2)
        #expect(state.floor == "1.0.0")  // the floor only rises at commit
        let commit = try bench.store.commit(metrics: ["accuracy": .number(0.97)])
        #expect(commit.slot == .b && commit.floor == "1.1.0")
        state = try bench.state
        #expect(state.b.state == .good && state.a.state == .good && state.trial == nil)
        #expect(state.b.metrics["accuracy"] == .number(0.97))
        // Next install goes to the older good slot a, the serving slot b stays.
        #expect(try bench.install("1.2.0").slot == .a)
        #expect(try bench.state.active == .b)
    }

    @Test func installIsRefusedDuringATrial() throws {
        let bench = try Bench("trialrefuse")
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try bench.store.activate()
        #expect(code { try bench.install("1.2.0") } == "trial_active")
        #expect(code { try bench.store.activate() } == "trial_active")
        // Both slots intact: the fallback (last good) was not touched.
        try bench.store.checkIntegrity(.a)
        try bench.store.checkIntegrity(.b)
    }

    @Test func crashLoopRollsBackAfterTheAttemptsAreSpent() throws {
        let bench = try Bench("crashloop")
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try bench.store.activate(attempts: 3)
        for left in [2, 1, 0] {
            let decision = try bench.store.beginRuntimeStart()
            #expect(decision.slot == .b && decision.trial && decision.attemptsLeft == left && decision.rollback == nil)
            // Persisted before the model would load.
            #expect(try bench.state.trial?.attemptsLeft == left)
        }
        let decision = try bench.store.beginRuntimeStart()
        #expect(decision.slot == .a && !decision.trial)
        let rollback = try #require(decision.rollback)
        #expect(rollback.from == .b && rollback.to == .a && rollback.reason.hasPrefix("crash loop"))
        let state = try bench.state
        #expect(state.b.state == .bad && state.active == .a && state.fallback == nil && state.floor == "1.0.0")
        let event = try #require(bench.store.journal.read().last { $0.event == .rollback })
        #expect(event.reason == rollback.reason)
        #expect(event.durationMs != nil)
    }

    @Test func rollbackRules() throws {
        let bench = try Bench("rollback")
        try bench.install("1.0.0")
        #expect(code { try bench.store.rollback(reason: "x") } == "no_fallback")
        try bench.install("2.0.0")
        try bench.store.activate()
        try bench.store.commit()
        // Rolling back to the retained fallback is allowed even below the floor.
        let result = try bench.store.rollback(reason: "operator")
        #expect(result.to == .a && result.toVersion == "1.0.0" && result.from == .b)
        var state = try bench.state
        #expect(state.floor == "2.0.0" && state.active == .a && state.b.state == .bad)
        #expect(code { try bench.store.rollback(reason: "again") } == "no_fallback")
        // The floor still refuses older bundles; --allow-downgrade overrides.
        #expect(code { try bench.install("1.5.0") } == "downgrade")
        #expect(try bench.install("1.5.0", allowDowngrade: true).slot == .b)
        #expect(try bench.install("2.0.0").slot == .b)  // equal to the floor is not a downgrade
        state = try bench.state
        #expect(state.b.state == .installed && state.a.state == .good)
        #expect(code { try bench.store.commit() } == "no_trial")
    }

    @Test func rollbackTakesLessThanOneSecond() throws {
        let bench = try Bench("fast")
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try bench.store.activate()
        let result = try bench.store.rollback(reason: "timing")
        // The store's own measurement, journaled; the budget is the product requirement (≤ 1 s).
        #expect(result.durationMs <= 1000)
    }

    @Test func corruptTrialSlotIsDetectedAtStart() throws {
        let bench = try Bench("corrupt")
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try bench.store.activate()
        let victim = bench.store.bundlePath(.b) + "/model.bin"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: victim))
        bytes[10] ^= 1
        try bytes.write(to: URL(fileURLWithPath: victim))
        #expect(code { try bench.store.checkIntegrity(.b) } == "integrity_failed")
        #expect(try bench.store.beginRuntimeStart(verify: .quick).rollback == nil)  // same size: quick passes
        let decision = try bench.store.beginRuntimeStart(verify: .deep)
        #expect(decision.slot == .a && decision.rollback?.reason.hasPrefix("integrity") == true)
    }

    @Test func activationRefusesACorruptInstalledSlot() throws {
        let bench = try Bench("corruptactivate")
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try FileManager.default.removeItem(atPath: bench.store.bundlePath(.b) + "/notes/readme.txt")
        #expect(code { try bench.store.activate() } == "integrity_failed")
        #expect(try bench.state.b.state == .bad && bench.state.active == .a)
    }

    @Test func diskFullLeavesTheTargetEmptyAndTheActiveSlotServing() throws {
        let bench = try Bench("diskfull", options: SlotStoreOptions(diskFullAfterBytes: 2000))
        // The factory bundle needs more than 2000 bytes too, so install it with a normal store.
        let normal = SlotStore(root: bench.store.root, options: SlotStoreOptions(diskFullAfterBytes: nil))
        try normal.install(bundle: bench.archive("1.0.0"), verifier: bench.scratch.verifier)
        let before = treeContents(bench.store.bundlePath(.a))
        #expect(code { try bench.install("1.1.0") } == "disk_full")
        let state = try bench.state
        #expect(state.b.state == .empty && state.active == .a)
        #expect(treeContents(bench.store.bundlePath(.a)) == before)
        #expect(!FileManager.default.fileExists(atPath: bench.store.bundlePath(.b)))
        #expect(bench.store.journal.read().last?.code == "disk_full")
        #expect(bench.store.checkInvariants(keptVersion: "1.0.0").isEmpty)
    }

    @Test func interruptedInstallIsRecoveredAsEmpty() throws {
        let bench = try Bench("recover")
        try bench.install("1.0.0")
        // What a cut after marking `installing` leaves: the mark, a partial staging dir, a temp state file.
        var state = try bench.state
        state.b = SlotRecord(state: .installing, version: "1.1.0")
        try AtomicFile.write(JSONEncoder().encode(state), to: bench.store.statePath)
        try FileManager.default.createDirectory(
            atPath: bench.store.root + "/.staging-b/x", withIntermediateDirectories: true)
        try Data("half".utf8).write(to: URL(fileURLWithPath: bench.store.root + "/.state.json.tmp-999"))
        #expect(try bench.store.status().state.b.effectiveState == .empty)
        try bench.install("1.1.0")
        #expect(try bench.state.b.state == .installed)
        #expect(!FileManager.default.fileExists(atPath: bench.store.root + "/.staging-b"))
        #expect(!FileManager.default.fileExists(atPath: bench.store.root + "/.state.json.tmp-999"))
        #expect(bench.store.journal.read().contains { $0.event == .recover })
    }

    @Test func tornJournalLineIsIgnoredAndCutBeforeTheNextAppend() throws {
        let bench = try Bench("torn")
        try bench.install("1.0.0")
        let path = bench.store.journal.path
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"event":"half"#.utf8))
        handle.closeFile()
        #expect(bench.store.journal.read().count == 1)
        try bench.install("1.1.0")
        let lines = String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
            .split(separator: "\n")
        #expect(lines.count == 2)
        for line in lines { #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any]) }
    }

    @Test func statusReportsSlotsFloorAndEvents() throws {
        let bench = try Bench("status")
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try bench.store.setMetrics(slot: .a, metrics: ["latency_p50_ms": .number(12.5)])
        try bench.store.activate(attempts: 4)
        _ = try bench.store.beginRuntimeStart()
        let json = try bench.store.status(lastEvents: 2).jsonObject
        let text = JSONLine.encode(json)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(object["active"] as? String == "b" && object["floor"] as? String == "1.0.0")
        let slots = try #require(object["slots"] as? [String: [String: Any]])
        #expect(slots["b"]?["state"] as? String == "trial" && slots["b"]?["attempts_left"] as? Int == 3)
        #expect(slots["a"]?["version"] as? String == "1.0.0" && slots["a"]?["installed_at"] is String)
        #expect((slots["a"]?["metrics"] as? [String: Any])?["latency_p50_ms"] as? Double == 12.5)
        #expect((object["events"] as? [Any])?.count == 2)
        #expect(object["generation"] as? Int == Int(try bench.state.generation))
    }

    @Test func generationIncreasesWithEveryWriteAndJournalCarriesIt() throws {
        let bench = try Bench("generation")
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try bench.store.activate()
        try bench.store.commit()
        let generations = bench.store.journal.read().map { Int($0.generation) }
        #expect(generations == generations.sorted() && Set(generations).count == generations.count)
        #expect(generations.last == Int(try bench.state.generation))
        #expect(try !bench.store.status().staleState)
    }
}

@Suite struct HealthGateTests {
    @Test func passingGateStartsProbationWhichCommitsAfterMSuccesses() throws {
        let bench = try Bench("gatepass")
        try bench.install("1.0.0")
        try bench.store.setMetrics(slot: .a, metrics: ["accuracy": .number(0.95)])
        try bench.install("1.1.0")
        try bench.store.activate()
        let gate = ClosureHealthGate { candidate in
            // The gate sees the trial slot and the fallback's measured baseline.
            let ok =
                candidate.slot == .b && candidate.baseline["accuracy"] == .number(0.95)
                && FileManager.default.fileExists(atPath: candidate.bundlePath + "/model.bin")
            return GateVerdict(passed: ok, metrics: ["accuracy": .number(0.96)])
        }
        guard case .passed = try bench.store.runHealthGate(gate) else {
            Issue.record("gate should pass")
            return
        }
        #expect(try bench.state.trial?.healthPassedAt != nil)
        let policy = ProbationPolicy(successes: 3, minutes: 60, maxErrorRate: 0.5, minSamples: 2)
        guard case .continuing(let counters) = try bench.store.recordProbation(success: true, policy: policy) else {
            Issue.record("one success is not enough")
            return
        }
        #expect(counters.probationSuccesses == 1)
        if case .committed = try bench.store.recordProbation(success: true, policy: policy) {
            Issue.record("committed too early")
        }
        guard case .committed(let commit) = try bench.store.recordProbation(success: true, policy: policy) else {
            Issue.record("should commit after 3 successes")
            return
        }
        #expect(commit.slot == .b && commit.floor == "1.1.0")
        #expect(try bench.state.b.metrics["accuracy"] == .number(0.96))
    }

    @Test func failingGateRollsBackAndJournalsTheRows() throws {
        let bench = try Bench("gatefail")
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try bench.store.activate()
        let gate = ClosureHealthGate { _ in GateVerdict(passed: false, failures: ["ood_auroc 0.81 < 0.90"]) }
        guard case .rolledBack(_, let rollback) = try bench.store.runHealthGate(gate) else {
            Issue.record("gate should fail")
            return
        }
        #expect(rollback.to == .a && rollback.reason.contains("ood_auroc"))
        #expect(try bench.state.b.state == .bad)
        let fail = try #require(bench.store.journal.read().last { $0.event == .healthFail })
        #expect(fail.failures == ["ood_auroc 0.81 < 0.90"])
    }

    @Test func probationErrorRateAndTimeBounds() throws {
        let bench = try Bench("probation")
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try bench.store.activate()
        #expect(code { try bench.store.recordProbation(success: true) } == "no_trial")  // gate not passed yet
        try bench.store.markHealthPassed()
        let policy = ProbationPolicy(successes: 100, minutes: 10, maxErrorRate: 0.1, minSamples: 5)
        for _ in 0..<4 { _ = try bench.store.recordProbation(success: true, policy: policy) }
        // Ten minutes later, within bounds: commit.
        let later = Date().addingTimeInterval(11 * 60)
        guard case .committed = try bench.store.recordProbation(success: nil, policy: policy, now: later) else {
            Issue.record("should commit after T minutes")
            return
        }
        try bench.install("1.2.0")
        try bench.store.activate()
        try bench.store.markHealthPassed()
        for _ in 0..<4 { _ = try bench.store.recordProbation(success: true, policy: policy) }
        guard case .rolledBack(let r) = try bench.store.recordProbation(success: false, policy: policy) else {
            Issue.record("1 error in 5 exceeds 10%")
            return
        }
        #expect(r.reason.hasPrefix("probation") && r.toVersion == "1.1.0")
    }
}

@Suite struct DrillTests {
    @Test func crashLoopAndCorruptSlotInProcess() throws {
        for scenario in [DrillScenario.crashLoop, .corruptSlot, .corruptActive, .lostState] {
            let report = try SlotDrill(executable: nil).run(scenario)
            #expect(report.passed, "\(scenario): \(report.checks)")
            #expect((report.rollbackMs ?? 2000) <= 1000)
        }
    }

    @Test func failingHealthNeedsAGateAndRollsBackWithOne() throws {
        let skipped = try SlotDrill(executable: nil).run(.failingHealth)
        #expect(skipped.skipped && !skipped.passed)
        let gate = ClosureHealthGate { _ in GateVerdict(passed: false, failures: ["accuracy drop 3% > 1%"]) }
        let report = try SlotDrill(executable: nil, gate: gate).run(.failingHealth)
        #expect(report.passed, "\(report.checks)")
        let lenient = ClosureHealthGate { _ in GateVerdict(passed: true) }
        #expect(try !SlotDrill(executable: nil, gate: lenient).run(.failingHealth).passed)
    }
}

/// A mistyped root is refused, not created: only an install makes a new store.
@Suite struct MissingStoreTests {
    @Test func operationsOnAMissingRootAreRefusedAndCreateNothing() throws {
        let bench = try Bench("missing-root")
        let root = bench.store.root
        let operations: [(String, () throws -> Void)] = [
            ("activate", { _ = try bench.store.activate() }),
            ("start", { _ = try bench.store.beginRuntimeStart() }),
            ("mark-healthy", { _ = try bench.store.markHealthPassed() }),
            ("commit", { _ = try bench.store.commit() }),
            ("rollback", { _ = try bench.store.rollback(reason: "test") }),
            ("status", { _ = try bench.store.status() }),
            ("active", { _ = try bench.store.activeBundlePath() }),
        ]
        for (name, operation) in operations {
            let error = try #require(throws: SlotError.self, "\(name)") { try operation() }
            #expect(error.kind == .notFound, "\(name)")
            #expect(error.message.contains(root), "\(name)")
            #expect(!FileManager.default.fileExists(atPath: root), "\(name) created \(root)")
        }
        // A regular file is no store either.
        #expect(FileManager.default.createFile(atPath: root, contents: Data()))
        #expect(throws: SlotError(.notFound, "\(root) is not a slot store directory")) { try bench.store.status() }
        try FileManager.default.removeItem(atPath: root)
        try bench.install("1.0.0")
        #expect(try bench.store.status().state.active == .a)
    }
}
