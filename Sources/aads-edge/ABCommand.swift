import AADSCore
import AADSDevice
import ArgumentParser
import Foundation

struct ABCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ab", abstract: "On-device A/B comparison of model versions.", subcommands: [Report.self])

    struct Report: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Per candidate, paired on the same images: latency (paired t-test) and OOD calls (McNemar's exact test) "
                + "with differences and 95% intervals, the decision matrix, and the one-sided sequential verdict.")
        @OptionGroup var location: JournalOption
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.always(.couldNotRun)

        func body() throws {
            let (config, journal) = try location.open()
            let comparisons = try ABReport.comparisons(journal: journal)
            if output.json {
                for c in comparisons {
                    print(JSONLine.encode(c.jsonObject(alpha: config.ab.alpha, minSamples: config.ab.minSamples)))
                }
            } else {
                print(ABReport.text(comparisons, alpha: config.ab.alpha, minSamples: config.ab.minSamples))
            }
        }
    }
}
