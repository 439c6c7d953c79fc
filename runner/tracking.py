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

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.config import Diverged, UserError

PARENT_FILE = "mlflow_parent_run_id"  # in the sweep dir: how jobs on other hosts find the parent
RESULT_FILE = "result.json"  # in each job's dir: what the parent summarises at the end
# Points wait in memory and are written with log_batch (1000 a call, MLflow's limit) every 5 s
# and at the end, so the loop itself never waits on the store. On sqlite a call costs ~3.6 ms plus
# ~52 µs a point, nearly all of it SQLAlchemy's ORM inside MLflow (building, flushing and expiring
# one object per point); sqlite's own INSERTs are ~4 ms of a 1000-point call (more as the store
# grows) and its 4 fsyncs under 1 ms, so the flush interval and chunk size barely matter.
FLUSH_POINTS, FLUSH_SECONDS = 1000, 5.0
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


_CLIENTS: Dict[str, Any] = {}


def connect(uri: str, experiment_name: str):
    """(client, experiment_id). Creating a fresh sqlite store from several processes at once
    corrupts it, so the schema and the experiment are created under a file lock."""
    check_uri(uri)
    # We already checked that the server answers. Once a run is under way, a server restart
    # (~30 s with PostgreSQL) must not fail it: 6 retries back off 0+4+8+16+32+64 s, ~2 min,
    # and the points wait in the buffer meanwhile (tests/cluster restarts the server mid-sweep).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "6")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from filelock import FileLock

    client = _client(uri)
    path = sqlite_path(uri) if uri.startswith("sqlite") else None
    if path is None:
        return client, _experiment_id(client, experiment_name, None)
    with FileLock(str(path) + ".lock", timeout=120):
        return client, _experiment_id(client, experiment_name, (path.parent / "mlartifacts").as_uri())


def _client(uri: str):
    """One MlflowClient per store and process: a sweep's jobs share it (~50 ms each)."""
    if uri not in _CLIENTS:
        from mlflow.tracking import MlflowClient

        # No sqlite pragmas on MLflow's engine: WAL with synchronous=NORMAL measured no faster
        # (the cost is Python, above, not the disk), and WAL sticks to the file for every later
        # user: it does not work on a network file system (a cluster sweep's shared store), and
        # readers such as `mlflow ui` then need write access to the store's folder.
        for name in ("mlflow", "alembic"):  # their INFO lines would break "one line per run"
            logging.getLogger(name).setLevel(logging.WARNING)
        _CLIENTS[uri] = MlflowClient(tracking_uri=uri)
    return _CLIENTS[uri]


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
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        while self._points:  # a chunk leaves the buffer only once stored (Ctrl-C may come mid-way)
            chunk = self._points[:FLUSH_POINTS]
            self.client.log_batch(self.id, metrics=chunk)
            del self._points[:len(chunk)]
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
    """The sweep's parent run id, from the file SweepCallback left in the sweep dir: the one
    place that the jobs of every launcher share, on other hosts too."""
    path = Path(sweep_dir)
    if not path.is_absolute() and HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.cwd) / path  # the launch dir, even with job.chdir
    p = path / PARENT_FILE
    return p.read_text().strip() if p.is_file() else None


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
        for stale in self.sweep_dir.glob(f"**/{RESULT_FILE}"):  # a reused sweep dir: not ours
            stale.unlink()
        # The only route to the jobs: every launcher (submitit on other hosts included) shares it.
        (self.sweep_dir / PARENT_FILE).write_text(self.parent.id)
        SWEEP_FAILURES.clear()
        ACTIVE_PARENT[:] = [self.parent]

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        results = _job_results(self.sweep_dir)
        done = [r for r in results if r["status"] in ("FINISHED", "SKIPPED")]
        failed = [r for r in results if r not in done]
        SWEEP_FAILURES[:] = [f"{r['name']}: {r.get('reason') or r['status']}" for r in failed]
        tags = {"runner.jobs": len(results), "runner.failed_jobs": len(failed)}
        if failed:
            tags["runner.failed"] = "; ".join(SWEEP_FAILURES)[:5000]
        reused = [r["run_id"] for r in done if r["status"] == "SKIPPED"]
        if reused:  # resume: these jobs are runs of an earlier sweep; compare lists them too
            tags["runner.reused_run_ids"] = ",".join(reused[:150])  # whole ids, within a tag's size
        if done:
            best = min(done, key=lambda r: _sort_loss(r["final_loss"]))
            tags.update({"runner.best_run_id": best["run_id"], "runner.best_run_name": best["name"]})
            self.parent.log("best_final_loss", best["final_loss"], 0)
        self.parent.set_tags(tags)
        self._log_overlay(results)
        self.parent.end(None)
        ACTIVE_PARENT.clear()
        print(f"sweep: {len(done)} of {len(results)} jobs ok"
              + (f", best {best['name']} final_loss={best['final_loss']:.6g} run {best['run_id']}"
                 if done else "") + f"; parent run {self.parent.id}")


    def _log_overlay(self, results: List[Dict[str, Any]]) -> None:
        """sweep_loss_curves.png on the parent: every job's loss curve in one plot."""
        import tempfile

        from runner import plots

        curves = {}
        for r in results:
            points = r.get("curve") or []
            if not points and r["status"] == "SKIPPED":  # resume: the earlier run's curve
                points = curve(self.parent.client, r["run_id"])
            if points:  # Optuna may try one config twice: keep both lines apart
                curves[r["name"] if r["name"] not in curves else f"{r['name']} ({r['run_id'][:8]})"] = points
        if curves:
            with tempfile.TemporaryDirectory() as tmp:
                plots.overlay(curves, Path(tmp) / "sweep_loss_curves.png", self.parent.name)
                self.parent.log_artifacts(tmp)


def _job_results(sweep_dir: Path) -> List[Dict[str, Any]]:
    """Every job's result.json; a job dir that Hydra set up but that has none was killed or
    crashed hard (out of memory, a cluster time limit): it counts as failed, never as absent."""
    job_dirs = {p.parent for p in sweep_dir.glob("**/.hydra")} | \
        {p.parent for p in sweep_dir.glob(f"**/{RESULT_FILE}")}
    results = []
    for job_dir in sorted(job_dirs, key=_job_order):
        path = job_dir / RESULT_FILE
        if path.is_file():
            results.append(json.loads(path.read_text()))
            continue
        overrides = job_dir / ".hydra" / "overrides.yaml"
        name = ",".join(OmegaConf.load(overrides)) if overrides.is_file() else str(job_dir)
        results.append({"status": "LOST", "name": name or str(job_dir),
                        "reason": f"no {RESULT_FILE} in {job_dir} (killed or crashed)"})
    return results


def _job_order(job_dir: Path):
    return (int(job_dir.name), "") if job_dir.name.isdigit() else (float("inf"), str(job_dir))


def _sort_loss(value: Any) -> float:
    return value if isinstance(value, (int, float)) and value == value else float("inf")


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


# ---- reading a store back (python -m runner.compare) -----------------------------------------
def open_store(uri: str):
    """A client on an existing store; UserError when there is none (reading must not create one)."""
    check_uri(uri)
    path = sqlite_path(uri) if uri.startswith("sqlite") else None
    if path is not None and not path.is_file():
        raise UserError(f"tracking.uri={uri!r}: no MLflow store at {str(path)!r}; run a sweep first "
                        "(python -m runner -m lr=1e-3,1e-2) or give --tracking-uri")
    return _client(uri)


def latest_sweep(client, experiment_name: Optional[str] = None):
    """The most recently started sweep parent run (tag runner.sweep=true), or None."""
    if experiment_name:
        exp = client.get_experiment_by_name(experiment_name)
        if exp is None:
            raise UserError(f"--experiment={experiment_name!r}: no such experiment in this store")
        ids = [exp.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return None
    runs = client.search_runs(ids, "tags.`runner.sweep` = 'true'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def get_run(client, run_id: str):
    """The run with this id, or UserError naming it."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as e:
        raise UserError(f"--parent={run_id!r}: no such run in this store") from e


def children(client, parent) -> list:
    """The parent's child runs, plus the earlier runs a resumed sweep reused instead of rerunning."""
    runs = client.search_runs([parent.info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=5000)
    reused = parent.data.tags.get("runner.reused_run_ids", "")
    known = {r.info.run_id for r in runs}
    return runs + [client.get_run(i) for i in reused.split(",") if i and i not in known]


def curve(client, run_id: str, key: str = "loss") -> List[List[float]]:
    """[[step, value], ...] of one metric, in step order."""
    return [[m.step, m.value] for m in sorted(client.get_metric_history(run_id, key),
                                              key=lambda m: (m.step, m.timestamp))]
