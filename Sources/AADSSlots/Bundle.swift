import AADSCore
import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The contents of `manifest.sig`.
///
/// Format: text, first line the base64 of the 64-byte Ed25519 signature over the exact bytes of
/// `manifest.json`; an optional second line `key sha256:<hex>` names the signing key's fingerprint.
/// The key line is not trusted (it is outside the signature): it only lets a refusal say
/// `unknown_key` instead of `bad_signature`. A file of exactly 64 raw bytes is accepted too.
public struct BundleSignature: Sendable, Equatable {
    public let signature: Data
    public let keyFingerprint: String?

    public init(signature: Data, keyFingerprint: String?) {
        self.signature = signature
        self.keyFingerprint = keyFingerprint
    }

    public static func parse(_ data: Data) throws -> BundleSignature {
        if data.count == 64 { return BundleSignature(signature: data, keyFingerprint: nil) }
        guard data.count <= 4096 else { throw SlotError(.badSignature, "manifest.sig is too large") }
        let lines = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let first = lines.first, let signature = Data(base64Encoded: first), signature.count == 64 else {
            throw SlotError(.badSignature, "manifest.sig does not hold a base64 Ed25519 signature")
        }
        var fingerprint: String?
        for line in lines.dropFirst() {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count == 2, parts[0] == "key" { fingerprint = parts[1].lowercased() }
        }
        return BundleSignature(signature: signature, keyFingerprint: fingerprint)
    }

    public var fileContents: Data {
        var text = signature.base64EncodedString() + "\n"
        if let keyFingerprint { text += "key \(keyFingerprint)\n" }
        return Data(text.utf8)
    }
}

/// A bundle opened for reading: a ustar archive (file) or a directory, after the structural safety
/// checks (no links/devices, safe paths, no duplicates, limits). Nothing is extracted.
public final class BundleReader {
    public let location: String
    /// Regular files and directories, archive order (directory bundles: sorted).
    public let entries: [TarEntry]
    private let archive: (any ByteSource)?
    private let directory: String?
    private let index: [String: TarEntry]

    /// Opens `path`: a directory bundle, or anything else as a ustar archive.
    public static func open(_ path: String, limits: BundleLimits = .default) throws -> BundleReader {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw SlotError(.ioError, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        if (info.st_mode & S_IFMT) == S_IFDIR { return try BundleReader(directory: path, limits: limits) }
        return try BundleReader(archive: FileByteSource(path: path), location: path, limits: limits)
    }

    /// Reads an archive held in any byte source (a file, or memory for fuzzing and tests).
    public init(archive: any ByteSource, location: String = "<memory>", limits: BundleLimits = .default) throws {
        self.location = location
        self.archive = archive
        self.directory = nil
        self.entries = try Ustar.read(archive, limits: limits)
        self.index = Dictionary(entries.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Walks a directory without following links; refuses links, devices, FIFOs and sockets.
    public init(directory: String, limits: BundleLimits = .default) throws {
        self.location = directory
        self.archive = nil
        self.directory = directory
        var found: [TarEntry] = []
        var total: UInt64 = 0
        func walk(_ relative: String) throws {
            let full = relative.isEmpty ? directory : directory + "/" + relative
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: full).sorted() } catch {
                throw SlotError(.ioError, "cannot list \(full)")
            }
            for name in names {
                let path = relative.isEmpty ? name : relative + "/" + name
                guard let normal = try Ustar.normalise(path), normal == path else {
                    throw SlotError(.unsafePath, "unsafe name \(path.debugDescription)")
                }
                var info = stat()
                guard lstat(directory + "/" + path, &info) == 0 else {
                    throw SlotError(.ioError, "cannot stat \(path)")
                }
                guard found.count < limits.maxEntries else {
                    throw SlotError(.tooLarge, "bundle has more than \(limits.maxEntries) entries")
                }
                switch info.st_mode & S_IFMT {
                case S_IFREG:
                    let size = UInt64(info.st_size)
                    guard size <= limits.maxFileSize else {
                        throw SlotError(.tooLarge, "\(path) is \(size) bytes (limit \(limits.maxFileSize))")
                    }
                    total += size
                    guard total <= limits.maxTotalSize else {
                        throw SlotError(.tooLarge, "bundle holds more than \(limits.maxTotalSize) bytes")
                    }
                    found.append(
                        TarEntry(path: path, kind: .file, size: size, dataOffset: 0, mode: UInt32(info.st_mode & 0o7777)))
                case S_IFDIR:
                    found.append(TarEntry(path: path, kind: .directory, size: 0, dataOffset: 0, mode: 0o755))
                    try walk(path)
                case S_IFLNK: throw SlotError(.unsafeEntry, "symbolic link \(path) in bundle")
                case S_IFCHR, S_IFBLK: throw SlotError(.unsafeEntry, "device file \(path) in bundle")
                case S_IFIFO: throw SlotError(.unsafeEntry, "FIFO \(path) in bundle")
                default: throw SlotError(.unsafeEntry, "special file \(path) in bundle")
                }
            }
        }
        try walk("")
        self.entries = found
        self.index = Dictionary(found.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public func entry(_ path: String) -> TarEntry? { index[path] }

    /// Streams one file in chunks; throws `size_mismatch` if it does not hold exactly its size.
    public func stream(_ entry: TarEntry, chunkSize: Int = 1 << 20, _ body: (Data) throws -> Void) throws {
        if let archive {
            var done: UInt64 = 0
            while done < entry.size {
                let want = Int(min(UInt64(chunkSize), entry.size - done))
                let chunk = try archive.read(at: entry.dataOffset + done, count: want)
                guard chunk.count == want else {
                    throw SlotError(.truncatedArchive, "\(entry.path) is cut short")
                }
                try body(chunk)
                done += UInt64(want)
            }
            return
        }
        guard let directory else { return }
        let file = try FileByteSource(path: directory + "/" + entry.path)
        guard file.count == entry.size else {
            throw SlotError(.sizeMismatch, "\(entry.path) changed size while reading")
        }
        var done: UInt64 = 0
        while done < entry.size {
            let want = Int(min(UInt64(chunkSize), entry.size - done))
            let chunk = try file.read(at: done, count: want)
            guard chunk.count == want else { throw SlotError(.sizeMismatch, "\(entry.path) shrank while reading") }
            try body(chunk)
            done += UInt64(want)
        }
    }

    /// Reads a whole (small) file.
    public func read(_ entry: TarEntry) throws -> Data {
        var data = Data()
        try stream(entry) { data.append($0) }
        return data
    }
}

/// Lowercase hex SHA-256 of a finished digest.
func hex(_ digest: SHA256.Digest) -> String {
    digest.map { String(format: "%02x", $0) }.joined()
}

/// A bundle whose signature, manifest and every payload byte have been checked.
public struct VerifiedBundle {
    public let manifest: BundleManifest
    public let manifestData: Data
    public let signatureData: Data
    public let signer: BundlePublicKey
    public let reader: BundleReader
    /// Hex SHA-256 of `manifest.json` (recorded with an installed slot).
    public let manifestSHA256: String

    public var version: SemVer { manifest.modelVersion }
}

/// Checks bundles against a set of trusted keys, the limits, and (optionally) a version floor.
public struct BundleVerifier: Sendable {
    public let trusted: TrustedKeys
    public var limits: BundleLimits

    public init(trusted: TrustedKeys, limits: BundleLimits = .default) {
        self.trusted = trusted
        self.limits = limits
    }

    /// Loads the `*.pub` keys (and revocations) of a directory.
    public init(trustedDirectory: String, limits: BundleLimits = .default) throws {
        self.init(trusted: try TrustedKeys(directory: trustedDirectory), limits: limits)
    }

    /// Verifies a bundle file or directory. `floor`: refuse a `model_version` below it (`downgrade`)
    /// unless `allowDowngrade`.
    public func verify(path: String, floor: SemVer? = nil, allowDowngrade: Bool = false) throws -> VerifiedBundle {
        try verify(reader: BundleReader.open(path, limits: limits), floor: floor, allowDowngrade: allowDowngrade)
    }

    public func verify(reader: BundleReader, floor: SemVer? = nil, allowDowngrade: Bool = false) throws
        -> VerifiedBundle
    {
        guard let manifestEntry = reader.entry(BundleManifest.manifestName), manifestEntry.kind == .file else {
            throw SlotError(.badManifest, "bundle has no manifest.json")
        }
        guard manifestEntry.size <= limits.maxManifestSize else {
            throw SlotError(.tooLarge, "manifest.json is \(manifestEntry.size) bytes (limit \(limits.maxManifestSize))")
        }
        guard let signatureEntry = reader.entry(BundleManifest.signatureName), signatureEntry.kind == .file else {
            throw SlotError(.badSignature, "bundle has no manifest.sig (unsigned)")
        }
        guard signatureEntry.size <= 4096 else { throw SlotError(.badSignature, "manifest.sig is too large") }
        let manifestData = try reader.read(manifestEntry)
        let signatureData = try reader.read(signatureEntry)
        let signer = try checkSignature(manifestData, BundleSignature.parse(signatureData))
        let manifest = try BundleManifest.parse(manifestData, limits: limits)
        if let floor, manifest.modelVersion < floor, !allowDowngrade {
            throw SlotError(
                .downgrade, "model_version \(manifest.modelVersion) is below the committed floor \(floor)")
        }
        try checkPayload(manifest, reader: reader)
        return VerifiedBundle(
            manifest: manifest, manifestData: manifestData, signatureData: signatureData, signer: signer,
            reader: reader, manifestSHA256: hex(SHA256.hash(data: manifestData)))
    }

    /// Finds the trusted key that signed `message`, or explains why none did.
    public func checkSignature(_ message: Data, _ signature: BundleSignature) throws -> BundlePublicKey {
        if let key = trusted.trusted.first(where: { $0.isValidSignature(signature.signature, for: message) }) {
            return key
        }
        if let key = trusted.revoked.first(where: { $0.isValidSignature(signature.signature, for: message) }) {
            throw SlotError(.revokedKey, "bundle is signed by revoked key \(key.fingerprint)")
        }
        if let hint = signature.keyFingerprint {
            if trusted.revokedFingerprints.contains(hint) {
                throw SlotError(.revokedKey, "bundle names revoked key \(hint)")
            }
            if !trusted.trusted.contains(where: { $0.fingerprint == hint }) {
                throw SlotError(.unknownKey, "bundle is signed by unknown key \(hint)")
            }
        }
        throw SlotError(
            .badSignature, "signature does not match manifest.json (changed after signing, or a corrupt signature)")
    }

    /// Compares the manifest with the bundle's files and hashes every payload byte.
    func checkPayload(_ manifest: BundleManifest, reader: BundleReader) throws {
        let listed = Set(manifest.files.map(\.path))
        for entry in reader.entries where entry.kind == .file {
            if entry.path == BundleManifest.manifestName || entry.path == BundleManifest.signatureName { continue }
            guard listed.contains(entry.path) else {
                throw SlotError(.unlistedFile, "\(entry.path) is not listed in manifest.json")
            }
        }
        for file in manifest.files {
            guard let entry = reader.entry(file.path) else {
                throw SlotError(.missingFile, "\(file.path) is listed in manifest.json but missing")
            }
            guard entry.kind == .file else { throw SlotError(.missingFile, "\(file.path) is a directory") }
            guard entry.size == file.size else {
                throw SlotError(.sizeMismatch, "\(file.path) is \(entry.size) bytes, manifest says \(file.size)")
            }
        }
        for file in manifest.files {
            guard let entry = reader.entry(file.path) else { continue }
            var hasher = SHA256()
            try reader.stream(entry) { hasher.update(data: $0) }
            guard hex(hasher.finalize()) == file.sha256 else {
                throw SlotError(.hashMismatch, "\(file.path) does not match its sha256")
            }
        }
    }
}

/// Builds and signs bundles (the `bundle pack` command, tests and drills).
public enum BundlePacker {
    /// Writes `manifest.json` into `directory` listing every file already there (sorted), with the given
    /// version and extra fields. A helper for tools and tests; real bundles come from the bundle builder.
    @discardableResult
    public static func writeManifest(
        directory: String, modelVersion: String, schemaVersion: Int = 1, extra: [String: OpaqueJSON] = [:]
    ) throws -> Data {
        let reader = try BundleReader(directory: directory)
        var files: [OpaqueJSON] = []
        for entry in reader.entries where entry.kind == .file {
            if entry.path == BundleManifest.manifestName || entry.path == BundleManifest.signatureName { continue }
            var hasher = SHA256()
            try reader.stream(entry) { hasher.update(data: $0) }
            files.append(
                .object([
                    "path": .string(entry.path), "sha256": .string(hex(hasher.finalize())),
                    "size": .number(Double(entry.size)),
                ]))
        }
        var object = extra
        object["schema_version"] = .number(Double(schemaVersion))
        object["model_version"] = .string(modelVersion)
        object["files"] = .array(files)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let data = try encoder.encode(OpaqueJSON.object(object))
        try AtomicFile.write(data, to: directory + "/" + BundleManifest.manifestName)
        return data
    }

    /// Signs `manifest.json` of a directory bundle, writing `manifest.sig` next to it.
    public static func sign(directory: String, key: BundleSigningKey) throws {
        let path = directory + "/" + BundleManifest.manifestName
        guard let manifest = FileManager.default.contents(atPath: path) else {
            throw SlotError(.badManifest, "no manifest.json in \(directory)")
        }
        let signature = BundleSignature(signature: try key.sign(manifest), keyFingerprint: key.publicKey.fingerprint)
        try AtomicFile.write(signature.fileContents, to: directory + "/" + BundleManifest.signatureName)
    }

    /// Signs a directory bundle and writes it as one deterministic ustar file (sorted entries, mtime 0,
    /// uid/gid 0, mode 0644, or 0755 for directories and executable files). The directory's own
    /// `manifest.sig`, if any, is replaced by the new signature. The output is verified with the
    /// signing key before this returns; returns the manifest.
    @discardableResult
    public static func pack(
        directory: String, key: BundleSigningKey, to output: String, limits: BundleLimits = .default
    ) throws -> BundleManifest {
        let reader = try BundleReader(directory: directory, limits: limits)
        guard let manifestEntry = reader.entry(BundleManifest.manifestName) else {
            throw SlotError(.badManifest, "no manifest.json in \(directory)")
        }
        let manifestData = try reader.read(manifestEntry)
        let manifest = try BundleManifest.parse(manifestData, limits: limits)
        let signatureData = BundleSignature(
            signature: try key.sign(manifestData), keyFingerprint: key.publicKey.fingerprint
        ).fileContents
        let verifier = BundleVerifier(trusted: TrustedKeys(trusted: [key.publicKey]), limits: limits)
        try verifier.checkPayload(manifest, reader: reader)

        var items = reader.entries.filter { $0.path != BundleManifest.signatureName }
        items.append(
            TarEntry(
                path: BundleManifest.signatureName, kind: .file, size: UInt64(signatureData.count), dataOffset: 0,
                mode: 0o644))
        items.sort { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }

        let temp = output + ".tmp-\(getpid())"
        let fd = Glibc.open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SlotError(.ioError, "cannot create \(temp): \(String(cString: strerror(errno)))") }
        do {
            defer { close(fd) }
            for item in items {
                let mode: UInt32 = item.kind == .directory || item.mode & 0o111 != 0 ? 0o755 : 0o644
                try write(fd, Data(try Ustar.header(path: item.path, kind: item.kind, size: item.size, mode: mode)), temp)
                guard item.kind == .file else { continue }
                if item.path == BundleManifest.signatureName {
                    try write(fd, signatureData, temp)
                } else {
                    try reader.stream(item) { try write(fd, $0, temp) }
                }
                try write(fd, Ustar.padding(for: item.size), temp)
            }
            try write(fd, Ustar.trailer, temp)
            guard fsync(fd) == 0 else { throw SlotError(.ioError, "cannot fsync \(temp)") }
        } catch {
            unlink(temp)
            throw SlotError.wrap(error)
        }
        do {
            _ = try verifier.verify(path: temp)
        } catch {
            unlink(temp)
            throw error
        }
        guard rename(temp, output) == 0 else {
            unlink(temp)
            throw SlotError(.ioError, "cannot rename onto \(output)")
        }
        return manifest
    }

    private static func write(_ fd: Int32, _ data: Data, _ path: String) throws {
        do { try AtomicFile.writeAll(fd: fd, data: data, path: path) } catch { throw SlotError.wrap(error) }
    }
}
