import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSImage

/// Every corrupt file of the public image set, and the valid-but-unsupported generated files,
/// must give its documented error code (see the image set's README: expected outcome per file).
@Suite struct BadInputTests {
    static let expected: [(String, String)] = [
        ("shared/corrupt/truncated_30pct.jpg", "corrupt_jpeg"),  // scan ends early
        ("shared/corrupt/truncated_90pct.jpg", "corrupt_jpeg"),
        ("shared/corrupt/bitflip_32.jpg", "corrupt_jpeg"),  // libjpeg warns about the damaged scan
        ("shared/corrupt/zero_bytes.jpg", "not_jpeg"),  // empty
        ("shared/corrupt/png_named.jpg", "not_jpeg"),  // a PNG
        ("shared/corrupt/random_bytes.jpg", "not_jpeg"),  // no SOI
        ("shared/corrupt/header_only_no_sof.jpg", "corrupt_jpeg"),  // tables only, no frame
        ("shared/corrupt/sof_65000x65000.jpg", "too_large"),  // 4.2 Gpx header
        ("generated/unsupported_12bit.jpg", "unsupported_jpeg"),
        ("generated/unsupported_lossless.jpg", "unsupported_jpeg"),
    ]

    @Test(arguments: expected)
    func corruptFileGivesItsCode(_ file: String, _ code: String) throws {
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 64))
        #expect(errorCode { _ = try preprocessor.process(path: Fixtures.image(file)) } == code)
        let data = try Fixtures.imageData(file)
        #expect(errorCode { _ = try preprocessor.process(jpeg: data) } == code)
        #expect(
            errorCode { _ = try preprocessor.processQuantized(path: Fixtures.image(file), scale: 0.02, zeroPoint: 0) }
                == code)
        #expect(preprocessor.lastImageRGB().isEmpty)
    }

    /// A failure must not leave the decoder in a state that spoils the next image.
    @Test func aFailureDoesNotAffectTheNextImage() throws {
        let good = Fixtures.image("shared/variants/coffee_exif_orient6.jpg")
        let expected = try ImagePreprocessor(options: PreprocessOptions(size: 48)).process(path: good).tensor
        for allowDamaged in [false, true] {
            let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 48, allowDamaged: allowDamaged))
            for (file, _) in Self.expected {
                _ = try? preprocessor.process(path: Fixtures.image(file))
                #expect(try preprocessor.process(path: good).tensor == expected, "after \(file)")
            }
        }
    }

    @Test func everyCorruptFixtureIsCovered() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Fixtures.image("shared/corrupt"))
        let covered = Set(Self.expected.map { ($0.0 as NSString).lastPathComponent })
        #expect(files.count == 8)
        for file in files { #expect(covered.contains(file), "\(file) has no expected code") }
    }

    @Test func ioFailuresAreUnreadable() {
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 64))
        #expect(errorCode { _ = try preprocessor.process(path: Fixtures.image("no/such/file.jpg")) } == "unreadable")
        #expect(errorCode { _ = try preprocessor.process(path: Fixtures.image("shared")) } == "unreadable")
    }

    @Test func damagedFilesDecodeWhenAllowedAndAreFlagged() throws {
        let lenient = ImagePreprocessor(options: PreprocessOptions(size: 64, policy: .stretch, allowDamaged: true))
        for file in ["truncated_30pct", "truncated_90pct", "bitflip_32"] {
            let result = try lenient.process(path: Fixtures.image("shared/corrupt/\(file).jpg"))
            #expect(result.info.damaged, "\(file)")
        }
        // Still errors when allowed: no frame at all, over the limit.
        #expect(
            errorCode { _ = try lenient.process(path: Fixtures.image("shared/corrupt/header_only_no_sof.jpg")) }
                == "corrupt_jpeg")
        #expect(
            errorCode { _ = try lenient.process(path: Fixtures.image("shared/corrupt/sof_65000x65000.jpg")) }
                == "too_large")
        // An intact file is not flagged.
        #expect(try !lenient.process(path: Fixtures.image("shared/ood/skimage-chelsea.jpg")).info.damaged)
    }

    /// The truncated file is the first 30 % of chelsea: its top rows are real, its bottom rows are not.
    @Test func truncatedFileKeepsTheRowsItHas() throws {
        let lenient = ImagePreprocessor(options: PreprocessOptions(size: 64, policy: .stretch, allowDamaged: true))
        _ = try lenient.process(path: Fixtures.image("shared/corrupt/truncated_30pct.jpg"))
        let damaged = lenient.lastImageRGB()
        _ = try lenient.process(path: Fixtures.image("shared/ood/skimage-chelsea.jpg"))
        let intact = lenient.lastImageRGB()
        let row = 64 * 3
        let top = pixelDifference(Array(damaged[0..<8 * row]), Array(intact[0..<8 * row]))
        let bottom = pixelDifference(Array(damaged[48 * row..<64 * row]), Array(intact[48 * row..<64 * row]))
        #expect(top.mean < 1)
        #expect(bottom.mean > 10)
    }

    @Test func pixelLimitIsCheckedFromTheHeader() throws {
        let file = Fixtures.image("shared/variants/coffee_baseline_420_q85.jpg")  // 600x400
        let tight = ImagePreprocessor(
            options: PreprocessOptions(size: 64, limits: DecodeLimits(maxPixels: 600 * 400 - 1)))
        #expect(errorCode { _ = try tight.process(path: file) } == "too_large")
        let exact = ImagePreprocessor(options: PreprocessOptions(size: 64, limits: DecodeLimits(maxPixels: 600 * 400)))
        #expect(errorCode { _ = try exact.process(path: file) } == nil)
    }

    @Test func fileSizeLimitIsCheckedBeforeReading() throws {
        let file = "shared/variants/coffee_baseline_420_q85.jpg"  // 56809 bytes
        let tight = ImagePreprocessor(options: PreprocessOptions(size: 64, limits: DecodeLimits(maxFileBytes: 56808)))
        #expect(errorCode { _ = try tight.process(path: Fixtures.image(file)) } == "too_large")
        #expect(errorCode { _ = try tight.process(jpeg: Fixtures.imageData(file)) } == "too_large")
        let exact = ImagePreprocessor(options: PreprocessOptions(size: 64, limits: DecodeLimits(maxFileBytes: 56809)))
        #expect(errorCode { _ = try exact.process(path: Fixtures.image(file)) } == nil)
    }

    /// Every prefix of a JPEG with EXIF: a coded error or (for the complete file) success; never a crash.
    @Test func truncationsNeverCrash() throws {
        let bytes = [UInt8](try Fixtures.imageData("generated/orient6.jpg"))
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 32))
        let codes = Set(["not_jpeg", "corrupt_jpeg"])
        var cut = 0
        while cut < bytes.count {
            let code = errorCode { _ = try preprocessor.process(jpeg: Data(bytes[0..<cut])) }
            #expect(code.map(codes.contains) == true, "prefix \(cut): \(code ?? "success")")
            cut += cut < 1200 ? 7 : 401
        }
        #expect(errorCode { _ = try preprocessor.process(jpeg: Data(bytes)) } == nil)
    }

    /// Seeded random byte changes in the header region: success or one of the documented codes.
    @Test func mutatedHeadersNeverCrash() throws {
        let original = [UInt8](try Fixtures.imageData("generated/orient6.jpg"))
        let preprocessor = ImagePreprocessor(
            options: PreprocessOptions(size: 32, limits: DecodeLimits(maxPixels: 4_000_000)))
        let allowed = Set(ImageError.Code.allCases.map(\.rawValue)).subtracting(["invalid_options", "internal"])
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        for _ in 0..<300 {
            var bytes = original
            for _ in 0..<(1 + next() % 4) {
                bytes[next() % 700] = UInt8(truncatingIfNeeded: next())
            }
            if let code = errorCode({ _ = try preprocessor.process(jpeg: Data(bytes)) }) {
                #expect(allowed.contains(code), "\(code)")
            }
        }
    }

    @Test func invalidOptionsAreReported() {
        let file = Fixtures.image("shared/variants/coffee_baseline_420_q85.jpg")
        for options in [
            PreprocessOptions(size: 0), PreprocessOptions(size: 64, mean: [1, 2]),
            PreprocessOptions(size: 64, std: [0]), PreprocessOptions(size: 64, limits: DecodeLimits(maxPixels: 0)),
        ] {
            #expect(errorCode { _ = try ImagePreprocessor(options: options).process(path: file) } == "invalid_options")
        }
    }
}
