import AADSCore
import AADSHealth
import AADSSlots
import ArgumentParser
import Foundation

struct HealthCommand: AADSCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Check a slot (or a bundle directory): integrity, model load, golden set, decision matrix.",
        discussion: """
            The golden set runs through the real pipeline; routing accuracy, adapter accuracy, OOD AUROC and \
            false-positive rate, latency, memory and error rate are compared with the previous good slot's \
            figures measured on this device (or the bundle's baseline_metrics) using the thresholds of \
            health.json. A serving slot that fails its integrity check is rolled back to an intact good \
            fallback. Exit status: 0 pass, 1 fail, 2 could not run.
            """)

    @Option(help: "Slot to check (default: the active slot).")
    var slot: String?

    @Option(help: "Slot store root.")
    var root = SlotStore.defaultRoot

    @Option(help: "Check a bundle directory instead of a slot.")
    var bundle: String?

    @Option(help: "Decision thresholds (health.json); default: found as described under `slot activate`.")
    var policy: String?

    @Flag(help: "With --bundle: write the measured figures into the manifest's baseline_metrics.")
    var writeBaseline = false

    @Option(help: "Worker threads for the backbone.")
    var threads = 1

    @OptionGroup var output: OutputOptions

    static let errorPolicy = ErrorPolicy.always(.couldNotRun)

    func body() throws {
        let result: HealthReport
        var rollback: RollbackResult?
        let check = HealthCheck(policy: try ConfigPaths.healthPolicy(named: policy), threads: threads)
        if let bundle {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: bundle, isDirectory: &isDirectory), isDirectory.boolValue
            else { throw HealthError(.notFound, "no such bundle directory: \(bundle)") }
            if writeBaseline {
                let metrics = try check.measure(bundleDirectory: bundle)
                try BaselineWriter.write(metrics, bundleDirectory: bundle)
                print(
                    output.json
                        ? JSONLine.encode(["bundle": bundle, "baseline_metrics": metrics.dictionary])
                        : "baseline_metrics written to \(bundle)/manifest.json")
                return
            }
            result = check.run(bundleDirectory: bundle)
        } else {
            let store = SlotStore(root: root)
            try store.requireExisting()
            let state = try store.loadState()
            guard let target = try slot.map(parseSlot) ?? state.active else {
                throw HealthError(.noActiveSlot, "the slot store at \(root) holds no model")
            }
            let reference = state.fallback.flatMap {
                target == state.trial?.slot ? HealthMetrics.numbers(state[$0].metrics) : nil
            }
            result = check.run(
                bundleDirectory: store.bundlePath(target), store: store, slot: target,
                reference: reference?.isEmpty == false ? reference : nil)
            // A corrupt serving slot must not keep serving: fall back to an intact good slot.
            if let integrity = result.checks.first(where: { $0.name == "integrity" && !$0.passed }),
                target == state.active, let fallback = state.fallback, state[fallback].state == .good,
                (try? store.checkIntegrity(fallback, level: .deep)) != nil
            {
                rollback = try store.rollback(reason: "integrity: \(integrity.detail)")
            }
        }
        if output.json {
            var object = result.jsonObject
            if let rollback { object["rollback"] = rollbackObject(rollback) }
            print(JSONLine.encode(object))
        } else {
            for check in result.checks {
                print("\(check.passed ? "ok  " : "FAIL") \(check.name): \(check.detail)")
            }
            if let m = result.metrics {
                print(
                    String(
                        format:
                            "routing %.1f%%  adapter %.1f%%  OOD AUROC %.3f  FPR %.1f%%  latency p50 %.1f ms p95 %.1f ms  errors %.2f%%  peak RSS %.0f MB",
                        m.cropRoutingAccuracy * 100, m.adapterAccuracy * 100, m.oodAuroc, m.oodFpr * 100, m.latencyMs,
                        m.latencyP95Ms, m.errorRate * 100, m.peakRssMb))
            }
            for line in result.failures where !result.checks.contains(where: { !$0.passed && line.hasPrefix($0.name) })
            { print("FAIL \(line)") }
            for line in result.warnings { print("warn \(line)") }
            if let rollback {
                print(
                    "rolled back \(rollback.from) → \(rollback.to) (\(rollback.toVersion ?? "?")): \(rollback.reason)")
            }
            print(result.passed ? "health: pass" : "health: fail")
        }
        if !result.passed { throw Exit.failure }
    }

    func parseSlot(_ text: String) throws -> SlotID {
        guard let slot = SlotID(rawValue: text) else {
            throw SlotError(.badArgument, "--slot must be a or b, got \(text)")
        }
        return slot
    }
}

/// Writes measured figures into a bundle's manifest (before signing).
enum BaselineWriter {
    static func write(_ metrics: HealthMetrics, bundleDirectory: String) throws {
        let path = bundleDirectory + "/manifest.json"
        guard let data = FileManager.default.contents(atPath: path),
            var object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw HealthError(.badManifest, "cannot read \(path)") }
        let d = metrics.dictionary
        object["baseline_metrics"] = [
            "crop_routing_accuracy": d["crop_routing_accuracy"], "adapter_accuracy": d["adapter_accuracy"],
            "ood_auroc": d["ood_auroc"], "ood_fpr": d["ood_fpr"], "latency_ms": d["latency_ms"],
            "memory_per_adapter_mb": d["memory_per_adapter_mb"],
        ].compactMapValues { $0.map { JSONLine.rounded($0, 4) } }
        let out = try JSONSerialization.data(
            withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try AtomicFile.write(out + Data("\n".utf8), to: path)
    }
}

/// Where the installed configuration lives.
enum ConfigPaths {
    /// The named policy file (which must exist), else `health.json` from $AADS_CONFIG_DIR,
    /// /etc/aads-edge, firmware-config next to the executable or ./firmware-config; the built-in
    /// thresholds only as a last resort, stated on standard error (or through `warn`).
    static func healthPolicy(named path: String?, warn: (String) -> Void = { printError("warning: \($0)") })
        throws -> HealthPolicy
    {
        try HealthPolicy.resolve(path: path, warn: warn)
    }
}
