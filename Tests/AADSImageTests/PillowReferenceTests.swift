import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSImage

/// Compares the runtime against Pillow. Reference path (tools/fixtures/images): Pillow's full decode,
/// `ImageOps.exif_transpose`, `convert("RGB")`, then `Image.resize((S, S), Image.BILINEAR, box=…,
/// reducing_gap=None)` (anti-aliased triangle when shrinking, bilinear when growing). The runtime decodes at
/// a DCT scale instead, hence the tolerance: mean absolute difference ≤ 2 levels.
@Suite struct PillowReferenceTests {
    /// Measured exception, kept in the set rather than dropped: 4:1:1 chroma on a 240×160 picture decoded
    /// at 1/2, where libjpeg upsamples the 30-sample-wide chroma differently in a scaled decode (Pillow's
    /// own draft path decodes this file at the same 1/2).
    /// Likewise the files with sampling factors TurboJPEG cannot name (decoded through the libjpeg API) at 1/2:
    /// libjpeg's scaled decode of their chroma differs from the full-size one by this much; the runtime's
    /// decode equals Pillow's own scaled decode to rounding (`UnusualSamplingTests`).
    static let tolerance: [String: Double] = [
        "subsamp_411_64_center-crop": 3.0,
        "sampling_2x1_1x2_1x1_64_center-crop": 3.5,
        "sampling_2x1_1x2_1x1_64_stretch": 2.7,
        "sampling_1x2_2x1_1x1_progressive_64_center-crop": 3.0,
        "sampling_1x2_2x1_1x1_progressive_64_stretch": 2.3,
    ]

    @Test func casesArePresent() {
        #expect(Fixtures.cases.count >= 50)
    }

    @Test(arguments: Fixtures.cases)
    func matchesPillow(_ testCase: Fixtures.Case) throws {
        let policy = try #require(ResizePolicy(rawValue: testCase.policy))
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: testCase.size, policy: policy))
        let result = try preprocessor.process(path: Fixtures.image(testCase.jpeg))
        #expect(result.info.orientation == testCase.orientation)
        #expect(result.info.sourceWidth == testCase.sourceWidth)
        #expect(result.info.sourceHeight == testCase.sourceHeight)
        #expect(result.info.dctScale == testCase.dctScale)
        #expect(result.info.width == testCase.width)
        #expect(result.info.height == testCase.height)
        #expect(!result.info.damaged)
        #expect(result.tensor.shape == [1, 3, testCase.size, testCase.size])

        let reference = try NPY.read(Fixtures.image(testCase.reference))
        #expect(reference.shape == [testCase.size, testCase.size, 3])
        #expect(reference.dtype == .uint8)
        let ours = preprocessor.lastImageRGB()
        let diff = pixelDifference(ours, reference.bytes)
        #expect(diff.mean <= Self.tolerance[testCase.name, default: 2.0], "mean abs diff \(diff.mean), max \(diff.max)")
        if testCase.dctScale == "1/1", testCase.orientation == 1 {
            // Same decoder output and Pillow's fixed-point resampler: at most rounding differences.
            #expect(diff.max <= 1, "max abs diff \(diff.max)")
        }
    }

    /// The tensor is (pixel − mean) / std in NCHW order; checked against the Pillow pixels.
    @Test func tensorIsNormalisedPillowPixelsInNCHW() throws {
        let testCase = try #require(Fixtures.cases.first { $0.name == "coffee_baseline_420_q85_224_center-crop" })
        let mean: [Float] = [123.675, 116.28, 103.53]
        let std: [Float] = [58.395, 57.12, 57.375]
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 224, mean: mean, std: std))
        let tensor = try preprocessor.process(path: Fixtures.image(testCase.jpeg)).tensor
        let reference = try NPY.read(Fixtures.image(testCase.reference)).bytes
        let plane = 224 * 224
        var total: Float = 0
        for c in 0..<3 {
            for i in 0..<plane {
                let expected = (Float(reference[i * 3 + c]) - mean[c]) / std[c]
                total += abs(tensor.data[c * plane + i] - expected) * std[c]
            }
        }
        #expect(total / Float(3 * plane) <= 2.0)
    }
}
