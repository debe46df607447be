import AADSCore
import ArgumentParser
import Foundation

/// `--json`, shared by every command: results as one JSON object per line, errors as `{"error": {...}}`.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print one JSON object per line instead of text.")
    var json = false

    init() {}

    /// Text, for a command without `--json` (`run`, `results export`): its errors go to standard error. Set,
    /// not left to the parser, so reading `json` needs no parsed command line.
    static var text: OutputOptions {
        var options = OutputOptions()
        options.json = false
        return options
    }
}

/// Standard exit codes: 0 success, 1 a checked condition failed (a bad file, a refused bundle, a failed check),
/// 2 could not run (usage errors included).
enum Exit {
    static let failure = ExitCode(FailureKind.refused.exitStatus)
    static let couldNotRun = ExitCode(FailureKind.couldNotRun.exitStatus)
}

/// What an error thrown out of a command's `body()` means for its exit status.
enum ErrorPolicy {
    /// The error's own class (`CodedError.failure`): `bundle`, `slot`, `drill`, where the same command may
    /// refuse its input (exit 1) or be unable to run (exit 2).
    case byClass
    /// Every error means one thing here, whatever its type: e.g. for `diagnose` any error before the first
    /// image is a bundle that could not be loaded (exit 2), for `model` a model that fails its check (exit 1).
    case always(FailureKind)

    func failure(of error: any Error) -> FailureKind {
        switch self {
        case .byClass: FailureKind.of(error)
        case .always(let failure): failure
        }
    }
}

/// A subcommand whose errors are reported and mapped to an exit status in one place, `run()`: the command
/// does its work in `body()` and throws; `ExitCode`s and the argument parser's own errors pass through
/// unchanged (as `ParsableCommand.main` handles them), every other error is reported (`report`) and becomes
/// the exit status of its class (`FailureKind.exitStatus`) under the command's `errorPolicy`.
protocol AADSCommand: ParsableCommand {
    static var errorPolicy: ErrorPolicy { get }
    var output: OutputOptions { get }
    func body() throws
}

extension AADSCommand {
    func run() throws {
        do {
            try body()
        } catch let error where error is ExitCode || error is ValidationError || error is CleanExit {
            throw error
        } catch {
            report(error, json: output.json)
            throw ExitCode(Self.errorPolicy.failure(of: error).exitStatus)
        }
    }
}

/// Writes a line to standard error.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Reports an error the way every command does: JSON on stdout with `--json`, one line on stderr otherwise.
func report(_ error: any Error, json: Bool, extra: [String: Any] = [:]) {
    let coded = AnyCodedError(error)
    if json {
        var object = extra
        object["error"] = coded.jsonObject
        print(JSONLine.encode(object))
    } else {
        printError("error: \(coded.message) [\(coded.code)]")
    }
}
