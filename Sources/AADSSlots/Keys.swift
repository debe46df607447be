import AADSCore
import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An Ed25519 public key trusted (or revoked) for bundle signatures.
///
/// File format (`*.pub`): one line `aads-ed25519 <base64 of the 32-byte raw key> [comment]`; a file of
/// exactly 32 raw bytes is accepted too. The fingerprint is `sha256:` + hex SHA-256 of the raw key.
public struct BundlePublicKey: Sendable, Hashable {
    public let raw: Data
    public let comment: String

    public init(raw: Data, comment: String = "") throws {
        guard raw.count == 32 else { throw SlotError(.badKey, "an Ed25519 public key is 32 bytes, not \(raw.count)") }
        self.raw = raw
        self.comment = comment
    }

    /// For raw keys produced by swift-crypto itself (always 32 bytes).
    init(trustedRaw: Data) {
        raw = trustedRaw
        comment = ""
    }

    public var fingerprint: String { BundlePublicKey.fingerprint(of: raw) }

    static func fingerprint(of raw: Data) -> String {
        "sha256:" + SHA256.hash(data: raw).map { String(format: "%02x", $0) }.joined()
    }

    /// Parses the contents of a `.pub` file.
    public init(fileContents data: Data) throws {
        if data.count == 32 {
            try self.init(raw: data)
            return
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = text.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard parts.count >= 2, parts[0] == "aads-ed25519", let raw = Data(base64Encoded: String(parts[1])) else {
            throw SlotError(.badKey, "not an aads-ed25519 public key")
        }
        try self.init(raw: raw, comment: parts.count > 2 ? String(parts[2]) : "")
    }

    /// The `.pub` file text.
    public var fileContents: String {
        "aads-ed25519 \(raw.base64EncodedString())" + (comment.isEmpty ? "" : " \(comment)") + "\n"
    }

    func isValidSignature(_ signature: Data, for message: Data) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { return false }
        return key.isValidSignature(signature, for: message)
    }
}

/// An Ed25519 signing key. File format: one line `aads-ed25519-private <base64 of the 32-byte seed>`
/// written with mode 0600 (32 raw bytes are accepted too).
public struct BundleSigningKey: Sendable {
    /// The 32-byte seed (swift-crypto's key type is not Sendable, so the key is rebuilt on use).
    private let seed: Data
    private var key: Curve25519.Signing.PrivateKey {
        // The seed was validated by the initialiser.
        (try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)) ?? Curve25519.Signing.PrivateKey()
    }

    public init() { seed = Curve25519.Signing.PrivateKey().rawRepresentation }

    public init(seed: Data) throws {
        guard seed.count == 32, (try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)) != nil else {
            throw SlotError(.badKey, "an Ed25519 private key seed is 32 bytes")
        }
        self.seed = seed
    }

    public init(fileContents data: Data) throws {
        if data.count == 32 {
            try self.init(seed: data)
            return
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0] == "aads-ed25519-private", let seed = Data(base64Encoded: String(parts[1]))
        else {
            throw SlotError(.badKey, "not an aads-ed25519-private key")
        }
        try self.init(seed: seed)
    }

    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SlotError(.badKey, "cannot read key \(path)")
        }
        try self.init(fileContents: data)
    }

    public var publicKey: BundlePublicKey {
        BundlePublicKey(trustedRaw: key.publicKey.rawRepresentation)
    }

    public func sign(_ message: Data) throws -> Data {
        try key.signature(for: message)
    }

    /// Writes `path` (mode 0600) and `path.pub` (mode 0644), refusing to overwrite either.
    public func write(to path: String, comment: String = "") throws {
        let pubPath = path + ".pub"
        for p in [path, pubPath] where FileManager.default.fileExists(atPath: p) {
            throw SlotError(.badArgument, "\(p) already exists")
        }
        let text = "aads-ed25519-private \(seed.base64EncodedString())\n"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SlotError(.ioError, "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        fchmod(fd, 0o600)
        do {
            try AtomicFile.writeAll(fd: fd, data: Data(text.utf8), path: path)
            guard fsync(fd) == 0 else { throw SlotError(.ioError, "cannot fsync \(path)") }
            let pub = try BundlePublicKey(raw: publicKey.raw, comment: comment)
            try AtomicFile.write(Data(pub.fileContents.utf8), to: pubPath, mode: 0o644)
        } catch {
            throw SlotError.wrap(error)
        }
    }
}

/// The keys a device accepts: every `*.pub` in a directory, minus revoked ones.
///
/// Revocation: a key is revoked when its `.pub` file is in `<dir>/revoked/`, or when its fingerprint
/// (`sha256:<hex>`) is a line of `<dir>/revoked.txt` (`#` starts a comment). A revoked key is refused
/// even if its `.pub` is still in the directory.
public struct TrustedKeys: Sendable {
    public let trusted: [BundlePublicKey]
    public let revoked: [BundlePublicKey]
    public let revokedFingerprints: Set<String>

    public init(trusted: [BundlePublicKey], revoked: [BundlePublicKey] = [], revokedFingerprints: Set<String> = []) {
        let allRevoked = revokedFingerprints.union(revoked.map(\.fingerprint))
        self.trusted = trusted.filter { !allRevoked.contains($0.fingerprint) }
        self.revoked = revoked + trusted.filter { allRevoked.contains($0.fingerprint) }
        self.revokedFingerprints = allRevoked
    }

    /// Loads a trusted-keys directory. Throws `no_trusted_keys` when it holds no usable key and
    /// `bad_key` for an unreadable `.pub` file (a broken key directory must be noticed, not skipped).
    public init(directory: String) throws {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory) else {
            throw SlotError(.noTrustedKeys, "cannot read trusted keys directory \(directory)")
        }
        func load(_ dir: String, _ names: [String]) throws -> [BundlePublicKey] {
            try names.filter { $0.hasSuffix(".pub") }.sorted().map { name in
                guard let data = fm.contents(atPath: dir + "/" + name) else {
                    throw SlotError(.badKey, "cannot read \(dir)/\(name)")
                }
                do { return try BundlePublicKey(fileContents: data) } catch {
                    throw SlotError(.badKey, "\(dir)/\(name): not an aads-ed25519 public key")
                }
            }
        }
        let trusted = try load(directory, names)
        let revokedDir = directory + "/revoked"
        let revoked = try load(revokedDir, (try? fm.contentsOfDirectory(atPath: revokedDir)) ?? [])
        var fingerprints = Set<String>()
        if let text = try? String(contentsOfFile: directory + "/revoked.txt", encoding: .utf8) {
            for line in text.split(whereSeparator: \.isNewline) {
                let entry = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                let fingerprint = entry.trimmingCharacters(in: .whitespaces).lowercased()
                if !fingerprint.isEmpty { fingerprints.insert(fingerprint) }
            }
        }
        self.init(trusted: trusted, revoked: revoked, revokedFingerprints: fingerprints)
        guard !self.trusted.isEmpty else {
            throw SlotError(.noTrustedKeys, "no usable public key in \(directory)")
        }
    }

    /// Where the CLI looks for trusted keys when none is given: `$AADS_TRUSTED_KEYS`, then
    /// `/etc/aads-edge/keys`, then `firmware-config/keys` next to the installed executable
    /// (`<prefix>/bin/aads-edge` → `<prefix>/firmware-config/keys`, also `<bindir>/firmware-config/keys`),
    /// then `./firmware-config/keys`. The first existing directory wins.
    public static func defaultDirectory(
        environment: [String: String] = ProcessInfo.processInfo.environment, executable: String? = nil
    ) -> String {
        if let env = environment["AADS_TRUSTED_KEYS"], !env.isEmpty { return env }
        var candidates = ["/etc/aads-edge/keys"]
        if let exe = executable ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) {
            let bin = (exe as NSString).deletingLastPathComponent
            candidates.append(((bin as NSString).deletingLastPathComponent as NSString).appendingPathComponent("firmware-config/keys"))
            candidates.append((bin as NSString).appendingPathComponent("firmware-config/keys"))
        }
        candidates.append("firmware-config/keys")
        var isDir: ObjCBool = false
        for c in candidates where FileManager.default.fileExists(atPath: c, isDirectory: &isDir) && isDir.boolValue {
            return c
        }
        return "firmware-config/keys"
    }
}
