import Foundation
import Testing

@testable import AADSDevice

/// Compares against scipy's values (tools/gen_ab_fixtures.py → Tests/Fixtures/device/ab_stats.json).
@Suite struct StatisticsTests {
    let fixture: [String: Any]

    init() throws { fixture = try Fixtures.json("ab_stats.json") }

    /// Within 1e-6 relative (so tiny p-values are checked as strictly as large ones).
    func close(_ a: Double, _ b: Double) -> Bool {
        abs(a - b) <= 1e-6 * abs(b) + 1e-15
    }

    @Test func welchTTestMatchesScipy() throws {
        let cases = try #require(fixture["welch"] as? [[String: Any]])
        #expect(cases.count >= 6)
        for c in cases {
            let a = try #require(c["a"] as? [Double])
            let b = try #require(c["b"] as? [Double])
            let result = try #require(Statistics.welchTTest(a, b))
            let name = c["name"] as? String ?? "?"
            #expect(close(result.statistic, c["t"] as? Double ?? .nan), "t of \(name)")
            #expect(close(result.degreesOfFreedom ?? .nan, c["df"] as? Double ?? .nan), "df of \(name)")
            #expect(close(result.pValue, c["p"] as? Double ?? .nan), "p of \(name): \(result.pValue)")
        }
    }

    @Test func twoProportionZTestMatchesScipy() throws {
        let cases = try #require(fixture["ztest"] as? [[String: Any]])
        for c in cases {
            let r = try #require(
                Statistics.twoProportionZTest(
                    x1: c["x1"] as? Int ?? 0, n1: c["n1"] as? Int ?? 0, x2: c["x2"] as? Int ?? 0,
                    n2: c["n2"] as? Int ?? 0))
            #expect(close(r.statistic, c["z"] as? Double ?? .nan))
            #expect(close(r.pValue, c["p"] as? Double ?? .nan), "p \(r.pValue) vs \(c["p"] ?? "")")
        }
        #expect(Statistics.twoProportionZTest(x1: 0, n1: 10, x2: 0, n2: 10) == nil)
        #expect(Statistics.twoProportionZTest(x1: 11, n1: 10, x2: 0, n2: 10) == nil)
    }

    @Test func incompleteBetaTAndNormalCDFsMatchScipy() throws {
        for c in try #require(fixture["betainc"] as? [[String: Any]]) {
            let v = Statistics.regularizedIncompleteBeta(
                a: c["a"] as? Double ?? 0, b: c["b"] as? Double ?? 0, x: c["x"] as? Double ?? 0)
            #expect(close(v, c["value"] as? Double ?? .nan), "betainc \(c)")
        }
        for c in try #require(fixture["t_cdf"] as? [[String: Any]]) {
            let v = Statistics.studentTCDF(t: c["t"] as? Double ?? 0, df: c["df"] as? Double ?? 1)
            #expect(close(v, c["value"] as? Double ?? .nan), "t cdf \(c)")
        }
        for c in try #require(fixture["normal_cdf"] as? [[String: Any]]) {
            let v = Statistics.normalCDF(c["x"] as? Double ?? 0)
            #expect(close(v, c["value"] as? Double ?? .nan), "normal cdf \(c)")
        }
    }

    @Test func degenerateInputsGiveNoResult() {
        #expect(Statistics.welchTTest([1], [2, 3]) == nil)
        #expect(Statistics.welchTTest([2, 2, 2], [2, 2]) == nil)
    }
}
