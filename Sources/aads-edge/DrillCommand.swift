import AADSCore
import AADSHealth
import AADSSlots
import ArgumentParser
import Foundation

/// `aads-edge drill`: rollback drills in a temporary root.
struct DrillCommand: AADSCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Run a rollback drill in a temporary root and print pass/fail and the rollback time.",
        discussion: "Exit status: 0 passed, 1 failed, 2 could not run."
    )

    @Option(name: .long, help: "crash-loop | corrupt-slot | corrupt-active | lost-state | failing-health | power-cut")
    var scenario: String
    @OptionGroup var output: OutputOptions

    static let errorPolicy = ErrorPolicy.byClass

    func body() throws {
        guard let which = DrillScenario(rawValue: scenario) else {
            throw SlotError(.badArgument, "unknown scenario \(scenario)")
        }
        let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let gate = GoldenSetGate(check: HealthCheck(policy: try ConfigPaths.healthPolicy(named: nil)))
        let report = try SlotDrill(executable: executable, gate: gate).run(which)
        if output.json {
            print(JSONLine.encode(report.jsonObject))
        } else {
            for line in report.checks { print(line) }
            let verdict = report.skipped ? "SKIPPED" : report.passed ? "PASS" : "FAIL"
            print(
                "\(which.rawValue): \(verdict)"
                    + (report.rollbackMs.map { ", rollback \(JSONLine.rounded($0)) ms" } ?? ""))
        }
        if report.skipped { throw Exit.couldNotRun }
        if !report.passed { throw Exit.failure }
    }
}
