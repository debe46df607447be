import AADSTestSupport
import Foundation
import Testing

@testable import AADSDevice

/// Inputs `fuzz-config` found (Tests/Fixtures/fuzz/config), kept so the bugs stay fixed.
@Suite struct ConfigFuzzRegressionTests {
    func fixture(_ name: String) throws -> Data {
        try Data(contentsOf: Fixtures.url("fuzz/config/" + name))
    }

    /// A key holding a carriage return (`"accuracy_\rop_max"`) is an unknown key; the message naming it must
    /// stay on one line.
    @Test func aControlCharacterInAKeyGivesAOneLineMessage() throws {
        let data = try fixture("control-character-in-key.json")
        do {
            _ = try DeviceConfig.decode(data)
            Issue.record("accepted an unknown key")
        } catch let error as ConfigError {
            #expect(error.keyPath == "accuracy_\rop_max")
            #expect(error.message == #"accuracy_\u000dop_max: unknown key"#)
        }
    }

    @Test func controlCharactersInValuesAreEscapedToo() {
        do {
            _ = try DeviceConfig.decode(Data(#"{"queue": {"drop": "new\nest\u2028"}}"#.utf8))
            Issue.record("accepted an unknown drop policy")
        } catch let error as ConfigError {
            #expect(!error.message.unicodeScalars.contains { $0 == "\n" || $0 == "\u{2028}" })
            #expect(error.message.hasSuffix(#"got "new\u000aest\u2028""#))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
