"""run(cfg): build data, model and optimizer on the device, train in one loop, track it all.

torch is imported inside the torch loop, not at the top: engine=numpy must run without it.
"""
import functools
import math
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from omegaconf import OmegaConf

from runner import config, data, keys, naming
from runner.tracking import record, store
from runner.config import Diverged, Engine, UserError, check
from runner.errors import note_run


@dataclass
class Job:
    """Where a run sits. The CLI fills it from Hydra; a plain call from Python gets defaults."""
    launch_dir: str = "."
    overrides: List[str] = field(default_factory=list)
    default_name: str = ""  # "": naming.run_name(cfg)
    job_num: Optional[int] = None
    parent_run_id: Optional[str] = None
    quiet: bool = False
    tracker: Optional[record.Tracking] = None  # the CLI's tracking process (service.Service); None: here


@dataclass
class Result:
    status: str  # FINISHED, or SKIPPED when resume found the same config already FINISHED
    final_loss: float
    run_id: str
    name: str
    experiment: str
    curve: List[Tuple[int, float]]
    train_seconds: float = 0.0
    extra: Dict[str, float] = field(default_factory=dict)  # gap, test_accuracy, grad_check

    def summary(self, cfg: Any) -> str:
        extra = "".join(f" {k}={v:.6g}{self._verdict(k, v)}" for k, v in self.extra.items())
        return (f"{self.status.lower()}: final_loss={self.final_loss:.6g}{extra} dataset={cfg.dataset.name} "
                f"model={cfg.model.name} optim={cfg.optim.name} lr={cfg.lr:g} epochs={cfg.epochs} "
                f"train_seconds={self.train_seconds:.3f} run={self.run_id} experiment={self.experiment}")

    def as_dict(self) -> dict:
        return asdict(self)

    def _verdict(self, key: str, gap: float) -> str:
        """After the gap, in words: a learner's first question is whether the run got there.
        Reached: within 0.1% of the least-squares loss (plus 1e-6 for an optimum of 0)."""
        if key != "gap":
            return ""
        optimum = self.final_loss - gap
        if gap <= 1e-3 * optimum + 1e-6:
            return " (optimum reached)"
        return " (not at the optimum yet: more epochs or a larger lr)"


@dataclass
class Trace:
    """What the loop hands back besides the metrics: for the summary and the plots."""
    curve: List[Tuple[int, float]] = field(default_factory=list)  # (epoch, loss)
    path: List[Tuple[float, float]] = field(default_factory=list)  # (w, loss), one-input lines
    line: Optional[Tuple[float, float]] = None  # final (w, b) of a one-input line
    labels: Optional[Tuple[np.ndarray, np.ndarray]] = None  # (true, predicted), classification
    state: Dict[str, Any] = field(default_factory=dict)  # the weights
    extra: Dict[str, float] = field(default_factory=dict)
    module: Any = None  # the trained torch model as an nn.Module on the CPU, for MLflow
    seconds: float = 0.0  # the loop alone, from the epoch-0 loss to the last epoch's record


def run(cfg: Any, job: Optional[Job] = None) -> Result:
    """Train the composed config `cfg` and record it in MLflow. Raises UserError on bad input,
    before any run exists; Diverged when the loss blows up; either way the MLflow run is closed,
    never left RUNNING."""
    job = job or Job()
    if getattr(cfg, "objective", None) is not None:  # the optimizer lab: no data, no model
        from runner import lab

        return lab.run(cfg, job)
    tracker = job.tracker or record.Tracker()
    typed, dataset, uri, device = validate(cfg, job)
    # params, the hash and config.yaml come from the composed config as written (plain values);
    # the code from here on reads the schema's dataclasses
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    cfg = typed
    digest = record.config_hash(resolved)
    if cfg.resume:
        done = tracker.find_finished(uri, cfg.experiment_name, digest)
        if done is not None:
            run_id, name, final_loss = done
            return Result("SKIPPED", final_loss, run_id, name, cfg.experiment_name, [])
    name = cfg.run_name or job.default_name or naming.run_name(cfg)
    mlrun = tracker.start_run(uri, cfg.experiment_name, name, _tags(cfg, digest, job))
    try:
        mlrun.log_params(record.params(resolved))
        mlrun.log_dataset(dataset.name, dataset.source, dataset.X, dataset.y)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "config.yaml").write_text(store.masked(OmegaConf.to_yaml(resolved)))
            (Path(tmp) / "overrides.yaml").write_text(store.masked(OmegaConf.to_yaml(list(job.overrides))))
            mlrun.log_artifacts(tmp)
        engine = _engine(cfg)
        trace = engine.train(cfg, dataset, mlrun.log, mlrun.set_tags, device, job.quiet)
        final_loss = trace.curve[-1][1]
        # one value a run, at step 0: MLflow's chart view draws such a metric as a bar a run
        mlrun.log("final_loss", final_loss, 0)
        mlrun.log("train_seconds", trace.seconds, 0)
        _artifacts(mlrun, trace, dataset, cfg, engine)
    except BaseException as e:
        mlrun.end(e)
        note_run(e, mlrun.id)  # the error message names the run it closed
        raise
    mlrun.end()
    return Result("FINISHED", final_loss, mlrun.id, mlrun.name, cfg.experiment_name, trace.curve, trace.seconds,
                  trace.extra)


def validate(cfg: Any, job: Job):
    """Every check of the user's input, once, before any run exists: ranges, the data (built
    here, in numpy), the store, the device. Returns (the config as the schema's dataclasses,
    dataset, tracking URI, torch device or None)."""
    keys.check_known(cfg)  # `+lrr=0.1`: a key no schema has, refused before anything else
    cfg = config.typed(cfg)
    check(cfg)
    engine = _engine(cfg)
    dataset = data.build(cfg, cfg.seed)
    uri = store.resolve_uri(cfg.tracking.uri, job.launch_dir)
    store.check_uri(uri)
    # The CLI's tracking process opens the store while torch is imported here (~1.5 s for a
    # fresh sqlite store), unless the device check that needs torch could still refuse the
    # run: a typo must not leave a store behind.
    if job.tracker is not None and not (engine.torch and _device_may_refuse(cfg)):
        job.tracker.prepare(uri, cfg.experiment_name)
    device = None
    if engine.torch:
        from runner import devices  # torch

        device = devices.resolve(cfg.device.name, cfg.device.index, job.job_num, dtype=cfg.dtype)
    return cfg, dataset, uri, device


def _device_may_refuse(cfg: Any) -> bool:
    """False where devices.resolve always succeeds: the CPU, or `auto` except on a Mac with
    float64 (auto picks MPS there, which has no float64)."""
    if cfg.device.name == "cpu":
        return False
    return cfg.device.name != "auto" or (cfg.dtype == "float64" and sys.platform == "darwin")


Log = Callable[[str, float, int], None]


def _save_torch(state: dict, folder: Path) -> None:
    import torch

    torch.save(state, folder / "model.pt")  # a state_dict: loads with weights_only=True


@dataclass(frozen=True)
class _EngineSpec:
    """What differs between the engines, in one place: chosen once per run by _engine(cfg)."""
    train: Callable[..., "Trace"]  # (cfg, dataset, log, set_tags, device, quiet)
    torch: bool  # runs on a torch device (imports torch)
    save_state: Callable[[dict, Path], None]  # the weights into the artifact folder


def _engine(cfg: Any) -> _EngineSpec:
    if cfg.engine == Engine.numpy:
        return _EngineSpec(numpy_train, False, lambda state, folder: np.savez(folder / "model.npz", **state))
    return _EngineSpec(torch_train, True, _save_torch)


def torch_train(cfg: Any, dataset: data.Dataset, log: Log, set_tags, device, quiet: bool = False) -> Trace:
    """The loop: epochs of batches; the whole-set loss (and w, b, accuracy, gap) every
    `log_every` epochs and at the last."""
    import torch

    from runner import devices, models, optim

    set_tags({"runner.device_resolved": devices.describe(device), "runner.torch_version": torch.__version__})
    p = _build(cfg, dataset, device)
    optimum = _optimum(cfg, lambda: models.optimal_loss(p.X, p.y, cfg.model.bias, p.loss))
    trace = Trace()
    record = functools.partial(_evaluate, p, trace, log, optimum)

    def grad_check(epoch: int) -> None:
        if cfg.check_grad:
            _grad_check(cfg, models.gradient_check(p.model, p.loss, p.X, p.y), epoch, log, trace)

    # plain locals: a DictConfig lookup costs ~20 µs, more than a whole epoch of a small line
    epochs, log_every, batch_size, shuffle = cfg.epochs, cfg.log_every, cfg.optim.batch_size, cfg.optim.shuffle
    model, loss, optimizer, guard = p.model, p.loss, p.optimizer, _Guard(device)
    grad_check(0)
    # timed from here: not the device's start-up (a first CUDA call takes seconds), the copy of
    # the data, the model's build or the closed-form optimum
    start = time.perf_counter()
    record(0)
    for epoch in _progress(epochs, quiet):
        for xb, yb in optim.batches(p.X, p.y, batch_size, shuffle, p.shuffle_gen):
            batch_loss = model.fill_gradients(loss, xb, yb)
            optimizer.step()
        guard.add(epoch, batch_loss)
        if epoch % log_every == 0 or epoch == epochs:
            guard.check()  # never record a point after the loss blew up
            record(epoch)
    trace.seconds = time.perf_counter() - start  # the last record's .item() waited for the GPU
    grad_check(epochs)
    _finish(p, trace)
    return trace


@dataclass
class _Parts:
    """What the torch loop works on, on its device."""
    X: Any
    y: Any
    X_test: Any
    y_test: Any
    n_classes: int
    model: Any
    optimizer: Any
    shuffle_gen: Any
    loss: str


def _build(cfg: Any, dataset: data.Dataset, device) -> _Parts:
    """The data as tensors on the device, the model (seeded), its optimizer, the shuffle's own
    random stream (apart from the init's)."""
    import torch

    from runner import models, optim

    torch.manual_seed(cfg.seed)
    dtype = getattr(torch, str(cfg.dtype))
    X, y, X_test, y_test = (_tensor(a, dtype, device) for a in
                            (dataset.X, dataset.y, dataset.X_test, dataset.y_test))
    model = models.build(cfg.model, X.shape[1], dataset.out_features, dtype, device)
    optimizer = optim.build(cfg.optim, list(model.parameters()), cfg.lr)
    return _Parts(X, y, X_test, y_test, dataset.n_classes, model, optimizer,
                  torch.Generator().manual_seed(cfg.seed + 1), cfg.loss)


def _evaluate(p: _Parts, trace: Trace, log: Log, optimum: Optional[float], epoch: int) -> None:
    """One record: the whole-set loss (w, b and the gap where they apply; accuracy and the test
    set's loss and accuracy for classification). Diverged if the loss is NaN or infinite."""
    import torch

    from runner import models

    with torch.no_grad():
        pred = p.model(p.X)
        value = models.loss_value(p.loss, pred, p.y).item()
        if not math.isfinite(value):
            raise Diverged(epoch, "loss", value)
        _record_point(trace, log, epoch, value, p.model.slope_intercept(), optimum)
        if p.n_classes:
            log("accuracy", (pred.argmax(1) == p.y).double().mean().item(), epoch)
            if p.X_test is not None:
                test_pred = p.model(p.X_test)
                log("test_loss", models.loss_value(p.loss, test_pred, p.y_test).item(), epoch)
                log("test_accuracy", (test_pred.argmax(1) == p.y_test).double().mean().item(), epoch)


def _finish(p: _Parts, trace: Trace) -> None:
    """After the loop: the labels for the confusion matrix, the final line, the weights and the
    module, all on the CPU."""
    import torch

    from runner import models

    if p.n_classes:
        Xe, ye = (p.X_test, p.y_test) if p.X_test is not None else (p.X, p.y)
        with torch.no_grad():
            trace.labels = (ye.cpu().numpy(), p.model(Xe).argmax(1).cpu().numpy())
        trace.extra["test_accuracy" if p.X_test is not None else "accuracy"] = float(
            (trace.labels[0] == trace.labels[1]).mean())
    trace.line = p.model.slope_intercept()
    trace.state = {k: v.detach().cpu() for k, v in p.model.state_dict().items()}
    trace.module = p.model.as_module()


class _Guard:
    """Stops the run at the first epoch whose (last) batch loss is NaN or infinite. On the CPU a
    loss is read as it comes (.item() costs ~0.1 µs); on a GPU .item() waits for every queued
    kernel, so there up to WINDOW losses are read together: one wait per WINDOW epochs, and still
    the exact epoch."""
    WINDOW = 32

    def __init__(self, device):
        self.at_once = device.type == "cpu"
        self.pending: list = []  # (epoch, loss tensor), not read yet

    def add(self, epoch: int, loss) -> None:
        if self.at_once:
            if not math.isfinite(loss.item()):
                raise Diverged(epoch, "batch loss", loss.item())
            return
        self.pending.append((epoch, loss))
        if len(self.pending) == self.WINDOW:
            self.check()

    def check(self) -> None:
        if not self.pending:
            return
        import torch

        values = torch.stack([loss for _, loss in self.pending]).tolist()  # one wait for them all
        bad = next(((e, v) for (e, _), v in zip(self.pending, values) if not math.isfinite(v)), None)
        self.pending.clear()
        if bad:
            raise Diverged(bad[0], "batch loss", bad[1])


def numpy_train(cfg: Any, dataset: data.Dataset, log: Log, set_tags, device=None, quiet: bool = False) -> Trace:
    """The same experiment on the numpy engine: hand-written forward, backward and update."""
    from runner import numpy_engine as npe

    set_tags({"runner.device_resolved": "cpu (numpy)"})
    dtype = np.dtype(str(cfg.dtype))
    X, y = dataset.X.astype(dtype), dataset.y.astype(dtype)
    p = {k: v.astype(dtype) for k, v in
         npe.init(cfg.model, X.shape[1], y.shape[1], np.random.default_rng(cfg.seed)).items()}
    loss = cfg.loss
    optimum = None
    if isinstance(cfg.model, config.LineModel):  # the same closed form, in numpy
        A = np.hstack([X, np.ones((len(X), 1))]) if cfg.model.bias else X
        optimum = _optimum(cfg, lambda: npe.loss_value(loss, A @ np.linalg.lstsq(A, y, rcond=None)[0], y))
    trace = Trace()

    def on_record(epoch: int, value: float, params) -> None:
        _record_point(trace, log, epoch, value, _numpy_line(params), optimum)

    start = time.perf_counter()
    activation = getattr(cfg.model, "activation", "relu")  # mlp only
    npe.train_loop(p, X, y, loss, cfg.lr, cfg.epochs, cfg.optim.batch_size, cfg.log_every, on_record,
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


def _record_point(trace: Trace, log: Log, epoch: int, value: float, line, optimum) -> None:
    """One logged point: loss, and where they apply w, b and the gap to the optimum."""
    trace.curve.append((epoch, value))
    log("loss", value, epoch)
    if line is not None:
        trace.path.append((line[0], value))
        log("w", line[0], epoch)
        log("b", line[1], epoch)
    if optimum is not None:
        if epoch == 0:  # after loss: MLflow's compare page plots the first metric a run logged
            log("optimal_loss", optimum, 0)
        trace.extra["gap"] = value - optimum
        log("gap", value - optimum, epoch)


def _optimum(cfg: Any, solve: Callable[[], float]) -> Optional[float]:
    """optimal_loss for linear models on a squared loss (solved once), else None."""
    if not isinstance(cfg.model, (config.LineModel, config.LinearModel)) or cfg.dataset.classification:
        return None
    return float(solve())


def _grad_check(cfg: Any, diff: float, epoch: int, log: Log, trace: Trace) -> None:
    log("grad_check_max_rel_diff", diff, epoch)
    trace.extra["grad_check_max_rel_diff"] = max(diff, trace.extra.get("grad_check_max_rel_diff", 0.0))
    if not diff <= cfg.check_grad_tol:
        raise UserError(f"check_grad: hand-written and autograd gradients differ by {diff:.3g} "
                        f"(relative) at epoch {epoch}, over check_grad_tol={cfg.check_grad_tol:g}")


def _tensor(a: Optional[np.ndarray], dtype, device):
    import torch

    if a is None:
        return None
    return torch.tensor(a, dtype=torch.long if a.dtype == np.int64 else dtype, device=device)


def _progress(epochs: int, quiet: bool):
    """A progress bar over epochs on a terminal or in a Jupyter kernel (tqdm.auto: the notebook's
    own bar there); a plain range otherwise (a pipe, a log file)."""
    if quiet or not (sys.stdout.isatty() or "ipykernel" in sys.modules):
        return range(1, epochs + 1)
    from tqdm.auto import tqdm

    return tqdm(range(1, epochs + 1), desc="epochs", leave=False, mininterval=0.2)


def _artifacts(mlrun: "record.Run", trace: Trace, dataset: data.Dataset, cfg: Any, engine: "_EngineSpec") -> None:
    from runner import plots  # matplotlib: not before the run has trained

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        engine.save_state(trace.state, tmp)
        steps, losses = zip(*trace.curve)
        plots.loss_curve(steps, losses, tmp / "loss_curve.png", mlrun.name)
        if trace.line is not None and dataset.X.shape[1] == 1 and not dataset.n_classes:
            plots.fit(dataset.X[:, 0], dataset.y[:, 0], *trace.line, tmp / "fit.png", mlrun.name)
            plots.trajectory(trace.path, tmp / "trajectory.png", mlrun.name)
        if trace.labels is not None:
            plots.confusion(*trace.labels, dataset.n_classes, tmp / "confusion.png", mlrun.name)
        mlrun.log_artifacts(str(tmp))
    if trace.module is not None:
        example = dataset.X[:5].astype(str(cfg.dtype))  # the inputs the model was trained on
        mlrun.log_model(trace.module, example, cfg.epochs)


def _tags(cfg: Any, digest: str, job: Job) -> dict:
    import hydra

    tags = {"runner.dataset": cfg.dataset.name, "runner.model": cfg.model.name,
            "runner.optim": cfg.optim.name, "runner.device": cfg.device.name, "runner.engine": cfg.engine,
            "runner.config_hash": digest, "runner.overrides": store.masked(" ".join(job.overrides)),
            "runner.hydra_version": hydra.__version__, "runner.python_version": platform.python_version(),
            "runner.numpy_version": np.__version__, "mlflow.source.name": "runner"}
    if job.parent_run_id:
        tags["mlflow.parentRunId"] = job.parent_run_id
    commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


@functools.lru_cache(maxsize=1)  # once per process: a sweep's jobs share it
def _git_commit() -> Optional[str]:
    """The commit of the runner's own checkout, if it is one (the code that made the numbers)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, timeout=5,
                             capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
