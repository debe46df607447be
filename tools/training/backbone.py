"""The int8 QDQ backbone: ONNX Runtime for features, a JAX twin of its tail for training LoRA through it,
and the runtime's own LoRA merge (W' = dequant(W) + alpha/r·B·A, requantized per output channel).

ONNX Runtime runs with graph optimisations off, which is the plain QDQ semantics aads-edge reproduces bit
for bit with `--rounding onnxruntime`, the rounding the training passes to aads-edge (device.ROUNDING). The
device's default, `--rounding exact`, differs in the rare outputs whose exact value lies within float32 noise of
a half step (and in what later layers make of those); tools/bench/inference reports by how much in features and
tools/bench/rounding in a bundle's decisions.
"""

from __future__ import annotations

import copy
import tempfile

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
from onnx import helper, numpy_helper

FEATURES = "features"
INPUT = "input"


def session(model: onnx.ModelProto, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


class Backbone:
    """An int8 QDQ backbone with LoRA targets: full-model features and the tail from the first target.

    `taps` are tensors [1, C, H, W] before the first target whose channel means extend the features (the
    manifest's `backbone.taps`); `tap_channels` is their total width."""

    def __init__(self, path: str, targets: list[str], taps: list[str] | None = None):
        self.path = path
        self.taps = list(taps or [])
        self.model = onnx.load(path)
        self.inits = {t.name: numpy_helper.to_array(t) for t in self.model.graph.initializer}
        self.nodes = {n.name: n for n in self.model.graph.node}
        producers = {o: n for n in self.model.graph.node for o in n.output}
        for t in targets:
            node = self.nodes.get(t)
            if node is None or node.op_type != "Conv":
                raise ValueError(f"backbone {path}: no Conv node named '{t}'")
            if f"{t}.weight_quantized" not in self.inits:
                raise ValueError(f"backbone {path}: '{t}' is not an int8 QDQ convolution")
        order = [n.name for n in self.model.graph.node]
        self.targets = sorted(targets, key=order.index)
        self.start = self.nodes[self.targets[0]].input[0]
        if producers.get(self.start) is None or producers[self.start].op_type != "DequantizeLinear":
            raise ValueError(f"backbone {path}: the input of '{self.targets[0]}' is not a dequantized tensor")
        if FEATURES not in [o.name for o in self.model.graph.output]:
            raise ValueError(f"backbone {path}: no output named '{FEATURES}'")
        m = copy.deepcopy(self.model)
        m.graph.output.append(helper.make_tensor_value_info(self.start, onnx.TensorProto.FLOAT, None))
        self.full = session(m)
        with tempfile.TemporaryDirectory() as tmp:
            onnx.save(self.model, f"{tmp}/m.onnx")
            onnx.utils.extract_model(f"{tmp}/m.onnx", f"{tmp}/tail.onnx", [self.start], [FEATURES], check_model=False)
            self.tail = onnx.load(f"{tmp}/tail.onnx")
        inferred = onnx.shape_inference.infer_shapes(self.model)
        shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
        tail_tensors = {o for n in self.tail.graph.node for o in n.output}
        self.tap_channels = 0
        for t in self.taps:
            shape = shapes.get(t)
            if shape is None or len(shape) != 4:
                raise ValueError(f"backbone {path}: no [1, C, H, W] tensor named '{t}' to tap")
            if t in tail_tensors:
                raise ValueError(f"backbone {path}: tap '{t}' comes after the LoRA target '{self.targets[0]}'")
            self.tap_channels += shape[1]

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features [1280], tail input) of one [1,3,S,S] tensor."""
        f, s = self.full.run([FEATURES, self.start], {INPUT: x})
        return f[0], s[0]

    def conv(self, name: str) -> dict:
        """A QDQ conv's int8 weight, per-channel scales, int32 bias and its scale, and its input scale."""
        node = self.nodes[name]
        dq = next(n for n in self.model.graph.node if n.output[0] == node.input[0])
        return {"wq": self.inits[f"{name}.weight_quantized"], "ws": self.inits[f"{name}.weight_scale"],
                "bq": self.inits[f"{name}.bias_quantized"], "bs": self.inits[f"{name}.bias_quantized_scale"],
                "x_scale": np.float32(self.inits[dq.input[1]]), "group": _attr(node, "group", 1)}

    def merged(self, lora: dict[str, tuple[np.ndarray, np.ndarray]], rank: int, alpha: float) -> dict[str, np.ndarray]:
        """The initializers aads-edge computes when it loads these LoRA deltas (see Adaptation.swift)."""
        out = {}
        for name, (a, b) in lora.items():
            p = self.conv(name)
            wq, ws = p["wq"], p["ws"]
            shape = wq.shape
            delta = runtime_delta(a, b, rank, alpha).reshape(shape)
            real = wq.astype(np.float32) * ws.reshape(-1, *([1] * (wq.ndim - 1))) + delta
            maxabs = np.abs(real.reshape(shape[0], -1)).max(1)
            scale = np.where(maxabs > 0, maxabs / np.float32(127), np.float32(1)).astype(np.float32)
            q = np.clip(np.rint(real / scale.reshape(-1, *([1] * (wq.ndim - 1)))), -127, 127).astype(np.int8)
            bias = p["bq"].astype(np.float64) * p["bs"].astype(np.float64)
            unit = np.float64(p["x_scale"]) * scale.astype(np.float64)
            bq = np.clip(np.rint(bias / unit), -2**31, 2**31 - 1).astype(np.int32)
            out[f"{name}.weight_quantized"] = q
            out[f"{name}.weight_scale"] = scale
            out[f"{name}.bias_quantized"] = bq
            out[f"{name}.bias_quantized_scale"] = (np.float32(p["x_scale"]) * scale).astype(np.float32)
        return out

    def tail_session(self, replaced: dict[str, np.ndarray] | None = None) -> ort.InferenceSession:
        m = copy.deepcopy(self.tail)
        if replaced:
            inits = {t.name: t for t in m.graph.initializer}
            for name, value in replaced.items():
                old = numpy_helper.to_array(inits[name])
                if old.dtype != value.dtype or old.shape != value.shape:
                    raise ValueError(f"{name}: {value.dtype}{value.shape} does not match {old.dtype}{old.shape}")
                inits[name].CopyFrom(numpy_helper.from_array(value, name))
        return session(m)

    def tail_features(self, sess: ort.InferenceSession, starts: np.ndarray) -> np.ndarray:
        return np.stack([sess.run([FEATURES], {self.start: s[None]})[0][0] for s in starts])


def runtime_delta(a: np.ndarray, b: np.ndarray, rank: int, alpha: float) -> np.ndarray:
    """ΔW = (alpha/rank)·B·A summed over the rank in the runtime's order, in float32 (LoRA.swift)."""
    scale = np.float32(alpha) / np.float32(rank)
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    delta = np.zeros((b.shape[0], a.shape[1]), np.float32)
    for r in range(rank):
        delta += (scale * b[:, r])[:, None] * a[r][None, :]
    return delta


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


# ---------------------------------------------------------------------------------------------------------------
# The tail in JAX: the same QDQ graph, quantize/dequantize as fake quantization with straight-through gradients.
# ---------------------------------------------------------------------------------------------------------------


def jax_tail(backbone: Backbone, rank: int, alpha: float):
    """A function (lora, starts [N,C,H,W]) → features [N,1280] that mirrors the tail of the int8 graph.

    `lora` maps each target to (A [r, k], B [out, r]); the merged weight is fake-quantized per output channel
    as the runtime requantizes it.
    """
    import jax
    import jax.numpy as jnp

    graph = backbone.tail.graph
    consts = {t.name: jnp.asarray(numpy_helper.to_array(t)) for t in graph.initializer}
    targets = set(backbone.targets)
    scale = alpha / rank

    def ste(x, q):
        return x + jax.lax.stop_gradient(q - x)

    def quantize(x, s, zp):
        """The int8 code as a float, rounded half to even and saturated; straight-through inside the range."""
        return ste(jnp.clip(x / s + zp, -128, 127), jnp.clip(jnp.round(x / s) + zp, -128, 127))

    def fn(lora, starts, everything=False):
        env = dict(consts)
        env[backbone.start] = starts
        for node in graph.node:
            ins = [env[i] if i else None for i in node.input]
            op = node.op_type
            if op == "DequantizeLinear":
                x, s = ins[0], ins[1]
                zp = ins[2] if len(ins) > 2 else 0
                axis = _attr(node, "axis", 1)
                if s.ndim == 1 and s.shape[0] > 1:
                    shape = [1] * x.ndim
                    shape[axis] = -1
                    s, zp = s.reshape(shape), jnp.asarray(zp).reshape(shape)
                out = (x.astype(jnp.float32) - zp) * s
                name = node.input[0]
                for t in targets:
                    if name == f"{t}.weight_quantized":
                        a, b = lora[t]
                        w = out + (scale * (b @ a)).reshape(out.shape)
                        maxabs = jax.lax.stop_gradient(jnp.abs(w.reshape(w.shape[0], -1)).max(1))
                        ws = (maxabs / 127.0).reshape(-1, *([1] * (w.ndim - 1)))
                        out = ste(w, jnp.clip(jnp.round(w / ws), -127, 127) * ws)
            elif op == "QuantizeLinear":
                out = quantize(ins[0], ins[1], ins[2].astype(jnp.float32))
            elif op == "Conv":
                x, w = ins[0], ins[1]
                pads = _attr(node, "pads", [0, 0, 0, 0])
                strides = _attr(node, "strides", [1, 1])
                if w.shape[2:] == (1, 1) and _attr(node, "group", 1) == 1 and max(pads) == 0 and max(strides) == 1:
                    out = jnp.einsum("oc,nchw->nohw", w[:, :, 0, 0], x)  # pointwise: one matrix product
                else:
                    out = jax.lax.conv_general_dilated(
                        x, w, tuple(strides), [(pads[0], pads[2]), (pads[1], pads[3])],
                        dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=_attr(node, "group", 1))
                if len(ins) > 2 and ins[2] is not None:
                    out = out + ins[2].reshape(1, -1, 1, 1)
            elif op == "Add":
                out = ins[0] + ins[1]
            elif op == "Clip":
                out = jnp.clip(ins[0], ins[1], ins[2])
            elif op == "GlobalAveragePool":
                out = ins[0].mean(axis=(2, 3), keepdims=True)
            elif op == "Flatten":
                out = ins[0].reshape(ins[0].shape[0], -1)
            else:
                raise ValueError(f"the tail holds a {op} node, which training does not support")
            env[node.output[0]] = out
        return env if everything else env[FEATURES]

    return fn
