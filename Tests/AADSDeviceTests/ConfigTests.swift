import AADSTestSupport
import Foundation
import Testing

@testable import AADSDevice

@Suite struct ConfigTests {
    func decodeError(_ json: String) -> String? {
        do {
            _ = try DeviceConfig.decode(Data(json.utf8))
            return nil
        } catch let error as ConfigError {
            return error.message
        } catch {
            return "unexpected \(error)"
        }
    }

    @Test func shippedConfigParsesAndMatchesItsFile() throws {
        let config = try DeviceConfig.load(path: Fixtures.repositoryPath("firmware-config/device.json"))
        #expect(config.gpio.backend == .libgpiod)
        #expect(config.gpio.lines == DeviceConfig.GPIOLines(green: 17, amber: 27, red: 22, trigger: 23))
        #expect(config.capture.command.contains("{path}"))
        #expect(config.metrics.file.hasSuffix(".prom"))
        #expect(config.alerts.latencyIncrease == 0.10)
        #expect(config.alerts.errorRate == 0.01)
        #expect(config.alerts.memoryGrowth == 0.20)
        #expect(config.retention.maxRows == 500_000)
        #expect(config.ab.fraction == 0.25 && config.probation.maxErrorRate == nil)
        #expect(config.threads == 2)
        // The shipped defaults can reach an A/B verdict within probation.
        #expect(Double(config.probation.images) * config.ab.fraction >= Double(config.ab.minSamples))
    }

    @Test func anABGateThatCannotDecideWithinProbationIsRefused() {
        let message = decodeError(#"{"probation": {"images": 200}, "ab": {"fraction": 0.1, "min_samples": 30}}"#)
        #expect(message?.hasPrefix("probation.require_ab_not_worse:") == true)
        #expect(message?.contains("20.0 expected A/B samples, below ab.min_samples 30") == true)
        #expect(
            decodeError(
                #"{"probation": {"images": 200, "require_ab_not_worse": false}, "ab": {"fraction": 0.1}}"#) == nil)
        #expect(decodeError(#"{"probation": {"images": 300}, "ab": {"fraction": 0.1}}"#) == nil)
    }

    @Test func emptyObjectGivesDefaults() throws {
        #expect(try DeviceConfig.decode(Data("{}".utf8)) == DeviceConfig.defaults)
    }

    @Test func overridesAreApplied() throws {
        let c = try DeviceConfig.decode(
            Data(
                #"{"spool_dir": "/s", "gpio": {"backend": "off", "lines": {"green": 5, "amber": 6, "red": 7, "trigger": null}, "active_low": true, "debounce_ms": 20}, "queue": {"capacity": 3, "drop": "newest"}}"#
                    .utf8))
        #expect(c.spoolDir == "/s")
        #expect(c.gpio.backend == .off)
        #expect(c.gpio.lines == DeviceConfig.GPIOLines(green: 5, amber: 6, red: 7, trigger: nil))
        #expect(c.gpio.activeLow)
        #expect(c.gpio.debounceMs == 20)
        #expect(c.queue.capacity == 3)
        #expect(c.queue.drop == .newest)
        #expect(c.journalPath == DeviceConfig.defaults.journalPath)
        #expect(c.threads == DeviceConfig.defaults.threads)
        #expect(try DeviceConfig.decode(Data(#"{"threads": 4}"#.utf8)).threads == 4)
    }

    @Test func errorsNameTheKeyPathAndReason() {
        #expect(decodeError(#"{"gpio": {"lines": {"green": "17"}}}"#) == "gpio.lines.green: expected an integer")
        #expect(decodeError(#"{"gpio": {"lines": {"green": 1.5}}}"#) == "gpio.lines.green: expected an integer")
        #expect(
            decodeError(#"{"gpio": {"backend": "wiringpi"}}"#)
                == "gpio.backend: expected one of libgpiod, simulated, off, got \"wiringpi\"")
        #expect(decodeError(#"{"gpio": {"required": "yes"}}"#) == "gpio.required: expected true or false")
        #expect(
            decodeError(#"{"gpio": {"lines": {"green": 1, "amber": 1}}}"#)
                == "gpio.lines: line offsets must be distinct")
        #expect(
            decodeError(#"{"gpio": {"lines": {"green": -1}}}"#)
                == "gpio.lines.green: must be between 0 and 1023, got -1")
        #expect(decodeError(#"{"metrics": {"interval_s": 0}}"#) == "metrics.interval_s: must be at least 0.1, got 0.0")
        #expect(decodeError(#"{"ab": {"fraction": 1.5}}"#) == "ab.fraction: must be between 0.0 and 1.0, got 1.5")
        #expect(decodeError(#"{"spool_dir": 3}"#) == "spool_dir: expected a string")
        #expect(decodeError(#"{"threads": 0}"#) == "threads: must be between 1 and 64, got 0")
        #expect(decodeError(#"{"threads": 2.5}"#) == "threads: expected an integer")
        #expect(decodeError(#"{"spool_dir": ""}"#) == "spool_dir: must not be empty")
        #expect(
            decodeError(#"{"capture": {"command": "libcamera-still -o out.jpg"}}"#)
                == "capture.command: must contain {path}")
        #expect(decodeError(#"{"queue": []}"#) == "queue: expected an object")
        #expect(decodeError(#"{"retention": {"max_row": 5}}"#) == "retention.max_row: unknown key")
        #expect(decodeError(#"{"spool": "/x"}"#) == "spool: unknown key")
        #expect(decodeError(#"[1]"#) == "expected a JSON object at the top level")
        #expect(decodeError(#"{"spool_dir": "#) == "not valid JSON")
    }

    @Test func duplicateKeysNullsAndAbsurdTimeoutsAreRefused() {
        #expect(decodeError(#"{"spool_dir": "/a", "spool_dir": "/b"}"#) == "spool_dir: duplicate key")
        #expect(
            decodeError(#"{"capture": {"timeout_s": 5, "command": "x {path}", "timeout_s": 9}}"#)
                == "capture.timeout_s: duplicate key")
        #expect(
            decodeError(#"{"gpio": {"lines": {"green": 5, "gr\u0065en": 6}}}"#) == "gpio.lines.green: duplicate key")
        #expect(
            decodeError(#"{"spool_dir": null}"#) == "spool_dir: must not be null (leave the key out for the default)")
        #expect(decodeError(#"{"metrics": null}"#) == "metrics: must not be null (leave the key out for the default)")
        #expect(
            decodeError(#"{"capture": {"timeout_s": 1e308}}"#)
                == "capture.timeout_s: must be between 0.1 and 3600.0, got 1e+308")
        // Key-like text inside a string value is no key.
        #expect(
            (try? DeviceConfig.decode(
                Data(
                    #"{"spool_dir": "/s", "metrics": {"file": "spool_dir: x, \"a\": 1"}, "queue": {"capacity": 3}}"#
                        .utf8)))
                != nil)
    }

    @Test func errorHasStableCode() {
        #expect(throws: ConfigError.self) { try DeviceConfig.load(path: "/nonexistent/device.json") }
        #expect(ConfigError("a.b", "bad").code == "bad_config")
    }
}
