import AADSCore

/// The per-class rejection threshold rule of dynamic Mahalanobis OOD (AADS-ULoRA v5.5 values by default).
public struct ThresholdRule: Sendable, Equatable {
    public var thresholdFactor: Float
    public var minValSamplesPerClass: Int
    public var fallbackThreshold: Float

    public init(thresholdFactor: Float = 2.0, minValSamplesPerClass: Int = 10, fallbackThreshold: Float = 25.0) {
        self.thresholdFactor = thresholdFactor
        self.minValSamplesPerClass = minValSamplesPerClass
        self.fallbackThreshold = fallbackThreshold
    }

    /// T_c = mean_c + k·std_c of the validation distances to the predicted class c, when c had at least
    /// `minValSamplesPerClass` validation samples; otherwise the fallback threshold.
    public func threshold(validationMean: Float, validationStd: Float, validationCount: Int) -> Float {
        guard validationCount >= minValSamplesPerClass, validationMean.isFinite, validationStd.isFinite else {
            return fallbackThreshold
        }
        return validationMean + thresholdFactor * validationStd
    }
}

/// Squared Mahalanobis distance to class means under one shared precision matrix, with per-class thresholds.
public struct MahalanobisOOD: @unchecked Sendable {
    public let classes: Int
    public let dimension: Int
    public let thresholds: [Float]
    private let means: UnsafeBufferPointer<Float>
    private let precision: UnsafeBufferPointer<Float>
    private let storage: SafeTensorsFile

    /// Reads `ood.means` [C, P], `ood.precision` [P, P], `ood.val_mean`, `ood.val_std`, `ood.val_count` [C].
    public init(file: SafeTensorsFile, classes: Int, dimension: Int, rule: ThresholdRule) throws {
        (_, means) = try file.floats("ood.means", shape: [classes, dimension])
        (_, precision) = try file.floats("ood.precision", shape: [dimension, dimension])
        let (_, valMean) = try file.floats("ood.val_mean", shape: [classes])
        let (_, valStd) = try file.floats("ood.val_std", shape: [classes])
        let (_, valCount) = try file.floats("ood.val_count", shape: [classes])
        thresholds = (0..<classes).map {
            rule.threshold(validationMean: valMean[$0], validationStd: valStd[$0], validationCount: Int(valCount[$0]))
        }
        self.classes = classes
        self.dimension = dimension
        self.storage = file
    }

    /// (z − μ_c)ᵀ Σ⁻¹ (z − μ_c).
    public func squaredDistance(_ z: [Float], toClass c: Int) -> Float {
        let p = dimension
        let centered = (0..<p).map { z[$0] - means[c * p + $0] }
        var total: Float = 0
        for i in 0..<p {
            var row: Float = 0
            for j in 0..<p { row += precision[i * p + j] * centered[j] }
            total += centered[i] * row
        }
        return total
    }
}
