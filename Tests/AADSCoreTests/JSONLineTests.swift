import AADSCore
import Foundation
import Testing

@Suite struct JSONLineTests {
    @Test func objectsAreOneLineWithKeysInOrderAtEveryLevel() throws {
        let object: [String: Any] = [
            "p95_ms": 9.5, "b": ["z": 1, "a": [true, "x/y", NSNull()]], "a_key": "tab\tquote\"", "B": 2,
            "peak_rss_mb": 17.02, "count": 3,
        ]
        let line = JSONLine.encode(object)
        #expect(!line.contains("\n"))
        #expect(
            line == #"{"B":2,"a_key":"tab\tquote\"","b":{"a":[true,"x/y",null],"z":1},"count":3,"p95_ms":9.5,"#
                + #""peak_rss_mb":17.02}"#)
        // The same values as the platform's own serialiser.
        let ours = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? NSDictionary
        let theirs = try JSONSerialization.jsonObject(with: JSONSerialization.data(withJSONObject: object))
        #expect(ours == theirs as? NSDictionary)
    }

    @Test func valuesJSONCannotHoldGiveAnErrorObject() {
        let line = JSONLine.encode(["bad": Double.nan])
        #expect(line.hasPrefix(#"{"error":{"code":"internal""#))
        #expect(JSONLine.encode(["date": Date()]).hasPrefix(#"{"error""#))
    }
}
