import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// ISO 8601 timestamps in UTC with milliseconds, the form every record of the service and the slot store uses.
/// Formatted by hand from `gmtime_r`: Foundation's `ISO8601DateFormatter` goes through ICU's date formatter,
/// whose locale tables would stay resident in the service for one timestamp.
public enum ISO8601 {
    /// `2025-06-01T10:20:30.456Z`: fixed width, so text order is time order (the journal relies on it).
    /// Rounded to the millisecond.
    public static func string(_ date: Date) -> String {
        let totalMs = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var seconds = time_t(totalMs >= 0 ? totalMs / 1000 : (totalMs - 999) / 1000)
        let ms = Int(totalMs - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), ms)
    }

    /// Parses `2024-05-01T12:00:00Z`, with or without fractional seconds.
    public static func parseTime(_ text: String) -> Date? {
        if let d = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return d }
        return try? Date.ISO8601FormatStyle().parse(text)
    }

    /// Parses a time as `parseTime` does, or a bare date `2024-05-01`.
    public static func parse(_ text: String) -> Date? {
        parseTime(text) ?? (try? Date.ISO8601FormatStyle().year().month().day().parse(text))
    }
}

extension ISO8601 {
    /// A `--since` value: an ISO 8601 time or date, or an age such as `90m`, `24h`, `7d` before `now`.
    public static func parseSince(_ text: String, now: Date = Date()) -> Date? {
        if let date = parse(text) { return date }
        guard let unit = text.last, let amount = Double(text.dropLast()), amount >= 0, amount.isFinite else {
            return nil
        }
        let seconds: Double
        switch unit {
        case "s": seconds = 1
        case "m": seconds = 60
        case "h": seconds = 3600
        case "d": seconds = 86_400
        default: return nil
        }
        return now.addingTimeInterval(-amount * seconds)
    }
}
