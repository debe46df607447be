import Foundation
import Testing

@testable import AADSDiagnosis

func sampleManifest() -> [String: Any] {
    [
        "schema_version": 1, "model_version": "1.2.0", "created": "2026-01-01T00:00:00Z", "description": "test",
        "preprocessing": ["size": 224, "policy": "center-crop", "mean": [127, 127, 127], "std": [128, 128, 128]],
        "backbone": ["file": "backbone.onnx", "input": "input", "features": "features"],
        "router": ["crops": ["tomato", "corn"], "head": "router.safetensors", "confidence_threshold": 0.7],
        "adapters": [
            "tomato": [
                "classes": ["healthy", "early_blight"], "head": "adapters/tomato.safetensors",
                "lora": ["file": "adapters/tomato_lora.safetensors", "rank": 4, "alpha": 8, "targets": ["conv_head"]],
            ],
            "corn": ["classes": ["healthy", "common_rust"], "head": "adapters/corn.safetensors"],
        ],
        "ood": [
            "method": "dynamic_mahalanobis", "threshold_factor": 2.0, "min_val_samples_per_class": 10,
            "fallback_threshold": 25.0,
        ],
        "golden_set": ["labels": "golden/labels.csv"],
        "baseline_metrics": ["adapter_accuracy": 0.97],
        "files": [
            "backbone.onnx", "router.safetensors", "adapters/tomato.safetensors", "adapters/tomato_lora.safetensors",
            "adapters/corn.safetensors", "golden/labels.csv",
        ].map { ["path": $0, "sha256": String(repeating: "0", count: 64), "size": 1] },
    ]
}

func parse(_ object: [String: Any]) throws -> BundleManifest {
    try BundleManifest.parse(JSONSerialization.data(withJSONObject: object))
}

func errorCode(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as DiagnosisError {
        return error.code
    } catch {
        return "unexpected"
    }
}

@Suite struct ManifestTests {
    @Test func parsesAValidManifest() throws {
        let manifest = try parse(sampleManifest())
        #expect(manifest.modelVersion == "1.2.0")
        #expect(manifest.router.confidenceThreshold == 0.7)
        #expect(manifest.adapters["tomato"]?.lora?.targets == ["conv_head"])
        #expect(manifest.ood.minValSamplesPerClass == 10)
    }

    @Test func badJSONIsBadManifest() {
        #expect(errorCode { _ = try BundleManifest.parse(Data("{not json".utf8)) } == "bad_manifest")
    }

    @Test func missingKeyNamesTheKey() {
        var object = sampleManifest()
        var router = object["router"] as! [String: Any]
        router["head"] = nil
        object["router"] = router
        do {
            _ = try parse(object)
            Issue.record("expected an error")
        } catch let error as DiagnosisError {
            #expect(error.code == "bad_manifest")
            #expect(error.message.contains("router.head"))
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test func unlistedFileIsRefused() {
        var object = sampleManifest()
        object["files"] = (object["files"] as! [[String: Any]]).filter {
            ($0["path"] as! String) != "adapters/corn.safetensors"
        }
        #expect(errorCode { _ = try parse(object) } == "bad_manifest")
    }

    @Test func cropWithoutAdapterIsUnknownCrop() {
        var object = sampleManifest()
        var router = object["router"] as! [String: Any]
        router["crops"] = ["tomato", "corn", "pepper"]
        object["router"] = router
        #expect(errorCode { _ = try parse(object) } == "unknown_crop")
    }

    @Test func unsupportedSchemaAndMethod() {
        var object = sampleManifest()
        object["schema_version"] = 7
        #expect(errorCode { _ = try parse(object) } == "unsupported_bundle")
        object = sampleManifest()
        object["ood"] = [
            "method": "energy", "threshold_factor": 2.0, "min_val_samples_per_class": 10, "fallback_threshold": 25.0,
        ]
        #expect(errorCode { _ = try parse(object) } == "unsupported_bundle")
    }

    @Test func wrongTypeNamesThePath() {
        var object = sampleManifest()
        var prep = object["preprocessing"] as! [String: Any]
        prep["size"] = "big"
        object["preprocessing"] = prep
        #expect(errorCode { _ = try parse(object) } == "bad_manifest")
    }
}
