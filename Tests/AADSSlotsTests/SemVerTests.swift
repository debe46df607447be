import Testing

@testable import AADSSlots

@Suite struct SemVerTests {
    /// The precedence example of semver.org §11, plus numeric (not lexical) comparison.
    @Test func precedenceFollowsTheSpecification() throws {
        let ordered = [
            "0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
            "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.2.0", "1.9.0", "1.10.0", "1.11.0", "2.0.0", "10.0.0",
        ]
        let versions = try ordered.map { try #require(SemVer($0), "\($0)") }
        for i in versions.indices {
            for j in versions.indices {
                #expect((versions[i] < versions[j]) == (i < j), "\(ordered[i]) vs \(ordered[j])")
            }
        }
    }

    @Test func buildMetadataDoesNotCount() throws {
        let a = try #require(SemVer("1.2.3+build.5"))
        let b = try #require(SemVer("1.2.3"))
        #expect(a == b && !(a < b) && !(b < a))
        #expect(a.description == "1.2.3+build.5")
    }

    @Test func refusesNonSemver() {
        for bad in ["", "1", "1.2", "v1.2.3", "01.2.3", "1.02.3", "1.2.3-", "1.2.3-01", "1.2.3+", "1.2.3.4", "a.b.c",
            "1.2.3-al pha", "99999999999999999999.0.0"]
        {
            #expect(SemVer(bad) == nil, "\(bad)")
        }
    }
}
