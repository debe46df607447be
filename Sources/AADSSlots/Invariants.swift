import Foundation

extension SlotStore {
    /// Read-only check of what must hold after any crash or power cut, returning the problems found
    /// (empty when sound):
    /// 1. `state.json` parses and obeys the state machine's invariants;
    /// 2. exactly one slot is active, and it passes a deep integrity check — or it is on trial and
    ///    its fallback does (the next start rolls back to it);
    /// 3. `keptVersion`, if given (the last committed model), is held by a `good` slot that passes;
    /// 4. every journal line is a whole JSON object (a torn last line is tolerated: readers ignore it).
    public func checkInvariants(keptVersion: String? = nil) -> [String] {
        var problems: [String] = []
        let state: StoreState
        do { state = try loadState() } catch {
            return ["state: \(error)"]
        }
        problems += state.violations().map { "state: \($0)" }
        if let active = state.active {
            if (try? checkIntegrity(active, record: state[active], level: .deep)) == nil {
                if state.trial?.slot == active, let fallback = state.fallback,
                    (try? checkIntegrity(fallback, record: state[fallback], level: .deep)) != nil
                {
                    // the next start rolls back to the intact fallback
                } else {
                    problems.append("active slot \(active) fails integrity")
                }
            }
        } else if FileManager.default.fileExists(atPath: statePath) && state.generation > 0 {
            problems.append("no active slot")
        }
        if let keptVersion {
            let holders = SlotID.allCases.filter {
                state[$0].state == .good && state[$0].version == keptVersion
                    && (try? checkIntegrity($0, record: state[$0], level: .deep)) != nil
            }
            if holders.isEmpty { problems.append("committed version \(keptVersion) is no longer held by a good slot") }
        }
        if let data = FileManager.default.contents(atPath: journal.path), !data.isEmpty {
            var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            // The last piece is either empty (the file ends with a newline) or a torn line readers ignore.
            lines.removeLast()
            for (i, line) in lines.enumerated() {
                guard (try? JSONSerialization.jsonObject(with: Data(line))) is [String: Any] else {
                    problems.append("journal line \(i + 1) is not a whole JSON object")
                    continue
                }
            }
        }
        return problems
    }
}
