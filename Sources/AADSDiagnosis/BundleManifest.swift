import AADSCore
import Foundation

/// `manifest.json` of a model bundle (schema version 1). See firmware-config/factory-bundle/README.md.
public struct BundleManifest: Codable, Sendable {
    public struct Preprocessing: Codable, Sendable {
        public var size: Int
        public var policy: String
        public var mean: [Float]
        public var std: [Float]
    }

    public struct Backbone: Codable, Sendable {
        public var file: String
        public var input: String
        public var features: String
        /// Tensors of the backbone (each [1, C, H, W]) whose per-channel spatial means are appended to `features`,
        /// in this order, for the router and every adapter: mid-level texture that the last layer pools away.
        /// Each must be computed before every adapter's first LoRA target.
        public var taps: [String]?
    }

    public struct Router: Codable, Sendable {
        public var crops: [String]
        public var head: String
        public var confidenceThreshold: Float
    }

    public struct LoRA: Codable, Sendable {
        public var file: String
        public var rank: Int
        public var alpha: Float
        /// Names of the backbone's Conv/Gemm nodes whose weights the adapter changes.
        public var targets: [String]
    }

    public struct Adapter: Codable, Sendable {
        public var classes: [String]
        public var head: String
        public var lora: LoRA?
    }

    public struct OOD: Codable, Sendable {
        public var method: String
        public var thresholdFactor: Float
        public var minValSamplesPerClass: Int
        public var fallbackThreshold: Float
    }

    public struct GoldenSet: Codable, Sendable {
        public var labels: String
    }

    public struct FileEntry: Codable, Sendable {
        public var path: String
        public var sha256: String
        public var size: Int
    }

    public var schemaVersion: Int
    public var modelVersion: String
    public var created: String?
    public var description: String?
    /// What changed since the previous version (signed with the rest of the manifest).
    public var changelog: String?
    public var preprocessing: Preprocessing
    public var backbone: Backbone
    public var router: Router
    public var adapters: [String: Adapter]
    public var ood: OOD
    public var goldenSet: GoldenSet?
    public var baselineMetrics: [String: Double]?
    public var files: [FileEntry]

    /// Parses and checks a manifest: supported schema, every referenced file listed, every crop with an
    /// adapter, sane preprocessing and OOD parameters.
    public static func load(bundleDirectory: String) throws -> BundleManifest {
        let path = bundleDirectory + "/manifest.json"
        guard let data = FileManager.default.contents(atPath: path) else { throw DiagnosisError.missingFile(path) }
        return try parse(data)
    }

    public static func parse(_ data: Data) throws -> BundleManifest {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let manifest: BundleManifest
        do {
            manifest = try decoder.decode(BundleManifest.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw DiagnosisError.badManifest("missing key \(keyPath(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw DiagnosisError.badManifest("\(keyPath(context.codingPath)): \(context.debugDescription)")
        } catch let DecodingError.dataCorrupted(context) {
            throw DiagnosisError.badManifest(
                context.codingPath.isEmpty
                    ? "not valid JSON" : "\(keyPath(context.codingPath)): \(context.debugDescription)")
        } catch {
            throw DiagnosisError.badManifest("unreadable manifest: \(error)")
        }
        try manifest.validate()
        return manifest
    }

    private static func keyPath(_ path: [any CodingKey]) -> String {
        path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    func validate() throws {
        guard schemaVersion == 1 else {
            throw DiagnosisError(.unsupportedBundle, "schema_version \(schemaVersion) is not supported (expected 1)")
        }
        guard (16...1024).contains(preprocessing.size) else {
            throw DiagnosisError.badManifest("preprocessing.size out of range")
        }
        guard preprocessing.mean.count == 3, preprocessing.std.count == 3, preprocessing.std.allSatisfy({ $0 > 0 })
        else {
            throw DiagnosisError.badManifest("preprocessing.mean and std need 3 values, std > 0")
        }
        guard ["center-crop", "stretch"].contains(preprocessing.policy) else {
            throw DiagnosisError.badManifest("preprocessing.policy must be center-crop or stretch")
        }
        guard !router.crops.isEmpty, Set(router.crops).count == router.crops.count else {
            throw DiagnosisError.badManifest("router.crops must be a non-empty list of distinct names")
        }
        guard (0...1).contains(router.confidenceThreshold) else {
            throw DiagnosisError.badManifest("router.confidence_threshold must be within 0...1")
        }
        for crop in router.crops where adapters[crop] == nil {
            throw DiagnosisError(.unknownCrop, "router crop \(crop) has no adapter")
        }
        for crop in adapters.keys where !router.crops.contains(crop) {
            throw DiagnosisError(.unknownCrop, "adapter \(crop) is not a router crop")
        }
        guard ood.method == "dynamic_mahalanobis" else {
            throw DiagnosisError(.unsupportedBundle, "ood.method \(ood.method) is not supported")
        }
        guard ood.thresholdFactor >= 0, ood.minValSamplesPerClass >= 1, ood.fallbackThreshold > 0 else {
            throw DiagnosisError.badManifest("ood parameters out of range")
        }
        let listed = Set(files.map(\.path))
        var referenced = [backbone.file, router.head]
        for (crop, adapter) in adapters.sorted(by: { $0.key < $1.key }) {
            guard !adapter.classes.isEmpty else {
                throw DiagnosisError.badManifest("adapters.\(crop).classes is empty")
            }
            referenced.append(adapter.head)
            if let lora = adapter.lora {
                guard lora.rank > 0, !lora.targets.isEmpty else {
                    throw DiagnosisError.badManifest("adapters.\(crop).lora needs rank > 0 and targets")
                }
                referenced.append(lora.file)
            }
        }
        if let golden = goldenSet { referenced.append(golden.labels) }
        for file in referenced where !listed.contains(file) {
            throw DiagnosisError.badManifest("\(file) is referenced but not listed in files")
        }
    }
}
