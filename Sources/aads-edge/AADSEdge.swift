import ArgumentParser

@main
struct AADSEdge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aads-edge",
        abstract: "AADS Edge: int8 crop-disease diagnosis for field devices, with signed A/B model slots.",
        subcommands: [
            BundleCommand.self, SlotCommand.self, DrillCommand.self,
            RunCommand.self, ResultsCommand.self, ABCommand.self, ReportCommand.self, AckCommand.self,
        ]
    )
}
