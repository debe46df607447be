import AADSSlots
import AADSTestSupport
import Crypto
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A fresh temporary directory for one slot test.
func tempDirectory(_ name: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
        "aads-slots-\(name)-\(UUID().uuidString)"
    ).path
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// The slot fixtures (Tests/Fixtures/bundles, made by tools/fixtures/bundles).
extension Fixtures {
    static let bundles = path("bundles")
    static let trusted = bundles + "/trusted"

    static func corpus() throws -> (members: [[String: Any]], bundles: [[String: Any]]) {
        let data = try Data(contentsOf: URL(fileURLWithPath: bundles + "/corpus.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (
            try #require(object["good_members"] as? [[String: Any]]),
            try #require(object["bundles"] as? [[String: Any]])
        )
    }
}

/// Independent SHA-256 hex (swift-crypto directly, not the slot layer's helpers).
func sha256Hex(_ data: Data) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}

/// Reads state.json with JSONSerialization only (independent of the store's Codable types).
func rawState(_ root: String) throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: root + "/state.json"))
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

/// Every file of a directory tree with its bytes, relative paths.
func treeContents(_ dir: String) -> [String: Data] {
    var out: [String: Data] = [:]
    guard let walker = FileManager.default.enumerator(atPath: dir) else { return out }
    while let name = walker.nextObject() as? String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir), !isDir.boolValue {
            out[name] = FileManager.default.contents(atPath: dir + "/" + name)
        }
    }
    return out
}
