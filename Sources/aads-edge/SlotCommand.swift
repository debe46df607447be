import AADSCore
import AADSHealth
import AADSSlots
import ArgumentParser
import Foundation

/// `aads-edge slot`: the A/B model slots.
struct SlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slot",
        abstract: "Install, activate, commit and roll back model bundles in the A/B slots.",
        discussion: """
            Trusted keys for `install` (when --trusted is not given): $AADS_TRUSTED_KEYS, then \
            /etc/aads-edge/keys, then firmware-config/keys next to the installed executable \
            (<prefix>/firmware-config/keys for <prefix>/bin/aads-edge), then ./firmware-config/keys.
            The first bundle installed into an empty store becomes the good, active slot (factory install).
            """,
        subcommands: [
            Install.self, Activate.self, Start.self, MarkHealthy.self, Probation.self, Commit.self, Rollback.self,
            Status.self,
        ]
    )

    struct RootOptions: ParsableArguments {
        @Option(name: .long, help: "Slot store root.") var root = SlotStore.defaultRoot
        var store: SlotStore { SlotStore(root: root) }
    }

    struct Install: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify a bundle and install it into the inactive slot.")

        @Argument(help: "Bundle file (ustar) or directory.") var bundle: String
        @OptionGroup var root: RootOptions
        @Option(name: .long, help: "Trusted keys directory.") var trusted: String?
        @Flag(name: .long, help: "Accept a model_version below the committed floor.") var allowDowngrade = false
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            let verifier = try BundleVerifier(trustedDirectory: trusted ?? TrustedKeys.defaultDirectory())
            // The same keys verify the slots should a lost state.json have to be rebuilt from them.
            let store = SlotStore(root: root.root, options: SlotStoreOptions(trustedKeys: verifier.trusted))
            let result = try store.install(bundle: bundle, verifier: verifier, allowDowngrade: allowDowngrade)
            if output.json {
                print(
                    JSONLine.encode([
                        "slot": result.slot.rawValue, "version": result.version, "signer": result.signer,
                        "factory": result.factory, "state": result.factory ? "good" : "installed",
                        "duration_ms": JSONLine.rounded(result.durationMs),
                    ]))
            } else {
                print(
                    "installed \(result.version) into slot \(result.slot)"
                        + (result.factory ? " (factory install: good and active)" : ""))
            }
        }
    }

    struct Activate: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make the installed slot the trial slot with N runtime start attempts, then run its health gate.",
            discussion: """
                The gate runs the slot's golden set through the real pipeline and applies health.json: pass \
                starts probation (the service commits after enough good diagnoses), fail rolls back at once \
                with the failing rows in the journal (exit 1).
                """)

        @OptionGroup var root: RootOptions
        @Option(name: .long, help: "Runtime starts allowed before a commit.") var attempts = 3
        @Flag(name: .long, help: "Only change the slot state; the service runs the gate at its next start.")
        var noHealthCheck = false
        @Option(
            name: .long,
            help: """
                Decision thresholds (health.json); default: $AADS_CONFIG_DIR/health.json, \
                /etc/aads-edge/health.json, firmware-config/health.json next to the executable, \
                ./firmware-config/health.json, else the built-in values (with a warning).
                """)
        var policy: String?
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            var object: [String: Any]
            var passed = true
            // The thresholds are read first: a missing or broken policy file changes no slot state.
            let health = noHealthCheck ? nil : try ConfigPaths.healthPolicy(named: policy)
            let state = try root.store.activate(attempts: attempts)
            let slot = state.active?.rawValue ?? "?"
            object = [
                "active": slot, "state": "trial", "attempts": attempts,
                "fallback": orNull(state.fallback?.rawValue),
            ]
            if !output.json { print("slot \(slot) is on trial with \(attempts) attempts") }
            if let health {
                let gate = GoldenSetGate(check: HealthCheck(policy: health))
                switch try root.store.runHealthGate(gate) {
                case .passed(let verdict):
                    object["health"] = ["passed": true, "warnings": verdict.warnings] as [String: Any]
                    object["state"] = "probation"
                    if !output.json { print("health gate passed: slot \(slot) is in probation") }
                    for warning in verdict.warnings where !output.json { print("warn \(warning)") }
                case .rolledBack(let verdict, let rollback):
                    passed = false
                    object["health"] = ["passed": false, "failures": verdict.failures] as [String: Any]
                    object["active"] = rollback.to.rawValue
                    object["state"] = "rolled_back"
                    object["rollback_ms"] = JSONLine.rounded(rollback.durationMs)
                    if !output.json {
                        for failure in verdict.failures { print("FAIL \(failure)") }
                        print(
                            "health gate failed: rolled back to slot \(rollback.to) in \(JSONLine.rounded(rollback.durationMs)) ms"
                        )
                    }
                }
            }
            if output.json { print(JSONLine.encode(object)) }
            if !passed { throw Exit.failure }
        }
    }

    struct Start: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a runtime start (before loading the model) and print the slot to load.",
            discussion: """
                In trial, spends one attempt first; with none left, rolls back (crash loop). Every file of the \
                slot is re-hashed first; a corrupt slot rolls back to an intact good fallback. A lost or \
                damaged state.json is restored from state.json.prev or rebuilt from the verified slots.
                """)

        @OptionGroup var root: RootOptions
        @Flag(name: .long, help: "Check file sizes only instead of re-hashing every file.") var quick = false
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            let decision = try root.store.beginRuntimeStart(verify: quick ? .quick : .deep)
            var object: [String: Any] = [
                "slot": orNull(decision.slot?.rawValue), "bundle": orNull(decision.bundlePath),
                "version": orNull(decision.version), "trial": decision.trial,
                "attempts_left": orNull(decision.attemptsLeft),
                "state_recovery": orNull(decision.stateRecovery),
            ]
            if let r = decision.rollback {
                object["rollback"] = rollbackObject(r)
            }
            if output.json {
                print(JSONLine.encode(object))
            } else if let slot = decision.slot {
                if let note = decision.stateRecovery { print("state recovered: \(note)") }
                if let r = decision.rollback { print("rolled back \(r.from) → \(r.to): \(r.reason)") }
                print(
                    "load slot \(slot) (\(decision.version ?? "?"))"
                        + (decision.trial ? ", trial, \(decision.attemptsLeft ?? 0) attempts left" : ""))
            } else {
                print("no model installed")
            }
        }
    }

    struct MarkHealthy: AADSCommand {
        static let configuration = CommandConfiguration(
            commandName: "mark-healthy",
            abstract: "Record that the trial slot passed an external health check: probation begins.")

        @OptionGroup var root: RootOptions
        @Option(name: .long, help: "Measured metrics to store on the slot, as a JSON object.") var metrics: String?
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            var measured: SlotMetrics = [:]
            if let metrics {
                guard let value = try? JSONDecoder().decode(OpaqueJSON.self, from: Data(metrics.utf8)),
                    case .object(let object) = value
                else { throw SlotError(.badArgument, "--metrics is not a JSON object") }
                measured = object
            }
            let verdict = GateVerdict(passed: true, metrics: measured)
            _ = try root.store.runHealthGate(ClosureHealthGate { _ in verdict })
            let slot = try root.store.loadState().trial?.slot.rawValue ?? "?"
            if output.json {
                print(JSONLine.encode(["slot": slot, "probation": true]))
            } else {
                print("slot \(slot) passed its health check; probation begins")
            }
        }
    }

    struct Probation: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count one diagnosis of the trial slot during probation; commits or rolls back at the bounds.")

        @OptionGroup var root: RootOptions
        @Flag(name: .long, help: "The diagnosis succeeded.") var ok = false
        @Flag(name: .long, help: "The diagnosis failed.") var error = false
        @Option(name: .long, help: "Successful diagnoses that commit.") var successes = 50
        @Option(name: .long, help: "Minutes within bounds that commit.") var minutes = 30.0
        @Option(name: .long, help: "Error rate that rolls back.") var maxErrorRate = 0.005
        @Option(name: .long, help: "Diagnoses needed before the error rate counts.") var minSamples = 20
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            guard !(ok && error) else { throw SlotError(.badArgument, "give --ok or --error, not both") }
            let policy = ProbationPolicy(
                successes: successes, minutes: minutes, maxErrorRate: maxErrorRate, minSamples: minSamples)
            let outcome = try root.store.recordProbation(success: ok ? true : error ? false : nil, policy: policy)
            var object: [String: Any]
            switch outcome {
            case .continuing(let t):
                object = ["outcome": "continuing", "successes": t.probationSuccesses, "errors": t.probationErrors]
            case .committed(let c):
                object = ["outcome": "committed", "slot": c.slot.rawValue, "floor": orNull(c.floor)]
            case .rolledBack(let r):
                object = ["outcome": "rolled_back", "rollback": rollbackObject(r)]
            }
            print(output.json ? JSONLine.encode(object) : "probation: \(object["outcome"] ?? "")")
        }
    }

    struct Commit: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Commit the trial slot: it becomes good and the version floor rises.")

        @OptionGroup var root: RootOptions
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            let result = try root.store.commit()
            if output.json {
                print(
                    JSONLine.encode([
                        "slot": result.slot.rawValue, "version": orNull(result.version),
                        "floor": orNull(result.floor),
                    ]))
            } else {
                print("committed slot \(result.slot) (\(result.version ?? "?")); floor \(result.floor ?? "-")")
            }
        }
    }

    struct Rollback: AADSCommand {
        static let configuration = CommandConfiguration(
            abstract: "Mark the active slot bad and make the fallback slot active again.")

        @OptionGroup var root: RootOptions
        @Option(name: .long, help: "Why (journaled).") var reason = "manual"
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            let result = try root.store.rollback(reason: reason)
            if output.json {
                print(JSONLine.encode(rollbackObject(result)))
            } else {
                print(
                    "rolled back \(result.from) (\(result.fromVersion ?? "?")) → \(result.to) (\(result.toVersion ?? "?")) "
                        + "in \(JSONLine.rounded(result.durationMs)) ms")
            }
        }
    }

    struct Status: AADSCommand {
        static let configuration = CommandConfiguration(abstract: "Show the slots, the floor and the last events.")

        @OptionGroup var root: RootOptions
        @Option(name: .long, help: "How many journal events to show.") var events = 10
        @OptionGroup var output: OutputOptions

        static let errorPolicy = ErrorPolicy.byClass

        func body() throws {
            let status = try root.store.status(lastEvents: events)
            if output.json {
                print(JSONLine.encode(status.jsonObject))
                return
            }
            let s = status.state
            print(
                "active: \(s.active?.rawValue ?? "-")  fallback: \(s.fallback?.rawValue ?? "-")  "
                    + "floor: \(s.floor ?? "-")  generation: \(s.generation)")
            for slot in SlotID.allCases {
                let r = s[slot]
                var line =
                    "slot \(slot.rawValue): \(r.state.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0))"
                line += " \(r.version ?? "-")"
                if let at = r.installedAt { line += "  installed \(at)" }
                if let trial = s.trial, trial.slot == slot {
                    line += "  attempts left \(trial.attemptsLeft)/\(trial.attempts)"
                    if trial.healthPassedAt != nil {
                        line += "  probation \(trial.probationSuccesses) ok / \(trial.probationErrors) errors"
                    }
                }
                if !r.metrics.isEmpty { line += "  metrics \(JSONLine.encode(r.metrics.mapValues(\.anyValue)))" }
                print(line)
                if let model = status.models.first(where: { $0.slot == slot }) {
                    if !model.baselineMetrics.isEmpty {
                        print("        baseline \(JSONLine.encode(model.baselineMetrics.mapValues(\.anyValue)))")
                    }
                    if let changelog = model.changelog {
                        for (i, text) in changelog.split(separator: "\n").enumerated() {
                            print((i == 0 ? "        changelog: " : "                   ") + text)
                        }
                    }
                }
            }
            if status.staleState { print("warning: the journal is newer than state.json (stale copy?)") }
            for v in status.violations { print("warning: \(v)") }
            if !status.events.isEmpty { print("events:") }
            for e in status.events { print("  " + JSONLine.encode(e.jsonObject)) }
        }
    }
}

func rollbackObject(_ r: RollbackResult) -> [String: Any] {
    [
        "from": r.from.rawValue, "to": r.to.rawValue, "from_version": orNull(r.fromVersion),
        "to_version": orNull(r.toVersion), "reason": r.reason, "duration_ms": JSONLine.rounded(r.durationMs),
    ]
}

/// A JSON value or null.
func orNull(_ value: Any?) -> Any { value ?? NSNull() }
