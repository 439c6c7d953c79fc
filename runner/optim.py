"""Optimizers (hand-written gradient descent and torch.optim) and the batching they share."""
from typing import Any, Iterator, List, Optional, Tuple

import torch

from runner.config import UserError


class GradientDescent:
    """p ← p − lr·grad, written out: no torch.optim. Grads come from the model (analytic for
    `line`, autograd otherwise)."""

    def __init__(self, params: List[torch.Tensor], lr: float):
        self.params, self.lr = list(params), lr

    @torch.no_grad()
    def step(self) -> None:
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
    raise UserError(f"optim.name={o.name!r}: must be one of gd, sgd, minibatch, adam")


def batches(X: torch.Tensor, y: torch.Tensor, batch_size: Optional[int], shuffle: bool,
            gen: torch.Generator) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (xb, yb). A full batch is never permuted: the gradient is the same, and
    keeping the order keeps the sums exactly those of the textbook loop."""
    n = X.shape[0]
    size = min(batch_size or n, n)
    if size == n:
        yield X, y
        return
    if not shuffle:
        for i in range(0, n, size):
            yield X[i:i + size], y[i:i + size]
        return
    order = torch.randperm(n, generator=gen).to(X.device)
    for i in range(0, n, size):
        idx = order[i:i + size]
        yield X[idx], y[idx]
