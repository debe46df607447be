import Foundation

/// Separable resampling of packed 8-bit images, computed the way Pillow's `Image.resize` does
/// (libImaging/Resample.c): per-axis convolution coefficients from `precompute_coeffs`, converted to
/// 22-bit fixed point, a horizontal pass into an 8-bit intermediate, then a vertical pass.
///
/// The filter is Pillow's BILINEAR: a triangle whose support grows with the reduction factor when an
/// axis shrinks (anti-aliased, i.e. a box average convolved with itself) and plain bilinear
/// interpolation when it grows. Pillow's BOX filter was measured and not used: after a DCT-scaled
/// decode the remaining reduction is between 1× and 2×, where BOX takes one or two source pixels
/// unevenly per output pixel and aliases; against Pillow's full decode + resize, BOX differed by up to
/// 10 levels (mean) on textured photos, the triangle by under 3.
/// Pillow's BILINEAR (triangle) filter.
enum TriangleFilter {
    static let support = 1.0

    static func weight(_ x: Double) -> Double {
        let a = abs(x)
        return a < 1 ? 1 - a : 0
    }
}

/// A region of the source image in pixel coordinates (fractional values allowed).
struct ResampleBox: Equatable {
    var x0: Double
    var y0: Double
    var x1: Double
    var y1: Double
}

private let precisionBits: Int32 = 32 - 8 - 2

/// Fixed-point coefficients for one axis.
final class AxisCoefficients {
    /// (first input index, number of taps) per output index.
    let bounds = GrowableBuffer<Int32>()
    let weights = GrowableBuffer<Int32>()
    private let scratch = GrowableBuffer<Double>()
    private(set) var kernelSize = 0

    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`.
    func compute(inSize: Int, in0: Double, in1: Double, outSize: Int) {
        let scale = (in1 - in0) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = TriangleFilter.support * filterScale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        kernelSize = ksize
        let bounds = self.bounds.reserve(outSize * 2)
        let weights = self.weights.reserve(outSize * ksize)
        let k = scratch.reserve(ksize)
        let inverse = 1 / filterScale
        for xx in 0..<outSize {
            let center = in0 + (Double(xx) + 0.5) * scale
            // C's (int) truncation toward zero, then clamping, as in Pillow.
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax = max(0, min(xmax - xmin, ksize))
            var total = 0.0
            for x in 0..<xmax {
                let w = TriangleFilter.weight((Double(x + xmin) - center + 0.5) * inverse)
                k[x] = w
                total += w
            }
            let row = weights + xx * ksize
            for x in 0..<ksize {
                var w = x < xmax ? k[x] : 0
                if total != 0 { w /= total }
                let fixed = w * Double(1 << precisionBits)
                row[x] = Int32(w < 0 ? (fixed - 0.5) : (fixed + 0.5))
            }
            bounds[2 * xx] = Int32(xmin)
            bounds[2 * xx + 1] = Int32(xmax)
        }
    }
}

@inline(__always)
private func clip8(_ value: Int32) -> UInt8 {
    if value >= (1 << precisionBits) << 8 { return 255 }
    if value <= 0 { return 0 }
    return UInt8(truncatingIfNeeded: value >> precisionBits)
}

/// Resizes a region of a packed 8-bit image; reuses its coefficient and intermediate buffers.
final class Resampler {
    private let horizontal = AxisCoefficients()
    private let vertical = AxisCoefficients()
    /// The buffers of each part of the output run at once (see `resample`'s `parts`).
    private var scratch: [ResampleScratch] = [ResampleScratch()]

    var allocations: Int {
        scratch.reduce(0) { $0 + $1.intermediate.allocations + $1.accumulator.allocations }
            + horizontal.bounds.allocations + horizontal.weights.allocations
            + vertical.bounds.allocations + vertical.weights.allocations
    }

    /// Resamples `box` of `source` (`width × height × channels`) to `outWidth × outHeight` into
    /// `destination`. The box must lie within the image. With `parts` > 1 the output rows are cut into
    /// that many bands computed on as many threads, each through its own horizontal pass over the source
    /// rows it needs; every output row is computed exactly as in one part.
    func resample(
        source: UnsafePointer<UInt8>, width: Int, height: Int, channels: Int, box: ResampleBox,
        outWidth: Int, outHeight: Int, into destination: UnsafeMutablePointer<UInt8>, parts: Int = 1
    ) {
        horizontal.compute(inSize: width, in0: box.x0, in1: box.x1, outSize: outWidth)
        vertical.compute(inSize: height, in0: box.y0, in1: box.y1, outSize: outHeight)
        let count = max(1, min(parts, outHeight))
        while scratch.count < count { scratch.append(ResampleScratch()) }
        let job = ResampleJob(
            horizontal: horizontal, vertical: vertical, scratch: Array(scratch.prefix(count)), source: source,
            width: width, channels: channels, outWidth: outWidth, outHeight: outHeight, destination: destination)
        if count == 1 {
            job.run(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: count) { job.run($0) }
        }
    }
}

/// One part's buffers: the horizontal pass's rows and the vertical pass's sums.
private final class ResampleScratch {
    let intermediate = GrowableBuffer<UInt8>()
    let accumulator = GrowableBuffer<Int32>()
}

/// The parts of one resize handed to `concurrentPerform`. Unchecked because part `i` writes only its own
/// scratch and its own output rows; the coefficients and the source are only read while the parts run.
private final class ResampleJob: @unchecked Sendable {
    let horizontal: AxisCoefficients, vertical: AxisCoefficients
    let scratch: [ResampleScratch]
    let source: UnsafePointer<UInt8>
    let width: Int, channels: Int, outWidth: Int, outHeight: Int
    let destination: UnsafeMutablePointer<UInt8>

    init(
        horizontal: AxisCoefficients, vertical: AxisCoefficients, scratch: [ResampleScratch],
        source: UnsafePointer<UInt8>, width: Int, channels: Int, outWidth: Int, outHeight: Int,
        destination: UnsafeMutablePointer<UInt8>
    ) {
        (self.horizontal, self.vertical, self.scratch, self.source) = (horizontal, vertical, scratch, source)
        (self.width, self.channels, self.outWidth, self.outHeight) = (width, channels, outWidth, outHeight)
        self.destination = destination
    }

    /// Output rows of part `index` of `scratch.count`.
    func run(_ index: Int) {
        let parts = scratch.count
        let first = outHeight * index / parts
        let end = outHeight * (index + 1) / parts
        guard first < end else { return }
        let vBounds = vertical.bounds.pointer
        // Source rows the part's output rows read (each row's taps start at or after the previous row's).
        let firstRow = Int(vBounds[2 * first])
        let lastRow = Int(vBounds[2 * (end - 1)]) + Int(vBounds[2 * (end - 1) + 1])
        let rows = max(0, lastRow - firstRow)
        let rowStride = outWidth * channels
        let temp = scratch[index].intermediate.reserve(max(1, rows * rowStride))

        // Horizontal pass over the rows the vertical pass needs.
        let hBounds = horizontal.bounds.pointer
        let hWeights = horizontal.weights.pointer
        let hSize = horizontal.kernelSize
        let half: Int32 = 1 << (precisionBits - 1)
        for r in 0..<rows {
            let inRow = source + (firstRow + r) * width * channels
            let outRow = temp + r * rowStride
            if channels == 3 {
                for xx in 0..<outWidth {
                    let taps = Int(hBounds[2 * xx + 1])
                    let k = hWeights + xx * hSize
                    var p = inRow + Int(hBounds[2 * xx]) * 3
                    var s0 = half
                    var s1 = half
                    var s2 = half
                    for x in 0..<taps {
                        let w = k[x]
                        s0 &+= Int32(p[0]) &* w
                        s1 &+= Int32(p[1]) &* w
                        s2 &+= Int32(p[2]) &* w
                        p += 3
                    }
                    outRow[3 * xx] = clip8(s0)
                    outRow[3 * xx + 1] = clip8(s1)
                    outRow[3 * xx + 2] = clip8(s2)
                }
            } else {
                for xx in 0..<outWidth {
                    let taps = Int(hBounds[2 * xx + 1])
                    let k = hWeights + xx * hSize
                    let base = inRow + Int(hBounds[2 * xx]) * channels
                    for c in 0..<channels {
                        var sum = half
                        for x in 0..<taps { sum &+= Int32(base[x * channels + c]) &* k[x] }
                        outRow[xx * channels + c] = clip8(sum)
                    }
                }
            }
        }

        // Vertical pass, one output row at a time: whole source rows are accumulated (a loop the compiler
        // vectorises) before rounding.
        let vWeights = vertical.weights.pointer
        let vSize = vertical.kernelSize
        let acc = scratch[index].accumulator.reserve(rowStride)
        for yy in first..<end {
            let ymin = Int(vBounds[2 * yy]) - firstRow
            let taps = Int(vBounds[2 * yy + 1])
            let k = vWeights + yy * vSize
            acc.update(repeating: half, count: rowStride)
            for y in 0..<taps {
                let w = k[y]
                let row = temp + (ymin + y) * rowStride
                for i in 0..<rowStride { acc[i] &+= Int32(row[i]) &* w }
            }
            let outRow = destination + yy * rowStride
            for i in 0..<rowStride { outRow[i] = clip8(acc[i]) }
        }
    }
}
