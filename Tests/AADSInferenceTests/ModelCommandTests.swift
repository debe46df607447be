import AADSTestSupport
import Foundation
import Testing

/// `aads-edge model bench` as benchmark scripts read it.
@Suite struct ModelCommandTests {
    /// With --profile and --json the one JSON line also carries the time of each kind of layer.
    @Test func benchProfileJSONTimesEachKindOfLayer() throws {
        try #require(TestBinary.isBuilt, "aads-edge not built")
        let model = Fixtures.repositoryPath("Tests/Fixtures/models/mobilenet_style_int8.onnx")
        let (status, _, stdout) = try TestBinary.run([
            "model", "bench", model, "--profile", "--json", "--warmup", "1", "--iterations", "3",
        ])
        #expect(status == 0)
        let lines = stdout.split(separator: "\n")
        #expect(lines.count == 1, "one JSON line, no text table")
        let line = Data((lines.last ?? "").utf8)
        let object = try #require(try JSONSerialization.jsonObject(with: line) as? [String: Any])
        let profile = try #require(object["profile_ms"] as? [String: Double])
        #expect((profile["qconv"] ?? 0) > 0)
        #expect((profile["qdepthwise"] ?? 0) > 0)
        #expect(object["p50_ms"] is Double)
    }
}
