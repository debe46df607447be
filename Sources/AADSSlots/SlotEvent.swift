import AADSCore
import Foundation

/// One line of the slot store's event journal (`events.jsonl`). The store writes it and every reader
/// (`slot status`, the drills, the field report) decodes it through this type, so writer and readers
/// cannot disagree on a field name. The JSON keys are the ones the store has always written (`event`,
/// `ts`, `generation`, `active`, then the event's own fields in snake case), so older journals still read.
/// Fields an event does not carry are left out; `active` is always written (null for an empty store).
public struct SlotEvent: Codable, Sendable, Equatable {
    /// An event name. Names this version does not know still decode (a newer writer's journal).
    public struct Kind: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String

        public init(rawValue: String) { self.rawValue = rawValue }

        public init(from decoder: any Decoder) throws {
            rawValue = try decoder.singleValueContainer().decode(String.self)
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }

        public var description: String { rawValue }

        /// The first bundle of an empty store, active and good at once.
        public static let factoryInstall = Kind(rawValue: "factory_install")
        public static let install = Kind(rawValue: "install")
        public static let installRefused = Kind(rawValue: "install_refused")
        public static let installFailed = Kind(rawValue: "install_failed")
        public static let activate = Kind(rawValue: "activate")
        public static let activateRefused = Kind(rawValue: "activate_refused")
        public static let trialStart = Kind(rawValue: "trial_start")
        public static let healthPass = Kind(rawValue: "health_pass")
        public static let healthFail = Kind(rawValue: "health_fail")
        public static let commit = Kind(rawValue: "commit")
        public static let rollback = Kind(rawValue: "rollback")
        /// Repair of an install a crash interrupted.
        public static let recover = Kind(rawValue: "recover")
        /// `state.json` was unusable; the previous generation (`state.json.prev`) was restored.
        public static let stateRestored = Kind(rawValue: "state_restored")
        /// Both state files were unusable; the state was rebuilt from the verified slots.
        public static let stateRebuilt = Kind(rawValue: "state_rebuilt")
        /// A slot's figures measured on this device (a fallback that had none, measured by a health gate).
        public static let baselineMeasured = Kind(rawValue: "baseline_measured")
        /// The previous runtime session ended without a clean stop (crash, kill, power cut).
        public static let uncleanExit = Kind(rawValue: "unclean_exit")
    }

    public var event: Kind
    /// When the event was journaled (`ts`, ISO 8601 UTC with milliseconds).
    public var at: Date
    /// The state generation written just before the event.
    public var generation: UInt64
    /// The active slot after the event.
    public var active: SlotID?
    /// The slot the event is about (install, activate, trial start, health, commit).
    public var slot: SlotID?
    public var version: String?
    /// Fingerprint of the key that signed an installed bundle.
    public var signer: String?
    public var durationMs: Double?
    /// Error code and message of a refused or failed install.
    public var code: String?
    public var message: String?
    public var reason: String?
    public var attempts: Int?
    public var attemptsLeft: Int?
    public var starts: Int?
    public var fallback: SlotID?
    public var floor: String?
    public var probationSuccesses: Int?
    public var probationErrors: Int?
    /// Unclean exits of the trial so far (an `unclean_exit` event, a commit).
    public var uncleanExits: Int?
    /// A rollback's slots and versions.
    public var from: SlotID?
    public var to: SlotID?
    public var fromVersion: String?
    public var toVersion: String?
    public var fallbackIntegrity: String?
    /// Slots repaired by a recovery.
    public var slots: [String]?
    public var warnings: [String]?
    public var failures: [String]?
    /// What a health gate measured (`health_pass`, `health_fail`).
    public var metrics: SlotMetrics?

    public init(event: Kind, at: Date = Date(), generation: UInt64, active: SlotID?) {
        self.event = event
        self.at = at
        self.generation = generation
        self.active = active
    }

    enum CodingKeys: String, CodingKey {
        case event
        case at = "ts"
        case generation, active, slot, version, signer
        case durationMs = "duration_ms"
        case code, message, reason, attempts
        case attemptsLeft = "attempts_left"
        case starts, fallback, floor
        case probationSuccesses = "probation_successes"
        case probationErrors = "probation_errors"
        case uncleanExits = "unclean_exits"
        case from, to
        case fromVersion = "from_version"
        case toVersion = "to_version"
        case fallbackIntegrity = "fallback_integrity"
        case slots, warnings, failures, metrics
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        event = try c.decode(Kind.self, forKey: .event)
        let ts = try c.decode(String.self, forKey: .at)
        guard let date = ISO8601.parseTime(ts) else {
            throw DecodingError.dataCorruptedError(forKey: .at, in: c, debugDescription: "not an ISO 8601 time: \(ts)")
        }
        at = date
        generation = try c.decode(UInt64.self, forKey: .generation)
        active = try c.decodeIfPresent(SlotID.self, forKey: .active)
        slot = try c.decodeIfPresent(SlotID.self, forKey: .slot)
        version = try c.decodeIfPresent(String.self, forKey: .version)
        signer = try c.decodeIfPresent(String.self, forKey: .signer)
        durationMs = try c.decodeIfPresent(Double.self, forKey: .durationMs)
        code = try c.decodeIfPresent(String.self, forKey: .code)
        message = try c.decodeIfPresent(String.self, forKey: .message)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        attempts = try c.decodeIfPresent(Int.self, forKey: .attempts)
        attemptsLeft = try c.decodeIfPresent(Int.self, forKey: .attemptsLeft)
        starts = try c.decodeIfPresent(Int.self, forKey: .starts)
        fallback = try c.decodeIfPresent(SlotID.self, forKey: .fallback)
        floor = try c.decodeIfPresent(String.self, forKey: .floor)
        probationSuccesses = try c.decodeIfPresent(Int.self, forKey: .probationSuccesses)
        probationErrors = try c.decodeIfPresent(Int.self, forKey: .probationErrors)
        uncleanExits = try c.decodeIfPresent(Int.self, forKey: .uncleanExits)
        from = try c.decodeIfPresent(SlotID.self, forKey: .from)
        to = try c.decodeIfPresent(SlotID.self, forKey: .to)
        fromVersion = try c.decodeIfPresent(String.self, forKey: .fromVersion)
        toVersion = try c.decodeIfPresent(String.self, forKey: .toVersion)
        fallbackIntegrity = try c.decodeIfPresent(String.self, forKey: .fallbackIntegrity)
        slots = try c.decodeIfPresent([String].self, forKey: .slots)
        warnings = try c.decodeIfPresent([String].self, forKey: .warnings)
        failures = try c.decodeIfPresent([String].self, forKey: .failures)
        metrics = try c.decodeIfPresent(SlotMetrics.self, forKey: .metrics)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(event, forKey: .event)
        try c.encode(ISO8601.string(at), forKey: .at)
        try c.encode(generation, forKey: .generation)
        try c.encode(active, forKey: .active)  // null when the store is empty
        try c.encodeIfPresent(slot, forKey: .slot)
        try c.encodeIfPresent(version, forKey: .version)
        try c.encodeIfPresent(signer, forKey: .signer)
        try c.encodeIfPresent(durationMs, forKey: .durationMs)
        try c.encodeIfPresent(code, forKey: .code)
        try c.encodeIfPresent(message, forKey: .message)
        try c.encodeIfPresent(reason, forKey: .reason)
        try c.encodeIfPresent(attempts, forKey: .attempts)
        try c.encodeIfPresent(attemptsLeft, forKey: .attemptsLeft)
        try c.encodeIfPresent(starts, forKey: .starts)
        try c.encodeIfPresent(fallback, forKey: .fallback)
        try c.encodeIfPresent(floor, forKey: .floor)
        try c.encodeIfPresent(probationSuccesses, forKey: .probationSuccesses)
        try c.encodeIfPresent(probationErrors, forKey: .probationErrors)
        try c.encodeIfPresent(uncleanExits, forKey: .uncleanExits)
        try c.encodeIfPresent(from, forKey: .from)
        try c.encodeIfPresent(to, forKey: .to)
        try c.encodeIfPresent(fromVersion, forKey: .fromVersion)
        try c.encodeIfPresent(toVersion, forKey: .toVersion)
        try c.encodeIfPresent(fallbackIntegrity, forKey: .fallbackIntegrity)
        try c.encodeIfPresent(slots, forKey: .slots)
        try c.encodeIfPresent(warnings, forKey: .warnings)
        try c.encodeIfPresent(failures, forKey: .failures)
        try c.encodeIfPresent(metrics, forKey: .metrics)
    }

    /// One journal line (without the newline): compact JSON, keys sorted.
    public func line() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return String(decoding: try encoder.encode(self), as: UTF8.self)
        } catch {
            throw SlotError(.ioError, "cannot encode slot event \(event)")
        }
    }

    /// Decodes one journal line; nil for a line that is not a whole event (a torn tail, foreign text).
    public static func decode(line: String) -> SlotEvent? {
        try? JSONDecoder().decode(SlotEvent.self, from: Data(line.utf8))
    }

    /// The event as a JSON object (`slot status --json`).
    public var jsonObject: [String: Any] {
        guard let line = try? line(),
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else { return ["event": event.rawValue] }
        return object
    }
}
