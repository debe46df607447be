import AADSCore

/// How the decoded picture is fitted into the S×S model input.
public enum ResizePolicy: String, Sendable, CaseIterable {
    /// Shorter side to S, then the centred S×S square.
    case centerCrop = "center-crop"
    /// The whole picture straight to S×S (aspect ratio not kept).
    case stretch
}

/// Limits checked before any pixel buffer is allocated.
public struct DecodeLimits: Sendable, Equatable {
    /// Largest accepted width × height of the JPEG frame (before DCT scaling).
    public var maxPixels: Int = 100_000_000
    /// Largest accepted file size in bytes.
    public var maxFileBytes: Int = 64 << 20

    public init(maxPixels: Int = 100_000_000, maxFileBytes: Int = 64 << 20) {
        self.maxPixels = maxPixels
        self.maxFileBytes = maxFileBytes
    }
}

/// Everything that decides how a JPEG becomes a model input.
public struct PreprocessOptions: Sendable, Equatable {
    /// Output side S: the tensor is [1, 3, S, S].
    public var size: Int
    public var policy: ResizePolicy
    /// Per-channel mean in pixel units (0...255): one value for all channels, or three (R, G, B).
    public var mean: [Float]
    /// Per-channel standard deviation in pixel units: one value or three.
    public var std: [Float]
    /// Accept images whose entropy-coded data libjpeg reported as damaged (the result is flagged).
    public var allowDamaged: Bool
    public var limits: DecodeLimits
    /// Threads for decoding a JPEG with restart markers: with 2 or more, a baseline file whose restart
    /// intervals start on MCU rows is decoded as that many bands at once (the same pixels as the
    /// sequential decode); other files are decoded sequentially whatever this says. The resize is cut
    /// into as many bands of output rows, whatever the file (the same pixels as one band).
    public var decodeThreads: Int

    /// Defaults: 224×224 centre crop, EfficientNet-Lite normalisation (x − 127) / 128, one decode thread.
    public init(
        size: Int = 224, policy: ResizePolicy = .centerCrop, mean: [Float] = [127, 127, 127],
        std: [Float] = [128, 128, 128], allowDamaged: Bool = false, limits: DecodeLimits = DecodeLimits(),
        decodeThreads: Int = 1
    ) {
        self.size = size
        self.policy = policy
        self.mean = mean
        self.std = std
        self.allowDamaged = allowDamaged
        self.limits = limits
        self.decodeThreads = decodeThreads
    }

    /// Largest accepted `decodeThreads`.
    public static let maxDecodeThreads = 16

    /// Largest accepted output side.
    public static let maxSize = 4096

    /// Throws `invalid_options` when a value cannot work.
    public func validate() throws {
        guard (1...Self.maxSize).contains(size) else {
            throw ImageError(.invalidOptions, "size must be 1...\(Self.maxSize), got \(size)")
        }
        guard mean.count == 1 || mean.count == 3, mean.allSatisfy(\.isFinite) else {
            throw ImageError(.invalidOptions, "mean needs 1 or 3 finite values, got \(mean.count)")
        }
        guard std.count == 1 || std.count == 3, std.allSatisfy({ $0.isFinite && $0 != 0 }) else {
            throw ImageError(.invalidOptions, "std needs 1 or 3 finite non-zero values")
        }
        guard (1...Self.maxDecodeThreads).contains(decodeThreads) else {
            throw ImageError(
                .invalidOptions, "decode threads must be 1...\(Self.maxDecodeThreads), got \(decodeThreads)")
        }
        guard limits.maxPixels > 0, limits.maxFileBytes > 0 else {
            throw ImageError(.invalidOptions, "limits must be positive")
        }
    }

    /// Mean and std expanded to three channels.
    var channelMean: [Float] { mean.count == 3 ? mean : Array(repeating: mean.first ?? 0, count: 3) }
    var channelStd: [Float] { std.count == 3 ? std : Array(repeating: std.first ?? 1, count: 3) }
}

/// A failure of the image module. Codes are stable:
/// `unreadable` (I/O), `not_jpeg`, `corrupt_jpeg` (truncated or damaged data, no frame),
/// `too_large` (pixel or file-size limit, from the header), `unsupported_jpeg` (valid JPEG this decoder
/// cannot produce RGB from), plus `invalid_options` (bad caller options) and `internal`.
public struct ImageError: CodedError, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case unreadable
        case notJPEG = "not_jpeg"
        case corruptJPEG = "corrupt_jpeg"
        case tooLarge = "too_large"
        case unsupportedJPEG = "unsupported_jpeg"
        case invalidOptions = "invalid_options"
        case `internal`
    }

    public let kind: Code
    public let message: String
    public var code: String { kind.rawValue }

    public init(_ kind: Code, _ message: String) {
        self.kind = kind
        // One line, always.
        self.message = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    /// `internal` could not run; every other code refuses the image (or the caller's options).
    public var failure: FailureKind { kind == .internal ? .couldNotRun : .refused }
}

/// What was decoded, and how.
public struct ImageInfo: Sendable, Equatable {
    /// JPEG frame size after applying the EXIF orientation.
    public var sourceWidth: Int
    public var sourceHeight: Int
    /// EXIF orientation 1...8 (1 when absent or unreadable).
    public var orientation: Int
    /// DCT scaling factor used while decoding, e.g. "1/8".
    public var dctScale: String
    /// Size of the scaled decode, after applying the orientation.
    public var width: Int
    public var height: Int
    /// libjpeg reported damaged data and `allowDamaged` accepted it.
    public var damaged: Bool
    /// Bands decoded at once from restart intervals; 1 for a sequential decode.
    public var decodeBands: Int

    public init(
        sourceWidth: Int, sourceHeight: Int, orientation: Int, dctScale: String, width: Int, height: Int,
        damaged: Bool, decodeBands: Int = 1
    ) {
        self.decodeBands = decodeBands
        self.sourceWidth = sourceWidth
        self.sourceHeight = sourceHeight
        self.orientation = orientation
        self.dctScale = dctScale
        self.width = width
        self.height = height
        self.damaged = damaged
    }
}

/// Info and stage timings of one processed image (for the APIs that write into a caller's buffer).
public struct ProcessOutcome: Sendable, Equatable {
    public var info: ImageInfo
    /// Reading the file, parsing the header and decoding (with colour conversion).
    public var decodeMs: Double
    /// Resizing, orientation and normalisation/quantization.
    public var preprocessMs: Double
}

/// A model input made from one JPEG.
public struct PreprocessedImage: Sendable {
    public var info: ImageInfo
    /// Float32 NCHW, [1, 3, S, S].
    public var tensor: Tensor
    public var decodeMs: Double
    public var preprocessMs: Double
}
