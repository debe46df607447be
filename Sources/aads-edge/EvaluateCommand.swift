import AADSCore
import AADSDiagnosis
import AADSHealth
import AADSSlots
import ArgumentParser
import Foundation

struct EvaluateCommand: AADSCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Measure a bundle on labelled photo folders: accuracy, rejections, per-class figures, OOD AUROC.",
        discussion: """
            Each ROOT holds photos laid out <crop>/<class>/*.jpg (or .jpeg). A photo of a crop and class the \
            bundle knows must be diagnosed as that crop and class; a photo in a folder whose crop is not in \
            the router, or whose class is not in that crop's adapter, is a leaf the bundle cannot know and \
            must be rejected (counted apart, as unknown_crop_rejected). Every photo at any depth under an \
            --ood DIR must be rejected. Rejected means decision ood or unknown_crop. Undecodable photos are \
            counted as errors and left out of every other figure; other files are skipped.

            Figures: accuracy (known-class photos diagnosed as their own crop and class, over all of them), \
            accepted accuracy (the same over the accepted ones), rejection rate (known-class photos \
            rejected), crop-routing accuracy (the router picked the right crop above its confidence \
            threshold), adapter accuracy (of those, the class is right, rejected or not: the health gate's \
            figure), per-class precision (over every photo diagnosed as the class, OOD and unknown-crop \
            photos included) and recall, the confusion matrix (rows: true crop/class, then unknown labels, \
            then ood; columns: every class the bundle knows, then rejected), OOD rejection rate and the \
            AUROC of known-class leaves against OOD photos, latency p50/p95 per photo. The AUROC score of \
            a photo is d²/T (squared Mahalanobis distance over its class threshold) when the router \
            accepted it and +infinity when the router rejected it (unknown_crop); ties count half. The \
            health gate scores its golden set with the same code.

            --json prints one object: bundle, model_version, images, skipped_files; in_distribution \
            {images, accepted, correct, rejected, accuracy, accepted_accuracy, rejection_rate, \
            crop_routing_accuracy, adapter_accuracy}; unknown_crop_rejected {images, rejected, rate, \
            labels}; ood {images, rejected, rejection_rate, auroc}; latency_ms {p50, p95}; classes [{class, \
            support, predicted, correct, precision, recall}]; confusion {rows, columns, matrix}; errors \
            {count, files [{file, code, message}]}. A ratio with nothing to count is null.

            Exit status: 0 evaluated (errors included), 2 could not run (usage, a missing folder, a folder \
            without photos, an unreadable bundle).
            """)

    @Argument(help: "Folders of labelled photos laid out <crop>/<class>/*.jpg.")
    var roots: [String] = []

    @Option(help: "A bundle directory.")
    var bundle: String?

    @Option(help: "A slot store root: use its active slot.")
    var slots: String?

    @Option(name: .customLong("ood"), help: "A folder of photos (any depth) that must all be rejected; repeatable.")
    var oodDirectories: [String] = []

    @Option(help: "Worker threads for the backbone.")
    var threads = 1

    @OptionGroup var int8: RoundingOption

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard !roots.isEmpty else { throw ValidationError("give at least one folder of labelled photos") }
        guard (bundle == nil) != (slots == nil) else {
            throw ValidationError("give exactly one of --bundle or --slots")
        }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be within 1...64") }
    }

    static let errorPolicy = ErrorPolicy.always(.couldNotRun)

    func body() throws {
        let directory = try bundleDirectory(bundle: bundle, slots: slots)
        let pipeline = try DiagnosisPipeline(
            bundleDirectory: directory, options: PipelineOptions(threads: threads, rounding: int8.rounding))
        let photos = try Evaluation.collect(
            roots: roots, oodDirectories: oodDirectories, known: Evaluation.knownClasses(pipeline.manifest))
        let result = Evaluation.run(pipeline: pipeline, items: photos.items)
        if output.json {
            var object = result.jsonObject
            object["bundle"] = pipeline.bundleDirectory
            object["model_version"] = pipeline.manifest.modelVersion
            object["skipped_files"] = photos.skipped
            print(JSONLine.encode(object))
        } else {
            print(EvaluationTable.render(result, bundle: pipeline.bundleDirectory, pipeline.manifest, photos.skipped))
        }
    }
}

/// The readable form of `evaluate` without `--json`.
enum EvaluationTable {
    static func percent(_ value: Double?) -> String {
        value.map { String(format: "%.1f %%", $0 * 100) } ?? "-"
    }

    static func render(_ r: EvaluationResult, bundle: String, _ manifest: AADSDiagnosis.BundleManifest, _ skipped: Int)
        -> String
    {
        var lines: [String] = []
        lines.append("bundle \(bundle)  model_version \(manifest.modelVersion)")
        lines.append(
            "photos \(r.images): \(r.known) known-class leaves, \(r.unknownCrop) unknown-crop leaves, \(r.ood) OOD, "
                + "\(r.errors.count) errors" + (skipped > 0 ? "; \(skipped) other files skipped" : ""))
        lines.append("")
        func row(_ name: String, _ value: String, _ detail: String = "") -> String {
            DiagnosisTable.pad(name, 26) + DiagnosisTable.pad(value, 10) + detail
        }
        lines.append(row("accuracy", percent(r.accuracy), "\(r.correct) of \(r.known) diagnosed as their class"))
        lines.append(row("accepted accuracy", percent(r.acceptedAccuracy), "\(r.acceptedCorrect) of \(r.accepted)"))
        lines.append(row("rejection rate", percent(r.rejectionRate), "\(r.rejected) of \(r.known) rejected"))
        lines.append(row("crop routing accuracy", percent(r.cropRoutingAccuracy), "\(r.routed) of \(r.known)"))
        lines.append(row("adapter accuracy", percent(r.adapterAccuracy), "\(r.routedCorrectClass) of \(r.routed)"))
        lines.append(
            row(
                "unknown_crop_rejected", percent(r.unknownCropRejectionRate),
                "\(r.unknownCropRejected) of \(r.unknownCrop)"))
        lines.append(row("OOD rejection rate", percent(r.oodRejectionRate), "\(r.oodRejected) of \(r.ood)"))
        lines.append(row("OOD AUROC", r.oodAUROC.map { String(format: "%.3f", $0) } ?? "-"))
        lines.append(row("latency p50", String(format: "%.1f ms", r.latencyP50Ms), "per photo"))
        lines.append(row("latency p95", String(format: "%.1f ms", r.latencyP95Ms)))
        lines.append("")
        lines.append(
            DiagnosisTable.pad(" #", 4) + DiagnosisTable.pad("class", 34) + "support  predicted  precision  recall")
        for (i, c) in r.classes.enumerated() {
            lines.append(
                DiagnosisTable.pad(String(format: "%2d", i + 1), 4) + DiagnosisTable.pad(c.name, 34)
                    + String(format: "%7d  %9d  ", c.support, c.predicted)
                    + String(repeating: " ", count: max(0, 9 - percent(c.precision).count)) + percent(c.precision)
                    + "  " + String(repeating: " ", count: max(0, 7 - percent(c.recall).count)) + percent(c.recall))
        }
        lines.append("")
        lines.append("confusion matrix (rows: true label; columns: predicted class # above, rej = rejected)")
        let width = max(4, String(r.matrix.flatMap { $0 }.max() ?? 0).count + 1)
        func cell(_ text: String) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
        let labelWidth = max(12, (r.rows.map(\.count).max() ?? 0) + 2)
        lines.append(
            DiagnosisTable.pad("", labelWidth)
                + r.columns.indices.map { cell($0 == r.columns.count - 1 ? "rej" : String($0 + 1)) }.joined())
        for (name, counts) in zip(r.rows, r.matrix) {
            lines.append(DiagnosisTable.pad(name, labelWidth) + counts.map { cell(String($0)) }.joined())
        }
        if !r.errors.isEmpty {
            lines.append("")
            for e in r.errors { lines.append("error \(e.path): \(e.code): \(e.message)") }
        }
        return lines.joined(separator: "\n")
    }
}
