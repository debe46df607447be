import AADSCore
import Foundation

/// Every way the slot layer refuses a bundle or an operation, with stable snake_case codes.
///
/// Bundle rejections (all raised before anything is written to a slot):
/// `unknown_key`, `revoked_key`, `bad_signature` (also a manifest changed after signing),
/// `hash_mismatch`, `size_mismatch`, `unlisted_file`, `missing_file`, `unsafe_path`, `unsafe_entry`,
/// `unsupported_entry`, `duplicate_entry`, `too_large`, `truncated_archive`, `trailing_data`, `bad_archive`,
/// `bad_manifest`, `downgrade`. Store failures: `disk_full`, `io_error`, `trial_active`,
/// `no_installed_slot`, `no_trial`, `no_fallback`, `no_active_slot`, `would_overwrite_last_good`,
/// `bad_state`, `integrity_failed`, `bad_key`, `no_trusted_keys`, `bad_argument`, `not_found` (no store
/// at the given root: only an install creates one).
public struct SlotError: CodedError, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case unknownKey = "unknown_key"
        case revokedKey = "revoked_key"
        case badSignature = "bad_signature"
        case hashMismatch = "hash_mismatch"
        case sizeMismatch = "size_mismatch"
        case unlistedFile = "unlisted_file"
        case missingFile = "missing_file"
        case unsafePath = "unsafe_path"
        case unsafeEntry = "unsafe_entry"
        case unsupportedEntry = "unsupported_entry"
        case duplicateEntry = "duplicate_entry"
        case tooLarge = "too_large"
        case truncatedArchive = "truncated_archive"
        case trailingData = "trailing_data"
        case badArchive = "bad_archive"
        case badManifest = "bad_manifest"
        case downgrade = "downgrade"
        case diskFull = "disk_full"
        case ioError = "io_error"
        case trialActive = "trial_active"
        case noInstalledSlot = "no_installed_slot"
        case noTrial = "no_trial"
        case noFallback = "no_fallback"
        case noActiveSlot = "no_active_slot"
        case wouldOverwriteLastGood = "would_overwrite_last_good"
        case badState = "bad_state"
        case integrityFailed = "integrity_failed"
        case badKey = "bad_key"
        case noTrustedKeys = "no_trusted_keys"
        case badArgument = "bad_argument"
        case notFound = "not_found"
    }

    public let kind: Kind
    public let message: String
    public var code: String { kind.rawValue }

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// Could not run: the environment (I/O, keys, a missing store, an argument); every other kind refuses a
    /// bundle or a state transition, `disk_full` included (the install is refused, the active slot serves on).
    public var failure: FailureKind {
        switch kind {
        case .ioError, .noTrustedKeys, .badKey, .badArgument, .notFound: .couldNotRun
        default: .refused
        }
    }

    /// Maps a file-system error from AADSCore (or anything else) onto a slot error, keeping `disk_full`.
    static func wrap(_ error: any Error) -> SlotError {
        if let slot = error as? SlotError { return slot }
        if let io = error as? FileIOError {
            return SlotError(io.kind == .diskFull ? .diskFull : .ioError, io.message)
        }
        let coded = AnyCodedError(error)
        return SlotError(.ioError, coded.message)
    }
}
