import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSImage

@Suite struct PreprocessorTests {
    /// Smallest factor n/8 with shorter side × n/8 ≥ S, worked out by hand.
    @Test(arguments: [
        (4000, 3000, 224, "1/8"), (3000, 4000, 224, "1/8"), (1024, 640, 224, "3/8"), (600, 400, 224, "5/8"),
        (451, 300, 224, "3/4"), (200, 100, 224, "1/1"), (1792, 1792, 224, "1/8"), (1791, 1791, 224, "1/4"),
        (6000, 4000, 224, "1/8"), (640, 427, 64, "1/4"), (224, 224, 224, "1/1"),
    ])
    func choosesTheSmallestCoveringScale(_ width: Int, _ height: Int, _ size: Int, _ expected: String) {
        #expect(ImagePreprocessor.scalingFactor(width: width, height: height, size: size).text == expected)
    }

    @Test func twelveMegapixelsDecodeAtOneEighth() throws {
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 224))
        let result = try preprocessor.process(path: Fixtures.image("shared/variants/coffee_12mp_4000x3000_q85.jpg"))
        #expect(
            result.info
                == ImageInfo(
                    sourceWidth: 4000, sourceHeight: 3000, orientation: 1, dctScale: "1/8",
                    width: 500, height: 375, damaged: false))
        #expect(result.decodeMs >= 0 && result.preprocessMs >= 0)
    }

    @Test func pathAndBytesGiveTheSameTensor() throws {
        let file = "shared/variants/coffee_exif_orient6.jpg"
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 96, policy: .stretch))
        let fromPath = try preprocessor.process(path: Fixtures.image(file))
        let fromData = try preprocessor.process(jpeg: Fixtures.imageData(file))
        #expect(fromPath.tensor == fromData.tensor)
        #expect(fromPath.info == fromData.info)
    }

    @Test func callerBufferVariantMatchesTheTensor() throws {
        let file = Fixtures.image("shared/ood/skimage-chelsea.jpg")
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 64))
        let tensor = try preprocessor.process(path: file).tensor
        var buffer = [Float](repeating: .nan, count: preprocessor.tensorCount)
        let outcome = try buffer.withUnsafeMutableBufferPointer { try preprocessor.process(path: file, into: $0) }
        #expect(buffer == tensor.data)
        #expect(outcome.info.dctScale == "1/4")
        var small = [Float](repeating: 0, count: 10)
        #expect(
            errorCode {
                _ = try small.withUnsafeMutableBufferPointer { try preprocessor.process(path: file, into: $0) }
            } == "invalid_options")
    }

    /// Quantizing straight from pixels equals ONNX QuantizeLinear (`quantizeInt8`) of the float tensor.
    @Test(arguments: [(Float(0.0157), Int32(0)), (0.02, -3), (0.0078125, 10), (0.5, 127)])
    func quantizedEqualsQuantizeLinearOfTheFloatTensor(_ scale: Float, _ zeroPoint: Int32) throws {
        let file = Fixtures.image("shared/variants/coffee_cmyk_q90.jpg")
        let preprocessor = ImagePreprocessor(
            options: PreprocessOptions(size: 48, mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375]))
        let floats = try preprocessor.process(path: file).tensor
        let (info, quantized) = try preprocessor.processQuantized(path: file, scale: scale, zeroPoint: zeroPoint)
        #expect(info.dctScale == "1/8")
        #expect(quantized.shape == [1, 3, 48, 48])
        #expect(quantized.scale == scale && quantized.zeroPoint == zeroPoint)
        #expect(quantized.data == floats.data.map { quantizeInt8($0, scale: scale, zeroPoint: zeroPoint) })
        let fromData = try preprocessor.processQuantized(
            jpeg: Fixtures.imageData("shared/variants/coffee_cmyk_q90.jpg"), scale: scale, zeroPoint: zeroPoint)
        #expect(fromData.1 == quantized)
    }

    @Test func quantizationRoundsHalfToEvenAndSaturates() throws {
        // mean 0, std 1: the tensor holds the raw pixel values, so scale 2 puts odd pixels on .5 ties.
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 16, mean: [0], std: [1]))
        let file = Fixtures.image("shared/variants/coffee_gray_q90.jpg")
        let (_, q) = try preprocessor.processQuantized(path: file, scale: 2, zeroPoint: -64)
        let pixels = preprocessor.lastImageRGB()
        for i in 0..<(16 * 16) {
            let v = Int(pixels[3 * i])
            // Round half to even of v/2, by integer arithmetic: v/2 rounded down, plus 1 if v%4 == 3.
            let rounded = v / 2 + (v % 4 == 3 ? 1 : 0)
            #expect(Int(q.data[i]) == max(-128, min(127, rounded - 64)))
        }
    }

    @Test func grayscaleBecomesThreeEqualChannels() throws {
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 32, mean: [0], std: [1]))
        let tensor = try preprocessor.process(path: Fixtures.image("shared/variants/coffee_gray_q90.jpg")).tensor
        let plane = 32 * 32
        #expect(Array(tensor.data[0..<plane]) == Array(tensor.data[plane..<2 * plane]))
        #expect(Array(tensor.data[0..<plane]) == Array(tensor.data[2 * plane..<3 * plane]))
        #expect(tensor.data.contains { $0 != tensor.data[0] })
    }

    /// After the largest image, a loop of images allocates no new buffers inside the preprocessor.
    @Test(arguments: ResizePolicy.allCases)
    func buffersAreReusedAcrossImages(_ policy: ResizePolicy) throws {
        let preprocessor = ImagePreprocessor(options: PreprocessOptions(size: 224, policy: policy))
        _ = try preprocessor.process(path: Fixtures.image("shared/variants/coffee_12mp_4000x3000_q85.jpg"))
        let afterFirst = preprocessor.bufferAllocations
        #expect(afterFirst > 0)
        let files = [
            "shared/variants/coffee_12mp_4000x3000_q85.jpg", "shared/variants/coffee_cmyk_q90.jpg",
            "shared/variants/coffee_gray_q90.jpg", "shared/ood/skimage-chelsea.jpg",
            "shared/variants/coffee_exif_orient6.jpg", "shared/variants/coffee_progressive_420_q85.jpg",
        ]
        var output = [Float](repeating: 0, count: preprocessor.tensorCount)
        for _ in 0..<2 {
            for file in files {
                _ = try output.withUnsafeMutableBufferPointer {
                    try preprocessor.process(path: Fixtures.image(file), into: $0)
                }
            }
        }
        #expect(preprocessor.bufferAllocations == afterFirst)
    }

    /// Centre crop of a landscape picture keeps its middle; the left edge only appears with stretch.
    @Test func centreCropAndStretchDiffer() throws {
        let file = Fixtures.image("generated/orient1.jpg")  // 240x160
        let crop = ImagePreprocessor(options: PreprocessOptions(size: 64, policy: .centerCrop))
        let stretch = ImagePreprocessor(options: PreprocessOptions(size: 64, policy: .stretch))
        let a = try crop.process(path: file)
        let b = try stretch.process(path: file)
        #expect(a.info == b.info)
        #expect(pixelDifference(crop.lastImageRGB(), stretch.lastImageRGB()).mean > 5)
    }
}
