import Foundation
import Testing

@testable import AADSImage

/// A resize cut into bands of output rows computed on several threads gives the one-band result byte for
/// byte (the one-band resize itself is checked against Pillow in PillowReferenceTests; through the
/// preprocessor, in RestartBandTests).
@Suite struct ResamplerTests {
    /// Deterministic pixels with fine detail, so that a tap read from a wrong row or column changes outputs.
    static func pixels(_ count: Int, seed: UInt32) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }

    static func resize(
        _ source: [UInt8], width: Int, height: Int, channels: Int, box: ResampleBox, out: (Int, Int), parts: Int,
        with resampler: Resampler
    ) -> [UInt8] {
        var result = [UInt8](repeating: 0xA5, count: out.0 * out.1 * channels)
        source.withUnsafeBufferPointer { src in
            result.withUnsafeMutableBufferPointer { dst in
                resampler.resample(
                    source: src.baseAddress!, width: width, height: height, channels: channels, box: box,
                    outWidth: out.0, outHeight: out.1, into: dst.baseAddress!, parts: parts)
            }
        }
        return result
    }

    /// Reductions (the camera case: 1/8 decode, then about 1.7× down), enlargements, crops with fractional
    /// edges, grey, RGB and CMYK-sized pixels, and more parts than output rows.
    @Test(arguments: [1, 3, 4])
    func partsGiveTheOnePartResult(_ channels: Int) {
        let shapes: [(w: Int, h: Int, box: ResampleBox, out: (Int, Int))] = [
            (500, 375, ResampleBox(x0: 62.5, y0: 0, x1: 437.5, y1: 375), (224, 224)),
            (333, 250, ResampleBox(x0: 0, y0: 0, x1: 333, y1: 250), (224, 224)),
            (100, 80, ResampleBox(x0: 10.25, y0: 3.5, x1: 90.75, y1: 77), (150, 97)),
            (64, 48, ResampleBox(x0: 0, y0: 0, x1: 64, y1: 48), (7, 3)),
        ]
        let oneBand = Resampler()
        let banded = Resampler()
        for (index, shape) in shapes.enumerated() {
            let source = Self.pixels(shape.w * shape.h * channels, seed: UInt32(index + 1))
            let expected = Self.resize(
                source, width: shape.w, height: shape.h, channels: channels, box: shape.box, out: shape.out, parts: 1,
                with: oneBand)
            for parts in [2, 3, 4, 5] {
                let got = Self.resize(
                    source, width: shape.w, height: shape.h, channels: channels, box: shape.box, out: shape.out,
                    parts: parts, with: banded)
                let differing = zip(got, expected).filter { $0 != $1 }.count
                #expect(differing == 0, "\(shape.w)x\(shape.h)x\(channels) → \(shape.out) in \(parts) parts")
            }
        }
    }
}
