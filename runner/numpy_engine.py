"""The numpy engine: `line` and the two-layer network trained by hand-written gradient descent,
with the backward pass written out as in the classic numpy example. It never imports torch.

Weights are stored as the maths reads (x·w1), so w1 is the transpose of torch's Linear.weight.
"""
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runner.config import Diverged

Params = Dict[str, np.ndarray]


# ---- losses: value and dL/dŷ side by side ----------------------------------------------------
def loss_value(name: str, pred: np.ndarray, y: np.ndarray) -> float:
    if name == "cross_entropy":
        logp = _log_softmax(pred)
        return float(-logp[np.arange(len(y)), y].mean())
    se = (pred - y) ** 2
    return float({"mse": se.mean(), "sse": se.sum(), "half_mse": se.mean() / 2}[name])


def loss_grad(name: str, pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    if name == "cross_entropy":  # softmax(ŷ) - onehot(y), averaged over the batch
        g = np.exp(_log_softmax(pred))
        g[np.arange(len(y)), y] -= 1.0
        return g / len(y)
    r = pred - y
    return {"mse": 2.0 * r / r.size, "sse": 2.0 * r, "half_mse": r / r.size}[name]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# ---- the models: forward and backward together -------------------------------------------------
def forward(p: Params, X: np.ndarray) -> np.ndarray:
    if "w1" not in p:  # line: ŷ = X·w + b
        return X @ p["w"] + p.get("b", 0.0)
    h = np.maximum(X @ p["w1"] + p.get("b1", 0.0), 0.0)  # (N, hidden), relu
    return h @ p["w2"] + p.get("b2", 0.0)  # (N, out)


def gradients(p: Params, X: np.ndarray, y: np.ndarray, loss: str) -> Params:
    """dL/dp for every parameter, by the chain rule written out."""
    if "w1" not in p:
        g = loss_grad(loss, forward(p, X), y)  # (N, m)
        return {"w": X.T @ g} | ({"b": g.sum(0)} if "b" in p else {})
    pre = X @ p["w1"] + p.get("b1", 0.0)  # (N, hidden)
    h = np.maximum(pre, 0.0)
    g_out = loss_grad(loss, h @ p["w2"] + p.get("b2", 0.0), y)  # (N, out)
    g_h = (g_out @ p["w2"].T) * (pre > 0)  # back through w2, then relu's gate
    grads = {"w1": X.T @ g_h, "w2": h.T @ g_out}
    if "b1" in p:
        grads |= {"b1": g_h.sum(0), "b2": g_out.sum(0)}
    return grads


def init(cfg_model: Any, in_features: int, out_features: int, rng: np.random.Generator) -> Params:
    """Initial weights: line as in models.py (zeros, normal, constant); mlp normal with `std`
    (the classic example's randn), or torch's default uniform(±1/√fan_in)."""
    m = cfg_model
    if m.name == "line":
        shapes = {"w": (in_features, out_features)} | ({"b": (out_features,)} if m.bias else {})
        if m.init == "normal":
            return {k: rng.standard_normal(s) * m.std for k, s in shapes.items()}
        return {k: np.full(s, m.value if m.init == "constant" else 0.0) for k, s in shapes.items()}
    shapes = {"w1": (in_features, m.hidden), "w2": (m.hidden, out_features)}
    if m.bias:
        shapes |= {"b1": (m.hidden,), "b2": (out_features,)}
    fan_in = {"w1": in_features, "b1": in_features, "w2": m.hidden, "b2": m.hidden}
    if m.init == "normal":
        return {k: (rng.standard_normal(s) * m.std if k.startswith("w") else np.zeros(s))
                for k, s in shapes.items()}
    return {k: rng.uniform(-1, 1, s) / math.sqrt(fan_in[k]) for k, s in shapes.items()}


# ---- the loop --------------------------------------------------------------------------------
def train_loop(p: Params, X: np.ndarray, y: np.ndarray, loss: str, lr: float, epochs: int,
               batch_size: Optional[int] = None, log_every: int = 1,
               on_record=None) -> List[Tuple[int, float]]:
    """Gradient descent p ← p − lr·grad over batches in order; returns [(epoch, loss)] at step 0,
    every `log_every` epochs and the last. `on_record(epoch, loss, p)` sees each point."""
    curve = []

    def record(epoch: int) -> None:
        value = loss_value(loss, forward(p, X), y)
        if not math.isfinite(value):
            raise Diverged(epoch, "loss", value)
        curve.append((epoch, value))
        if on_record:
            on_record(epoch, value, p)

    np.seterr(over="ignore", invalid="ignore")  # a blow-up is reported once, as Diverged
    record(0)
    size = min(batch_size or len(X), len(X))
    for epoch in range(1, epochs + 1):
        for i in range(0, len(X), size):
            grads = gradients(p, X[i:i + size], y[i:i + size], loss)
            for k in p:
                p[k] -= lr * grads[k]
        if epoch % log_every == 0 or epoch == epochs:
            record(epoch)
    return curve
