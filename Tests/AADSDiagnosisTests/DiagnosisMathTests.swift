import AADSCore
import AADSTestSupport
import Foundation
import Testing

@testable import AADSDiagnosis

let diagnosisFixtures = Fixtures.path("diagnosis")

struct Expected: Decodable {
    struct Case: Decodable {
        let features: [Float]
        let z: [Double]
        let probabilities: [Double]
        let predicted: Int
        let mahalanobis: Double
    }
    struct LoRA: Decodable {
        let rank: Int
        let alpha: Float
        let delta: [Double]
    }
    let cases: [Case]
    let thresholds: [Float]
    let lora: LoRA

    static func load() throws -> Expected {
        try JSONDecoder().decode(
            Expected.self, from: Data(contentsOf: URL(fileURLWithPath: diagnosisFixtures + "/expected.json")))
    }
}

@Suite struct DiagnosisMathTests {
    let expected: Expected
    let file: SafeTensorsFile

    init() throws {
        expected = try Expected.load()
        file = try SafeTensorsFile(path: diagnosisFixtures + "/adapter.safetensors")
    }

    @Test func headsAndMahalanobisMatchNumpy() throws {
        let projection = try LinearLayer(file: file, prefix: "proj.", inputs: 16)
        let classifier = try LinearLayer(file: file, prefix: "cls.", inputs: projection.outputs)
        let ood = try MahalanobisOOD(file: file, classes: 4, dimension: projection.outputs, rule: ThresholdRule())
        for item in expected.cases {
            let z = try projection.apply(item.features)
            for (mine, reference) in zip(z, item.z) { #expect(abs(Double(mine) - reference) < 1e-4) }
            let probabilities = softmax(try classifier.apply(z))
            for (mine, reference) in zip(probabilities, item.probabilities) {
                #expect(abs(Double(mine) - reference) < 1e-5)
            }
            #expect(topIndices(probabilities, 1) == [item.predicted])
            let distance = Double(ood.squaredDistance(z, toClass: item.predicted))
            #expect(abs(distance - item.mahalanobis) <= 1e-4 * max(1, item.mahalanobis))
        }
    }

    @Test func thresholdsFollowTheSampleCountRule() throws {
        let ood = try MahalanobisOOD(file: file, classes: 4, dimension: 6, rule: ThresholdRule())
        #expect(ood.thresholds == expected.thresholds)
        // Exactly the minimum sample count uses the statistics; one fewer falls back.
        let rule = ThresholdRule(thresholdFactor: 2, minValSamplesPerClass: 10, fallbackThreshold: 25)
        #expect(rule.threshold(validationMean: 5, validationStd: 1, validationCount: 10) == 7)
        #expect(rule.threshold(validationMean: 5, validationStd: 1, validationCount: 9) == 25)
        #expect(rule.threshold(validationMean: .nan, validationStd: 1, validationCount: 50) == 25)
    }

    @Test func distanceIsZeroAtTheClassMeanAndGrowsAway() throws {
        let ood = try MahalanobisOOD(file: file, classes: 4, dimension: 6, rule: ThresholdRule())
        let (_, means) = try file.floats("ood.means")
        let mean = Array(means[6..<12])
        #expect(abs(ood.squaredDistance(mean, toClass: 1)) < 1e-5)
        let far = mean.map { $0 + 10 }
        #expect(ood.squaredDistance(far, toClass: 1) > ood.thresholds[1])
    }

    @Test func loraDeltaMatchesNumpy() throws {
        let lora = try SafeTensorsFile(path: diagnosisFixtures + "/lora.safetensors")
        let deltas = try LoRAMerge.deltas(
            file: lora, targets: ["conv_head"], rank: expected.lora.rank, alpha: expected.lora.alpha)
        let delta = try #require(deltas["conv_head"])
        #expect(delta.count == expected.lora.delta.count)
        for (mine, reference) in zip(delta, expected.lora.delta) { #expect(abs(Double(mine) - reference) < 1e-4) }
        #expect(throws: DiagnosisError.self) {
            try LoRAMerge.deltas(file: lora, targets: ["conv_head"], rank: 4, alpha: 1)
        }
    }

    @Test func safetensorsRejectsDamage() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: diagnosisFixtures + "/adapter.safetensors"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("aads-st-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let truncated = dir + "/truncated.safetensors"
        try data.prefix(data.count - 10).write(to: URL(fileURLWithPath: truncated))
        #expect(throws: DiagnosisError.self) { try SafeTensorsFile(path: truncated) }
        let garbage = dir + "/garbage.safetensors"
        try Data([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 1, 2]).write(to: URL(fileURLWithPath: garbage))
        #expect(throws: DiagnosisError.self) { try SafeTensorsFile(path: garbage) }
        #expect(throws: DiagnosisError.self) { try SafeTensorsFile(path: dir + "/absent.safetensors") }
        #expect(throws: DiagnosisError.self) { try file.floats("proj.weight", shape: [7, 16]) }
    }
}
