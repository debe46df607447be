import AADSCore
import AADSDiagnosis
import Foundation
import Testing

@Suite struct DiagnosisJSONTests {
    static let leaf = Diagnosis(
        file: "IMG_1.jpg", decision: .diagnosis, crop: "tomato", cropConfidence: 0.970_000_028_610_229_5,
        disease: "early_blight", confidence: 0.941_234_56,
        top3: [.init(label: "early_blight", confidence: 0.941_234_56), .init(label: "late_blight", confidence: 0.04)],
        mahalanobis: 12.345_678, threshold: 27, modelVersion: "1.2.0",
        latency: StageLatency(decode: 4.5, backbone: 20.123_456, adapter: 6.125, total: 30.748_456))

    func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func roundTripsThroughItsJSON() throws {
        let data = try JSONEncoder().encode(Self.leaf)
        #expect(try JSONDecoder().decode(Diagnosis.self, from: data) == Self.leaf)
        var rejected = Diagnosis(file: "b.jpg", decision: .unknownCrop, cropConfidence: 0.4, modelVersion: "1.2.0")
        rejected.top3 = [.init(label: "corn", confidence: 0.4)]
        #expect(try JSONDecoder().decode(Diagnosis.self, from: JSONEncoder().encode(rejected)) == rejected)
    }

    @Test func printsEveryKeyWithNullsAndRoundedFigures() throws {
        var rejected = Diagnosis(file: "b.jpg", decision: .unknownCrop, cropConfidence: 0.4, modelVersion: "1.2.0")
        rejected.top3 = [.init(label: "corn", confidence: 0.4)]
        #expect(
            JSONLine.encode(rejected.jsonObject)
                == #"{"confidence":null,"crop":null,"crop_confidence":0.4,"decision":"unknown_crop","disease":null,"#
                + #""file":"b.jpg","latency_ms":{"adapter":0,"backbone":0,"decode":0,"total":0},"mahalanobis":null,"#
                + #""model_version":"1.2.0","threshold":null,"top3":[{"confidence":0.4,"label":"corn"}]}"#)
        let leaf = Self.leaf.jsonObject
        #expect(leaf["crop_confidence"] as? Double == 0.97 && leaf["confidence"] as? Double == 0.9412)
        #expect(leaf["mahalanobis"] as? Double == 12.3457)
        #expect((leaf["latency_ms"] as? [String: Any])?["backbone"] as? Double == 20.123)
    }

    @Test func anErrorRowCarriesOnlyFileDecisionVersionAndError() throws {
        let failed = Diagnosis.failure(
            file: "bad.jpg", modelVersion: "1.2.0", error: AnyCodedError(code: "corrupt_jpeg", message: "damaged"),
            totalMs: 3)
        #expect(
            JSONLine.encode(failed.jsonObject)
                == #"{"decision":"error","error":{"code":"corrupt_jpeg","message":"damaged"},"file":"bad.jpg","#
                + #""model_version":"1.2.0"}"#)
        let decoded = try JSONDecoder().decode(Diagnosis.self, from: JSONEncoder().encode(failed))
        #expect(decoded.decision == .error && decoded.error == failed.error)
    }

    @Test func decodingAnUnknownDecisionFails() throws {
        let text = #"{"file":"a.jpg","decision":"maybe","model_version":"1.2.0"}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Diagnosis.self, from: Data(text.utf8)) }
        let known = #"{"file":"a.jpg","decision":"ood","model_version":"1.2.0"}"#
        #expect(try JSONDecoder().decode(Diagnosis.self, from: Data(known.utf8)).decision == .ood)
    }
}
