"""The models, and the losses with their derivatives.

`Line` is the textbook model written by hand: plain tensors, a forward pass and, right beside
it, the analytic gradient for every loss (tests check them against autograd). `linear` and
`mlp` are ordinary torch modules whose gradients come from autograd.
"""
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from runner import config
from runner.config import UserError, hidden_sizes

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


# ---- losses: value and dL/dŷ side by side ----------------------------------------------------
def _scale(name: str, n: int) -> float:
    """Every squared loss is c·Σ(ŷ − y)² over the n entries: c = 1/n (mse), 1 (sse), 1/(2n) (half_mse)."""
    if name == "mse":
        return 1.0 / n
    if name == "sse":
        return 1.0
    if name == "half_mse":
        return 0.5 / n
    raise UserError(f"loss={name!r}: must be one of mse, sse, half_mse, cross_entropy")


def loss_value(name: str, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "cross_entropy":  # y holds class labels (N,)
        return torch.nn.functional.cross_entropy(pred, y)
    return _squared(name, pred - y)


def _squared(name: str, r: torch.Tensor) -> torch.Tensor:
    """c·Σr² of the residual r = ŷ − y: Σr² in one kernel, then c."""
    flat = r.view(-1)
    return torch.dot(flat, flat) * _scale(name, flat.numel())


def loss_and_grad(name: str, pred: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(L, dL/dŷ), dL/dŷ the same shape as pred. For the squared losses both come from one
    residual r = ŷ − y: L = c·Σr² and dL/dŷ = 2c·r."""
    if name == "cross_entropy":  # softmax(ŷ) - onehot(y), averaged over the batch
        g = torch.softmax(pred, dim=1)
        g[torch.arange(len(y), device=y.device), y] -= 1.0
        return loss_value(name, pred, y), g / len(y)
    r = pred - y
    return _squared(name, r), r * (2.0 * _scale(name, r.numel()))


# ---- the hand-written line -------------------------------------------------------------------
class Line:
    """ŷ = X·w + b with w (k, m) and b (m,), m targets (usually 1); no autograd anywhere."""

    def __init__(self, w: torch.Tensor, b: Optional[torch.Tensor]):
        self.w, self.b = w, b

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        if self.b is None:
            return X @ self.w  # (N, k) @ (k, m) -> (N, m)
        return torch.addmm(self.b, X, self.w)  # X·w + b in one kernel

    def gradients(self, X: torch.Tensor, y: torch.Tensor, loss: str) -> List[torch.Tensor]:
        """Analytic gradients of `loss` with respect to [w, b]: chain rule through ŷ = X·w + b."""
        return self.loss_and_gradients(X, y, loss)[1]

    def loss_and_gradients(self, X: torch.Tensor, y: torch.Tensor, loss: str):
        """(loss, [dL/dw, dL/db]) from one forward pass."""
        value, g = loss_and_grad(loss, self(X), y)  # L and dL/dŷ, (N, m)
        grads = [X.T @ g]  # dL/dw = Xᵀ·dL/dŷ, (k, m)
        if self.b is not None:
            grads.append(g.sum(0))  # dL/db = Σₙ dL/dŷₙ, (m,)
        return value, grads

    def parameters(self) -> List[torch.Tensor]:
        return [self.w] + ([self.b] if self.b is not None else [])

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"w": self.w} | ({"b": self.b} if self.b is not None else {})

    def fill_gradients(self, loss: str, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Set `p.grad` for w and b, return the batch loss. Plain tensors: no graph is built, so
        no no_grad() is needed."""
        value, grads = self.loss_and_gradients(X, y, loss)
        for p, g in zip(self.parameters(), grads):
            p.grad = g
        return value

    def as_module(self) -> nn.Module:
        """The nn.Linear with the same weights, x·w + b, on the CPU (what MLflow stores)."""
        w = self.w.detach().cpu()  # (k, m); nn.Linear keeps (m, k)
        layer = nn.Linear(w.shape[0], w.shape[1], bias=self.b is not None, dtype=w.dtype)
        with torch.no_grad():
            layer.weight.copy_(w.T)
            if self.b is not None:
                layer.bias.copy_(self.b.detach().cpu())
        return layer.eval()

    def slope_intercept(self) -> Optional[Tuple[float, float]]:
        return _slope_intercept(self.w, self.b)

    def hand_gradients(self, X64: torch.Tensor, y64: torch.Tensor, loss: str):
        """(twin, its leaves, hand-written gradients) in float64 on the CPU, for gradient_check."""
        leaves = [p.detach().double().cpu().requires_grad_() for p in self.parameters()]
        twin = Line(leaves[0], leaves[1] if self.b is not None else None)
        with torch.no_grad():
            return twin, leaves, twin.gradients(X64, y64, loss)


class Net:
    """A torch module (linear, mlp) with the methods of Line; its gradients come from autograd.
    state_dict() is the module's own, so model.pt reads as torch's."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        return self.module(X)

    def parameters(self) -> List[torch.Tensor]:
        return list(self.module.parameters())

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self.module.state_dict()

    def fill_gradients(self, loss: str, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.module.zero_grad(set_to_none=True)
        value = loss_value(loss, self.module(X), y)
        value.backward()
        return value.detach()

    def as_module(self) -> nn.Module:
        import copy

        return copy.deepcopy(self.module).cpu().eval()

    def slope_intercept(self) -> Optional[Tuple[float, float]]:
        m = self.module
        return _slope_intercept(m.weight, m.bias) if isinstance(m, nn.Linear) else None

    def hand_gradients(self, X64: torch.Tensor, y64: torch.Tensor, loss: str):
        import copy

        twin = copy.deepcopy(self.module).double().cpu()
        return twin, list(twin.parameters()), _backprop_by_hand(twin, X64, y64, loss)


def build(m: Any, in_features: int, out_features: int, dtype: torch.dtype, device: torch.device):
    """The model of config group `model` (its schema dataclass, or the DictConfig of one), sized
    by the data: a Line, or a Net around a torch module; initialised from torch's global RNG."""
    m = config.typed(m)
    match m:
        case config.LineModel():
            w = _init((in_features, out_features), m.init, m.std, m.value, dtype, device)
            b = _init((out_features,), m.init, m.std, m.value, dtype, device) if m.bias else None
            return Line(w, b)
        case config.LinearModel():
            module = nn.Linear(in_features, out_features, bias=m.bias)
        case config.MlpModel():
            module = _mlp([in_features, *hidden_sizes(m.hidden), out_features], m.activation, m.bias)
        case _:
            raise TypeError(f"no model for {type(m).__name__}")  # a schema class without a case here
    if m.init != "default":
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                _init_linear(layer, m.init, m.std)
    return Net(module.to(device=device, dtype=dtype))


def _mlp(sizes: List[int], activation: str, bias: bool) -> nn.Sequential:
    """Linear, activation, Linear, ..., Linear through `sizes` (784, 200, 200, 10): the activation
    between layers, none after the last (the loss takes raw scores)."""
    layers: List[nn.Module] = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out, bias=bias), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers[:-1])


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


def _slope_intercept(w: torch.Tensor, b: Optional[torch.Tensor]) -> Optional[Tuple[float, float]]:
    """(w, b) of a one-input, one-output linear model, else None. b is 0 without a bias, as the
    fitted line then goes through the origin."""
    if w.numel() != 1:
        return None
    return float(w.reshape(())), float(b.reshape(())) if b is not None else 0.0


# ---- instruments: gradient check and the closed-form optimum ----------------------------------
def gradient_check(model, loss: str, X: torch.Tensor, y: torch.Tensor) -> float:
    """Largest relative difference, in float64, between a hand-written gradient and autograd:
    line's analytic gradients, or for torch models the numpy engine's hand-written backprop."""
    X64 = X.detach().double().cpu()
    y64 = y.cpu() if y.dtype == torch.long else y.detach().double().cpu()
    twin, leaves, hand = model.hand_gradients(X64, y64, loss)
    auto = torch.autograd.grad(loss_value(loss, twin(X64), y64), leaves)
    return max(float((h - a).abs().max() / a.abs().max().clamp_min(1e-12)) for h, a in zip(hand, auto))


def _backprop_by_hand(model, X: torch.Tensor, y: torch.Tensor, loss: str) -> List[torch.Tensor]:
    """The numpy engine's hand-written gradients of a linear model or an mlp of any depth, returned
    in torch's parameter order and layout (its weights are the transpose: x·w)."""
    from runner import numpy_engine

    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    names = [("w", "b")] if len(layers) == 1 else [(f"w{i}", f"b{i}") for i in range(1, len(layers) + 1)]
    activation = next((name for m in model.modules() for name, kind in ACTIVATIONS.items()
                       if isinstance(m, kind)), "relu")
    p = {}
    for layer, (w, b) in zip(layers, names):
        p[w] = layer.weight.detach().numpy().T
        if layer.bias is not None:
            p[b] = layer.bias.detach().numpy()
    grads = numpy_engine.gradients(p, X.numpy(), y.numpy(), loss, activation)
    return [torch.from_numpy(grads[k].T if k.startswith("w") else grads[k]) for k in p]


def optimal_loss(X: torch.Tensor, y: torch.Tensor, bias: bool, loss: str) -> float:
    """The least-squares optimum of a linear model, solved once (torch.linalg.lstsq, float64)."""
    A = X.detach().double().cpu()
    if bias:
        A = torch.cat([A, torch.ones(len(A), 1, dtype=A.dtype)], dim=1)  # the bias is a ones column
    Y = y.detach().double().cpu()
    coef = torch.linalg.lstsq(A, Y, driver="gelsd").solution  # gelsd: fine when rank-deficient
    return loss_value(loss, A @ coef, Y).item()
