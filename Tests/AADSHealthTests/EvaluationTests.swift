import AADSCore
import AADSDiagnosis
import AADSTestSupport
import Foundation
import Testing

@testable import AADSHealth

/// A temporary directory removed by `cleanup()`.
struct Scratch {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("aads-eval-\(UUID().uuidString)").path

    init() { try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }

    /// Copies `source` to `relative` (creating folders), returning the new path.
    @discardableResult
    func copy(_ source: String, to relative: String) throws -> String {
        let target = path + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: source, toPath: target)
        return target
    }

    @discardableResult
    func write(_ text: String, to relative: String) throws -> String {
        let target = path + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: target))
        return target
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Builds a diagnosis as the pipeline would report it.
func diagnosis(
    _ decision: Decision, crop: String? = nil, disease: String? = nil, d2: Float? = nil, t: Float? = nil,
    ms: Double = 0
) -> Diagnosis {
    var d = Diagnosis(file: "x.jpg", decision: decision, modelVersion: "1.0.0")
    if decision == .error {
        d.error = AnyCodedError(code: "corrupt_jpeg", message: "damaged")
        return d
    }
    d.crop = crop
    d.cropConfidence = decision == .unknownCrop ? 0.5 : 0.9
    if decision != .unknownCrop {
        d.disease = disease
        d.mahalanobis = d2.map(Double.init)
        d.threshold = t.map(Double.init)
    }
    d.latency.total = ms
    return d
}

@Suite struct EvaluationScoringTests {
    /// Ten photos worked out by hand (see each line); every figure below follows from them.
    func handWorked() -> EvaluationResult {
        let leaf = { (c: String, l: String) in ExpectedOutcome.leaf(crop: c, label: l) }
        let cases: [(ExpectedOutcome, Diagnosis)] = [
            (leaf("a", "x"), diagnosis(.diagnosis, crop: "a", disease: "x", d2: 1, t: 2, ms: 1)),  // right, score 0.5
            // Wrong class, score 0.75.
            (leaf("a", "x"), diagnosis(.diagnosis, crop: "a", disease: "y", d2: 1.5, t: 2, ms: 2)),
            (leaf("a", "y"), diagnosis(.ood, crop: "a", disease: "y", d2: 3, t: 2, ms: 3)),  // rejected, 1.5
            (leaf("b", "z"), diagnosis(.unknownCrop, crop: "b", ms: 4)),  // rejected by the router, +inf
            (leaf("a", "x"), diagnosis(.error)),  // undecodable
            (.unknownLeaf(crop: "c", label: "w"), diagnosis(.diagnosis, crop: "b", disease: "z", d2: 0.2, t: 1, ms: 6)),
            (.unknownLeaf(crop: "a", label: "q"), diagnosis(.ood, crop: "a", disease: "x", d2: 5, t: 1, ms: 7)),
            (.ood, diagnosis(.diagnosis, crop: "a", disease: "x", d2: 0.6, t: 1, ms: 8)),  // accepted, 0.6
            (.ood, diagnosis(.unknownCrop, crop: "a", ms: 9)),  // +inf
            (.ood, diagnosis(.ood, crop: "a", disease: "x", d2: 4, t: 2, ms: 10)),  // 2.0
        ]
        let items = cases.enumerated().map { EvaluationItem(path: "p\($0.offset).jpg", expected: $0.element.0) }
        return EvaluationScoring.score(items: items, diagnoses: cases.map(\.1), classes: ["a/x", "a/y", "b/z"])
    }

    @Test func countsAndRatesFollowTheDefinitions() {
        let r = handWorked()
        #expect(r.images == 10)
        #expect(r.errors == [.init(path: "p4.jpg", code: "corrupt_jpeg", message: "damaged")])
        #expect((r.known, r.accepted, r.correct, r.acceptedCorrect, r.rejected) == (4, 2, 1, 1, 2))
        #expect(r.accuracy == 0.25 && r.acceptedAccuracy == 0.5 && r.rejectionRate == 0.5)
        #expect(r.routed == 3 && r.routedCorrectClass == 2)
        #expect(r.cropRoutingAccuracy == 0.75 && r.adapterAccuracy == 2.0 / 3)
        #expect(r.unknownCrop == 2 && r.unknownCropRejected == 1 && r.unknownCropRejectionRate == 0.5)
        #expect(r.ood == 3 && r.oodRejected == 2 && r.oodRejectionRate == 2.0 / 3)
        // Known scores 0.5, 0.75, 1.5, inf; OOD scores 0.6, inf, 2.0: 1 + 3.5 + 3 of 12 pairs.
        #expect(r.oodAUROC == 7.5 / 12)
        // Latencies of the nine decoded photos: 1 2 3 4 6 7 8 9 10.
        #expect(r.latencyP50Ms == 6)
        #expect(abs(r.latencyP95Ms - 9.6) < 1e-9)
    }

    @Test func confusionMatrixAndPerClassFigures() {
        let r = handWorked()
        #expect(r.rows == ["a/x", "a/y", "b/z", "a/q", "c/w", "ood"])
        #expect(r.columns == ["a/x", "a/y", "b/z", "rejected"])
        #expect(
            r.matrix == [
                [1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 1, 0], [1, 0, 0, 2],
            ])
        #expect(r.classes.map(\.name) == ["a/x", "a/y", "b/z"])
        #expect(r.classes.map(\.support) == [2, 1, 1])
        #expect(r.classes.map(\.predicted) == [2, 1, 1])
        #expect(r.classes.map(\.correct) == [1, 0, 0])
        #expect(r.classes[0].precision == 0.5 && r.classes[0].recall == 0.5)
        #expect(r.classes[1].precision == 0 && r.classes[2].recall == 0)
    }

    @Test func jsonUsesTheDocumentedKeys() throws {
        let object = handWorked().jsonObject
        #expect(
            Set(object.keys) == [
                "images", "in_distribution", "unknown_crop_rejected", "ood", "latency_ms", "classes", "confusion",
                "errors",
            ])
        let inDistribution = try #require(object["in_distribution"] as? [String: Any])
        #expect(inDistribution["accuracy"] as? Double == 0.25)
        #expect(inDistribution["adapter_accuracy"] as? Double == 0.6667)
        let unknown = try #require(object["unknown_crop_rejected"] as? [String: Any])
        #expect(unknown["labels"] as? [String] == ["a/q", "c/w"])
        #expect(unknown["rate"] as? Double == 0.5)
        let ood = try #require(object["ood"] as? [String: Any])
        #expect(ood["auroc"] as? Double == 0.625)
        let errors = try #require(object["errors"] as? [String: Any])
        #expect(errors["count"] as? Int == 1)
        // Nothing to count gives null, not 0.
        let empty = EvaluationScoring.score(items: [], diagnoses: [], classes: ["a/x"]).jsonObject
        #expect((empty["in_distribution"] as? [String: Any])?["accuracy"] is NSNull)
        #expect((empty["ood"] as? [String: Any])?["auroc"] is NSNull)
    }

    /// The health gate's figures are the evaluation's: same routing, adapter, AUROC and false-positive rate.
    @Test func goldenScoringIsTheEvaluationsHealthProjection() {
        let items = [
            GoldenItem(path: "1.jpg", crop: "a", label: "x"), GoldenItem(path: "2.jpg", crop: "a", label: "x"),
            GoldenItem(path: "3.jpg", crop: "ood", label: "ood"), GoldenItem(path: "4.jpg", crop: "ood", label: "ood"),
        ]
        let diagnoses = [
            diagnosis(.diagnosis, crop: "a", disease: "x", d2: 1, t: 2, ms: 5),
            diagnosis(.ood, crop: "a", disease: "x", d2: 3, t: 2, ms: 7),
            diagnosis(.unknownCrop, crop: "a", ms: 9),
            diagnosis(.diagnosis, crop: "a", disease: "x", d2: 1.2, t: 2, ms: 11),
        ]
        let m = GoldenScoring.score(items: items, diagnoses: diagnoses)
        #expect(m.cropRoutingAccuracy == 1 && m.adapterAccuracy == 1 && m.oodFpr == 0.5)
        // Known 0.5, 1.5; OOD inf, 0.6: inf beats both, 0.6 beats 0.5.
        #expect(m.oodAuroc == 0.75)
        #expect(m.images == 4 && m.errorRate == 0 && m.latencyMs == 8)
        #expect(EvaluationScoring.oodScore(diagnoses[2]) == .infinity)
        #expect(EvaluationScoring.oodScore(diagnosis(.error)) == nil)
    }
}

/// Photos of the factory bundle's golden set, found rather than named (the set is rebuilt from time to time):
/// the first photo of each of the first `classes` classes the bundle knows that have a folder, in the
/// bundle's class order, and the first `ood` photos of `golden/ood`.
struct GoldenPhotos {
    let manifest: BundleManifest
    var leaves: [(crop: String, label: String, path: String)] = []
    var ood: [String] = []

    init(classes: Int, ood oodCount: Int) throws {
        manifest = try BundleManifest.load(bundleDirectory: Fixtures.factoryBundle)
        let golden = Fixtures.factoryBundle + "/golden"
        func photos(_ dir: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter {
                $0.lowercased().hasSuffix(".jpg")
            }.sorted().map { dir + "/" + $0 }
        }
        for name in EvaluationScoring.classNames(manifest) where leaves.count < classes {
            let parts = name.split(separator: "/").map(String.init)
            if let first = photos(golden + "/" + name).first { leaves.append((parts[0], parts[1], first)) }
        }
        ood = Array(photos(golden + "/ood").prefix(oodCount))
        try #require(leaves.count == classes && ood.count == oodCount, "the golden set has too few photos")
    }
}

@Suite struct EvaluationFolderTests {
    @Test func collectsCropClassFoldersAndOODTrees() throws {
        let s = Scratch()
        defer { s.cleanup() }
        try s.write("x", to: "root/tomato/healthy/1.jpg")
        try s.write("x", to: "root/tomato/healthy/2.JPEG")
        try s.write("x", to: "root/tomato/healthy/notes.txt")
        try s.write("x", to: "root/tomato/mildew/1.jpg")
        try s.write("x", to: "root/cabbage/rot/1.jpg")
        try s.write("x", to: "root/labels.csv")
        try s.write("x", to: "root/tomato/stray.jpg")
        try s.write("x", to: "ood/a.jpg")
        try s.write("x", to: "ood/deep/er/b.jpg")
        try s.write("x", to: "ood/LICENSES.md")
        let set = try Evaluation.collect(
            roots: [s.path + "/root"], oodDirectories: [s.path + "/ood"], known: ["tomato": ["healthy", "blight"]])
        let got = set.items.map { ($0.path.dropFirst(s.path.count + 1), $0.expected.name) }
        #expect(
            got.map(\.0) == [
                "root/cabbage/rot/1.jpg", "root/tomato/healthy/1.jpg", "root/tomato/healthy/2.JPEG",
                "root/tomato/mildew/1.jpg", "ood/a.jpg", "ood/deep/er/b.jpg",
            ])
        #expect(set.items[0].expected == .unknownLeaf(crop: "cabbage", label: "rot"))
        #expect(set.items[1].expected == .leaf(crop: "tomato", label: "healthy"))
        #expect(set.items[3].expected == .unknownLeaf(crop: "tomato", label: "mildew"))
        #expect(set.items[5].expected == .ood)
        #expect(set.skipped == 4)

        // An OOD folder inside a root is read once, as OOD.
        try s.write("x", to: "root/ood/more/c.jpg")
        let nested = try Evaluation.collect(
            roots: [s.path + "/root"], oodDirectories: [s.path + "/root/ood"], known: ["tomato": ["healthy"]])
        #expect(nested.items.filter { $0.path.hasSuffix("/c.jpg") }.map(\.expected) == [.ood])
        #expect(nested.items.count == 5)
    }

    @Test func missingAndEmptyFoldersAreTypedErrors() throws {
        let s = Scratch()
        defer { s.cleanup() }
        try s.write("x", to: "root/tomato/healthy/1.jpg")
        try FileManager.default.createDirectory(
            atPath: s.path + "/empty/tomato/healthy", withIntermediateDirectories: true)
        func code(_ body: () throws -> Any) -> String? {
            do { _ = try body() } catch { return AnyCodedError(error).code }
            return nil
        }
        #expect(code { try Evaluation.collect(roots: [s.path + "/nope"], known: [:]) } == "not_found")
        #expect(code { try Evaluation.collect(roots: [s.path + "/empty"], known: [:]) } == "no_images")
        #expect(
            code { try Evaluation.collect(roots: [s.path + "/root"], oodDirectories: [s.path + "/empty"], known: [:]) }
                == "no_images")
        #expect(code { try Evaluation.collect(roots: [s.path + "/root"], known: [:]) } == nil)
    }

    /// End to end on factory golden photos: the evaluation agrees with photo-by-photo diagnoses.
    @Test func agreesWithDiagnoseOnTheSamePhotos() throws {
        let s = Scratch()
        defer { s.cleanup() }
        let golden = try GoldenPhotos(classes: 5, ood: 2)
        for leaf in golden.leaves.prefix(4) { try s.copy(leaf.path, to: "root/\(leaf.crop)/\(leaf.label)/a.jpg") }
        // A leaf filed under a crop the bundle does not know.
        try s.copy(golden.leaves[4].path, to: "root/cabbage/black_rot/a.jpg")
        try s.copy(golden.ood[0], to: "ood/a.jpg")
        try s.copy(golden.ood[1], to: "ood/more/b.jpg")
        try s.write("not a jpeg", to: "root/\(golden.leaves[0].crop)/\(golden.leaves[0].label)/broken.jpg")
        let pipeline = try DiagnosisPipeline(bundleDirectory: Fixtures.factoryBundle)
        let set = try Evaluation.collect(
            roots: [s.path + "/root"], oodDirectories: [s.path + "/ood"],
            known: Evaluation.knownClasses(pipeline.manifest))
        #expect(set.items.count == 8)
        let result = Evaluation.run(pipeline: pipeline, items: set.items)

        // The same photos through diagnose, one by one, counted here.
        var known = 0
        var correct = 0
        var rejected = 0
        var unknownRejected = 0
        var oodRejected = 0
        var errors = 0
        for item in set.items {
            let d = pipeline.diagnose(path: item.path)
            let accepted = d.decision == .diagnosis
            switch (d.decision, item.expected) {
            case (.error, _): errors += 1
            case (_, .leaf(let crop, let label)):
                known += 1
                if accepted && d.crop == crop && d.disease == label { correct += 1 }
                if !accepted { rejected += 1 }
            case (_, .unknownLeaf): if !accepted { unknownRejected += 1 }
            case (_, .ood): if !accepted { oodRejected += 1 }
            }
        }
        #expect(errors == 1 && result.errors.count == 1 && result.errors[0].code == "not_jpeg")
        #expect(known == 4 && result.known == 4)
        #expect(result.correct == correct && result.rejected == rejected)
        #expect(result.unknownCrop == 1 && result.unknownCropRejected == unknownRejected)
        #expect(result.ood == 2 && result.oodRejected == oodRejected)
        #expect(result.matrix.flatMap { $0 }.reduce(0, +) == 7)
        #expect(result.columns.count == EvaluationScoring.classNames(pipeline.manifest).count + 1)
        #expect(result.latencyP50Ms > 0 && result.latencyP95Ms >= result.latencyP50Ms)
    }
}
