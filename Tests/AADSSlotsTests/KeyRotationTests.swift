import AADSSlots
import AADSTestSupport
import Foundation
import Testing

/// The repository's development key pair and the rotation away from the factory key.
@Suite struct KeyRotationTests {
    static let keys = Fixtures.repositoryPath("firmware-config/keys")
    static let devKey = keys + "/dev/aads-dev-2026.key"
    static let devFingerprint = "sha256:516b5b661a38e973bbd1aa0a66d8ce8bcadbd1874ee2f5d34ca86e6f6be845c2"
    static let factoryFingerprint = "sha256:534ccd94cc98b2d154b84aea29cc0ce60ac834fc56c386e213c22d86ca679a75"

    @Test func theDevelopmentKeyIsTrustedAndItsPrivateHalfIsNeverReadAsAKey() throws {
        let key = try BundleSigningKey(path: Self.devKey)
        #expect(key.publicKey.fingerprint == Self.devFingerprint)
        let pub = try BundlePublicKey(
            fileContents: try Data(contentsOf: URL(fileURLWithPath: Self.keys + "/aads-dev-2026.pub")))
        #expect(pub.raw == key.publicKey.raw)
        #expect(pub.comment.contains("DEVELOPMENT ONLY"))
        // The shipped directory trusts the development key, and the factory key only until it is revoked;
        // the private key in dev/ is not read.
        let trusted = Set(try TrustedKeys(directory: Self.keys).trusted.map(\.fingerprint))
        #expect(trusted.contains(Self.devFingerprint))
        #expect(trusted.isSubset(of: [Self.devFingerprint, Self.factoryFingerprint]))
        let devDirectory = try FileManager.default.contentsOfDirectory(atPath: Self.keys + "/dev")
        #expect(!devDirectory.contains { $0.hasSuffix(".pub") })
    }

    @Test func aBundleSignedByTheDevelopmentKeyFollowsTheKeyList() throws {
        let dir = tempDirectory("rotation")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scratch = try ScratchBundles(directory: dir + "/scratch", key: try BundleSigningKey(path: Self.devKey))
        let archive = try scratch.makeArchive(version: "1.1.0")
        let keys = dir + "/keys"
        try FileManager.default.createDirectory(atPath: keys + "/revoked", withIntermediateDirectories: true)
        // The factory key's .pub, wherever the shipped list keeps it (trusted, or already in revoked/).
        let factoryPub = try #require(
            [Self.keys + "/factory-2026.pub", Self.keys + "/revoked/factory-2026.pub"].first {
                FileManager.default.fileExists(atPath: $0)
            })
        try FileManager.default.copyItem(atPath: factoryPub, toPath: keys + "/factory-2026.pub")
        let store = SlotStore(root: dir + "/store")
        func install() -> String? {
            code { try store.install(bundle: archive, verifier: try BundleVerifier(trustedDirectory: keys)) }
        }

        // A device that trusts only the factory key refuses it.
        #expect(install() == "unknown_key")
        #expect(try store.loadState().active == nil)

        // Shipping the development key next to the factory key lets it in.
        try FileManager.default.copyItem(atPath: Self.keys + "/aads-dev-2026.pub", toPath: keys + "/aads-dev-2026.pub")
        #expect(install() == nil)
        #expect(try store.loadState()[.a].signer == Self.devFingerprint)

        // Revoked, by moving its .pub into revoked/ or by fingerprint, it is refused again.
        let again = try scratch.makeArchive(version: "1.2.0")
        try FileManager.default.moveItem(
            atPath: keys + "/aads-dev-2026.pub", toPath: keys + "/revoked/aads-dev-2026.pub")
        #expect(code { try BundleVerifier(trustedDirectory: keys).verify(path: again) } == "revoked_key")
        try FileManager.default.moveItem(
            atPath: keys + "/revoked/aads-dev-2026.pub", toPath: keys + "/aads-dev-2026.pub")
        #expect(code { try BundleVerifier(trustedDirectory: keys).verify(path: again) } == nil)
        try Data("\(Self.devFingerprint)  # development key\n".utf8).write(
            to: URL(fileURLWithPath: keys + "/revoked.txt"))
        #expect(
            code { try store.install(bundle: again, verifier: try BundleVerifier(trustedDirectory: keys)) }
                == "revoked_key")
        #expect(try store.loadState()[.b].effectiveState == .empty)
    }

    /// `bundle sign` writes manifest.sig in place; the signed directory verifies against the shipped keys.
    @Test func bundleSignSignsADirectoryInPlace() throws {
        guard TestBinary.isBuilt else {
            Issue.record("aads-edge not built at \(TestBinary.aadsEdge)")
            return
        }
        let dir = tempDirectory("sign")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scratch = try ScratchBundles(directory: dir)
        let bundle = try scratch.makeDirectory(version: "2.0.0")
        try FileManager.default.removeItem(atPath: bundle + "/manifest.sig")
        let signed = try TestBinary.run(["bundle", "sign", bundle, "--key", Self.devKey, "--json"])
        #expect(signed.status == 0)
        #expect(signed.stdout.contains(Self.devFingerprint))
        let verified = try BundleVerifier(trustedDirectory: Self.keys).verify(path: bundle)
        #expect(verified.signer.fingerprint == Self.devFingerprint)
        // A directory whose files do not match its manifest is not signed.
        try Data("changed".utf8).write(to: URL(fileURLWithPath: bundle + "/notes/readme.txt"))
        let sigBefore = try Data(contentsOf: URL(fileURLWithPath: bundle + "/manifest.sig"))
        let refused = try TestBinary.run(["bundle", "sign", bundle, "--key", Self.devKey, "--json"])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("size_mismatch") || refused.stdout.contains("hash_mismatch"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: bundle + "/manifest.sig")) == sigBefore)
    }
}
