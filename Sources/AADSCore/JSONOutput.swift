import Foundation

/// Serialises `[String: Any]`-style JSON values for one-line-per-record output (`--json`).
public enum JSONLine {
    /// One compact JSON object, keys sorted for stable output.
    public static func encode(_ object: [String: Any]) -> String {
        guard JSONSerialization.isValidJSONObject(object), let text = compact(object) else {
            return "{\"error\":{\"code\":\"internal\",\"message\":\"unserialisable output\"}}"
        }
        return text
    }

    /// Objects are written with their keys in code-point order here; scalars by `JSONSerialization`. Its own
    /// `.sortedKeys` compares keys with a locale-aware collation, which pulls megabytes of collation tables
    /// into memory for one line of output.
    static func compact(_ value: Any) -> String? {
        switch value {
        case let object as [String: Any]:
            var parts: [String] = []
            for key in object.keys.sorted() {
                guard let k = compact(key), let v = object[key].flatMap(compact) else { return nil }
                parts.append(k + ":" + v)
            }
            return "{" + parts.joined(separator: ",") + "}"
        case let array as [Any]:
            var parts: [String] = []
            for element in array {
                guard let v = compact(element) else { return nil }
                parts.append(v)
            }
            return "[" + parts.joined(separator: ",") + "]"
        default:
            guard
                let data = try? JSONSerialization.data(
                    withJSONObject: value, options: [.fragmentsAllowed, .withoutEscapingSlashes])
            else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
    }

    /// Rounds to `digits` decimals so timings print compactly.
    public static func rounded(_ value: Double, _ digits: Int = 3) -> Double {
        let scale = pow(10.0, Double(digits))
        return (value * scale).rounded() / scale
    }
}

/// Monotonic stopwatch in milliseconds.
public struct Stopwatch: Sendable {
    private var start: UInt64

    public init() { start = DispatchTime.now().uptimeNanoseconds }

    /// Milliseconds since start (or the last `lap`).
    public var elapsedMs: Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 }

    /// Returns elapsed milliseconds and restarts.
    public mutating func lap() -> Double {
        let now = DispatchTime.now().uptimeNanoseconds
        defer { start = now }
        return Double(now - start) / 1e6
    }
}
