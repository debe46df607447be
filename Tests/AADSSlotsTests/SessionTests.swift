import AADSCore
import Foundation
import Testing

@testable import AADSSlots

/// Unclean exits (a session begun and never ended) count against a trial: the decision matrix's crash
/// frequency row.
@Suite struct SessionTests {
    /// 1.0.0 good in a, 1.1.0 in probation in b after `diagnoses` good diagnoses.
    func probation(_ name: String, diagnoses: Int, policy: ProbationPolicy) throws -> Bench {
        let bench = try Bench(name)
        try bench.install("1.0.0")
        try bench.install("1.1.0")
        try bench.store.activate()
        try bench.store.markHealthPassed()
        for _ in 0..<diagnoses { try bench.store.recordProbation(success: true, policy: policy) }
        return bench
    }

    @Test func aCleanStopIsNotACrash() throws {
        let policy = ProbationPolicy(successes: 1000, minutes: 600)
        let bench = try probation("clean", diagnoses: 10, policy: policy)
        #expect(try bench.store.beginSession(policy: policy).rollback == nil)
        try bench.store.endSession()
        #expect(try bench.store.beginSession(policy: policy).rollback == nil)
        #expect(try bench.state.trial?.uncleanExits == 0)
        #expect(!bench.store.journal.read().contains { $0.event == .uncleanExit })
    }

    @Test func oneCrashIn154DiagnosesRollsBack() throws {
        // The reproduced case: SIGKILL after 154 probation images; 1/154 = 0.65 % > 0.1 %.
        let policy = ProbationPolicy(successes: 200, minutes: 600, maxCrashFrequency: 0.001)
        let bench = try probation("crash", diagnoses: 154, policy: policy)
        try bench.store.beginSession(policy: policy)
        let rollback = try #require(try bench.store.beginSession(policy: policy).rollback)
        #expect(rollback.from == .b && rollback.to == .a && rollback.reason.contains("crash frequency"))
        #expect(rollback.reason.contains("1 unclean exits in 154 diagnoses"))
        let state = try bench.state
        #expect(state.active == .a && state.b.state == .bad)
        let event = try #require(bench.store.journal.read().last { $0.event == .uncleanExit })
        #expect(event.slot == .b && event.uncleanExits == 1)
    }

    @Test func aRareCrashWithinTheBoundIsCountedAndJournaled() throws {
        let policy = ProbationPolicy(successes: 5000, minutes: 600, maxCrashFrequency: 0.001)
        let bench = try probation("rare", diagnoses: 1500, policy: policy)
        try bench.store.beginSession(policy: policy)
        #expect(try bench.store.beginSession(policy: policy).rollback == nil)  // 1/1500 ≤ 0.1 %
        #expect(try bench.state.trial?.uncleanExits == 1)
        #expect(try bench.store.beginSession(policy: policy).rollback != nil)  // 2/1500 > 0.1 %
    }

    @Test func outsideATrialAnUncleanExitIsOnlyJournaled() throws {
        let bench = try Bench("committed")
        try bench.install("1.0.0")
        try bench.store.beginSession(policy: ProbationPolicy())
        #expect(try bench.store.beginSession(policy: ProbationPolicy()).rollback == nil)
        #expect(bench.store.journal.read().last { $0.event == .uncleanExit }?.slot == .a)
        #expect(try bench.state.active == .a)
    }
}
