"""Fitting with JAX: the crop router, each crop's adapter (LoRA through the backbone's tail + projection +
disease head, trained end to end), and the Mahalanobis OOD statistics of the seed's dynamic threshold rule."""

from __future__ import annotations

import numpy as np


def _adam(params, lr):
    import optax

    opt = optax.adamw(lr, weight_decay=1e-4)
    return opt, opt.init(params)


def _batches(rng: np.random.Generator, n: int, batch: int):
    order = rng.permutation(n)
    for i in range(0, n - batch + 1 if n >= batch else 1, batch):
        yield order[i:i + batch]


def fit_router(F: np.ndarray, y: np.ndarray, n_crops: int, negatives: np.ndarray | None, seed: int,
               epochs: int = 60, l2: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression over crops on backbone features; negatives (no crop leaf) get a uniform target,
    which keeps the router unsure of what is no crop at all. Returns W [crops, D], b [crops] on raw features."""
    import jax
    import jax.numpy as jnp
    import optax

    mu, sd = F.mean(0), F.std(0) + 1e-3
    X = (F - mu) / sd
    T = np.eye(n_crops, dtype=np.float32)[y]
    if negatives is not None and len(negatives):
        X = np.concatenate([X, (negatives - mu) / sd])
        T = np.concatenate([T, np.full((len(negatives), n_crops), 1.0 / n_crops, np.float32)])
    X, T = jnp.asarray(X, jnp.float32), jnp.asarray(T)
    params = {"w": jnp.zeros((n_crops, X.shape[1])), "b": jnp.zeros(n_crops)}
    opt, state = _adam(params, 3e-3)

    def loss(p, xb, tb):
        logits = xb @ p["w"].T + p["b"]
        return -jnp.mean(jnp.sum(tb * jax.nn.log_softmax(logits), 1)) + l2 * jnp.sum(p["w"] ** 2)

    @jax.jit
    def step(p, s, xb, tb):
        g = jax.grad(loss)(p, xb, tb)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for idx in _batches(rng, len(X), 256):
            params, state = step(params, state, X[idx], T[idx])
    w = np.asarray(params["w"]) / sd
    b = np.asarray(params["b"]) - w @ mu
    return w.astype(np.float32), b.astype(np.float32)


def fit_adapter(tail, targets: dict[str, tuple[int, int]], S: np.ndarray, y: np.ndarray, n_classes: int,
                F0: np.ndarray, rank: int, proj_dim: int, seed: int, epochs: int, use_lora: bool,
                progress=None, dropout: float = 0.0, lr: float = 2e-3, lora_lr: float | None = None,
                tap_channels: int = 0) -> dict:
    """LoRA deltas on `targets` ({name: (out, k)}), a projection [P, D] and a disease head [C, P], trained end
    to end with cross-entropy through `tail` (the JAX twin of the backbone's tail) on start tensors S.

    F0 are the unadapted features of S (for the initial standardisation). Without `use_lora` only the
    projection and head are trained (the same tail, frozen). `dropout` drops that share of the standardised
    features before the projection during training only (inverted scaling, so inference is unchanged; masks
    drawn from `seed`). The learning rates start at `lr` (`lora_lr` for the LoRA factors, default `lr`) and
    decay on a cosine. The last `tap_channels` columns of F0 are the backbone's taps, which come before the
    adapted layers: they are appended to the tail's output unchanged. Returns numpy arrays."""
    import jax
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(seed)
    mu, sd = F0.mean(0), F0.std(0) + 1e-3
    d = F0.shape[1]
    params = {
        "lora": {t: (jnp.asarray(rng.standard_normal((rank, k)).astype(np.float32) / np.sqrt(k)),
                     jnp.zeros((out, rank), jnp.float32)) for t, (out, k) in targets.items()},
        "proj_w": jnp.asarray(rng.standard_normal((proj_dim, d)).astype(np.float32) / np.sqrt(d)),
        "proj_b": jnp.zeros(proj_dim),
        "cls_w": jnp.zeros((n_classes, proj_dim)),
        "cls_b": jnp.zeros(n_classes),
    }
    mu_j, sd_j = jnp.asarray(mu), jnp.asarray(sd)
    steps_per_epoch = max(1, len(S) // 64)
    steps = epochs * steps_per_epoch
    opt = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=1e-4)
    if lora_lr is not None and lora_lr != lr:
        groups = {k: jax.tree_util.tree_map(lambda _: "lora", v) if k == "lora" else "head" for k, v in params.items()}
        opt = optax.multi_transform(
            {"head": opt, "lora": optax.adamw(optax.cosine_decay_schedule(lora_lr, steps), weight_decay=1e-4)}, groups)
    state = opt.init(params)
    key = jax.random.PRNGKey(seed)

    if use_lora:
        taps = np.asarray(F0[:, F0.shape[1] - tap_channels:], np.float32)

        def features(p, batch):
            s, t = batch
            out = tail(p["lora"], s)
            return jnp.concatenate([out, t], 1) if tap_channels else out

        def take(idx):
            return jnp.asarray(S[idx]), jnp.asarray(taps[idx])
    else:  # the frozen tail's features never change: they are F0
        inputs = np.asarray(F0, np.float32)

        def features(p, batch):
            return batch

        def take(idx):
            return jnp.asarray(inputs[idx])

    def loss(p, batch, yb, k):
        f = (features(p, batch) - mu_j) / sd_j
        if dropout > 0:
            f = jnp.where(jax.random.bernoulli(k, 1 - dropout, f.shape), f / (1 - dropout), 0.0)
        z = f @ p["proj_w"].T + p["proj_b"]
        logits = z @ p["cls_w"].T + p["cls_b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def step(p, s, batch, yb, k):
        value, g = jax.value_and_grad(loss)(p, batch, yb, k)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, value

    for epoch in range(epochs):
        for idx in _batches(rng, len(S), 64):
            key, k = jax.random.split(key)
            params, state, value = step(params, state, take(idx), jnp.asarray(y[idx]), k)
        if progress:
            progress(epoch + 1, float(value))
    pw = np.asarray(params["proj_w"]) / sd
    return {
        "lora": {t: (np.asarray(a), np.asarray(b)) for t, (a, b) in params["lora"].items()},
        "proj_w": pw.astype(np.float32),
        "proj_b": (np.asarray(params["proj_b"]) - pw @ mu).astype(np.float32),
        "cls_w": np.asarray(params["cls_w"], np.float32),
        "cls_b": np.asarray(params["cls_b"], np.float32),
    }


def softmax(L: np.ndarray) -> np.ndarray:
    L = L - L.max(-1, keepdims=True)
    P = np.exp(L)
    return P / P.sum(-1, keepdims=True)


def with_principal_components(adapter: dict, F_clean: np.ndarray, k: int) -> dict:
    """The adapter with its projection extended by the top `k` principal components of its crop's training
    features (the disease head gives them zero weight, so its decisions do not change). The learned
    projection keeps what tells the crop's classes apart and drops what tells a leaf from anything else; the
    components give the Mahalanobis distance that view of the training data."""
    mu = F_clean.mean(0)
    _, _, vt = np.linalg.svd(F_clean - mu, full_matrices=False)
    pcs = vt[:k].astype(np.float32)
    return {
        **adapter,
        "proj_w": np.concatenate([adapter["proj_w"], pcs]),
        "proj_b": np.concatenate([adapter["proj_b"], -pcs @ mu]).astype(np.float32),
        "cls_w": np.concatenate([adapter["cls_w"], np.zeros((adapter["cls_w"].shape[0], len(pcs)), np.float32)], 1),
    }


def ood_statistics(Z_train: np.ndarray, y_train: np.ndarray, Z_val: np.ndarray, cls_w: np.ndarray,
                   cls_b: np.ndarray, shrinkage: float) -> dict:
    """Class means and a shared, shrunk covariance of the projected training features; the validation
    distances to each image's *predicted* class give the per-class mean, std and count of the threshold rule."""
    C = cls_w.shape[0]
    means = np.stack([Z_train[y_train == k].mean(0) for k in range(C)])
    R = Z_train - means[y_train]
    S = R.T @ R / max(1, len(Z_train) - C)
    cov = (1 - shrinkage) * S + shrinkage * np.trace(S) / S.shape[0] * np.eye(S.shape[0])
    precision = np.linalg.inv(cov)
    precision = ((precision + precision.T) / 2).astype(np.float32)
    stats = {"means": means.astype(np.float32), "precision": precision}
    pred, d2 = mahalanobis(Z_val, stats, cls_w, cls_b)
    stats["val_mean"] = np.array([d2[pred == k].mean() if np.any(pred == k) else 0 for k in range(C)], np.float32)
    stats["val_std"] = np.array([d2[pred == k].std(ddof=1) if np.sum(pred == k) > 1 else 0 for k in range(C)],
                                np.float32)
    stats["val_count"] = np.array([np.sum(pred == k) for k in range(C)], np.float32)
    return stats


def mahalanobis(Z: np.ndarray, stats: dict, cls_w: np.ndarray, cls_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = (Z @ cls_w.T + cls_b).argmax(1)
    D = Z - stats["means"][pred]
    return pred, np.einsum("ni,ij,nj->n", D, stats["precision"], D)


def thresholds(stats: dict, factor: float, min_count: int, fallback: float) -> np.ndarray:
    """The runtime's T_c = mean_c + factor·std_c (fallback below min_count validation samples)."""
    ok = stats["val_count"] >= min_count
    return np.where(ok, stats["val_mean"] + factor * stats["val_std"], fallback).astype(np.float32)
