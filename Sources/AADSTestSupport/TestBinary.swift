import Foundation

/// The executables the tests run as processes.
public enum TestBinary {
    /// The `aads-edge` executable that `swift build --build-tests` builds next to the test bundle (the same
    /// build configuration and build directory as the tests running).
    public static let aadsEdge: String = {
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // Inside a .xctest bundle directory on some layouts.
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        return dir.appendingPathComponent("aads-edge").path
    }()

    /// Whether `aadsEdge` has been built.
    public static var isBuilt: Bool { FileManager.default.isExecutableFile(atPath: aadsEdge) }

    /// Runs `aadsEdge` with `arguments` to the end; returns its exit status and standard output (standard error is
    /// discarded).
    public static func run(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: aadsEdge)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
