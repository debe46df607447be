import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSImage

/// JPEGs whose per-component sampling factors TurboJPEG cannot classify (tjDecompressHeader3: "Could not
/// determine subsampling type") are decoded through the libjpeg API with the same scaling, limits, EXIF
/// orientation and damaged-data policy. Their Pillow comparisons are in `PillowReferenceTests` (cases.json).
@Suite struct UnusualSamplingTests {
    static let files = [
        "generated/sampling_2x1_1x2_1x1.jpg",
        "generated/sampling_1x2_2x1_1x1_progressive.jpg",
        "generated/sampling_2x2_2x1_1x1_orient6.jpg",
        "generated/damaged_sampling_2x1_1x2_1x1.jpg",
    ]

    /// The fixtures really are what TurboJPEG refuses, so they exercise the fallback.
    @Test(arguments: files)
    func turboJPEGCannotClassifyThem(_ file: String) throws {
        let data = try Fixtures.imageData(file)
        let decoder = try #require(TurboJPEGDecoder())
        let header = data.withUnsafeBytes { decoder.readHeader($0) }
        guard case .failure(let failure) = header else {
            Issue.record("TurboJPEG read the header of \(file)")
            return
        }
        #expect(LibJPEG.handles(failure))
    }

    @Test(arguments: Array(files.prefix(3)))
    func everyFileHasPillowReferencesAtAReducedScale(_ file: String) throws {
        let cases = Fixtures.cases.filter { $0.jpeg == file }
        #expect(cases.count >= 2)
        #expect(cases.contains { $0.scaledReference != nil })
    }

    /// At a reduced DCT scale the picture equals Pillow's own scaled decode (`Image.draft`) resized the same
    /// way, to rounding: the same pixels as libjpeg's scaled decode, oriented and resized as Pillow does.
    @Test(arguments: Fixtures.cases.filter { $0.scaledReference != nil })
    func matchesPillowsScaledDecode(_ testCase: Fixtures.Case) throws {
        let policy = try #require(ResizePolicy(rawValue: testCase.policy))
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: testCase.size, policy: policy))
        let result = try preprocessor.process(path: Fixtures.image(testCase.jpeg))
        #expect(result.info.dctScale == testCase.dctScale)
        let reference = try NPY.read(Fixtures.image(try #require(testCase.scaledReference)))
        #expect(reference.shape == [testCase.size, testCase.size, 3])
        let diff = pixelDifference(preprocessor.lastImageRGB(), reference.bytes)
        // A transposed picture is resized in stored orientation, so Pillow's two passes round in the other order.
        #expect(diff.mean <= (testCase.orientation >= 5 ? 0.25 : 0.1), "mean abs diff \(diff.mean), max \(diff.max)")
        #expect(diff.max <= 1, "mean abs diff \(diff.mean), max \(diff.max)")
    }

    @Test func quantizedPathAndOrientation() throws {
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 64))
        let (info, tensor) = try preprocessor.processQuantized(
            path: Fixtures.image("generated/sampling_2x2_2x1_1x1_orient6.jpg"), scale: 0.02, zeroPoint: 0)
        #expect(info.orientation == 6)
        #expect(info.sourceWidth == 600 && info.sourceHeight == 400)
        #expect(info.dctScale == "1/4")
        #expect(tensor.shape == [1, 3, 64, 64])
    }

    @Test func pixelLimitIsCheckedFromTheHeader() throws {
        let file = Fixtures.image("generated/sampling_2x1_1x2_1x1.jpg")  // 240x160
        let tight = ImagePreprocessor(
            options: PreprocessOptions(size: 64, limits: DecodeLimits(maxPixels: 240 * 160 - 1)))
        #expect(errorCode { _ = try tight.process(path: file) } == "too_large")
        let exact = ImagePreprocessor(options: PreprocessOptions(size: 64, limits: DecodeLimits(maxPixels: 240 * 160)))
        #expect(errorCode { _ = try exact.process(path: file) } == nil)
    }

    /// Damaged data: refused as corrupt_jpeg by default; with allowDamaged decoded, flagged, and its intact top
    /// rows match the whole file's.
    @Test func damagedDataFollowsThePolicy() throws {
        let damaged = Fixtures.image("generated/damaged_sampling_2x1_1x2_1x1.jpg")
        let strict = ImagePreprocessor(options: PreprocessOptions(size: 64, policy: .stretch))
        do {
            _ = try strict.process(path: damaged)
            Issue.record("a damaged file was accepted")
        } catch let error as ImageError {
            #expect(error.code == "corrupt_jpeg")
            #expect(error.message.contains("damaged JPEG data"), "\(error.message)")
        }
        #expect(strict.lastImageRGB().isEmpty)

        let lenient = ImagePreprocessor(options: PreprocessOptions(size: 64, policy: .stretch, allowDamaged: true))
        let result = try lenient.process(path: damaged)
        #expect(result.info.damaged)
        let partial = lenient.lastImageRGB()
        #expect(try !lenient.process(path: Fixtures.image("generated/sampling_2x1_1x2_1x1.jpg")).info.damaged)
        let intact = lenient.lastImageRGB()
        let row = 64 * 3
        #expect(pixelDifference(Array(partial[0..<16 * row]), Array(intact[0..<16 * row])).mean < 1)
        #expect(pixelDifference(Array(partial[56 * row..<64 * row]), Array(intact[56 * row..<64 * row])).mean > 5)
    }

    /// A file cut inside its headers is corrupt, through either decoder.
    @Test func truncatedHeadersAreCorrupt() throws {
        let whole = try Fixtures.imageData("generated/sampling_2x1_1x2_1x1.jpg")
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 64, allowDamaged: true))
        for cut in [20, 200, 400] {
            let code = errorCode { _ = try preprocessor.process(jpeg: whole.prefix(cut)) }
            #expect(code == "corrupt_jpeg", "cut at \(cut): \(code ?? "accepted")")
        }
    }

    /// A failure in the libjpeg path leaves the preprocessor usable for the next image.
    @Test func aFailureDoesNotAffectTheNextImage() throws {
        let good = Fixtures.image("shared/variants/coffee_exif_orient6.jpg")
        let expected = try ImagePreprocessor(options: PreprocessOptions(size: 48)).process(path: good).tensor
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 48))
        _ = try? preprocessor.process(path: Fixtures.image("generated/damaged_sampling_2x1_1x2_1x1.jpg"))
        #expect(try preprocessor.process(path: good).tensor == expected)
        _ = try preprocessor.process(path: Fixtures.image("generated/sampling_2x1_1x2_1x1.jpg"))
        #expect(try preprocessor.process(path: good).tensor == expected)
    }
}
