import AADSCore
import Foundation

/// Tiny signed bundles made on the fly, with their own key and trusted-keys directory: for drills
/// and for the tests of this and higher layers. Nothing here is used on the update path itself.
public struct ScratchBundles: Sendable {
    public let directory: String
    public let key: BundleSigningKey
    /// A trusted-keys directory holding only `key`'s public half.
    public let trustedDirectory: String

    /// Creates `directory` (which must not exist or be empty) with a fresh key.
    public init(directory: String, key: BundleSigningKey = BundleSigningKey()) throws {
        self.directory = directory
        self.key = key
        self.trustedDirectory = directory + "/trusted"
        do {
            try FileManager.default.createDirectory(atPath: trustedDirectory, withIntermediateDirectories: true)
            try AtomicFile.write(
                Data(BundlePublicKey(raw: key.publicKey.raw, comment: "scratch").fileContents.utf8),
                to: trustedDirectory + "/scratch.pub")
        } catch { throw SlotError.wrap(error) }
    }

    /// A verifier trusting `key`.
    public var verifier: BundleVerifier { BundleVerifier(trusted: TrustedKeys(trusted: [key.publicKey])) }

    /// Writes a signed directory bundle `<name>/` with a deterministic pseudo-random payload
    /// (`model.bin`, `payloadBytes` long, and `notes/readme.txt`) and `model_version` = `version`.
    @discardableResult
    public func makeDirectory(
        version: String, name: String? = nil, payloadBytes: Int = 4096, extra: [String: OpaqueJSON] = [:]
    ) throws -> String {
        let dir = directory + "/" + (name ?? "bundle-\(version)")
        do {
            try FileManager.default.createDirectory(atPath: dir + "/notes", withIntermediateDirectories: true)
            try AtomicFile.write(ScratchBundles.payload(seed: version, count: payloadBytes), to: dir + "/model.bin")
            try AtomicFile.write(Data("scratch bundle \(version)\n".utf8), to: dir + "/notes/readme.txt")
        } catch { throw SlotError.wrap(error) }
        try BundlePacker.writeManifest(directory: dir, modelVersion: version, extra: extra)
        try BundlePacker.sign(directory: dir, key: key)
        return dir
    }

    /// A signed ustar bundle file `<name>.tar` for `version`.
    @discardableResult
    public func makeArchive(version: String, name: String? = nil, payloadBytes: Int = 4096) throws -> String {
        let base = name ?? "bundle-\(version)"
        let dir = try makeDirectory(version: version, name: base, payloadBytes: payloadBytes)
        let out = directory + "/" + base + ".tar"
        try BundlePacker.pack(directory: dir, key: key, to: out)
        return out
    }

    /// Deterministic bytes (xorshift64 seeded from the text) so each version has distinct content.
    public static func payload(seed: String, count: Int) -> Data {
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        for byte in seed.utf8 { x = (x ^ UInt64(byte)) &* 0x100_0000_01B3 }
        var out = Data(capacity: count)
        for _ in 0..<count {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            out.append(UInt8(truncatingIfNeeded: x))
        }
        return out
    }
}
