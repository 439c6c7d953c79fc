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

from runner import config, data, keys, naming, provenance
from runner.trace import Trace
from runner.tracking import links, record, store
from runner.config import Diverged, Engine, UserError, check
from runner.errors import note_run


@dataclass
class Job:
    """Where a run sits. The CLI fills it from Hydra; a plain call from Python gets defaults."""
    launch_dir: str = "."
    overrides: List[str] = field(default_factory=list)
    default_name: str = ""  # "": naming.run_name(cfg)
    swept: List[str] = field(default_factory=list)  # the sweep's keys: logged again as `Swept: KEY`
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
    link: str = ""  # the run's page in MLflow's UI

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
    mlrun = tracker.start_run(uri, cfg.experiment_name, name, provenance.tags(cfg, digest, job))
    try:
        log_config(mlrun, resolved, record.params(resolved), job)
        mlrun.log_dataset(dataset.name, dataset.source, dataset.X, dataset.y)
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
    link = close(mlrun, uri)  # first: the run's id, read below, is the close's answer
    return Result("FINISHED", final_loss, mlrun.id, mlrun.name, cfg.experiment_name, trace.curve, trace.seconds,
                  trace.extra, link)


def log_config(mlrun: Any, resolved: dict, params: dict, job: Job) -> None:
    """A run's params (a sweep's swept keys again as `Swept: KEY`, for MLflow's Compare), its
    config.yaml and overrides.yaml, any URI's password masked."""
    mlrun.log_params({**params, **naming.swept_params(params, job.swept)})
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yaml").write_text(store.masked(OmegaConf.to_yaml(resolved)))
        (Path(tmp) / "overrides.yaml").write_text(store.masked(OmegaConf.to_yaml(list(job.overrides))))
        mlrun.log_artifacts(tmp)


def close(mlrun: Any, uri: str) -> str:
    """End a finished run; returns its page in the UI. The close is the trainer's last word to
    the tracking process: a kill -9 after it still leaves the run FINISHED (test_faults)."""
    mlrun.end()
    return links.run_link(links.ui_base(uri), mlrun.experiment_id, mlrun.id)


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


@dataclass(frozen=True)
class _EngineSpec:
    """What differs between the engines, in one place: chosen once per run by _engine(cfg)."""
    train: Callable[..., "Trace"]  # (cfg, dataset, log, set_tags, device, quiet)
    torch: bool  # runs on a torch device (imports torch)
    save_state: Callable[[dict, Path], None]  # the weights into the artifact folder


def _engine(cfg: Any) -> _EngineSpec:
    from runner import numpy_engine, torch_engine  # numpy only at import: torch comes with its loop

    if cfg.engine == Engine.numpy:
        return _EngineSpec(numpy_engine.run, False, lambda state, folder: np.savez(folder / "model.npz", **state))
    return _EngineSpec(torch_engine.torch_train, True, torch_engine.save_torch)


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


