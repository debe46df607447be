import AADSCore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The rollback drills of `aads-edge drill`.
public enum DrillScenario: String, CaseIterable, Sendable {
    /// A trial model whose every start crashes: the start after the last attempt rolls back.
    case crashLoop = "crash-loop"
    /// A trial slot whose payload is corrupted on disk: the next start detects it and rolls back.
    case corruptSlot = "corrupt-slot"
    /// A trial model failing its health gate: rollback with the failing rows journaled.
    case failingHealth = "failing-health"
    /// Power cuts (SIGKILL) at every crash point of install, activate, start, commit, rollback and the
    /// journal; after each the store must satisfy its invariants and recover.
    case powerCut = "power-cut"
    /// The committed, serving slot corrupted on disk: an install must not overwrite the intact fallback,
    /// and the next start rolls back to it.
    case corruptActive = "corrupt-active"
    /// `state.json` damaged, then lost with its previous generation: the next starts restore it, then
    /// rebuild it from the verified slots, without lowering the floor.
    case lostState = "lost-state"
}

/// The outcome of a drill.
public struct DrillReport: Sendable {
    public let scenario: DrillScenario
    public let passed: Bool
    /// True when the scenario could not run here (e.g. no health gate); `passed` is then false.
    public let skipped: Bool
    /// From the rollback decision to the fallback slot serving (active on disk, integrity checked).
    public let rollbackMs: Double?
    /// One line per check, prefixed `ok:` or `FAIL:`.
    public let checks: [String]

    public var jsonObject: [String: Any] {
        [
            "scenario": scenario.rawValue, "passed": passed, "skipped": skipped,
            "rollback_ms": rollbackMs.map { JSONLine.rounded($0) } ?? NSNull(), "checks": checks,
        ]
    }
}

/// Runs drills in a temporary root with tiny bundles signed by a key generated on the fly.
public struct SlotDrill: Sendable {
    /// The `aads-edge` executable, to run steps in real processes that are killed (crash-loop,
    /// power-cut). Without it, or in a build without crash points (release and device builds), the
    /// crash-loop drill runs in-process and power-cut is skipped.
    public let executable: String?
    /// The model-specific gate for `failing-health`; without one that scenario is skipped.
    public let gate: (any SlotHealthGate)?
    /// The rollback time budget.
    public let budgetMs: Double

    public init(executable: String?, gate: (any SlotHealthGate)? = nil, budgetMs: Double = 1000) {
        self.executable = executable
        self.gate = gate
        self.budgetMs = budgetMs
    }

    public func run(_ scenario: DrillScenario) throws -> DrillReport {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("aads-drill-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scratch = try ScratchBundles(directory: dir + "/bundles")
        #if AADS_TEST_HOOKS
            // No fault injected into the drill's own store.
            let options = SlotStoreOptions(trustedKeys: scratch.verifier.trusted, diskFullAfterBytes: nil)
        #else
            let options = SlotStoreOptions(trustedKeys: scratch.verifier.trusted)
        #endif
        let store = SlotStore(root: dir + "/root", options: options)
        var log = DrillLog()
        try store.install(bundle: scratch.makeArchive(version: "1.0.0"), verifier: scratch.verifier)
        switch scenario {
        case .crashLoop: try crashLoop(store, scratch, &log)
        case .corruptSlot: try corruptSlot(store, scratch, &log)
        case .corruptActive: try corruptActive(store, scratch, &log)
        case .lostState: try lostState(store, scratch, &log)
        case .failingHealth:
            guard let gate else {
                return DrillReport(
                    scenario: scenario, passed: false, skipped: true, rollbackMs: nil,
                    checks: ["skipped: needs a model health gate"])
            }
            try failingHealth(store, scratch, gate, &log)
        case .powerCut:
            guard let executable, CrashPoint.injectionCompiled else {
                return DrillReport(
                    scenario: scenario, passed: false, skipped: true, rollbackMs: nil,
                    checks: [
                        executable == nil
                            ? "skipped: needs the aads-edge executable to cut"
                            : "skipped: crash points are compiled into test builds only"
                    ])
            }
            try powerCut(store, scratch, executable, &log)
        }
        if let ms = log.rollbackMs {
            log.check(ms <= budgetMs, "rollback took \(JSONLine.rounded(ms)) ms (budget \(Int(budgetMs)) ms)")
        } else {
            log.check(false, "a rollback was measured")
        }
        return DrillReport(
            scenario: scenario, passed: log.failures == 0, skipped: false, rollbackMs: log.rollbackMs, checks: log.lines
        )
    }

    // MARK: scenarios

    private func crashLoop(_ store: SlotStore, _ scratch: ScratchBundles, _ log: inout DrillLog) throws {
        let attempts = 3
        try store.install(bundle: scratch.makeArchive(version: "1.1.0"), verifier: scratch.verifier)
        let trial = try store.activate(attempts: attempts).active
        for n in 1...attempts {
            if let executable, CrashPoint.injectionCompiled {
                let killed = try spawn(
                    executable, ["slot", "start", "--root", store.root], crash: .startAfterDecrement)
                log.check(killed, "start \(n) crashed while loading the trial model (SIGKILL)")
            } else {
                let decision = try store.beginRuntimeStart()
                log.check(decision.trial && decision.rollback == nil, "start \(n) ran the trial model")
            }
            let left = try store.loadState().trial?.attemptsLeft
            log.check(left == attempts - n, "attempts left after start \(n): \(left.map(String.init) ?? "none")")
        }
        var clock = Stopwatch()
        let decision = try store.beginRuntimeStart(verify: nil)
        try store.checkIntegrity(decision.slot ?? .a, level: .deep)
        let ms = clock.lap()
        log.rollbackMs = ms
        log.check(decision.rollback?.reason.hasPrefix("crash loop") == true, "the next start rolled back (crash loop)")
        let state = try store.loadState()
        log.check(state.active != trial && state[trial ?? .b].state == .bad, "trial slot marked bad, fallback active")
        log.check(state[state.active ?? .a].version == "1.0.0", "version 1.0.0 serves again")
        log.check(journalHas(store, "rollback", reason: "crash loop"), "rollback journaled with reason and duration")
    }

    private func corruptSlot(_ store: SlotStore, _ scratch: ScratchBundles, _ log: inout DrillLog) throws {
        try store.install(bundle: scratch.makeArchive(version: "1.1.0"), verifier: scratch.verifier)
        guard let trial = try store.activate(attempts: 3).active else { return }
        let victim = store.bundlePath(trial) + "/model.bin"
        var bytes = [UInt8](FileManager.default.contents(atPath: victim) ?? Data())
        if !bytes.isEmpty { bytes[bytes.count / 2] ^= 0xFF }
        try AtomicFile.write(Data(bytes), to: victim)
        log.check(true, "flipped one byte of slot \(trial) model.bin")
        var clock = Stopwatch()
        let decision = try store.beginRuntimeStart(verify: .deep)
        try store.checkIntegrity(decision.slot ?? .a, level: .deep)
        log.rollbackMs = clock.lap()
        log.check(
            decision.rollback?.reason.hasPrefix("integrity") == true,
            "the start detected the corrupt slot and rolled back")
        let state = try store.loadState()
        log.check(state.active == trial.other && state[trial].state == .bad, "corrupt slot marked bad, fallback active")
        log.check(journalHas(store, "rollback", reason: "integrity"), "rollback journaled with reason and duration")
    }

    private func corruptActive(_ store: SlotStore, _ scratch: ScratchBundles, _ log: inout DrillLog) throws {
        try store.install(bundle: scratch.makeArchive(version: "1.1.0"), verifier: scratch.verifier)
        guard let serving = try store.activate(attempts: 3).active else { return }
        try store.commit()
        try flipByte(in: store.bundlePath(serving) + "/model.bin")
        log.check(true, "flipped one byte of the committed, serving slot \(serving) model.bin")
        let refused = try refusal(installing: "1.2.0", store, scratch)
        log.check(
            refused == "integrity_failed", "an install into the intact fallback was refused (\(refused ?? "accepted"))")
        var clock = Stopwatch()
        let decision = try store.beginRuntimeStart(verify: .deep)
        try store.checkIntegrity(decision.slot ?? .a, level: .deep)
        log.rollbackMs = clock.lap()
        log.check(
            decision.rollback?.reason.hasPrefix("integrity") == true && decision.version == "1.0.0",
            "the next start rolled back to the intact 1.0.0")
        let state = try store.loadState()
        log.check(
            state[serving].state == .bad && state.floor == "1.1.0", "corrupt slot marked bad, floor kept at 1.1.0")
    }

    private func lostState(_ store: SlotStore, _ scratch: ScratchBundles, _ log: inout DrillLog) throws {
        try store.install(bundle: scratch.makeArchive(version: "1.1.0"), verifier: scratch.verifier)
        try store.activate(attempts: 3)
        try store.markHealthPassed()
        let serving = try store.commit().slot
        try AtomicFile.write(Data("{\"format\": 1, \"generat".utf8), to: store.statePath)
        log.check(true, "state.json truncated")
        var decision = try store.beginRuntimeStart()
        log.check(
            decision.stateRecovery?.contains("state.json.prev") == true && decision.slot == serving,
            "the next start restored the previous generation and serves slot \(serving)")
        try store.commit()
        unlink(store.statePath)
        unlink(store.previousStatePath)
        log.check(true, "state.json and state.json.prev deleted")
        var clock = Stopwatch()
        decision = try store.beginRuntimeStart(verify: .deep)
        log.rollbackMs = clock.lap()
        log.check(
            decision.stateRecovery?.contains("rebuilt") == true && decision.version == "1.1.0",
            "the next start rebuilt the state from the verified slots and serves 1.1.0")
        let state = try store.loadState()
        log.check(state.floor == "1.1.0", "floor kept at 1.1.0")
        let refused = try refusal(installing: "0.9.0", store, scratch)
        log.check(
            refused == "downgrade", "no factory install over signed slots: 0.9.0 refused (\(refused ?? "accepted"))")
        let kinds = Set(store.journal.read().map(\.event))
        log.check(kinds.isSuperset(of: [.stateRestored, .stateRebuilt]), "both recoveries journaled")
    }

    /// The code an install of `version` is refused with, nil when it is installed.
    private func refusal(installing version: String, _ store: SlotStore, _ scratch: ScratchBundles) throws -> String? {
        do {
            try store.install(bundle: scratch.makeArchive(version: version), verifier: scratch.verifier)
            return nil
        } catch let error as SlotError { return error.code }
    }

    private func flipByte(in path: String) throws {
        var bytes = [UInt8](FileManager.default.contents(atPath: path) ?? Data())
        if !bytes.isEmpty { bytes[bytes.count / 2] ^= 0xFF }
        try AtomicFile.write(Data(bytes), to: path)
    }

    private func failingHealth(
        _ store: SlotStore, _ scratch: ScratchBundles, _ gate: any SlotHealthGate, _ log: inout DrillLog
    ) throws {
        try store.install(bundle: scratch.makeArchive(version: "1.1.0"), verifier: scratch.verifier)
        guard let trial = try store.activate(attempts: 3).active else { return }
        let outcome = try store.runHealthGate(gate)
        switch outcome {
        case .passed:
            log.check(false, "the health gate refused the trial model")
        case .rolledBack(let verdict, let rollback):
            var clock = Stopwatch()
            try store.checkIntegrity(rollback.to, level: .deep)
            log.rollbackMs = rollback.durationMs + clock.lap()
            log.check(true, "the health gate failed: \(verdict.failures.joined(separator: "; "))")
            let state = try store.loadState()
            log.check(
                state.active == trial.other && state[trial].state == .bad, "trial slot marked bad, fallback active")
            log.check(journalHas(store, "health_fail", reason: nil), "failing rows journaled")
        }
    }

    private func powerCut(_ store: SlotStore, _ scratch: ScratchBundles, _ executable: String, _ log: inout DrillLog)
        throws
    {
        var cycle = PowerCutCycle(store: store, scratch: scratch, executable: executable)
        for point in PowerCutCycle.cliPoints {
            let (killed, problems) = try cycle.cut(at: point)
            log.check(killed, "\(point.rawValue): process killed")
            log.check(
                problems.isEmpty,
                "\(point.rawValue): invariants hold"
                    + (problems.isEmpty ? "" : " — " + problems.joined(separator: "; ")))
        }
        // Time a rollback right after a cut in the middle of one.
        try cycle.prepare(.rollbackMidStateWrite)
        let killed = try spawn(executable, cycle.command(for: .rollbackMidStateWrite), crash: .rollbackMidStateWrite)
        log.check(killed, "cut during a rollback")
        var clock = Stopwatch()
        let result = try store.rollback(reason: "power-cut drill")
        try store.checkIntegrity(result.to, level: .deep)
        log.rollbackMs = clock.lap()
        log.check(store.checkInvariants(keptVersion: cycle.committed).isEmpty, "rollback after the cut completed")
    }

    private func journalHas(_ store: SlotStore, _ name: String, reason: String?) -> Bool {
        store.journal.read().contains { event in
            guard event.event.rawValue == name else { return false }
            guard let reason else { return true }
            return event.reason?.hasPrefix(reason) == true && event.durationMs != nil
        }
    }
}

/// Pass/fail lines of a drill.
struct DrillLog {
    var lines: [String] = []
    var failures = 0
    var rollbackMs: Double?

    mutating func check(_ ok: Bool, _ text: String) {
        lines.append((ok ? "ok: " : "FAIL: ") + text)
        if !ok { failures += 1 }
    }
}

/// Runs `aads-edge` with `AADS_CRASH_POINT` set; true when the process died of SIGKILL.
func spawn(_ executable: String, _ arguments: [String], crash: CrashPoint?) throws -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    #if AADS_TEST_HOOKS
        var environment = ProcessInfo.processInfo.environment
        environment[CrashPoint.environmentVariable] = crash?.rawValue
        process.environment = environment
    #endif
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { throw SlotError(.ioError, "cannot run \(executable)") }
    process.waitUntilExit()
    return process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL
}

/// Drives a store through install → activate → start → commit/rollback cycles, cutting a real
/// `aads-edge` process at a named point and checking the invariants afterwards.
public struct PowerCutCycle {
    public let store: SlotStore
    public let scratch: ScratchBundles
    public let executable: String
    /// The last committed version (must never be lost).
    public private(set) var committed: String?
    private var nextMinor = 1

    /// Every crash point, each reachable through a `slot` command.
    public static let cliPoints: [CrashPoint] = CrashPoint.allCases

    public init(store: SlotStore, scratch: ScratchBundles, executable: String) {
        self.store = store
        self.scratch = scratch
        self.executable = executable
        self.committed = (try? store.loadState()).flatMap { $0.floor }
    }

    /// The `aads-edge` arguments that reach `point`.
    public func command(for point: CrashPoint) -> [String] {
        let root = ["--root", store.root]
        switch point.rawValue.split(separator: ".").first ?? "" {
        case "install":
            return ["slot", "install", scratch.directory + "/next.tar", "--trusted", scratch.trustedDirectory] + root
        case "activate", "journal": return ["slot", "activate", "--no-health-check"] + root
        case "start": return ["slot", "start"] + root
        case "commit": return ["slot", "commit"] + root
        case "health": return ["slot", "mark-healthy", "--metrics", #"{"drill":1}"#] + root
        case "probation": return ["slot", "probation", "--ok"] + root
        default: return ["slot", "rollback", "--reason", "power-cut"] + root
        }
    }

    /// Brings the store to the state `point`'s command needs (a fresh bundle to install, an
    /// installed slot to activate, or a trial to start/commit/roll back).
    public mutating func prepare(_ point: CrashPoint) throws {
        var state = try store.loadState()
        let phase = point.rawValue.split(separator: ".").first ?? ""
        if phase == "install" {
            if state.trial != nil { try store.rollback(reason: "drill reset") }
            try makeNext(install: false)
            return
        }
        if phase == "activate" || phase == "journal" {
            if state.trial != nil { try store.rollback(reason: "drill reset") }
            state = try store.loadState()
            if let active = state.active, state[active.other].state != .installed { try makeNext(install: true) }
            return
        }
        if state.trial == nil {
            if let active = state.active, state[active.other].state != .installed { try makeNext(install: true) }
            try store.activate(attempts: 3)
        }
        state = try store.loadState()
        if phase == "probation", state.trial?.healthPassedAt == nil { try store.markHealthPassed() }
        if phase == "health", state.trial?.healthPassedAt != nil {
            try store.rollback(reason: "drill reset")
            try makeNext(install: true)
            try store.activate(attempts: 3)
        }
    }

    private mutating func makeNext(install: Bool) throws {
        let version = "1.\(nextMinor).0"
        nextMinor += 1
        let path = scratch.directory + "/next.tar"
        try? FileManager.default.removeItem(atPath: path)
        let built = try scratch.makeArchive(version: version, name: "v\(version)")
        try FileManager.default.copyItem(atPath: built, toPath: path)
        if install { try store.install(bundle: path, verifier: scratch.verifier) }
    }

    /// Prepares, cuts at `point`, checks invariants, then completes the interrupted operation.
    /// Returns whether the process was killed and the problems found right after the cut.
    public mutating func cut(at point: CrashPoint) throws -> (killed: Bool, problems: [String]) {
        try prepare(point)
        let before = try store.loadState()
        let killed = try spawn(executable, command(for: point), crash: point)
        var problems = store.checkInvariants(keptVersion: committed)
        // A commit that reached its state write counts: that version is now the one to keep.
        let after = try store.loadState()
        if before.trial != nil, after.trial == nil, let active = after.active, after[active].state == .good,
            active == before.trial?.slot
        {
            committed = after[active].version
        }
        // Recovery: the next command must work on the cut store.
        do {
            _ = try store.status()
            if point.rawValue.hasPrefix("commit"), try store.loadState().trial != nil {
                committed = try store.commit().version
            }
        } catch {
            problems.append("recovery failed: \(error)")
        }
        problems += store.checkInvariants(keptVersion: committed).map { "after recovery: \($0)" }
        return (killed, problems)
    }
}
