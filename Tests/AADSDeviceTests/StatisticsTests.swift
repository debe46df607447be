import AADSTestSupport
import Foundation
import Testing

@testable import AADSDevice

/// Compares against scipy's values (tools/fixtures/ab-stats → Tests/Fixtures/device/ab_stats.json).
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

/// The paired A/B statistics against scipy (same fixture file).
@Suite struct PairedStatisticsTests {
    let fixture: [String: Any]

    init() throws { fixture = try Fixtures.json("ab_stats.json") }

    /// Within `tolerance` relative.
    func close(_ a: Double, _ b: Double, _ tolerance: Double = 1e-12) -> Bool {
        abs(a - b) <= tolerance * abs(b) + 1e-15
    }

    @Test func pairedTTestAndIntervalMatchScipy() throws {
        let cases = try #require(fixture["paired_t"] as? [[String: Any]])
        #expect(cases.count >= 5)
        for c in cases {
            let a = try #require(c["a"] as? [Double])
            let b = try #require(c["b"] as? [Double])
            let name = c["name"] as? String ?? "?"
            let r = try #require(Statistics.pairedTTest(a, b))
            #expect(close(r.statistic, c["t"] as? Double ?? .nan), "t of \(name)")
            #expect(r.degreesOfFreedom == c["df"] as? Double)
            #expect(close(r.pValue, c["p"] as? Double ?? .nan), "p of \(name): \(r.pValue)")
            let ci = try #require(Statistics.pairedMeanDifference(a, b))
            #expect(close(ci.estimate, c["mean_difference"] as? Double ?? .nan, 1e-10), "mean of \(name)")
            #expect(close(ci.lower, c["ci_low"] as? Double ?? .nan, 1e-10), "CI low of \(name)")
            #expect(close(ci.upper, c["ci_high"] as? Double ?? .nan, 1e-10), "CI high of \(name)")
        }
        // Image-to-image spread hides a paired shift from Welch's test.
        let spread = try #require(cases.first { $0["name"] as? String == "spread_hides_shift" })
        #expect((spread["p"] as? Double ?? 1) < 0.01)
        #expect((spread["welch_p"] as? Double ?? 0) > 0.5)
    }

    @Test func mcNemarAndPairedProportionIntervalMatchScipy() throws {
        for c in try #require(fixture["mcnemar"] as? [[String: Any]]) {
            let b = c["b"] as? Int ?? -1
            let cc = c["c"] as? Int ?? -1
            let n = c["n"] as? Int ?? -1
            let r = try #require(Statistics.mcNemarExact(b: b, c: cc))
            #expect(r.statistic == c["statistic"] as? Double)
            #expect(close(r.pValue, c["p"] as? Double ?? .nan), "McNemar p \(b)/\(cc): \(r.pValue)")
            let ci = try #require(Statistics.pairedProportionDifference(b: b, c: cc, n: n))
            #expect(close(ci.estimate, c["difference"] as? Double ?? .nan))
            #expect(close(ci.lower, c["ci_low"] as? Double ?? .nan, 1e-10), "low \(b)/\(cc)/\(n)")
            #expect(close(ci.upper, c["ci_high"] as? Double ?? .nan, 1e-10), "high \(b)/\(cc)/\(n)")
        }
        #expect(Statistics.mcNemarExact(b: -1, c: 0) == nil)
        #expect(Statistics.pairedProportionDifference(b: 6, c: 5, n: 10) == nil)
    }

    @Test func quantilesMatchScipy() throws {
        for c in try #require(fixture["normal_ppf"] as? [[String: Any]]) {
            let v = Statistics.normalQuantile(c["p"] as? Double ?? .nan)
            #expect(close(v, c["value"] as? Double ?? .nan, 1e-13), "normal ppf \(c): \(v)")
        }
        for c in try #require(fixture["t_ppf"] as? [[String: Any]]) {
            let v = Statistics.studentTQuantile(c["p"] as? Double ?? .nan, df: c["df"] as? Double ?? .nan)
            #expect(close(v, c["value"] as? Double ?? .nan, 1e-12), "t ppf \(c): \(v)")
        }
    }

    /// The closed forms against scipy's numerical integration of the likelihood ratios they mix.
    @Test func eValuesMatchNumericalIntegration() throws {
        for c in try #require(fixture["t_evalue"] as? [[String: Any]]) {
            let v = Statistics.oneSidedTTestEValue(
                n: c["n"] as? Int ?? 0, mean: c["mean"] as? Double ?? .nan,
                sumSquaredDeviations: c["ss"] as? Double ?? .nan, g: c["g"] as? Double ?? .nan)
            #expect(close(v, c["value"] as? Double ?? .nan, 1e-11), "t e-value \(c): \(v)")
        }
        for c in try #require(fixture["sign_evalue"] as? [[String: Any]]) {
            let v = Statistics.oneSidedSignEValue(b: c["b"] as? Int ?? 0, c: c["c"] as? Int ?? 0)
            #expect(close(v, c["value"] as? Double ?? .nan, 1e-11), "sign e-value \(c): \(v)")
        }
        #expect(Statistics.oneSidedTTestEValue(n: 1, mean: 5, sumSquaredDeviations: 0, g: 0.2) == 1)
        #expect(Statistics.oneSidedTTestEValue(n: 10, mean: 0, sumSquaredDeviations: 0, g: 0.2) == 1)
        #expect(Statistics.oneSidedSignEValue(b: 0, c: 0) == 1)
        // Binomial(n, 1/2) CDF, both halves.
        #expect(close(Statistics.binomialHalfCDF(3, n: 20), 1351.0 / 1_048_576))
        #expect(close(Statistics.binomialHalfCDF(16, n: 20), 1 - 1351.0 / 1_048_576))
        #expect(Statistics.binomialHalfCDF(7, n: 7) == 1)
        #expect(Statistics.binomialHalfCDF(-1, n: 7) == 0)
    }
}
