import AADSDiagnosis
import Foundation

/// What the slot's bundle says it achieved when it was built (for alerts).
public struct BaselineMetrics: Sendable, Equatable {
    public var latencyMs: Double?
    public var accuracy: Double?

    public init(latencyMs: Double? = nil, accuracy: Double? = nil) {
        self.latencyMs = latencyMs
        self.accuracy = accuracy
    }
}

/// The model the service is serving right now.
public struct ServingModel {
    /// Slot name (`a`, `b`), or a label such as `bundle` when no slot store is used.
    public var slot: String
    public var phase: SlotPhase
    public var diagnoser: any Diagnoser
    public var baseline: BaselineMetrics

    public init(slot: String, phase: SlotPhase, diagnoser: any Diagnoser, baseline: BaselineMetrics = BaselineMetrics())
    {
        self.slot = slot
        self.phase = phase
        self.diagnoser = diagnoser
        self.baseline = baseline
    }

    public var modelVersion: String { diagnoser.modelVersion }
}

/// The other version to shadow-run on a sample of images.
public struct ABPartner {
    public var diagnoser: any Diagnoser
    /// True when the partner is the candidate (the serving model is the baseline); false when the serving model
    /// is the candidate in probation and the partner is the last good version.
    public var partnerIsCandidate: Bool

    public init(diagnoser: any Diagnoser, partnerIsCandidate: Bool) {
        self.diagnoser = diagnoser
        self.partnerIsCandidate = partnerIsCandidate
    }
}

/// What a slot hook reports back to the service.
public struct SlotUpdate {
    /// The model to serve from now on, when it changed (a commit changes the phase, a rollback the model).
    public var serving: ServingModel?
    /// Set when a rollback happened: the red LED latches with this reason.
    public var rollbackReason: String?
    /// Events for the journal's slot timeline (`start_trial`, `health_pass`, `committed`, `rolled_back`, ...).
    public var events: [SlotEventRecord]
    /// Health checks run since the last call.
    public var healthChecks: [HealthCheckRecord]
    /// Set when the slot store's state file was unusable and was restored or rebuilt: raises an alert.
    public var stateRecovery: String?

    public init(
        serving: ServingModel? = nil, rollbackReason: String? = nil, events: [SlotEventRecord] = [],
        healthChecks: [HealthCheckRecord] = []
    ) {
        self.serving = serving
        self.rollbackReason = rollbackReason
        self.events = events
        self.healthChecks = healthChecks
    }

    public static var none: SlotUpdate { SlotUpdate() }
}

/// The slot life cycle as the service drives it. An implementation joins the slot store (trial attempts,
/// commit, rollback) and the health checks; the service calls it from its one loop thread only.
public protocol SlotLifecycle: AnyObject {
    /// Once at start-up, before any image: counts a trial start (before the model loads), rolls back a
    /// crash-looping trial, loads the model. `serving` must be set. Throwing refuses to start.
    func start() throws -> SlotUpdate
    /// After each image of the serving model has been journaled: probation accounting (commit or rollback).
    /// `ab` is the current A/B comparison for the serving candidate, when shadow runs exist.
    func didProcess(_ record: Diagnosis, serving: ServingModel, ab: ABComparison?) throws -> SlotUpdate
    /// About once a second: time-based probation, scheduled health checks.
    func tick(serving: ServingModel, now: Date) throws -> SlotUpdate
    /// The version to shadow-run for A/B, nil when no comparison is wanted.
    func abPartner(serving: ServingModel) -> ABPartner?
    /// When the service stops cleanly (a session that ends without it counts as a crash).
    func stop()
}

extension SlotLifecycle {
    public func stop() {}
}

/// Serves one fixed model with no slot store: always committed, no transitions.
public final class StaticSlotLifecycle: SlotLifecycle {
    private let model: ServingModel

    public init(slot: String = "bundle", diagnoser: any Diagnoser, baseline: BaselineMetrics = BaselineMetrics()) {
        model = ServingModel(slot: slot, phase: .committed, diagnoser: diagnoser, baseline: baseline)
    }

    public func start() throws -> SlotUpdate { SlotUpdate(serving: model) }
    public func didProcess(_ record: Diagnosis, serving: ServingModel, ab: ABComparison?) throws -> SlotUpdate {
        .none
    }
    public func tick(serving: ServingModel, now: Date) throws -> SlotUpdate { .none }
    public func abPartner(serving: ServingModel) -> ABPartner? { nil }
}
