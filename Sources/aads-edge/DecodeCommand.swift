import AADSCore
import AADSImage
import ArgumentParser
import Foundation

/// `aads-edge decode`: JPEG files → model input tensors, with per-file decode facts and timings.
struct DecodeCommand: AADSCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode JPEGs into normalised float32 NCHW tensors and report what was done.",
        discussion: """
            Exit status: 0 when every file decoded, 1 when any failed, 2 on usage errors.
            Error codes: unreadable, not_jpeg, corrupt_jpeg, too_large, unsupported_jpeg.
            """)

    @Argument(help: "JPEG files.")
    var files: [String] = []

    @Option(help: "Output side S; the tensor is [1, 3, S, S].")
    var size = 224

    @Option(help: "center-crop (shorter side to S, centre S×S) or stretch (whole picture to S×S).")
    var policy = ResizePolicy.centerCrop.rawValue

    @Option(help: "Per-channel mean in pixel units: one value or R,G,B.")
    var mean = "127"

    @Option(help: "Per-channel standard deviation in pixel units: one value or R,G,B.")
    var std = "128"

    @Flag(help: "Accept images whose compressed data is damaged (they are flagged as damaged).")
    var allowDamaged = false

    @Option(help: "Refuse JPEGs with more pixels than this (checked from the header).")
    var maxPixels = DecodeLimits().maxPixels

    @Option(help: "Refuse files larger than this many MiB.")
    var maxFileMb = DecodeLimits().maxFileBytes >> 20

    @Option(help: "Write each tensor as DIR/<name>.npy (float32, [1, 3, S, S]).")
    var saveNpy: String?

    @Option(help: "Write each resized S×S RGB image as DIR/<name>.ppm.")
    var savePpm: String?

    @Option(
        help:
            "Decode threads: a JPEG with restart markers is decoded in bands at once, and any resize is cut into bands (same pixels)."
    )
    var threads = 1

    @Option(help: "Decode each file N times and report the median timings.")
    var `repeat` = 1

    @OptionGroup var output: OutputOptions

    static let errorPolicy = ErrorPolicy.always(.couldNotRun)

    func body() throws {
        let options = try makeOptions()
        let preprocessor = ImagePreprocessor(options: options)
        let nameWidth = max(4, files.map(\.count).max() ?? 0)
        if !output.json {
            print(
                pad("file", nameWidth), pad("source", 11), pad("orient", 6), pad("scale", 5), pad("decoded", 11),
                pad("decode_ms", 9, right: true), pad("prep_ms", 8, right: true))
        }
        var failed = false
        for file in files {
            do {
                var decodeMs: [Double] = []
                var preprocessMs: [Double] = []
                var result: PreprocessedImage?
                for _ in 0..<self.repeat {
                    let image = try preprocessor.process(path: file)
                    decodeMs.append(image.decodeMs)
                    preprocessMs.append(image.preprocessMs)
                    result = image
                }
                guard let result else { continue }
                try save(result, rgb: preprocessor.lastImageRGB(), file: file)
                let info = result.info
                let decode = median(decodeMs)
                let prep = median(preprocessMs)
                if output.json {
                    print(
                        JSONLine.encode([
                            "file": file, "source_width": info.sourceWidth, "source_height": info.sourceHeight,
                            "orientation": info.orientation, "dct_scale": info.dctScale, "width": info.width,
                            "height": info.height, "damaged": info.damaged, "decode_ms": JSONLine.rounded(decode),
                            "preprocess_ms": JSONLine.rounded(prep), "decode_bands": info.decodeBands,
                        ]))
                } else {
                    print(
                        pad(file, nameWidth), pad("\(info.sourceWidth)x\(info.sourceHeight)", 11),
                        pad("\(info.orientation)", 6), pad(info.dctScale, 5),
                        pad("\(info.width)x\(info.height)", 11), pad(String(format: "%.2f", decode), 9, right: true),
                        pad(String(format: "%.2f", prep), 8, right: true) + (info.damaged ? "  damaged" : ""))
                }
            } catch {
                failed = true
                let coded = AnyCodedError(error)
                if output.json {
                    report(error, json: true, extra: ["file": file])
                } else {
                    print(pad(file, nameWidth), "error \(coded.code): \(coded.message)")
                }
            }
        }
        if failed { throw Exit.failure }
    }

    private func makeOptions() throws -> PreprocessOptions {
        guard let policy = ResizePolicy(rawValue: policy) else {
            throw ImageError(.invalidOptions, "--policy must be center-crop or stretch, got \(self.policy)")
        }
        guard !files.isEmpty else { throw ImageError(.invalidOptions, "no JPEG files given") }
        guard self.repeat >= 1 else { throw ImageError(.invalidOptions, "--repeat must be at least 1") }
        guard maxFileMb >= 1, maxFileMb <= Int.max >> 21 else {
            throw ImageError(.invalidOptions, "--max-file-mb must be at least 1")
        }
        let options = PreprocessOptions(
            size: size, policy: policy, mean: try floats(mean, "--mean"), std: try floats(std, "--std"),
            allowDamaged: allowDamaged, limits: DecodeLimits(maxPixels: maxPixels, maxFileBytes: maxFileMb << 20),
            decodeThreads: threads)
        try options.validate()
        return options
    }

    private func floats(_ text: String, _ name: String) throws -> [Float] {
        let values = text.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else {
            throw ImageError(.invalidOptions, "\(name) needs one number or three comma-separated numbers, got \(text)")
        }
        return values.compactMap { $0 }
    }

    private func save(_ image: PreprocessedImage, rgb: [UInt8], file: String) throws {
        let stem = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
        if let saveNpy {
            try FileManager.default.createDirectory(atPath: saveNpy, withIntermediateDirectories: true)
            try NPY.write(image.tensor.npy, to: (saveNpy as NSString).appendingPathComponent(stem + ".npy"))
        }
        if let savePpm {
            try FileManager.default.createDirectory(atPath: savePpm, withIntermediateDirectories: true)
            let side = image.tensor.shape.last ?? 0
            var data = Data("P6\n\(side) \(side)\n255\n".utf8)
            data.append(contentsOf: rgb)
            try AtomicFile.write(data, to: (savePpm as NSString).appendingPathComponent(stem + ".ppm"))
        }
    }
}

private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

private func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - text.count))
    return right ? fill + text : text + fill
}
