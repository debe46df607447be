"""Fine-tuning the whole EfficientNet-Lite0 backbone and a linear head on labelled photos (JAX, CPU).

Training images are random crops of the training split's photos (35–100 % of the area, aspect 3/4–4/3,
resized to `res`), flipped, turned by multiples of 90°, colour-jittered, and with probability `p_shift`
field-shifted first (augment.field_shift: the leaf cut out and put on soil or foliage, rotated, rescaled,
relit, blurred, re-encoded). Each epoch draws new augmentations; the seed fixes them and the batch order.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image, ImageEnhance

from . import augment, efficientnet

MEAN, STD = 127.0, 128.0
TURNS = [None, Image.ROTATE_90, Image.ROTATE_180, Image.ROTATE_270]


def train_image(path: str, rng: np.random.Generator, res: int, p_shift: float) -> np.ndarray:
    """One augmented training image, HWC float32 normalised like the runtime's input."""
    from modelkit import load_rgb

    img = load_rgb(path)
    if rng.random() < p_shift:
        img = Image.open(io.BytesIO(augment.field_shift(img, rng))).convert("RGB")
    w, h = img.size
    box = (0, 0, w, h)
    for _ in range(10):
        area = rng.uniform(0.35, 1.0) * w * h
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (x0, y0, x0 + cw, y0 + ch)
            break
    img = img.resize((res, res), Image.BILINEAR, box=box)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_TOP_BOTTOM)
    turn = TURNS[int(rng.integers(4))]
    if turn is not None:
        img = img.transpose(turn)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.75, 1.25))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.75, 1.25))
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.7, 1.3))
    return (np.asarray(img, np.float32) - MEAN) / STD


def train_batch(job: tuple[list[str], list[int], int, int, float]) -> tuple[np.ndarray, np.ndarray]:
    """(paths, labels, seed, res, p_shift) → an NHWC batch and its labels (run in a worker process)."""
    paths, labels, seed, res, p_shift = job
    rng = np.random.default_rng(seed)
    return np.stack([train_image(p, rng, res, p_shift) for p in paths]), np.asarray(labels, np.int32)


class Trainer:
    """AdamW on the backbone and the head (each its own peak rate), warm-up then cosine decay to 1 %,
    label smoothing 0.1."""

    def __init__(self, params: dict, blocks: list[efficientnet.Block], n_classes: int, steps: int, warmup: int,
                 lr: float, head_lr: float, wd: float):
        import jax
        import jax.numpy as jnp
        import optax

        self.blocks = blocks
        width = params["conv_head"]["w"].shape[0]
        self.params = {"bb": efficientnet.to_hwio(params), "head": {"w": jnp.zeros((width, n_classes)),
                                                                      "b": jnp.zeros(n_classes)}}
        def schedule(peak):
            return optax.warmup_cosine_decay_schedule(0.0, peak, max(warmup, 1), steps, peak * 0.01)

        def labels(p):
            return {part: jax.tree_util.tree_map(lambda _, part=part: part, p[part]) for part in p}

        self.opt = optax.multi_transform({"bb": optax.adamw(schedule(lr), weight_decay=wd),
                                          "head": optax.adamw(schedule(head_lr), weight_decay=wd)}, labels)
        self.state = self.opt.init(self.params)
        blocks = self.blocks

        def logits(p, x):
            f = efficientnet.features(p["bb"], blocks, x)
            return f @ p["head"]["w"] + p["head"]["b"]

        def loss(p, x, y):
            z = logits(p, x)
            target = optax.smooth_labels(jax.nn.one_hot(y, n_classes), 0.1)
            return optax.softmax_cross_entropy(z, target).mean(), z

        def step(p, state, x, y):
            (value, z), grads = jax.value_and_grad(loss, has_aux=True)(p, x, y)
            updates, state = self.opt.update(grads, state, p)
            return optax.apply_updates(p, updates), state, value, jnp.mean(jnp.argmax(z, -1) == y)

        self._step = jax.jit(step)
        self._logits = jax.jit(logits)

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        self.params, self.state, loss, acc = self._step(self.params, self.state, x, y)
        return float(loss), float(acc)

    def predict(self, x: np.ndarray, batch: int = 64) -> np.ndarray:
        return np.concatenate([np.asarray(self._logits(self.params, x[i : i + batch])).argmax(1)
                               for i in range(0, len(x), batch)])

    def backbone(self) -> dict[str, dict[str, np.ndarray]]:
        return efficientnet.to_oihw(self.params["bb"])

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.params["head"]["w"]), np.asarray(self.params["head"]["b"])


def epoch_jobs(paths: list[str], labels: np.ndarray, epoch: int, seed: int, batch: int, res: int,
               p_shift: float) -> Iterator[tuple]:
    """The epoch's batches as train_batch jobs: a seeded permutation, the last partial batch dropped."""
    rng = np.random.default_rng(seed * 1000 + epoch)
    order = rng.permutation(len(paths))
    for i in range(len(paths) // batch):
        idx = order[i * batch : (i + 1) * batch]
        yield [paths[j] for j in idx], labels[idx].tolist(), int(rng.integers(2**62)), res, p_shift


def run_epoch(trainer: Trainer, batches: Iterator, steps: int, progress: Callable[[int, float, float], None]) -> dict:
    t0, total_loss, total_acc = time.time(), 0.0, 0.0
    for k, (x, y) in enumerate(batches):
        loss, acc = trainer.step(x, y)
        total_loss, total_acc = total_loss + loss, total_acc + acc
        progress(k + 1, total_loss / (k + 1), total_acc / (k + 1))
    return {"train_loss": total_loss / steps, "train_accuracy": total_acc / steps, "seconds": time.time() - t0}
