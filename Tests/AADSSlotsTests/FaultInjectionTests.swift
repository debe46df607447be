import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSSlots

#if canImport(Glibc)
    import Glibc
#endif

/// Checks after a kill, written against the files themselves rather than the store's own checker:
/// state.json parses (JSONSerialization), exactly one active slot whose files equal the bundle it was
/// installed from (or, on trial, whose fallback's files do), the last committed version still held
/// byte for byte by a good slot, and every journal line a whole JSON object.
func independentProblems(root: String, sources: String, kept: String?) -> [String] {
    var problems: [String] = []
    guard let data = FileManager.default.contents(atPath: root + "/state.json"),
        let state = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    else { return ["state.json does not parse"] }
    func slot(_ id: String) -> [String: Any] { state[id] as? [String: Any] ?? [:] }
    func intact(_ id: String) -> Bool {
        guard let version = slot(id)["version"] as? String else { return false }
        let source = ["v\(version)", "bundle-\(version)"].map { sources + "/" + $0 }
            .first { FileManager.default.fileExists(atPath: $0) }
        guard let source else { return false }
        return treeContents(root + "/" + id) == treeContents(source)
    }
    guard let active = state["active"] as? String, ["a", "b"].contains(active) else {
        return problems + ["no active slot"]
    }
    let activeState = slot(active)["state"] as? String
    if activeState != "good" && activeState != "trial" {
        problems.append("active slot \(active) is \(activeState ?? "?")")
    }
    let other = active == "a" ? "b" : "a"
    if slot(other)["state"] as? String == "trial" { problems.append("inactive slot \(other) claims trial") }
    if !intact(active) {
        let fallback = state["fallback"] as? String
        if !(activeState == "trial" && fallback != nil && intact(fallback ?? "")) {
            problems.append("active slot \(active) does not hold its bundle's bytes")
        }
    }
    if let kept {
        let holders = ["a", "b"].filter {
            slot($0)["state"] as? String == "good" && slot($0)["version"] as? String == kept && intact($0)
        }
        if holders.isEmpty { problems.append("committed \(kept) lost") }
    }
    if let journal = FileManager.default.contents(atPath: root + "/events.jsonl") {
        var lines = journal.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        lines.removeLast()  // empty after the final newline, or a torn line that readers ignore
        for line in lines where !((try? JSONSerialization.jsonObject(with: Data(line))) is [String: Any]) {
            problems.append("journal line is not whole: \(String(decoding: line, as: UTF8.self))")
        }
    }
    return problems
}

@Suite(
    .enabled(if: TestBinary.isBuilt, "needs aads-edge built next to the tests: run `swift build --build-tests` first"))
struct FaultInjectionTests {
    /// Every named crash point: the real CLI is SIGKILLed there, then the store must hold its
    /// invariants, serve, and complete a full install → activate → commit cycle through the CLI.
    @Test(arguments: CrashPoint.allCases)
    func killAtCrashPoint(_ point: CrashPoint) throws {
        let bench = try Bench("crash-\(point.rawValue)")
        try bench.install("1.0.0")
        var cycle = PowerCutCycle(store: bench.store, scratch: bench.scratch, executable: TestBinary.aadsEdge)
        try cycle.prepare(point)
        let before = try rawState(bench.store.root)
        let result = try TestBinary.run(
            cycle.command(for: point), env: [CrashPoint.environmentVariable: point.rawValue])
        #expect(result.killed, "\(point.rawValue) was not reached")
        let after = try rawState(bench.store.root)
        // The committed version to keep: the floor (versions only increase in this test).
        let kept = after["floor"] as? String
        let floorBefore = try #require((before["floor"] as? String).flatMap(SemVer.init))
        let floorAfter = try #require(kept.flatMap(SemVer.init))
        #expect(floorBefore <= floorAfter)
        var problems = independentProblems(root: bench.store.root, sources: bench.scratch.directory, kept: kept)
        problems += bench.store.checkInvariants(keptVersion: kept)
        #expect(problems.isEmpty, "\(point.rawValue): \(problems)")

        // The store keeps working through the CLI after the cut.
        let root = ["--root", bench.store.root]
        #expect(try TestBinary.run(["slot", "status", "--json"] + root).status == 0)
        var state = try bench.store.loadState()
        if state.trial == nil {
            if state[state.active?.other ?? .b].state != .installed {
                let next = try bench.scratch.makeArchive(version: "9.0.0")
                let install = try TestBinary.run(
                    ["slot", "install", next, "--trusted", bench.scratch.trustedDirectory] + root)
                #expect(install.status == 0, "\(point.rawValue): install after the cut")
            }
            #expect(
                try TestBinary.run(["slot", "activate", "--no-health-check"] + root).status == 0,
                "\(point.rawValue)")
        }
        #expect(try TestBinary.run(["slot", "start"] + root).status == 0, "\(point.rawValue)")
        #expect(try TestBinary.run(["slot", "commit"] + root).status == 0, "\(point.rawValue)")
        state = try bench.store.loadState()
        #expect(state.trial == nil && state.active.map { state[$0].state } == .good)
        let final = independentProblems(root: bench.store.root, sources: bench.scratch.directory, kept: state.floor)
        #expect(final.isEmpty, "\(point.rawValue) after recovery: \(final)")
    }

    /// ≥ 200 SIGKILLs at random instants of install → activate → start → commit/rollback cycles run
    /// by the real CLI. After every kill the independent invariants must hold and the floor never drops.
    @Test func randomKillsDuringUpdateCycles() throws {
        let bench = try Bench("random")
        try bench.install("1.0.0")
        let root = ["--root", bench.store.root]
        var generator = SystemRandomNumberGenerator()
        var kills = 0
        var spawns = 0
        var nextMinor = 1
        var typicalMicros: [String: UInt32] = [:]
        var consecutiveKills = 0
        var killsByKind: [String: Int] = [:]
        var floor = try #require(SemVer("1.0.0"))
        while kills < 200 && spawns < 1200 {
            let state = try bench.store.loadState()
            var args: [String]
            let kind: String
            if state.trial != nil {
                let roll = Int.random(in: 0..<10, using: &generator)
                (kind, args) =
                    roll < 4
                    ? ("start", ["slot", "start"])
                    : roll < 8
                        ? ("commit", ["slot", "commit"])
                        : ("rollback", ["slot", "rollback", "--reason", "random"])
            } else if let active = state.active, state[active.other].state == .installed {
                (kind, args) = ("activate", ["slot", "activate", "--no-health-check", "--attempts", "2"])
            } else {
                let version = "1.\(nextMinor).0"
                let path = bench.scratch.directory + "/bundle-\(version).tar"
                if !FileManager.default.fileExists(atPath: path) { try bench.scratch.makeArchive(version: version) }
                (kind, args) = ("install", ["slot", "install", path, "--trusted", bench.scratch.trustedDirectory])
            }
            args += root
            let process = Process()
            process.executableURL = URL(fileURLWithPath: TestBinary.aadsEdge)
            process.arguments = args
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            var clock = Stopwatch()
            try process.run()
            spawns += 1
            // Kill at a random instant up to 1.2× the command's typical run time, so that some runs
            // finish; after four kills in a row the next run is left alone so the cycle moves on.
            if let typical = typicalMicros[kind], consecutiveKills < 4 {
                usleep(UInt32.random(in: 0...(typical + typical / 5), using: &generator))
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            } else {
                process.waitUntilExit()
                if typicalMicros[kind] == nil { typicalMicros[kind] = UInt32(clock.lap() * 1000) }
            }
            if process.terminationReason != .uncaughtSignal { consecutiveKills = 0 }
            if process.terminationReason == .uncaughtSignal {
                kills += 1
                consecutiveKills += 1
                killsByKind[kind, default: 0] += 1
            } else if kind == "install" {
                nextMinor += 1
            }
            if kind == "install", (try? bench.store.loadState())?.trial == nil,
                let s = try? bench.store.loadState(), let a = s.active, s[a.other].state == .installed,
                s[a.other].version == "1.\(nextMinor).0"
            {
                nextMinor += 1  // the install completed before the kill landed
            }
            let after = try rawState(bench.store.root)
            let kept = after["floor"] as? String
            let newFloor = try #require(kept.flatMap(SemVer.init))
            #expect(newFloor >= floor, "floor dropped after \(kind)")
            floor = newFloor
            let problems = independentProblems(root: bench.store.root, sources: bench.scratch.directory, kept: kept)
            #expect(problems.isEmpty, "after killing \(kind) (spawn \(spawns)): \(problems)")
            if !problems.isEmpty { break }
        }
        var counts: [String: Int] = [:]
        for event in bench.store.journal.read() { counts[event.event.rawValue, default: 0] += 1 }
        let byCommand = killsByKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let events = counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        print("random kills: \(kills) SIGKILLs in \(spawns) spawns; killed: \(byCommand); journal: \(events)")
        #expect(kills >= 200, "only \(kills) kills in \(spawns) spawns")
        // The store's own checker agrees at the end.
        #expect(bench.store.checkInvariants(keptVersion: floor.description).isEmpty)
    }
}
