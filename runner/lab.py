"""The optimizer lab's loop: minimise an objective directly, the parameter being the point itself.

No data and no model: the point p is one tensor, the optimizer (any option of `optim`: the
hand-written gd or a torch.optim one) steps it, and each step's gradient is the objective's
analytic one, evaluated on the point's values as plain floats (three to four times cheaper a
step than autograd on a two-element tensor, and what makes the loop as fast as a bare one).
"""
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from runner.errors import Diverged
from runner.objectives import Objective, Point

Log = Callable[[str, float, int], None]
COORDS = ("x", "y")  # the metric names of a point's coordinates


@dataclass
class LabTrace:
    """What the loop hands back: every step's point and value (for the plots), the logged
    curve of f (for the summary and a sweep's loss overlay) and the last metrics."""
    path: List[Point] = field(default_factory=list)  # step 0 (the start) first
    values: List[float] = field(default_factory=list)  # f at each point of path
    curve: List[Tuple[int, float]] = field(default_factory=list)  # (step, f) at the logged steps
    extra: Dict[str, float] = field(default_factory=dict)  # gap, grad_norm at the end
    seconds: float = 0.0


def minimise(objective: Objective, start: Sequence[float], build_optimizer: Callable[[list], Any],
             steps: int, log: Log, log_every: int = 1, noise: float = 0.0, seed: int = 0,
             dtype: str = "float64", device: Any = "cpu") -> LabTrace:
    """`steps` optimizer steps from `start`. Logs x (and y), f, grad_norm and gap at step 0 (the
    start) and every `log_every` steps, the last included. Diverged at the first step whose f
    is NaN or infinite. `noise`: the standard deviation of Gaussian noise added to each
    coordinate of the gradient the optimizer sees (seeded by `seed`), as SGD's sampling would."""
    import torch

    p = torch.tensor(list(start), dtype=getattr(torch, dtype), device=device)
    optimizer = build_optimizer([p])
    gauss = random.Random(seed).gauss
    trace = LabTrace()
    point = tuple(p.tolist())
    value, grad = _evaluate(objective, point, 0)
    begin = time.perf_counter()
    _record(objective, trace, log, 0, point, value, grad, True)
    for step in range(1, steps + 1):
        if noise:
            grad = [g + noise * gauss(0.0, 1.0) for g in grad]
        p.grad = torch.tensor(grad, dtype=p.dtype, device=p.device)
        optimizer.step()
        point = tuple(p.tolist())
        value, grad = _evaluate(objective, point, step)
        _record(objective, trace, log, step, point, value, grad, step % log_every == 0 or step == steps)
    trace.seconds = time.perf_counter() - begin
    return trace


def _evaluate(objective: Objective, point: Point, step: int) -> Tuple[float, List[float]]:
    """f and its gradient at the point; Diverged if the point or f is no longer finite."""
    for name, v in zip(COORDS, point):
        if not math.isfinite(v):
            raise Diverged(step, name, v)
    value = objective.f(point)
    if not math.isfinite(value):
        raise Diverged(step, "f", value)
    return value, objective.grad(point)


def _record(objective: Objective, trace: LabTrace, log: Log, step: int, point: Point, value: float,
            grad: List[float], logged: bool) -> None:
    trace.path.append(point)
    trace.values.append(value)
    if not logged:
        return
    norm = math.sqrt(sum(g * g for g in grad))
    gap = objective.gap(point, value)
    for name, v in zip(COORDS, point):
        log(name, v, step)
    log("f", value, step)
    log("grad_norm", norm, step)
    log("gap", gap, step)
    trace.curve.append((step, value))
    trace.extra.update(gap=gap, grad_norm=norm)


def thin(path: Sequence[Point], at_most: int = 1000) -> List[Point]:
    """At most `at_most` points of a path, evenly spaced, the first and last kept: what a
    sweep's overlay needs of each child, small enough for its result file."""
    if len(path) <= at_most:
        return list(path)
    stride = (len(path) - 1) / (at_most - 1)
    return [path[round(i * stride)] for i in range(at_most)]


def nearest_minimum(objective: Objective, point: Sequence[float]) -> Optional[Point]:
    """The known minimum nearest to `point`, or None for an objective without one."""
    minima = objective.minima()
    if not minima:
        return None
    return min(minima, key=lambda m: sum((a - b) * (a - b) for a, b in zip(point, m)))
