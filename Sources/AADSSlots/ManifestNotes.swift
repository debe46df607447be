import Foundation

/// The optional, signed notes a manifest carries about its model: `changelog` (what changed since the
/// previous version), `training_report` (a free-form JSON object written by the training tool, kept as
/// it is) and `baseline_metrics` (the figures measured on its golden set before signing).
extension BundleManifest {
    /// `changelog`, when present.
    public var changelog: String? { fields["changelog"]?.stringValue }

    /// `training_report`, when present, exactly as in the manifest.
    public var trainingReport: [String: OpaqueJSON]? {
        if case .object(let object)? = fields["training_report"] { return object }
        return nil
    }

    /// `baseline_metrics`, when present.
    public var baselineMetrics: [String: OpaqueJSON]? {
        if case .object(let object)? = fields["baseline_metrics"] { return object }
        return nil
    }

    /// Refuses notes of the wrong type (`bad_manifest`); absent notes are fine.
    static func checkNotes(_ fields: [String: OpaqueJSON]) throws {
        if let value = fields["changelog"], value.stringValue == nil {
            throw SlotError(.badManifest, "changelog is not a string")
        }
        if let value = fields["training_report"] {
            guard case .object = value else { throw SlotError(.badManifest, "training_report is not a JSON object") }
        }
    }
}

/// What an installed slot's manifest says about its model, for `slot status` and the field report.
public struct InstalledModel: Sendable, Equatable {
    public var slot: SlotID
    public var state: SlotState
    public var active: Bool
    public var version: String?
    public var changelog: String?
    public var baselineMetrics: [String: OpaqueJSON]
    public var trainingReport: [String: OpaqueJSON]?

    /// The notes part of `slot status --json` (null when absent).
    public var notesObject: [String: Any] {
        [
            "changelog": changelog ?? NSNull(), "baseline_metrics": baselineMetrics.mapValues(\.anyValue),
            "training_report": trainingReport.map { OpaqueJSON.object($0).anyValue } ?? NSNull(),
        ]
    }
}

extension SlotStore {
    /// The model of each slot that holds one (not empty), from its manifest.json; a slot whose manifest is
    /// unreadable is listed without notes.
    public func installedModels() throws -> [InstalledModel] {
        let state = try loadState()
        return SlotID.allCases.compactMap { slot in
            let record = state[slot]
            guard record.effectiveState != .empty else { return nil }
            let manifest = FileManager.default.contents(atPath: bundlePath(slot) + "/" + BundleManifest.manifestName)
                .flatMap { try? BundleManifest.parse($0, limits: options.limits) }
            return InstalledModel(
                slot: slot, state: record.state, active: state.active == slot,
                version: record.version ?? manifest?.modelVersion.description, changelog: manifest?.changelog,
                baselineMetrics: manifest?.baselineMetrics ?? [:], trainingReport: manifest?.trainingReport)
        }
    }
}
