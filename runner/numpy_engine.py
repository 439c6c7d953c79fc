"""The numpy engine: `line` and the mlp (any depth) trained by hand-written gradient descent,
with the backward pass written out as in the classic numpy example. It never imports torch.

Weights are stored as the maths reads (x·w1), so w1 is the transpose of torch's Linear.weight;
an mlp's layer i has weights w{i} and bias b{i}, counted from 1 at the input.
"""
import math
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runner import config
from runner import trace as tr
from runner.config import Diverged, hidden_sizes

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
# Each activation f with its derivative, written from z and a = f(z) (what the forward pass kept).
ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z, a: z > 0),
    "tanh": (np.tanh, lambda z, a: 1.0 - a * a),
    "sigmoid": (lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)), lambda z, a: a * (1.0 - a)),  # no exp overflow
}


def _depth(p: Params) -> int:
    return sum(1 for k in p if k.startswith("w"))


def _forward(p: Params, X: np.ndarray, activation: str):
    """The mlp's forward pass, keeping what backprop needs: inputs of each layer, pre-activations."""
    f, depth = ACTIVATIONS[activation][0], _depth(p)
    inputs, pres, h = [], [], X
    for i in range(1, depth + 1):
        inputs.append(h)
        z = h @ p[f"w{i}"] + p.get(f"b{i}", 0.0)  # (N, width of layer i)
        pres.append(z)
        if i < depth:
            h = f(z)
    return inputs, pres, z  # the last layer has no activation: z is ŷ


def forward(p: Params, X: np.ndarray, activation: str = "relu") -> np.ndarray:
    if "w1" not in p:  # line: ŷ = X·w + b
        return X @ p["w"] + p.get("b", 0.0)
    return _forward(p, X, activation)[2]


def gradients(p: Params, X: np.ndarray, y: np.ndarray, loss: str, activation: str = "relu") -> Params:
    """dL/dp for every parameter, by the chain rule written out."""
    if "w1" not in p:
        g = loss_grad(loss, forward(p, X), y)  # (N, m)
        return {"w": X.T @ g} | ({"b": g.sum(0)} if "b" in p else {})
    df = ACTIVATIONS[activation][1]
    inputs, pres, out = _forward(p, X, activation)
    g = loss_grad(loss, out, y)  # dL/dz of the last layer, (N, out)
    grads = {}
    for i in range(_depth(p), 0, -1):
        grads[f"w{i}"] = inputs[i - 1].T @ g
        if f"b{i}" in p:
            grads[f"b{i}"] = g.sum(0)
        if i > 1:  # back through w_i, then the activation of layer i-1 (its output is inputs[i-1])
            g = (g @ p[f"w{i}"].T) * df(pres[i - 2], inputs[i - 1])
    return grads


def init(cfg_model: Any, in_features: int, out_features: int, rng: np.random.Generator) -> Params:
    """Initial weights: line as in models.py (zeros, normal, constant); mlp normal with `std`
    (the classic example's randn), or torch's default uniform(±1/√fan_in)."""
    m = config.typed(cfg_model)
    if isinstance(m, config.LineModel):
        shapes = {"w": (in_features, out_features)} | ({"b": (out_features,)} if m.bias else {})
        if m.init == "normal":
            return {k: rng.standard_normal(s) * m.std for k, s in shapes.items()}
        return {k: np.full(s, m.value if m.init == "constant" else 0.0) for k, s in shapes.items()}
    sizes = [in_features, *hidden_sizes(m.hidden), out_features]
    layers = range(1, len(sizes))
    shapes = {f"w{i}": (sizes[i - 1], sizes[i]) for i in layers}  # weights then biases: the draw order
    if m.bias:
        shapes |= {f"b{i}": (sizes[i],) for i in layers}
    fan_in = {k: sizes[int(k[1:]) - 1] for k in shapes}
    if m.init == "normal":
        return {k: (rng.standard_normal(s) * m.std if k.startswith("w") else np.zeros(s))
                for k, s in shapes.items()}
    return {k: rng.uniform(-1, 1, s) / math.sqrt(fan_in[k]) for k, s in shapes.items()}


# ---- the loop --------------------------------------------------------------------------------
def train_loop(p: Params, X: np.ndarray, y: np.ndarray, loss: str, lr: float, epochs: int,
               batch_size: Optional[int] = None, log_every: int = 1,
               on_record=None, activation: str = "relu") -> List[Tuple[int, float]]:
    """Gradient descent p ← p − lr·grad over batches in order; returns [(epoch, loss)] at step 0,
    every `log_every` epochs and the last. `on_record(epoch, loss, p)` sees each point."""
    curve = []

    def record(epoch: int) -> None:
        value = loss_value(loss, forward(p, X, activation), y)
        if not math.isfinite(value):
            raise Diverged(epoch, "loss", value)
        curve.append((epoch, value))
        if on_record:
            on_record(epoch, value, p)

    size = min(batch_size or len(X), len(X))
    with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported once, as Diverged
        record(0)
        for epoch in range(1, epochs + 1):
            for i in range(0, len(X), size):
                grads = gradients(p, X[i:i + size], y[i:i + size], loss, activation)
                for k in p:
                    p[k] -= lr * grads[k]
            if epoch % log_every == 0 or epoch == epochs:
                record(epoch)
    return curve


# ---- the run: what train.run calls for engine=numpy ----------------------------------------------
def run(cfg: Any, dataset: Any, log: tr.Log, set_tags, device=None, quiet: bool = False) -> tr.Trace:
    """The same experiment on the numpy engine: hand-written forward, backward and update."""
    set_tags({"runner.device_resolved": "cpu (numpy)"})
    dtype = np.dtype(str(cfg.dtype))
    X, y = dataset.X.astype(dtype), dataset.y.astype(dtype)
    p = {k: v.astype(dtype) for k, v in
         init(cfg.model, X.shape[1], y.shape[1], np.random.default_rng(cfg.seed)).items()}
    loss = cfg.loss
    optimum = None
    if isinstance(cfg.model, config.LineModel):  # the same closed form, in numpy
        A = np.hstack([X, np.ones((len(X), 1))]) if cfg.model.bias else X
        optimum = tr.optimum(cfg, lambda: loss_value(loss, A @ np.linalg.lstsq(A, y, rcond=None)[0], y))
    trace = tr.Trace()

    def on_record(epoch: int, value: float, params) -> None:
        tr.record_point(trace, log, epoch, value, _numpy_line(params), optimum)

    start = time.perf_counter()
    activation = getattr(cfg.model, "activation", "relu")  # mlp only
    train_loop(p, X, y, loss, cfg.lr, cfg.epochs, cfg.optim.batch_size, cfg.log_every, on_record,
               activation)
    trace.seconds = time.perf_counter() - start
    trace.line, trace.state = _numpy_line(p), p
    return trace


def _numpy_line(p: dict) -> Optional[Tuple[float, float]]:
    """(w, b) of a one-input, one-output numpy line, else None (as models.slope_intercept)."""
    w = p.get("w")
    if w is None or w.size != 1:
        return None
    return float(w.reshape(())), float(p["b"].reshape(())) if "b" in p else 0.0
