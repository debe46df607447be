import AADSCore
import Foundation
import Testing

@Suite struct ISO8601Tests {
    @Test func formatsUTCWithRoundedMilliseconds() {
        #expect(ISO8601.string(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(ISO8601.string(Date(timeIntervalSince1970: 1_748_773_230.4564)) == "2025-06-01T10:20:30.456Z")
        #expect(ISO8601.string(Date(timeIntervalSince1970: 1_748_773_230.9996)) == "2025-06-01T10:20:31.000Z")
        #expect(ISO8601.string(Date(timeIntervalSince1970: -0.25)) == "1969-12-31T23:59:59.750Z")
    }

    @Test func formatAgreesWithFoundationsFormatStyle() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            // 0.4 ms past a whole millisecond: rounding and truncating to milliseconds agree.
            let ms = Double(Int64.random(in: 0..<4_102_444_800_000, using: &rng))
            let date = Date(timeIntervalSince1970: (ms + 0.4) / 1000)
            let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
            #expect(ISO8601.string(date) == date.formatted(style))
            let parsed = ISO8601.parseTime(ISO8601.string(date))?.timeIntervalSince1970 ?? 0
            #expect(abs(parsed - ms / 1000) < 1e-5)
        }
    }

    @Test func parsesTimesAndDates() throws {
        let time = try #require(ISO8601.parseTime("2025-06-01T10:20:30Z"))
        #expect(time.timeIntervalSince1970 == 1_748_773_230)
        #expect(ISO8601.parseTime("2025-06-01T10:20:30.250Z")?.timeIntervalSince1970 == 1_748_773_230.25)
        #expect(ISO8601.parseTime("2025-06-01") == nil)
        #expect(ISO8601.parse("2025-06-01")?.timeIntervalSince1970 == 1_748_736_000)
        #expect(ISO8601.parse("June 1st") == nil)
    }

    @Test func sinceTakesATimeOrAnAge() {
        let base = Date(timeIntervalSince1970: 1_750_000_000)
        #expect(ISO8601.parseSince("2h", now: base) == base.addingTimeInterval(-7200))
        #expect(ISO8601.parseSince("7d", now: base) == base.addingTimeInterval(-7 * 86_400))
        #expect(ISO8601.parseSince("90m", now: base) == base.addingTimeInterval(-5400))
        #expect(ISO8601.parseSince("2025-06-15") != nil)
        #expect(ISO8601.parseSince("yesterday") == nil)
        #expect(ISO8601.parseSince("-2h", now: base) == nil)
    }
}
