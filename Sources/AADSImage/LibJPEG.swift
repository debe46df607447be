import CLibJPEG

// The libjpeg API path: for valid JPEGs whose per-component sampling factors TurboJPEG cannot name
// (tjDecompressHeader3 fails with "Could not determine subsampling type"), e.g. Y 2×1, Cb 1×2, Cr 1×1.
// libjpeg-turbo's libjpeg decodes them, with the same DCT scaling. The calls that may longjmp run in the
// CLibJPEG shim; this file maps its results onto the TurboJPEG path's types, so limits, scale choice,
// EXIF orientation, damaged-data policy and error codes are shared.
enum LibJPEG {
    /// True for the TurboJPEG failure this path exists for.
    static func handles(_ failure: TurboJPEGFailure) -> Bool {
        guard case .fatal(let message) = failure else { return false }
        return message.contains("Could not determine subsampling")
    }

    /// The frame header; `subsampling` is -1 (TurboJPEG has no name for it).
    static func readHeader(_ jpeg: UnsafeRawBufferPointer) -> Result<JPEGHeader, TurboJPEGFailure> {
        guard let base = jpeg.baseAddress, !jpeg.isEmpty else { return .failure(.fatal("empty input")) }
        var header = aads_libjpeg_header()
        var message = [CChar](repeating: 0, count: 256)
        let status = aads_libjpeg_read_header(
            base.assumingMemoryBound(to: UInt8.self), UInt(jpeg.count), &header, &message, message.count)
        let value = JPEGHeader(
            width: Int(header.width), height: Int(header.height), subsampling: -1,
            colorspace: colorspace(header.color_space))
        switch status {
        case AADS_LIBJPEG_OK: return .success(value)
        case AADS_LIBJPEG_WARNING where header.width > 0 && header.height > 0: return .success(value)
        case AADS_LIBJPEG_WARNING: return .failure(.warning(text(message)))
        default: return .failure(.fatal(text(message)))
        }
    }

    /// Decodes at `factor` into `destination` (`width × height × format.channels` bytes); as
    /// `TurboJPEGDecoder.decompress`: nil on success, `.warning` for damaged data (at the first warning with
    /// `stopOnWarning`, else after the whole picture), `.fatal` when there is no usable output.
    static func decompress(
        _ jpeg: UnsafeRawBufferPointer, into destination: UnsafeMutablePointer<UInt8>, width: Int, height: Int,
        factor: ScalingFactor, format: DecodedPixelFormat, stopOnWarning: Bool
    ) -> TurboJPEGFailure? {
        guard let base = jpeg.baseAddress, !jpeg.isEmpty else { return .fatal("empty input") }
        var message = [CChar](repeating: 0, count: 256)
        let status = aads_libjpeg_decompress(
            base.assumingMemoryBound(to: UInt8.self), UInt(jpeg.count), Int32(factor.num), Int32(factor.den),
            Int32(format.channels), destination, Int32(width), Int32(height), stopOnWarning ? 1 : 0, maxScans,
            &message, message.count)
        switch status {
        case AADS_LIBJPEG_OK: return nil
        case AADS_LIBJPEG_WARNING: return .warning(text(message))
        default: return .fatal(text(message))
        }
    }

    /// The scan limit of TurboJPEG's TJFLAG_LIMITSCANS.
    static let maxScans: Int32 = 500

    private static func text(_ message: [CChar]) -> String {
        let bytes = message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return bytes.isEmpty ? "unknown libjpeg error" : String(decoding: bytes, as: UTF8.self)
    }

    private static func colorspace(_ value: Int32) -> JPEGColorspace {
        switch value {
        case Int32(AADS_LIBJPEG_CS_RGB): .rgb
        case Int32(AADS_LIBJPEG_CS_YCBCR): .ycbcr
        case Int32(AADS_LIBJPEG_CS_GRAYSCALE): .gray
        case Int32(AADS_LIBJPEG_CS_CMYK): .cmyk
        case Int32(AADS_LIBJPEG_CS_YCCK): .ycck
        default: .other(value)
        }
    }
}
