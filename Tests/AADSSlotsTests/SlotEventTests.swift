import AADSCore
import Foundation
import Testing

@testable import AADSSlots

/// `events.jsonl` lines as earlier versions wrote them (untyped objects, keys sorted) decode into `SlotEvent`,
/// and `SlotEvent` writes the same keys and values back.
@Suite struct SlotEventTests {
    static let ts = "2026-03-01T10:20:30.456Z"

    /// One object per event kind, with the fields the store has written since the journal exists.
    static var legacy: [[String: Any]] {
        [
            [
                "event": "factory_install", "slot": "a", "version": "1.0.0", "signer": "sha256:ab",
                "duration_ms": 303.53,
            ],
            ["event": "install", "slot": "b", "version": "1.1.0", "signer": "sha256:ab", "duration_ms": 12.5],
            ["event": "install_refused", "slot": "b", "code": "bad_signature", "message": "signature does not verify"],
            ["event": "install_failed", "slot": "b", "code": "disk_full", "message": "no space left"],
            ["event": "activate", "slot": "b", "version": "1.1.0", "attempts": 3, "fallback": "a"],
            ["event": "activate_refused", "slot": "b", "reason": "integrity_failed: model.bin"],
            ["event": "trial_start", "slot": "b", "attempts_left": 2, "starts": 1],
            ["event": "health_pass", "slot": "b", "warnings": ["latency 12 % over"]],
            ["event": "health_fail", "slot": "b", "failures": ["ood_auroc 0.81 < 0.90"], "warnings": []],
            [
                "event": "commit", "slot": "b", "version": "1.1.0", "floor": "1.1.0", "reason": "manual", "starts": 1,
                "probation_successes": 50, "probation_errors": 0,
            ],
            [
                "event": "rollback", "from": "b", "to": "a", "from_version": "1.1.0", "to_version": "1.0.0",
                "reason": "crash loop: 3 starts without a commit", "duration_ms": 4.25, "fallback_integrity": "ok",
            ],
            ["event": "recover", "slots": ["b"], "reason": "interrupted install"],
        ]
    }

    static func line(_ fields: [String: Any], active: Any = "a", generation: Int = 7) -> String {
        var object = fields
        object["ts"] = ts
        object["generation"] = generation
        object["active"] = active
        return JSONLine.encode(object)
    }

    @Test(arguments: 0..<legacy.count)
    func legacyLinesDecodeAndEncodeTheSameKeys(_ index: Int) throws {
        let text = Self.line(Self.legacy[index])
        let event = try #require(SlotEvent.decode(line: text), "\(text)")
        #expect(event.event.rawValue == Self.legacy[index]["event"] as? String)
        #expect(event.generation == 7 && event.active == .a)
        #expect(ISO8601.string(event.at) == Self.ts)
        let original = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? NSDictionary)
        let rewritten = try event.line()
        let written = try #require(try JSONSerialization.jsonObject(with: Data(rewritten.utf8)) as? NSDictionary)
        #expect(written == original, "\(rewritten)")
    }

    @Test func fieldsAreTyped() throws {
        let rollback = try #require(SlotEvent.decode(line: Self.line(Self.legacy[10])))
        #expect(rollback.event == .rollback && rollback.from == .b && rollback.to == .a)
        #expect(rollback.durationMs == 4.25 && rollback.toVersion == "1.0.0")
        let empty = try #require(SlotEvent.decode(line: Self.line(Self.legacy[2], active: NSNull())))
        #expect(empty.active == nil && empty.code == "bad_signature")
        #expect(try empty.line().contains(#""active":null"#))
    }

    @Test func unknownEventsAndKeysStillDecode() throws {
        let text = Self.line(["event": "future_thing", "slot": "a", "new_field": [1, 2]])
        let event = try #require(SlotEvent.decode(line: text))
        #expect(event.event.rawValue == "future_thing" && event.slot == .a)
    }

    @Test func linesThatAreNotEventsAreRejected() {
        #expect(SlotEvent.decode(line: #"{"event":"install","slot":"a""#) == nil)  // torn
        #expect(SlotEvent.decode(line: #"{"event":"install","generation":1,"active":"a"}"#) == nil)  // no time
        #expect(SlotEvent.decode(line: #"{"event":"install","ts":"yesterday","generation":1,"active":"a"}"#) == nil)
        #expect(SlotEvent.decode(line: "not json") == nil)
    }
}
