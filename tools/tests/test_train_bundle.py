"""tools/train-bundle end to end on a tiny two-crop folder of real photos, its bad-input errors, and its
parity check catching a LoRA file that does not match what the tool evaluated.

Run: python3 -m unittest discover -s tools/tests   (needs the aads-edge build and tools/requirements.txt)
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import support  # noqa: E402
from training import device, fit, metrics  # noqa: E402

LEAVES = os.environ.get("AADS_REAL_LEAVES", os.path.join(REPO, "..", "shared", "data", "real-leaves"))
BACKBONE = os.path.join(REPO, "Tests", "Fixtures", "models", "efficientnet_lite0_int8.onnx")
TINY = {"pepper": ["bacterial_spot", "healthy"], "potato": ["early_blight", "late_blight"]}
PER_CLASS = 60
TAP = "blocks.10.add_DequantizeLinear_Output"
FAST = ["--epochs", "3", "--augment", "1", "--rank", "4", "--golden-per-class", "2", "--negatives", "40",
        "--seed", "7"]


def load_tool():
    loader = importlib.machinery.SourceFileLoader("train_bundle", os.path.join(TOOLS, "train-bundle"))
    spec = importlib.util.spec_from_loader("train_bundle", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class FitAdapterTests(unittest.TestCase):
    def test_feature_dropout_is_deterministic_for_a_seed_and_only_in_training(self):
        import numpy as np

        rng = np.random.default_rng(0)
        F = rng.standard_normal((256, 32)).astype(np.float32)
        y = (F[:, 0] + F[:, 1] > 0).astype(np.int64)
        kw = dict(tail=None, targets={}, S=F, y=y, n_classes=2, F0=F, rank=4, proj_dim=8, seed=3, epochs=20,
                  use_lora=False, lr=1e-2)
        a, b, plain = fit.fit_adapter(**kw, dropout=0.5), fit.fit_adapter(**kw, dropout=0.5), fit.fit_adapter(**kw)
        for k in ("proj_w", "proj_b", "cls_w", "cls_b"):
            np.testing.assert_array_equal(a[k], b[k])
        self.assertFalse(np.array_equal(a["cls_w"], plain["cls_w"]))
        logits = (F @ a["proj_w"].T + a["proj_b"]) @ a["cls_w"].T + a["cls_b"]  # inference keeps every feature
        self.assertGreater(np.mean(logits.argmax(1) == y), 0.9)

    def test_principal_components_leave_the_head_alone_and_widen_the_distance(self):
        import numpy as np

        rng = np.random.default_rng(1)
        F = rng.standard_normal((300, 16)).astype(np.float32) * np.linspace(3, 0.1, 16, dtype=np.float32)
        y = (F[:, 0] > 0).astype(np.int64)
        a = fit.fit_adapter(tail=None, targets={}, S=F, y=y, n_classes=2, F0=F, rank=4, proj_dim=2, seed=3,
                            epochs=20, use_lora=False, lr=1e-2)
        b = fit.with_principal_components(a, F, 4)
        self.assertEqual(b["proj_w"].shape, (6, 16))
        logits = {k: (F @ m["proj_w"].T + m["proj_b"]) @ m["cls_w"].T + m["cls_b"] for k, m in (("a", a), ("b", b))}
        np.testing.assert_allclose(logits["a"], logits["b"], rtol=1e-5, atol=1e-5)
        # a point far out along a high-variance direction the learned projection cannot see: the learned
        # distance misses it, the one with principal components does not
        e1 = np.eye(16, dtype=np.float32)[1]
        q, _ = np.linalg.qr(a["proj_w"].T)
        blind = e1 - q @ (q.T @ e1)
        far = F.mean(0, keepdims=True) + 40 * blind / np.linalg.norm(blind)

        def distances(m):
            Z = F @ m["proj_w"].T + m["proj_b"]
            stats = fit.ood_statistics(Z, y, Z, m["cls_w"], m["cls_b"], 0.1)
            return (fit.mahalanobis(far @ m["proj_w"].T + m["proj_b"], stats, m["cls_w"], m["cls_b"])[1][0],
                    np.quantile(fit.mahalanobis(Z, stats, m["cls_w"], m["cls_b"])[1], 0.99))

        d2_far, d2_in = distances(a)
        self.assertLess(d2_far, d2_in)
        d2_far, d2_in = distances(b)
        self.assertGreater(d2_far, d2_in)


@unittest.skipUnless(os.path.isdir(LEAVES), "the real-leaves photos are not beside the repository")
class TrainBundleTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="train-bundle-test-")
        cls.edge = device.find_binary(None)
        cls.data = os.path.join(cls.tmp, "photos")
        support.copy_photos(LEAVES, cls.data, TINY, PER_CLASS)
        cls.key = os.path.join(cls.tmp, "keys", "dev.key")
        os.makedirs(os.path.dirname(cls.key))
        subprocess.run([cls.edge, "bundle", "keygen", "--out", cls.key], check=True, capture_output=True)
        cls.trusted = os.path.join(cls.tmp, "trusted")
        os.makedirs(cls.trusted)
        shutil.copyfile(cls.key + ".pub", os.path.join(cls.trusted, "dev.pub"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_tool(self, *args):
        return support.run_tool("train-bundle", *args)

    def common(self, out):
        return ["--data", self.data, "--backbone", BACKBONE, "--out", out, "--key", self.key, *FAST]

    def test_trains_a_signed_bundle_that_the_runtime_agrees_with(self):
        out = os.path.join(self.tmp, "out", "bundle")
        p = self.run_tool(*self.common(out), "--version", "2.1.0", "--changelog", "first real-photo adapters",
                          "--taps", TAP, "--threshold-factor", "3")
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        report = json.load(open(out + ".report.json"))
        self.assertGreaterEqual(report["parity"]["agreement"], 0.99)
        self.assertEqual(sorted(report["class_counts"]), [f"{c}/{k}" for c in TINY for k in TINY[c]])
        for counts in report["class_counts"].values():  # no class is left out of a split
            self.assertGreaterEqual(min(counts.values()), 1)
        manifest = json.load(open(os.path.join(out, "manifest.json")))
        self.assertEqual(manifest["changelog"], "first real-photo adapters")
        self.assertEqual(manifest["router"]["crops"], sorted(TINY))
        # the runtime's thresholds come from the manifest's factor, so parity above also covers it
        self.assertEqual(manifest["ood"]["threshold_factor"], 3.0)
        self.assertIn("lora", manifest["adapters"]["pepper"])
        # the tap's channel means, pooled by the runtime itself, widen the features the heads take: the parity
        # check above is what proves the runtime pools them as the tool does
        self.assertEqual(manifest["backbone"]["taps"], [TAP])
        self.assertEqual(report["features"]["width"], 1280 + 112)
        self.assertIsNotNone(manifest["baseline_metrics"]["adapter_accuracy"])
        # the ustar and the directory both verify against the signing key, and the tar installs nowhere else
        for target in (out, out + ".tar"):
            v = subprocess.run([self.edge, "bundle", "verify", target, "--trusted", self.trusted],
                               capture_output=True, text=True)
            self.assertEqual(v.returncode, 0, v.stderr)
        # real held-out photos of the tiny set are mostly diagnosed correctly by the runtime itself
        golden = report["golden"]
        self.assertGreater(golden["accuracy"], 0.6, golden)
        self.assertFalse(any(n.startswith(".train-") for n in os.listdir(os.path.dirname(out))))

    def test_bad_input_names_the_file_or_folder_and_leaves_nothing(self):
        bad = os.path.join(self.tmp, "bad")
        cases = []
        empty = os.path.join(bad, "empty")
        os.makedirs(os.path.join(empty, "pepper", "healthy"))
        cases.append((empty, "pepper/healthy: empty class folder"))
        few = os.path.join(bad, "few")
        os.makedirs(os.path.join(few, "pepper", "healthy"))
        for name in sorted(os.listdir(os.path.join(self.data, "pepper", "healthy")))[:5]:
            shutil.copyfile(os.path.join(self.data, "pepper", "healthy", name),
                            os.path.join(few, "pepper", "healthy", name))
        cases.append((few, "class pepper/healthy: 5 photos, at least 10 are needed"))
        notjpeg = os.path.join(bad, "notjpeg")
        shutil.copytree(os.path.join(self.data, "pepper"), os.path.join(notjpeg, "pepper"))
        with open(os.path.join(notjpeg, "pepper", "healthy", "notes.jpg"), "w") as f:
            f.write("not a photo")
        cases.append((notjpeg, "notes.jpg: not a JPEG file"))
        for data, message in cases:
            out = os.path.join(self.tmp, "bad-out", os.path.basename(data))
            p = self.run_tool("--data", data, "--backbone", BACKBONE, "--out", out, "--key", self.key, *FAST)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(message, p.stderr)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
            self.assertFalse(os.path.exists(out))
        mismatched = os.path.join(REPO, "Tests", "Fixtures", "models", "resnet_style_int8.onnx")
        p = self.run_tool("--data", self.data, "--backbone", mismatched, "--out", os.path.join(self.tmp, "x"),
                          "--key", self.key, *FAST)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("no Conv node named", p.stderr)
        late = "head_relu6_DequantizeLinear_Output"  # after conv_head, which the adapters change
        p = self.run_tool("--data", self.data, "--backbone", BACKBONE, "--out", os.path.join(self.tmp, "y"),
                          "--key", self.key, *FAST, "--taps", late)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(f"tap '{late}' comes after the LoRA target 'conv_head'", p.stderr)

    def test_parity_check_fails_on_a_corrupted_lora_file(self):
        tool = load_tool()
        original = metrics.write_bundle

        def corrupting(root, *a, **k):
            used = original(root, *a, **k)
            from safetensors.numpy import load_file, save_file

            path = os.path.join(root, "adapters", "pepper_lora.safetensors")
            tensors = load_file(path)
            for name in tensors:
                if name.endswith(".lora_B"):
                    tensors[name] = tensors[name] * -40.0  # a LoRA that is not the one the tool evaluated
            save_file(tensors, path)
            metrics.write_manifest(root, json.load(open(os.path.join(root, "manifest.json"))))
            return used

        out = os.path.join(self.tmp, "corrupt", "bundle")
        tool.metrics.write_bundle = corrupting
        err = io.StringIO()
        try:
            with redirect_stderr(err), redirect_stdout(io.StringIO()), self.assertRaises(SystemExit) as exit:
                tool.main(self.common(out))
        finally:
            tool.metrics.write_bundle = original
        self.assertEqual(exit.exception.code, 2)
        self.assertIn("agrees with the training tool on only", err.getvalue())
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".tar"))


if __name__ == "__main__":
    unittest.main()
