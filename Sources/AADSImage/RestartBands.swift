import Foundation

/// Where the restart intervals of a baseline (or extended sequential Huffman) single-scan JPEG lie, read
/// with bounds checks. Only files whose layout is fully understood get one; anything else (progressive,
/// arithmetic coding, several scans, no DRI, a marker count or RSTn sequence that does not add up, a
/// truncated scan) yields nil and is decoded sequentially, which then reports its usual result.
struct RestartLayout: Equatable {
    /// Offset of the SOF height field (2 bytes, big-endian).
    var heightOffset: Int
    /// Offset of the first entropy-coded byte (just after the SOS header); everything before it is
    /// the header that every band shares.
    var scanStart: Int
    var width: Int
    var height: Int
    var mcuWidth: Int
    var mcuHeight: Int
    var mcusPerRow: Int
    var mcuRows: Int
    /// Restart interval in MCUs (from DRI).
    var interval: Int
    /// Entropy-coded data of interval k: `intervals[k]` (byte range, RST markers excluded).
    var intervals: [Range<Int>]

    /// MCU rows whose first MCU starts a restart interval (row 0 included), plus `mcuRows` itself.
    var alignedRows: [Int] {
        var rows = (0..<mcuRows).filter { ($0 * mcusPerRow) % interval == 0 }
        rows.append(mcuRows)
        return rows
    }

    static func parse(_ bytes: UnsafeRawBufferPointer) -> RestartLayout? {
        let count = bytes.count
        guard count >= 4, bytes[0] == 0xFF, bytes[1] == 0xD8 else { return nil }
        func u16(_ offset: Int) -> Int { Int(bytes[offset]) << 8 | Int(bytes[offset + 1]) }
        var position = 2
        var interval = 0
        var frame: (heightOffset: Int, width: Int, height: Int, components: [(id: UInt8, h: Int, v: Int)])?
        while true {
            guard position + 1 < count, bytes[position] == 0xFF else { return nil }
            var markerPosition = position + 1
            while markerPosition < count, bytes[markerPosition] == 0xFF { markerPosition += 1 }
            guard markerPosition + 2 < count else { return nil }
            let marker = bytes[markerPosition]
            position = markerPosition + 1
            switch marker {
            case 0xD8, 0xD9, 0x01, 0xD0...0xD7: return nil  // no stray SOI, EOI, TEM or RSTn in the header
            default: break
            }
            let length = u16(position)
            guard length >= 2, position + length <= count else { return nil }
            let body = position + 2
            let end = position + length
            switch marker {
            case 0xC0, 0xC1:  // baseline, extended sequential Huffman
                guard frame == nil, length >= 8, bytes[body] == 8 else { return nil }
                let components = Int(bytes[body + 5])
                guard components >= 1, components <= 4, length == 8 + 3 * components else { return nil }
                var list: [(id: UInt8, h: Int, v: Int)] = []
                for c in 0..<components {
                    let sampling = bytes[body + 6 + 3 * c + 1]
                    let h = Int(sampling >> 4)
                    let v = Int(sampling & 15)
                    guard (1...4).contains(h), (1...4).contains(v) else { return nil }
                    list.append((bytes[body + 6 + 3 * c], h, v))
                }
                frame = (body + 1, u16(body + 3), u16(body + 1), list)
            case 0xC2...0xCF where marker != 0xC4 && marker != 0xC8 && marker != 0xCC:
                return nil  // progressive, lossless, hierarchical, arithmetic
            case 0xDD:
                guard length == 4 else { return nil }
                interval = u16(body)
            case 0xDC:
                return nil  // DNL
            case 0xDA:
                guard let frame, interval > 0, frame.width > 0, frame.height > 0 else { return nil }
                guard length >= 6 else { return nil }
                let scanComponents = Int(bytes[body])
                // One scan holding every component (interleaved, or the only one of a grey image).
                guard scanComponents == frame.components.count, length == 6 + 2 * scanComponents else {
                    return nil
                }
                let hMax = frame.components.map(\.h).max() ?? 1
                let vMax = frame.components.map(\.v).max() ?? 1
                let mcuWidth = scanComponents == 1 ? 8 : 8 * hMax
                let mcuHeight = scanComponents == 1 ? 8 : 8 * vMax
                let mcusPerRow = (frame.width + mcuWidth - 1) / mcuWidth
                let mcuRows = (frame.height + mcuHeight - 1) / mcuHeight
                let total = mcusPerRow * mcuRows
                let expected = (total + interval - 1) / interval
                guard let intervals = Self.intervals(bytes, from: end, expected: expected) else { return nil }
                return RestartLayout(
                    heightOffset: frame.heightOffset, scanStart: end, width: frame.width, height: frame.height,
                    mcuWidth: mcuWidth, mcuHeight: mcuHeight, mcusPerRow: mcusPerRow, mcuRows: mcuRows,
                    interval: interval, intervals: intervals)
            default:
                break
            }
            position = end
        }
    }

    /// Splits the entropy-coded data at its RST markers; nil unless there are exactly `expected`
    /// intervals, numbered RST0, RST1, … RST7, RST0 … in order, and the scan ends with EOI.
    private static func intervals(_ bytes: UnsafeRawBufferPointer, from start: Int, expected: Int) -> [Range<Int>]? {
        let count = bytes.count
        guard let base = bytes.baseAddress else { return nil }
        var result: [Range<Int>] = []
        result.reserveCapacity(expected)
        var intervalStart = start
        var position = start
        while position + 1 < count {
            // The next 0xFF that has a byte after it (memchr: the scan is megabytes long).
            guard let hit = memchr(base + position, 0xFF, count - 1 - position) else { return nil }
            position = base.distance(to: UnsafeRawPointer(hit))
            let next = bytes[position + 1]
            switch next {
            case 0x00, 0xFF:  // stuffed byte; fill byte before a marker
                position += next == 0x00 ? 2 : 1
            case 0xD0...0xD7:
                guard Int(next - 0xD0) == result.count % 8 else { return nil }
                result.append(intervalStart..<position)
                guard result.count < expected else { return nil }
                position += 2
                intervalStart = position
            case 0xD9:
                result.append(intervalStart..<position)
                return result.count == expected ? result : nil
            default:
                return nil  // another scan, DNL, anything else: not a layout this reads
            }
        }
        return nil  // truncated
    }

    /// Band boundaries (MCU rows, ascending, from 0 to `mcuRows`) for about `bands` bands of equal height,
    /// each starting at a restart-aligned row; nil when fewer than two bands fit.
    func bandBoundaries(_ bands: Int) -> [Int]? {
        guard bands >= 2 else { return nil }
        let aligned = alignedRows
        var boundaries = [0]
        for b in 1..<bands {
            let target = (mcuRows * b + bands / 2) / bands
            // The aligned row nearest to the target.
            guard let row = aligned.min(by: { abs($0 - target) < abs($1 - target) }) else { return nil }
            if row > boundaries.last!, row < mcuRows { boundaries.append(row) }
        }
        boundaries.append(mcuRows)
        return boundaries.count >= 3 ? boundaries : nil
    }

    /// The rows a band decodes: one MCU row of context above and below (where the image has one), so
    /// libjpeg's fancy chroma upsampling sees the same neighbours as in the sequential decode, widened to
    /// restart-aligned rows.
    func decodedRows(_ rows: Range<Int>) -> Range<Int> {
        let aligned = alignedRows
        let wantLow = max(0, rows.lowerBound - 1)
        let wantHigh = min(mcuRows, rows.upperBound + 1)
        let low = aligned.last(where: { $0 <= wantLow }) ?? 0
        let high = aligned.first(where: { $0 >= wantHigh }) ?? mcuRows
        return low..<high
    }

    /// A self-contained JPEG for MCU rows `rows` (both ends restart-aligned), written into `buffer`: the
    /// header with the frame height cut to the band, the band's intervals with RST markers renumbered from
    /// RST0, then EOI. Returns its length.
    func bandStream(_ bytes: UnsafeRawBufferPointer, rows: Range<Int>, into buffer: GrowableBuffer<UInt8>) -> Int {
        let firstInterval = rows.lowerBound * mcusPerRow / interval
        let endInterval = min(intervals.count, (rows.upperBound * mcusPerRow + interval - 1) / interval)
        let bandHeight = min(height, rows.upperBound * mcuHeight) - rows.lowerBound * mcuHeight
        let dataBytes = intervals[endInterval - 1].upperBound - intervals[firstInterval].lowerBound
        let out = buffer.reserve(scanStart + dataBytes + 2)
        var length = 0
        func append(_ range: Range<Int>) {
            guard !range.isEmpty, let base = bytes.baseAddress else { return }
            UnsafeMutableRawPointer(out + length).copyMemory(from: base + range.lowerBound, byteCount: range.count)
            length += range.count
        }
        func append(_ a: UInt8, _ b: UInt8) {
            out[length] = a
            out[length + 1] = b
            length += 2
        }
        append(0..<heightOffset)
        append(UInt8(bandHeight >> 8), UInt8(bandHeight & 0xFF))
        append((heightOffset + 2)..<scanStart)
        for k in firstInterval..<endInterval {
            if k > firstInterval { append(0xFF, 0xD0 + UInt8((k - firstInterval - 1) % 8)) }
            append(intervals[k])
        }
        append(0xFF, 0xD9)
        return length
    }
}

/// Decodes a JPEG with restart markers as bands of MCU rows on several threads and stitches them into
/// the same pixels as the sequential decode.
final class BandedDecoder {
    /// One slot per band, kept between images: its decompressor (TurboJPEG handles are not thread-safe),
    /// its stream and its scratch rows.
    private var slots: [BandSlot] = []

    /// Decodes `jpeg` into `destination` (`width × height` at `factor`) in about `bands` bands and returns
    /// how many, or returns nil (having written nothing useful) when the file has no usable restart layout
    /// or any band reports a warning or error: the caller then decodes sequentially and reports that
    /// decode's result.
    func decode(
        _ jpeg: UnsafeRawBufferPointer, layout: RestartLayout, bands: Int,
        into destination: UnsafeMutablePointer<UInt8>,
        width: Int, height: Int, factor: ScalingFactor, format: DecodedPixelFormat
    ) -> Int? {
        // Scaled rows per MCU row must be whole for the bands to stitch on pixel rows.
        guard (layout.mcuHeight * factor.num) % factor.den == 0,
            factor.scaled(layout.width) == width, factor.scaled(layout.height) == height,
            let boundaries = layout.bandBoundaries(bands)
        else { return nil }
        let rowsPerMCU = layout.mcuHeight * factor.num / factor.den
        let count = boundaries.count - 1
        while slots.count < count { slots.append(BandSlot()) }
        for b in 0..<count {
            let slot = slots[b]
            if slot.decoder == nil { slot.decoder = TurboJPEGDecoder() }
            guard slot.decoder != nil else { return nil }
            let rows = boundaries[b]..<boundaries[b + 1]
            let decoded = layout.decodedRows(rows)
            slot.rows = decoded
            slot.height =
                factor.scaled(min(layout.height, decoded.upperBound * layout.mcuHeight))
                - decoded.lowerBound * rowsPerMCU
            slot.skipRows = (rows.lowerBound - decoded.lowerBound) * rowsPerMCU
            slot.outputRow = rows.lowerBound * rowsPerMCU
            slot.outputRows = min(height, rows.upperBound * rowsPerMCU) - rows.lowerBound * rowsPerMCU
            slot.failure = nil
            slot.succeeded = false
        }
        let work = BandWork(
            slots: Array(slots.prefix(count)), layout: layout, jpeg: jpeg, destination: destination, width: width,
            format: format)
        DispatchQueue.concurrentPerform(iterations: count) { work.run($0) }
        for slot in slots.prefix(count) where !slot.succeeded {
            if case .fatal? = slot.failure { slot.decoder = nil }
            return nil
        }
        return count
    }
}

/// One band's decompressor and buffers, and what happened to the current image's band.
private final class BandSlot {
    var decoder: TurboJPEGDecoder?
    let stream = GrowableBuffer<UInt8>()
    let scratch = GrowableBuffer<UInt8>()
    var rows = 0..<0
    var height = 0
    var skipRows = 0
    var outputRow = 0
    var outputRows = 0
    var failure: TurboJPEGFailure?
    var succeeded = false
}

/// The bands of one image handed to `concurrentPerform`. Unchecked because iteration `b` touches only
/// slot `b` (its own decoder, stream and scratch) and its own disjoint rows of `destination`, `jpeg` and
/// `layout` are only read, and the caller reads the slots only after `concurrentPerform` has returned.
private final class BandWork: @unchecked Sendable {
    let slots: [BandSlot]
    let layout: RestartLayout
    let jpeg: UnsafeRawBufferPointer
    let destination: UnsafeMutablePointer<UInt8>
    let width: Int
    let format: DecodedPixelFormat

    init(
        slots: [BandSlot], layout: RestartLayout, jpeg: UnsafeRawBufferPointer,
        destination: UnsafeMutablePointer<UInt8>, width: Int, format: DecodedPixelFormat
    ) {
        self.slots = slots
        self.layout = layout
        self.jpeg = jpeg
        self.destination = destination
        self.width = width
        self.format = format
    }

    func run(_ index: Int) {
        let slot = slots[index]
        guard let decoder = slot.decoder, slot.height > 0, slot.skipRows + slot.outputRows <= slot.height else {
            slot.failure = .fatal("band layout")
            return
        }
        let rowBytes = width * format.channels
        let length = layout.bandStream(jpeg, rows: slot.rows, into: slot.stream)
        let scratch = slot.scratch.reserve(slot.height * rowBytes)
        if let failure = decoder.decompress(
            UnsafeRawBufferPointer(start: slot.stream.pointer, count: length), into: scratch, width: width,
            height: slot.height, format: format, stopOnWarning: true)
        {
            slot.failure = failure
            return
        }
        (destination + slot.outputRow * rowBytes).update(
            from: scratch + slot.skipRows * rowBytes, count: slot.outputRows * rowBytes)
        slot.succeeded = true
    }
}
