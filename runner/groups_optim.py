"""The optimizer lab's options of `optim` (issue 19): each its own dataclass, a subclass of
config.OptimConfig, with its own hyperparameters and no others, so only those are logged as
params; each checks its own ranges. torch.optim's defaults throughout. Apart from config.py,
which config.register() stores them from, to keep that file small."""
from dataclasses import dataclass

from runner.config import AdamOptim, OptimConfig, _require


@dataclass
class MomentumOptim(OptimConfig):
    name: str = "momentum"  # heavy ball: v <- momentum*v + g; p <- p - lr*v (torch.optim.SGD)
    momentum: float = 0.9

    def check(self) -> None:
        super().check()
        _require(0 <= self.momentum < 1, "optim.momentum", self.momentum, "must be in [0, 1)")


@dataclass
class NesterovOptim(MomentumOptim):
    name: str = "nesterov"  # torch.optim.SGD(nesterov=True): the gradient at the look-ahead point


def _check_eps(eps: float) -> None:
    _require(eps > 0, "optim.eps", eps, "must be > 0")


@dataclass
class RmspropOptim(OptimConfig):
    name: str = "rmsprop"
    alpha: float = 0.99  # the decay of the running mean of g²
    eps: float = 1e-8

    def check(self) -> None:
        super().check()
        _require(0 < self.alpha < 1, "optim.alpha", self.alpha, "must be in (0, 1)")
        _check_eps(self.eps)


@dataclass
class AdagradOptim(OptimConfig):
    name: str = "adagrad"
    eps: float = 1e-10

    def check(self) -> None:
        super().check()
        _check_eps(self.eps)


@dataclass
class AdamwOptim(AdamOptim):
    name: str = "adamw"
    eps: float = 1e-8
    weight_decay: float = 0.01  # decoupled: p <- p*(1 - lr*weight_decay) before Adam's step

    def check(self) -> None:
        super().check()  # betas
        _check_eps(self.eps)
        _require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "must be >= 0")


LAB_OPTIMS = [MomentumOptim, NesterovOptim, RmspropOptim, AdagradOptim, AdamwOptim]
