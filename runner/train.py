"""run(cfg): build data, model and optimizer on the device, train in one loop, track it all."""
import math
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Tuple

import torch
from omegaconf import OmegaConf

from runner import data, devices, models, optim, plots, tracking
from runner.config import Diverged, check


@dataclass
class Job:
    """Where a run sits. The CLI fills it from Hydra; a plain call from Python gets defaults."""
    launch_dir: str = "."
    overrides: List[str] = field(default_factory=list)
    default_name: str = "default"
    job_num: Optional[int] = None
    parent_run_id: Optional[str] = None
    quiet: bool = False


@dataclass
class Result:
    status: str  # FINISHED, or SKIPPED when resume found the same config already FINISHED
    final_loss: float
    run_id: str
    name: str
    experiment: str
    curve: List[Tuple[int, float]]
    train_seconds: float = 0.0

    def summary(self, cfg: Any) -> str:
        return (f"{self.status.lower()}: final_loss={self.final_loss:.6g} dataset={cfg.dataset.name} "
                f"model={cfg.model.name} optim={cfg.optim.name} lr={cfg.lr:g} epochs={cfg.epochs} "
                f"train_seconds={self.train_seconds:.3f} run={self.run_id} "
                f"experiment={self.experiment}")

    def as_dict(self) -> dict:
        return asdict(self)


def run(cfg: Any, job: Optional[Job] = None) -> Result:
    """Train the composed config `cfg` and record it in MLflow. Raises UserError on bad input,
    Diverged when the loss blows up; either way the MLflow run is closed, never left RUNNING."""
    job = job or Job()
    check(cfg)
    data.check(cfg)  # a bad CSV fails before a run exists
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    uri = tracking.resolve_uri(cfg.tracking.uri, job.launch_dir)
    client, experiment_id = tracking.connect(uri, cfg.experiment_name)
    digest = tracking.config_hash(resolved)
    if cfg.resume:
        done = tracking.find_finished(client, experiment_id, digest)
        if done is not None:
            return Result("SKIPPED", done.data.metrics.get("final_loss", math.nan), done.info.run_id,
                          done.info.run_name, cfg.experiment_name, [])
    tags = _tags(cfg, digest, job)
    mlrun = tracking.Run(client, experiment_id, cfg.run_name or job.default_name, tags)
    try:
        mlrun.log_params(tracking.flatten({k: v for k, v in resolved.items() if k != "tracking"}))
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
            (Path(tmp) / "overrides.yaml").write_text(OmegaConf.to_yaml(list(job.overrides)))
            mlrun.log_artifacts(tmp)
        result = train(cfg, resolved, mlrun, job)
    except BaseException as e:
        mlrun.end(e)
        e.run_id = mlrun.id  # the error message names the run it closed
        raise
    mlrun.end()
    return result


def train(cfg: Any, resolved: dict, mlrun: "tracking.Run", job: Job) -> Result:
    """The loop: epochs of batches; the whole-set loss (and w, b) every `log_every` epochs."""
    torch.manual_seed(cfg.seed)
    dtype = getattr(torch, resolved["dtype"])
    device = devices.resolve(cfg.device.name, cfg.device.index, job.job_num)
    mlrun.set_tags({"runner.device_resolved": devices.describe(device)})
    X, y = data.build(cfg, cfg.seed, dtype)
    X, y = X.to(device), y.to(device)  # X (N, in_features), y (N, out_features)
    model = models.build(cfg.model, X.shape[1], y.shape[1], dtype, device)
    params = list(model.parameters())
    optimizer = optim.build(cfg.optim, params, cfg.lr)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed + 1)  # its own stream: data has `seed`
    curve: List[Tuple[int, float]] = []

    def record(epoch: int) -> None:
        with torch.no_grad():
            value = models.loss_value(resolved["loss"], model(X), y).item()
        if not math.isfinite(value):
            raise Diverged(epoch, "loss", value)
        curve.append((epoch, value))
        mlrun.log("loss", value, epoch)
        line = models.slope_intercept(model)
        if line is not None:
            mlrun.log("w", line[0], epoch)
            mlrun.log("b", line[1], epoch)

    start = time.perf_counter()
    record(0)
    for epoch in _progress(cfg.epochs, job.quiet):
        for xb, yb in optim.batches(X, y, cfg.optim.batch_size, cfg.optim.shuffle, shuffle_gen):
            batch_loss = models.compute_gradients(model, resolved["loss"], xb, yb)
            optimizer.step()
        if not math.isfinite(batch_loss.item()):  # one sync per epoch, not per step
            raise Diverged(epoch, "batch loss", batch_loss.item())
        if epoch % cfg.log_every == 0 or epoch == cfg.epochs:
            record(epoch)
    seconds = time.perf_counter() - start
    final_loss = curve[-1][1]
    mlrun.log("final_loss", final_loss, cfg.epochs)
    mlrun.log("train_seconds", seconds, cfg.epochs)
    _artifacts(mlrun, model, X, y, curve)
    return Result("FINISHED", final_loss, mlrun.id, mlrun.name, cfg.experiment_name, curve, seconds)


def _progress(epochs: int, quiet: bool):
    """A progress bar over epochs on a terminal; a plain range otherwise."""
    if quiet or not sys.stdout.isatty():
        return range(1, epochs + 1)
    from tqdm import tqdm

    return tqdm(range(1, epochs + 1), desc="epochs", leave=False, mininterval=0.2)


def _artifacts(mlrun: "tracking.Run", model, X, y, curve) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp / "model.pt")
        steps, losses = zip(*curve)
        plots.loss_curve(steps, losses, tmp / "loss_curve.png", mlrun.name)
        line = models.slope_intercept(model)
        if line is not None and X.shape[1] == 1:
            plots.fit(X[:, 0].cpu().tolist(), y[:, 0].cpu().tolist(), *line, tmp / "fit.png", mlrun.name)
        mlrun.log_artifacts(str(tmp))


def _tags(cfg: Any, digest: str, job: Job) -> dict:
    import hydra

    tags = {"runner.dataset": cfg.dataset.name, "runner.model": cfg.model.name,
            "runner.optim": cfg.optim.name, "runner.device": cfg.device.name,
            "runner.config_hash": digest, "runner.overrides": " ".join(job.overrides),
            "runner.torch_version": torch.__version__,
            "runner.hydra_version": hydra.__version__, "runner.python_version": platform.python_version(),
            "mlflow.source.name": "runner"}
    if job.parent_run_id:
        tags["mlflow.parentRunId"] = job.parent_run_id
    commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _git_commit() -> Optional[str]:
    """The commit of the runner's own checkout, if it is one (the code that made the numbers)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, timeout=5,
                             capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
