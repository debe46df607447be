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

    /// Runs `aadsEdge` with `arguments` (and `env` added to this process's environment) to the end; returns its exit
    /// status, whether SIGKILL ended it, and its standard output (standard error is discarded).
    @discardableResult
    public static func run(_ arguments: [String], env: [String: String] = [:]) throws -> (
        status: Int32, killed: Bool, stdout: String
    ) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: aadsEdge)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let killed = process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL
        return (process.terminationStatus, killed, String(decoding: data, as: UTF8.self))
    }
}
