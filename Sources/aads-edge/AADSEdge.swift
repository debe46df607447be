import AADSCore
import ArgumentParser
import Foundation

@main
struct AADSEdge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aads-edge",
        abstract: "AADS Edge: int8 crop-disease diagnosis for field devices, with signed A/B model slots.",
        subcommands: [
            DiagnoseCommand.self, DecodeCommand.self, ModelCommand.self, HealthCommand.self, EvaluateCommand.self,
            BundleCommand.self, SlotCommand.self, DrillCommand.self,
            RunCommand.self, ResultsCommand.self, ABCommand.self, ReportCommand.self, AckCommand.self,
        ]
    )

    /// Runs the command; usage errors exit 2 (like every other "could not run"), not the parser's 64.
    static func main() {
        ProcessMemory.returnLargeBlocksToSystem()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(Exit.couldNotRun.rawValue)
            }
            exit(withError: error)
        }
    }
}
