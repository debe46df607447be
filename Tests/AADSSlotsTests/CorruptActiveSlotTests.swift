import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSSlots

/// A committed, serving slot corrupted on disk (same size, one byte flipped): never served, rolled back
/// at start, and the intact fallback is never overwritten while it is the only good model.
@Suite struct CorruptActiveSlotTests {
    func corruptedCommittedPair(_ name: String) throws -> Bench {
        let bench = try Bench.committedPair(name)
        let victim = bench.store.bundlePath(.b) + "/model.bin"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: victim))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: victim))
        return bench
    }

    @Test func theCorruptActiveSlotIsNotHandedOut() throws {
        let bench = try corruptedCommittedPair("handout")
        #expect(code { try bench.store.activeBundlePath() as Any } == "integrity_failed")
    }

    @Test func installRefusesToOverwriteTheIntactFallback() throws {
        let bench = try corruptedCommittedPair("overwrite")
        let fallback = treeContents(bench.store.bundlePath(.a))
        #expect(code { try bench.install("1.2.0") } == "integrity_failed")
        #expect(treeContents(bench.store.bundlePath(.a)) == fallback)
        #expect(try bench.state.a.state == .good)
    }

    @Test func startRollsBackToTheIntactFallbackThenInstallsGoToTheCorruptSlot() throws {
        let bench = try corruptedCommittedPair("start")
        let decision = try bench.store.beginRuntimeStart(verify: .deep)
        #expect(decision.slot == .a && decision.rollback?.reason.hasPrefix("integrity") == true)
        #expect(try bench.state.b.state == .bad)
        #expect(try bench.install("1.2.0").slot == .b)
        try bench.store.checkIntegrity(.a)
    }

    @Test func healthRollsBackACorruptServingSlot() throws {
        guard TestBinary.isBuilt else { return }
        let bench = try corruptedCommittedPair("health")
        let result = try TestBinary.run([
            "health", "--root", bench.store.root, "--policy",
            Fixtures.repositoryPath("firmware-config/health.json"), "--json",
        ])
        #expect(result.status == 1)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let rollback = try #require(object["rollback"] as? [String: Any])
        #expect(rollback["from"] as? String == "b" && rollback["to"] as? String == "a")
        let state = try bench.state
        #expect(state.active == .a && state.b.state == .bad)
        // The intact slot now serves; checking it again rolls nothing back.
        let again = try TestBinary.run([
            "health", "--root", bench.store.root, "--policy",
            Fixtures.repositoryPath("firmware-config/health.json"), "--json",
        ])
        #expect(!again.stdout.contains("\"rollback\""))
        #expect(try bench.state.active == .a)
    }
}
