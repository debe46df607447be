import AADSCore
import AADSImage
import AADSInference
import ArgumentParser
import Foundation

extension Rounding: ExpressibleByArgument {}

/// `--rounding`, shared by the commands that run an int8 model.
struct RoundingOption: ParsableArguments {
    @Option(
        help:
            "Rounding of near-half int8 results: exact, or onnxruntime (its float QDQ arithmetic, to verify against it)."
    )
    var rounding = EngineOptions().rounding
}

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Inspect, run and benchmark ONNX models (int8 QDQ or float).",
        subcommands: [Info.self, Run.self, Bench.self]
    )

    /// A model that cannot be read or run fails its check: exit 1.
    struct Info: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Inputs, outputs, operators, parameters, MACs and whether every node is supported.")

        @Argument(help: "The .onnx model.") var model: String
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.always(.refused)

        func body() throws {
            let info = try InferenceModel.inspect(path: model)
            if output.json {
                var o = info.jsonObject
                o["model"] = model
                print(JSONLine.encode(o))
            } else {
                print(
                    "model: \(model)  opset \(info.opset)  producer \(info.producer.isEmpty ? "-" : info.producer)")
                for t in info.inputs { print("input  \(describe(t))") }
                for t in info.outputs { print("output \(describe(t))") }
                print("parameters: \(info.parameters)  MACs: \(info.macs)")
                print(
                    "operators: "
                        + info.operators.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(
                            separator: " "))
                if !info.kernels.isEmpty {
                    print(
                        "kernels: "
                            + info.kernels.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(
                                separator: " "))
                }
                print("supported: \(info.supported ? "yes" : "no")")
                for r in info.reasons { print("  - \(r)") }
            }
            if !info.supported { throw Exit.failure }
        }
    }

    struct Run: AADSCommand {
        static let configuration = CommandConfiguration(abstract: "Run a model on .npy inputs and print top-K scores.")

        @Argument(help: "The .onnx model.") var model: String
        @Option(name: .long, help: "Input tensor as .npy (NAME=PATH when the model has several inputs). Repeatable.")
        var input: [String] = []
        @Option(
            name: .long, parsing: .upToNextOption, help: "JPEG files to preprocess and run, one inference each.")
        var image: [String] = []
        @Option(name: .long, help: "Image preprocessing: output size.") var size: Int?
        @Option(name: .long, help: "Image preprocessing: resize policy.") var policy: String?
        @Option(name: .long, help: "Image preprocessing: per-channel mean, e.g. 127,127,127.") var mean: String?
        @Option(name: .long, help: "Image preprocessing: per-channel std, e.g. 128,128,128.") var std: String?
        @Option(
            name: .customLong("output"),
            help: ArgumentHelp("Tensor to return (graph output or any intermediate). Repeatable.", valueName: "output"))
        var tensors: [String] = []
        @Option(name: .long, help: "How many top scores to print per classifier output.") var top: Int = 5
        @Option(name: .customLong("save-npy"), help: "Directory to write every output as float32 .npy.")
        var saveNpy: String?
        @Option(name: .long, help: "Threads per inference.") var threads: Int = 1
        @OptionGroup var int8: RoundingOption
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.always(.refused)

        func body() throws {
            guard input.isEmpty != image.isEmpty else {
                throw InferenceError(.badInput, "give --input X.npy or --image JPEG")
            }
            let m = try InferenceModel(path: model, options: EngineOptions(threads: threads, rounding: int8.rounding))
            let names = tensors.isEmpty ? m.outputs.map(\.name) : tensors
            for (stem, feeds) in try inputs(for: m) {
                try runOnce(m, feeds: feeds, stem: stem, names: names, json: output.json)
            }
        }

        /// One feed per `--image` file, or one feed from all `--input` files.
        func inputs(for m: InferenceModel) throws -> [(String, [String: Tensor])] {
            let inputName = m.inputs.first?.name ?? "input"
            guard image.isEmpty else {
                var options = PreprocessOptions()
                options.size =
                    size ?? m.inputs.first.flatMap { $0.shape.count == 4 ? $0.shape[3] : nil } ?? options.size
                if let policy {
                    guard let parsed = ResizePolicy(rawValue: policy) else {
                        throw InferenceError(.badInput, "--policy must be center-crop or stretch")
                    }
                    options.policy = parsed
                }
                if let mean { options.mean = try parseFloats(mean, "--mean") }
                if let std { options.std = try parseFloats(std, "--std") }
                let preprocessor = ImagePreprocessor(options: options)
                return try image.map { path in
                    let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
                    return (stem, [inputName: try preprocessor.process(path: path).tensor])
                }
            }
            var feeds: [String: Tensor] = [:]
            var stem = "input"
            for spec in input {
                var name = inputName
                var path = spec
                if let eq = spec.firstIndex(of: "="), !FileManager.default.fileExists(atPath: spec) {
                    name = String(spec[..<eq])
                    path = String(spec[spec.index(after: eq)...])
                }
                feeds[name] = Tensor(try NPY.read(path))
                stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            }
            return [(stem, feeds)]
        }

        func parseFloats(_ text: String, _ option: String) throws -> [Float] {
            let values = text.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else {
                throw InferenceError(.badInput, "\(option) takes numbers separated by commas")
            }
            return values.compactMap { $0 }
        }

        func runOnce(_ m: InferenceModel, feeds: [String: Tensor], stem: String, names: [String], json: Bool) throws {
            let clock = Stopwatch()
            let results = try m.run(feeds, outputs: names)
            let ms = clock.elapsedMs
            var outObjects: [String: Any] = [:]
            for name in names {
                guard let t = results[name] else { continue }
                var o: [String: Any] = ["shape": t.shape]
                let classifier = t.shape.count <= 2 && (t.shape.last ?? 0) > 1
                if classifier {
                    let best = InferenceModel.topK(t, k: top)
                    o["top"] = best.map { [$0.index, Double($0.score)] }
                    if !json {
                        print(
                            "\(stem) \(name) \(t.shape): "
                                + best.map { "\($0.index) (\(String(format: "%.4f", $0.score)))" }.joined(
                                    separator: ", "))
                    }
                } else if !json {
                    print("\(stem) \(name) \(t.shape)")
                }
                if let dir = saveNpy {
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                    let file = "\(dir)/\(stem).\(name.replacingOccurrences(of: "/", with: "_")).npy"
                    try NPY.write(t.npy, to: file)
                    o["npy"] = file
                }
                outObjects[name] = o
            }
            if json {
                print(
                    JSONLine.encode([
                        "model": model, "input": stem, "outputs": outObjects, "ms": JSONLine.rounded(ms),
                        "kernel": m.kernelVariant,
                    ]))
            } else {
                print(
                    "time: \(String(format: "%.2f", ms)) ms (\(m.kernelVariant), \(threads) thread\(threads == 1 ? "" : "s"))"
                )
            }
        }
    }

    struct Bench: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Latency percentiles, MACs/s and peak RSS of a model.")

        @Argument(help: "The .onnx model.") var model: String
        @Option(name: .long, help: "Threads per inference.") var threads: Int = 1
        @Option(name: .long, help: "Untimed runs first.") var warmup: Int = 5
        @Option(name: .long, help: "Timed runs.") var iterations: Int = 50
        @Flag(
            name: .long,
            help: "Also print the time of the slowest layers (with --json: of each kind of layer, as profile_ms).")
        var profile = false
        @OptionGroup var int8: RoundingOption
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.always(.refused)

        func body() throws {
            let m = try InferenceModel(path: model, options: EngineOptions(threads: threads, rounding: int8.rounding))
            var byKind: [String: Double] = [:]
            if profile {
                let rows = try m.profile(iterations: iterations)
                for r in rows { byKind[r.kind, default: 0] += r.ms }
                if !output.json {
                    let total = rows.reduce(0) { $0 + $1.ms }
                    print(
                        String(format: "steps total %.3f ms; by kind: ", total)
                            + byKind.sorted { $0.value > $1.value }.map { String(format: "%@ %.3f", $0.key, $0.value) }
                            .joined(separator: ", "))
                    for r in rows.prefix(15) { print(String(format: "%8.3f ms  %-12@ %@", r.ms, r.kind, r.node)) }
                }
            }
            let r = try m.benchmark(warmup: warmup, iterations: iterations)
            if output.json {
                var o = r.jsonObject
                o["model"] = model
                o["macs"] = m.info.macs
                o["model_mb"] = JSONLine.rounded(Double(fileSize(model)) / 1_048_576, 2)
                if profile { o["profile_ms"] = byKind.mapValues { JSONLine.rounded($0, 4) } }
                print(JSONLine.encode(o))
            } else {
                print(
                    String(
                        format: "p50 %.3f ms  p95 %.3f ms  min %.3f ms  (%d runs, %d thread%@, %@)", r.p50Ms,
                        r.p95Ms, r.minMs, r.iterations, threads, threads == 1 ? "" : "s", r.kernel))
                print(
                    String(format: "%.2f GMAC/s", r.macsPerSecond / 1e9)
                        + (r.peakRSSMB.map { String(format: "  peak RSS %.1f MB", $0) } ?? ""))
            }
        }
    }
}

private func describe(_ t: TensorInfo) -> String {
    var s = "\(t.name) \(t.shape) \(t.elementType)"
    if let scale = t.scale, let zp = t.zeroPoint { s += "  int8 scale \(scale) zero point \(zp)" }
    return s
}

/// The file's size in bytes (0 if it cannot be read). A plain `stat`: the benchmark reports the process's
/// peak memory, and file attributes through Foundation would look up owner and group names as well.
private func fileSize(_ path: String) -> Int {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : 0
}
