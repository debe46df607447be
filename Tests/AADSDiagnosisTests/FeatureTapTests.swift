import Foundation
import Testing

@testable import AADSDiagnosis

/// `backbone.taps`: mid-level tensors whose channel means extend the features.
@Suite(.serialized) struct FeatureTapTests {
    func code(withTaps taps: [String]) throws -> String? {
        let copy = try BundleCopy()
        defer { copy.remove() }
        try copy.editManifest { object in
            var backbone = object["backbone"] as! [String: Any]
            backbone["taps"] = taps
            object["backbone"] = backbone
        }
        return AADSDiagnosisTests.code { _ = try DiagnosisPipeline(bundleDirectory: copy.path) }
    }

    @Test func aTapThatAnAdapterChangesIsRefused() throws {
        // conv_head carries LoRA deltas; its activation would differ between the router's and the adapter's pass.
        #expect(try code(withTaps: ["head_relu6_DequantizeLinear_Output"]) == "bad_manifest")
    }

    @Test func anUnknownTapIsRefused() throws {
        #expect(try code(withTaps: ["no_such_tensor"]) == "shape_mismatch")
    }

    @Test func tapsWidenTheFeaturesTheHeadsMustTake() throws {
        let manifest = try BundleManifest.load(bundleDirectory: factoryBundle)
        let widened = (manifest.backbone.taps ?? []) + ["blocks.4.add_DequantizeLinear_Output"]
        #expect(try code(withTaps: widened) == "shape_mismatch")
    }
}
