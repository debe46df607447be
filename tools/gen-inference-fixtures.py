#!/usr/bin/env python3
"""Builds the small test models of the inference engine and ONNX Runtime's reference outputs.

Writes into Tests/Fixtures/inference/:
  mobilenet_fp32.onnx / mobilenet_int8.onnx   MobileNet-style: HardSwish, depthwise convs, squeeze-excite
                                               (HardSigmoid, Mul), residual Add, MaxPool/AveragePool, Concat
  resnet_fp32.onnx / resnet_int8.onnx          ResNet-style: 7x7 stem, MaxPool, 3x3 basic blocks, 1x1 stride-2
                                               shortcut, Relu, Reshape + MatMul head
  mixed_int8.onnx                              the MobileNet-style model with its final Gemm left in float
  mobilenet_uint8.onnx                         the MobileNet-style model with uint8 activations
  <model>_in<i>.npy, <model>_<output>_<i>.npy  inputs (real photos, resized) and ONNX Runtime outputs
  effnet_layers/                               per-layer references for the int8 EfficientNet-Lite0 of
                                               Tests/Fixtures/models: the int8 inputs and output of selected
                                               layers as ONNX Runtime (plain QDQ semantics) computes them

Models use random weights from a fixed seed; int8 models are quantized with
onnxruntime.quantization.quantize_static(QDQ, per_channel=True, QInt8 activations and weights), calibrated
on real photos from ../shared/data. References come from ONNX Runtime with all graph optimisations.
"""
import glob
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from PIL import Image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "inference")
DATA = os.path.abspath(os.path.join(ROOT, "..", "..", "shared", "data"))
if not os.path.isdir(DATA):
    DATA = "/work/shared/data"

rng = np.random.default_rng(1234)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def photos():
    files = sorted(glob.glob(os.path.join(DATA, "leaf", "**", "*.jpg"), recursive=True))
    files += sorted(glob.glob(os.path.join(DATA, "leaf", "**", "*.jpeg"), recursive=True))
    if not files:
        files = sorted(glob.glob(os.path.join(DATA, "**", "*.jpg"), recursive=True))
    return files


def load_image(path, size):
    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    x = (np.asarray(img, np.float32) / 255.0 - MEAN) / STD
    return x.transpose(2, 0, 1)[None].astype(np.float32)


class Builder:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def init(self, arr, p="w"):
        nm = self.name(p)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def node(self, op, inputs, out=None, **attrs):
        out = out or self.name(op.lower() + "_out")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op + "_"), **attrs))
        return out

    def conv(self, x, cin, cout, k, stride=1, pad=None, group=1, out=None, auto_pad=None):
        fan = cin // group * k * k
        w = rng.normal(0, np.sqrt(2.0 / fan), (cout, cin // group, k, k)).astype(np.float32)
        b = rng.normal(0, 0.1, (cout,)).astype(np.float32)
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], group=group)
        if auto_pad:
            attrs["auto_pad"] = auto_pad
        else:
            p = k // 2 if pad is None else pad
            attrs["pads"] = [p, p, p, p]
        return self.node("Conv", [x, self.init(w), self.init(b, "b")], out, **attrs)

    def model(self, inputs, outputs, opset=13):
        g = helper.make_graph(self.nodes, "g", inputs, outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="aads-fixtures")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def mobilenet(size):
    b = Builder()
    x = b.conv("input", 3, 16, 3, stride=2)
    x = b.node("HardSwish", [x])
    # depthwise-separable block with residual
    y = b.conv(x, 16, 16, 3, group=16)
    y = b.node("Relu", [y])
    y = b.conv(y, 16, 16, 1)
    x = b.node("Add", [x, y])
    # inverted residual with squeeze-excite, 5x5 depthwise stride 2
    y = b.node("HardSwish", [b.conv(x, 16, 48, 1)])
    y = b.node("HardSwish", [b.conv(y, 48, 48, 5, stride=2, group=48)])
    s = b.node("GlobalAveragePool", [y])
    s = b.node("Relu", [b.conv(s, 48, 12, 1)])
    s = b.node("HardSigmoid", [b.conv(s, 12, 48, 1)], alpha=1.0 / 6, beta=0.5)
    y = b.node("Mul", [y, s])
    x = b.conv(y, 48, 24, 1)
    # 3x3 conv with ReLU6 (Clip with min/max inputs), SAME_UPPER padding, pools and a concat
    y = b.conv(x, 24, 24, 3, auto_pad="SAME_UPPER")
    y = b.node("Clip", [y, b.init(np.array(0, np.float32), "cmin"), b.init(np.array(6, np.float32), "cmax")])
    p1 = b.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    p2 = b.node("AveragePool", [y], kernel_shape=[2, 2], strides=[2, 2])
    y = b.node("Concat", [p1, p2], axis=1)
    y = b.node("Sigmoid", [b.conv(y, 48, 48, 1)])
    y = b.conv(y, 48, 64, 1)
    y = b.node("Clip", [y, b.init(np.array(0, np.float32), "cmin"), b.init(np.array(6, np.float32), "cmax")])
    y = b.node("GlobalAveragePool", [y])
    f = b.node("Flatten", [y], out="features", axis=1)
    w = rng.normal(0, 0.2, (10, 64)).astype(np.float32)
    logits = b.node("Gemm", [f, b.init(w), b.init(rng.normal(0, 0.1, (10,)).astype(np.float32), "b")], out="logits", transB=1)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 64])]
    return b.model([inp], outs, opset=14)


def resnet(size):
    b = Builder()
    x = b.node("Relu", [b.conv("input", 3, 16, 7, stride=2, pad=3)])
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = b.node("Relu", [b.conv(x, 16, 16, 3)])
    y = b.conv(y, 16, 16, 3)
    x = b.node("Relu", [b.node("Add", [x, y])])
    y = b.node("Relu", [b.conv(x, 16, 32, 3, stride=2)])
    y = b.conv(y, 32, 32, 3)
    s = b.conv(x, 16, 32, 1, stride=2, pad=0)
    x = b.node("Relu", [b.node("Add", [s, y])])
    x = b.node("GlobalAveragePool", [x])
    f = b.node("Reshape", [x, b.init(np.array([1, 32], np.int64), "shape")], out="features")
    w = rng.normal(0, 0.2, (32, 10)).astype(np.float32)
    m = b.node("MatMul", [f, b.init(w)])
    logits = b.node("Add", [m, b.init(rng.normal(0, 0.1, (10,)).astype(np.float32), "b")], out="logits")
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 32])]
    return b.model([inp], outs)


class Reader(CalibrationDataReader):
    def __init__(self, inputs):
        self.it = iter([{"input": x} for x in inputs])

    def get_next(self):
        return next(self.it, None)


def run_ort(path, feeds, outputs=None):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = outputs or [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def save(name, arr):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(arr))


def quantize(fp32_path, int8_path, calib, exclude=(), activations=QuantType.QInt8):
    quantize_static(fp32_path, int8_path, Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=activations, weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude))


def whole_models():
    size = 32
    files = photos()
    calib = [load_image(f, size) for f in files[:24]]
    tests = [load_image(f, size) for f in files[24:27]] or calib[:3]
    for name, build in (("mobilenet", mobilenet), ("resnet", resnet)):
        fp32 = os.path.join(OUT, f"{name}_fp32.onnx")
        int8 = os.path.join(OUT, f"{name}_int8.onnx")
        onnx.save(build(size), fp32)
        quantize(fp32, int8, calib)
        for i, x in enumerate(tests):
            save(f"{name}_in{i}.npy", x)
            for kind, path in (("fp32", fp32), ("int8", int8)):
                for out, v in run_ort(path, {"input": x}).items():
                    save(f"{name}_{kind}_{out}_{i}.npy", v)
    # Mixed graph: the classifier left in float.
    m = onnx.load(os.path.join(OUT, "mobilenet_fp32.onnx"))
    gemm = [n.name for n in m.graph.node if n.op_type == "Gemm"]
    mixed = os.path.join(OUT, "mixed_int8.onnx")
    quantize(os.path.join(OUT, "mobilenet_fp32.onnx"), mixed, calib, exclude=gemm)
    for i, x in enumerate(tests):
        for out, v in run_ort(mixed, {"input": x}).items():
            save(f"mixed_int8_{out}_{i}.npy", v)
    # uint8 activations (the older ONNX Runtime default), int8 weights.
    u8 = os.path.join(OUT, "mobilenet_uint8.onnx")
    quantize(os.path.join(OUT, "mobilenet_fp32.onnx"), u8, calib, activations=QuantType.QUInt8)
    for i, x in enumerate(tests):
        for out, v in run_ort(u8, {"input": x}).items():
            save(f"mobilenet_uint8_{out}_{i}.npy", v)


def op_cases():
    """Small single-operator models (float, and QDQ-quantized where the quantizer handles them)."""
    cases = []

    def add(name, nodes, inputs, outputs, inits=(), opset=13, quantize_too=True):
        cases.append((name, nodes, inputs, outputs, list(inits), opset, quantize_too))

    def vi(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    def init(name, arr):
        return numpy_helper.from_array(np.asarray(arr), name)

    w = lambda *s: rng.normal(0, 0.3, s).astype(np.float32)
    # Conv padding modes, strides, dilations, groups
    for tag, attrs, hw in [
        ("conv_valid_s2", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID"), 9),
        ("conv_same_lower", dict(kernel_shape=[4, 4], strides=[2, 2], auto_pad="SAME_LOWER"), 9),
        ("conv_same_upper_k2", dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER"), 7),
        ("conv_dilated", dict(kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 1, 2, 1]), 9),
        ("conv_group2_k5", dict(kernel_shape=[5, 5], group=2, pads=[2, 2, 2, 2], strides=[1, 2]), 8),
        ("conv_k7_s2", dict(kernel_shape=[7, 7], strides=[2, 2], pads=[3, 3, 3, 3]), 12),
        ("conv_1x1_nobias", dict(kernel_shape=[1, 1]), 5),
        ("dwconv_mult2", dict(kernel_shape=[3, 3], group=4, pads=[1, 1, 1, 1]), 6),
    ]:
        cin = 4
        g = attrs.get("group", 1)
        cout = 8 if tag != "dwconv_mult2" else 8
        ins = ["x", "w"] + ([] if tag == "conv_1x1_nobias" else ["b"])
        inits = [init("w", w(cout, cin // g, *attrs["kernel_shape"]))]
        if tag != "conv_1x1_nobias":
            inits.append(init("b", w(cout)))
        add(tag, [helper.make_node("Conv", ins, ["y"], name="op", **attrs)], [vi("x", [1, cin, hw, hw])], [vi("y", None)], inits)
    # Pools
    add("maxpool_ceil", [helper.make_node("MaxPool", ["x"], ["y"], name="op", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)],
        [vi("x", [1, 3, 8, 8])], [vi("y", None)])
    add("avgpool_pad_include", [helper.make_node("AveragePool", ["x"], ["y"], name="op", kernel_shape=[3, 3], strides=[2, 2],
                                                 pads=[1, 1, 1, 1], count_include_pad=1)], [vi("x", [1, 3, 7, 7])], [vi("y", None)])
    add("avgpool_pad_exclude", [helper.make_node("AveragePool", ["x"], ["y"], name="op", kernel_shape=[3, 2], pads=[1, 0, 1, 1])],
        [vi("x", [1, 3, 6, 5])], [vi("y", None)])
    add("globalavgpool", [helper.make_node("GlobalAveragePool", ["x"], ["y"], name="op")], [vi("x", [2, 5, 3, 4])], [vi("y", None)])
    # Elementwise with broadcasting
    add("add_broadcast", [helper.make_node("Add", ["x", "c"], ["y"], name="op")], [vi("x", [1, 3, 4, 5])], [vi("y", None)],
        [init("c", w(3, 1, 1))])
    add("mul_two_inputs", [helper.make_node("Mul", ["x", "z"], ["y"], name="op")], [vi("x", [1, 4, 3, 3]), vi("z", [1, 4, 1, 3])],
        [vi("y", None)])
    add("leakyrelu", [helper.make_node("LeakyRelu", ["x"], ["y"], name="op", alpha=0.1)], [vi("x", [2, 7])], [vi("y", None)])
    add("hardsigmoid", [helper.make_node("HardSigmoid", ["x"], ["y"], name="op", alpha=0.3, beta=0.4)], [vi("x", [3, 5])], [vi("y", None)])
    add("clip_min_only", [helper.make_node("Clip", ["x", "lo"], ["y"], name="op")], [vi("x", [3, 5])], [vi("y", None)],
        [init("lo", np.array(-0.25, np.float32))])
    add("softmax_axis1", [helper.make_node("Softmax", ["x"], ["y"], name="op", axis=1)], [vi("x", [2, 3, 4])], [vi("y", None)],
        quantize_too=False)
    # Shapes
    add("reshape_neg1_zero", [helper.make_node("Reshape", ["x", "s"], ["y"], name="op")], [vi("x", [2, 3, 4])], [vi("y", None)],
        [init("s", np.array([0, -1], np.int64))])
    add("flatten_axis2", [helper.make_node("Flatten", ["x"], ["y"], name="op", axis=2)], [vi("x", [1, 2, 3, 4])], [vi("y", None)])
    add("squeeze_unsqueeze", [helper.make_node("Squeeze", ["x", "a"], ["t"], name="op1"),
                              helper.make_node("Unsqueeze", ["t", "b"], ["y"], name="op2")],
        [vi("x", [1, 3, 1, 4])], [vi("y", None)], [init("a", np.array([0, 2], np.int64)), init("b", np.array([1, -1], np.int64))])
    add("concat_axis2", [helper.make_node("Concat", ["x", "z"], ["y"], name="op", axis=2)], [vi("x", [1, 2, 3, 4]), vi("z", [1, 2, 5, 4])],
        [vi("y", None)])
    add("gemm_transA_alpha_beta", [helper.make_node("Gemm", ["x", "b", "c"], ["y"], name="op", transA=1, alpha=0.5, beta=2.0)],
        [vi("x", [6, 3])], [vi("y", None)], [init("b", w(6, 5)), init("c", w(1, 5))])
    add("matmul_batched", [helper.make_node("MatMul", ["x", "b"], ["y"], name="op")], [vi("x", [2, 3, 6])], [vi("y", None)],
        [init("b", w(6, 4))])
    return cases


def ops():
    import json
    out = os.path.join(OUT, "ops")
    os.makedirs(out, exist_ok=True)
    manifest = []
    for name, nodes, inputs, outputs, inits, opset, quantize_too in op_cases():
        g = helper.make_graph(nodes, name, inputs, [helper.make_empty_tensor_value_info("y")], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="aads-fixtures")
        m.ir_version = 8
        inferred = onnx.shape_inference.infer_shapes(m)
        y = [v for v in list(inferred.graph.value_info) + list(inferred.graph.output) if v.name == "y" and v.type.HasField("tensor_type")]
        del m.graph.output[:]
        m.graph.output.extend(y[:1])
        onnx.checker.check_model(m)
        feeds = {}
        for i, v in enumerate(inputs):
            shape = [d.dim_value for d in v.type.tensor_type.shape.dim]
            feeds[v.name] = rng.normal(0, 1, shape).astype(np.float32)
        kinds = [("fp32", m)]
        if quantize_too:
            fp = os.path.join(out, f"{name}_fp32.onnx")
            onnx.save(m, fp)
            calib = [{k: rng.normal(0, 1, v.shape).astype(np.float32) for k, v in feeds.items()} for _ in range(8)] + [feeds]

            class R(CalibrationDataReader):
                def __init__(self):
                    self.it = iter(calib)

                def get_next(self):
                    return next(self.it, None)

            qp = os.path.join(out, f"{name}_int8.onnx")
            try:
                quantize_static(fp, qp, R(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
                kinds.append(("int8", onnx.load(qp)))
            except Exception as e:  # the quantizer does not handle every configuration
                print(f"{name}: not quantized ({type(e).__name__})")
                if os.path.exists(qp):
                    os.remove(qp)
        for kind, model in kinds:
            path = os.path.join(out, f"{name}_{kind}.onnx")
            onnx.save(model, path)
            res = run_ort(path, feeds, ["y"])
            entry = {"name": f"{name}_{kind}", "model": f"{name}_{kind}.onnx", "kind": kind, "inputs": {}, "output": f"{name}_{kind}_y.npy"}
            np.save(os.path.join(out, entry["output"]), res["y"])
            for k, v in feeds.items():
                f = f"{name}_in_{k}.npy"
                np.save(os.path.join(out, f), v)
                entry["inputs"][k] = f
            if kind == "int8":
                qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in ("y_QuantizeLinear_Input",)]
                inits_ = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
                dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "y"]
                if dq:
                    entry["step"] = float(inits_[dq[0].input[1]])
            manifest.append(entry)
    with open(os.path.join(out, "ops.json"), "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)


EFFNET_LAYERS = ["stem_conv", "blocks.3.dw_conv", "blocks.3.project_conv", "blocks.4.add", "blocks.12.expand_conv",
                 "blocks.12.dw_conv", "blocks.12.project_conv", "blocks.12.add", "conv_head", "pool", "classifier"]


def effnet_layers():
    """One photo through the int8 EfficientNet-Lite0 with every int8 tensor exposed (ORT_DISABLE_ALL: plain
    DequantizeLinear -> float op -> QuantizeLinear), keeping the inputs and output of EFFNET_LAYERS."""
    import json
    models = os.path.join(ROOT, "Tests", "Fixtures", "models")
    m = onnx.load(os.path.join(models, "efficientnet_lite0_int8.onnx"))
    x = np.load(os.path.join(models, "inputs", "224", "skimage-coffee.npy"))
    producer = {o: n for n in m.graph.node for o in n.output}
    consumers = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    nodes = {n.name: n for n in m.graph.node}
    cases, wanted = [], set()
    for name in EFFNET_LAYERS:
        node = nodes[name]
        data = [i for i in node.input if i in producer and producer[i].op_type == "DequantizeLinear"
                and producer[i].input[0] in producer]
        inputs = {i: producer[i].input[0] for i in data}
        q = [c for c in consumers[node.output[0]] if c.op_type == "QuantizeLinear"][0]
        cases.append({"node": name, "inputs": inputs, "output": q.output[0]})
        wanted.update(inputs.values())
        wanted.add(q.output[0])
    existing = {o.name for o in m.graph.output}
    for w in sorted(wanted):
        if w not in existing:
            m.graph.output.append(helper.make_tensor_value_info(w, TensorProto.INT8, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = sorted(wanted)
    values = dict(zip(names, sess.run(names, {"input": x})))
    out = os.path.join(OUT, "effnet_layers")
    os.makedirs(out, exist_ok=True)
    files = {}
    for k, v in values.items():
        f = k.replace("/", "_") + ".npy"
        np.save(os.path.join(out, f), v.astype(np.int8))
        files[k] = f
    manifest = {"model": "models/efficientnet_lite0_int8.onnx", "photo": "skimage-coffee",
                "reference": "ONNX Runtime CPU, ORT_DISABLE_ALL, 1 thread", "files": files, "layers": cases}
    with open(os.path.join(out, "layers.json"), "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    whole_models()
    effnet_layers()
    ops()
    print("wrote", OUT)
