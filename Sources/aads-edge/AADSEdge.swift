import ArgumentParser

@main
struct AADSEdge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aads-edge",
        abstract: "AADS Edge: int8 crop-disease diagnosis for field devices, with signed A/B model slots.",
        subcommands: [ModelCommand.self]
    )
}
