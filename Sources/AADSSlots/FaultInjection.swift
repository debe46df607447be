import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Named places where the process can be made to die with SIGKILL, for power-cut and crash testing.
///
/// Set `AADS_CRASH_POINT=<raw value>` in the environment of an `aads-edge` test build; when execution
/// reaches that point the process sends itself SIGKILL (no cleanup, no flush — like a power cut).
/// `*.mid_state_write` points first leave a half-written temporary state file behind, as a cut in
/// the middle of the atomic write would. `journal.mid_append` leaves a torn last journal line.
///
/// Only debug builds (the ones the tests run, compiled with `AADS_TEST_HOOKS`) read the variable. In a
/// release or device build no point can be armed, so nothing in a device's environment can kill it.
public enum CrashPoint: String, CaseIterable, Sendable {
    // install
    case installAfterMarkInstalling = "install.after_mark_installing"
    case installMidStagingWrite = "install.mid_staging_write"
    case installAfterStagingWrite = "install.after_staging_write"
    case installBeforeRename = "install.before_rename"
    case installAfterRename = "install.after_rename"
    case installMidStateWrite = "install.mid_state_write"
    case installAfterStateWrite = "install.after_state_write"
    // activate
    case activateBeforeStateWrite = "activate.before_state_write"
    case activateMidStateWrite = "activate.mid_state_write"
    case activateAfterStateWrite = "activate.after_state_write"
    // runtime start in trial
    case startMidStateWrite = "start.mid_state_write"
    case startAfterDecrement = "start.after_decrement"
    // health gate and probation
    case healthDuringCheck = "health.during_check"
    case healthMidStateWrite = "health.mid_state_write"
    case probationMidStateWrite = "probation.mid_state_write"
    // commit
    case commitBeforeStateWrite = "commit.before_state_write"
    case commitMidStateWrite = "commit.mid_state_write"
    case commitAfterStateWrite = "commit.after_state_write"
    // rollback
    case rollbackBeforeStateWrite = "rollback.before_state_write"
    case rollbackMidStateWrite = "rollback.mid_state_write"
    case rollbackAfterStateWrite = "rollback.after_state_write"
    // journal
    case journalMidAppend = "journal.mid_append"

    #if AADS_TEST_HOOKS
        /// Whether this build can arm crash points and inject faults (a test build).
        public static let injectionCompiled = true

        /// The environment variable naming the armed point.
        public static let environmentVariable = "AADS_CRASH_POINT"

        /// The point armed for this process, read once.
        public static let armed: CrashPoint? = {
            guard let raw = ProcessInfo.processInfo.environment[environmentVariable] else { return nil }
            return CrashPoint(rawValue: raw)
        }()
    #else
        /// Whether this build can arm crash points and inject faults (a test build).
        public static let injectionCompiled = false

        /// No point is ever armed outside test builds.
        public static var armed: CrashPoint? { nil }
    #endif

    /// Whether this point is armed in this process.
    public var isArmed: Bool { CrashPoint.armed == self }

    /// Dies here (SIGKILL) if this point is armed.
    public func hit() {
        if isArmed { CrashPoint.die() }
    }

    static func die() -> Never {
        kill(getpid(), SIGKILL)
        // SIGKILL cannot be caught; this only runs if the signal was somehow not delivered yet.
        while true { pause() }
    }
}

/// Other injected faults, for tests: `AADS_FAULT_DISK_FULL_AFTER=<bytes>` makes slot staging writes
/// fail with a real ENOSPC (the bytes beyond the budget are written to `/dev/full`). Read only by test
/// builds, like `AADS_CRASH_POINT`.
#if AADS_TEST_HOOKS
    public enum InjectedFaults {
        public static let diskFullVariable = "AADS_FAULT_DISK_FULL_AFTER"

        public static var diskFullAfterBytes: UInt64? {
            ProcessInfo.processInfo.environment[diskFullVariable].flatMap { UInt64($0) }
        }
    }
#endif
