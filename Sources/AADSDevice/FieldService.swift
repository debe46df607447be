import AADSCore
import AADSDiagnosis
import Dispatch
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A thread-safe stop request, set by signal handlers or tests.
public final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private var reasonText = ""

    public init() {}

    public func request(reason: String) {
        lock.lock()
        if !stopped {
            stopped = true
            reasonText = reason
        }
        lock.unlock()
    }

    public var isRequested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }

    public var reason: String {
        lock.lock()
        defer { lock.unlock() }
        return reasonText
    }
}

/// Counts of one run of the service.
public struct RunSummary: Sendable, Equatable {
    /// Images that got a new journal row.
    public var processed = 0
    /// Images whose row already existed (re-processing after a crash); moved without a second row.
    public var duplicates = 0
    /// Images with a new row whose bytes repeat an earlier image's (counted in `processed` too).
    public var repeatedContent = 0
    /// Images ending in `failed/`.
    public var failed = 0
    /// Images dropped because the backlog exceeded the queue capacity.
    public var dropped = 0
    /// Shadow A/B comparisons recorded.
    public var abSamples = 0
    /// Images diagnosed from a decode that ran while the image before them was diagnosed.
    public var decodedAhead = 0
    /// `idle` (`--exit-when-idle`) or `signal`/`requested`.
    public var stopReason = ""
}

/// The field service: watches the spool, diagnoses each image exactly once, journals it, moves it, drives the
/// LEDs, metrics, alerts, A/B shadow runs and the slot life cycle, and talks to systemd.
///
/// `run()` owns all mutable state and runs on one thread; `requestStop` may be called from any thread.
public final class FieldService: @unchecked Sendable {
    public let config: DeviceConfig
    public let journal: ResultsJournal
    public let metrics: MetricsExporter
    public let leds: LEDController
    public let notifier: SystemdNotifier
    public let spool: Spool
    public let stop = StopSignal()
    private let lifecycle: any SlotLifecycle
    private let gpio: (any GPIOBackend)?
    private let logger: Logger
    private let exitWhenIdle: Bool
    /// The size and pixel limits a spool file must meet before it is hashed or diagnosed.
    private let spoolLimits: Spool.Limits
    private let watcher: SpoolWatcher
    private let alerts: AlertEngine
    private let latch: RedLatch
    private let sampler: ABSampler
    private var serving: ServingModel?
    private var lastDecision: Decision?
    private var fault: String?
    private var summary = RunSummary()
    private var trigger: TriggerMonitor?
    private let captureQueue = DispatchQueue(label: "aads-edge.capture")
    /// Decodes the next waiting image while the current one is diagnosed (when the diagnoser can).
    private let decodeQueue = DispatchQueue(label: "aads-edge.decode-ahead")
    private var decoder: (diagnoser: ObjectIdentifier, decoder: ImageDecoder)?
    /// The image being decoded ahead: its spool name, its file's identity when the decode began, and the diagnoser
    /// it is for.
    private var ahead: (name: String, fileID: String, diagnoser: ObjectIdentifier, image: Pending<PreparedImage>)?
    private var signalSources: [any DispatchSourceSignal] = []
    private var announcedReady = false

    /// Assembles a service from parts (tests pass a `SimulatedGPIO`, a temp journal, a fake notify socket).
    public init(
        config: DeviceConfig, lifecycle: any SlotLifecycle, journal: ResultsJournal, metrics: MetricsExporter,
        gpio: (any GPIOBackend)?, notifier: SystemdNotifier = SystemdNotifier(),
        logger: Logger = Logger(label: "aads-edge"),
        exitWhenIdle: Bool = false, useInotify: Bool = true, spoolLimits: Spool.Limits = Spool.Limits()
    ) throws {
        self.spoolLimits = spoolLimits
        self.config = config
        self.lifecycle = lifecycle
        self.journal = journal
        self.metrics = metrics
        self.gpio = gpio
        self.notifier = notifier
        self.logger = logger
        self.exitWhenIdle = exitWhenIdle
        spool = try Spool(directory: config.spoolDir)
        watcher = SpoolWatcher(directory: spool.directory, useInotify: useInotify)
        alerts = AlertEngine(config: config.alerts)
        latch = RedLatch(path: config.redLatchPath)
        sampler = ABSampler(fraction: config.ab.fraction)
        leds = try LEDController(backend: gpio, lines: config.gpio.lines, activeLow: config.gpio.activeLow)
    }

    /// Builds the service the way `aads-edge run` does: opens the journal, the metrics file and the GPIO chip
    /// of `config` (a missing chip is an error when `gpio.required`, otherwise a warning and no LEDs).
    public static func make(
        config: DeviceConfig, lifecycle: any SlotLifecycle, logger: Logger, exitWhenIdle: Bool = false
    ) throws -> FieldService {
        let journal = try ResultsJournal(path: config.journalPath)
        let metrics = MetricsExporter(path: config.metrics.file, oodWindow: config.alerts.window)
        let gpio = try openGPIO(config: config.gpio, logger: logger)
        return try FieldService(
            config: config, lifecycle: lifecycle, journal: journal, metrics: metrics, gpio: gpio, logger: logger,
            exitWhenIdle: exitWhenIdle)
    }

    /// The configured GPIO backend, or nil (`off`, or a missing chip that is not required).
    public static func openGPIO(config: DeviceConfig.GPIO, logger: Logger) throws -> (any GPIOBackend)? {
        switch config.backend {
        case .off: return nil
        case .simulated: return SimulatedGPIO()
        case .libgpiod:
            do {
                return try LibGPIODBackend(chip: config.chip)
            } catch {
                guard !config.required else { throw error }
                logger.warning("GPIO unavailable, running without LEDs and trigger: \(AnyCodedError(error).message)")
                return nil
            }
        }
    }

    /// Asks the loop to finish the image in hand and exit (thread-safe).
    public func requestStop(reason: String = "requested") {
        stop.request(reason: reason)
        watcher.wake()
    }

    /// SIGTERM and SIGINT drain in-flight work and stop the loop.
    public func installSignalHandlers() {
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            let name = sig == SIGTERM ? "SIGTERM" : "SIGINT"
            source.setEventHandler { [weak self] in self?.requestStop(reason: name) }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Runs until a stop request (or, with `exitWhenIdle`, until the spool is empty). Returns the counts.
    public func run() throws -> RunSummary {
        let startUpdate: SlotUpdate
        do {
            startUpdate = try lifecycle.start()
        } catch {
            try? leds.show(.red)
            try? latch.latch(reason: "model failed to load: \(AnyCodedError(error).message)")
            throw error
        }
        guard let first = startUpdate.serving else {
            throw SpoolError(.noModel, "the slot life cycle served no model")
        }
        serving = first
        if let last = try? journal.healthChecks().last {
            metrics.recordHealthCheck(passed: last.passed, at: last.createdAt, accuracy: last.adapterAccuracy)
        }
        apply(startUpdate)
        _ = alerts.reset(latencyBaselineMs: first.baseline.latencyMs)
        metrics.setBaselines(latencyMs: first.baseline.latencyMs, accuracy: first.baseline.accuracy)
        startTrigger()
        prune()
        updateLEDs()
        writeMetrics()
        logger.info(
            "serving slot \(first.slot) version \(first.modelVersion) (\(first.phase.rawValue)); spool \(spool.directory), inotify \(watcher.usesInotify)"
        )
        try? notifier.ready(status: statusLine())
        announcedReady = true

        let tickInterval = 1.0
        var nextTick = now() + tickInterval
        var nextMetrics = now() + config.metrics.intervalSeconds
        var nextWatchdog = now()
        var nextPrune = now() + 3600
        var nextRescan = now()
        var queue: [String] = []

        while !stop.isRequested {
            let t = now()
            if let interval = notifier.watchdogInterval, t >= nextWatchdog {
                try? notifier.watchdog()
                nextWatchdog = t + interval
            }
            if t >= nextTick {
                tick()
                nextTick = t + tickInterval
            }
            if t >= nextMetrics {
                writeMetrics()
                nextMetrics = t + config.metrics.intervalSeconds
            }
            if t >= nextPrune {
                prune()
                nextPrune = t + 3600
            }
            if queue.isEmpty || t >= nextRescan {
                queue = scan()
                nextRescan = t + Double(config.queue.pollIntervalMs) / 1000
            }
            if let name = queue.first {
                queue.removeFirst()
                metrics.setQueueDepth(queue.count)
                process(name, next: queue.first)
                continue
            }
            if exitWhenIdle && !captureInProgress {
                stop.request(reason: "idle")
                break
            }
            var wait = min(Double(config.queue.pollIntervalMs) / 1000, tickInterval)
            if notifier.watchdogInterval != nil { wait = min(wait, max(0.01, nextWatchdog - now())) }
            wait = min(wait, max(0.01, nextMetrics - now()))
            if watcher.wait(timeoutMs: Int(wait * 1000)) { nextRescan = 0 }
        }

        summary.stopReason = stop.reason
        trigger?.stop()
        captureQueue.sync {}
        decodeQueue.sync {}
        ahead = nil
        try? notifier.stopping(status: "stopping (\(stop.reason)) after \(summary.processed) images")
        writeMetrics()
        logger.info(
            "stopped (\(summary.stopReason)): \(summary.processed) new results (\(summary.repeatedContent) repeating earlier bytes), \(summary.duplicates) already journaled, \(summary.failed) failed, \(summary.dropped) dropped"
        )
        try? leds.show(.off)
        gpio?.close()
        lifecycle.stop()
        return summary
    }

    // MARK: The image path

    /// The waiting images, oldest first; beyond `queue.capacity` the backlog is trimmed per the drop policy.
    private func scan() -> [String] {
        var names: [String]
        do {
            for name in try spool.quarantineUndecodableNames() {
                logger.error("\(name): the name is not valid UTF-8; moved to \(spool.failed)")
                metrics.recordError(code: "invalid_name")
                summary.failed += 1
            }
            names = try spool.pending()
        } catch {
            setFault("spool unreadable: \(AnyCodedError(error).message)")
            return []
        }
        let excess = names.count - config.queue.capacity
        if excess > 0 {
            let victims = config.queue.drop == .oldest ? Array(names.prefix(excess)) : Array(names.suffix(excess))
            for name in victims {
                do {
                    if try spool.move(name, to: spool.dropped) != nil {
                        summary.dropped += 1
                        metrics.recordDropped()
                    }
                } catch {
                    logger.error("cannot drop \(name): \(AnyCodedError(error).message)")
                }
            }
            logger.warning(
                "backlog of \(names.count) images exceeds capacity \(config.queue.capacity): dropped \(excess) (\(config.queue.drop.rawValue) first) into \(spool.dropped)"
            )
            names = config.queue.drop == .oldest ? Array(names.dropFirst(excess)) : Array(names.dropLast(excess))
        }
        metrics.setQueueDepth(names.count)
        return names
    }

    /// One image: hash → (already journaled? move) → diagnose → shadow → journal row (committed) → move.
    /// The row is committed before the move and names the spool file (name, bytes, identity), so a crash at any
    /// point re-processes the file on restart without a second row; another file with the same bytes gets its own
    /// row, marked as a duplicate of the first. While it is diagnosed, `next` is decoded ahead.
    private func process(_ name: String, next: String? = nil) {
        guard let model = serving else { return }
        let path = spool.path(of: name)
        let sha: String
        let fileID: String
        do {
            (sha, fileID) = try Spool.fingerprint(path: path, limits: spoolLimits)
        } catch {
            if (error as? SpoolError)?.kind == .fileVanished { return }
            let coded = AnyCodedError(error)
            logger.error("\(name): \(coded.message)")
            metrics.recordError(code: coded.code)
            moveOrFault(name, to: spool.failed)
            summary.failed += 1
            return
        }
        do {
            if let existing = try journal.journaledRow(file: name, imageSHA256: sha, spoolFileID: fileID) {
                moveOrFault(name, to: existing.decision == .error ? spool.failed : spool.done)
                summary.duplicates += 1
                return
            }
        } catch {
            setFault(AnyCodedError(error).message)
            Thread.sleep(forTimeInterval: Double(config.queue.pollIntervalMs) / 1000)
            return
        }

        var record: Diagnosis
        let clock = Stopwatch()
        let prepared = takeDecodedAhead(name, fileID: fileID, for: model.diagnoser)
        // Only for a committed model: on trial and probation every image is diagnosed alone, so that its latency
        // compares with the A/B partner's and with the slot's latency baseline.
        if let next, model.phase == .committed || model.phase == .unknown { decodeAhead(next, for: model.diagnoser) }
        let overlapped = prepared != nil || ahead != nil
        do {
            if let prepared {
                summary.decodedAhead += 1
                record = try model.diagnoser.diagnose(prepared: prepared)
            } else {
                record = try model.diagnoser.diagnose(path: path)
            }
        } catch {
            record = Diagnosis.failure(
                file: name, modelVersion: model.modelVersion, error: error, totalMs: clock.elapsedMs)
        }
        record.file = name

        var comparison: ABComparison?
        if let partner = lifecycle.abPartner(serving: model), sampler.selects(sha256Hex: sha) {
            comparison = shadow(path: path, name: name, sha: sha, record: record, partner: partner)
        }

        do {
            let outcome = try journal.insert(
                record, imageSHA256: sha, slot: model.slot, rssBytes: residentMemoryBytes(), spoolFileID: fileID)
            switch outcome {
            case .alreadyJournaled:
                summary.duplicates += 1
            case .inserted:
                summary.processed += 1
            case .duplicate(let id, let original):
                summary.processed += 1
                summary.repeatedContent += 1
                metrics.recordDuplicateContent()
                logger.info("\(name): same bytes as an earlier image (row \(original)); journaled as row \(id)")
            }
            clearFault()
        } catch {
            // Leave the image in the spool: it is retried once the journal can be written again.
            setFault(AnyCodedError(error).message)
            metrics.recordError(code: AnyCodedError(error).code)
            Thread.sleep(forTimeInterval: Double(config.queue.pollIntervalMs) / 1000)
            return
        }
        let failed = record.decision == .error
        moveOrFault(name, to: failed ? spool.failed : spool.done)
        if failed {
            summary.failed += 1
            logger.warning("\(name): \(record.error?.code ?? "error"): \(record.error?.message ?? "")")
        }
        metrics.record(record)
        lastDecision = record.decision
        let hadLatencyBaseline = alerts.latencyBaselineMs != nil
        for transition in alerts.observe(latencyMs: overlapped ? nil : record.latency.total, isError: failed) {
            handle(transition)
        }
        if !hadLatencyBaseline, let baseline = alerts.latencyBaselineMs {
            metrics.setBaselines(latencyMs: baseline, accuracy: model.baseline.accuracy)
            // Measured here, on this board: journaled as the slot's latency baseline.
            let detail = String(
                format: "%.2f ms, mean of the first %d images on this device", baseline, config.alerts.window)
            logger.notice("latency baseline of \(model.modelVersion): \(detail)")
            try? journal.insert(
                SlotEventRecord(
                    event: "latency_baseline", slot: model.slot, modelVersion: model.modelVersion, detail: detail))
        }
        do {
            apply(try lifecycle.didProcess(record, serving: model, ab: comparison))
        } catch {
            setFault("slot life cycle: \(AnyCodedError(error).message)")
        }
        updateLEDs()
    }

    /// Starts decoding spool image `name` for `diagnoser` on the decode-ahead queue, if the diagnoser has a decoder.
    func decodeAhead(_ name: String, for diagnoser: any Diagnoser) {
        let id = ObjectIdentifier(diagnoser)
        if decoder?.diagnoser != id { decoder = diagnoser.makeDecoder().map { (id, $0) } }
        let path = spool.path(of: name)
        guard let decoder = decoder?.decoder, let fileID = Spool.fileID(path: path) else {
            ahead = nil
            return
        }
        ahead = (name, fileID, id, Pending(on: decodeQueue) { decoder.prepare(path: path) })
    }

    /// The image `name` decoded ahead for `diagnoser`, if that is what the queue holds and the file is still the
    /// one `fileID` names (the identity `process` fingerprinted); waits for the decode to finish.
    func takeDecodedAhead(_ name: String, fileID: String, for diagnoser: any Diagnoser) -> PreparedImage? {
        defer { ahead = nil }
        guard let ahead, ahead.name == name, ahead.fileID == fileID, ahead.diagnoser == ObjectIdentifier(diagnoser)
        else { return nil }
        let image = ahead.image.wait()
        // Replaced or rewritten while it was being decoded: decode it again.
        return Spool.fileID(path: spool.path(of: name)) == fileID ? image : nil
    }

    /// Runs the partner version on the same image and records the pair; returns the comparison so far.
    private func shadow(path: String, name: String, sha: String, record: Diagnosis, partner: ABPartner)
        -> ABComparison?
    {
        var other: Diagnosis
        let clock = Stopwatch()
        do {
            other = try partner.diagnoser.diagnose(path: path)
        } catch {
            other = Diagnosis.failure(
                file: name, modelVersion: partner.diagnoser.modelVersion, error: error, totalMs: clock.elapsedMs)
        }
        let sample =
            partner.partnerIsCandidate
            ? ABSample(imageSHA256: sha, baseline: record, candidate: other)
            : ABSample(imageSHA256: sha, baseline: other, candidate: record)
        do {
            try journal.insert(sample)
            let all = try journal.abSamples(candidateVersion: sample.candidateVersion).filter {
                $0.baselineVersion == sample.baselineVersion
            }
            let comparison = ABComparison(samples: all)
            summary.abSamples += 1
            metrics.recordABSample(agreementRate: comparison.agreementRate)
            return comparison
        } catch {
            logger.error("cannot record A/B sample: \(AnyCodedError(error).message)")
            return nil
        }
    }

    private func moveOrFault(_ name: String, to destination: String) {
        do {
            try spool.move(name, to: destination)
        } catch {
            setFault(AnyCodedError(error).message)
        }
    }

    // MARK: Slot life cycle, alerts, LEDs

    private func apply(_ update: SlotUpdate) {
        for event in update.events {
            do { try journal.insert(event) } catch {
                logger.error("cannot journal slot event: \(AnyCodedError(error).message)")
            }
            logger.info("slot event \(event.event): slot \(event.slot) version \(event.modelVersion) \(event.detail)")
        }
        for check in update.healthChecks {
            do {
                guard try journal.insert(check) else { continue }  // reported before
            } catch {
                logger.error("cannot journal health check: \(AnyCodedError(error).message)")
            }
            metrics.recordHealthCheck(passed: check.passed, at: check.createdAt, accuracy: check.adapterAccuracy)
            let baseline = serving?.baseline.accuracy
            if let accuracy = check.accuracy, let baseline {
                for transition in alerts.observeHealth(accuracy: accuracy, baseline: baseline) { handle(transition) }
            }
        }
        if let note = update.stateRecovery {
            handle(
                AlertTransition(
                    alert: Alert(
                        rule: AlertEngine.stateRecoveredRule, severity: .warning, message: note, value: 1, threshold: 0),
                    raised: true))
        }
        if let reason = update.rollbackReason {
            logger.critical("rollback: \(reason)")
            do { try latch.latch(reason: "rollback: \(reason)") } catch { logger.error("cannot latch red: \(error)") }
        }
        if let next = update.serving {
            let versionChanged = serving?.modelVersion != next.modelVersion
            serving = next
            if versionChanged {
                for transition in alerts.reset(latencyBaselineMs: next.baseline.latencyMs) { handle(transition) }
                metrics.setBaselines(latencyMs: next.baseline.latencyMs, accuracy: next.baseline.accuracy)
            }
            metrics.setActiveSlot(slot: next.slot, version: next.modelVersion)
            if announcedReady { try? notifier.status(statusLine()) }
        }
    }

    private func handle(_ transition: AlertTransition) {
        let a = transition.alert
        metrics.setAlert(rule: a.rule, active: transition.raised, raised: transition.raised)
        let record = AlertRecord(
            rule: a.rule, severity: a.severity, state: transition.raised ? "raised" : "cleared", message: a.message,
            value: a.value, threshold: a.threshold, modelVersion: serving?.modelVersion ?? "", createdAt: Date())
        try? journal.insert(record)
        if transition.raised {
            if a.severity == .critical {
                logger.critical("alert \(a.rule): \(a.message)")
                try? latch.latch(reason: "alert \(a.rule): \(a.message)")
            } else {
                logger.warning("alert \(a.rule): \(a.message)")
            }
        } else {
            logger.notice("alert \(a.rule) cleared")
        }
    }

    private func tick() {
        if let model = serving {
            do {
                apply(try lifecycle.tick(serving: model, now: Date()))
            } catch {
                setFault("slot life cycle: \(AnyCodedError(error).message)")
            }
        }
        if let rss = residentMemoryBytes() {
            metrics.setResidentMemory(rss)
            for transition in alerts.observeMemory(bytes: Double(rss), at: now()) { handle(transition) }
        }
        updateLEDs()
    }

    private func setFault(_ message: String) {
        if fault != message {
            logger.error("fault: \(message)")
            try? latch.latch(reason: "fault: \(message)")
        }
        fault = message
        updateLEDs()
    }

    private func clearFault() {
        guard fault != nil else { return }
        logger.notice("fault cleared")
        fault = nil
    }

    private func updateLEDs() {
        let latched = latch.isLatched
        metrics.setRedLatched(latched)
        let inputs = LEDInputs(
            phase: serving?.phase ?? .unknown, fault: fault != nil, redLatched: latched, lastDecision: lastDecision)
        do {
            try leds.show(LEDPolicy.color(for: inputs))
        } catch {
            logger.error("cannot drive LEDs: \(AnyCodedError(error).message)")
        }
    }

    private func prune() {
        do {
            let (deleted, unsynced) = try journal.prune(
                maxRows: config.retention.maxRows, maxDays: config.retention.maxDays)
            if deleted > 0 { logger.notice("retention: deleted \(deleted) rows (\(unsynced) never synced)") }
        } catch {
            logger.error("retention failed: \(AnyCodedError(error).message)")
        }
    }

    private func writeMetrics() {
        do {
            try metrics.writeFile()
        } catch {
            logger.error("cannot write metrics: \(AnyCodedError(error).message)")
        }
    }

    private func statusLine() -> String {
        guard let s = serving else { return "starting" }
        return "serving slot \(s.slot) \(s.modelVersion) (\(s.phase.rawValue)), \(summary.processed) images"
    }

    private func now() -> Double { Double(monotonicNanoseconds()) / 1e9 }

    // MARK: Trigger and capture

    private var captureInProgress: Bool { captureCount.value > 0 }
    private let captureCount = AtomicCounter()

    private func startTrigger() {
        guard let gpio, let line = config.gpio.lines.trigger else { return }
        let runner = CaptureRunner(
            template: config.capture.command, spool: spool, timeoutSeconds: config.capture.timeoutSeconds)
        let queue = captureQueue
        let logger = logger
        let counter = captureCount
        do {
            let monitor = try TriggerMonitor(
                backend: gpio, line: line, activeLow: config.gpio.activeLow, debounceMs: config.gpio.debounceMs
            ) { _ in
                counter.add(1)
                queue.async {
                    defer { counter.add(-1) }
                    do {
                        let path = try runner.capture()
                        logger.info("captured \(path)")
                    } catch {
                        logger.error("capture failed: \(AnyCodedError(error).message)")
                    }
                }
            }
            monitor.start()
            trigger = monitor
        } catch {
            logger.warning("trigger line \(line) unavailable: \(AnyCodedError(error).message)")
        }
    }
}

/// A small locked counter.
final class AtomicCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    func add(_ delta: Int) {
        lock.lock()
        count += delta
        lock.unlock()
    }

    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }
}
