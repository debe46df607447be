import AADSCore
import Foundation

/// What a health gate is asked to judge: the trial slot, and what to compare it with.
public struct GateCandidate: Sendable {
    public let slot: SlotID
    public let bundlePath: String
    public let version: String?
    /// The fallback (previous good) slot, whose measured metrics are the baseline on this device.
    public let fallback: SlotID?
    public let fallbackBundlePath: String?
    /// Metrics measured for the fallback on this device; empty when none were recorded (a gate then
    /// uses whatever baseline the bundle itself declares).
    public let baseline: SlotMetrics
}

/// A gate's judgement. `failures` and `warnings` are human-readable rows (journaled as they are).
public struct GateVerdict: Sendable, Equatable {
    public var passed: Bool
    public var metrics: SlotMetrics
    public var failures: [String]
    public var warnings: [String]
    /// The fallback's figures, when the gate had to measure them on this device (none were recorded):
    /// stored on the fallback slot so later gates and alerts compare with this device's own figures.
    public var fallbackMetrics: SlotMetrics

    public init(
        passed: Bool, metrics: SlotMetrics = [:], failures: [String] = [], warnings: [String] = [],
        fallbackMetrics: SlotMetrics = [:]
    ) {
        self.passed = passed
        self.metrics = metrics
        self.failures = failures
        self.warnings = warnings
        self.fallbackMetrics = fallbackMetrics
    }
}

/// A model-specific health check supplied by a higher layer. The slot layer only runs it against the
/// trial slot and acts on the verdict; a gate that cannot run should return a failing verdict.
public protocol SlotHealthGate: Sendable {
    func evaluate(_ candidate: GateCandidate) -> GateVerdict
}

/// A gate made from a closure.
public struct ClosureHealthGate: SlotHealthGate {
    private let body: @Sendable (GateCandidate) -> GateVerdict

    public init(_ body: @escaping @Sendable (GateCandidate) -> GateVerdict) { self.body = body }

    public func evaluate(_ candidate: GateCandidate) -> GateVerdict { body(candidate) }
}

/// The result of running a gate.
public enum GateOutcome: Sendable, Equatable {
    /// Probation has begun.
    case passed(GateVerdict)
    /// The trial slot was marked bad and the fallback serves again.
    case rolledBack(GateVerdict, RollbackResult)
}

/// When probation ends: commit after `successes` good diagnoses, or after `minutes` within bounds;
/// roll back when the error rate exceeds `maxErrorRate` over at least `minSamples` diagnoses, or when
/// unclean exits per diagnosis exceed `maxCrashFrequency`.
public struct ProbationPolicy: Sendable, Equatable, Codable {
    public var successes: Int
    public var minutes: Double
    public var maxErrorRate: Double
    public var minSamples: Int
    public var maxCrashFrequency: Double

    public init(
        successes: Int = 50, minutes: Double = 30, maxErrorRate: Double = 0.005, minSamples: Int = 20,
        maxCrashFrequency: Double = 0.001
    ) {
        self.successes = successes
        self.minutes = minutes
        self.maxErrorRate = maxErrorRate
        self.minSamples = minSamples
        self.maxCrashFrequency = maxCrashFrequency
    }

    enum CodingKeys: String, CodingKey {
        case successes, minutes
        case maxErrorRate = "max_error_rate"
        case minSamples = "min_samples"
        case maxCrashFrequency = "max_crash_frequency"
    }
}

/// Where probation stands after a sample.
public enum ProbationOutcome: Sendable, Equatable {
    case continuing(TrialRecord)
    case committed(CommitResult)
    case rolledBack(RollbackResult)
}

extension SlotStore {
    /// Runs `gate` against the trial slot (the lock is not held while it runs). Pass → probation
    /// begins and the verdict's metrics are stored on the slot; fail → rollback, journaling the
    /// failing rows. Throws `no_trial` without a trial, `bad_state` if the trial changed meanwhile.
    public func runHealthGate(_ gate: some SlotHealthGate) throws -> GateOutcome {
        let (state, trial) = try withLock { () -> (StoreState, TrialRecord) in
            let state = try recover()
            guard let trial = state.trial else { throw SlotError(.noTrial, "no slot is on trial") }
            return (state, trial)
        }
        let candidate = GateCandidate(
            slot: trial.slot, bundlePath: bundlePath(trial.slot), version: state[trial.slot].version,
            fallback: state.fallback, fallbackBundlePath: state.fallback.map(bundlePath),
            baseline: state.fallback.map { state[$0].metrics } ?? [:])
        CrashPoint.healthDuringCheck.hit()
        let verdict = gate.evaluate(candidate)
        let decided = Stopwatch()
        return try withLock {
            var now = try recover()
            guard let current = now.trial, current.slot == trial.slot, current.startedAt == trial.startedAt else {
                throw SlotError(.badState, "the trial changed while the health check ran")
            }
            if let fallback = now.fallback, !verdict.fallbackMetrics.isEmpty {
                now[fallback].metrics.merge(verdict.fallbackMetrics) { _, new in new }
                try persist(&now)
                try journal.append(
                    event(.baselineMeasured, now) {
                        $0.slot = fallback
                        $0.version = now[fallback].version
                        $0.metrics = verdict.fallbackMetrics
                    })
            }
            if verdict.passed {
                var updated = current
                updated.healthPassedAt = timestamp()
                now.trial = updated
                now[current.slot].metrics.merge(verdict.metrics) { _, new in new }
                try persist(&now, midWrite: .healthMidStateWrite)
                try journal.append(
                    event(.healthPass, now) {
                        $0.slot = current.slot
                        $0.version = now[current.slot].version
                        $0.warnings = verdict.warnings
                        $0.metrics = verdict.metrics
                    })
                return .passed(verdict)
            }
            now[current.slot].metrics.merge(verdict.metrics) { _, new in new }
            try journal.append(
                event(.healthFail, now) {
                    $0.slot = current.slot
                    $0.version = now[current.slot].version
                    $0.failures = verdict.failures
                    $0.warnings = verdict.warnings
                    $0.metrics = verdict.metrics
                })
            let reason = "health: " + (verdict.failures.isEmpty ? "failed" : verdict.failures.joined(separator: "; "))
            let rollback = try performRollback(&now, reason: reason, started: decided)
            return .rolledBack(verdict, rollback)
        }
    }

    /// Counts one diagnosis during probation and applies `policy` (commit, roll back or continue).
    /// `success: nil` only re-evaluates (e.g. a timer noticing that T minutes have passed). With
    /// `commitAllowed` false (another judge, such as the A/B comparison, has no verdict yet) probation
    /// continues past its commit point; rollbacks still apply.
    @discardableResult
    public func recordProbation(
        success: Bool?, policy: ProbationPolicy = ProbationPolicy(), commitAllowed: Bool = true, now: Date = Date()
    ) throws -> ProbationOutcome {
        let started = Stopwatch()
        return try withLock {
            var state = try recover()
            guard var trial = state.trial else { throw SlotError(.noTrial, "no slot is on trial") }
            guard let passedAt = trial.healthPassedAt else {
                throw SlotError(.noTrial, "probation has not begun: the health gate has not passed")
            }
            if let success {
                if success { trial.probationSuccesses += 1 } else { trial.probationErrors += 1 }
                state.trial = trial
            }
            let total = trial.probationSuccesses + trial.probationErrors
            let rate = total > 0 ? Double(trial.probationErrors) / Double(total) : 0
            if total >= policy.minSamples && rate > policy.maxErrorRate {
                return .rolledBack(
                    try performRollback(
                        &state,
                        reason: "probation: error rate \(JSONLine.rounded(rate, 4)) over \(total) diagnoses",
                        started: started))
            }
            let elapsed = ISO8601.parseTime(passedAt).map { now.timeIntervalSince($0) / 60 } ?? 0
            if commitAllowed,
                trial.probationSuccesses >= policy.successes
                    || (elapsed >= policy.minutes && rate <= policy.maxErrorRate)
            {
                let why =
                    trial.probationSuccesses >= policy.successes
                    ? "probation: \(trial.probationSuccesses) successful diagnoses"
                    : "probation: \(Int(elapsed)) minutes within bounds"
                return .committed(try performCommit(&state, metrics: [:], reason: why))
            }
            if success != nil { try persist(&state, midWrite: .probationMidStateWrite) }
            return .continuing(trial)
        }
    }
}
