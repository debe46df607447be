// libFuzzer target for the slot store's `state.json` reader: the StoreState decoder, the invariant
// check, a write and read back with the store's own encoder settings, and SlotStore.loadState on a store
// whose state.json holds the input. Each failure must be a SlotError with one line.
//
// Build and run (see tools/fuzz-smoke):
//   swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
//       --product fuzz-state --scratch-path .build-fuzz
//   .build-fuzz/release/fuzz-state CORPUS_DIR Fuzz/corpus/state -max_len=4096
import AADSCore
import AADSSlots
import Foundation

#if FUZZING
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<Int32>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
    ) -> Int32

    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzState(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        Target.run(Data(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)))
        return 0
    }

    enum Target {
        /// A private store root; only its state.json changes between inputs (the slots stay empty).
        static let root: String = {
            let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
            var template = Array("\(base)/aads-fuzz-state-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else { fatalError("cannot create a temporary directory") }
            return String(cString: made)
        }()
        static let store = SlotStore(root: root)

        static func check(_ error: any Error) {
            guard let slotError = error as? SlotError else { fatalError("untyped error \(error)") }
            guard !slotError.message.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" }) else {
                fatalError("multi-line message: \(slotError.message)")
            }
        }

        static func run(_ bytes: Data) {
            // 1. The decoder: whatever it accepts must survive the store's write and read back unchanged.
            if let state = try? JSONDecoder().decode(StoreState.self, from: bytes) {
                _ = state.violations()
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
                if let written = try? encoder.encode(state) {
                    guard let again = try? JSONDecoder().decode(StoreState.self, from: written), again == state else {
                        fatalError(
                            "state.json does not read back as written: \(String(decoding: written, as: UTF8.self))")
                    }
                }
            }
            // 2. The store's reader on a state.json holding the input.
            do { try bytes.write(to: URL(fileURLWithPath: store.statePath)) } catch {
                fatalError("cannot write \(store.statePath)")
            }
            do {
                _ = try store.loadState().violations()
            } catch {
                check(error)
            }
        }
    }

    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    // libFuzzer ends the process itself at its time or run limit: the directory goes at exit.
    atexit { try? FileManager.default.removeItem(atPath: Target.root) }
    exit(runFuzzerDriver(&argc, &argv) { data, size in fuzzState(data, size) })
#else
    print(
        """
        fuzz-state is a libFuzzer target. Build it with:
          swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \\
              --product fuzz-state --scratch-path .build-fuzz
        or run tools/fuzz-smoke state.
        """)
#endif
