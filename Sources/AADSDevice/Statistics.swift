import Foundation

/// The few distributions and tests the on-device A/B comparison needs, in plain Swift.
public enum Statistics {
    /// Result of a two-sided test.
    public struct TestResult: Sendable, Equatable {
        public var statistic: Double
        /// Degrees of freedom (Welch–Satterthwaite, or n − 1 for the paired t-test); nil for the z-test and McNemar.
        public var degreesOfFreedom: Double?
        /// Two-sided p-value.
        public var pValue: Double
    }

    /// A two-sided confidence interval around a point estimate.
    public struct Interval: Sendable, Equatable {
        public var estimate: Double
        public var lower: Double
        public var upper: Double
        /// Coverage, e.g. 0.95.
        public var level: Double
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

    /// Paired t-test of mean(a − b) against 0, as scipy.stats.ttest_rel(a, b): t, df = n − 1, two-sided p.
    /// Nil with fewer than two pairs, unequal lengths, or when every difference is the same.
    public static func pairedTTest(_ a: [Double], _ b: [Double]) -> TestResult? {
        guard a.count == b.count, a.count > 1 else { return nil }
        let d = zip(a, b).map { $0 - $1 }
        let se2 = variance(d) / Double(d.count)
        guard se2 > 0, se2.isFinite else { return nil }
        let t = mean(d) / se2.squareRoot()
        let df = Double(d.count - 1)
        return TestResult(statistic: t, degreesOfFreedom: df, pValue: studentTTwoSidedP(t: t, df: df))
    }

    /// The mean of a − b with its two-sided t confidence interval (df = n − 1). Nil with fewer than two pairs.
    public static func pairedMeanDifference(_ a: [Double], _ b: [Double], level: Double = 0.95) -> Interval? {
        guard a.count == b.count, a.count > 1 else { return nil }
        let d = zip(a, b).map { $0 - $1 }
        let m = mean(d)
        let half =
            studentTQuantile((1 + level) / 2, df: Double(d.count - 1)) * (variance(d) / Double(d.count)).squareRoot()
        return Interval(estimate: m, lower: m - half, upper: m + half, level: level)
    }

    /// McNemar's exact test on the discordant pairs of a paired 2×2 table, as statsmodels' `mcnemar(exact=True)`
    /// (the binomial test of `b` successes in `b + c` at 1/2, scipy.stats.binomtest): the statistic is min(b, c),
    /// the p-value two-sided. With no discordant pair the p-value is 1.
    public static func mcNemarExact(b: Int, c: Int) -> TestResult? {
        guard b >= 0, c >= 0 else { return nil }
        let p = min(1, 2 * binomialHalfCDF(min(b, c), n: b + c))
        return TestResult(statistic: Double(min(b, c)), degreesOfFreedom: nil, pValue: p)
    }

    /// Difference of two paired proportions, (b − c) / n, with its Wald interval
    /// (standard error √(b + c − (b − c)²/n) / n, as in Agresti's Categorical Data Analysis §10.1).
    public static func pairedProportionDifference(b: Int, c: Int, n: Int, level: Double = 0.95) -> Interval? {
        guard n > 0, b >= 0, c >= 0, b + c <= n else { return nil }
        let nn = Double(n)
        let diff = Double(b - c) / nn
        let se = max(0, Double(b + c) - Double(b - c) * Double(b - c) / nn).squareRoot() / nn
        let half = normalQuantile((1 + level) / 2) * se
        return Interval(estimate: diff, lower: diff - half, upper: diff + half, level: level)
    }

    /// P(X ≤ k) for X ~ Binomial(n, 1/2), summed exactly from the largest term down.
    public static func binomialHalfCDF(_ k: Int, n: Int) -> Double {
        guard n >= 0 else { return .nan }
        if k < 0 { return 0 }
        if k >= n { return 1 }
        if 2 * k >= n { return 1 - binomialHalfCDF(n - k - 1, n: n) }
        // Terms C(n, i) / C(n, k) for i = k, k − 1, …, 0; below the mode they shrink at least geometrically.
        var term = 1.0
        var sum = 1.0
        var i = k
        while i > 0, term > sum * 1e-17 {
            term *= Double(i) / Double(n - i + 1)
            sum += term
            i -= 1
        }
        let logTop = lgamma(Double(n + 1)) - lgamma(Double(k + 1)) - lgamma(Double(n - k + 1)) - Double(n) * log(2.0)
        return sum * exp(logTop)
    }

    // MARK: Anytime-valid evidence (e-values)
    //
    // An e-value E_n is a statistic whose running product or mixture is a nonnegative martingale with mean 1
    // when the null hypothesis holds, so by Ville's inequality P(E_n ≥ 1/α for some n) ≤ α however often it is
    // looked at; 1 / max E is an always-valid p-value.

    /// Two-sided e-value for "the mean of the paired differences is not 0", after n differences with the given
    /// mean and sum of squared deviations S: the Bayes factor of the scale-invariant t-test with a normal prior
    /// N(0, g) on the standardized effect δ = μ/σ and the right-Haar prior 1/σ (Rouder et al. 2009 with g fixed),
    /// (1 + ng)^(−1/2) · (A / B)^(n/2) with A = S + n·m² and B = S + n·m²/(1 + ng). It is the likelihood ratio
    /// of the t statistic (noncentral against central t) mixed over δ, hence a test martingale when the
    /// differences are N(0, σ²) for any σ (Pérez-Ortiz, Lardy, de Heide & Grünwald, "E-statistics, group
    /// invariance and anytime-valid testing", Ann. Statist. 2024). 1 for n < 2 or all-zero differences.
    public static func twoSidedTTestEValue(n: Int, mean m: Double, sumSquaredDeviations s: Double, g: Double) -> Double
    {
        guard n > 1, g > 0, m.isFinite, s.isFinite else { return 1 }
        let nn = Double(n)
        let a = max(0, s) + nn * m * m
        let b = max(0, s) + nn * m * m / (1 + nn * g)
        guard a > 0, b > 0 else { return 1 }
        return exp(-0.5 * log1p(nn * g) + nn / 2 * (log(a) - log(b)))
    }

    /// One-sided version for "the mean is above 0": the same mixture over δ > 0 only (half-normal prior),
    /// which is the two-sided value times 2·F_t(m·n·√(gn / ((1 + ng)·B)); df n). At most twice the two-sided
    /// value, and small when the mean is negative.
    public static func oneSidedTTestEValue(n: Int, mean m: Double, sumSquaredDeviations s: Double, g: Double) -> Double
    {
        let twoSided = twoSidedTTestEValue(n: n, mean: m, sumSquaredDeviations: s, g: g)
        guard n > 1, g > 0, m.isFinite, s.isFinite else { return 1 }
        let nn = Double(n)
        let b = max(0, s) + nn * m * m / (1 + nn * g)
        guard b > 0 else { return 1 }
        let c = m * nn * (g * nn / ((1 + nn * g) * b)).squareRoot()
        return twoSided * 2 * studentTCDF(t: c, df: nn)
    }

    /// One-sided e-value for "a discordant pair goes the candidate's way more often than not": b pairs one way,
    /// c the other, against a fair coin, with a uniform prior on the probability over [1/2, 1]:
    /// 2^(b+c+1) · B(b + 1, c + 1) · I_{1/2}(c + 1, b + 1). Exact (a sequential McNemar test).
    public static func oneSidedSignEValue(b: Int, c: Int) -> Double {
        guard b >= 0, c >= 0, b + c > 0 else { return 1 }
        let bb = Double(b)
        let cc = Double(c)
        let logBeta: Double = lgamma(bb + 1) + lgamma(cc + 1) - lgamma(bb + cc + 2)
        let logFront: Double = (bb + cc + 1) * log(2.0) + logBeta
        return exp(logFront) * regularizedIncompleteBeta(a: cc + 1, b: bb + 1, x: 0.5)
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

    /// Inverse of the standard normal CDF: Acklam's rational approximation refined by one Halley step.
    public static func normalQuantile(_ p: Double) -> Double {
        guard p > 0, p < 1 else { return p == 0 ? -.infinity : p == 1 ? .infinity : .nan }
        let a = [
            -3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
            -3.066479806614716e+01, 2.506628277459239e+00,
        ]
        let b = [
            -5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
            -1.328068155288572e+01,
        ]
        let c = [
            -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
            4.374664141464968e+00, 2.938163982698783e+00,
        ]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        // The lower half only, where the erfc-based CDF is accurate; the upper half by symmetry.
        if p > 0.5 { return -normalQuantile(1 - p) }
        var x: Double
        if p < 0.02425 {
            let q = (-2 * log(p)).squareRoot()
            x = horner(c, q) / horner(d + [1], q)
        } else {
            let q = p - 0.5
            let r = q * q
            x = horner(a, r) * q / horner(b + [1], r)
        }
        let u = (normalCDF(x) - p) * (2 * Double.pi).squareRoot() * exp(x * x / 2)
        x -= u / (1 + x * u / 2)
        return x
    }

    /// The polynomial with these coefficients (highest power first) at x.
    private static func horner(_ coefficients: [Double], _ x: Double) -> Double {
        coefficients.reduce(0) { $0 * x + $1 }
    }

    /// Inverse of Student's t CDF, by safeguarded Newton iterations on ``studentTCDF(t:df:)``.
    public static func studentTQuantile(_ p: Double, df: Double) -> Double {
        guard p > 0, p < 1, df > 0 else { return p == 0 ? -.infinity : p == 1 ? .infinity : .nan }
        if p == 0.5 { return 0 }
        if p < 0.5 { return -studentTQuantile(1 - p, df: df) }
        // Upper tail: solve P(T > t) = 1 − p for t > 0, bracketing the root.
        let target = 1 - p
        func tail(_ t: Double) -> Double { 0.5 * studentTTwoSidedP(t: t, df: df) }
        var lo = 0.0
        var hi = max(1.0, normalQuantile(p))
        while tail(hi) > target {
            lo = hi
            hi *= 2
        }
        var t = hi
        for _ in 0..<200 {
            let f = tail(t) - target
            if f > 0 { lo = t } else { hi = t }
            let density = exp(
                lgamma((df + 1) / 2) - lgamma(df / 2) - 0.5 * log(df * Double.pi) - (df + 1) / 2 * log1p(t * t / df))
            var next = t + f / density
            if !(next > lo && next < hi) { next = (lo + hi) / 2 }
            if abs(next - t) <= 1e-15 * abs(t) { return next }
            t = next
        }
        return t
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
