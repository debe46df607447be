import AADSTestSupport
import Foundation
import Testing

@testable import AADSImage

/// EXIF orientation parsing on hand-built TIFF/EXIF bytes (TIFF 6.0 layout: byte order, 42, IFD0 offset,
/// entry count, 12-byte entries of tag, type, count, value).
@Suite struct JPEGMarkersTests {
    static func tiff(
        littleEndian: Bool, tag: UInt16 = 0x0112, type: UInt16 = 3, value: UInt32, ifdOffset: UInt32 = 8,
        entries: UInt16 = 2
    ) -> [UInt8] {
        func u16(_ v: UInt16) -> [UInt8] {
            littleEndian ? [UInt8(v & 0xFF), UInt8(v >> 8)] : [UInt8(v >> 8), UInt8(v & 0xFF)]
        }
        func u32(_ v: UInt32) -> [UInt8] {
            let b = [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
            return littleEndian ? b.reversed() : b
        }
        var out: [UInt8] = littleEndian ? [0x49, 0x49] : [0x4D, 0x4D]
        out += u16(42) + u32(ifdOffset) + u16(entries)
        // An unrelated tag first (ImageWidth), then the one under test.
        out += u16(0x0100) + u16(3) + u32(1) + u16(640) + [0, 0]
        let valueField: [UInt8] = type == 3 ? u16(UInt16(truncatingIfNeeded: value)) + [0, 0] : u32(value)
        out += u16(tag) + u16(type) + u32(1) + valueField
        out += u32(0)  // next IFD
        return out
    }

    /// SOI + APP1(Exif) + a few other markers + SOS.
    static func jpeg(app1Payload: [UInt8], extraBefore: [UInt8] = []) -> [UInt8] {
        let payload = Array("Exif".utf8) + [0, 0] + app1Payload
        let length = payload.count + 2
        var out: [UInt8] = [0xFF, 0xD8] + extraBefore
        out += [0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + payload
        out += [0xFF, 0xDB, 0x00, 0x03, 0x00]  // a (bogus but well-framed) DQT
        out += [0xFF, 0xDA, 0x00, 0x02]
        return out
    }

    static func scan(_ bytes: [UInt8]) -> JPEGMarkerInfo { bytes.withUnsafeBytes { JPEGMarkers.scan($0) } }

    @Test(arguments: 1...8)
    func readsEveryOrientationInBothByteOrders(_ value: Int) {
        let tiff = Self.tiff(littleEndian: true, value: UInt32(value))
        #expect(Self.scan(Self.jpeg(app1Payload: tiff)).orientation == value)
        let big = Self.tiff(littleEndian: false, value: UInt32(value))
        #expect(Self.scan(Self.jpeg(app1Payload: big)).orientation == value)
        // LONG instead of SHORT (non-standard, seen in the wild) is accepted.
        let longType = Self.tiff(littleEndian: false, type: 4, value: UInt32(value))
        #expect(Self.scan(Self.jpeg(app1Payload: longType)).orientation == value)
    }

    @Test func malformedExifMeansOrientationOne() {
        let cases: [[UInt8]] = [
            Self.tiff(littleEndian: true, value: 0),
            Self.tiff(littleEndian: true, value: 9),
            Self.tiff(littleEndian: true, value: 65535),
            Self.tiff(littleEndian: true, type: 7, value: 6),  // UNDEFINED type
            Self.tiff(littleEndian: true, value: 6, ifdOffset: 0xFFFF_FFF0),  // IFD beyond the data
            Self.tiff(littleEndian: true, value: 6, ifdOffset: 3),  // IFD inside the header
            Self.tiff(littleEndian: true, tag: 0x0110, value: 6, entries: 0xFFFF),  // runs past the end, no tag
            Array(Self.tiff(littleEndian: true, value: 6).prefix(20)),  // cut inside the entries
            [0x49, 0x4D] + Array(Self.tiff(littleEndian: true, value: 6).dropFirst(2)),  // bad byte order
            [0x49, 0x49, 43, 0] + Array(Self.tiff(littleEndian: true, value: 6).dropFirst(4)),  // not 42
            [],
        ]
        for payload in cases {
            #expect(Self.scan(Self.jpeg(app1Payload: payload)).orientation == 1)
        }
    }

    @Test func segmentFramingErrorsStopTheScanSafely() {
        let good = Self.jpeg(app1Payload: Self.tiff(littleEndian: true, value: 6))
        // Every prefix parses without trapping.
        for cut in 0...good.count { _ = Self.scan(Array(good.prefix(cut))) }
        // A segment length running past the end.
        var long = good
        long[4] = 0xFF
        #expect(Self.scan(long).orientation == 1)
        // A length below 2.
        var short = good
        short[4] = 0
        short[5] = 1
        #expect(Self.scan(short).orientation == 1)
        // Not a JPEG at all.
        #expect(Self.scan([0x89, 0x50, 0x4E, 0x47]) == JPEGMarkerInfo())
    }

    @Test func skipsFillBytesAndOtherApp1Segments() {
        let xmp = Array("http://ns.adobe.com/xap/1.0/".utf8) + [0, 1, 2, 3]
        let other: [UInt8] = [0xFF, 0xFF, 0xFF, 0xE1, 0x00, UInt8(xmp.count + 2)] + xmp
        let bytes = Self.jpeg(app1Payload: Self.tiff(littleEndian: true, value: 8), extraBefore: other)
        #expect(Self.scan(bytes).orientation == 8)
    }

    @Test func exifAfterTheFirstScanIsIgnored() {
        let sos: [UInt8] = [0xFF, 0xDA, 0x00, 0x02]
        let bytes = Self.jpeg(app1Payload: Self.tiff(littleEndian: true, value: 6), extraBefore: sos)
        #expect(Self.scan(bytes).orientation == 1)
    }

    /// A real camera-style file with its orientation value patched to 9 decodes upright-as-stored.
    @Test func outOfRangeOrientationInARealFileDecodesAsOne() throws {
        var bytes = [UInt8](try Fixtures.imageData("generated/orient6.jpg"))
        // Find the orientation entry: tag 0x0112, type 3, count 1, value 6 (Pillow writes big-endian TIFF).
        let pattern: [UInt8] = [0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06]
        let index = try #require(
            (0..<(bytes.count - pattern.count)).first { Array(bytes[$0..<$0 + pattern.count]) == pattern })
        bytes[index + 9] = 9
        let result = try ImagePreprocessor(options: PreprocessOptions(size: 32)).process(jpeg: Data(bytes))
        #expect(result.info.orientation == 1)
        #expect(result.info.sourceWidth == 160 && result.info.sourceHeight == 240)
    }
}
