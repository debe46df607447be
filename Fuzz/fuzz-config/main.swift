// libFuzzer target for the configuration readers: `device.json` (DeviceConfig.decode: JSON, duplicate and
// unknown keys, nulls, types and ranges, naming the key) and `health.json` (HealthPolicy.load), then the
// decision matrix with every policy that loads. Each failure must be a `bad_config` error with one line.
//
// Build and run (see tools/fuzz-smoke):
//   swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
//       --product fuzz-config --scratch-path .build-fuzz
//   .build-fuzz/release/fuzz-config CORPUS_DIR firmware-config -max_len=4096
import AADSCore
import AADSDevice
import AADSHealth
import Foundation

#if FUZZING
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<Int32>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
    ) -> Int32

    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        Target.run(Data(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)))
        return 0
    }

    enum Target {
        /// A private directory for the policy file (the health reader takes a path).
        static let directory: String = {
            let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
            var template = Array("\(base)/aads-fuzz-config-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else { fatalError("cannot create a temporary directory") }
            return String(cString: made)
        }()
        static let policyPath = directory + "/health.json"

        /// A candidate on the edge of the shipped thresholds, against a reference with every key.
        static let candidate = HealthMetrics(
            cropRoutingAccuracy: 0.9, adapterAccuracy: 0.88, oodAuroc: 0.91, oodFpr: 0.06, latencyMs: 45,
            latencyP95Ms: 60, memoryPerAdapterMb: 2.5, peakRssMb: 300, errorRate: 0.004, images: 200)
        static let reference: [String: Double] = [
            "crop_routing_accuracy": 0.91, "adapter_accuracy": 0.9, "ood_fpr": 0.05, "latency_ms": 40,
            "memory_per_adapter_mb": 2,
        ]

        static func check(_ error: any Error) {
            guard let coded = error as? any CodedError else { fatalError("untyped error \(error)") }
            guard coded.code == "bad_config" else { fatalError("unexpected code \(coded.code)") }
            guard !coded.message.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" }) else {
                fatalError("multi-line message: \(coded.message)")
            }
        }

        static func run(_ bytes: Data) {
            do {
                let config = try DeviceConfig.decode(bytes)
                // What the parser promises to the service: ranges the rest of the code relies on.
                guard config.queue.capacity >= 1, config.capture.timeoutSeconds <= 3_600,
                    config.capture.command.contains("{path}"), config.ab.alpha > 0
                else { fatalError("accepted out-of-range config: \(config)") }
            } catch {
                check(error)
            }
            do { try bytes.write(to: URL(fileURLWithPath: policyPath)) } catch {
                fatalError("cannot write \(policyPath)")
            }
            do {
                let policy = try HealthPolicy.load(path: policyPath)
                _ = policy.evaluate(candidate: candidate, reference: reference, crashFrequency: 0.002).action
            } catch {
                check(error)
            }
        }
    }

    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    // libFuzzer ends the process itself at its time or run limit: the directory goes at exit.
    atexit { try? FileManager.default.removeItem(atPath: Target.directory) }
    exit(runFuzzerDriver(&argc, &argv) { data, size in fuzzConfig(data, size) })
#else
    print(
        """
        fuzz-config is a libFuzzer target. Build it with:
          swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \\
              --product fuzz-config --scratch-path .build-fuzz
        or run tools/fuzz-smoke config.
        """)
#endif
