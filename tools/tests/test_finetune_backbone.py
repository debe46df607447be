"""tools/finetune-backbone: the JAX EfficientNet-Lite0 against ONNX Runtime on the float fixture, the export of
trained weights into the float graph, and the tool end to end on a tiny folder of real photos.

Run: python3 -m unittest discover -s tools/tests   (needs tools/requirements.txt)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np
import onnx

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
sys.path.insert(0, os.path.join(TOOLS, "fixtures"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import support  # noqa: E402
from modelkit import SHARED_DATA, load_rgb, preprocess  # noqa: E402
from training import dataset, efficientnet  # noqa: E402
from training.backbone import Backbone, session  # noqa: E402

FLOAT = os.path.join(REPO, "Tests", "Fixtures", "models", "efficientnet_lite0_fp32.onnx")
LEAVES = os.environ.get("AADS_REAL_LEAVES", os.path.join(SHARED_DATA, "real-leaves"))
PHOTOS = [os.path.join(SHARED_DATA, "ood", "skimage-chelsea.jpg"), os.path.join(SHARED_DATA, "leaf", "plasma-FallenLeaf.jpg")]


def ort_features(model, x: np.ndarray) -> np.ndarray:
    return session(onnx.load(model) if isinstance(model, str) else model).run(["features"], {"input": x})[0]


class EfficientNetTwinTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.params, cls.blocks = efficientnet.load(FLOAT)
        cls.inputs = [preprocess(load_rgb(p), 224) for p in PHOTOS if os.path.exists(p)]
        if not cls.inputs:
            raise unittest.SkipTest("the shared photos are not beside the repository")

    def test_structure_is_read_from_the_graph(self):
        self.assertEqual(len(self.blocks), 16)
        self.assertEqual([b.stride for b in self.blocks], [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1])
        self.assertFalse(self.blocks[0].expands)
        self.assertEqual(sum(b.residual for b in self.blocks), 9)

    def test_jax_features_match_onnx_runtime(self):
        import jax.numpy as jnp

        hwio = efficientnet.to_hwio(self.params)
        for x in self.inputs:
            want = ort_features(FLOAT, x)
            got = np.asarray(efficientnet.features(hwio, self.blocks, jnp.asarray(x.transpose(0, 2, 3, 1))))
            self.assertLess(np.abs(got - want).max(), 1e-3 * max(1.0, np.abs(want).max()))

    def test_export_writes_the_weights_into_the_same_graph(self):
        with tempfile.TemporaryDirectory() as tmp:
            same, changed = os.path.join(tmp, "same.onnx"), os.path.join(tmp, "changed.onnx")
            roundtrip = efficientnet.to_oihw(efficientnet.to_hwio(self.params))
            efficientnet.export(FLOAT, roundtrip, same, "round trip")
            x = self.inputs[0]
            np.testing.assert_array_equal(ort_features(same, x), ort_features(FLOAT, x))
            roundtrip["conv_head"]["b"] = roundtrip["conv_head"]["b"] + 1.0
            efficientnet.export(FLOAT, roundtrip, changed, "changed head bias")
            self.assertGreater(np.abs(ort_features(changed, x) - ort_features(FLOAT, x)).max(), 0.1)
            self.assertEqual([n.name for n in onnx.load(changed).graph.node], [n.name for n in onnx.load(FLOAT).graph.node])
            roundtrip["conv_head"]["w"] = roundtrip["conv_head"]["w"][:10]
            with self.assertRaisesRegex(ValueError, "conv_head"):
                efficientnet.export(FLOAT, roundtrip, changed, "wrong shape")

    def test_a_model_that_is_not_efficientnet_is_refused(self):
        other = os.path.join(REPO, "Tests", "Fixtures", "models", "resnet_style_fp32.onnx")
        with self.assertRaisesRegex(ValueError, "not an EfficientNet-Lite"):
            efficientnet.load(other)


@unittest.skipUnless(os.path.isdir(LEAVES), "the real-leaves photos are not beside the repository")
class FinetuneToolTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="finetune-test-")
        cls.data = os.path.join(cls.tmp, "photos")
        support.copy_photos(LEAVES, cls.data, {"pepper": ["bacterial_spot", "healthy"]}, 40)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_tool(self, *args):
        return support.run_tool("finetune-backbone", *args)

    def test_fine_tunes_and_quantizes_a_backbone_train_bundle_accepts(self):
        out = os.path.join(self.tmp, "out")
        p = self.run_tool("--data", self.data, "--out", out, "--epochs", "1", "--res", "64", "--batch", "8")
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        self.assertEqual(sorted(os.listdir(out)), ["backbone_fp32.onnx", "backbone_int8.onnx", "head.npz", "report.json"])
        report = json.load(open(os.path.join(out, "report.json")))
        self.assertEqual(len(report["epochs"]), 1)
        # trained on the training split only: the split is train-bundle's, with its default seed
        splits = dataset.split(dataset.scan([self.data]), 20261206)
        self.assertEqual(report["split_counts"], dataset.class_counts(splits))
        self.assertGreater(report["int8"]["golden_accuracy"], 0.0)
        # the weights changed, and the int8 model is one tools/train-bundle can put LoRA on
        x = preprocess(load_rgb(splits["golden"][0].path), 224)
        self.assertGreater(np.abs(ort_features(os.path.join(out, "backbone_fp32.onnx"), x) - ort_features(FLOAT, x)).max(), 1e-3)
        Backbone(os.path.join(out, "backbone_int8.onnx"), ["blocks.15.project_conv"])
        self.assertFalse(os.path.exists(out + ".partial"))

    def test_bad_input_is_one_line_and_leaves_nothing(self):
        empty = os.path.join(self.tmp, "empty")
        os.makedirs(os.path.join(empty, "pepper", "healthy"))
        out = os.path.join(self.tmp, "bad-out")
        p = self.run_tool("--data", empty, "--out", out)
        self.assertEqual(p.returncode, 2)
        self.assertIn("pepper/healthy: empty class folder", p.stderr)
        p = self.run_tool("--data", self.data, "--out", out, "--float-model",
                          os.path.join(REPO, "Tests", "Fixtures", "models", "resnet_style_fp32.onnx"))
        self.assertEqual(p.returncode, 2)
        self.assertIn("not an EfficientNet-Lite", p.stderr)
        self.assertFalse(os.path.exists(out) or os.path.exists(out + ".partial"))


if __name__ == "__main__":
    unittest.main()
