import ArgumentParser

@main
struct AADSEdge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aads-edge",
        abstract: "AADS Edge: int8 crop-disease diagnosis for field devices, with signed A/B model slots.",
        subcommands: [
            DiagnoseCommand.self, DecodeCommand.self, ModelCommand.self, HealthCommand.self,
            BundleCommand.self, SlotCommand.self, DrillCommand.self,
            RunCommand.self, ResultsCommand.self, ABCommand.self, ReportCommand.self, AckCommand.self,
        ]
    )
}
