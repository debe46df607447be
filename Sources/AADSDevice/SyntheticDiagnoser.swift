import AADSCore
import AADSDiagnosis
import Foundation

#if AADS_TEST_HOOKS
    /// A stand-in for the diagnosis pipeline, for tests and load runs of the service: decisions are derived from
    /// the image bytes' sha256, so they are deterministic and spread over every decision kind. Files starting
    /// with `CORRUPT` produce an `error` record. It never looks at pixels. Compiled into test builds only
    /// (`AADS_TEST_HOOKS`, debug): a release or device build cannot serve made-up diagnoses. It is a test hook of
    /// the service, not a test-only helper: the test build of `aads-edge run` serves it (`AADS_FAKE_DIAGNOSER`) to
    /// the process tests and tools/bench/service, and a package dependency cannot be limited to debug builds,
    /// so it lives here rather than in AADSTestSupport.
    public final class SyntheticDiagnoser: Diagnoser, @unchecked Sendable {
        public let modelVersion: String
        /// Real time spent per image (to make a crash land mid-image), milliseconds.
        public let delayMs: Double
        /// Added to every reported latency (to model a slower version).
        public let latencyOffsetMs: Double
        /// Fraction of images judged `ood` (and the same again `unknown_crop`).
        public let oodFraction: Double
        private let lock = NSLock()
        private var calls = 0

        public init(
            modelVersion: String = "0.0.0-synthetic", delayMs: Double = 0, latencyOffsetMs: Double = 0,
            oodFraction: Double = 0.05
        ) {
            self.modelVersion = modelVersion
            self.delayMs = delayMs
            self.latencyOffsetMs = latencyOffsetMs
            self.oodFraction = oodFraction
        }

        /// How many images were diagnosed.
        public var callCount: Int {
            lock.lock()
            defer { lock.unlock() }
            return calls
        }

        static let crops: [(String, [String])] = [
            ("tomato", ["healthy", "early_blight", "late_blight", "septoria_leaf_spot", "bacterial_spot"]),
            ("pepper", ["healthy", "bacterial_spot"]),
            ("corn", ["healthy", "common_rust", "northern_leaf_blight"]),
        ]

        public func diagnose(path: String) throws -> Diagnosis {
            lock.lock()
            calls += 1
            lock.unlock()
            if delayMs > 0 { usleep(UInt32(delayMs * 1000)) }
            let file = (path as NSString).lastPathComponent
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SpoolError(.unreadableImage, "cannot read \(path)")
            }
            if data.starts(with: Array("CORRUPT".utf8)) {
                return Diagnosis.failure(
                    file: file, modelVersion: modelVersion,
                    error: AnyCodedError(code: "corrupt_jpeg", message: "not a JPEG (synthetic)"),
                    totalMs: 1 + latencyOffsetMs)
            }
            let sha = try Spool.sha256(path: path)
            let u = ABSampler.unitValue(sha256Hex: sha)
            let v = ABSampler.unitValue(sha256Hex: String(sha.dropFirst(16)))
            let (crop, diseases) = Self.crops[Int(v * 3) % 3]
            let diseaseIndex = Int(u * 1000) % diseases.count
            let disease = diseases[diseaseIndex]
            let latency = StageLatency(
                decode: 4 + 2 * v, backbone: 18 + 6 * u, adapter: 5 + 2 * u, total: 27 + 10 * u + latencyOffsetMs)
            let confidence = 0.55 + 0.44 * v
            let top3 = [
                ScoredLabel(label: disease, confidence: confidence),
                ScoredLabel(
                    label: diseases[(diseaseIndex + 1) % diseases.count], confidence: (1 - confidence) * 0.7),
                ScoredLabel(label: "healthy", confidence: (1 - confidence) * 0.3),
            ]
            if u < oodFraction {
                return Diagnosis(
                    file: file, decision: .unknownCrop, crop: nil, cropConfidence: 0.3 + 0.2 * v, top3: top3,
                    modelVersion: modelVersion,
                    latency: StageLatency(
                        decode: latency.decode, backbone: latency.backbone, total: latency.total - latency.adapter))
            }
            if u < 2 * oodFraction {
                return Diagnosis(
                    file: file, decision: .ood, crop: crop, cropConfidence: 0.9, disease: disease,
                    confidence: confidence,
                    top3: top3, mahalanobis: 40 + 10 * v, threshold: 25, modelVersion: modelVersion, latency: latency)
            }
            return Diagnosis(
                file: file, decision: .diagnosis, crop: crop, cropConfidence: 0.9 + 0.09 * v, disease: disease,
                confidence: confidence, top3: top3, mahalanobis: 5 + 15 * v, threshold: 25, modelVersion: modelVersion,
                latency: latency)
        }
    }
#endif
