import AADSCore
import Foundation
import Testing

@testable import AADSSlots

/// A lost or damaged state.json: restored from the previous generation, or rebuilt from the verified
/// slots; never a silent factory install over signed bundles, never a lower floor.
@Suite struct StateRecoveryTests {
    func committedPair(_ name: String) throws -> Bench { try Bench.committedPair(name) }

    func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    @Test func everyWriteKeepsThePreviousGeneration() throws {
        let bench = try committedPair("prevgen")
        let current = try rawState(bench.store.root)
        let previous = try #require(
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: bench.store.previousStatePath)))
                as? [String: Any])
        #expect((previous["generation"] as? Int).map { $0 + 1 } == current["generation"] as? Int)
        #expect((previous["b"] as? [String: Any])?["state"] as? String == "trial")
    }

    @Test(arguments: [
        "{not json", "", #"{"format": 1, "generation": "seven"}"#, #"{"format": 1, "generation": 3, "active": "b"}"#,
    ])
    func unusableStateFileIsRestoredFromThePreviousGeneration(garbage: String) throws {
        let bench = try committedPair("restore")
        try write(garbage, to: bench.store.statePath)
        let status = try bench.store.status()
        #expect(status.origin.name == "previous")
        let decision = try bench.store.beginRuntimeStart(verify: .deep)
        // The generation before the commit: b on trial, 1.0.0 as fallback; the floor the commit raised stays.
        #expect(decision.slot == .b && decision.version == "1.1.0")
        #expect(decision.stateRecovery?.contains("state.json.prev") == true)
        let state = try bench.state
        #expect(state.floor == "1.1.0" && state.fallback == .a && state.a.state == .good)
        let event = try #require(bench.store.journal.read().last { $0.event == .stateRestored })
        #expect(event.reason?.hasPrefix("state.json") == true)
        #expect(try bench.store.status().origin == .current)
        #expect(!(try bench.store.status().staleState))
        #expect(code { try bench.install("1.2.0") } == "trial_active")
    }

    @Test func bothStateFilesLostRebuildsFromTheVerifiedSlots() throws {
        let bench = try committedPair("rebuild")
        let slotA = treeContents(bench.store.bundlePath(.a))
        unlink(bench.store.statePath)
        unlink(bench.store.previousStatePath)
        #expect(try bench.store.status().origin.name == "rebuilt")
        let decision = try bench.store.beginRuntimeStart(verify: .deep)
        #expect(decision.slot == .b && decision.version == "1.1.0" && !decision.trial)
        #expect(decision.stateRecovery?.contains("rebuilt") == true)
        let state = try bench.state
        #expect(state.floor == "1.1.0" && state.b.state == .good && state.a.state == .installed)
        #expect(bench.store.journal.read().contains { $0.event == .stateRebuilt })
        // Not a factory install: the floor holds and slot a is not overwritten by an older bundle.
        #expect(code { try bench.install("0.9.0") } == "downgrade")
        #expect(treeContents(bench.store.bundlePath(.a)) == slotA)
        #expect(bench.store.checkInvariants(keptVersion: "1.1.0").isEmpty)
    }

    @Test func deletedStateFileAloneIsNotAFactoryInstall() throws {
        let bench = try committedPair("deleted")
        unlink(bench.store.statePath)
        // The previous generation had 1.1.0 on trial: nothing installs until it is committed again.
        #expect(code { try bench.install("0.9.0") } == "trial_active")
        try bench.store.commit()
        #expect(code { try bench.install("0.9.0") } == "downgrade")
        let state = try bench.state
        #expect(state.active == .b && state.floor == "1.1.0" && state.a.version == "1.0.0")
    }

    @Test func rebuildServesTheHighestVersionThatVerifies() throws {
        let bench = try committedPair("rebuildcorrupt")
        let victim = bench.store.bundlePath(.b) + "/model.bin"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: victim))
        bytes[100] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: victim))
        try write("garbage", to: bench.store.statePath)
        try write("garbage", to: bench.store.previousStatePath)
        let decision = try bench.store.beginRuntimeStart(verify: .deep)
        #expect(decision.slot == .a && decision.version == "1.0.0")
        let state = try bench.state
        #expect(state.b.state == .bad && state.a.state == .good)
        // The journal remembers the committed floor even though 1.1.0 no longer verifies.
        #expect(state.floor == "1.1.0")
    }

    @Test func aStoreIsNewOnlyWhenBothSlotDirectoriesAreEmpty() throws {
        let bench = try Bench("fresh")
        try FileManager.default.createDirectory(atPath: bench.store.root + "/a", withIntermediateDirectories: true)
        #expect(try bench.store.readState().origin == .fresh)
        try write("stray", to: bench.store.root + "/a/model.bin")
        let (state, origin) = try bench.store.readState()
        #expect(origin.name == "rebuilt" && state.a.state == .bad && state.active == nil)
    }

    @Test func rebuildWithoutUsableKeysRefusesToGuess() throws {
        let bench = try committedPair("nokeys")
        unlink(bench.store.statePath)
        unlink(bench.store.previousStatePath)
        let other = try ScratchBundles(directory: bench.dir + "/other")
        let store = SlotStore(
            root: bench.store.root,
            options: SlotStoreOptions(trustedKeys: other.verifier.trusted, diskFullAfterBytes: nil))
        // Slots signed by a key this store does not trust are not served, and nothing is installed over
        // them as if the store were new: both are marked bad.
        let (state, _) = try store.readState()
        #expect(state.a.state == .bad && state.b.state == .bad && state.active == nil)
    }

    @Test func newDirectoryEntriesAreFollowedByAnFsyncOfTheirDirectory() throws {
        let bench = try Bench("durable")
        let root = bench.dir + "/deep/er/root"
        let store = SlotStore(root: root, options: bench.store.options)
        try store.install(bundle: bench.archive("1.0.0"), verifier: bench.scratch.verifier)
        let steps = DurabilityTrace.steps(under: bench.dir + "/deep")
        // The store root and its missing parents: each created directory's parent is fsynced.
        for created in [bench.dir + "/deep", bench.dir + "/deep/er", root] {
            let parent = (created as NSString).deletingLastPathComponent
            #expect(
                DurabilityTrace.steps(under: parent).contains(.syncedDirectory(parent)),
                "parent of \(created) fsynced")
        }
        // The event journal is created by the factory install: the root is fsynced after it.
        let created = try #require(steps.firstIndex(of: .createdFile(root + "/events.jsonl")))
        #expect(steps[(created + 1)...].contains(.syncedDirectory(root)))
    }
}
