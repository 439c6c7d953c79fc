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

from runner.errors import Diverged, note_run
from runner.objectives import Objective, Point
from runner.train import Result

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


# ---- the run: what train.run hands a config with an objective to ------------------------------
def check(cfg: Any) -> None:
    """The lab's own checks (the objective's shape and the options that do not apply); UserError."""
    from runner.config import Engine, UserError, check as check_common
    from runner.objectives import OBJECTIVES

    check_common(cfg)  # lr, epochs, log_every, the optimizer's hyperparameters
    o = cfg.objective
    dim = OBJECTIVES[o.name].dim
    if len(o.start) != dim:
        raise UserError(f"objective.start={list(o.start)}: {o.name} takes {dim} coordinate(s)")
    if len(o.bounds) != dim or not all(len(b) == 2 and b[0] < b[1] for b in o.bounds):
        raise UserError(f"objective.bounds={[list(b) for b in o.bounds]}: one [lo, hi] with lo < hi "
                        f"per coordinate ({dim})")
    if not (o.noise >= 0 and math.isfinite(o.noise)):
        raise UserError(f"objective.noise={o.noise!r}: must be a finite number >= 0")
    if cfg.engine != Engine.torch:
        raise UserError(f"engine={cfg.engine}: an objective runs on engine=torch")
    if cfg.optim.batch_size is not None:
        raise UserError(f"optim.batch_size={cfg.optim.batch_size}: an objective has no data to batch; "
                        "for SGD-like noise set objective.noise")


def objective_of(o: Any) -> Objective:
    """The Objective a config (or a result's dict) names, with its constants."""
    from runner.objectives import OBJECTIVES

    cls = OBJECTIVES[o["name"]]
    return cls(**{k: float(o[k]) for k in cls.constants if k in o})


@dataclass
class LabResult(Result):
    """train.Result plus the path and the objective, which a sweep's parent overlays on one contour."""
    path: List[Point] = field(default_factory=list)  # thinned
    objective: Dict[str, Any] = field(default_factory=dict)  # its config: name, constants, bounds

    def summary(self, cfg: Any) -> str:
        end = " ".join(f"{k}={v:.6g}" for k, v in zip(COORDS, self.path[-1])) if self.path else ""
        extra = "".join(f" {k}={v:.6g}" for k, v in self.extra.items())
        return (f"{self.status.lower()}: f={self.final_loss:.6g} {end}{extra} objective={cfg.objective.name} "
                f"optim={cfg.optim.name} lr={cfg.lr:g} steps={cfg.epochs} train_seconds={self.train_seconds:.3f} "
                f"run={self.run_id} experiment={self.experiment}")


def run(cfg: Any, job: Any) -> LabResult:
    """Minimise cfg.objective with cfg.optim for `epochs` steps and record it as train.run does
    (checks first, then the run, closed FAILED on divergence). One step is one epoch."""
    from omegaconf import OmegaConf

    from runner import keys, optim, train
    from runner.tracking import record, store

    tracker = job.tracker or record.Tracker()
    keys.check_known(cfg)
    check(cfg)
    uri = store.resolve_uri(cfg.tracking.uri, job.launch_dir)
    store.check_uri(uri)
    if job.tracker is not None:
        job.tracker.prepare(uri, cfg.experiment_name)
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    resolved.update(dataset=None, model=None)  # not used: neither logged nor hashed
    digest = record.config_hash(resolved)
    name = cfg.run_name or job.default_name or f"{cfg.objective.name} {cfg.optim.name}"
    mlrun = tracker.start_run(uri, cfg.experiment_name, name, _tags(cfg, digest, job))
    try:
        train.log_config(mlrun, resolved, _params(resolved), job)
        objective = objective_of(resolved["objective"])
        o = cfg.objective
        trace = minimise(objective, list(o.start), lambda ps: optim.build(cfg.optim, ps, cfg.lr), cfg.epochs,
                         mlrun.log, cfg.log_every, o.noise, cfg.seed, cfg.dtype.value)
        mlrun.log("final_loss", trace.values[-1], 0)
        mlrun.log("train_seconds", trace.seconds, 0)
        _artifacts(mlrun, objective, trace, resolved["objective"])
    except BaseException as e:
        mlrun.end(e)
        note_run(e, mlrun.id)  # the error message names the run it closed, as train.run's does
        raise
    link = train.close(mlrun, uri)
    return LabResult("FINISHED", trace.values[-1], mlrun.id, mlrun.name, cfg.experiment_name, trace.curve,
                     trace.seconds, trace.extra, link, path=thin(trace.path), objective=resolved["objective"])


def _params(resolved: dict) -> dict:
    """Only what applies: the objective, the optimizer's own hyperparameters, lr, steps, seed."""
    from runner.tracking import record

    keep = {k: v for k, v in resolved.items() if k not in record.BOOKKEEPING + (
        "dataset", "model", "loss", "check_grad", "check_grad_tol", "engine", "device")}
    keep["optim"] = {k: v for k, v in keep["optim"].items() if k not in ("batch_size", "shuffle")}
    return record.flatten(keep)


def _tags(cfg: Any, digest: str, job: Any) -> dict:
    from runner import provenance

    tags = provenance.tags(cfg, digest, job)
    for k in ("runner.dataset", "runner.model", "runner.device", "runner.engine"):
        tags.pop(k)
    tags.update({"runner.objective": cfg.objective.name, "runner.device_resolved": "cpu (objective)"})
    return tags


def _artifacts(mlrun: Any, objective: Objective, trace: LabTrace, config: dict) -> None:
    import tempfile
    from pathlib import Path

    from runner import lab_plots, plots

    with tempfile.TemporaryDirectory() as tmp:
        steps, values = zip(*trace.curve)
        plots.loss_curve(steps, values, Path(tmp) / "loss_curve.png", mlrun.name)
        lab_plots.path(objective, config["bounds"], {mlrun.name: trace.path}, Path(tmp) / "path.png", mlrun.name)
        mlrun.log_artifacts(tmp)
