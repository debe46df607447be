import AADSCore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns camera JPEGs into model inputs: header checks and limits, DCT-scaled decode into a reused
/// buffer, EXIF orientation, resize (centre crop or stretch), normalisation or int8 quantization.
///
/// One instance keeps its file, decode and resize buffers between calls, so a loop over images stops
/// allocating once it has seen its largest image (apart from the returned tensor; the `into:` variants
/// write into the caller's buffer instead). An instance is not thread-safe: use one per thread.
///
/// Damaged data: libjpeg reports truncated or corrupt entropy-coded data as a warning and still fills
/// the picture (grey or garbage where data is missing). By default that is `corrupt_jpeg`, and decoding
/// runs with TJFLAG_STOPONWARNING so a damaged file is abandoned at the first warning instead of being
/// decoded in full only to be refused. With `allowDamaged` the whole picture is decoded and the result
/// is flagged `damaged`; "no image in the datastream" is an error either way.
public final class ImagePreprocessor {
    public let options: PreprocessOptions

    private var decoder: TurboJPEGDecoder?
    private var bandedDecoder: BandedDecoder?
    private let optionsError: ImageError?
    private let fileBuffer = GrowableBuffer<UInt8>()
    private let decodeBuffer = GrowableBuffer<UInt8>()
    private let resizedBuffer = GrowableBuffer<UInt8>()
    private let rgbBuffer = GrowableBuffer<UInt8>()
    private let resampler = Resampler()
    /// (v − mean[c]) / std[c] for every byte value v, per channel: 3 × 256 entries.
    private var floatTable: [Float]
    private var int8Table: [Int8]
    private var int8TableKey: (scale: Float, zeroPoint: Int32)?
    private var hasImage = false

    public init(options: PreprocessOptions) {
        self.options = options
        do {
            try options.validate()
            optionsError = nil
        } catch {
            optionsError = error as? ImageError ?? ImageError(.invalidOptions, "\(error)")
        }
        let mean = options.channelMean
        let std = options.channelStd
        floatTable = (0..<768).map { index in
            let c = index / 256
            return (Float(index % 256) - mean[c]) / std[c]
        }
        int8Table = [Int8](repeating: 0, count: 768)
    }

    /// Number of values in one output tensor: 3 × S × S.
    public var tensorCount: Int { 3 * options.size * options.size }

    /// The tensor shape, [1, 3, S, S].
    public var tensorShape: [Int] { [1, 3, options.size, options.size] }

    // MARK: Float tensors

    public func process(path: String) throws -> PreprocessedImage {
        var data = [Float](repeating: 0, count: tensorCount)
        let outcome = try data.withUnsafeMutableBufferPointer { try process(path: path, into: $0) }
        return PreprocessedImage(
            info: outcome.info, tensor: Tensor(shape: tensorShape, data: data), decodeMs: outcome.decodeMs,
            preprocessMs: outcome.preprocessMs)
    }

    public func process(jpeg: Data) throws -> PreprocessedImage {
        var data = [Float](repeating: 0, count: tensorCount)
        let outcome = try jpeg.withUnsafeBytes { bytes in
            try data.withUnsafeMutableBufferPointer { try process(jpeg: bytes, into: $0) }
        }
        return PreprocessedImage(
            info: outcome.info, tensor: Tensor(shape: tensorShape, data: data), decodeMs: outcome.decodeMs,
            preprocessMs: outcome.preprocessMs)
    }

    /// Writes the float32 NCHW tensor into `output` (at least `tensorCount` values).
    public func process(path: String, into output: UnsafeMutableBufferPointer<Float>) throws -> ProcessOutcome {
        var clock = Stopwatch()
        let bytes = try readFile(path)
        return try run(UnsafeRawBufferPointer(start: fileBuffer.pointer, count: bytes), clock: &clock) {
            try self.normalize(into: output)
        }
    }

    /// Writes the float32 NCHW tensor into `output` (at least `tensorCount` values).
    public func process(jpeg: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Float>) throws
        -> ProcessOutcome
    {
        var clock = Stopwatch()
        guard jpeg.count <= options.limits.maxFileBytes else { throw fileTooLarge(jpeg.count) }
        return try run(jpeg, clock: &clock) { try self.normalize(into: output) }
    }

    // MARK: int8 tensors

    /// Normalises and quantizes straight to int8 (ONNX QuantizeLinear: round half to even, saturate),
    /// without a float tensor in between.
    public func processQuantized(path: String, scale: Float, zeroPoint: Int32) throws -> (ImageInfo, QuantizedTensor) {
        var data = [Int8](repeating: 0, count: tensorCount)
        let outcome = try data.withUnsafeMutableBufferPointer {
            try processQuantized(path: path, scale: scale, zeroPoint: zeroPoint, into: $0)
        }
        return (outcome.info, QuantizedTensor(shape: tensorShape, data: data, scale: scale, zeroPoint: zeroPoint))
    }

    public func processQuantized(jpeg: Data, scale: Float, zeroPoint: Int32) throws -> (ImageInfo, QuantizedTensor) {
        var data = [Int8](repeating: 0, count: tensorCount)
        let outcome = try jpeg.withUnsafeBytes { bytes in
            try data.withUnsafeMutableBufferPointer {
                try processQuantized(jpeg: bytes, scale: scale, zeroPoint: zeroPoint, into: $0)
            }
        }
        return (outcome.info, QuantizedTensor(shape: tensorShape, data: data, scale: scale, zeroPoint: zeroPoint))
    }

    /// Writes the int8 NCHW tensor into `output` (at least `tensorCount` values).
    public func processQuantized(
        path: String, scale: Float, zeroPoint: Int32, into output: UnsafeMutableBufferPointer<Int8>
    ) throws -> ProcessOutcome {
        var clock = Stopwatch()
        let bytes = try readFile(path)
        return try run(UnsafeRawBufferPointer(start: fileBuffer.pointer, count: bytes), clock: &clock) {
            try self.quantize(scale: scale, zeroPoint: zeroPoint, into: output)
        }
    }

    /// Writes the int8 NCHW tensor into `output` (at least `tensorCount` values).
    public func processQuantized(
        jpeg: UnsafeRawBufferPointer, scale: Float, zeroPoint: Int32, into output: UnsafeMutableBufferPointer<Int8>
    ) throws -> ProcessOutcome {
        var clock = Stopwatch()
        guard jpeg.count <= options.limits.maxFileBytes else { throw fileTooLarge(jpeg.count) }
        return try run(jpeg, clock: &clock) { try self.quantize(scale: scale, zeroPoint: zeroPoint, into: output) }
    }

    /// The S×S RGB pixels (row-major, 3 bytes per pixel, display orientation) of the last image
    /// processed successfully, before normalisation; empty before the first.
    public func lastImageRGB() -> [UInt8] {
        guard hasImage else { return [] }
        return Array(UnsafeBufferPointer(start: rgbBuffer.pointer, count: 3 * options.size * options.size))
    }

    /// Total buffer (re)allocations so far; stays constant in a loop once the largest image was seen.
    var bufferAllocations: Int {
        fileBuffer.allocations + decodeBuffer.allocations + resizedBuffer.allocations + rgbBuffer.allocations
            + resampler.allocations
    }

    // MARK: The pipeline

    private func run(
        _ jpeg: UnsafeRawBufferPointer, clock: inout Stopwatch, finish: () throws -> Void
    ) throws -> ProcessOutcome {
        hasImage = false
        var info = try decodeAndResize(jpeg)
        let decodeMs = clock.lap()
        try resizeAndOrient(&info)
        try finish()
        hasImage = true
        return ProcessOutcome(info: info.image, decodeMs: decodeMs, preprocessMs: clock.lap())
    }

    /// State handed from the decode stage to the resize stage.
    private struct Decoded {
        var image: ImageInfo
        var sourceWidth: Int
        var sourceHeight: Int
        var scaledWidth: Int
        var scaledHeight: Int
        var factor: ScalingFactor
        var channels: Int
    }

    private func decodeAndResize(_ jpeg: UnsafeRawBufferPointer) throws -> Decoded {
        if let optionsError { throw optionsError }
        guard !jpeg.isEmpty else { throw ImageError(.notJPEG, "empty file") }
        guard jpeg.count >= 2, jpeg[0] == 0xFF, jpeg[1] == 0xD8 else {
            throw ImageError(.notJPEG, "no JPEG start-of-image marker at the start of the file")
        }
        if decoder == nil { decoder = TurboJPEGDecoder() }
        guard let decoder else { throw ImageError(.internal, "cannot initialise the TurboJPEG decompressor") }

        let header: JPEGHeader
        // Sampling factors TurboJPEG cannot name (e.g. Y 2×1, Cb 1×2, Cr 1×1) are decoded through the libjpeg API.
        var useLibJPEG = false
        switch decoder.readHeader(jpeg) {
        case .success(let value): header = value
        case .failure(let failure):
            // After a failed header read, TurboJPEG 2.1 leaves the libjpeg state mid-stream (the next
            // header call reports "two SOI markers"), so the instance is replaced.
            self.decoder = nil
            guard LibJPEG.handles(failure) else { throw Self.classify(failure) }
            switch LibJPEG.readHeader(jpeg) {
            case .success(let value): header = value
            case .failure(let failure): throw Self.classify(failure)
            }
            useLibJPEG = true
        }
        guard header.width > 0, header.height > 0 else {
            throw ImageError(.corruptJPEG, "no frame header: the data holds no image (tables only)")
        }
        let pixels = header.width * header.height
        guard pixels <= options.limits.maxPixels else {
            throw ImageError(
                .tooLarge,
                "\(header.width)x\(header.height) is \(pixels) pixels, above the limit of \(options.limits.maxPixels)")
        }
        let format: DecodedPixelFormat
        switch header.colorspace {
        case .rgb, .ycbcr: format = .rgb
        case .gray: format = .gray
        case .cmyk, .ycck: format = .cmyk
        case .other(let value): throw ImageError(.unsupportedJPEG, "unknown JPEG colour space \(value)")
        }
        let markers = JPEGMarkers.scan(jpeg)
        let factor = Self.scalingFactor(width: header.width, height: header.height, size: options.size)
        let scaledWidth = factor.scaled(header.width)
        let scaledHeight = factor.scaled(header.height)
        let destination = decodeBuffer.reserve(scaledWidth * scaledHeight * format.channels)

        var damaged = false
        var bands = 1
        if !useLibJPEG, options.decodeThreads >= 2, let layout = RestartLayout.parse(jpeg) {
            if bandedDecoder == nil { bandedDecoder = BandedDecoder() }
            if let count = bandedDecoder?.decode(
                jpeg, layout: layout, bands: options.decodeThreads, into: destination, width: scaledWidth,
                height: scaledHeight, factor: factor, format: format)
            {
                bands = count
            }
        }
        let failure =
            bands > 1
            ? nil
            : useLibJPEG
                ? LibJPEG.decompress(
                    jpeg, into: destination, width: scaledWidth, height: scaledHeight, factor: factor, format: format,
                    stopOnWarning: !options.allowDamaged)
                : decoder.decompress(
                    jpeg, into: destination, width: scaledWidth, height: scaledHeight, format: format,
                    stopOnWarning: !options.allowDamaged)
        if let failure {
            if case .fatal = failure { self.decoder = nil }
            switch failure {
            case .warning(let message) where options.allowDamaged && !message.contains("contains no image"):
                damaged = true
            case .warning(let message):
                throw ImageError(.corruptJPEG, "damaged JPEG data: \(message)")
            case .fatal:
                throw Self.classify(failure)
            }
        }
        var channels = format.channels
        if format == .cmyk {
            PixelOps.cmykToRGBInPlace(destination, count: scaledWidth * scaledHeight)
            channels = 3
        }
        let transposed = markers.orientation >= 5
        let image = ImageInfo(
            sourceWidth: transposed ? header.height : header.width,
            sourceHeight: transposed ? header.width : header.height,
            orientation: markers.orientation, dctScale: factor.text,
            width: transposed ? scaledHeight : scaledWidth, height: transposed ? scaledWidth : scaledHeight,
            damaged: damaged, decodeBands: bands)
        return Decoded(
            image: image, sourceWidth: header.width, sourceHeight: header.height, scaledWidth: scaledWidth,
            scaledHeight: scaledHeight, factor: factor, channels: channels)
    }

    private func resizeAndOrient(_ decoded: inout Decoded) throws {
        let size = options.size
        // The crop box in source pixels; a centred box is the same in stored and display orientation,
        // so resizing happens in stored orientation and only the S×S result is reoriented.
        let w = Double(decoded.sourceWidth)
        let h = Double(decoded.sourceHeight)
        var box: ResampleBox
        switch options.policy {
        case .centerCrop:
            let side = min(w, h)
            box = ResampleBox(x0: (w - side) / 2, y0: (h - side) / 2, x1: (w + side) / 2, y1: (h + side) / 2)
        case .stretch:
            box = ResampleBox(x0: 0, y0: 0, x1: w, y1: h)
        }
        // Into the coordinates of the scaled decode (which may be up to one pixel larger than w·num/den).
        let f = Double(decoded.factor.num) / Double(decoded.factor.den)
        box = ResampleBox(x0: box.x0 * f, y0: box.y0 * f, x1: box.x1 * f, y1: box.y1 * f)
        let resized = resizedBuffer.reserve(size * size * decoded.channels)
        resampler.resample(
            source: decodeBuffer.pointer, width: decoded.scaledWidth, height: decoded.scaledHeight,
            channels: decoded.channels, box: box, outWidth: size, outHeight: size, into: resized,
            parts: options.decodeThreads)
        let rgb = rgbBuffer.reserve(size * size * 3)
        PixelOps.orient(
            resized, side: size, channels: decoded.channels, orientation: decoded.image.orientation, into: rgb)
    }

    private func normalize(into output: UnsafeMutableBufferPointer<Float>) throws {
        let plane = options.size * options.size
        guard let out = output.baseAddress, output.count >= 3 * plane else {
            throw ImageError(.invalidOptions, "output buffer holds \(output.count) values, \(3 * plane) needed")
        }
        let rgb = rgbBuffer.pointer
        floatTable.withUnsafeBufferPointer { table in
            guard let t = table.baseAddress else { return }
            for i in 0..<plane {
                out[i] = t[Int(rgb[3 * i])]
                out[plane + i] = t[256 + Int(rgb[3 * i + 1])]
                out[2 * plane + i] = t[512 + Int(rgb[3 * i + 2])]
            }
        }
    }

    private func quantize(scale: Float, zeroPoint: Int32, into output: UnsafeMutableBufferPointer<Int8>) throws {
        let plane = options.size * options.size
        guard let out = output.baseAddress, output.count >= 3 * plane else {
            throw ImageError(.invalidOptions, "output buffer holds \(output.count) values, \(3 * plane) needed")
        }
        guard scale.isFinite, scale > 0 else {
            throw ImageError(.invalidOptions, "scale must be positive, got \(scale)")
        }
        if int8TableKey?.scale != scale || int8TableKey?.zeroPoint != zeroPoint {
            for i in 0..<768 { int8Table[i] = quantizeInt8(floatTable[i], scale: scale, zeroPoint: zeroPoint) }
            int8TableKey = (scale, zeroPoint)
        }
        let rgb = rgbBuffer.pointer
        int8Table.withUnsafeBufferPointer { table in
            guard let t = table.baseAddress else { return }
            for i in 0..<plane {
                out[i] = t[Int(rgb[3 * i])]
                out[plane + i] = t[256 + Int(rgb[3 * i + 1])]
                out[2 * plane + i] = t[512 + Int(rgb[3 * i + 2])]
            }
        }
    }

    // MARK: Helpers

    /// The smallest DCT scaling factor (at most 1/1) whose output still covers the S×S target: the
    /// shorter side must stay ≥ S, which is the condition for both policies (centre crop needs the
    /// shorter side ≥ S; stretch needs both sides ≥ S). Compared exactly (side·num ≥ S·den), so the
    /// decoded image is never upscaled afterwards unless the source itself is smaller than S.
    static func scalingFactor(width: Int, height: Int, size: Int) -> ScalingFactor {
        let shorter = min(width, height)
        return reducingFactors.first { shorter * $0.num >= size * $0.den } ?? ScalingFactor(num: 1, den: 1)
    }

    /// TurboJPEG's factors that do not enlarge, smallest first (computed once, so choosing allocates nothing).
    private static let reducingFactors: [ScalingFactor] = TurboJPEGDecoder.scalingFactors
        .filter { $0.num <= $0.den }
        .sorted { $0.num * $1.den < $1.num * $0.den }

    /// Maps a TurboJPEG failure to the module's error codes.
    static func classify(_ failure: TurboJPEGFailure) -> ImageError {
        let message: String
        switch failure {
        case .warning(let text), .fatal(let text): message = text
        }
        if message.contains("Not a JPEG file") { return ImageError(.notJPEG, message) }
        if message.contains("Maximum supported image dimension") { return ImageError(.tooLarge, message) }
        let unsupported = [
            "Unsupported", "unsupported", "not supported", "Could not determine subsampling", "has more than",
        ]
        if unsupported.contains(where: message.contains) {
            return ImageError(.unsupportedJPEG, message)
        }
        return ImageError(.corruptJPEG, "corrupt JPEG data: \(message)")
    }

    private func fileTooLarge(_ bytes: Int) -> ImageError {
        ImageError(.tooLarge, "file is \(bytes) bytes, above the limit of \(options.limits.maxFileBytes)")
    }

    /// Reads a whole file into `fileBuffer`, refusing files above the size limit before reading them and
    /// anything but a regular file (opened with `O_NONBLOCK`, so a FIFO is refused instead of blocking).
    private func readFile(_ path: String) throws -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw ImageError(.unreadable, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw ImageError(.unreadable, "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        if (status.st_mode & S_IFMT) == S_IFDIR { throw ImageError(.unreadable, "\(path) is a directory") }
        if (status.st_mode & S_IFMT) != S_IFREG { throw ImageError(.unreadable, "\(path) is not a regular file") }
        let limit = options.limits.maxFileBytes
        let expected = Int(status.st_size)
        if expected > limit { throw fileTooLarge(expected) }
        // Room for the expected size plus one byte, so a file that grew is noticed.
        var capacity = max(fileBuffer.capacity, min(expected, limit) + 1)
        var buffer = fileBuffer.reserve(capacity)
        var total = 0
        while true {
            if total == capacity {
                guard capacity <= limit else { throw fileTooLarge(total) }
                capacity = min(capacity * 2, limit + 1)
                buffer = fileBuffer.grow(to: capacity, keeping: total)
            }
            let n = read(fd, buffer + total, capacity - total)
            if n < 0 {
                if errno == EINTR { continue }
                throw ImageError(.unreadable, "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            total += n
        }
        if total > limit { throw fileTooLarge(total) }
        return total
    }
}
