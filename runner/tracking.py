"""Everything MLflow: the store (safe under parallel jobs), one run's params, buffered metrics,
tags and artifacts, and the sweep's parent run (a Hydra callback). Nothing else imports mlflow.
"""
import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.config import Diverged, UserError

PARENT_FILE = "mlflow_parent_run_id"  # in the sweep dir: how jobs on other hosts find the parent
RESULT_FILE = "result.json"  # in each job's dir: what the parent summarises at the end
FLUSH_POINTS, FLUSH_SECONDS = 1000, 5.0  # one log_batch per 1000 points or 5 s, whichever first
SWEEP_FAILURES: List[str] = []  # set by SweepCallback in the launching process, read by __main__
ACTIVE_PARENT: List["Run"] = []  # the open parent run, so an aborted sweep can close it


# ---- the store ------------------------------------------------------------------------------
def resolve_uri(uri: Optional[str], launch_dir: str) -> str:
    """Command line wins, then $MLFLOW_TRACKING_URI, then sqlite:///<launch dir>/mlflow.db."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{Path(launch_dir).resolve() / 'mlflow.db'}"
    return uri


def check_uri(uri: str) -> None:
    """Fail in seconds, with one line, on a store MLflow would retry against for minutes."""
    scheme = uri.split(":", 1)[0].lower() if "://" in uri else ""
    if scheme == "sqlite":
        return _check_sqlite(uri)
    if scheme in ("http", "https"):
        return _check_server(uri)
    if scheme in ("postgresql", "mysql", "mssql", "databricks") or scheme.startswith(
            ("postgresql+", "mysql+", "mssql+")):
        return
    raise UserError(f"tracking.uri={uri!r}: not a usable store; use sqlite:///ABSOLUTE/PATH/mlflow.db "
                    "or http://HOST:PORT (the ./mlruns file store is gone since MLflow 3.13)")


def _check_sqlite(uri: str) -> None:
    path = sqlite_path(uri)
    if path is None:
        raise UserError(f"tracking.uri={uri!r}: an in-memory or empty sqlite path keeps nothing; "
                        "use sqlite:///ABSOLUTE/PATH/mlflow.db")
    if not path.parent.is_dir():
        raise UserError(f"tracking.uri={uri!r}: folder {str(path.parent)!r} does not exist")
    if path.exists():
        if not path.is_file():
            raise UserError(f"tracking.uri={uri!r}: {str(path)!r} is not a file")
        with open(path, "rb") as f:
            head = f.read(16)
        if head and head != b"SQLite format 3\0":
            raise UserError(f"tracking.uri={uri!r}: {str(path)!r} is not an SQLite database "
                            "(corrupt or another kind of file)")
        if not os.access(path, os.W_OK):
            raise UserError(f"tracking.uri={uri!r}: {str(path)!r} is read-only")
    elif not os.access(path.parent, os.W_OK):
        raise UserError(f"tracking.uri={uri!r}: cannot create a store in read-only {str(path.parent)!r}")


def _check_server(uri: str) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            if r.status == 200:
                return
            problem = f"answered {r.status}"
    except urllib.error.HTTPError as e:
        problem = f"answered {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        problem = str(getattr(e, "reason", e))
    raise UserError(f"tracking.uri={uri!r}: no MLflow server at {url} ({problem}); start one with "
                    "`mlflow server --host 127.0.0.1 --port PORT` or use the default sqlite store")


def sqlite_path(uri: str) -> Optional[Path]:
    rest = uri[len("sqlite://"):]
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        return None
    return Path(rest[1:] if rest.startswith("//") else rest)


def connect(uri: str, experiment_name: str):
    """(client, experiment_id). Creating a fresh sqlite store from several processes at once
    corrupts it, so the schema and the experiment are created under a file lock."""
    check_uri(uri)
    # MLflow retries an unreachable server for minutes; we already checked it answers.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=uri)
    path = sqlite_path(uri) if uri.startswith("sqlite") else None
    if path is None:
        return client, _experiment_id(client, experiment_name, None)
    with FileLock(str(path) + ".lock", timeout=120):
        return client, _experiment_id(client, experiment_name, (path.parent / "mlartifacts").as_uri())


def _experiment_id(client, name: str, artifact_location: Optional[str]) -> str:
    from mlflow.exceptions import MlflowException

    try:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as e:
        raise UserError(f"tracking: the store refused the experiment {name!r}: "
                        f"{str(e).splitlines()[0]}") from e
    if exp.lifecycle_stage == "deleted":
        raise UserError(f"experiment_name={name!r}: that experiment is deleted in this store; restore "
                        "it (mlflow experiments restore) or choose another name")
    return exp.experiment_id


def config_hash(container: Dict[str, Any]) -> str:
    """What makes two runs 'the same experiment' for resume: the config less where it is logged."""
    keep = {k: v for k, v in container.items()
            if k not in ("run_name", "resume", "debug", "tracking", "experiment_name")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def find_finished(client, experiment_id: str, digest: str) -> Optional[Any]:
    """A FINISHED run of this experiment with the same config hash, for resume."""
    runs = client.search_runs([experiment_id], f"tags.`runner.config_hash` = '{digest}' "
                              "and attributes.status = 'FINISHED'", max_results=1)
    return runs[0] if runs else None


# ---- one run ------------------------------------------------------------------------------------
class Run:
    """One MLflow run: params and tags at once, metrics buffered into log_batch calls."""

    def __init__(self, client, experiment_id: str, name: str, tags: Dict[str, str]):
        import mlflow
        from mlflow.entities import Metric

        self._metric = Metric
        self.client = client
        tags = {**tags, "runner.mlflow_version": mlflow.__version__}
        self.run = client.create_run(experiment_id, run_name=name, tags=tags)
        self.id = self.run.info.run_id
        self.name = self.run.info.run_name
        self._points: List[Any] = []
        self._last_flush = time.monotonic()

    def log_params(self, params: Dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.id, params=items[i:i + 100])

    def set_tags(self, tags: Dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log(self, key: str, value: float, step: int) -> None:
        self._points.append(self._metric(key, value, int(time.time() * 1000), step))
        if len(self._points) >= FLUSH_POINTS or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        points, self._points = self._points, []
        for i in range(0, len(points), FLUSH_POINTS):
            self.client.log_batch(self.id, metrics=points[i:i + FLUSH_POINTS])
        self._last_flush = time.monotonic()

    def log_artifacts(self, local_dir: str) -> None:
        self.client.log_artifacts(self.id, local_dir)

    def end(self, error: Optional[BaseException] = None) -> str:
        """Flush, then FINISHED, FAILED (with reason tags) or KILLED. Never leaves it RUNNING."""
        status, tags = _status_of(error)
        try:
            self.flush()
        finally:
            if tags:
                self.set_tags(tags)
            self.client.set_terminated(self.id, status)
        return status


def _status_of(error: Optional[BaseException]):
    if error is None:
        return "FINISHED", {}
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "KILLED", {"runner.failure": "interrupted"}
    if isinstance(error, Diverged):
        return "FAILED", {"runner.failure": "diverged", "runner.failed_epoch": error.epoch,
                          "runner.failed_value": error.value, "runner.failure_message": str(error)}
    kind = "bad_input" if isinstance(error, UserError) else type(error).__name__
    return "FAILED", {"runner.failure": kind, "runner.failure_message": str(error)[:5000]}


# ---- the sweep's parent run -------------------------------------------------------------------
def read_parent_id(sweep_dir: str) -> Optional[str]:
    p = Path(sweep_dir) / PARENT_FILE
    if p.is_file():
        return p.read_text().strip()
    return os.environ.get("RUNNER_PARENT_RUN_ID")


class SweepCallback(Callback):
    """Creates the store, experiment and parent run once before any job starts (so parallel
    jobs never race to create them), and summarises the children at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launch_dir = config.hydra.runtime.cwd
        uri = resolve_uri(config.tracking.uri, launch_dir)
        client, exp_id = connect(uri, config.experiment_name)
        overrides = list(config.hydra.overrides.task)
        name = "sweep " + " ".join(overrides) if overrides else "sweep"
        self.parent = Run(client, exp_id, name[:250], {"runner.sweep": "true",
                                                        "runner.sweep_overrides": " ".join(overrides)})
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / PARENT_FILE).write_text(self.parent.id)
        os.environ["RUNNER_PARENT_RUN_ID"] = self.parent.id
        SWEEP_FAILURES.clear()
        ACTIVE_PARENT[:] = [self.parent]

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        results = [json.loads(p.read_text()) for p in sorted(self.sweep_dir.glob(f"*/{RESULT_FILE}"))]
        done = [r for r in results if r["status"] in ("FINISHED", "SKIPPED")]
        failed = [r for r in results if r not in done]
        SWEEP_FAILURES[:] = [f"{r['name']}: {r.get('reason') or r['status']}" for r in failed]
        tags = {"runner.jobs": len(results), "runner.failed_jobs": len(failed)}
        if failed:
            tags["runner.failed"] = "; ".join(SWEEP_FAILURES)[:5000]
        if done:
            best = min(done, key=lambda r: r["final_loss"])
            tags.update({"runner.best_run_id": best["run_id"], "runner.best_run_name": best["name"]})
            self.parent.log("best_final_loss", best["final_loss"], 0)
        self.parent.set_tags(tags)
        curves = {r["name"]: r["curve"] for r in results if r.get("curve")}
        if curves:
            import tempfile

            from runner import plots

            with tempfile.TemporaryDirectory() as tmp:
                plots.overlay(curves, Path(tmp) / "sweep_loss_curves.png", self.parent.name)
                self.parent.log_artifacts(tmp)
        self.parent.end(None)
        ACTIVE_PARENT.clear()
        print(f"sweep: {len(done)} of {len(results)} jobs ok"
              + (f", best {best['name']} final_loss={best['final_loss']:.6g} run {best['run_id']}"
                 if done else "") + f"; parent run {self.parent.id}")


def write_result(job_dir: str, result: Dict[str, Any]) -> None:
    """Each job leaves its outcome in its own folder; the parent reads them all at the end
    (this works for every launcher, even for jobs that failed before an MLflow run existed)."""
    path = Path(job_dir) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)


def abort_sweep(error: BaseException) -> None:
    """Close a sweep's parent run that an error cut short (FAILED, or KILLED on Ctrl-C)."""
    parent = ACTIVE_PARENT.pop() if ACTIVE_PARENT else None
    if parent is not None:
        parent.end(error)
