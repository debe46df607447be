"""Shared helpers for the model tools: ONNX graph building, image preprocessing, quantization."""

from __future__ import annotations

import glob
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageOps

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SHARED_DATA = os.path.abspath(os.path.join(REPO, "..", "..", "shared", "data"))
if not os.path.isdir(SHARED_DATA):
    SHARED_DATA = "/work/shared/data"

# EfficientNet-Lite preprocessing (TensorFlow reference implementation): (x - 127) / 128 on 0..255 RGB.
EFFNET_MEAN = [127.0, 127.0, 127.0]
EFFNET_STD = [128.0, 128.0, 128.0]


def load_rgb(path: str) -> Image.Image:
    img = Image.open(path)
    img = ImageOps.exif_transpose(img)
    return img.convert("RGB")


def preprocess(img: Image.Image, size: int = 224, mean=EFFNET_MEAN, std=EFFNET_STD) -> np.ndarray:
    """Resize the shorter side to `size` (bilinear, antialiased), centre-crop size x size, normalise.

    Returns float32 NCHW [1, 3, size, size].
    """
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    a = np.asarray(img, dtype=np.float32)
    a = (a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None])


def real_photos() -> list[str]:
    """Every decodable real photo of the shared data set (leaf/, ood/, variants/), sorted."""
    out = []
    for sub in ("leaf", "ood", "variants"):
        out += sorted(glob.glob(os.path.join(SHARED_DATA, sub, "*.jpg")))
    return out


class GraphBuilder:
    """Tiny helper around onnx.helper that names every node and tensor readably."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._init_names: set[str] = set()

    def init(self, name: str, arr: np.ndarray) -> str:
        if name not in self._init_names:
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            self._init_names.add(name)
        return name

    def node(self, op: str, name: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or name
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, name, x, w, b, stride=1, pads=(0, 0, 0, 0), group=1, out=None):
        k = w.shape[2:]
        wn = self.init(f"{name}.weight", w.astype(np.float32))
        bn = self.init(f"{name}.bias", b.astype(np.float32))
        return self.node(
            "Conv", name, [x, wn, bn], out,
            kernel_shape=list(k), strides=[stride, stride], pads=list(pads), group=group,
        )

    def relu6(self, name, x, out=None):
        lo = self.init("const.zero", np.array(0.0, np.float32))
        hi = self.init("const.six", np.array(6.0, np.float32))
        return self.node("Clip", name, [x, lo, hi], out)

    def model(self, name, inputs, outputs, opset=13) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="aads-edge-tools")
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m


def tensor_info(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)
