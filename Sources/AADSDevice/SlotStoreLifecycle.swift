import AADSCore
import AADSDiagnosis
import AADSHealth
import AADSImage
import AADSSlots
import Foundation
import Logging

/// Joins the service to the A/B slot store: a start in trial spends an attempt before the model loads
/// (crash-loop rollback), a trial slot runs the golden-set health gate, probation commits after enough
/// good diagnoses (or time) and rolls back on errors or a worse A/B comparison; every rollback loads the
/// previous good model at once.
public final class SlotStoreLifecycle: SlotLifecycle {
    let store: SlotStore
    let config: DeviceConfig
    let health: HealthPolicy
    let options: PipelineOptions
    let logger: Logger
    private var partner: ABPartner?
    private var partnerSlot: SlotID?
    private var lastTick = Date.distantPast

    public init(
        config: DeviceConfig, health: HealthPolicy, options: PipelineOptions = PipelineOptions(), logger: Logger
    ) {
        self.store = SlotStore(root: config.slotRoot)
        self.config = config
        self.health = health
        self.options = options
        self.logger = logger
    }

    /// The probation rules: the image count from device.json, every bound from the decision matrix (health.json).
    private var probationPolicy: ProbationPolicy {
        ProbationPolicy(
            successes: config.probation.images, minutes: health.probationMinutes, maxErrorRate: health.errorRateMax,
            minSamples: min(20, config.probation.images), maxCrashFrequency: health.crashFrequencyMax)
    }

    /// Whether probation waits for the A/B comparison's verdict before it commits.
    private var abRequired: Bool { config.probation.requireABNotWorse && config.ab.fraction > 0 }
    /// The A/B comparison's last verdict on the candidate (nil: none yet).
    private var abVerdict: Bool?

    /// Refuses a device.json bound that contradicts the decision matrix it would shadow.
    static func checkAgreement(config: DeviceConfig, health: HealthPolicy) throws {
        if let rate = config.probation.maxErrorRate, rate != health.errorRateMax {
            throw ConfigError(
                "probation.max_error_rate",
                "\(rate) contradicts error_rate_max \(health.errorRateMax) in health.json, the one error-rate bound: "
                    + "remove the key from device.json")
        }
    }

    public func start() throws -> SlotUpdate {
        var update = try startServing()
        update.healthChecks += gateRuns()
        return update
    }

    /// Every health gate run in the store's journal after the last one reported: by this service or by
    /// `slot activate`, so each run reaches the results journal and the metrics (the journal skips repeats).
    private func gateRuns() -> [HealthCheckRecord] {
        let runs = store.journal.read().filter { $0.event == .healthPass || $0.event == .healthFail }
            .filter { event in reportedGateRunsThrough.map { event.at > $0 } ?? true }
        if let last = runs.last { reportedGateRunsThrough = last.at }
        return runs.map { event in
            let m = HealthMetrics.numbers(event.metrics ?? [:])
            return HealthCheckRecord(
                slot: event.slot?.rawValue ?? "", modelVersion: event.version ?? "",
                passed: event.event == .healthPass, cropRoutingAccuracy: m["crop_routing_accuracy"],
                adapterAccuracy: m["adapter_accuracy"], oodAUROC: m["ood_auroc"], oodFPR: m["ood_fpr"],
                latencyMs: m["latency_ms"], memoryMB: m["memory_per_adapter_mb"],
                detail: ((event.failures ?? []) + (event.warnings ?? [])).joined(separator: "; "), createdAt: event.at)
        }
    }

    private var reportedGateRunsThrough: Date?

    private func startServing() throws -> SlotUpdate {
        try Self.checkAgreement(config: config, health: health)
        var update = SlotUpdate()
        // The previous session's unclean exit counts against a trial (crash frequency).
        let session = try store.beginSession(policy: probationPolicy)
        update.stateRecovery = session.stateRecovery
        if let rollback = session.rollback { note(rollback, into: &update) }
        // Every payload byte of the slot about to serve is re-hashed once per start: a corrupt slot rolls
        // back to an intact fallback instead of serving.
        let decision = try store.beginRuntimeStart(verify: .deep)
        update.stateRecovery = update.stateRecovery ?? decision.stateRecovery
        guard let slot = decision.slot, let path = decision.bundlePath else {
            throw SlotError(
                .noActiveSlot, "the slot store at \(config.slotRoot) holds no model: install a bundle first")
        }
        if let rollback = decision.rollback { note(rollback, into: &update) }
        if decision.trial {
            update.events.append(
                SlotEventRecord(
                    event: "trial_start", slot: slot.rawValue, modelVersion: decision.version ?? "",
                    detail: "attempts left: \(decision.attemptsLeft ?? 0)"))
        }
        let diagnoser: PipelineDiagnoser
        do {
            diagnoser = try PipelineDiagnoser(bundleDirectory: path, options: options)
        } catch  where decision.trial {
            let rollback = try store.rollback(reason: "load: \(AnyCodedError(error).message)")
            note(rollback, into: &update)
            return try serveActive(update)
        }
        var phase: SlotPhase = .committed
        if decision.trial {
            let state = try store.loadState()
            if state.trial?.healthPassedAt == nil {
                let gate = GoldenSetGate(check: HealthCheck(policy: health, threads: options.threads))
                switch try store.runHealthGate(gate) {
                case .passed:
                    update.events.append(
                        SlotEventRecord(event: "health_pass", slot: slot.rawValue, modelVersion: diagnoser.modelVersion)
                    )
                    phase = .probation
                case .rolledBack(_, let rollback):
                    note(rollback, into: &update)
                    return try serveActive(update)
                }
            } else {
                phase = .probation
            }
        }
        update.serving = ServingModel(
            slot: slot.rawValue, phase: phase, diagnoser: diagnoser, baseline: deviceBaseline(slot, diagnoser))
        return update
    }

    /// The figures alerts compare with: the slot's own, measured on this device by a health gate. Latency
    /// depends on the board, so without a measured figure the alert engine takes its first full window on
    /// this device, never the build machine's figure; accuracy falls back to the bundle's own.
    private func deviceBaseline(_ slot: SlotID, _ diagnoser: PipelineDiagnoser) -> BaselineMetrics {
        let measured = HealthMetrics.numbers((try? store.loadState())?[slot].metrics ?? [:])
        if measured["latency_ms"] == nil {
            logger.notice(
                "slot \(slot) has no latency measured on this device: the first images served set the latency baseline")
        }
        return BaselineMetrics(
            latencyMs: measured["latency_ms"], accuracy: measured["adapter_accuracy"] ?? diagnoser.baseline.accuracy)
    }

    /// Loads whatever slot is active now (after a rollback) as a committed model.
    private func serveActive(_ update: SlotUpdate) throws -> SlotUpdate {
        var update = update
        let state = try store.loadState()
        guard let active = state.active else { throw SlotError(.noActiveSlot, "no active slot after rollback") }
        let diagnoser = try PipelineDiagnoser(bundleDirectory: store.bundlePath(active), options: options)
        update.serving = ServingModel(
            slot: active.rawValue, phase: .committed, diagnoser: diagnoser, baseline: deviceBaseline(active, diagnoser))
        partner = nil
        return update
    }

    private func note(_ rollback: RollbackResult, into update: inout SlotUpdate) {
        logger.error(
            "rolled back from slot \(rollback.from) to \(rollback.to) in \(JSONLine.rounded(rollback.durationMs)) ms: \(rollback.reason)"
        )
        update.rollbackReason = rollback.reason
        update.events.append(
            SlotEventRecord(
                event: "rolled_back", slot: rollback.from.rawValue, modelVersion: rollback.fromVersion ?? "",
                detail: "\(rollback.reason) (to \(rollback.to.rawValue), \(JSONLine.rounded(rollback.durationMs)) ms)"))
    }

    public func didProcess(_ record: Diagnosis, serving: ServingModel, ab: ABComparison?) throws -> SlotUpdate {
        guard serving.phase == .probation else { return .none }
        if abRequired {
            abVerdict = ab?.candidateNotWorse(alpha: config.ab.alpha, minSamples: config.ab.minSamples)
            if abVerdict == false {
                return try rolledBack(
                    store.rollback(reason: "A/B: candidate significantly worse than the last good version"))
            }
        }
        // A file the camera wrote badly says nothing about the model: only model errors count.
        let success: Bool? = Self.isInputError(record) ? nil : record.decision != .error
        return try apply(
            store.recordProbation(success: success, policy: probationPolicy, commitAllowed: commitAllowed),
            serving: serving)
    }

    public func tick(serving: ServingModel, now: Date) throws -> SlotUpdate {
        guard now.timeIntervalSince(lastTick) >= 10 else { return .none }
        lastTick = now
        var update = SlotUpdate.none
        if serving.phase == .probation {
            update = try apply(
                store.recordProbation(success: nil, policy: probationPolicy, commitAllowed: commitAllowed, now: now),
                serving: serving)
        }
        update.healthChecks += gateRuns()
        if let check = goldenRecheck(serving, now: now) { update.healthChecks.append(check) }
        return update
    }

    private var lastGoldenRecheck: Date?

    /// The accuracy-drop estimate: live images carry no labels, so every `alerts.golden_recheck_hours`
    /// the serving model runs its golden set again and its adapter accuracy is compared with the slot's
    /// baseline (measured on this device; the bundle's own figure otherwise). The service raises
    /// `accuracy_drop` when it fell more than `alerts.accuracy_drop`.
    private func goldenRecheck(_ serving: ServingModel, now: Date) -> HealthCheckRecord? {
        let hours = config.alerts.goldenRecheckHours
        guard hours > 0, let model = serving.diagnoser as? PipelineDiagnoser else { return nil }
        guard let last = lastGoldenRecheck else {
            lastGoldenRecheck = now  // the first re-check comes one interval after the start
            return nil
        }
        guard now.timeIntervalSince(last) >= hours * 3600 else { return nil }
        lastGoldenRecheck = now
        do {
            let figures = try HealthCheck.measure(pipeline: model.pipeline)
            let drop = serving.baseline.accuracy.map { $0 - figures.adapterAccuracy } ?? 0
            return HealthCheckRecord(
                slot: serving.slot, modelVersion: serving.modelVersion, passed: drop <= config.alerts.accuracyDrop,
                cropRoutingAccuracy: figures.cropRoutingAccuracy, adapterAccuracy: figures.adapterAccuracy,
                oodAUROC: figures.oodAuroc, oodFPR: figures.oodFpr, latencyMs: figures.latencyMs,
                memoryMB: figures.memoryPerAdapterMb,
                detail: String(
                    format: "golden-set re-check: adapter accuracy %.3f, %.3f below the baseline",
                    figures.adapterAccuracy, drop),
                createdAt: now)
        } catch {
            return HealthCheckRecord(
                slot: serving.slot, modelVersion: serving.modelVersion, passed: false,
                detail: "golden-set re-check failed: \(AnyCodedError(error).message)", createdAt: now)
        }
    }

    /// Probation may commit unless it must wait for an A/B verdict that has not come yet.
    private var commitAllowed: Bool { !abRequired || abVerdict == true }

    /// Errors of the input file itself (unreadable, not a JPEG, corrupt, too large, unsupported).
    static func isInputError(_ record: Diagnosis) -> Bool {
        guard record.decision == .error, let code = record.error?.code else { return false }
        return inputErrorCodes.contains(code)
    }

    /// The image errors that describe the file, not the model: every `ImageError` code but a bad option
    /// or an internal failure.
    static let inputErrorCodes = Set(
        ImageError.Code.allCases.filter { $0 != .invalidOptions && $0 != .internal }.map(\.rawValue))

    public func stop() {
        do { try store.endSession() } catch {
            logger.error("cannot mark the session stopped: \(AnyCodedError(error).message)")
        }
    }

    private func apply(_ outcome: ProbationOutcome, serving: ServingModel) throws -> SlotUpdate {
        switch outcome {
        case .continuing:
            return .none
        case .committed(let commit):
            logger.info(
                "committed slot \(commit.slot) (\(commit.version ?? "?")); version floor \(commit.floor ?? "-")")
            var committed = serving
            committed.phase = .committed
            partner = nil
            return SlotUpdate(
                serving: committed,
                events: [
                    SlotEventRecord(event: "committed", slot: commit.slot.rawValue, modelVersion: commit.version ?? "")
                ])
        case .rolledBack(let rollback):
            return try rolledBack(rollback)
        }
    }

    private func rolledBack(_ rollback: RollbackResult) throws -> SlotUpdate {
        var update = SlotUpdate()
        note(rollback, into: &update)
        return try serveActive(update)
    }

    public func abPartner(serving: ServingModel) -> ABPartner? {
        guard serving.phase == .probation, config.ab.fraction > 0 else { return nil }
        if let partner { return partner }
        guard let state = try? store.loadState(), let fallback = state.fallback,
            let diagnoser = try? PipelineDiagnoser(bundleDirectory: store.bundlePath(fallback), options: options)
        else { return nil }
        partner = ABPartner(diagnoser: diagnoser, partnerIsCandidate: false)
        partnerSlot = fallback
        return partner
    }
}
