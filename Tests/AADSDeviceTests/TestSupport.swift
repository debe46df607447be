import AADSTestSupport
import Foundation

@testable import AADSDevice

#if canImport(Glibc)
    import Glibc
#endif

/// A fresh temporary directory, removed by `cleanup()`.
struct TempDir {
    let path: String

    init(_ tag: String = "aads-device") {
        let template = NSTemporaryDirectory() + "/\(tag)-XXXXXX"
        var bytes = Array(template.utf8CString)
        let made = bytes.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        path = made.map { String(cString: $0) } ?? (NSTemporaryDirectory() + "/\(tag)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// The device fixtures (Tests/Fixtures/device).
extension Fixtures {
    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url("device/" + name))
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }
}

/// Writes a spool image by rename, as a camera would: unique bytes per index.
@discardableResult
func dropImage(into spool: String, name: String, content: String) throws -> String {
    try dropImage(into: spool, name: name, bytes: Data(content.utf8))
}

/// The same with the image's bytes.
@discardableResult
func dropImage(into spool: String, name: String, bytes: Data) throws -> String {
    let temp = spool + "/.tmp-" + name
    try bytes.write(to: URL(fileURLWithPath: temp))
    let final = spool + "/" + name
    guard rename(temp, final) == 0 else { throw SpoolError("rename failed") }
    return final
}

/// A service on `testConfig(dir)` (or `config`), serving the synthetic diagnoser unless another life cycle is given.
func makeService(
    _ dir: TempDir, config: DeviceConfig? = nil, lifecycle: (any SlotLifecycle)? = nil,
    gpio: (any GPIOBackend)? = nil,
    exitWhenIdle: Bool = false
) throws -> FieldService {
    let config = config ?? testConfig(dir)
    return try FieldService(
        config: config,
        lifecycle: lifecycle ?? StaticSlotLifecycle(diagnoser: SyntheticDiagnoser(modelVersion: "1.0.0")),
        journal: ResultsJournal(path: config.journalPath), metrics: MetricsExporter(path: config.metrics.file),
        gpio: gpio, notifier: SystemdNotifier(environment: [:]), exitWhenIdle: exitWhenIdle)
}

/// A config pointing every path into `dir`, no GPIO hardware, fast polling.
func testConfig(_ dir: TempDir) -> DeviceConfig {
    var c = DeviceConfig.defaults
    c.spoolDir = dir.file("spool")
    c.journalPath = dir.file("results.sqlite")
    c.slotRoot = dir.file("slots")
    c.stateDir = dir.file("state")
    c.metrics.file = dir.file("metrics.prom")
    c.metrics.intervalSeconds = 0.2
    c.gpio.backend = .simulated
    c.gpio.lines.trigger = nil
    c.queue.pollIntervalMs = 50
    c.queue.capacity = 10_000
    return c
}

/// Lists file names in a directory (visible files only).
func listFiles(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
}
