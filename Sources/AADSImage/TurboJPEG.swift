import CTurboJPEG

// Every libturbojpeg call of AADS Edge lives in this file. It uses the TurboJPEG 2.x API
// (tjInitDecompress, tjDecompressHeader3, tjGetScalingFactors, tjDecompress2, tjGetErrorCode,
// tjGetErrorStr2), which TurboJPEG 3.x still exports, so the same code runs on 2.1 and 3.x.

/// Colour space of the JPEG data, as TurboJPEG reports it from the header.
enum JPEGColorspace: Equatable {
    case rgb, ycbcr, gray, cmyk, ycck
    case other(Int32)
}

/// What `tjDecompressHeader3` tells about a JPEG before anything is allocated.
struct JPEGHeader: Equatable {
    var width: Int
    var height: Int
    /// TJSAMP_* value (-1 when TurboJPEG 3.x cannot name it).
    var subsampling: Int
    var colorspace: JPEGColorspace
}

/// Packed pixel layouts the decoder produces.
enum DecodedPixelFormat {
    case rgb, gray, cmyk

    var channels: Int {
        switch self {
        case .rgb: 3
        case .gray: 1
        case .cmyk: 4
        }
    }

    fileprivate var tjFormat: Int32 {
        switch self {
        case .rgb: Int32(TJPF_RGB.rawValue)
        case .gray: Int32(TJPF_GRAY.rawValue)
        case .cmyk: Int32(TJPF_CMYK.rawValue)
        }
    }
}

/// A TurboJPEG failure: `warning` means libjpeg reported a recoverable problem (the output buffer is
/// filled, damaged parts included); `fatal` means no usable output.
enum TurboJPEGFailure: Error, Equatable {
    case warning(String)
    case fatal(String)
}

/// A DCT scaling factor `num/den` that TurboJPEG can apply while decoding.
struct ScalingFactor: Equatable, Sendable {
    var num: Int
    var den: Int

    /// `TJSCALED(dimension, factor)`, which does not import into Swift: ceil(dimension × num / den).
    func scaled(_ dimension: Int) -> Int { (dimension * num + den - 1) / den }

    var text: String { "\(num)/\(den)" }
}

/// A TurboJPEG decompressor instance (one per thread; not shareable).
final class TurboJPEGDecoder {
    private let handle: tjhandle

    /// The factors this libturbojpeg supports, read once with `tjGetScalingFactors`.
    static let scalingFactors: [ScalingFactor] = {
        var count: Int32 = 0
        guard let list = tjGetScalingFactors(&count), count > 0 else { return [ScalingFactor(num: 1, den: 1)] }
        return (0..<Int(count)).map { ScalingFactor(num: Int(list[$0].num), den: Int(list[$0].denom)) }
    }()

    init?() {
        guard let handle = tjInitDecompress() else { return nil }
        self.handle = handle
    }

    deinit { tjDestroy(handle) }

    /// Reads the frame header. A tables-only datastream makes TurboJPEG return success without writing
    /// the outputs, so they start at zero and the caller must check `width > 0 && height > 0`.
    /// A warning while reading the header still yields the header when the dimensions were written.
    func readHeader(_ jpeg: UnsafeRawBufferPointer) -> Result<JPEGHeader, TurboJPEGFailure> {
        guard let base = jpeg.baseAddress, !jpeg.isEmpty else { return .failure(.fatal("empty input")) }
        var width: Int32 = 0
        var height: Int32 = 0
        var subsampling: Int32 = -1
        var colorspace: Int32 = -1
        let rc = tjDecompressHeader3(
            handle, base.assumingMemoryBound(to: UInt8.self), UInt(jpeg.count), &width, &height, &subsampling,
            &colorspace)
        let header = JPEGHeader(
            width: Int(width), height: Int(height), subsampling: Int(subsampling),
            colorspace: Self.colorspace(colorspace))
        if rc == 0 { return .success(header) }
        let failure = lastFailure()
        if case .warning = failure, width > 0, height > 0 { return .success(header) }
        return .failure(failure)
    }

    /// Decodes into `destination` (`width × height × format.channels` bytes, packed rows). `width` and
    /// `height` must be the header dimensions scaled by one of `scalingFactors`.
    ///
    /// With `stopOnWarning` (TJFLAG_STOPONWARNING) libjpeg stops at the first warning, so a damaged image
    /// that is going to be refused costs no further decoding; without it the whole (damaged) image is
    /// produced and the warning is still returned.
    func decompress(
        _ jpeg: UnsafeRawBufferPointer, into destination: UnsafeMutablePointer<UInt8>, width: Int, height: Int,
        format: DecodedPixelFormat, stopOnWarning: Bool
    ) -> TurboJPEGFailure? {
        guard let base = jpeg.baseAddress, !jpeg.isEmpty else { return .fatal("empty input") }
        // TJFLAG_LIMITSCANS refuses progressive files with an absurd number of scans (a CPU bomb).
        var flags = Int32(TJFLAG_LIMITSCANS)
        if stopOnWarning { flags |= Int32(TJFLAG_STOPONWARNING) }
        let rc = tjDecompress2(
            handle, base.assumingMemoryBound(to: UInt8.self), UInt(jpeg.count), destination, Int32(width),
            Int32(width * format.channels), Int32(height), format.tjFormat, flags)
        return rc == 0 ? nil : lastFailure()
    }

    private func lastFailure() -> TurboJPEGFailure {
        let message = tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown TurboJPEG error"
        return tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) ? .warning(message) : .fatal(message)
    }

    private static func colorspace(_ value: Int32) -> JPEGColorspace {
        switch value {
        case Int32(TJCS_RGB.rawValue): .rgb
        case Int32(TJCS_YCbCr.rawValue): .ycbcr
        case Int32(TJCS_GRAY.rawValue): .gray
        case Int32(TJCS_CMYK.rawValue): .cmyk
        case Int32(TJCS_YCCK.rawValue): .ycck
        default: .other(value)
        }
    }
}
