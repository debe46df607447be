import AADSCore
import AADSImage
import AADSInference
import AADSTestSupport
import Foundation
import Testing

@testable import AADSDiagnosis

let factoryBundle = Fixtures.factoryBundle

/// A scratch copy of the factory bundle that a test may damage.
struct BundleCopy {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("aads-bundle-\(UUID())").path
        try FileManager.default.copyItem(atPath: factoryBundle, toPath: path)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func editManifest(_ edit: (inout [String: Any]) -> Void) throws {
        let url = URL(fileURLWithPath: path + "/manifest.json")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: url)
    }

    func golden(_ crop: String, _ label: String) throws -> String {
        let dir = path + "/golden/\(crop)/\(label)"
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).sorted().first)
        return dir + "/" + name
    }
}

/// Writes a float32 safetensors file (the format's reference layout: u64 header length, JSON, data).
func writeSafetensors(_ tensors: [String: (shape: [Int], values: [Float])], to path: String) throws {
    var header: [String: Any] = [:]
    var payload = Data()
    for (name, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
        let start = payload.count
        tensor.values.withUnsafeBytes { payload.append(contentsOf: $0) }
        header[name] = ["dtype": "F32", "shape": tensor.shape, "data_offsets": [start, payload.count]]
    }
    var json = try JSONSerialization.data(withJSONObject: header)
    while (8 + json.count) % 8 != 0 { json.append(0x20) }
    var data = Data()
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
    data.append(json)
    data.append(payload)
    try data.write(to: URL(fileURLWithPath: path))
}

func code(of body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as any CodedError {
        return error.code
    } catch {
        return "unexpected: \(error)"
    }
}

@Suite(.serialized) struct PipelineTests {
    @Test func diagnosesGoldenLeavesAndRejectsAPhotoOfAnotherThing() throws {
        let copy = try BundleCopy()
        defer { copy.remove() }
        let pipeline = try DiagnosisPipeline(bundleDirectory: copy.path)
        let leaf = pipeline.diagnose(path: try copy.golden("corn", "common_rust"))
        #expect(leaf.decision == .diagnosis)
        #expect(leaf.crop == "corn")
        #expect(leaf.disease == "common_rust")
        #expect(leaf.top3.count == 3)
        #expect((leaf.mahalanobis ?? .infinity) <= (leaf.threshold ?? 0))
        // `diagnose --json` uses the same keys as the results journal's export.
        let top = try #require((leaf.jsonObject["top3"] as? [[String: Any]])?.first)
        #expect(Set(top.keys) == ["label", "confidence"])
        let photo = pipeline.diagnose(path: copy.path + "/golden/ood/skimage-astronaut.jpg")
        #expect(photo.decision == .ood || photo.decision == .unknownCrop)
    }

    @Test func oneImageAfterAnotherGivesWhatAFreshPipelineGives() throws {
        let images = [
            factoryBundle + "/golden/tomato/early_blight", factoryBundle + "/golden/corn/healthy",
        ].map { dir in dir + "/" + ((try? FileManager.default.contentsOfDirectory(atPath: dir).sorted().first) ?? "") }
        let damaged = Fixtures.path("images/shared/corrupt/truncated_90pct.jpg")
        let sequence = [images[0], damaged, images[1], factoryBundle + "/golden/ood/skimage-coffee.jpg", images[0]]
        let pipeline = try DiagnosisPipeline(bundleDirectory: factoryBundle)
        for path in sequence {
            let got = pipeline.diagnose(path: path)
            let fresh = try DiagnosisPipeline(bundleDirectory: factoryBundle).diagnose(path: path)
            #expect(got.decision == fresh.decision && got.crop == fresh.crop && got.disease == fresh.disease, "\(path)")
            #expect(got.cropConfidence == fresh.cropConfidence && got.confidence == fresh.confidence, "\(path)")
            #expect(got.mahalanobis == fresh.mahalanobis && got.error?.code == fresh.error?.code, "\(path)")
        }
        #expect(pipeline.diagnose(path: damaged).decision == .error)
    }

    @Test func routerBelowItsConfidenceThresholdSaysUnknownCrop() throws {
        let copy = try BundleCopy()
        defer { copy.remove() }
        try copy.editManifest { object in
            var router = object["router"] as! [String: Any]
            router["confidence_threshold"] = 1.0
            object["router"] = router
        }
        // A photo whose crop probability is below 1 in float32 (a confident router can round to exactly 1).
        let shipped = try DiagnosisPipeline(bundleDirectory: factoryBundle)
        let crops = ["tomato", "pepper", "corn", "potato", "apple"]
        let candidates = try crops.flatMap { crop in
            try FileManager.default.contentsOfDirectory(atPath: copy.path + "/golden/\(crop)").sorted().map {
                try copy.golden(crop, $0)
            }
        }
        let photo = try #require(candidates.first { (shipped.diagnose(path: $0).cropConfidence ?? 1) < 1 })
        let pipeline = try DiagnosisPipeline(bundleDirectory: copy.path)
        let result = pipeline.diagnose(path: photo)
        #expect(result.decision == .unknownCrop)
        #expect(result.top3.count == 3)
        #expect(Set(result.top3.map(\.label)).isSubset(of: pipeline.manifest.router.crops))
        #expect(result.disease == nil)
    }

    @Test func adapterPassFromTheSharedPrefixEqualsAFullRerun() throws {
        let copy = try BundleCopy()
        defer { copy.remove() }
        let pipeline = try DiagnosisPipeline(bundleDirectory: copy.path)
        let manifest = pipeline.manifest
        let lora = try #require(manifest.adapters["tomato"]?.lora)
        let adapter = try pipeline.adapter(for: "tomato")
        let adapted = try #require(adapter.model)
        let start = try #require(adapter.startTensor)
        let base = try InferenceModel(path: copy.path + "/" + manifest.backbone.file)
        let image = try ImageInput.tensor(copy.golden("tomato", "early_blight"), manifest)
        let prefix = try base.run([manifest.backbone.input: image], outputs: [start, manifest.backbone.features])
        let resumed = try adapted.run(
            from: start, value: try #require(prefix[start]), outputs: [manifest.backbone.features])
        let full = try adapted.run([manifest.backbone.input: image], outputs: [manifest.backbone.features])
        #expect(resumed[manifest.backbone.features] == full[manifest.backbone.features])
        // The LoRA deltas change what the adapter sees.
        let baseFeatures = try #require(prefix[manifest.backbone.features]).data
        let adaptedFeatures = try #require(full[manifest.backbone.features]).data
        let changed = zip(baseFeatures, adaptedFeatures).filter { $0 != $1 }.count
        #expect(changed > baseFeatures.count / 10)
        #expect(lora.targets == ["conv_head"])
        #expect(adapter.bytes < 2 << 20)
    }

    /// With two threads `diagnose(paths:)` decodes each next image while the model runs: the same decisions, in
    /// the same order, as diagnosing each file alone; a missing file is an error row in its place.
    @Test func decodingAheadGivesTheSameResultsInOrder() throws {
        let copy = try BundleCopy()
        defer { copy.remove() }
        let paths = [
            try copy.golden("tomato", "early_blight"), try copy.golden("corn", "common_rust"), copy.path + "/none.jpg",
            try copy.golden("pepper", "healthy"), try copy.golden("potato", "late_blight"),
        ]
        let alone = try DiagnosisPipeline(bundleDirectory: copy.path)
        let ahead = try DiagnosisPipeline(bundleDirectory: copy.path, options: PipelineOptions(threads: 2))
        var results: [Diagnosis] = []
        ahead.diagnose(paths: paths) { results.append($0) }
        #expect(results.map(\.file) == paths)
        for (path, got) in zip(paths, results) {
            let expected = alone.diagnose(path: path)
            #expect(got.decision == expected.decision, "\(path)")
            #expect(got.disease == expected.disease, "\(path)")
            #expect(got.mahalanobis == expected.mahalanobis, "\(path)")
            #expect(got.error?.code == expected.error?.code, "\(path)")
        }
        #expect(results[2].decision == .error)
    }

    @Test func adaptersAreBoundedLeastRecentlyUsed() throws {
        let copy = try BundleCopy()
        defer { copy.remove() }
        let pipeline = try DiagnosisPipeline(
            bundleDirectory: copy.path, options: PipelineOptions(maxResidentAdapters: 2))
        _ = try pipeline.adapter(for: "tomato")
        _ = try pipeline.adapter(for: "pepper")
        _ = try pipeline.adapter(for: "tomato")
        _ = try pipeline.adapter(for: "corn")
        #expect(Set(pipeline.residentAdapterBytes.keys) == ["tomato", "corn"])
    }

    @Test func brokenBundlesGiveTypedErrors() throws {
        let copy = try BundleCopy()
        defer { copy.remove() }
        // A missing adapter file is found when that crop is first needed; the image gets an error decision.
        try FileManager.default.removeItem(atPath: copy.path + "/adapters/corn.safetensors")
        let pipeline = try DiagnosisPipeline(bundleDirectory: copy.path)
        let result = pipeline.diagnose(path: try copy.golden("corn", "healthy"))
        #expect(result.decision == .error)
        #expect(result.error?.code == "missing_file")
        // A router head of the wrong shape is refused at load.
        try writeSafetensors(
            ["weight": ([2, 1280], [Float](repeating: 0, count: 2560)), "bias": ([2], [0, 0])],
            to: copy.path + "/router.safetensors")
        #expect(code { _ = try DiagnosisPipeline(bundleDirectory: copy.path) } == "shape_mismatch")
        try FileManager.default.removeItem(atPath: copy.path + "/router.safetensors")
        #expect(code { _ = try DiagnosisPipeline(bundleDirectory: copy.path) } == "missing_file")
        // A LoRA target that is not a layer of the backbone.
        let other = try BundleCopy()
        defer { other.remove() }
        try other.editManifest { object in
            var adapters = object["adapters"] as! [String: Any]
            var tomato = adapters["tomato"] as! [String: Any]
            var lora = tomato["lora"] as! [String: Any]
            lora["targets"] = ["no_such_layer"]
            tomato["lora"] = lora
            adapters["tomato"] = tomato
            object["adapters"] = adapters
        }
        #expect(code { _ = try DiagnosisPipeline(bundleDirectory: other.path) } == "unknown_layer")
        try Data("{\"schema_version\": 1,".utf8).write(to: URL(fileURLWithPath: other.path + "/manifest.json"))
        #expect(code { _ = try DiagnosisPipeline(bundleDirectory: other.path) } == "bad_manifest")
    }
}

enum ImageInput {
    static func tensor(_ path: String, _ manifest: BundleManifest) throws -> Tensor {
        let prep = manifest.preprocessing
        let preprocessor = ImagePreprocessor(
            options: PreprocessOptions(
                size: prep.size, policy: ResizePolicy(rawValue: prep.policy)!, mean: prep.mean, std: prep.std))
        return try preprocessor.process(path: path).tensor
    }
}
