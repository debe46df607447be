/// Metadata read from the JPEG marker segments before the first scan, in Swift (TurboJPEG ignores EXIF).
struct JPEGMarkerInfo: Equatable {
    /// EXIF orientation 1...8; 1 when absent or unreadable.
    var orientation: Int = 1
}

/// Scans the marker segments between SOI and the first SOS. Never traps: truncated or malformed
/// segments end the scan and keep the defaults, so bad metadata means orientation 1.
enum JPEGMarkers {
    static func scan(_ bytes: UnsafeRawBufferPointer) -> JPEGMarkerInfo {
        var info = JPEGMarkerInfo()
        let count = bytes.count
        guard count >= 4, bytes[0] == 0xFF, bytes[1] == 0xD8 else { return info }
        var position = 2
        while position + 1 < count {
            guard bytes[position] == 0xFF else { return info }
            // Fill bytes: any number of 0xFF may precede a marker code.
            var markerPosition = position + 1
            while markerPosition < count, bytes[markerPosition] == 0xFF { markerPosition += 1 }
            guard markerPosition < count else { return info }
            let marker = bytes[markerPosition]
            position = markerPosition + 1
            switch marker {
            case 0xD9, 0xDA:  // EOI, SOS: no metadata after this point matters
                return info
            case 0x01, 0xD0...0xD7:  // TEM, RSTn: no length field
                continue
            default:
                break
            }
            guard position + 2 <= count else { return info }
            let length = Int(bytes[position]) << 8 | Int(bytes[position + 1])
            guard length >= 2, position + length <= count else { return info }
            let start = position + 2
            let end = position + length
            let segment = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
            if marker == 0xE1, let orientation = exifOrientation(segment) {
                info.orientation = orientation
                return info  // the first EXIF block counts
            }
            position = end
        }
        return info
    }

    /// Orientation from an APP1 payload that begins with `Exif\0\0`; nil when the payload is not EXIF.
    /// An EXIF block whose orientation cannot be read, or is outside 1...8, yields 1.
    static func exifOrientation(_ segment: UnsafeRawBufferPointer) -> Int? {
        let exifHeader: [UInt8] = [0x45, 0x78, 0x69, 0x66, 0x00, 0x00]
        guard segment.count >= 6, segment.starts(with: exifHeader) else { return nil }
        let tiff = UnsafeRawBufferPointer(rebasing: segment[6...])
        return tiffOrientation(tiff) ?? 1
    }

    /// Reads tag 0x0112 from IFD0 of a TIFF structure.
    static func tiffOrientation(_ tiff: UnsafeRawBufferPointer) -> Int? {
        guard tiff.count >= 8 else { return nil }
        let littleEndian: Bool
        switch (tiff[0], tiff[1]) {
        case (0x49, 0x49): littleEndian = true
        case (0x4D, 0x4D): littleEndian = false
        default: return nil
        }
        func u16(_ offset: Int) -> Int? {
            guard offset >= 0, offset + 2 <= tiff.count else { return nil }
            let a = Int(tiff[offset])
            let b = Int(tiff[offset + 1])
            return littleEndian ? a | b << 8 : a << 8 | b
        }
        func u32(_ offset: Int) -> Int? {
            guard let low = u16(littleEndian ? offset : offset + 2),
                let high = u16(littleEndian ? offset + 2 : offset)
            else { return nil }
            return high << 16 | low
        }
        guard u16(2) == 42, let ifd = u32(4), let entries = u16(ifd) else { return nil }
        for index in 0..<entries {
            let entry = ifd + 2 + index * 12
            guard let tag = u16(entry) else { return nil }
            guard tag == 0x0112 else { continue }
            guard let type = u16(entry + 2), let count = u32(entry + 4), count >= 1 else { return nil }
            let value: Int?
            switch type {
            case 3: value = u16(entry + 8)  // SHORT, stored in the value field
            case 4: value = u32(entry + 8)  // LONG (non-standard, seen in the wild)
            default: value = nil
            }
            guard let value, (1...8).contains(value) else { return nil }
            return value
        }
        return nil
    }
}
