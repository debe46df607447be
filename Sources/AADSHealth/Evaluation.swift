import AADSCore
import AADSDiagnosis
import Foundation

/// What a labelled photo must come out as.
public enum ExpectedOutcome: Sendable, Equatable {
    /// A leaf of a crop and class the bundle knows: it must be diagnosed as that crop and class.
    case leaf(crop: String, label: String)
    /// A leaf of a crop (or a class) the bundle does not know: it must be rejected.
    case unknownLeaf(crop: String, label: String)
    /// Anything else (not a leaf of a crop at all): it must be rejected.
    case ood

    /// `crop/class`, or `ood`.
    public var name: String {
        switch self {
        case .leaf(let crop, let label), .unknownLeaf(let crop, let label): return crop + "/" + label
        case .ood: return "ood"
        }
    }
}

/// One photo to score and what it must come out as.
public struct EvaluationItem: Sendable, Equatable {
    public var path: String
    public var expected: ExpectedOutcome

    public init(path: String, expected: ExpectedOutcome) {
        self.path = path
        self.expected = expected
    }
}

/// Every figure of one evaluation, from the labelled photos and their diagnoses.
///
/// Definitions (undecodable photos are counted in `errors` and left out of everything else):
/// - `accuracy`: photos of known classes diagnosed (accepted) as their own crop and class, over all of them;
/// - `acceptedAccuracy`: the same over the known-class photos that were accepted;
/// - `rejectionRate`: known-class photos rejected (`ood` or `unknown_crop`), over all of them;
/// - `cropRoutingAccuracy`: known-class photos the router sent to their crop with confidence;
/// - `adapterAccuracy`: of those, the ones whose predicted class is right, rejected or not (the health gate's figure);
/// - `unknownCropRejectionRate`: leaves of crops or classes the bundle does not know that were rejected;
/// - `oodRejectionRate`: OOD photos rejected; `oodAUROC`: known-class leaves against OOD photos by
///   `EvaluationScoring.oodScore` (unknown-crop leaves take no part);
/// - latency percentiles over every decoded photo.
public struct EvaluationResult: Sendable {
    public struct ClassFigures: Sendable, Equatable {
        public var name: String
        /// Known-class photos of this class (decoded).
        public var support: Int
        /// Photos of any kind diagnosed as this class.
        public var predicted: Int
        /// Photos of this class diagnosed as this class.
        public var correct: Int
        public var precision: Double? { predicted == 0 ? nil : Double(correct) / Double(predicted) }
        public var recall: Double? { support == 0 ? nil : Double(correct) / Double(support) }
    }

    public struct ErrorFile: Sendable, Equatable {
        public var path: String
        public var code: String
        public var message: String
    }

    public var images = 0
    public var errors: [ErrorFile] = []
    public var known = 0
    public var accepted = 0
    public var correct = 0
    public var acceptedCorrect = 0
    public var rejected = 0
    public var routed = 0
    public var routedCorrectClass = 0
    public var unknownCrop = 0
    public var unknownCropRejected = 0
    public var ood = 0
    public var oodRejected = 0
    public var oodAUROC: Double?
    public var latencyP50Ms = 0.0
    public var latencyP95Ms = 0.0
    /// Every class the bundle knows (`crop/class`, router order then adapter order), with its figures.
    public var classes: [ClassFigures] = []
    /// Confusion matrix: `rows` are the true labels present (known classes, then unknown ones, then `ood`),
    /// `columns` every class the bundle knows then `rejected`; `matrix[row][column]` counts decoded photos.
    public var rows: [String] = []
    public var columns: [String] = []
    public var matrix: [[Int]] = []

    static func ratio(_ part: Int, _ whole: Int) -> Double? { whole == 0 ? nil : Double(part) / Double(whole) }

    public var accuracy: Double? { Self.ratio(correct, known) }
    public var acceptedAccuracy: Double? { Self.ratio(acceptedCorrect, accepted) }
    public var rejectionRate: Double? { Self.ratio(rejected, known) }
    public var cropRoutingAccuracy: Double? { Self.ratio(routed, known) }
    public var adapterAccuracy: Double? { Self.ratio(routedCorrectClass, routed) }
    public var unknownCropRejectionRate: Double? { Self.ratio(unknownCropRejected, unknownCrop) }
    public var oodRejectionRate: Double? { Self.ratio(oodRejected, ood) }
    public var errorRate: Double { images == 0 ? 0 : Double(errors.count) / Double(images) }

    /// The health gate's figures (`baseline_metrics` keys); undefined ratios count as 0.
    public var healthMetrics: HealthMetrics {
        HealthMetrics(
            cropRoutingAccuracy: cropRoutingAccuracy ?? 0, adapterAccuracy: adapterAccuracy ?? 0,
            oodAuroc: oodAUROC ?? 0, oodFpr: rejectionRate ?? 0, latencyMs: latencyP50Ms,
            latencyP95Ms: latencyP95Ms, errorRate: errorRate, images: images)
    }
}

/// Scores diagnoses of labelled photos: the one code path behind `aads-edge evaluate` and the health gate.
public enum EvaluationScoring {
    /// The continuous "not a known leaf" score used for the OOD AUROC: for a photo the router accepted,
    /// the squared Mahalanobis distance over its class threshold (`d²/T`, above 1 means rejected as `ood`);
    /// for a photo the router rejected (`unknown_crop`), +∞, the most OOD-like score there is (such photos
    /// tie among themselves, and ties count half). Errors have no score.
    public static func oodScore(_ diagnosis: Diagnosis) -> Double? {
        switch diagnosis.decision {
        case .unknownCrop:
            return .infinity
        case .diagnosis, .ood:
            guard let distance = diagnosis.mahalanobis, let threshold = diagnosis.threshold, threshold > 0 else {
                return .infinity
            }
            // The pipeline's figures are Floats widened to Double: the ratio stays the Float one.
            return Double(Float(distance) / Float(threshold))
        case .error:
            return nil
        }
    }

    /// `crop/class` of every class a bundle knows, router crop order then adapter class order.
    public static func classNames(_ manifest: BundleManifest) -> [String] {
        manifest.router.crops.flatMap { crop in (manifest.adapters[crop]?.classes ?? []).map { crop + "/" + $0 } }
    }

    /// Scores `diagnoses[i]` of `items[i]`; `classes` are the bundle's `crop/class` names (the matrix columns).
    public static func score(items: [EvaluationItem], diagnoses: [Diagnosis], classes: [String]) -> EvaluationResult {
        var result = EvaluationResult()
        result.images = items.count
        var columns = classes
        var columnIndex: [String: Int] = [:]
        for (i, name) in columns.enumerated() { columnIndex[name] = i }
        var counts: [String: [String: Int]] = [:]
        var scores: [Double] = []
        var positives: [Bool] = []
        var latencies: [Double] = []
        for (item, diagnosis) in zip(items, diagnoses) {
            guard diagnosis.decision != .error, let score = oodScore(diagnosis) else {
                let error = diagnosis.error ?? AnyCodedError(code: "internal", message: "no result")
                result.errors.append(.init(path: item.path, code: error.code, message: error.message))
                continue
            }
            latencies.append(diagnosis.latency.total)
            let accepted = diagnosis.decision == .diagnosis
            let predicted = accepted ? "\(diagnosis.crop ?? "")/\(diagnosis.disease ?? "")" : "rejected"
            if accepted && columnIndex[predicted] == nil {
                columnIndex[predicted] = columns.count
                columns.append(predicted)
            }
            counts[item.expected.name, default: [:]][predicted, default: 0] += 1
            switch item.expected {
            case .leaf(let crop, let label):
                result.known += 1
                scores.append(score)
                positives.append(false)
                if accepted {
                    result.accepted += 1
                    if predicted == item.expected.name {
                        result.correct += 1
                        result.acceptedCorrect += 1
                    }
                } else {
                    result.rejected += 1
                }
                if diagnosis.decision != .unknownCrop && diagnosis.crop == crop {
                    result.routed += 1
                    if diagnosis.disease == label { result.routedCorrectClass += 1 }
                }
            case .unknownLeaf:
                result.unknownCrop += 1
                if !accepted { result.unknownCropRejected += 1 }
            case .ood:
                result.ood += 1
                scores.append(score)
                positives.append(true)
                if !accepted { result.oodRejected += 1 }
            }
        }
        result.oodAUROC = RankStatistics.auroc(scores: scores, positives: positives)
        result.latencyP50Ms = RankStatistics.quantile(latencies, 0.5)
        result.latencyP95Ms = RankStatistics.quantile(latencies, 0.95)

        // Rows: known classes in column order, then unknown labels sorted, then `ood`.
        var seen = Set<String>()
        var known: [String] = []
        var unknown: [String] = []
        var hasOOD = false
        for item in items where seen.insert(item.expected.name).inserted {
            switch item.expected {
            case .leaf: known.append(item.expected.name)
            case .unknownLeaf: unknown.append(item.expected.name)
            case .ood: hasOOD = true
            }
        }
        known.sort { (columnIndex[$0] ?? Int.max, $0) < (columnIndex[$1] ?? Int.max, $1) }
        result.rows = known + unknown.sorted() + (hasOOD ? ["ood"] : [])
        result.columns = columns + ["rejected"]
        result.matrix = result.rows.map { row in result.columns.map { counts[row]?[$0] ?? 0 } }
        result.classes = columns.enumerated().map { (j, name) in
            EvaluationResult.ClassFigures(
                name: name, support: counts[name]?.values.reduce(0, +) ?? 0,
                predicted: result.matrix.reduce(0) { $0 + $1[j] }, correct: counts[name]?[name] ?? 0)
        }
        return result
    }
}

/// Gathers labelled photos from folders and runs them through a pipeline.
public enum Evaluation {
    /// File name endings counted as photos (case-insensitive); other files are skipped.
    public static let photoExtensions: Set<String> = ["jpg", "jpeg"]

    /// Labelled photos found under the roots and OOD folders.
    public struct PhotoSet: Sendable {
        public var items: [EvaluationItem] = []
        /// Files that are not photos, or photos not at `<crop>/<class>/` depth under a root.
        public var skipped = 0
    }

    static func isPhoto(_ name: String) -> Bool {
        !name.hasPrefix(".") && photoExtensions.contains((name as NSString).pathExtension.lowercased())
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    static func canonical(_ path: String) -> String {
        (URL(fileURLWithPath: path).standardizedFileURL.path as NSString).resolvingSymlinksInPath
    }

    static func sortedNames(_ directory: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: directory).filter { !$0.hasPrefix(".") }
                .sorted()
        } catch {
            throw HealthError(.unreadable, "cannot read folder \(directory)")
        }
    }

    /// Photos under each root laid out `<crop>/<class>/*.jpg`, and every photo at any depth under each OOD
    /// folder. A `crop/class` the bundle does not know (`known[crop]` lacks it) must be rejected.
    /// Throws `not_found` for a missing folder and `no_images` for a folder without photos.
    public static func collect(roots: [String], oodDirectories: [String] = [], known: [String: [String]]) throws
        -> PhotoSet
    {
        var set = PhotoSet()
        // A folder given with --ood inside a root is read as OOD only, not also as `<crop>/<class>`.
        let oodPaths = oodDirectories.map { canonical($0) }
        func isOOD(_ path: String) -> Bool {
            let path = canonical(path)
            return oodPaths.contains { path == $0 || path.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }
        }
        for root in roots {
            guard isDirectory(root) else { throw HealthError(.notFound, "no such folder: \(root)") }
            var found = 0
            for crop in try sortedNames(root) {
                let cropDir = root + "/" + crop
                if isOOD(cropDir) { continue }
                guard isDirectory(cropDir) else {
                    set.skipped += 1
                    continue
                }
                for label in try sortedNames(cropDir) {
                    let classDir = cropDir + "/" + label
                    if isOOD(classDir) { continue }
                    guard isDirectory(classDir) else {
                        set.skipped += 1
                        continue
                    }
                    let expected: ExpectedOutcome =
                        known[crop]?.contains(label) == true
                        ? .leaf(crop: crop, label: label) : .unknownLeaf(crop: crop, label: label)
                    for name in try sortedNames(classDir) {
                        let path = classDir + "/" + name
                        if isPhoto(name) && !isDirectory(path) {
                            set.items.append(EvaluationItem(path: path, expected: expected))
                            found += 1
                        } else {
                            set.skipped += 1
                        }
                    }
                }
            }
            guard found > 0 else {
                throw HealthError(.noImages, "no photos under \(root) (expected <crop>/<class>/*.jpg)")
            }
        }
        for directory in oodDirectories {
            guard isDirectory(directory) else { throw HealthError(.notFound, "no such folder: \(directory)") }
            var found = 0
            var visited = Set<String>()
            func walk(_ dir: String) throws {
                // A folder reached twice through links is read once.
                guard visited.insert((dir as NSString).resolvingSymlinksInPath).inserted else { return }
                for name in try sortedNames(dir) {
                    let path = dir + "/" + name
                    if isDirectory(path) {
                        try walk(path)
                    } else if isPhoto(name) {
                        set.items.append(EvaluationItem(path: path, expected: .ood))
                        found += 1
                    } else {
                        set.skipped += 1
                    }
                }
            }
            try walk(directory)
            guard found > 0 else { throw HealthError(.noImages, "no photos under \(directory)") }
        }
        return set
    }

    /// The crops and classes a bundle knows.
    public static func knownClasses(_ manifest: BundleManifest) -> [String: [String]] {
        manifest.adapters.mapValues(\.classes)
    }

    /// Diagnoses every photo in order, after one unscored warm-up run so first-use allocations do not
    /// count as latency.
    public static func diagnose(_ items: [EvaluationItem], pipeline: DiagnosisPipeline) -> [Diagnosis] {
        guard let first = items.first else { return [] }
        _ = pipeline.diagnose(path: first.path)
        return items.map { pipeline.diagnose(path: $0.path) }
    }

    /// Collects, diagnoses and scores.
    public static func run(pipeline: DiagnosisPipeline, items: [EvaluationItem]) -> EvaluationResult {
        EvaluationScoring.score(
            items: items, diagnoses: diagnose(items, pipeline: pipeline),
            classes: EvaluationScoring.classNames(pipeline.manifest))
    }
}

extension EvaluationResult {
    /// The `evaluate --json` figures (see `aads-edge evaluate --help` for the keys); undefined ratios are null.
    public var jsonObject: [String: Any] {
        func value(_ x: Double?) -> Any { x.map { JSONLine.rounded($0, 4) } ?? NSNull() }
        let unknownLabels = rows.filter { row in row != "ood" && !columns.contains(row) }
        return [
            "images": images,
            "in_distribution": [
                "images": known, "accepted": accepted, "correct": correct, "rejected": rejected,
                "accuracy": value(accuracy), "accepted_accuracy": value(acceptedAccuracy),
                "rejection_rate": value(rejectionRate), "crop_routing_accuracy": value(cropRoutingAccuracy),
                "adapter_accuracy": value(adapterAccuracy),
            ] as [String: Any],
            "unknown_crop_rejected": [
                "images": unknownCrop, "rejected": unknownCropRejected, "rate": value(unknownCropRejectionRate),
                "labels": unknownLabels,
            ] as [String: Any],
            "ood": [
                "images": ood, "rejected": oodRejected, "rejection_rate": value(oodRejectionRate),
                "auroc": value(oodAUROC),
            ] as [String: Any],
            "latency_ms": ["p50": JSONLine.rounded(latencyP50Ms), "p95": JSONLine.rounded(latencyP95Ms)],
            "classes": classes.map {
                [
                    "class": $0.name, "support": $0.support, "predicted": $0.predicted, "correct": $0.correct,
                    "precision": value($0.precision), "recall": value($0.recall),
                ] as [String: Any]
            },
            "confusion": ["rows": rows, "columns": columns, "matrix": matrix] as [String: Any],
            "errors": [
                "count": errors.count,
                "files": errors.map { ["file": $0.path, "code": $0.code, "message": $0.message] },
            ] as [String: Any],
        ]
    }
}
