import Foundation

/// The fields of `manifest.json` the slot layer reads; every other field is kept, uninterpreted, in
/// `fields` (and the signed bytes are never rewritten).
public struct BundleManifest: Sendable {
    /// One payload file: a canonical relative path, its SHA-256 (lowercase hex) and size in bytes.
    public struct File: Sendable, Equatable {
        public let path: String
        public let sha256: String
        public let size: UInt64

        public init(path: String, sha256: String, size: UInt64) {
            self.path = path
            self.sha256 = sha256
            self.size = size
        }
    }

    /// Schema versions this reader understands.
    public static let supportedSchemaVersions: ClosedRange<Int> = 1...1
    /// Names reserved for the bundle's own metadata; they are never payload files.
    public static let manifestName = "manifest.json"
    public static let signatureName = "manifest.sig"

    public let schemaVersion: Int
    public let modelVersion: SemVer
    public let files: [File]
    /// The whole manifest object, unknown fields included.
    public let fields: [String: OpaqueJSON]

    /// Sum of the declared payload sizes.
    public var totalSize: UInt64 { files.reduce(0) { $0 + $1.size } }

    /// Parses and validates a manifest. Throws `bad_manifest`, `unsafe_path` or `too_large`.
    public static func parse(_ data: Data, limits: BundleLimits = .default) throws -> BundleManifest {
        guard UInt64(data.count) <= limits.maxManifestSize else {
            throw SlotError(.tooLarge, "manifest.json is \(data.count) bytes (limit \(limits.maxManifestSize))")
        }
        let root: OpaqueJSON
        do {
            root = try JSONDecoder().decode(OpaqueJSON.self, from: data)
        } catch {
            throw SlotError(.badManifest, "manifest.json is not valid JSON")
        }
        guard case .object(let fields) = root else {
            throw SlotError(.badManifest, "manifest.json is not a JSON object")
        }
        guard case .number(let schema)? = fields["schema_version"], schema == schema.rounded(),
            abs(schema) < 1e9
        else {
            throw SlotError(.badManifest, "schema_version is missing or not an integer")
        }
        guard supportedSchemaVersions.contains(Int(schema)) else {
            throw SlotError(.badManifest, "schema_version \(Int(schema)) is not supported")
        }
        guard case .string(let versionText)? = fields["model_version"] else {
            throw SlotError(.badManifest, "model_version is missing or not a string")
        }
        guard let version = SemVer(versionText) else {
            throw SlotError(.badManifest, "model_version \(versionText.debugDescription) is not semantic versioning")
        }
        try checkNotes(fields)
        guard case .array(let list)? = fields["files"] else {
            throw SlotError(.badManifest, "files is missing or not an array")
        }
        guard list.count <= limits.maxEntries else {
            throw SlotError(.tooLarge, "manifest lists \(list.count) files (limit \(limits.maxEntries))")
        }
        var files: [File] = []
        var seen = Set<String>()
        var total: UInt64 = 0
        for (index, item) in list.enumerated() {
            guard case .object(let entry) = item,
                case .string(let rawPath)? = entry["path"],
                case .string(let rawHash)? = entry["sha256"],
                case .number(let rawSize)? = entry["size"]
            else {
                throw SlotError(.badManifest, "files[\(index)] needs path, sha256 and size")
            }
            guard let path = try Ustar.normalise(rawPath), path == rawPath else {
                throw SlotError(
                    .unsafePath, "files[\(index)] path \(rawPath.debugDescription) is not a canonical relative path")
            }
            guard path != manifestName, path != signatureName else {
                throw SlotError(.badManifest, "files[\(index)] lists the bundle's own \(path)")
            }
            let hash = rawHash.lowercased()
            guard hash.utf8.count == 64, hash.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) })
            else {
                throw SlotError(.badManifest, "files[\(index)] sha256 is not 64 hex digits")
            }
            guard rawSize >= 0, rawSize == rawSize.rounded(), rawSize <= 9_007_199_254_740_992 else {
                throw SlotError(.badManifest, "files[\(index)] size is not a non-negative integer")
            }
            let size = UInt64(rawSize)
            guard size <= limits.maxFileSize else {
                throw SlotError(.tooLarge, "\(path) declares \(size) bytes (limit \(limits.maxFileSize))")
            }
            total += size
            guard total <= limits.maxTotalSize else {
                throw SlotError(.tooLarge, "manifest declares more than \(limits.maxTotalSize) bytes in total")
            }
            guard seen.insert(path).inserted else {
                throw SlotError(.badManifest, "files lists \(path) twice")
            }
            files.append(File(path: path, sha256: hash, size: size))
        }
        do {
            try Ustar.checkTree(files.map { ($0.path, TarEntry.Kind.file) })
        } catch {
            throw SlotError(.badManifest, "files uses a file path as a directory")
        }
        return BundleManifest(schemaVersion: Int(schema), modelVersion: version, files: files, fields: fields)
    }
}
