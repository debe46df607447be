import AADSCore
import AADSDiagnosis
import AADSHealth
import AADSSlots
import AADSTestSupport
import Foundation
import Logging
import Testing

@testable import AADSDevice

/// The service's slot life cycle against a real slot store holding copies of the factory bundle.
@Suite(.serialized) struct SlotStoreLifecycleTests {
    static let factory = Fixtures.factoryBundle

    let directory: String
    let scratch: ScratchBundles
    let store: SlotStore
    var config = DeviceConfig.defaults

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("aads-lifecycle-\(UUID())").path
        scratch = try ScratchBundles(directory: directory + "/bundles")
        store = SlotStore(root: directory + "/slots")
        config.slotRoot = store.root
        config.probation.images = 3
        config.probation.requireABNotWorse = false
        config.ab.fraction = 0
        try store.install(bundle: bundle("1.0.0"), verifier: scratch.verifier)
        try store.install(bundle: bundle("1.1.0"), verifier: scratch.verifier)
    }

    /// A copy of the factory bundle with `version`, signed by the scratch key.
    func bundle(_ version: String) throws -> String {
        let path = directory + "/v\(version)"
        try FileManager.default.copyItem(atPath: Self.factory, toPath: path)
        try? FileManager.default.removeItem(atPath: path + "/manifest.sig")
        let url = URL(fileURLWithPath: path + "/manifest.json")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        manifest["model_version"] = version
        try JSONSerialization.data(withJSONObject: manifest).write(to: url)
        try BundlePacker.sign(directory: path, key: scratch.key)
        return path
    }

    func lifecycle(_ health: HealthPolicy = .defaults) -> SlotStoreLifecycle {
        SlotStoreLifecycle(config: config, health: health, logger: Logger(label: "test"))
    }

    /// The first golden photo of healthy corn.
    func image() throws -> String {
        let dir = Self.factory + "/golden/corn/healthy"
        return dir + "/" + (try #require(try FileManager.default.contentsOfDirectory(atPath: dir).sorted().first))
    }

    @Test func trialPassesItsGateThenCommitsAfterProbation() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try store.activate(attempts: 3)
        let cycle = lifecycle()
        let started = try cycle.start()
        let serving = try #require(started.serving)
        #expect(serving.slot == "b")
        #expect(serving.phase == .probation)
        #expect(serving.modelVersion == "1.1.0")
        #expect(started.healthChecks.first?.passed == true)
        // The factory-installed fallback had no figures from this device: the gate measured them first,
        // stored them on slot a and journaled them; alerts compare with this device's own figures.
        let measured = try store.loadState()
        let fallbackLatency = try #require(HealthMetrics.numbers(measured[.a].metrics)["latency_ms"])
        #expect(fallbackLatency > 0)
        #expect(store.journal.read().contains { $0.event == .baselineMeasured && $0.slot == .a })
        #expect(serving.baseline.latencyMs == HealthMetrics.numbers(measured[.b].metrics)["latency_ms"])
        #expect(started.healthChecks.first?.detail.contains("baseline_metrics") == false)
        var update = SlotUpdate.none
        for _ in 0..<3 {
            let record = try serving.diagnoser.diagnose(path: image())
            #expect(record.decision == .diagnosis)
            update = try cycle.didProcess(record, serving: serving, ab: nil)
            if update.serving != nil { break }
        }
        #expect(update.serving?.phase == .committed)
        let state = try store.loadState()
        #expect(state.active == .b)
        #expect(state[.b].state == .good)
        #expect(state.floor == "1.1.0")
    }

    @Test func failingGateRollsBackAndServesTheLastGoodModel() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try store.activate(attempts: 3)
        var strict = HealthPolicy.defaults
        strict.oodAurocMin = 1.01  // no model can pass
        let started = try lifecycle(strict).start()
        #expect(started.serving?.slot == "a")
        #expect(started.serving?.phase == .committed)
        #expect(started.serving?.modelVersion == "1.0.0")
        #expect(started.rollbackReason?.contains("ood_auroc") == true)
        #expect(started.healthChecks.first?.passed == false)
        #expect(try store.loadState()[.b].state == .bad)
    }

    @Test func probationErrorsRollBack() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try store.activate(attempts: 3)
        let cycle = lifecycle()
        let serving = try #require(try cycle.start().serving)
        var update = SlotUpdate.none
        for _ in 0..<3 {
            let failed = Diagnosis.failure(
                file: "x.jpg", modelVersion: serving.modelVersion, error: DeviceTestError())
            update = try cycle.didProcess(failed, serving: serving, ab: nil)
            if update.serving != nil { break }
        }
        #expect(update.serving?.slot == "a")
        #expect(update.rollbackReason?.contains("error rate") == true)
    }

    @Test func aCrashLoopingTrialIsRolledBackBeforeItsModelLoads() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try store.activate(attempts: 1)
        // First start: the attempt is spent, then the process "crashes" (nothing else is recorded).
        _ = try store.beginRuntimeStart()
        let started = try lifecycle().start()
        #expect(started.serving?.slot == "a")
        #expect(started.rollbackReason?.contains("crash loop") == true)
        #expect(try store.loadState()[.b].state == .bad)
    }

    func record(_ serving: ServingModel, decision: Decision = .diagnosis, error: String? = nil) -> Diagnosis {
        var r = Diagnosis(
            file: "x.jpg", decision: decision, modelVersion: serving.modelVersion,
            latency: StageLatency(decode: 1, backbone: 1, adapter: 1, total: 3))
        if let error { r.error = AnyCodedError(code: error, message: error) }
        return r
    }

    /// Starts a trial whose gate has already passed (probation), returning the lifecycle and what it serves.
    func inProbation(_ config: DeviceConfig? = nil) throws -> (SlotStoreLifecycle, ServingModel) {
        _ = try store.activate(attempts: 3)
        try store.markHealthPassed()
        let cycle = SlotStoreLifecycle(config: config ?? self.config, health: .defaults, logger: Logger(label: "test"))
        return (cycle, try #require(try cycle.start().serving))
    }

    @Test func anUncleanExitDuringProbationRollsBackAtTheNextStart() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = self.config
        config.probation.images = 500
        let (first, serving) = try inProbation(config)
        for _ in 0..<154 { _ = try first.didProcess(record(serving), serving: serving, ab: nil) }
        // The process dies here: no stop(). The restarted service counts it.
        let restarted = try SlotStoreLifecycle(config: config, health: .defaults, logger: Logger(label: "test")).start()
        #expect(restarted.serving?.slot == "a")
        #expect(restarted.rollbackReason?.contains("crash frequency") == true)
    }

    @Test func aCleanStopCountsNoCrash() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = self.config
        config.probation.images = 500
        let (first, serving) = try inProbation(config)
        for _ in 0..<10 { _ = try first.didProcess(record(serving), serving: serving, ab: nil) }
        first.stop()
        let restarted = try SlotStoreLifecycle(config: config, health: .defaults, logger: Logger(label: "test")).start()
        #expect(restarted.serving?.slot == "b" && restarted.rollbackReason == nil)
    }

    @Test func theErrorRateBoundIsHealthJsonsAndInputErrorsDoNotCount() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = self.config
        config.probation.images = 1000
        let (cycle, serving) = try inProbation(config)
        for _ in 0..<199 { _ = try cycle.didProcess(record(serving), serving: serving, ab: nil) }
        // A corrupt file from the camera is not the model's error.
        let corrupt = record(serving, decision: .error, error: "corrupt_jpeg")
        #expect(try cycle.didProcess(corrupt, serving: serving, ab: nil).rollbackReason == nil)
        // One model error in 200 (0.5 %) is within error_rate_max 0.005; a second (1.0 %) is not.
        let failed = record(serving, decision: .error, error: "internal")
        #expect(try cycle.didProcess(failed, serving: serving, ab: nil).rollbackReason == nil)
        let update = try cycle.didProcess(failed, serving: serving, ab: nil)
        #expect(update.rollbackReason?.contains("error rate") == true)
    }

    @Test func aContradictingErrorRateInDeviceJsonIsRefusedAtStart() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = self.config
        config.probation.maxErrorRate = 0.02
        let error = #expect(throws: ConfigError.self) {
            try SlotStoreLifecycle(config: config, health: .defaults, logger: Logger(label: "test")).start()
        }
        #expect(error?.message.contains("error_rate_max") == true && error?.keyPath == "probation.max_error_rate")
        config.probation.maxErrorRate = HealthPolicy.defaults.errorRateMax
        #expect(throws: Never.self) {
            try SlotStoreLifecycle(config: config, health: .defaults, logger: Logger(label: "test")).start()
        }
    }

    @Test func probationWaitsForTheABVerdictBeforeItCommits() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = self.config
        config.probation.images = 3
        config.probation.requireABNotWorse = true
        config.ab.fraction = 1
        config.ab.minSamples = 30
        let (cycle, serving) = try inProbation(config)
        func sample(_ i: Int) -> ABSample {
            let baseline = 10.0 + Double(i % 3)
            let candidate = 10.0 + Double((i + 1) % 3)
            return ABSample(
                imageSHA256: "\(i)", baselineVersion: "1.0.0", candidateVersion: serving.modelVersion,
                baselineDecision: .diagnosis, candidateDecision: .diagnosis, baselineLabel: "corn/healthy",
                candidateLabel: "corn/healthy", baselineLatencyMs: baseline, candidateLatencyMs: candidate)
        }
        func comparison(_ n: Int) -> ABComparison { ABComparison(samples: (0..<n).map(sample)) }
        // Well past probation.images, but fewer A/B samples than min_samples: no verdict, no commit.
        for n in 1...29 {
            let update = try cycle.didProcess(record(serving), serving: serving, ab: comparison(n))
            #expect(update.serving == nil, "committed after \(n) images without an A/B verdict")
        }
        #expect(try cycle.tick(serving: serving, now: Date().addingTimeInterval(24 * 3600)).serving == nil)
        let update = try cycle.didProcess(record(serving), serving: serving, ab: comparison(30))
        #expect(update.serving?.phase == .committed)
    }

    @Test func aGateRunOutsideTheServiceIsReportedWithItsFigures() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try store.activate(attempts: 3)
        // What `slot activate` does in its own process.
        let gate = ClosureHealthGate { _ in
            GateVerdict(
                passed: true, metrics: ["adapter_accuracy": .number(0.91), "ood_auroc": .number(0.97)],
                warnings: ["latency up 12%"])
        }
        _ = try store.runHealthGate(gate)
        let cycle = lifecycle()
        let started = try cycle.start()
        let check = try #require(started.healthChecks.last)
        #expect(check.passed && check.slot == "b" && check.modelVersion == "1.1.0")
        #expect(check.adapterAccuracy == 0.91 && check.oodAUROC == 0.97 && check.detail == "latency up 12%")
        // Reported once per life cycle: a tick finds nothing new.
        let serving = try #require(started.serving)
        #expect(try cycle.tick(serving: serving, now: Date().addingTimeInterval(60)).healthChecks.isEmpty)
    }

    @Test func aSlotWithoutFiguresFromThisDeviceHasNoLatencyBaselineFromTheBuildMachine() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The factory install: committed, never measured here. The manifest says 14 ms, measured elsewhere.
        let started = try lifecycle().start()
        #expect(started.serving?.slot == "a")
        #expect(started.serving?.baseline.latencyMs == nil)
        #expect(started.serving?.baseline.accuracy != nil)
    }

    @Test func theServingModelIsReCheckedOnItsGoldenSetOnATimer() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = self.config
        config.alerts.goldenRecheckHours = 1
        let cycle = SlotStoreLifecycle(config: config, health: .defaults, logger: Logger(label: "test"))
        let serving = try #require(try cycle.start().serving)
        let t0 = Date()
        #expect(try cycle.tick(serving: serving, now: t0).healthChecks.isEmpty)  // the clock starts
        #expect(try cycle.tick(serving: serving, now: t0.addingTimeInterval(1800)).healthChecks.isEmpty)
        let check = try #require(try cycle.tick(serving: serving, now: t0.addingTimeInterval(3601)).healthChecks.first)
        #expect(check.detail.hasPrefix("golden-set re-check") && check.slot == "a")
        // The same model on the same photos: no drop against its own figure.
        let accuracy = try #require(check.adapterAccuracy)
        #expect(check.passed && abs(accuracy - (serving.baseline.accuracy ?? 0)) < 0.001)
    }

    @Test func aCorruptCommittedSlotIsRolledBackAtStartNotServed() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try store.activate(attempts: 3)
        try store.commit()
        // One byte of the serving slot's backbone flipped, size unchanged.
        let victim = store.bundlePath(.b) + "/backbone.onnx"
        let handle = try #require(FileHandle(forUpdatingAtPath: victim))
        try handle.seek(toOffset: 4096)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: 4096)
        try handle.write(contentsOf: Data([byte ^ 0x01]))
        try handle.close()
        let started = try lifecycle().start()
        #expect(started.serving?.slot == "a")
        #expect(started.rollbackReason?.hasPrefix("integrity") == true)
        #expect(try store.loadState()[.b].state == .bad)
    }

    @Test func aDamagedStateFileIsRestoredAtStartAndReported() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try store.activate(attempts: 3)
        try store.markHealthPassed()
        try store.commit()
        try Data("{\"format\": 1, \"gener".utf8).write(to: URL(fileURLWithPath: store.statePath))
        // The generation before the commit: b in probation, its gate already passed.
        let started = try lifecycle().start()
        #expect(started.stateRecovery?.contains("state.json.prev") == true)
        #expect(started.serving?.slot == "b")
        #expect(try store.status().origin == .current)
    }
}

struct DeviceTestError: Error {}
