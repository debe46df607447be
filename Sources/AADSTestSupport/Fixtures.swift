import Foundation

/// Where the tests find the repository's committed files: the fixtures under Tests/Fixtures and the
/// configuration under firmware-config. Every test target asks here instead of working out paths itself.
public enum Fixtures {
    /// The repository root (this file is Sources/AADSTestSupport/Fixtures.swift).
    public static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// Tests/Fixtures.
    public static let root = repository.appendingPathComponent("Tests/Fixtures")

    /// A file or directory under Tests/Fixtures, e.g. `url("images/cases.json")`.
    public static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    /// The path of a file or directory under Tests/Fixtures.
    public static func path(_ relative: String) -> String { url(relative).path }

    /// The path of a file or directory under the repository root, e.g. `repositoryPath("firmware-config/keys")`.
    public static func repositoryPath(_ relative: String) -> String {
        repository.appendingPathComponent(relative).path
    }

    /// firmware-config/factory-bundle, the signed bundle a device ships with.
    public static let factoryBundle = repositoryPath("firmware-config/factory-bundle")

    /// firmware-config/health.json, the decision matrix a device applies.
    public static let healthPolicy = repositoryPath("firmware-config/health.json")
}
