import AADSCore
import AADSDevice
import AADSDiagnosis
import AADSHealth
import ArgumentParser
import Foundation
import Logging

extension GPIOBackendKind: ExpressibleByArgument {}

/// `--config FILE` shared by the service commands; without it `/etc/aads-edge/device.json` is used when it exists,
/// else the built-in defaults.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Device configuration (JSON). Default: /etc/aads-edge/device.json if present.")
    var config: String?

    static let systemPath = "/etc/aads-edge/device.json"

    func load() throws -> DeviceConfig {
        if let config { return try DeviceConfig.load(path: config) }
        if FileManager.default.fileExists(atPath: Self.systemPath) {
            return try DeviceConfig.load(path: Self.systemPath)
        }
        return DeviceConfig.defaults
    }
}

/// Log lines to standard error (journald adds timestamps under systemd).
enum LogSetup {
    nonisolated(unsafe) static var done = false

    static func bootstrap() -> Logger {
        if !done {
            done = true
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel =
                    ProcessInfo.processInfo.environment["AADS_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
                return handler
            }
        }
        return Logger(label: "aads-edge")
    }
}

struct RunCommand: AADSCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the field service: watch the spool, diagnose, journal, drive LEDs and metrics.",
        discussion:
            "SIGTERM finishes the image in hand and exits 0. Under systemd (Type=notify) it sends READY=1, WATCHDOG=1 and STOPPING=1 itself."
    )

    @OptionGroup var configOption: ConfigOption
    @Option(name: .long, help: "Spool directory (overrides spool_dir).") var spool: String?
    @Option(name: .long, help: "Slot store root (overrides slot_root).") var root: String?
    @Option(name: .long, help: "Results journal, SQLite (overrides journal_path).") var journal: String?
    @Option(name: .long, help: "Prometheus textfile to write (overrides metrics.file).") var metricsFile: String?
    @Option(name: .long, help: "GPIO backend: libgpiod, simulated or off (overrides gpio.backend).") var gpio:
        GPIOBackendKind?
    @Flag(name: .long, help: "Exit once the spool is empty.") var exitWhenIdle = false
    /// No `--json`: the service logs; its errors are one line on standard error.
    var output: OutputOptions { .text }

    static let errorPolicy = ErrorPolicy.always(.couldNotRun)

    func body() throws {
        let logger = LogSetup.bootstrap()
        var config = try configOption.load()
        if let spool { config.spoolDir = spool }
        if let root { config.slotRoot = root }
        if let journal { config.journalPath = journal }
        if let metricsFile { config.metrics.file = metricsFile }
        if let gpio { config.gpio.backend = gpio }
        let lifecycle = try ServiceWiring.makeLifecycle(config: config, logger: logger)
        let service = try FieldService.make(
            config: config, lifecycle: lifecycle, logger: logger, exitWhenIdle: exitWhenIdle)
        service.installSignalHandlers()
        _ = try service.run()
    }
}

/// Chooses what the service diagnoses with.
enum ServiceWiring {
    /// In a test build (debug, compiled with `AADS_TEST_HOOKS`) `AADS_FAKE_DIAGNOSER=1` serves the synthetic
    /// stand-in (tests and load runs of the service itself; it never looks at pixels). `AADS_FAKE_DELAY_MS` adds
    /// real time per image, `AADS_FAKE_VERSION` sets its version. Release and device builds always serve the
    /// installed model.
    static func makeLifecycle(config: DeviceConfig, logger: Logger) throws -> any SlotLifecycle {
        #if AADS_TEST_HOOKS
            let env = ProcessInfo.processInfo.environment
            if env["AADS_FAKE_DIAGNOSER"] == "1" {
                let diagnoser = SyntheticDiagnoser(
                    modelVersion: env["AADS_FAKE_VERSION"] ?? "0.0.0-synthetic",
                    delayMs: env["AADS_FAKE_DELAY_MS"].flatMap(Double.init) ?? 0)
                logger.warning("serving the synthetic diagnoser (AADS_FAKE_DIAGNOSER=1)")
                return StaticSlotLifecycle(slot: "synthetic", diagnoser: diagnoser)
            }
        #endif
        let health = try ConfigPaths.healthPolicy(named: nil) { logger.warning("\($0)") }
        return SlotStoreLifecycle(
            config: config, health: health, options: PipelineOptions(threads: config.threads), logger: logger)
    }
}

struct AckCommand: AADSCommand {
    static let configuration = CommandConfiguration(
        commandName: "ack", abstract: "Acknowledge a fault or rollback: clears the latched red LED.")

    @OptionGroup var configOption: ConfigOption
    @Option(name: .long, help: "State directory holding red-latch.json (overrides state_dir).") var stateDir: String?
    @OptionGroup var output: OutputOptions

    static let errorPolicy = ErrorPolicy.always(.couldNotRun)

    func body() throws {
        var config = try configOption.load()
        if let stateDir { config.stateDir = stateDir }
        let reason = try RedLatch(path: config.redLatchPath).acknowledge()
        if output.json {
            print(JSONLine.encode(["acknowledged": reason != nil, "reason": reason ?? NSNull()]))
        } else {
            print(reason.map { "acknowledged: \($0)" } ?? "nothing to acknowledge")
        }
    }
}
