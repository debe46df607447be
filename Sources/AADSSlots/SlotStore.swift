import AADSCore
import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What a runtime start should do (see `SlotStore.beginRuntimeStart`).
public struct StartDecision: Sendable, Equatable {
    /// The slot to load, nil when the store holds no model yet.
    public let slot: SlotID?
    /// Its bundle directory.
    public let bundlePath: String?
    public let version: String?
    /// Whether the slot is on trial (then `attemptsLeft` starts remain after this one).
    public let trial: Bool
    public let attemptsLeft: Int?
    /// Set when this start rolled back (crash loop, corrupt slot) before choosing `slot`.
    public let rollback: RollbackResult?
    /// Set when this start found `state.json` unusable and restored or rebuilt it (journaled; worth an alert).
    public var stateRecovery: String? = nil
}

/// The outcome of a rollback, journaled with its reason and duration.
public struct RollbackResult: Sendable, Equatable {
    public let from: SlotID
    public let to: SlotID
    public let fromVersion: String?
    public let toVersion: String?
    public let reason: String
    /// From the decision to the fallback being the active, integrity-checked slot on disk.
    public let durationMs: Double
}

/// The outcome of an install.
public struct InstallResult: Sendable, Equatable {
    public let slot: SlotID
    public let version: String
    public let signer: String
    /// True for the first bundle of an empty store, which becomes `good` and active at once.
    public let factory: Bool
    public let durationMs: Double
}

/// The outcome of a commit.
public struct CommitResult: Sendable, Equatable {
    public let slot: SlotID
    public let version: String?
    public let floor: String?
}

/// How much of a slot to check.
public enum IntegrityLevel: Sendable {
    /// Manifest digest and file sizes.
    case quick
    /// Also re-hashes every payload byte.
    case deep
}

/// Options for a store (and in test builds an injected fault, whose default reads the environment).
public struct SlotStoreOptions: Sendable {
    public var limits: BundleLimits
    /// How long an operation waits for the store lock held by another process before failing with `io_error`.
    public var lockTimeoutSeconds: Double = 30
    /// The keys that verify the slots when the state must be rebuilt from them (both state files lost);
    /// nil: the keys of `TrustedKeys.defaultDirectory()`.
    public var trustedKeys: TrustedKeys?
    #if AADS_TEST_HOOKS
        /// Staging writes fail with ENOSPC once this many bytes were written (tests).
        public var diskFullAfterBytes: UInt64?

        public init(
            limits: BundleLimits = .default, trustedKeys: TrustedKeys? = nil,
            diskFullAfterBytes: UInt64? = InjectedFaults.diskFullAfterBytes
        ) {
            self.limits = limits
            self.trustedKeys = trustedKeys
            self.diskFullAfterBytes = diskFullAfterBytes
        }
    #else
        public init(limits: BundleLimits = .default, trustedKeys: TrustedKeys? = nil) {
            self.limits = limits
            self.trustedKeys = trustedKeys
        }
    #endif
}

/// The A/B slot store: two bundle directories (`a/`, `b/`), `state.json` (atomic, with a generation)
/// and `events.jsonl` (append-only journal) under one root. Each operation takes an exclusive lock
/// (`flock` on `.lock`), so the CLI and the service may both use the same root. The store knows
/// nothing of models: a slot holds a verified bundle directory.
///
/// State machine (each step persisted atomically before the next):
/// install → inactive slot `installing` … `installed` (an empty store's first bundle becomes `good`
/// and active: the factory install); activate → `trial` with N attempts, the previous good slot as
/// fallback; each runtime start in trial spends one attempt before the model loads, and a start with
/// none left rolls back (crash loop); commit → `good`, floor = max(floor, version); rollback → the
/// active slot `bad`, the fallback active.
public struct SlotStore: Sendable {
    public static let defaultRoot = "/var/lib/aads-edge"

    public let root: String
    public let options: SlotStoreOptions

    public init(root: String = SlotStore.defaultRoot, options: SlotStoreOptions = SlotStoreOptions()) {
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        self.options = options
    }

    public var statePath: String { root + "/state.json" }
    public var journal: SlotJournal { SlotJournal(path: root + "/events.jsonl") }

    /// The directory holding a slot's bundle.
    public func bundlePath(_ slot: SlotID) -> String { root + "/" + slot.rawValue }
    func stagingPath(_ slot: SlotID) -> String { root + "/.staging-" + slot.rawValue }

    // MARK: reading

    /// The state to work on: `state.json`, else the generation before it, else one rebuilt from the
    /// verified slots (see `readState`). Reading repairs nothing on disk; the next locked operation does.
    public func loadState() throws -> StoreState { try readState().state }

    /// Throws `not_found` unless the root is an existing directory (only an install creates a store).
    public func requireExisting() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory) else {
            throw SlotError(.notFound, "no slot store at \(root)")
        }
        guard isDirectory.boolValue else { throw SlotError(.notFound, "\(root) is not a slot store directory") }
    }

    /// The active slot's bundle directory once every file re-hashes to its manifest (`integrity_failed`
    /// otherwise: a corrupt slot is never served), nil for an empty store; `not_found` for a missing root.
    public func activeBundlePath() throws -> String? {
        try requireExisting()
        let state = try loadState()
        guard let active = state.active else { return nil }
        do { try checkIntegrity(active, record: state[active], level: .deep) } catch let error as SlotError {
            throw SlotError(
                error.kind, error.message + " (`aads-edge health --root \(root)` rolls back to the fallback)")
        }
        return bundlePath(active)
    }

    /// The status report (`slot status`); `not_found` for a missing root.
    public func status(lastEvents: Int = 10) throws -> SlotStatus {
        try requireExisting()
        let (state, origin) = try readState()
        let events = journal.read()
        let journalGeneration = events.map(\.generation).max() ?? 0
        var status = SlotStatus(
            state: state, origin: origin, events: Array(events.suffix(max(0, lastEvents))),
            staleState: journalGeneration > state.generation, violations: state.violations())
        status.models = try installedModels()
        return status
    }

    /// Checks a slot's files against the manifest recorded at install. Throws `integrity_failed`.
    public func checkIntegrity(_ slot: SlotID, level: IntegrityLevel = .deep) throws {
        let state = try loadState()
        try checkIntegrity(slot, record: state[slot], level: level)
    }

    func checkIntegrity(_ slot: SlotID, record: SlotRecord, level: IntegrityLevel) throws {
        let dir = bundlePath(slot)
        guard let expected = record.manifestSHA256 else {
            throw SlotError(.integrityFailed, "slot \(slot) holds no installed bundle")
        }
        guard let manifestData = FileManager.default.contents(atPath: dir + "/" + BundleManifest.manifestName) else {
            throw SlotError(.integrityFailed, "slot \(slot) has no manifest.json")
        }
        guard hex(SHA256.hash(data: manifestData)) == expected else {
            throw SlotError(.integrityFailed, "slot \(slot) manifest.json changed since install")
        }
        let manifest: BundleManifest
        do { manifest = try BundleManifest.parse(manifestData, limits: options.limits) } catch {
            throw SlotError(.integrityFailed, "slot \(slot) manifest.json no longer parses")
        }
        for file in manifest.files {
            let path = dir + "/" + file.path
            var info = stat()
            guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, UInt64(info.st_size) == file.size else {
                throw SlotError(.integrityFailed, "slot \(slot) file \(file.path) is missing or has the wrong size")
            }
            if level == .deep {
                guard let digest = try? hashFile(path), digest == file.sha256 else {
                    throw SlotError(.integrityFailed, "slot \(slot) file \(file.path) does not match its sha256")
                }
            }
        }
    }

    // MARK: install

    /// Verifies a bundle (file or directory) and installs it into the inactive slot.
    ///
    /// Refused with `trial_active` during a trial, with the bundle's error code before anything is
    /// written to a slot, and `disk_full`/`io_error` on write failures (the slot is left `empty`).
    /// Into an empty store the bundle becomes `good` and active (factory install).
    @discardableResult
    public func install(bundle path: String, verifier: BundleVerifier, allowDowngrade: Bool = false) throws
        -> InstallResult
    {
        var clock = Stopwatch()
        return try withLock(creating: true) {
            var state = try recover()
            if let trial = state.trial {
                throw SlotError(.trialActive, "slot \(trial.slot) is on trial: commit or roll back first")
            }
            let target = state.active?.other ?? .a
            if state[target].state == .good, let active = state.active, state[active].state != .good {
                throw SlotError(.wouldOverwriteLastGood, "slot \(target) holds the only good bundle")
            }
            if state[target].state == .good, let active = state.active {
                // Never overwrite the intact fallback while the serving slot is corrupt.
                do { try checkIntegrity(active, record: state[active], level: .deep) } catch {
                    let message = (error as? SlotError)?.message ?? "\(error)"
                    throw SlotError(
                        .integrityFailed,
                        "active slot \(active) fails its integrity check (\(message)); slot \(target) holds the only "
                            + "intact good bundle: roll back before installing")
                }
            }
            let floor = state.floor.flatMap(SemVer.init)
            let bundle: VerifiedBundle
            do {
                bundle = try verifier.verify(path: path, floor: floor, allowDowngrade: allowDowngrade)
            } catch {
                let coded = SlotError.wrap(error)
                try? journal.append(
                    event(.installRefused, state) {
                        $0.slot = target
                        $0.code = coded.code
                        $0.message = coded.message
                    })
                throw coded
            }
            let factory = state.active == nil
            if state.fallback == target { state.fallback = nil }
            state[target] = SlotRecord(state: .installing, version: bundle.version.description)
            try persist(&state)
            CrashPoint.installAfterMarkInstalling.hit()
            do {
                try removeTree(bundlePath(target))
                try removeTree(stagingPath(target))
                try extract(bundle, into: stagingPath(target))
                CrashPoint.installAfterStagingWrite.hit()
                try reverify(bundle.manifest, at: stagingPath(target))
                try syncTree(stagingPath(target))
                CrashPoint.installBeforeRename.hit()
                guard rename(stagingPath(target), bundlePath(target)) == 0 else {
                    throw SlotError(
                        .ioError, "cannot rename staging into slot \(target): \(String(cString: strerror(errno)))")
                }
                try AtomicFile.syncDirectory(root)
                CrashPoint.installAfterRename.hit()
            } catch {
                let coded = SlotError.wrap(error)
                try? removeTree(stagingPath(target))
                try? removeTree(bundlePath(target))
                state[target] = SlotRecord(state: .empty)
                try? persist(&state)
                try? journal.append(
                    event(.installFailed, state) {
                        $0.slot = target
                        $0.code = coded.code
                        $0.message = coded.message
                    })
                throw coded
            }
            let now = timestamp()
            state[target] = SlotRecord(
                state: factory ? .good : .installed, version: bundle.version.description,
                manifestSHA256: bundle.manifestSHA256, signer: bundle.signer.fingerprint, installedAt: now,
                committedAt: factory ? now : nil)
            if factory {
                state.active = target
                state.floor = bundle.version.description
            }
            try persist(&state, midWrite: .installMidStateWrite)
            CrashPoint.installAfterStateWrite.hit()
            let ms = clock.lap()
            try journal.append(
                event(factory ? .factoryInstall : .install, state) {
                    $0.slot = target
                    $0.version = bundle.version.description
                    $0.signer = bundle.signer.fingerprint
                    $0.durationMs = JSONLine.rounded(ms)
                })
            return InstallResult(
                slot: target, version: bundle.version.description, signer: bundle.signer.fingerprint, factory: factory,
                durationMs: ms)
        }
    }

    // MARK: activate

    /// Makes the installed inactive slot the `trial` slot with `attempts` runtime starts.
    @discardableResult
    public func activate(attempts: Int = 3) throws -> StoreState {
        guard attempts >= 1, attempts <= 1000 else {
            throw SlotError(.badArgument, "attempts must be between 1 and 1000")
        }
        return try withLock {
            var state = try recover()
            if let trial = state.trial {
                throw SlotError(.trialActive, "slot \(trial.slot) is already on trial")
            }
            guard let active = state.active else { throw SlotError(.noActiveSlot, "the store is empty") }
            let target = active.other
            guard state[target].state == .installed else {
                throw SlotError(
                    .noInstalledSlot, "slot \(target) is \(state[target].effectiveState.rawValue), not installed")
            }
            guard state[active].state == .good else {
                throw SlotError(.badState, "active slot \(active) is not good")
            }
            do {
                try checkIntegrity(target, record: state[target], level: .deep)
            } catch {
                state[target].state = .bad
                try persist(&state)
                try journal.append(
                    event(.activateRefused, state) {
                        $0.slot = target
                        $0.reason = "\(error)"
                    })
                throw error
            }
            state.fallback = active
            state.active = target
            state[target].state = .trial
            state.trial = TrialRecord(
                slot: target, attempts: attempts, attemptsLeft: attempts, startedAt: timestamp(), starts: 0,
                healthPassedAt: nil, probationSuccesses: 0, probationErrors: 0)
            CrashPoint.activateBeforeStateWrite.hit()
            try persist(&state, midWrite: .activateMidStateWrite)
            CrashPoint.activateAfterStateWrite.hit()
            try journal.append(
                event(.activate, state) {
                    $0.slot = target
                    $0.version = state[target].version ?? ""
                    $0.attempts = attempts
                    $0.fallback = active
                })
            return state
        }
    }

    // MARK: runtime start

    /// Called by the runtime before it loads the model. In trial, spends one attempt and persists it
    /// first; with no attempt left, rolls back to the fallback (crash loop). With `.deep`/`.quick`,
    /// also checks the slot's files, rolling back from a corrupt slot when a good fallback exists.
    public func beginRuntimeStart(verify level: IntegrityLevel? = .quick) throws -> StartDecision {
        try withLock {
            var (state, recovery) = try recoverNoting()
            guard let active = state.active else {
                return StartDecision(
                    slot: nil, bundlePath: nil, version: nil, trial: false, attemptsLeft: nil, rollback: nil,
                    stateRecovery: recovery)
            }
            var rollback: RollbackResult?
            if let level {
                do {
                    try checkIntegrity(active, record: state[active], level: level)
                } catch {
                    guard state.fallback.map({ state[$0].state == .good }) == true else { throw error }
                    rollback = try performRollback(
                        &state, reason: "integrity: \((error as? SlotError)?.message ?? "\(error)")",
                        started: Stopwatch())
                }
            }
            if rollback == nil, var trial = state.trial {
                if trial.attemptsLeft <= 0 {
                    rollback = try performRollback(
                        &state, reason: "crash loop: \(trial.starts) starts without a commit", started: Stopwatch())
                } else {
                    trial.attemptsLeft -= 1
                    trial.starts += 1
                    state.trial = trial
                    try persist(&state, midWrite: .startMidStateWrite)
                    try journal.append(
                        event(.trialStart, state) {
                            $0.slot = trial.slot
                            $0.attemptsLeft = trial.attemptsLeft
                            $0.starts = trial.starts
                        })
                    CrashPoint.startAfterDecrement.hit()
                }
            }
            guard let slot = state.active else { throw SlotError(.noActiveSlot, "no active slot") }
            return StartDecision(
                slot: slot, bundlePath: bundlePath(slot), version: state[slot].version, trial: state.trial != nil,
                attemptsLeft: state.trial?.attemptsLeft, rollback: rollback, stateRecovery: recovery)
        }
    }

    // MARK: health gate and probation bookkeeping

    /// Records that the trial slot passed its health gate: probation begins. `metrics` are stored on the slot.
    @discardableResult
    public func markHealthPassed(metrics: SlotMetrics = [:]) throws -> TrialRecord {
        try withLock {
            var state = try recover()
            guard var trial = state.trial else { throw SlotError(.noTrial, "no slot is on trial") }
            trial.healthPassedAt = timestamp()
            state.trial = trial
            state[trial.slot].metrics.merge(metrics) { _, new in new }
            try persist(&state, midWrite: .healthMidStateWrite)
            try journal.append(event(.healthPass, state) { $0.slot = trial.slot })
            return trial
        }
    }

    /// Stores measured metrics on a slot (merged into what is there).
    public func setMetrics(slot: SlotID, metrics: SlotMetrics) throws {
        try withLock {
            var state = try recover()
            guard state[slot].effectiveState != .empty else {
                throw SlotError(.badArgument, "slot \(slot) is empty")
            }
            state[slot].metrics.merge(metrics) { _, new in new }
            try persist(&state)
        }
    }

    // MARK: commit and rollback

    /// Makes the trial slot `good` and raises the floor to its version; the previous good slot stays
    /// as fallback. `metrics`, if given, are stored on the slot.
    @discardableResult
    public func commit(metrics: SlotMetrics = [:]) throws -> CommitResult {
        try withLock {
            var state = try recover()
            return try performCommit(&state, metrics: metrics, reason: "manual")
        }
    }

    func performCommit(_ state: inout StoreState, metrics: SlotMetrics, reason: String) throws -> CommitResult {
        guard let trial = state.trial else { throw SlotError(.noTrial, "no slot is on trial") }
        let slot = trial.slot
        state[slot].state = .good
        state[slot].committedAt = timestamp()
        state[slot].metrics.merge(metrics) { _, new in new }
        if let version = state[slot].version.flatMap(SemVer.init),
            state.floor.flatMap(SemVer.init).map({ $0 <= version }) ?? true
        {
            state.floor = version.description  // the floor only rises
        }
        state.trial = nil
        CrashPoint.commitBeforeStateWrite.hit()
        try persist(&state, midWrite: .commitMidStateWrite)
        CrashPoint.commitAfterStateWrite.hit()
        try journal.append(
            event(.commit, state) {
                $0.slot = slot
                $0.version = state[slot].version ?? ""
                $0.floor = state.floor ?? ""
                $0.reason = reason
                $0.starts = trial.starts
                $0.probationSuccesses = trial.probationSuccesses
                $0.probationErrors = trial.probationErrors
            })
        return CommitResult(slot: slot, version: state[slot].version, floor: state.floor)
    }

    /// Rolls back: the active slot becomes `bad` and the fallback serves. Always allowed when a good
    /// fallback exists (the floor does not apply). Throws `no_fallback` otherwise.
    @discardableResult
    public func rollback(reason: String) throws -> RollbackResult {
        let started = Stopwatch()
        return try withLock {
            var state = try recover()
            return try performRollback(&state, reason: reason, started: started)
        }
    }

    /// Rollback inside the lock; `started` is the moment of the decision.
    func performRollback(_ state: inout StoreState, reason: String, started: Stopwatch) throws -> RollbackResult {
        guard let from = state.active else { throw SlotError(.noActiveSlot, "the store is empty") }
        guard let to = state.fallback, to != from, state[to].state == .good else {
            throw SlotError(.noFallback, "no good fallback slot to roll back to")
        }
        state[from].state = .bad
        state.active = to
        state.fallback = nil
        state.trial = nil
        CrashPoint.rollbackBeforeStateWrite.hit()
        try persist(&state, midWrite: .rollbackMidStateWrite)
        CrashPoint.rollbackAfterStateWrite.hit()
        var integrity = "ok"
        do { try checkIntegrity(to, record: state[to], level: .quick) } catch { integrity = "\(error)" }
        let ms = started.elapsedMs
        try journal.append(
            event(.rollback, state) {
                $0.from = from
                $0.to = to
                $0.fromVersion = state[from].version ?? ""
                $0.toVersion = state[to].version ?? ""
                $0.reason = reason
                $0.durationMs = JSONLine.rounded(ms)
                $0.fallbackIntegrity = integrity
            })
        return RollbackResult(
            from: from, to: to, fromVersion: state[from].version, toVersion: state[to].version, reason: reason,
            durationMs: ms)
    }

    // MARK: internals

    /// Runs `body` holding the store's exclusive lock. Only `creating` (an install) makes a missing
    /// root; every other operation refuses it with `not_found`, so a mistyped root creates nothing.
    func withLock<T>(creating: Bool = false, _ body: () throws -> T) throws -> T {
        if creating {
            do { try AtomicFile.createDirectory(root) } catch {
                throw SlotError(.ioError, "cannot create \(root): \(AnyCodedError(error).message)")
            }
        } else {
            try requireExisting()
        }
        let fd = open(root + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw SlotError(.ioError, "cannot open \(root)/.lock: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let deadline = Date().addingTimeInterval(options.lockTimeoutSeconds)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            guard errno == EWOULDBLOCK else { throw SlotError(.ioError, "cannot lock \(root)") }
            guard Date() < deadline else {
                throw SlotError(
                    .ioError,
                    "the slot store \(root) is locked by another process (waited \(options.lockTimeoutSeconds) s)")
            }
            usleep(20_000)
        }
        return try body()
    }

    /// Loads the state and repairs what a crash can leave: an `installing` slot (its files are
    /// removed, the slot becomes `empty`), staging directories and temporary state files.
    func recover() throws -> StoreState { try recoverNoting().state }

    /// `recover()`, also persisting and journaling a state restored from `state.json.prev` or rebuilt
    /// from the slots; `recovery` then says what happened.
    func recoverNoting() throws -> (state: StoreState, recovery: String?) {
        var (state, origin) = try readState()
        let fm = FileManager.default
        if let names = try? fm.contentsOfDirectory(atPath: root) {
            for name in names where name.hasPrefix(".state.json.tmp-") || name == ".state.json.prev-tmp" {
                unlink(root + "/" + name)
            }
        }
        let recovery = try persistRecovered(&state, origin: origin)
        var repaired: [String] = []
        for slot in SlotID.allCases {
            if state[slot].state == .installing {
                try removeTree(stagingPath(slot))
                try removeTree(bundlePath(slot))
                state[slot] = SlotRecord(state: .empty)
                if state.fallback == slot { state.fallback = nil }
                repaired.append(slot.rawValue)
            } else if fm.fileExists(atPath: stagingPath(slot)) {
                try removeTree(stagingPath(slot))
            }
        }
        if !repaired.isEmpty {
            try persist(&state)
            try journal.append(
                event(.recover, state) {
                    $0.slots = repaired
                    $0.reason = "interrupted install"
                })
        }
        let problems = state.violations()
        guard problems.isEmpty else {
            throw SlotError(.badState, "state.json violates the slot invariants: \(problems.joined(separator: "; "))")
        }
        return (state, recovery)
    }

    /// Writes the state atomically with the next generation.
    func persist(_ state: inout StoreState, midWrite point: CrashPoint? = nil) throws {
        state.generation += 1
        state.updatedAt = timestamp()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let data: Data
        do { data = try encoder.encode(state) } catch { throw SlotError(.ioError, "cannot encode state") }
        if let point, point.isArmed {
            // A cut in the middle of the atomic write: a half-written temporary file, state.json untouched.
            let temp = root + "/.state.json.tmp-\(getpid())"
            let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if fd >= 0 {
                try? AtomicFile.writeAll(fd: fd, data: data.prefix(data.count / 2), path: temp)
                fsync(fd)
            }
            CrashPoint.die()
        }
        keepPreviousGeneration()
        do { try AtomicFile.write(data, to: statePath) } catch { throw SlotError.wrap(error) }
    }

    /// A journal event stamped with the state's generation and active slot; `fill` sets its own fields.
    func event(_ kind: SlotEvent.Kind, _ state: StoreState, _ fill: (inout SlotEvent) -> Void = { _ in })
        -> SlotEvent
    {
        var event = SlotEvent(event: kind, generation: state.generation, active: state.active)
        fill(&event)
        return event
    }

    /// Streams every bundle file into a fresh staging directory, hashing as it writes (a file that
    /// changes between verification and copy is caught) and fsyncing each file.
    func extract(_ bundle: VerifiedBundle, into staging: String) throws {
        guard mkdir(staging, 0o755) == 0 else {
            throw SlotError(.ioError, "cannot create \(staging): \(String(cString: strerror(errno)))")
        }
        #if AADS_TEST_HOOKS
            var budget = options.diskFullAfterBytes
        #else
            var budget: UInt64? = nil
        #endif
        var items: [(String, Data?, BundleManifest.File?)] = [
            (BundleManifest.manifestName, bundle.manifestData, nil),
            (BundleManifest.signatureName, bundle.signatureData, nil),
        ]
        items += bundle.manifest.files.map { ($0.path, nil, $0) }
        for (index, (path, inline, file)) in items.enumerated() {
            try makeParents(of: path, under: staging)
            let full = staging + "/" + path
            let fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw SlotError(.ioError, "cannot create \(full): \(String(cString: strerror(errno)))")
            }
            defer { close(fd) }
            var hasher = SHA256()
            let sink: (Data) throws -> Void = { chunk in
                hasher.update(data: chunk)
                try self.write(fd: fd, chunk, path: full, budget: &budget)
            }
            if let inline {
                try sink(inline)
            } else if let file, let entry = bundle.reader.entry(file.path) {
                try bundle.reader.stream(entry, sink)
                guard hex(hasher.finalize()) == file.sha256 else {
                    throw SlotError(.hashMismatch, "\(file.path) changed between verification and copy")
                }
            }
            guard fsync(fd) == 0 else {
                throw SlotError.wrap(
                    FileIOError(errno == ENOSPC ? .diskFull : .ioError, "cannot fsync \(full)"))
            }
            // A cut with part of the payload on disk: after the first payload file (or the last file).
            if index == min(2, items.count - 1) { CrashPoint.installMidStagingWrite.hit() }
        }
    }

    private func write(fd: Int32, _ chunk: Data, path: String, budget: inout UInt64?) throws {
        do {
            #if AADS_TEST_HOOKS
                if let left = budget {
                    if UInt64(chunk.count) > left {
                        try AtomicFile.writeAll(fd: fd, data: chunk.prefix(Int(left)), path: path)
                        budget = 0
                        // The injected fault: a real ENOSPC from the kernel's /dev/full.
                        let full = open("/dev/full", O_WRONLY | O_CLOEXEC)
                        defer { if full >= 0 { close(full) } }
                        try AtomicFile.writeAll(fd: full, data: chunk.suffix(chunk.count - Int(left)), path: path)
                        throw SlotError(.diskFull, "writing \(path): no space left on device")
                    }
                    budget = left - UInt64(chunk.count)
                }
            #endif
            try AtomicFile.writeAll(fd: fd, data: chunk, path: path)
        } catch {
            throw SlotError.wrap(error)
        }
    }

    private func makeParents(of path: String, under base: String) throws {
        var current = base
        let parts = path.split(separator: "/")
        for part in parts.dropLast() {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw SlotError(.ioError, "cannot create \(current): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Re-reads what was written and re-hashes it.
    func reverify(_ manifest: BundleManifest, at dir: String) throws {
        for file in manifest.files {
            guard try hashFile(dir + "/" + file.path) == file.sha256 else {
                throw SlotError(.hashMismatch, "\(file.path) reads back differently from what was written")
            }
        }
    }

    /// fsyncs every directory of a tree, deepest first.
    func syncTree(_ dir: String) throws {
        var directories = [dir]
        if let walker = FileManager.default.enumerator(atPath: dir) {
            while let name = walker.nextObject() as? String {
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir), isDir.boolValue {
                    directories.append(dir + "/" + name)
                }
            }
        }
        for d in directories.reversed() {
            do { try AtomicFile.syncDirectory(d) } catch { throw SlotError.wrap(error) }
        }
    }

    func removeTree(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        do { try FileManager.default.removeItem(atPath: path) } catch {
            throw SlotError(.ioError, "cannot remove \(path)")
        }
    }

    func hashFile(_ path: String) throws -> String {
        let source = try FileByteSource(path: path)
        var hasher = SHA256()
        var offset: UInt64 = 0
        while offset < source.count {
            let chunk = try source.read(at: offset, count: 1 << 20)
            if chunk.isEmpty { break }
            hasher.update(data: chunk)
            offset += UInt64(chunk.count)
        }
        return hex(hasher.finalize())
    }

    func timestamp() -> String { ISO8601.string(Date()) }
}

/// What `slot status` reports.
public struct SlotStatus {
    public let state: StoreState
    /// Where `state` came from (not `.current` when state.json was unusable and no operation has repaired it yet).
    public let origin: StateOrigin
    /// The last journal events.
    public let events: [SlotEvent]
    /// The journal saw a newer generation than state.json holds (a stale copy was restored).
    public let staleState: Bool
    public let violations: [String]
    /// Each installed slot's version, changelog, baseline figures and training report, from its manifest.
    public internal(set) var models: [InstalledModel] = []

    public var active: SlotID? { state.active }

    /// The `--json` form.
    public var jsonObject: [String: Any] {
        func slotObject(_ slot: SlotID) -> [String: Any] {
            let r = state[slot]
            var o: [String: Any] = [
                "state": r.state.rawValue, "version": orNull(r.version), "installed_at": orNull(r.installedAt),
                "committed_at": orNull(r.committedAt), "metrics": r.metrics.mapValues(\.anyValue),
                "active": state.active == slot, "signer": orNull(r.signer),
            ]
            if let trial = state.trial, trial.slot == slot { o["attempts_left"] = trial.attemptsLeft }
            let notes = models.first { $0.slot == slot }?.notesObject
            o.merge(notes ?? ["changelog": NSNull(), "baseline_metrics": [:], "training_report": NSNull()]) { $1 }
            return o
        }
        var object: [String: Any] = [
            "active": orNull(state.active?.rawValue), "fallback": orNull(state.fallback?.rawValue),
            "floor": orNull(state.floor), "generation": state.generation,
            "slots": ["a": slotObject(.a), "b": slotObject(.b)], "events": events.map(\.jsonObject),
            "stale_state": staleState, "state_origin": origin.name,
        ]
        if let reason = origin.reason { object["state_origin_reason"] = reason }
        if let trial = state.trial {
            object["trial"] = [
                "slot": trial.slot.rawValue, "attempts": trial.attempts, "attempts_left": trial.attemptsLeft,
                "starts": trial.starts, "started_at": trial.startedAt, "health_passed_at": orNull(trial.healthPassedAt),
                "probation_successes": trial.probationSuccesses, "probation_errors": trial.probationErrors,
            ]
        } else {
            object["trial"] = NSNull()
        }
        if !violations.isEmpty { object["violations"] = violations }
        return object
    }
}

/// A JSON value or null.
func orNull(_ value: Any?) -> Any { value ?? NSNull() }
