import AADSDiagnosis
import Foundation
import Logging
import Testing

@testable import AADSDevice

@Suite struct LEDPolicyTests {
    @Test func colourRules() {
        // green: committed and healthy
        #expect(LEDPolicy.color(for: LEDInputs(phase: .committed)) == .green)
        #expect(LEDPolicy.color(for: LEDInputs(phase: .committed, lastDecision: .diagnosis)) == .green)
        #expect(LEDPolicy.color(for: LEDInputs(phase: .committed, lastDecision: .error)) == .green)
        // amber: trial/probation, or the last image ood/unknown_crop
        #expect(LEDPolicy.color(for: LEDInputs(phase: .trial)) == .amber)
        #expect(LEDPolicy.color(for: LEDInputs(phase: .probation, lastDecision: .diagnosis)) == .amber)
        #expect(LEDPolicy.color(for: LEDInputs(phase: .committed, lastDecision: .ood)) == .amber)
        #expect(LEDPolicy.color(for: LEDInputs(phase: .committed, lastDecision: .unknownCrop)) == .amber)
        // red: fault or latched rollback beats everything
        #expect(LEDPolicy.color(for: LEDInputs(phase: .committed, fault: true)) == .red)
        #expect(LEDPolicy.color(for: LEDInputs(phase: .probation, redLatched: true, lastDecision: .ood)) == .red)
    }
}

@Suite struct LEDControllerTests {
    let lines = DeviceConfig.GPIOLines(green: 17, amber: 27, red: 22, trigger: nil)

    @Test func activeHighLightsExactlyOne() throws {
        let gpio = SimulatedGPIO()
        let leds = try LEDController(backend: gpio, lines: lines, activeLow: false)
        #expect([gpio.value(of: 17), gpio.value(of: 27), gpio.value(of: 22)] == [0, 0, 0])
        try leds.show(.green)
        #expect([gpio.value(of: 17), gpio.value(of: 27), gpio.value(of: 22)] == [1, 0, 0])
        try leds.show(.amber)
        #expect([gpio.value(of: 17), gpio.value(of: 27), gpio.value(of: 22)] == [0, 1, 0])
        try leds.show(.red)
        #expect([gpio.value(of: 17), gpio.value(of: 27), gpio.value(of: 22)] == [0, 0, 1])
        try leds.show(.off)
        #expect([gpio.value(of: 17), gpio.value(of: 27), gpio.value(of: 22)] == [0, 0, 0])
    }

    @Test func activeLowInvertsLevels() throws {
        let gpio = SimulatedGPIO()
        let leds = try LEDController(backend: gpio, lines: lines, activeLow: true)
        #expect([gpio.value(of: 17), gpio.value(of: 27), gpio.value(of: 22)] == [1, 1, 1])
        try leds.show(.amber)
        #expect([gpio.value(of: 17), gpio.value(of: 27), gpio.value(of: 22)] == [1, 0, 1])
    }

    @Test func unchangedColourWritesNothing() throws {
        let gpio = SimulatedGPIO()
        let leds = try LEDController(backend: gpio, lines: lines, activeLow: false)
        try leds.show(.green)
        let writes = gpio.history.count
        try leds.show(.green)
        #expect(gpio.history.count == writes)
    }

    @Test func redLatchHoldsUntilAcknowledged() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let latch = RedLatch(path: dir.file("state/red-latch.json"))
        #expect(!latch.isLatched)
        try latch.latch(reason: "rollback: crash loop")
        try latch.latch(reason: "second cause")
        #expect(latch.isLatched)
        #expect(latch.reason == "rollback: crash loop")
        #expect(try latch.acknowledge() == "rollback: crash loop")
        #expect(!latch.isLatched)
        #expect(try latch.acknowledge() == nil)
    }
}

@Suite struct DebounceTests {
    let ms: UInt64 = 1_000_000

    @Test func bouncesMakeOnePress() {
        var pressed = false
        var d = Debouncer(intervalMs: 50, activeLow: false)
        // A contact bouncing for 6 ms, then held.
        for (i, kind) in [GPIOEdgeEvent.Kind.rising, .falling, .rising, .falling, .rising].enumerated() {
            pressed = d.settle(nowNs: 1000 * ms + UInt64(i) * 1_500_000)
            #expect(!pressed)
            d.record(GPIOEdgeEvent(line: 23, kind: kind, timestampNs: 1000 * ms + UInt64(i) * 1_500_000))
        }
        pressed = d.settle(nowNs: 1040 * ms)
        #expect(!pressed)  // not stable for 50 ms yet
        #expect(d.deadlineNs == 1006 * ms + 50 * ms)
        pressed = d.settle(nowNs: 1056 * ms)
        #expect(pressed)
        pressed = d.settle(nowNs: 2000 * ms)
        #expect(!pressed)  // held: no second press
    }

    @Test func shortGlitchIsIgnored() {
        var pressed = false
        var d = Debouncer(intervalMs: 50, activeLow: false)
        d.record(GPIOEdgeEvent(line: 23, kind: .rising, timestampNs: 100 * ms))
        pressed = d.settle(nowNs: 120 * ms)
        #expect(!pressed)
        d.record(GPIOEdgeEvent(line: 23, kind: .falling, timestampNs: 120 * ms))
        pressed = d.settle(nowNs: 500 * ms)
        #expect(!pressed)
        #expect(!d.stableActive)
    }

    @Test func releaseAndPressAgainCountsTwice() {
        var pressed = false
        var d = Debouncer(intervalMs: 20, activeLow: false)
        d.record(GPIOEdgeEvent(line: 23, kind: .rising, timestampNs: 0))
        pressed = d.settle(nowNs: 30 * ms)
        #expect(pressed)
        d.record(GPIOEdgeEvent(line: 23, kind: .falling, timestampNs: 100 * ms))
        pressed = d.settle(nowNs: 130 * ms)
        #expect(!pressed)
        d.record(GPIOEdgeEvent(line: 23, kind: .rising, timestampNs: 200 * ms))
        pressed = d.settle(nowNs: 220 * ms)
        #expect(pressed)
    }

    @Test func activeLowPressIsAFallingEdge() {
        var pressed = false
        var d = Debouncer(intervalMs: 10, activeLow: true)
        d.record(GPIOEdgeEvent(line: 23, kind: .rising, timestampNs: 0))
        pressed = d.settle(nowNs: 50 * ms)
        #expect(!pressed)
        d.record(GPIOEdgeEvent(line: 23, kind: .falling, timestampNs: 100 * ms))
        pressed = d.settle(nowNs: 110 * ms)
        #expect(pressed)
    }

    @Test func monitorWithInjectedEdgesAndTestClock() throws {
        let gpio = SimulatedGPIO()
        let presses = PressLog()
        let monitor = try TriggerMonitor(backend: gpio, line: 23, activeLow: false, debounceMs: 30, now: { 0 }) {
            presses.add($0)
        }
        gpio.inject(.rising, line: 23, atNs: 1000 * ms)
        gpio.inject(.falling, line: 23, atNs: 1002 * ms)
        gpio.inject(.rising, line: 23, atNs: 1004 * ms)
        #expect(try monitor.step(nowNs: 1010 * ms) == 0)
        #expect(try monitor.step(nowNs: 1034 * ms) == 1)
        #expect(presses.times == [1034 * ms])
        // Release, then press again: the release settles when the next edge arrives.
        gpio.inject(.falling, line: 23, atNs: 1500 * ms)
        gpio.inject(.rising, line: 23, atNs: 2000 * ms)
        #expect(try monitor.step(nowNs: 2010 * ms) == 0)
        #expect(try monitor.step(nowNs: 2030 * ms) == 1)
        #expect(presses.times.count == 2)
    }
}

final class PressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [UInt64] = []
    func add(_ t: UInt64) {
        lock.lock()
        values.append(t)
        lock.unlock()
    }
    var times: [UInt64] {
        lock.lock()
        defer { lock.unlock() }
        return values
    }
}

@Suite struct LibGPIODTests {
    @Test func missingChipIsATypedError() {
        do {
            _ = try LibGPIODBackend(chip: "gpiochip-does-not-exist")
            Issue.record("opening a missing chip succeeded")
        } catch let error as GPIOError {
            #expect(error.code == "gpio_chip_not_found")
            #expect(error.message.contains("gpiochip-does-not-exist"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func missingChipIsAWarningWhenNotRequired() throws {
        var gpio = DeviceConfig.defaults.gpio
        gpio.chip = "gpiochip-does-not-exist"
        gpio.required = false
        let logs = CapturedLogs()
        let logger = Logger(label: "test") { _ in CapturingHandler(store: logs) }
        #expect(try FieldService.openGPIO(config: gpio, logger: logger) == nil)
        #expect(logs.lines.contains { $0.hasPrefix("warning") && $0.contains("GPIO unavailable") })
        gpio.required = true
        #expect(throws: GPIOError.self) { try FieldService.openGPIO(config: gpio, logger: logger) }
        gpio.backend = .off
        #expect(try FieldService.openGPIO(config: gpio, logger: logger) == nil)
    }
}

final class CapturedLogs: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String] = []
    func add(_ s: String) {
        lock.lock()
        values.append(s)
        lock.unlock()
    }
    var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return values
    }
}

struct CapturingHandler: LogHandler {
    let store: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        store.add("\(event.level): \(event.message)")
    }
}
