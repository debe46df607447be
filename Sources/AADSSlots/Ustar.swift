import Foundation

/// A member of a ustar archive after the safety checks: a regular file or a directory with a
/// normalised relative path (no leading `./`, no trailing `/`).
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case file, directory }
    public let path: String
    public let kind: Kind
    public let size: UInt64
    /// Offset of the first data byte in the archive.
    public let dataOffset: UInt64
    public let mode: UInt32
}

/// Caps on what a bundle may declare, checked before any data is read or written.
public struct BundleLimits: Sendable, Equatable {
    public var maxFileSize: UInt64
    public var maxTotalSize: UInt64
    public var maxEntries: Int
    public var maxManifestSize: UInt64

    public init(
        maxFileSize: UInt64 = 1 << 30, maxTotalSize: UInt64 = 2 << 30, maxEntries: Int = 4096,
        maxManifestSize: UInt64 = 1 << 20
    ) {
        self.maxFileSize = maxFileSize
        self.maxTotalSize = maxTotalSize
        self.maxEntries = maxEntries
        self.maxManifestSize = maxManifestSize
    }

    public static let `default` = BundleLimits()
}

/// A small POSIX ustar (IEEE 1003.1-1988) reader and a deterministic writer, with no dependency.
///
/// The reader accepts POSIX (`ustar\0` `00`) and GNU (`ustar  \0`) headers holding regular files and
/// directories. It verifies every header checksum, parses numeric fields strictly as octal, refuses
/// links, devices and FIFOs (`unsafe_entry`), pax extended headers and GNU long names
/// (`unsupported_entry`: bundle paths fit the 255-byte ustar name+prefix), absolute paths and `..`
/// (`unsafe_path`), repeated paths (`duplicate_entry`), sizes and entry counts beyond the limits
/// (`too_large`), archives that end early (`truncated_archive`) and anything but zero padding after the
/// end-of-archive marker (`trailing_data`). It never trusts a size field
/// further than the archive's real length.
public enum Ustar {
    public static let blockSize = 512

    // MARK: reading

    /// Lists the members of an archive, refusing anything unsafe; reads headers only.
    public static func read(_ source: any ByteSource, limits: BundleLimits = .default) throws -> [TarEntry] {
        var entries: [TarEntry] = []
        var seen = Set<String>()
        var offset: UInt64 = 0
        var total: UInt64 = 0
        let length = source.count
        while true {
            guard offset + UInt64(blockSize) <= length else {
                throw SlotError(.truncatedArchive, "archive ends at byte \(length) without an end-of-archive block")
            }
            let header = [UInt8](try source.read(at: offset, count: blockSize))
            guard header.count == blockSize else {
                throw SlotError(.truncatedArchive, "short read of the header at byte \(offset)")
            }
            if header.allSatisfy({ $0 == 0 }) {
                try checkNothingFollows(source, marker: offset, length: length)
                break
            }
            try checkChecksum(header, at: offset)
            let magic = Array(header[257..<263])
            let version = Array(header[263..<265])
            let posix = magic == Array("ustar\0".utf8) && version == Array("00".utf8)
            let gnu = magic == Array("ustar ".utf8) && version == [0x20, 0]
            guard posix || gnu else {
                throw SlotError(.badArchive, "header at byte \(offset) is not ustar")
            }
            let typeflag = header[156]
            let kind: TarEntry.Kind
            switch typeflag {
            case UInt8(ascii: "0"), 0, UInt8(ascii: "7"): kind = .file
            case UInt8(ascii: "5"): kind = .directory
            case UInt8(ascii: "1"): throw SlotError(.unsafeEntry, "hard link in archive at byte \(offset)")
            case UInt8(ascii: "2"): throw SlotError(.unsafeEntry, "symbolic link in archive at byte \(offset)")
            case UInt8(ascii: "3"), UInt8(ascii: "4"):
                throw SlotError(.unsafeEntry, "device file in archive at byte \(offset)")
            case UInt8(ascii: "6"): throw SlotError(.unsafeEntry, "FIFO in archive at byte \(offset)")
            case UInt8(ascii: "x"), UInt8(ascii: "g"):
                throw SlotError(.unsupportedEntry, "pax extended header at byte \(offset) is not supported")
            case UInt8(ascii: "L"), UInt8(ascii: "K"):
                throw SlotError(.unsupportedEntry, "GNU long name at byte \(offset) is not supported")
            default:
                throw SlotError(.unsupportedEntry, "entry type 0x\(String(typeflag, radix: 16)) at byte \(offset)")
            }
            guard entries.count < limits.maxEntries else {
                throw SlotError(.tooLarge, "archive has more than \(limits.maxEntries) entries")
            }
            let size = try octal(header[124..<136], field: "size", at: offset)
            let mode = try octal(header[100..<108], field: "mode", at: offset)
            let name = try cString(header[0..<100], at: offset)
            let prefix = posix ? try cString(header[345..<500], at: offset) : ""
            let raw = prefix.isEmpty ? name : prefix + "/" + name
            guard let path = try normalise(raw, directory: kind == .directory) else {
                guard kind == .directory else { throw SlotError(.unsafePath, "file entry without a name") }
                // "./" itself: the archive root; nothing to create.
                offset = try advance(offset, size: size, length: length)
                continue
            }
            if kind == .file {
                guard size <= limits.maxFileSize else {
                    throw SlotError(.tooLarge, "\(path) declares \(size) bytes (limit \(limits.maxFileSize))")
                }
                total += size
                guard total <= limits.maxTotalSize else {
                    throw SlotError(.tooLarge, "archive declares more than \(limits.maxTotalSize) bytes")
                }
            }
            guard seen.insert(path).inserted else {
                throw SlotError(.duplicateEntry, "\(path) appears twice in the archive")
            }
            let dataOffset = offset + UInt64(blockSize)
            guard dataOffset + size <= length else {
                throw SlotError(.truncatedArchive, "\(path) needs \(size) bytes but the archive ends first")
            }
            entries.append(
                TarEntry(
                    path: path, kind: kind, size: kind == .file ? size : 0, dataOffset: dataOffset,
                    mode: UInt32(truncatingIfNeeded: mode)))
            offset = try advance(offset, size: size, length: length)
        }
        try checkTree(entries.map { ($0.path, $0.kind) })
        return entries
    }

    /// After the end-of-archive marker only zero padding may follow (tar pads to its record size);
    /// any other byte is data a reader of the archive would never see: `trailing_data`.
    private static func checkNothingFollows(_ source: any ByteSource, marker: UInt64, length: UInt64) throws {
        var offset = marker + UInt64(blockSize)
        while offset < length {
            let chunk = try source.read(at: offset, count: Int(min(UInt64(1 << 16), length - offset)))
            guard !chunk.isEmpty else { return }
            if let index = chunk.firstIndex(where: { $0 != 0 }) {
                let at = offset + UInt64(index - chunk.startIndex)
                throw SlotError(
                    .trailingData, "data at byte \(at) after the end-of-archive marker at byte \(marker)")
            }
            offset += UInt64(chunk.count)
        }
    }

    private static func advance(_ offset: UInt64, size: UInt64, length: UInt64) throws -> UInt64 {
        let padded = (size + UInt64(blockSize) - 1) / UInt64(blockSize) * UInt64(blockSize)
        let next = offset + UInt64(blockSize) + padded
        guard next <= length else {
            throw SlotError(.truncatedArchive, "archive ends inside an entry's padding")
        }
        return next
    }

    private static func checkChecksum(_ header: [UInt8], at offset: UInt64) throws {
        let stored = try octal(header[148..<156], field: "checksum", at: offset)
        var unsigned: Int = 0
        var signed: Int = 0
        for (i, byte) in header.enumerated() {
            let b = (148..<156).contains(i) ? UInt8(ascii: " ") : byte
            unsigned += Int(b)
            signed += Int(Int8(bitPattern: b))
        }
        guard stored == UInt64(unsigned) || (signed >= 0 && stored == UInt64(signed)) else {
            throw SlotError(.badArchive, "header checksum mismatch at byte \(offset)")
        }
    }

    /// Strict octal: optional leading spaces, digits 0-7, then only NULs/spaces.
    static func octal(_ field: ArraySlice<UInt8>, field name: String, at offset: UInt64) throws -> UInt64 {
        if let first = field.first, first & 0x80 != 0 {
            guard name == "size" else { throw SlotError(.badArchive, "binary \(name) field at byte \(offset)") }
            throw SlotError(.unsupportedEntry, "base-256 size field at byte \(offset) is not supported")
        }
        var value: UInt64 = 0
        var index = field.startIndex
        while index < field.endIndex, field[index] == UInt8(ascii: " ") { index += 1 }
        var digits = 0
        while index < field.endIndex, field[index] >= UInt8(ascii: "0"), field[index] <= UInt8(ascii: "7") {
            value = value << 3 | UInt64(field[index] - UInt8(ascii: "0"))
            digits += 1
            index += 1
        }
        while index < field.endIndex {
            guard field[index] == 0 || field[index] == UInt8(ascii: " ") else {
                throw SlotError(.badArchive, "bad octal \(name) field at byte \(offset)")
            }
            index += 1
        }
        guard digits <= 12 else { throw SlotError(.badArchive, "oversized \(name) field at byte \(offset)") }
        return value
    }

    private static func cString(_ field: ArraySlice<UInt8>, at offset: UInt64) throws -> String {
        let bytes = field.prefix { $0 != 0 }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw SlotError(.unsafePath, "entry name at byte \(offset) is not UTF-8")
        }
        return text
    }

    /// Normalises a member path; nil for the archive root (`.` / `./`). Throws `unsafe_path` for
    /// absolute paths, `..`, `.` or empty components inside the path, and control characters.
    public static func normalise(_ raw: String, directory: Bool = false) throws -> String? {
        var path = Substring(raw)
        while path.hasPrefix("./") { path = path.dropFirst(2) }
        if directory {
            while path.hasSuffix("/") && path.count > 1 { path = path.dropLast() }
        } else if path.hasSuffix("/") {
            throw SlotError(.unsafePath, "file path \(raw) ends with a slash")
        }
        if path.isEmpty || path == "." { return nil }
        guard !path.hasPrefix("/") else { throw SlotError(.unsafePath, "absolute path \(raw)") }
        for component in path.split(separator: "/", omittingEmptySubsequences: false) {
            guard !component.isEmpty, component != ".", component != ".." else {
                throw SlotError(.unsafePath, "path \(raw) escapes or is not canonical")
            }
            guard !component.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw SlotError(.unsafePath, "path \(raw.debugDescription) contains control characters")
            }
        }
        return String(path)
    }

    /// Refuses a file that is also used as a directory by another entry.
    static func checkTree(_ items: [(String, TarEntry.Kind)]) throws {
        var directories = Set<String>()
        for (path, kind) in items {
            if kind == .directory { directories.insert(path) }
            var parent = Substring(path)
            while let slash = parent.lastIndex(of: "/") {
                parent = parent[..<slash]
                directories.insert(String(parent))
            }
        }
        for (path, kind) in items where kind == .file && directories.contains(path) {
            throw SlotError(.duplicateEntry, "\(path) is both a file and a directory")
        }
    }

    // MARK: writing

    /// Builds one 512-byte header (POSIX ustar, uid/gid 0, mtime 0, no user/group names).
    public static func header(path: String, kind: TarEntry.Kind, size: UInt64, mode: UInt32) throws -> [UInt8] {
        let fullPath = kind == .directory ? path + "/" : path
        let bytes = Array(fullPath.utf8)
        var name = bytes
        var prefix: [UInt8] = []
        if bytes.count > 100 {
            // Split at a slash so that the name part fits 100 bytes and the prefix 155.
            var split: Int?
            for i in stride(from: bytes.count - 1, through: 0, by: -1) where bytes[i] == UInt8(ascii: "/") {
                if bytes.count - i - 1 <= 100 && i <= 155 && i > 0 && bytes.count - i - 1 > 0 {
                    split = i
                    break
                }
            }
            guard let cut = split else { throw SlotError(.badArgument, "path too long for ustar: \(path)") }
            prefix = Array(bytes[..<cut])
            name = Array(bytes[(cut + 1)...])
        }
        guard size < (1 << 33) else { throw SlotError(.tooLarge, "\(path) is too large for ustar") }
        var h = [UInt8](repeating: 0, count: blockSize)
        func put(_ value: [UInt8], at offset: Int) { for (i, b) in value.enumerated() { h[offset + i] = b } }
        func putOctal(_ value: UInt64, width: Int, at offset: Int) {
            var digits = Array(String(value, radix: 8).utf8)
            while digits.count < width - 1 { digits.insert(UInt8(ascii: "0"), at: 0) }
            put(digits, at: offset)  // followed by the NUL already in place
        }
        put(name, at: 0)
        putOctal(UInt64(mode), width: 8, at: 100)
        putOctal(0, width: 8, at: 108)
        putOctal(0, width: 8, at: 116)
        putOctal(size, width: 12, at: 124)
        putOctal(0, width: 12, at: 136)
        h[156] = kind == .directory ? UInt8(ascii: "5") : UInt8(ascii: "0")
        put(Array("ustar\0".utf8), at: 257)
        put(Array("00".utf8), at: 263)
        put(prefix, at: 345)
        put(Array("        ".utf8), at: 148)
        let sum = h.reduce(0) { $0 + Int($1) }
        var check = Array(String(sum, radix: 8).utf8)
        while check.count < 6 { check.insert(UInt8(ascii: "0"), at: 0) }
        put(check + [0, UInt8(ascii: " ")], at: 148)
        return h
    }

    /// Zero padding that brings `size` bytes of data to a block boundary.
    public static func padding(for size: UInt64) -> Data {
        let rest = Int(size % UInt64(blockSize))
        return Data(count: rest == 0 ? 0 : blockSize - rest)
    }

    /// The end-of-archive marker: two zero blocks.
    public static var trailer: Data { Data(count: 2 * blockSize) }
}
