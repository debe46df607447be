import AADSCore
import AADSSlots
import ArgumentParser
import Foundation

/// `aads-edge bundle`: keys, packing and verification of signed model bundles.
struct BundleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle",
        abstract: "Create signing keys, pack and verify signed bundles.",
        subcommands: [Keygen.self, Sign.self, Pack.self, Verify.self]
    )

    struct Keygen: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new Ed25519 key to KEY (mode 0600) and its public half to KEY.pub.")

        @Option(name: .long, help: "Path of the private key to create.") var out: String
        @Option(name: .long, help: "Comment stored in KEY.pub.") var comment = ""
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            let key = BundleSigningKey()
            try key.write(to: out, comment: comment)
            if output.json {
                print(
                    JSONLine.encode([
                        "key": out, "public_key": out + ".pub", "fingerprint": key.publicKey.fingerprint,
                    ]))
            } else {
                print("wrote \(out) and \(out).pub (\(key.publicKey.fingerprint))")
            }
        }
    }

    struct Sign: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a bundle directory in place: write manifest.sig for its manifest.json.",
            discussion: """
                Every file manifest.json lists is checked first (present, size and sha256, nothing unlisted); \
                then manifest.sig is written and the directory verified with the key's public half. Sign after \
                the last change to manifest.json (baseline_metrics, changelog): any later edit voids the \
                signature. `bundle pack` signs the same way and writes the ustar file.
                """)

        @Argument(help: "Bundle directory (manifest.json and the files it lists).") var directory: String
        @Option(name: .long, help: "Private key written by `bundle keygen`.") var key: String
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            let signing = try BundleSigningKey(path: key)
            let path = directory + "/" + BundleManifest.manifestName
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SlotError(.badManifest, "no manifest.json in \(directory)")
            }
            let verifier = BundleVerifier(trusted: TrustedKeys(trusted: [signing.publicKey]))
            try verifier.checkPayload(BundleManifest.parse(data), reader: BundleReader(directory: directory))
            try BundlePacker.sign(directory: directory, key: signing)
            let verified = try verifier.verify(path: directory)
            if output.json {
                print(
                    JSONLine.encode([
                        "bundle": directory, "model_version": verified.version.description,
                        "files": verified.manifest.files.count, "signer": signing.publicKey.fingerprint,
                    ]))
            } else {
                print(
                    "signed \(directory)/manifest.json: model_version \(verified.version), "
                        + "\(verified.manifest.files.count) files, key \(signing.publicKey.fingerprint)")
            }
        }
    }

    struct Pack: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a bundle directory's manifest.json and write one deterministic ustar file.")

        @Argument(help: "Bundle directory (manifest.json and the files it lists).") var directory: String
        @Option(name: .long, help: "Private key written by `bundle keygen`.") var key: String
        @Option(name: .long, help: "Output file.") var out: String
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            let signing = try BundleSigningKey(path: key)
            let manifest = try BundlePacker.pack(directory: directory, key: signing, to: out)
            if output.json {
                print(
                    JSONLine.encode([
                        "bundle": out, "model_version": manifest.modelVersion.description,
                        "files": manifest.files.count, "signer": signing.publicKey.fingerprint,
                    ]))
            } else {
                print("packed \(out): model_version \(manifest.modelVersion), \(manifest.files.count) files")
            }
        }
    }

    struct Verify: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify a bundle file or directory: signature, manifest, every file's size and hash.")

        @Argument(help: "Bundle file (ustar) or directory.") var bundle: String
        @Option(name: .long, help: "Trusted keys directory (default: see `slot install --help`).") var trusted: String?
        @Option(name: .long, help: "Refuse a model_version below this version.") var floor: String?
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            let verifier = try BundleVerifier(trustedDirectory: trusted ?? TrustedKeys.defaultDirectory())
            let floorVersion = try floor.map { text -> SemVer in
                guard let v = SemVer(text) else { throw SlotError(.badArgument, "--floor is not a version") }
                return v
            }
            let verified = try verifier.verify(path: bundle, floor: floorVersion)
            if output.json {
                print(
                    JSONLine.encode([
                        "bundle": bundle, "valid": true, "model_version": verified.version.description,
                        "files": verified.manifest.files.count, "signer": verified.signer.fingerprint,
                        "manifest_sha256": verified.manifestSHA256,
                    ]))
            } else {
                print(
                    "ok: \(bundle) model_version \(verified.version), \(verified.manifest.files.count) files, "
                        + "signed by \(verified.signer.fingerprint)")
            }
        }
    }
}
