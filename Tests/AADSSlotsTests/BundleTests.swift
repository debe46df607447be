import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSSlots

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct BundleCorpusTests {
    /// Every bad bundle of the corpus is refused with its code by `verify`.
    @Test func verifierRefusesEachBadBundleWithItsCode() throws {
        let verifier = try BundleVerifier(trustedDirectory: Fixtures.trusted)
        let (_, bundles) = try Fixtures.corpus()
        #expect(bundles.count >= 30)
        for entry in bundles {
            let file = try #require(entry["file"] as? String)
            let expected = entry["code"] as? String
            let floor = (entry["floor"] as? String).flatMap(SemVer.init)
            let got = code { try verifier.verify(path: Fixtures.bundles + "/" + file, floor: floor) }
            #expect(got == expected, "\(file): expected \(expected ?? "success"), got \(got ?? "success")")
        }
    }

    /// Every bad bundle is refused by `install` before anything reaches a slot: state.json, the active
    /// slot's files and the inactive slot stay exactly as they were.
    @Test func installRefusesEachBadBundleAndLeavesTheStoreUntouched() throws {
        let root = tempDirectory("corpus")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = SlotStore(root: root)
        let verifier = try BundleVerifier(trustedDirectory: Fixtures.trusted)
        let factory = try store.install(bundle: Fixtures.bundles + "/good.tar", verifier: verifier)
        #expect(factory.factory && factory.slot == .a && factory.version == "2.0.0")
        let stateBefore = try Data(contentsOf: URL(fileURLWithPath: store.statePath))
        let slotBefore = treeContents(store.bundlePath(.a))
        let (_, bundles) = try Fixtures.corpus()
        for entry in bundles {
            guard let expected = entry["code"] as? String, let file = entry["file"] as? String else { continue }
            let got = code { try store.install(bundle: Fixtures.bundles + "/" + file, verifier: verifier) }
            #expect(got == expected, "\(file)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: store.statePath)) == stateBefore, "\(file)")
            #expect(treeContents(store.bundlePath(.a)) == slotBefore, "\(file)")
            #expect(!FileManager.default.fileExists(atPath: store.bundlePath(.b)), "\(file)")
        }
        // Each refusal is journaled.
        let refused = store.journal.read().filter { $0.event == .installRefused }
        #expect(refused.count == bundles.filter { $0["code"] is String }.count)
    }

    @Test func installedFilesEqualTheArchivedBytes() throws {
        let root = tempDirectory("bytes")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = SlotStore(root: root)
        try store.install(
            bundle: Fixtures.bundles + "/good.tar", verifier: BundleVerifier(trustedDirectory: Fixtures.trusted))
        let files = treeContents(store.bundlePath(.a))
        let manifestData = try #require(files["manifest.json"])
        let manifest = try #require(try JSONSerialization.jsonObject(with: manifestData) as? [String: Any])
        let listed = try #require(manifest["files"] as? [[String: Any]])
        #expect(
            Set(files.keys) == Set(listed.compactMap { $0["path"] as? String } + ["manifest.json", "manifest.sig"]))
        for item in listed {
            let data = try #require(files[item["path"] as? String ?? ""])
            #expect(sha256Hex(data) == item["sha256"] as? String)
            #expect(data.count == item["size"] as? Int)
        }
        #expect(manifest["created_by"] as? String == "make-bundle-corpus")  // unknown fields kept
    }

    @Test func directoryBundlesRefuseLinksAndUnlistedFiles() throws {
        let dir = tempDirectory("dirbundle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scratch = try ScratchBundles(directory: dir)
        let bundle = try scratch.makeDirectory(version: "1.0.0")
        #expect(try scratch.verifier.verify(path: bundle).version.description == "1.0.0")
        symlink("/etc/passwd", bundle + "/link")
        #expect(code { try scratch.verifier.verify(path: bundle) } == "unsafe_entry")
        unlink(bundle + "/link")
        mkfifo(bundle + "/pipe", 0o644)
        #expect(code { try scratch.verifier.verify(path: bundle) } == "unsafe_entry")
        unlink(bundle + "/pipe")
        try Data("x".utf8).write(to: URL(fileURLWithPath: bundle + "/stray"))
        #expect(code { try scratch.verifier.verify(path: bundle) } == "unlisted_file")
    }
}

@Suite struct KeyAndPackTests {
    @Test func keygenWritesPrivateKeyWithMode0600AndPublicKey() throws {
        let dir = tempDirectory("keygen")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = BundleSigningKey()
        try key.write(to: dir + "/k", comment: "test")
        var info = stat()
        #expect(stat(dir + "/k", &info) == 0 && info.st_mode & 0o777 == 0o600)
        let reloaded = try BundleSigningKey(path: dir + "/k")
        #expect(reloaded.publicKey == key.publicKey)
        let pub = try BundlePublicKey(fileContents: Data(contentsOf: URL(fileURLWithPath: dir + "/k.pub")))
        #expect(pub.raw == key.publicKey.raw && pub.comment == "test")
        #expect(code { try key.write(to: dir + "/k") } == "bad_argument")  // never overwrites
        #expect(code { try BundlePublicKey(fileContents: Data("ssh-ed25519 AAAA".utf8)) } == "bad_key")
    }

    @Test func trustedKeysRotationAndRevocation() throws {
        let keys = try TrustedKeys(directory: Fixtures.trusted)
        // release-2025 and release-2026 are trusted; leaked-2025 (revoked.txt) and old-2024 (revoked/) are not.
        #expect(keys.trusted.count == 2)
        #expect(keys.revoked.count == 2)
        let empty = tempDirectory("nokeys")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(code { try TrustedKeys(directory: empty) } == "no_trusted_keys")
        #expect(code { try TrustedKeys(directory: empty + "/missing") } == "no_trusted_keys")
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: empty + "/broken.pub"))
        #expect(code { try TrustedKeys(directory: empty) } == "bad_key")
    }

    @Test func defaultTrustedDirectoryLookupOrder() throws {
        #expect(TrustedKeys.defaultDirectory(environment: ["AADS_TRUSTED_KEYS": "/x/keys"]) == "/x/keys")
        let prefix = tempDirectory("prefix")
        defer { try? FileManager.default.removeItem(atPath: prefix) }
        try FileManager.default.createDirectory(
            atPath: prefix + "/firmware-config/keys", withIntermediateDirectories: true)
        let found = TrustedKeys.defaultDirectory(environment: [:], executable: prefix + "/bin/aads-edge")
        #expect(
            found == "/etc/aads-edge/keys" && FileManager.default.fileExists(atPath: "/etc/aads-edge/keys")
                || found == prefix + "/firmware-config/keys")
    }

    @Test func packIsDeterministicAndVerifies() throws {
        let dir = tempDirectory("pack")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scratch = try ScratchBundles(directory: dir)
        let bundle = try scratch.makeDirectory(version: "3.1.4", payloadBytes: 5000)
        try BundlePacker.pack(directory: bundle, key: scratch.key, to: dir + "/one.tar")
        try BundlePacker.pack(directory: bundle, key: scratch.key, to: dir + "/two.tar")
        let one = try Data(contentsOf: URL(fileURLWithPath: dir + "/one.tar"))
        #expect(one == (try Data(contentsOf: URL(fileURLWithPath: dir + "/two.tar"))))
        let verified = try scratch.verifier.verify(path: dir + "/one.tar")
        #expect(verified.version.description == "3.1.4")
        // Sorted entries, mtime 0, uid/gid 0 (POSIX header fields read directly).
        let entries = try Ustar.read(DataByteSource(one))
        #expect(
            entries.map(\.path)
                == entries.map(\.path).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        for entry in entries {
            let h = one.subdata(in: Int(entry.dataOffset) - 512..<Int(entry.dataOffset))
            #expect(String(decoding: h[136..<147], as: UTF8.self) == "00000000000")
            #expect(String(decoding: h[108..<115], as: UTF8.self) == "0000000")
            #expect(String(decoding: h[100..<107], as: UTF8.self) == (entry.kind == .directory ? "0000755" : "0000644"))
        }
        // A directory whose files no longer match its manifest is not packed.
        try Data("changed".utf8).write(to: URL(fileURLWithPath: bundle + "/notes/readme.txt"))
        #expect(code { try BundlePacker.pack(directory: bundle, key: scratch.key, to: dir + "/three.tar") } != nil)
        #expect(!FileManager.default.fileExists(atPath: dir + "/three.tar"))
    }

    @Test func signatureFileFormats() throws {
        let key = BundleSigningKey()
        let message = Data("manifest".utf8)
        let signature = BundleSignature(signature: try key.sign(message), keyFingerprint: key.publicKey.fingerprint)
        let parsed = try BundleSignature.parse(signature.fileContents)
        #expect(parsed == signature)
        #expect(try BundleSignature.parse(signature.signature).signature == signature.signature)
        let verifier = BundleVerifier(trusted: TrustedKeys(trusted: [key.publicKey]))
        #expect(try verifier.checkSignature(message, parsed) == key.publicKey)
        #expect(code { try verifier.checkSignature(Data("other".utf8), parsed) } == "bad_signature")
        let stranger = BundleSigningKey()
        let foreign = BundleSignature(
            signature: try stranger.sign(message), keyFingerprint: stranger.publicKey.fingerprint)
        #expect(code { try verifier.checkSignature(message, foreign) } == "unknown_key")
        let revoking = BundleVerifier(trusted: TrustedKeys(trusted: [key.publicKey], revoked: [stranger.publicKey]))
        #expect(code { try revoking.checkSignature(message, foreign) } == "revoked_key")
    }

    @Test func manifestValidation() throws {
        func parse(_ text: String) -> String? { code { try BundleManifest.parse(Data(text.utf8)) } }
        let hash = String(repeating: "a", count: 64)
        #expect(parse(#"{"schema_version":1,"model_version":"1.0.0","files":[]}"#) == nil)
        #expect(parse(#"{"schema_version":2,"model_version":"1.0.0","files":[]}"#) == "bad_manifest")
        #expect(parse(#"{"schema_version":1.5,"model_version":"1.0.0","files":[]}"#) == "bad_manifest")
        #expect(parse(#"{"schema_version":1,"model_version":1,"files":[]}"#) == "bad_manifest")
        #expect(parse(#"[1,2]"#) == "bad_manifest")
        #expect(
            parse(#"{"schema_version":1,"model_version":"1.0.0","files":[{"path":"a","sha256":"zz","size":1}]}"#)
                == "bad_manifest")
        #expect(
            parse(#"{"schema_version":1,"model_version":"1.0.0","files":[{"path":"a","sha256":"\#(hash)","size":-1}]}"#)
                == "bad_manifest")
        #expect(
            parse(#"{"schema_version":1,"model_version":"1.0.0","files":[{"path":"/a","sha256":"\#(hash)","size":1}]}"#)
                == "unsafe_path")
        #expect(
            parse(
                #"{"schema_version":1,"model_version":"1.0.0","files":[{"path":"a","sha256":"\#(hash)","size":1},{"path":"a","sha256":"\#(hash)","size":1}]}"#
            ) == "bad_manifest")
        #expect(
            parse(
                #"{"schema_version":1,"model_version":"1.0.0","files":[{"path":"manifest.sig","sha256":"\#(hash)","size":1}]}"#
            ) == "bad_manifest")
        let manifest = try BundleManifest.parse(
            Data(
                #"{"schema_version":1,"model_version":"1.2.3","files":[],"baseline_metrics":{"acc":0.9},"flag":true}"#
                    .utf8))
        #expect(manifest.fields["baseline_metrics"] == .object(["acc": .number(0.9)]))
        #expect(manifest.fields["flag"] == .bool(true))
    }
}
