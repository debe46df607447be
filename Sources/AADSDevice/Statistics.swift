import Foundation

/// The few distributions and tests the on-device A/B comparison needs, in plain Swift.
public enum Statistics {
    /// Result of a two-sided test.
    public struct TestResult: Sendable, Equatable {
        public var statistic: Double
        /// Degrees of freedom (Welch–Satterthwaite); nil for the z-test.
        public var degreesOfFreedom: Double?
        /// Two-sided p-value.
        public var pValue: Double
    }

    public static func mean(_ x: [Double]) -> Double {
        x.isEmpty ? .nan : x.reduce(0, +) / Double(x.count)
    }

    /// Sample variance (n − 1 denominator).
    public static func variance(_ x: [Double]) -> Double {
        guard x.count > 1 else { return .nan }
        let m = mean(x)
        return x.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(x.count - 1)
    }

    /// Welch's unequal-variance t-test of mean(a) − mean(b), as scipy.stats.ttest_ind(a, b, equal_var=False).
    /// Nil with fewer than two samples on a side or when both variances are zero.
    public static func welchTTest(_ a: [Double], _ b: [Double]) -> TestResult? {
        guard a.count > 1, b.count > 1 else { return nil }
        let va = variance(a) / Double(a.count)
        let vb = variance(b) / Double(b.count)
        let se2 = va + vb
        guard se2 > 0, se2.isFinite else { return nil }
        let t = (mean(a) - mean(b)) / se2.squareRoot()
        let df = se2 * se2 / (va * va / Double(a.count - 1) + vb * vb / Double(b.count - 1))
        return TestResult(statistic: t, degreesOfFreedom: df, pValue: studentTTwoSidedP(t: t, df: df))
    }

    /// Two-proportion z-test with the pooled proportion: successes x1 of n1 against x2 of n2.
    public static func twoProportionZTest(x1: Int, n1: Int, x2: Int, n2: Int) -> TestResult? {
        guard n1 > 0, n2 > 0, x1 >= 0, x2 >= 0, x1 <= n1, x2 <= n2 else { return nil }
        let p1 = Double(x1) / Double(n1)
        let p2 = Double(x2) / Double(n2)
        let pooled = Double(x1 + x2) / Double(n1 + n2)
        let se = (pooled * (1 - pooled) * (1 / Double(n1) + 1 / Double(n2))).squareRoot()
        guard se > 0 else { return nil }
        let z = (p1 - p2) / se
        return TestResult(statistic: z, degreesOfFreedom: nil, pValue: erfc(abs(z) / 2.0.squareRoot()))
    }

    /// Standard normal CDF via erfc (accurate in both tails).
    public static func normalCDF(_ x: Double) -> Double {
        0.5 * erfc(-x / 2.0.squareRoot())
    }

    /// Two-sided p-value of Student's t: P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2).
    public static func studentTTwoSidedP(t: Double, df: Double) -> Double {
        guard t.isFinite else { return t.isNaN ? .nan : 0 }
        let x = df / (df + t * t)
        return regularizedIncompleteBeta(a: df / 2, b: 0.5, x: x)
    }

    /// Student's t CDF.
    public static func studentTCDF(t: Double, df: Double) -> Double {
        let tail = 0.5 * studentTTwoSidedP(t: t, df: df)
        return t < 0 ? tail : 1 - tail
    }

    /// The regularized incomplete beta function I_x(a, b), by Lentz's continued fraction.
    public static func regularizedIncompleteBeta(a: Double, b: Double, x: Double) -> Double {
        guard a > 0, b > 0, !x.isNaN else { return .nan }
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let logFront = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x)
        let front = exp(logFront)
        // The continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise.
        if x < (a + 1) / (a + b + 2) {
            return front * betaContinuedFraction(a: a, b: b, x: x) / a
        }
        return 1 - front * betaContinuedFraction(a: b, b: a, x: 1 - x) / b
    }

    private static func betaContinuedFraction(a: Double, b: Double, x: Double) -> Double {
        let tiny = 1e-300
        let epsilon = 1e-16
        let qab = a + b
        let qap = a + 1
        let qam = a - 1
        var c = 1.0
        var d = 1 - qab * x / qap
        if abs(d) < tiny { d = tiny }
        d = 1 / d
        var h = d
        for m in 1...10_000 {
            let m = Double(m)
            let m2 = 2 * m
            var aa = m * (b - m) * x / ((qam + m2) * (a + m2))
            d = 1 + aa * d
            if abs(d) < tiny { d = tiny }
            c = 1 + aa / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            h *= d * c
            aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
            d = 1 + aa * d
            if abs(d) < tiny { d = tiny }
            c = 1 + aa / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < epsilon { break }
        }
        return h
    }
}
