import AADSCore
import ArgumentParser
import Foundation

/// Shared `--json` / exit-code conventions for every subcommand.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print one JSON object per line instead of text.")
    var json = false
}

/// Standard exit codes: 0 success, 1 a checked condition failed (a bad file, a failed check), 2 could not run.
enum Exit {
    static let failure = ExitCode(1)
    static let couldNotRun = ExitCode(2)
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
