import AADSCore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Where the state a store operation works on came from.
public enum StateOrigin: Sendable, Equatable {
    /// `state.json` itself.
    case current
    /// No state file and both slot directories empty: a new store, whose first install is the factory install.
    case fresh
    /// `state.json.prev`, the generation before the last write, because `state.json` was unusable.
    case previous(reason: String)
    /// Rebuilt from the slots' signed bundles, because neither state file was usable.
    case rebuilt(reason: String)

    /// `current`, `fresh`, `previous` or `rebuilt`.
    public var name: String {
        switch self {
        case .current: "current"
        case .fresh: "fresh"
        case .previous: "previous"
        case .rebuilt: "rebuilt"
        }
    }

    /// Why state.json was not used.
    public var reason: String? {
        switch self {
        case .current, .fresh: nil
        case .previous(let reason), .rebuilt(let reason): reason
        }
    }
}

/// Lost or damaged state. Each write keeps the previous generation as `state.json.prev`; a store whose
/// `state.json` is missing, unreadable, not JSON or against the invariants falls back to it, and when
/// that is unusable too, rebuilds a conservative state from the slots themselves: every slot whose
/// signature and hashes verify is `installed`, the highest version is served (`good`, active) and
/// becomes the floor, and a slot that does not verify is `bad`. Only a store whose slot directories
/// are both empty is new.
extension SlotStore {
    /// The generation before the current `state.json`.
    public var previousStatePath: String { statePath + ".prev" }

    /// The state with its origin. Repairs nothing on disk (see `recoverNoting`).
    public func readState() throws -> (state: StoreState, origin: StateOrigin) {
        let problem: String
        switch parseStateFile(statePath) {
        case .success(let state): return (state, .current)
        case .failure(.denied): throw SlotError(.ioError, "cannot read \(statePath): permission denied")
        case .failure(let failure): problem = failure.reason
        }
        if case .success(var state) = parseStateFile(previousStatePath) {
            state.floor = raisedToJournal(state.floor)
            return (state, .previous(reason: problem))
        }
        let occupied = SlotID.allCases.filter { !slotDirectoryIsEmpty($0) }
        if occupied.isEmpty && problem == StateFileFailure.missing.reason { return (StoreState(), .fresh) }
        var state = try rebuildState(reason: problem)
        state.floor = raisedToJournal(state.floor)
        return (state, .rebuilt(reason: problem))
    }

    /// The higher of `floor` and the last floor the journal recorded (a commit, or the factory install):
    /// a recovered state never lets an older version in than the lost one did.
    func raisedToJournal(_ floor: String?) -> String? {
        var highest = floor.flatMap(SemVer.init)
        for event in journal.read() {
            let recorded =
                event.event == .commit ? event.floor : event.event == .factoryInstall ? event.version : nil
            if let version = recorded.flatMap(SemVer.init), highest.map({ version > $0 }) ?? true { highest = version }
        }
        return highest?.description ?? floor
    }

    /// Persists and journals a restored or rebuilt state; returns the note for the caller (nil for none).
    func persistRecovered(_ state: inout StoreState, origin: StateOrigin) throws -> String? {
        let note: String
        let kind: SlotEvent.Kind
        switch origin {
        case .current, .fresh:
            return nil
        case .previous(let reason):
            note = "\(reason): restored the previous generation from state.json.prev"
            kind = .stateRestored
        case .rebuilt(let reason):
            let serving = state.active.map { "slot \($0) (\(state[$0].version ?? "?"))" } ?? "no slot"
            note = "\(reason), and so is state.json.prev: rebuilt from the verified slots, serving \(serving)"
            kind = .stateRebuilt
        }
        // Later than every journaled generation, so the journal never looks newer than the state.
        state.generation = max(state.generation, journal.read().map(\.generation).max() ?? 0)
        try persist(&state)
        try journal.append(event(kind, state) { $0.reason = note })
        return note
    }

    /// Before `state.json` is replaced, keeps it as `state.json.prev` (a hard link renamed into place,
    /// so `state.json` itself never goes missing), but only when it is a usable state.
    func keepPreviousGeneration() {
        guard case .success = parseStateFile(statePath) else { return }
        let temp = root + "/.state.json.prev-tmp"
        unlink(temp)
        if link(statePath, temp) == 0 {
            if rename(temp, previousStatePath) != 0 { unlink(temp) }
        } else if let data = FileManager.default.contents(atPath: statePath) {
            try? AtomicFile.write(data, to: previousStatePath)  // a file system without hard links
        }
    }

    /// Why a state file cannot be used.
    enum StateFileFailure: Error, Equatable {
        case missing
        case denied
        case unreadable(String)
        case notJSON
        case invalid([String])

        var reason: String {
            switch self {
            case .missing: "state.json is missing"
            case .denied: "state.json may not be read"
            case .unreadable(let why): "state.json cannot be read (\(why))"
            case .notJSON: "state.json does not parse"
            case .invalid(let problems):
                "state.json violates the slot invariants: \(problems.joined(separator: "; "))"
            }
        }
    }

    /// Reads and validates one state file. A file the process may not read is an error, not a loss.
    func parseStateFile(_ path: String) -> Result<StoreState, StateFileFailure> {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            switch errno {
            case ENOENT: return .failure(.missing)
            case EACCES: return .failure(.denied)
            default: return .failure(.unreadable(String(cString: strerror(errno))))
            }
        }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= 1 << 20 else {
            close(fd)
            return .failure(.unreadable("not a regular file of at most 1 MiB"))
        }
        let data = FileHandle(fileDescriptor: fd, closeOnDealloc: true).readDataToEndOfFile()
        guard let state = try? JSONDecoder().decode(StoreState.self, from: data) else { return .failure(.notJSON) }
        let problems = state.violations()
        return problems.isEmpty ? .success(state) : .failure(.invalid(problems))
    }

    /// True when a slot directory does not exist or holds nothing.
    func slotDirectoryIsEmpty(_ slot: SlotID) -> Bool {
        (try? FileManager.default.contentsOfDirectory(atPath: bundlePath(slot)))?.isEmpty ?? true
    }

    /// A conservative state from the slots' own signed bundles (see the type's documentation).
    func rebuildState(reason: String) throws -> StoreState {
        let keys: TrustedKeys
        do { keys = try options.trustedKeys ?? TrustedKeys(directory: TrustedKeys.defaultDirectory()) } catch {
            throw SlotError(
                .badState, "\(reason), and the slots cannot be verified to rebuild it: \(AnyCodedError(error).message)")
        }
        let verifier = BundleVerifier(trusted: keys, limits: options.limits)
        var state = StoreState()
        var best: (slot: SlotID, version: SemVer)?
        for slot in SlotID.allCases where !slotDirectoryIsEmpty(slot) {
            guard let bundle = try? verifier.verify(path: bundlePath(slot)) else {
                state[slot] = SlotRecord(state: .bad)
                continue
            }
            state[slot] = SlotRecord(
                state: .installed, version: bundle.version.description, manifestSHA256: bundle.manifestSHA256,
                signer: bundle.signer.fingerprint)
            if best.map({ bundle.version > $0.version }) ?? true { best = (slot, bundle.version) }
        }
        if let best {
            state[best.slot].state = .good
            state.active = best.slot
            state.floor = best.version.description
        }
        return state
    }
}
