"""Optimizers (hand-written gradient descent and torch.optim) and the batching they share."""
import contextlib
from typing import Any, Iterable, List, Optional, Tuple

import torch

from runner.config import UserError


class GradientDescent:
    """p ← p − lr·grad, written out: no torch.optim. Grads come from the model (analytic for
    `line`, autograd otherwise)."""

    def __init__(self, params: List[torch.Tensor], lr: float):
        self.params, self.lr = list(params), lr
        # autograd's leaves may only change in place under no_grad(); line's plain tensors need
        # none, and entering it costs more than the update of a small line
        self.no_grad = torch.no_grad if any(p.requires_grad for p in self.params) else contextlib.nullcontext

    def step(self) -> None:
        with self.no_grad():
            for p in self.params:
                p.sub_(p.grad, alpha=self.lr)  # p -= lr * grad, in one kernel


def build(o: Any, params: List[torch.Tensor], lr: float):
    """The optimizer of config group `optim`; every one reads the shared top-level `lr`."""
    if o.name == "gd":
        return GradientDescent(params, lr)
    if o.name in ("sgd", "minibatch"):
        return torch.optim.SGD(params, lr=lr, momentum=o.momentum)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(o.betas))
    lab = _LAB.get(o.name)
    if lab is not None:
        return lab(o, params, lr)
    raise UserError(f"optim.name={o.name!r}: must be one of gd, sgd, minibatch, adam, {', '.join(_LAB)}")


_LAB = {  # the optimizer lab's options (issue 19), on objectives and on every dataset and model
    "momentum": lambda o, ps, lr: torch.optim.SGD(ps, lr=lr, momentum=o.momentum),
    "nesterov": lambda o, ps, lr: torch.optim.SGD(ps, lr=lr, momentum=o.momentum, nesterov=True),
    "rmsprop": lambda o, ps, lr: torch.optim.RMSprop(ps, lr=lr, alpha=o.alpha, eps=o.eps),
    "adagrad": lambda o, ps, lr: torch.optim.Adagrad(ps, lr=lr, eps=o.eps),
    "adamw": lambda o, ps, lr: torch.optim.AdamW(ps, lr=lr, betas=tuple(o.betas), eps=o.eps,
                                                 weight_decay=o.weight_decay),
}


def batches(X: torch.Tensor, y: torch.Tensor, batch_size: Optional[int], shuffle: bool,
            gen: torch.Generator) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (xb, yb). A full batch is never permuted: the gradient is the same, and
    keeping the order keeps the sums exactly those of the textbook loop."""
    n = X.shape[0]
    size = min(batch_size or n, n)
    if size == n:
        return ((X, y),)
    if not shuffle:
        return [(X[i:i + size], y[i:i + size]) for i in range(0, n, size)]  # views: no copies
    order = torch.randperm(n, generator=gen).to(X.device)
    return ((X[idx], y[idx]) for idx in order.split(size))
