import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSImage

/// JPEGs with restart markers decoded as bands of MCU rows on several threads give the sequential
/// decode's pixels byte for byte; files without a usable restart layout, and damaged ones, take the
/// sequential path and its result (fixtures: tools/fixtures/restart-images).
@Suite struct RestartBandTests {
    static let banded = [
        "restart/420_rows1_637x427.jpg",
        "restart/420_blocks7_600x419.jpg",
        "restart/422_blocks5_320x243.jpg",
        "restart/444_rows2_333x250.jpg",
        "restart/gray_rows1_421x301.jpg",
        "shared/variants/coffee_restart_q90.jpg",
    ]
    /// Decoded sequentially whatever the thread count; with two threads only the resize is cut into bands.
    static let sequentialOnly = [
        "restart/420_progressive_rows1_400x300.jpg",
        "restart/420_none_400x300.jpg",
        "shared/variants/coffee_12mp_4000x3000_q85.jpg",
        "shared/variants/coffee_cmyk_q90.jpg",
        "shared/variants/coffee_exif_orient6.jpg",
    ]
    /// Every factor the preprocessor can choose (1/8, 1/4, 3/8, 1/2, 5/8, 3/4, 7/8, 1/1 on TurboJPEG 2.1).
    static let scales = TurboJPEGDecoder.scalingFactors.filter { $0.num <= $0.den }

    /// The sequential TurboJPEG decode at `factor`.
    static func sequential(_ data: Data, factor: ScalingFactor, format: DecodedPixelFormat) throws -> [UInt8] {
        let decoder = try #require(TurboJPEGDecoder())
        let header = try data.withUnsafeBytes { try decoder.readHeader($0).get() }
        let width = factor.scaled(header.width)
        let height = factor.scaled(header.height)
        var pixels = [UInt8](repeating: 0, count: width * height * format.channels)
        let failure = data.withUnsafeBytes { jpeg in
            pixels.withUnsafeMutableBufferPointer {
                decoder.decompress(
                    jpeg, into: $0.baseAddress!, width: width, height: height, format: format, stopOnWarning: true)
            }
        }
        #expect(failure == nil)
        return pixels
    }

    static func format(_ file: String) -> DecodedPixelFormat { file.contains("gray") ? .gray : .rgb }

    @Test(arguments: banded)
    func bandedEqualsSequentialAtEveryScale(_ file: String) throws {
        let data = try Fixtures.imageData(file)
        let layout = try #require(data.withUnsafeBytes { RestartLayout.parse($0) })
        let format = Self.format(file)
        let banded = BandedDecoder()
        #expect(Self.scales.count >= 4)
        for factor in Self.scales {
            let expected = try Self.sequential(data, factor: factor, format: format)
            let width = factor.scaled(layout.width)
            let height = factor.scaled(layout.height)
            for bands in [2, 3, 4] {
                var pixels = [UInt8](repeating: 0xA5, count: expected.count)
                let count = data.withUnsafeBytes { jpeg in
                    pixels.withUnsafeMutableBufferPointer {
                        banded.decode(
                            jpeg, layout: layout, bands: bands, into: $0.baseAddress!, width: width, height: height,
                            factor: factor, format: format)
                    }
                }
                let used = try #require(count, "\(file) at \(factor.text) in \(bands) bands fell back")
                #expect(used >= 2)
                let differing = zip(pixels, expected).filter { $0 != $1 }.count
                #expect(differing == 0, "\(file) at \(factor.text) in \(bands) bands: \(differing) bytes differ")
            }
        }
    }

    /// Through the preprocessor: the same tensor and facts, with the bands reported.
    @Test(arguments: banded)
    func preprocessorBandsMatchSequential(_ file: String) throws {
        let path = Fixtures.image(file)
        for size in [224, 64] {
            let one = try ImagePreprocessor(options: PreprocessOptions(size: size)).process(path: path)
            let two = try ImagePreprocessor(options: PreprocessOptions(size: size, decodeThreads: 2)).process(
                path: path)
            #expect(one.info.decodeBands == 1)
            #expect(two.info.decodeBands == 2)
            var info = two.info
            info.decodeBands = 1
            #expect(info == one.info)
            #expect(two.tensor == one.tensor)
        }
    }

    @Test(arguments: sequentialOnly)
    func filesWithoutUsableRestartsAreSequential(_ file: String) throws {
        let data = try Fixtures.imageData(file)
        #expect(data.withUnsafeBytes { RestartLayout.parse($0) } == nil)
        let path = Fixtures.image(file)
        for size in [224, 97] {
            let one = try ImagePreprocessor(options: PreprocessOptions(size: size)).process(path: path)
            let two = try ImagePreprocessor(options: PreprocessOptions(size: size, decodeThreads: 2)).process(
                path: path)
            #expect(two.info.decodeBands == 1)
            #expect(two.info == one.info)
            let differing = zip(two.tensor.data, one.tensor.data).filter { $0 != $1 }.count
            #expect(two.tensor.shape == one.tensor.shape)
            #expect(differing == 0, "\(file) at \(size): \(differing) values differ")
        }
    }

    @Test func layoutOfOneRowIntervals() throws {
        let data = try Fixtures.imageData("restart/420_rows1_637x427.jpg")
        let layout = try #require(data.withUnsafeBytes { RestartLayout.parse($0) })
        #expect(layout.mcuWidth == 16 && layout.mcuHeight == 16)
        #expect(layout.mcusPerRow == 40 && layout.mcuRows == 27)
        #expect(layout.interval == 40)
        #expect(layout.intervals.count == 27)
        #expect(layout.bandBoundaries(2) == [0, 14, 27])
        #expect(layout.decodedRows(14..<27) == 13..<27)
        let coarse = try #require(
            try Fixtures.imageData("restart/420_blocks7_600x419.jpg").withUnsafeBytes { RestartLayout.parse($0) })
        #expect(coarse.alignedRows == [0, 7, 14, 21, 27])
        #expect(coarse.decodedRows(14..<27) == 7..<27)
    }

    /// Damaged variants of a restart file: whatever the sequential decode says (error code and message, or
    /// pixels with `allowDamaged`), the two-thread preprocessor says too, and nothing traps.
    @Test func damagedRestartFilesGiveTheSequentialResult() throws {
        let data = [UInt8](try Fixtures.imageData("restart/420_rows1_637x427.jpg"))
        let layout = try #require(data.withUnsafeBytes { RestartLayout.parse($0) })
        let middle = layout.intervals[13]
        var variants: [(String, [UInt8])] = []
        for fraction in [0.3, 0.6, 0.95] {
            variants.append(("truncated \(fraction)", Array(data.prefix(Int(Double(data.count) * fraction)))))
        }
        var renumbered = data
        renumbered[middle.upperBound + 1] = 0xD0 + (renumbered[middle.upperBound + 1] - 0xD0 + 3) % 8
        variants.append(("RST out of sequence", renumbered))
        var extra = data
        extra.replaceSubrange((middle.lowerBound + 40)..<(middle.lowerBound + 40), with: [0xFF, 0xD5])
        variants.append(("bogus RST inserted", extra))
        var missing = data
        missing.removeSubrange(middle.upperBound..<(middle.upperBound + 2))
        variants.append(("RST removed", missing))
        var flipped = data
        for offset in stride(from: middle.lowerBound + 5, to: middle.upperBound - 5, by: 17)
        where flipped[offset] != 0xFF && flipped[offset - 1] != 0xFF {
            flipped[offset] ^= 0x5A
            if flipped[offset] == 0xFF { flipped[offset] = 0x7F }
        }
        variants.append(("entropy bytes flipped", flipped))
        var hugeHeight = data
        hugeHeight[layout.heightOffset] = 0x7F
        variants.append(("SOF height enlarged", hugeHeight))

        for allowDamaged in [false, true] {
            for (name, bytes) in variants {
                let jpeg = Data(bytes)
                let one = ImagePreprocessor(options: PreprocessOptions(allowDamaged: allowDamaged))
                let two = ImagePreprocessor(options: PreprocessOptions(allowDamaged: allowDamaged, decodeThreads: 2))
                let a = Result { try one.process(jpeg: jpeg) }
                let b = Result { try two.process(jpeg: jpeg) }
                switch (a, b) {
                case (.success(let x), .success(let y)):
                    var info = y.info
                    info.decodeBands = 1
                    #expect(info == x.info, "\(name)")
                    #expect(x.tensor == y.tensor, "\(name)")
                case (.failure(let x), .failure(let y)):
                    #expect((x as? ImageError) == (y as? ImageError), "\(name)")
                default:
                    Issue.record("\(name), allowDamaged \(allowDamaged): \(a) vs \(b)")
                }
            }
        }
    }

    @Test func decodeThreadsAreValidated() {
        #expect(errorCode { try PreprocessOptions(decodeThreads: 0).validate() } == "invalid_options")
        #expect(errorCode { try PreprocessOptions(decodeThreads: 17).validate() } == "invalid_options")
    }
}
