"""The models, and the losses with their derivatives.

`Line` is the textbook model written by hand: plain tensors, a forward pass and, right beside
it, the analytic gradient for every loss (tests check them against autograd). `linear` and
`mlp` are ordinary torch modules whose gradients come from autograd.
"""
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from runner.config import UserError


# ---- losses: value and dL/dŷ side by side ----------------------------------------------------
def loss_value(name: str, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    se = (pred - y).square()
    if name == "mse":
        return se.mean()
    if name == "sse":
        return se.sum()
    if name == "half_mse":
        return se.mean() / 2
    raise UserError(f"loss={name!r}: must be one of mse, sse, half_mse")


def loss_grad(name: str, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dL/dŷ, the same shape as pred."""
    r = pred - y
    if name == "mse":
        return r * (2.0 / r.numel())
    if name == "sse":
        return 2.0 * r
    if name == "half_mse":
        return r / r.numel()
    raise UserError(f"loss={name!r}: must be one of mse, sse, half_mse")


# ---- the hand-written line -------------------------------------------------------------------
class Line:
    """ŷ = X·w + b with w (k, m) and b (m,), m targets (usually 1); no autograd anywhere."""

    def __init__(self, w: torch.Tensor, b: Optional[torch.Tensor]):
        self.w, self.b = w, b

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        pred = X @ self.w  # (N, k) @ (k, m) -> (N, m)
        return pred + self.b if self.b is not None else pred

    def gradients(self, X: torch.Tensor, y: torch.Tensor, loss: str) -> List[torch.Tensor]:
        """Analytic gradients of `loss` with respect to [w, b]: chain rule through ŷ = X·w + b."""
        g = loss_grad(loss, self(X), y)  # (N, m)
        grads = [X.T @ g]  # dL/dw = Xᵀ·dL/dŷ, (k, m)
        if self.b is not None:
            grads.append(g.sum(0))  # dL/db = Σₙ dL/dŷₙ, (m,)
        return grads

    def parameters(self) -> List[torch.Tensor]:
        return [self.w] + ([self.b] if self.b is not None else [])

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"w": self.w} | ({"b": self.b} if self.b is not None else {})


def build(m: Any, in_features: int, out_features: int, dtype: torch.dtype, device: torch.device):
    """The model of config group `model`, sized by the data; initialised from torch's global RNG."""
    if m.name == "line":
        w = _init((in_features, out_features), m.init, m.std, m.value, dtype, device)
        b = _init((out_features,), m.init, m.std, m.value, dtype, device) if m.bias else None
        return Line(w, b)
    if m.name == "linear":
        model = nn.Linear(in_features, out_features, bias=m.bias)
    elif m.name == "mlp":
        model = nn.Sequential(nn.Linear(in_features, m.hidden, bias=m.bias), nn.ReLU(),
                              nn.Linear(m.hidden, out_features, bias=m.bias))
    else:
        raise UserError(f"model.name={m.name!r}: must be one of line, linear, mlp")
    if m.init != "default":
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                _init_linear(layer, m.init, m.std)
    return model.to(device=device, dtype=dtype)


def _init(shape, how: str, std: float, value: float, dtype, device) -> torch.Tensor:
    if how == "normal":
        return (torch.randn(shape, dtype=torch.float64) * std).to(device=device, dtype=dtype)
    fill = value if how == "constant" else 0.0
    return torch.full(shape, fill, dtype=dtype, device=device)


def _init_linear(layer: nn.Linear, how: str, std: float) -> None:
    with torch.no_grad():
        if how == "normal":
            layer.weight.normal_(0.0, std)
        else:
            layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()


def compute_gradients(model, loss: str, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fill `p.grad` for every parameter and return the batch loss (detached)."""
    if isinstance(model, Line):
        with torch.no_grad():
            for p, g in zip(model.parameters(), model.gradients(X, y, loss)):
                p.grad = g
            return loss_value(loss, model(X), y)
    for p in model.parameters():
        p.grad = None
    value = loss_value(loss, model(X), y)
    value.backward()
    return value.detach()


def slope_intercept(model) -> Optional[Tuple[float, float]]:
    """(w, b) of a one-input, one-output linear model, else None. b is 0 without a bias, as the
    fitted line then goes through the origin."""
    if isinstance(model, Line):
        w, b = model.w, model.b
    elif isinstance(model, nn.Linear):
        w, b = model.weight, model.bias
    else:
        return None
    if w.numel() != 1:
        return None
    return float(w.reshape(())), float(b.reshape(())) if b is not None else 0.0
