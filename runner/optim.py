"""Optimizers (hand-written gradient descent and torch.optim) and the batching they share."""
import contextlib
from typing import Any, Iterable, List, Optional, Tuple

import torch

from runner import config
from runner import groups_optim as lab


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
    """The optimizer of config group `optim` (its schema dataclass, or the DictConfig of one);
    every one reads the shared top-level `lr`. A subclass's case comes before its base's."""
    match config.typed(o):
        case config.GdOptim():
            return GradientDescent(params, lr)
        case config.SgdOptim(momentum=momentum):  # and MinibatchOptim, its subclass
            return torch.optim.SGD(params, lr=lr, momentum=momentum)
        case lab.NesterovOptim(momentum=momentum):  # before MomentumOptim, its base
            return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True)
        case lab.MomentumOptim(momentum=momentum):
            return torch.optim.SGD(params, lr=lr, momentum=momentum)
        case lab.RmspropOptim(alpha=alpha, eps=eps):
            return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps)
        case lab.AdagradOptim(eps=eps):
            return torch.optim.Adagrad(params, lr=lr, eps=eps)
        case lab.AdamwOptim(betas=betas, eps=eps, weight_decay=weight_decay):  # before AdamOptim
            return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        case config.AdamOptim(betas=betas):
            return torch.optim.Adam(params, lr=lr, betas=tuple(betas))
    raise TypeError(f"no optimizer for {type(o).__name__}")  # a schema class without a case here


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
