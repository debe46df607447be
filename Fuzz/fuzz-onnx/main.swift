// libFuzzer target for the ONNX loader: protobuf parsing, graph validation (opsets, DAG, initializers, shapes,
// sizes), QDQ lowering and weight prepacking; models that load and are small are also run once.
//
// Build and run (see tools/fuzz-smoke):
//   swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
//       --product fuzz-onnx --scratch-path .build-fuzz
//   .build-fuzz/release/fuzz-onnx CORPUS_DIR Tests/Fixtures/inference -max_len=131072
import AADSCore
import AADSInference
import Foundation

#if FUZZING
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<Int32>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
    ) -> Int32

    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzONNX(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        Target.run(Data(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)))
        return 0
    }

    enum Target {
        static let codes: Set<String> = [
            "bad_model", "unsupported_model", "unsupported_operator", "missing_initializer", "shape_mismatch", "cycle",
            "too_large", "bad_input", "unknown_tensor",
        ]

        static func check(_ error: any Error) {
            guard let e = error as? InferenceError else { fatalError("untyped error \(error)") }
            guard codes.contains(e.code) else { fatalError("unexpected code \(e.code)") }
            guard !e.message.contains("\n") else { fatalError("multi-line message: \(e.message)") }
        }

        static func run(_ bytes: Data) {
            do {
                _ = try InferenceModel.inspect(data: bytes)
            } catch {
                check(error)
            }
            do {
                let model = try InferenceModel(data: bytes)
                // Run only models that are cheap to run.
                let elements = model.inputs.map { $0.shape.reduce(1, *) }.reduce(0, +)
                guard model.info.macs < 20_000_000, elements < 1_000_000 else { return }
                _ = try model.run(model.syntheticInputs())
            } catch {
                check(error)
            }
        }
    }

    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(runFuzzerDriver(&argc, &argv) { data, size in fuzzONNX(data, size) })
#else
    print(
        """
        fuzz-onnx is a libFuzzer target. Build it with:
          swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \\
              --product fuzz-onnx --scratch-path .build-fuzz
        or run tools/fuzz-smoke onnx.
        """)
#endif
