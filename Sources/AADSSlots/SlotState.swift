import Foundation

/// One of the two slots.
public enum SlotID: String, Codable, Sendable, CaseIterable, Comparable {
    case a, b

    public var other: SlotID { self == .a ? .b : .a }

    public static func < (lhs: SlotID, rhs: SlotID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The life-cycle state of a slot. `installing` is only ever seen after a crash and counts as `empty`.
public enum SlotState: String, Codable, Sendable, CaseIterable {
    case empty, installing, installed, trial, good, bad
}

/// What the store remembers about one slot.
public struct SlotRecord: Codable, Sendable, Equatable {
    public var state: SlotState
    public var version: String?
    public var manifestSHA256: String?
    public var signer: String?
    public var installedAt: String?
    public var committedAt: String?
    /// Measured on this device by higher layers (health gate, probation); opaque here.
    public var metrics: SlotMetrics

    public init(
        state: SlotState = .empty, version: String? = nil, manifestSHA256: String? = nil, signer: String? = nil,
        installedAt: String? = nil, committedAt: String? = nil, metrics: SlotMetrics = [:]
    ) {
        self.state = state
        self.version = version
        self.manifestSHA256 = manifestSHA256
        self.signer = signer
        self.installedAt = installedAt
        self.committedAt = committedAt
        self.metrics = metrics
    }

    enum CodingKeys: String, CodingKey {
        case state, version, signer, metrics
        case manifestSHA256 = "manifest_sha256"
        case installedAt = "installed_at"
        case committedAt = "committed_at"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        state = try c.decode(SlotState.self, forKey: .state)
        version = try c.decodeIfPresent(String.self, forKey: .version)
        manifestSHA256 = try c.decodeIfPresent(String.self, forKey: .manifestSHA256)
        signer = try c.decodeIfPresent(String.self, forKey: .signer)
        installedAt = try c.decodeIfPresent(String.self, forKey: .installedAt)
        committedAt = try c.decodeIfPresent(String.self, forKey: .committedAt)
        metrics = try c.decodeIfPresent(SlotMetrics.self, forKey: .metrics) ?? [:]
    }

    /// `installing` counts as `empty`.
    public var effectiveState: SlotState { state == .installing ? .empty : state }
}

/// The counters of an active trial.
public struct TrialRecord: Codable, Sendable, Equatable {
    public var slot: SlotID
    public var attempts: Int
    public var attemptsLeft: Int
    public var startedAt: String
    public var starts: Int
    public var healthPassedAt: String?
    public var probationSuccesses: Int
    public var probationErrors: Int
    /// Runtime sessions of this trial that ended without a clean stop (crash, kill, power cut).
    public var uncleanExits: Int = 0

    public init(
        slot: SlotID, attempts: Int, attemptsLeft: Int, startedAt: String, starts: Int, healthPassedAt: String?,
        probationSuccesses: Int, probationErrors: Int, uncleanExits: Int = 0
    ) {
        self.slot = slot
        self.attempts = attempts
        self.attemptsLeft = attemptsLeft
        self.startedAt = startedAt
        self.starts = starts
        self.healthPassedAt = healthPassedAt
        self.probationSuccesses = probationSuccesses
        self.probationErrors = probationErrors
        self.uncleanExits = uncleanExits
    }

    enum CodingKeys: String, CodingKey {
        case slot, attempts, starts
        case attemptsLeft = "attempts_left"
        case startedAt = "started_at"
        case healthPassedAt = "health_passed_at"
        case probationSuccesses = "probation_successes"
        case probationErrors = "probation_errors"
        case uncleanExits = "unclean_exits"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        slot = try c.decode(SlotID.self, forKey: .slot)
        attempts = try c.decode(Int.self, forKey: .attempts)
        attemptsLeft = try c.decode(Int.self, forKey: .attemptsLeft)
        startedAt = try c.decode(String.self, forKey: .startedAt)
        starts = try c.decode(Int.self, forKey: .starts)
        healthPassedAt = try c.decodeIfPresent(String.self, forKey: .healthPassedAt)
        probationSuccesses = try c.decode(Int.self, forKey: .probationSuccesses)
        probationErrors = try c.decode(Int.self, forKey: .probationErrors)
        uncleanExits = try c.decodeIfPresent(Int.self, forKey: .uncleanExits) ?? 0  // older state files
    }
}

/// The whole persisted state (`state.json`).
public struct StoreState: Codable, Sendable, Equatable {
    public static let currentFormat = 1

    public var format: Int
    /// Incremented by every write; journal events carry the generation they produced.
    public var generation: UInt64
    public var active: SlotID?
    /// The last good slot, kept to fall back to.
    public var fallback: SlotID?
    /// The highest committed `model_version`; installs below it are refused unless forced.
    public var floor: String?
    public var trial: TrialRecord?
    public var a: SlotRecord
    public var b: SlotRecord
    public var updatedAt: String?

    public init() {
        format = StoreState.currentFormat
        generation = 0
        a = SlotRecord()
        b = SlotRecord()
    }

    enum CodingKeys: String, CodingKey {
        case format, generation, active, fallback, floor, trial, a, b
        case updatedAt = "updated_at"
    }

    public subscript(slot: SlotID) -> SlotRecord {
        get { slot == .a ? a : b }
        set { if slot == .a { a = newValue } else { b = newValue } }
    }

    /// Checks the invariants of the state machine; returns the violations (empty when sound).
    public func violations() -> [String] {
        var problems: [String] = []
        if format != StoreState.currentFormat { problems.append("unknown format \(format)") }
        if let active {
            let state = self[active].state
            if state != .good && state != .trial { problems.append("active slot \(active) is \(state.rawValue)") }
            if state == .trial && trial?.slot != active { problems.append("trial slot \(active) has no trial record") }
        } else if [a, b].contains(where: { $0.effectiveState != .empty && $0.state != .bad }) || trial != nil {
            // Without an active slot, a slot may only be empty or bad (a rebuild found nothing that verifies).
            problems.append("no active slot but slots are not empty")
        }
        if let trial {
            if trial.slot != active { problems.append("trial slot \(trial.slot) is not active") }
            if self[trial.slot].state != .trial { problems.append("trial slot \(trial.slot) is not in trial") }
            guard let fallback, fallback != trial.slot, self[fallback].state == .good else {
                problems.append("trial without a good fallback")
                return problems
            }
        }
        if let fallback {
            if fallback == active { problems.append("fallback is the active slot") }
            if self[fallback].state != .good {
                problems.append("fallback \(fallback) is \(self[fallback].state.rawValue)")
            }
        }
        for slot in SlotID.allCases where self[slot].state == .trial && trial?.slot != slot {
            problems.append("slot \(slot) in trial without a trial record")
        }
        if let floor, SemVer(floor) == nil { problems.append("floor \(floor) is not a version") }
        return problems
    }
}
