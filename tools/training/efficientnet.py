"""EfficientNet-Lite0 in JAX, read from and written back into the float ONNX model (batch norm folded), for
fine-tuning the whole backbone: `load` gives the convolutions' weights and the block structure, `features` is
the forward pass (NHWC) up to the pooled 1280-d features, and `export` writes trained weights into a copy of
the float model (same graph, same node names), ready for modelkit.quantize_int8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper


@dataclass(frozen=True)
class Block:
    """One MBConv block: `name` is its node prefix (blocks.<i>)."""

    name: str
    expands: bool
    stride: int
    residual: bool


def load(path: str) -> tuple[dict[str, dict[str, np.ndarray]], list[Block]]:
    """Conv weights (OIHW) and biases by node name, and the blocks, of a float EfficientNet-Lite ONNX model."""
    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    names = [n.name for n in m.graph.node]
    convs = {n.name: n for n in m.graph.node if n.op_type == "Conv"}
    for required in ("stem_conv", "conv_head"):
        if required not in convs:
            raise ValueError(f"{path}: no Conv node named '{required}': not an EfficientNet-Lite float model")
    params = {}
    for name, node in convs.items():
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            raise ValueError(f"{path}: Conv '{name}' has no float weight and bias: not a float model")
        params[name] = {"w": inits[node.input[1]].astype(np.float32), "b": inits[node.input[2]].astype(np.float32)}
    blocks = []
    i = 0
    while f"blocks.{i}.dw_conv" in convs:
        n = f"blocks.{i}"
        stride = [a for a in convs[f"{n}.dw_conv"].attribute if a.name == "strides"][0].ints[0]
        blocks.append(Block(n, f"{n}.expand_conv" in convs, int(stride), f"{n}.add" in names))
        i += 1
    if not blocks:
        raise ValueError(f"{path}: no blocks.<i>.dw_conv nodes: not an EfficientNet-Lite float model")
    return params, blocks


def to_hwio(params):
    """OIHW → HWIO as JAX arrays (depthwise [C,1,k,k] → [k,k,1,C])."""
    import jax.numpy as jnp

    return {k: {"w": jnp.asarray(np.transpose(v["w"], (2, 3, 1, 0))), "b": jnp.asarray(v["b"])} for k, v in params.items()}


def to_oihw(params) -> dict[str, dict[str, np.ndarray]]:
    return {
        k: {"w": np.ascontiguousarray(np.transpose(np.asarray(v["w"]), (3, 2, 0, 1))), "b": np.asarray(v["b"])}
        for k, v in params.items()
    }


def _conv(x, p, stride=1):
    from jax import lax

    y = lax.conv_general_dilated(x, p["w"], (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["b"]


def _depthwise(x, p, stride):
    """TensorFlow-SAME depthwise convolution as k·k shifted multiply-adds: on XLA's CPU backend several times
    faster forward and backward than a grouped convolution."""
    import jax.numpy as jnp

    w = p["w"]
    k, h, wd = w.shape[0], x.shape[1], x.shape[2]
    oh, ow = -(-h // stride), -(-wd // stride)
    ph, pw = max((oh - 1) * stride + k - h, 0), max((ow - 1) * stride + k - wd, 0)
    xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = p["b"]
    for i in range(k):
        for j in range(k):
            out = out + xp[:, i : i + (oh - 1) * stride + 1 : stride, j : j + (ow - 1) * stride + 1 : stride, :] * w[i, j, 0]
    return out


def features(params, blocks: list[Block], x):
    """x: NHWC float32, (pixel − 127) / 128. Returns the pooled features [N, 1280]."""
    import jax.numpy as jnp

    def relu6(v):
        return jnp.clip(v, 0.0, 6.0)

    x = relu6(_conv(x, params["stem_conv"], 2))
    for b in blocks:
        block_in = x
        if b.expands:
            x = relu6(_conv(x, params[f"{b.name}.expand_conv"]))
        x = relu6(_depthwise(x, params[f"{b.name}.dw_conv"], b.stride))
        x = _conv(x, params[f"{b.name}.project_conv"])
        if b.residual:
            x = x + block_in
    x = relu6(_conv(x, params["conv_head"]))
    return jnp.mean(x, axis=(1, 2))


def export(float_path: str, params: dict[str, dict[str, np.ndarray]], out_path: str, doc: str) -> None:
    """A copy of the float model with the given (OIHW) convolution weights in place of its own."""
    q = onnx.load(float_path)
    by_name = {t.name: i for i, t in enumerate(q.graph.initializer)}
    for node in q.graph.node:
        if node.op_type != "Conv":
            continue
        for slot, key in ((1, "w"), (2, "b")):
            name = node.input[slot]
            old = q.graph.initializer[by_name[name]]
            new = np.ascontiguousarray(params[node.name][key].astype(np.float32))
            if tuple(old.dims) != new.shape:
                raise ValueError(f"{node.name}: trained {key} has shape {new.shape}, the model {tuple(old.dims)}")
            old.CopyFrom(numpy_helper.from_array(new, name))
    q.doc_string = doc
    onnx.checker.check_model(q, full_check=True)
    onnx.save(q, out_path)
