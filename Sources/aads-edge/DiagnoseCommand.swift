import AADSCore
import AADSDiagnosis
import AADSSlots
import ArgumentParser
import Foundation

struct DiagnoseCommand: AADSCommand {
    static let configuration = CommandConfiguration(
        commandName: "diagnose",
        abstract: "Diagnose leaf photos with a model bundle: crop, disease, confidence, or a rejection.",
        discussion: """
            Each image gets a decision: diagnosis, unknown_crop (the router is not confident), ood (the \
            adapter's Mahalanobis distance is above its class threshold) or error. A bad image does not \
            stop the batch. Exit status: 0 every image processed, 1 some image failed, 2 the bundle could \
            not be loaded.
            """)

    @Argument(help: "JPEG files.")
    var images: [String]

    @Option(help: "A bundle directory.")
    var bundle: String?

    @Option(help: "A slot store root: use its active slot.")
    var slots: String?

    @Option(help: "Worker threads for the backbone; with two or more, the next image is also decoded meanwhile.")
    var threads = 1

    @OptionGroup var int8: RoundingOption

    @Flag(help: "Diagnose images whose scan is damaged instead of refusing them.")
    var allowDamaged = false

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (bundle == nil) != (slots == nil) else {
            throw ValidationError("give exactly one of --bundle or --slots")
        }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be within 1...64") }
    }

    /// Image failures are rows of the output (exit 1 at the end); what throws is the bundle not loading.
    static let errorPolicy = ErrorPolicy.always(.couldNotRun)

    func body() throws {
        let directory = try bundleDirectory(bundle: bundle, slots: slots)
        let pipeline = try DiagnosisPipeline(
            bundleDirectory: directory,
            options: PipelineOptions(threads: threads, allowDamaged: allowDamaged, rounding: int8.rounding))
        var failed = false
        if !output.json {
            print(DiagnosisTable.header)
        }
        pipeline.diagnose(paths: images) { result in
            if result.decision == .error { failed = true }
            print(output.json ? JSONLine.encode(result.jsonObject) : DiagnosisTable.row(result))
        }
        if failed { throw Exit.failure }
    }
}

/// The readable table of `diagnose` without `--json`.
enum DiagnosisTable {
    static let header =
        pad("file", 28) + pad("decision", 13) + pad("crop", 8) + pad("conf", 6) + pad("disease", 22)
        + pad("conf", 6) + pad("d²/T", 12) + "ms"

    static func row(_ d: Diagnosis) -> String {
        let name = (d.file as NSString).lastPathComponent
        if let error = d.error {
            return pad(name, 28) + pad("error", 13) + "\(error.code): \(error.message)"
        }
        let ratio = d.mahalanobis.map { m in d.threshold.map { String(format: "%.1f/%.1f", m, $0) } ?? "" } ?? "-"
        return pad(name, 28) + pad(d.decision.rawValue, 13) + pad(d.crop ?? "-", 8)
            + pad(d.cropConfidence.map { String(format: "%.2f", $0) } ?? "-", 6)
            + pad(d.decision == .unknownCrop ? "-" : (d.disease ?? "-"), 22)
            + pad(d.decision == .unknownCrop ? "-" : (d.confidence.map { String(format: "%.2f", $0) } ?? "-"), 6)
            + pad(ratio, 12) + String(format: "%.1f", d.latency.total)
    }

    static func pad(_ text: String, _ width: Int) -> String {
        let clipped = text.count >= width ? String(text.prefix(width - 1)) : text
        return clipped + String(repeating: " ", count: width - clipped.count)
    }
}

/// The bundle directory a command runs: `--bundle` as given, or the active slot of the `--slots` store.
func bundleDirectory(bundle: String?, slots: String?) throws -> String {
    if let bundle { return bundle }
    guard let active = try SlotStore(root: slots ?? SlotStore.defaultRoot).activeBundlePath() else {
        throw SlotError(.noActiveSlot, "the slot store at \(slots ?? "") holds no model")
    }
    return active
}
