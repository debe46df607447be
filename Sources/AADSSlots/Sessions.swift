import AADSCore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Runtime sessions, for the decision matrix's crash frequency. A runtime marks its session as running
/// (`.session` in the root) before it serves and clears the mark when it stops cleanly; a mark found at
/// the next start means the last session crashed, was killed or lost power. Each such unclean exit is
/// journaled, and during a trial counted against it: unclean exits per probation diagnosis above the
/// policy's `maxCrashFrequency` roll the trial back.
extension SlotStore {
    var sessionPath: String { root + "/.session" }

    /// What starting a session did.
    public struct SessionStart: Sendable, Equatable {
        /// The trial rolled back for its crash frequency.
        public var rollback: RollbackResult?
        /// `state.json` was unusable and was restored or rebuilt (see `recoverNoting`).
        public var stateRecovery: String?
    }

    /// Starts a session: counts the previous one when it ended uncleanly (rolling a trial back when its
    /// crash frequency is exceeded), then marks this one as running.
    @discardableResult
    public func beginSession(policy: ProbationPolicy) throws -> SessionStart {
        let started = Stopwatch()
        return try withLock {
            var (state, recovery) = try recoverNoting()
            var rollback: RollbackResult?
            if let previous = FileManager.default.contents(atPath: sessionPath) {
                let what =
                    String(decoding: previous.prefix(200), as: UTF8.self)
                    .split(whereSeparator: \.isNewline).first.map(String.init) ?? "a session"
                if var trial = state.trial {
                    trial.uncleanExits += 1
                    state.trial = trial
                    try persist(&state)
                }
                try journal.append(
                    event(.uncleanExit, state) {
                        $0.slot = state.trial?.slot ?? state.active
                        $0.reason = "\(what) ended without a clean stop"
                        $0.uncleanExits = state.trial?.uncleanExits
                    })
                if let trial = state.trial {
                    let diagnoses = trial.probationSuccesses + trial.probationErrors
                    let frequency = Double(trial.uncleanExits) / Double(max(1, diagnoses))
                    if frequency > policy.maxCrashFrequency {
                        rollback = try performRollback(
                            &state,
                            reason: "probation: crash frequency \(JSONLine.rounded(frequency, 4)) "
                                + "(\(trial.uncleanExits) unclean exits in \(diagnoses) diagnoses)",
                            started: started)
                    }
                }
            }
            let mark = "session pid \(getpid()) started \(timestamp())\n"
            do { try AtomicFile.write(Data(mark.utf8), to: sessionPath) } catch { throw SlotError.wrap(error) }
            return SessionStart(rollback: rollback, stateRecovery: recovery)
        }
    }

    /// Ends the session cleanly (its mark is removed).
    public func endSession() throws {
        guard unlink(sessionPath) == 0 || errno == ENOENT else {
            throw SlotError(.ioError, "cannot remove \(sessionPath): \(String(cString: strerror(errno)))")
        }
        do { try AtomicFile.syncDirectory(root) } catch { throw SlotError.wrap(error) }
    }
}
