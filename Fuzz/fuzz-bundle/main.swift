// libFuzzer driver for the bundle readers: the ustar reader, the manifest parser, the signature
// file parser and the payload checks. Build and run with `tools/fuzz-smoke bundle`.
#if FUZZING
    import AADSSlots
    import Foundation

    /// Small limits so that hostile size fields are refused quickly instead of allocating.
    let limits = BundleLimits(maxFileSize: 1 << 20, maxTotalSize: 4 << 20, maxEntries: 256, maxManifestSize: 1 << 16)
    let fuzzKey = (try? BundleSigningKey(seed: Data(repeating: 7, count: 32)))?.publicKey
    let verifier = BundleVerifier(trusted: TrustedKeys(trusted: [fuzzKey].compactMap { $0 }), limits: limits)

    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzBundle(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
        let data = Data(bytes: start, count: count)
        // 1. The archive reader and everything the verifier does with what it lists.
        if let reader = try? BundleReader(archive: DataByteSource(data), limits: limits) {
            for entry in reader.entries where entry.kind == .file { _ = try? reader.read(entry) }
            _ = try? verifier.verify(reader: reader, floor: SemVer("1.0.0"))
            // Past the signature too: the manifest inside the archive against its files.
            if let entry = reader.entry("manifest.json"), let manifestData = try? reader.read(entry),
                let manifest = try? BundleManifest.parse(manifestData, limits: limits)
            {
                _ = try? verifier.checkPayload(manifest, reader: reader)
            }
        }
        // 2. The same bytes as a manifest, a signature file, a version and a public key.
        _ = try? BundleManifest.parse(data, limits: limits)
        if let signature = try? BundleSignature.parse(data) { _ = try? verifier.checkSignature(data, signature) }
        _ = SemVer(String(decoding: data.prefix(300), as: UTF8.self))
        _ = try? BundlePublicKey(fileContents: data)
        return 0
    }

    /// libFuzzer's entry when the program has its own `main` (SwiftPM provides it for executables).
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
    ) -> CInt

    var fuzzArgc = CommandLine.argc
    var fuzzArgv = CommandLine.unsafeArgv
    exit(runFuzzerDriver(&fuzzArgc, &fuzzArgv, fuzzBundle))
#else
    print("build with -DFUZZING to get the libFuzzer driver (see tools/fuzz-smoke bundle)")
#endif
