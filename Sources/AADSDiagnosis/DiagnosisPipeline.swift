import AADSCore
import AADSImage
import AADSInference
import Foundation

/// Options for running a bundle.
public struct PipelineOptions: Sendable {
    public var threads: Int
    /// How many crop adapters stay loaded at once (least recently used ones are evicted).
    public var maxResidentAdapters: Int
    public var allowDamaged: Bool
    public var limits: DecodeLimits
    /// Rounding of the backbone's near-half int8 results.
    public var rounding: Rounding

    public init(
        threads: Int = 1, maxResidentAdapters: Int = 3, allowDamaged: Bool = false,
        limits: DecodeLimits = DecodeLimits(), rounding: Rounding = EngineOptions().rounding
    ) {
        self.threads = threads
        self.rounding = rounding
        self.maxResidentAdapters = max(1, maxResidentAdapters)
        self.allowDamaged = allowDamaged
        self.limits = limits
    }
}

/// One crop adapter, loaded: its heads, OOD statistics and (with LoRA) its copy of the adapted layers.
struct LoadedAdapter {
    let classes: [String]
    let projection: LinearLayer
    let classifier: LinearLayer
    let ood: MahalanobisOOD
    /// The backbone with LoRA-merged weights, sharing every unaffected layer with the base model.
    let model: InferenceModel?
    /// Where the adapter pass starts: the input of the first adapted layer.
    let startTensor: String?
    /// Resident bytes this adapter adds: merged layers plus its (mapped) head file.
    let bytes: Int
}

/// A JPEG decoded and preprocessed into a pipeline's input ahead of its model, or the error that stopped it.
public struct PreparedImage: @unchecked Sendable {
    public let path: String
    let tensor: Result<Tensor, any Error>
    let decodeMs: Double
}

/// Decodes JPEGs into a pipeline's input on a thread other than the pipeline's (`DiagnosisPipeline.makeDecoder`),
/// so that the next image is decoded while the current one runs through the model. One thread at a time.
public final class ImageDecoder: @unchecked Sendable {
    private let preprocessor: ImagePreprocessor

    init(options: PreprocessOptions) { preprocessor = ImagePreprocessor(options: options) }

    public func prepare(path: String) -> PreparedImage {
        var clock = Stopwatch()
        do {
            let image = try preprocessor.process(path: path)
            return PreparedImage(path: path, tensor: .success(image.tensor), decodeMs: clock.lap())
        } catch {
            return PreparedImage(path: path, tensor: .failure(error), decodeMs: clock.lap())
        }
    }
}

/// JPEG → tensor → backbone features → router → crop adapter → Mahalanobis OOD → `Diagnosis`.
///
/// An instance is used from one thread at a time (it reuses its decode and activation buffers).
public final class DiagnosisPipeline {
    public let manifest: BundleManifest
    public let bundleDirectory: String
    public let options: PipelineOptions
    private let preprocessor: ImagePreprocessor
    private let backbone: InferenceModel
    private let router: LinearLayer
    private let rule: ThresholdRule
    private let startTensors: [String: String]
    /// `manifest.backbone.taps`: tensors whose channel means extend the features.
    private let taps: [String]
    private var resident: [String: LoadedAdapter] = [:]
    /// The backbone's input, refilled for each image rather than allocated anew.
    private var input: Tensor
    private var recency: [String] = []

    /// Loads a bundle directory: manifest, backbone and router. Adapters load on first use.
    public init(bundleDirectory: String, options: PipelineOptions = PipelineOptions()) throws {
        let manifest = try BundleManifest.load(bundleDirectory: bundleDirectory)
        self.manifest = manifest
        self.bundleDirectory = bundleDirectory
        self.options = options
        let prep = manifest.preprocessing
        guard let policy = ResizePolicy(rawValue: prep.policy) else {
            throw DiagnosisError.badManifest("unknown preprocessing.policy \(prep.policy)")
        }
        preprocessor = ImagePreprocessor(
            options: PreprocessOptions(
                size: prep.size, policy: policy, mean: prep.mean, std: prep.std, allowDamaged: options.allowDamaged,
                limits: options.limits,
                decodeThreads: min(max(options.threads, 1), PreprocessOptions.maxDecodeThreads)))
        input = Tensor(shape: preprocessor.tensorShape, data: [Float](repeating: 0, count: preprocessor.tensorCount))
        backbone = try InferenceModel(
            path: Self.file(bundleDirectory, manifest.backbone.file),
            options: EngineOptions(threads: options.threads, rounding: options.rounding))
        guard backbone.inputs.contains(where: { $0.name == manifest.backbone.input }) else {
            throw DiagnosisError.shapeMismatch("backbone has no input \(manifest.backbone.input)")
        }
        guard let featureInfo = backbone.outputs.first(where: { $0.name == manifest.backbone.features }) else {
            throw DiagnosisError.shapeMismatch("backbone has no output \(manifest.backbone.features)")
        }
        let taps = manifest.backbone.taps ?? []
        var featureCount = featureInfo.shape.reduce(1, *)
        for tap in taps {
            guard let shape = backbone.shape(ofTensor: tap), shape.count == 4, shape[0] == 1 else {
                throw DiagnosisError.shapeMismatch("backbone has no [1, C, H, W] tensor \(tap) to tap")
            }
            featureCount += shape[1]
        }
        self.taps = taps
        rule = ThresholdRule(
            thresholdFactor: manifest.ood.thresholdFactor, minValSamplesPerClass: manifest.ood.minValSamplesPerClass,
            fallbackThreshold: manifest.ood.fallbackThreshold)
        var starts: [String: String] = [:]
        for (crop, adapter) in manifest.adapters {
            guard let first = adapter.lora?.targets.first else { continue }
            guard let start = backbone.inputTensorName(ofNode: first) else {
                throw DiagnosisError(.unknownLayer, "adapter \(crop): backbone has no Conv/Gemm node named \(first)")
            }
            let model = backbone
            if let tap = taps.first(where: { model.tensor($0, dependsOn: start) }) {
                throw DiagnosisError.badManifest("adapter \(crop) changes layers that tap \(tap) depends on")
            }
            starts[crop] = start
        }
        startTensors = starts
        router = try LinearLayer(
            file: SafeTensorsFile(path: Self.file(bundleDirectory, manifest.router.head)), inputs: featureCount,
            outputs: manifest.router.crops.count)
    }

    private static func file(_ directory: String, _ relative: String) throws -> String {
        let path = directory + "/" + relative
        guard FileManager.default.fileExists(atPath: path) else { throw DiagnosisError.missingFile(relative) }
        return path
    }

    /// Bytes each resident adapter adds, by crop.
    public var residentAdapterBytes: [String: Int] { resident.mapValues(\.bytes) }

    /// Loads (or returns the resident) adapter for a crop, evicting the least recently used beyond the bound.
    func adapter(for crop: String) throws -> LoadedAdapter {
        if let loaded = resident[crop] {
            recency.removeAll { $0 == crop }
            recency.append(crop)
            return loaded
        }
        guard let spec = manifest.adapters[crop] else {
            throw DiagnosisError(.unknownCrop, "no adapter for crop \(crop)")
        }
        let head = try SafeTensorsFile(path: Self.file(bundleDirectory, spec.head))
        let featureCount = router.inputs
        let projection = try LinearLayer(file: head, prefix: "proj.", inputs: featureCount)
        let classifier = try LinearLayer(
            file: head, prefix: "cls.", inputs: projection.outputs, outputs: spec.classes.count)
        let ood = try MahalanobisOOD(file: head, classes: spec.classes.count, dimension: projection.outputs, rule: rule)
        var model: InferenceModel?
        var extra = 0
        if let lora = spec.lora {
            let file = try SafeTensorsFile(path: Self.file(bundleDirectory, lora.file))
            let deltas = try LoRAMerge.deltas(file: file, targets: lora.targets, rank: lora.rank, alpha: lora.alpha)
            let adapted = try backbone.adapted(weightDeltas: deltas)
            extra = adapted.extraWeightBytes
            model = adapted
        }
        let loaded = LoadedAdapter(
            classes: spec.classes, projection: projection, classifier: classifier, ood: ood, model: model,
            startTensor: startTensors[crop], bytes: extra + head.mappedBytes)
        resident[crop] = loaded
        recency.append(crop)
        while recency.count > options.maxResidentAdapters {
            resident[recency.removeFirst()] = nil
        }
        return loaded
    }

    /// Diagnoses one JPEG file. Never throws: failures come back as an `error` decision.
    public func diagnose(path: String) -> Diagnosis {
        diagnose(file: path, threads: options.threads) {
            var clock = Stopwatch()
            _ = try input.data.withUnsafeMutableBufferPointer { try preprocessor.process(path: path, into: $0) }
            return (input, clock.lap())
        }
    }

    /// `decode` (the tensor and its time), then the model on `threads` threads, as one result: whatever fails
    /// becomes an `error` decision.
    private func diagnose(file: String, threads: Int, _ decode: () throws -> (tensor: Tensor, ms: Double))
        -> Diagnosis
    {
        do {
            let (tensor, decodeMs) = try decode()
            var result = Diagnosis(file: file, decision: .diagnosis, modelVersion: manifest.modelVersion)
            result.latency.decode = decodeMs
            try classify(tensor, into: &result, threads: threads)
            result.latency.total = result.latency.decode + result.latency.backbone + result.latency.adapter
            return result
        } catch {
            return .failure(file: file, modelVersion: manifest.modelVersion, error: error)
        }
    }

    /// A decoder for `diagnose(_:)`, with this pipeline's preprocessing and one decode thread.
    public func makeDecoder() -> ImageDecoder {
        var options = preprocessor.options
        options.decodeThreads = 1
        return ImageDecoder(options: options)
    }

    /// Diagnoses an image prepared by a decoder of `makeDecoder`: the same result as `diagnose(path:)`. The decoder
    /// is taken to be busy with the next image meanwhile, so the model runs on one thread fewer (at least one).
    public func diagnose(_ image: PreparedImage) -> Diagnosis {
        diagnose(file: image.path, threads: max(1, options.threads - 1)) { (try image.tensor.get(), image.decodeMs) }
    }

    /// Diagnoses `paths` in order, handing each result to `each`. With two or more threads one of them decodes the
    /// next image while the others run the current one through the model.
    public func diagnose(paths: [String], _ each: (Diagnosis) -> Void) {
        guard options.threads > 1, paths.count > 1 else {
            for path in paths { each(diagnose(path: path)) }
            return
        }
        let decoder = makeDecoder()
        let decoding = DispatchQueue(label: "aads.decode")
        var next = Pending(on: decoding) { decoder.prepare(path: paths[0]) }
        for i in paths.indices {
            let image = next.wait()
            if i + 1 < paths.count {
                let path = paths[i + 1]
                next = Pending(on: decoding) { decoder.prepare(path: path) }
            }
            each(diagnose(image))
        }
    }

    /// Runs the model part of the pipeline on a preprocessed [1,3,S,S] tensor, on `threads` threads (at most
    /// `options.threads`; all of them by default).
    public func classify(_ tensor: Tensor, into result: inout Diagnosis, threads: Int? = nil) throws {
        var clock = Stopwatch()
        backbone.threads = threads ?? options.threads
        let wanted = [manifest.backbone.features] + Array(Set(startTensors.values).union(taps))
        let outputs = try backbone.run([manifest.backbone.input: tensor], outputs: wanted)
        guard let pooled = outputs[manifest.backbone.features]?.data else {
            throw DiagnosisError.shapeMismatch("backbone produced no \(manifest.backbone.features)")
        }
        let tapped = try channelMeans(of: taps, in: outputs)
        let features = pooled + tapped
        let crops = manifest.router.crops
        let cropProbabilities = softmax(try router.apply(features))
        let ranked = topIndices(cropProbabilities, 3)
        let best = ranked[0]
        result.crop = crops[best]
        result.cropConfidence = Double(cropProbabilities[best])
        result.latency.backbone = clock.lap()
        if cropProbabilities[best] < manifest.router.confidenceThreshold {
            result.decision = .unknownCrop
            result.top3 = ranked.map { ScoredLabel(label: crops[$0], confidence: Double(cropProbabilities[$0])) }
            return
        }

        let adapter = try adapter(for: crops[best])
        var adapterFeatures = features
        if let model = adapter.model, let start = adapter.startTensor, let intermediate = outputs[start] {
            model.threads = threads ?? options.threads
            let rerun = try model.run(from: start, value: intermediate, outputs: [manifest.backbone.features])
            guard let adapted = rerun[manifest.backbone.features]?.data else {
                throw DiagnosisError.shapeMismatch("adapter pass produced no \(manifest.backbone.features)")
            }
            adapterFeatures = adapted + tapped
        }
        let z = try adapter.projection.apply(adapterFeatures)
        let probabilities = softmax(try adapter.classifier.apply(z))
        let top = topIndices(probabilities, 3)
        let predicted = top[0]
        result.disease = adapter.classes[predicted]
        result.confidence = Double(probabilities[predicted])
        result.top3 = top.map { ScoredLabel(label: adapter.classes[$0], confidence: Double(probabilities[$0])) }
        let distance = adapter.ood.squaredDistance(z, toClass: predicted)
        result.mahalanobis = Double(distance)
        result.threshold = Double(adapter.ood.thresholds[predicted])
        result.decision = distance > adapter.ood.thresholds[predicted] ? .ood : .diagnosis
        result.latency.adapter = clock.lap()
    }

    /// Per-channel spatial means of [1, C, H, W] tensors, concatenated (each summed in Double, then rounded).
    private func channelMeans(of names: [String], in outputs: [String: Tensor]) throws -> [Float] {
        var means: [Float] = []
        for name in names {
            guard let t = outputs[name], t.shape.count == 4 else {
                throw DiagnosisError.shapeMismatch("backbone produced no [1, C, H, W] \(name)")
            }
            let plane = t.shape[2] * t.shape[3]
            for c in 0..<t.shape[1] {
                var sum = 0.0
                for v in t.data[(c * plane)..<((c + 1) * plane)] { sum += Double(v) }
                means.append(Float(sum / Double(plane)))
            }
        }
        return means
    }
}

/// A value computed on a queue while the caller does something else, waited for once.
public final class Pending<Value: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var value: Value?

    /// Starts `work` on `queue`.
    public init(on queue: DispatchQueue, _ work: @escaping @Sendable () -> Value) {
        queue.async {
            self.value = work()
            self.done.signal()
        }
    }

    /// Blocks until the value is there.
    public func wait() -> Value {
        done.wait()
        return value.unsafelyUnwrapped
    }
}
