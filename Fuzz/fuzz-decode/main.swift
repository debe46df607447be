// libFuzzer target for the JPEG decode path: header checks, EXIF parsing, scaled decode, damaged-data
// handling, resize, orientation, normalisation and quantization.
//
// Build and run (see tools/fuzz-smoke):
//   swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
//       --product fuzz-decode --scratch-path .build-fuzz
//   .build-fuzz/release/fuzz-decode CORPUS_DIR Fuzz/corpus/decode -max_len=4096
import AADSImage
import Foundation

#if FUZZING
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<Int32>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
    ) -> Int32

    // The entry point libFuzzer's own main.o refers to; defining it keeps the link complete. This file's
    // top-level code is the real entry point and hands control to LLVMFuzzerRunDriver below.
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzDecode(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        Target.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
        return 0
    }

    /// Preprocessors shared by every input (the fuzzer calls back on one thread). Small limits keep
    /// each input cheap: a header claiming more than 128×128 pixels is refused as `too_large` (the
    /// same check that refuses a 100-megapixel bomb on the device) instead of costing a full decode and
    /// resize. Output sides of 16 and 11 still reach every DCT scale (1/8 needs a side of at least 8 × S).
    enum Target {
        static let limits = DecodeLimits(maxPixels: 1 << 14, maxFileBytes: 1 << 16)
        nonisolated(unsafe) static let strict = ImagePreprocessor(
            options: PreprocessOptions(size: 16, policy: .centerCrop, limits: limits))
        nonisolated(unsafe) static let lenient = ImagePreprocessor(
            options: PreprocessOptions(size: 11, policy: .stretch, allowDamaged: true, limits: limits))
        nonisolated(unsafe) static var floats = [Float](repeating: 0, count: 3 * 16 * 16)
        nonisolated(unsafe) static var int8s = [Int8](repeating: 0, count: 3 * 11 * 11)

        static let codes: Set<String> = ["unreadable", "not_jpeg", "corrupt_jpeg", "too_large", "unsupported_jpeg"]

        static func run(_ bytes: UnsafeRawBufferPointer) {
            do {
                _ = try floats.withUnsafeMutableBufferPointer { try strict.process(jpeg: bytes, into: $0) }
            } catch let error as ImageError {
                guard codes.contains(error.code) else { fatalError("unexpected code \(error.code)") }
                guard !error.message.contains("\n") else { fatalError("multi-line message") }
            } catch {
                fatalError("untyped error \(error)")
            }
            do {
                _ = try int8s.withUnsafeMutableBufferPointer {
                    try lenient.processQuantized(jpeg: bytes, scale: 0.0157, zeroPoint: -1, into: $0)
                }
            } catch let error as ImageError {
                guard codes.contains(error.code) else { fatalError("unexpected code \(error.code)") }
            } catch {
                fatalError("untyped error \(error)")
            }
        }
    }

    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(runFuzzerDriver(&argc, &argv) { data, size in fuzzDecode(data, size) })
#else
    print(
        """
        fuzz-decode is a libFuzzer target. Build it with:
          swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \\
              --product fuzz-decode --scratch-path .build-fuzz
        or run tools/fuzz-smoke.
        """)
#endif
