"""One run's record: params and tags at once, metrics buffered into log_batch calls, artifacts,
the data as an MLflow dataset and the model as an MLflow model; closed FINISHED, FAILED or
KILLED, never left RUNNING."""
import hashlib
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from runner.errors import Diverged, Offline, UserError
from runner.tracking import model_folder, store
from runner.tracking.interface import RunRecord, Tracking

# Points wait in memory and are written with log_batch (1000 a call, MLflow's limit) every 5 s
# and at the end, so the loop itself never waits on the store. On sqlite a call costs ~3.6 ms plus
# ~52 µs a point, nearly all of it SQLAlchemy's ORM inside MLflow (building, flushing and expiring
# one object per point); sqlite's own INSERTs are ~4 ms of a 1000-point call (more as the store
# grows) and its 4 fsyncs under 1 ms, so the flush interval and chunk size barely matter.
FLUSH_POINTS, FLUSH_SECONDS = 1000, 5.0
# How the store says that an equal dataset was inserted meanwhile: PostgreSQL, sqlite.
DATASET_COLLISION = ("dataset_pk", "UNIQUE constraint failed: datasets.")
# Not what defines a run: how it is named, stored, resumed or debugged (tags or nothing).
BOOKKEEPING = ("run_name", "resume", "debug", "tracking", "experiment_name")


class Tracker(Tracking):
    """interface.Tracking in this process: what `train.run(cfg)` uses when called from Python,
    and what the tracking process (process.py) runs for the CLI; service.Service is its twin."""

    def __init__(self) -> None:
        self._experiments: Dict[Tuple[str, str], Tuple[Any, str]] = {}

    def connect(self, uri: str, experiment_name: str) -> Tuple[Any, str]:
        """store.connect once per store and experiment: prepare, then every run of a sweep."""
        key = (uri, experiment_name)
        if key not in self._experiments:
            self._experiments[key] = store.connect(uri, experiment_name)
        return self._experiments[key]

    def prepare(self, uri: str, experiment_name: str) -> None:
        self.connect(uri, experiment_name)  # the store and the experiment, created if new

    def start_run(self, uri: str, experiment_name: str, name: str, tags: Dict[str, Any]) -> RunRecord:
        client, experiment_id = self.connect(uri, experiment_name)
        return Run(client, uri, experiment_id, name, tags)

    def find_finished(self, uri: str, experiment_name: str,
                      digest: str) -> Optional[Tuple[str, str, float]]:
        """(run id, name, final_loss) of a FINISHED run with this config hash, for resume."""
        client, experiment_id = self.connect(uri, experiment_name)
        run = find_finished(client, experiment_id, digest)
        return None if run is None else (run.info.run_id, run.info.run_name,
                                         run.data.metrics.get("final_loss", math.nan))

    def fail(self, uri: str, run_id: str, reason: str) -> None:
        """End a run that its tracking process left open: FAILED, with the reason as a tag."""
        client = store.get_client(uri)
        client.set_tag(run_id, "runner.failure", reason)
        client.set_terminated(run_id, "FAILED")

    def curve(self, uri: str, run_id: str) -> List[List[float]]:
        from runner.tracking.read import curve

        return curve(store.get_client(uri), run_id)


class Run:
    """interface.RunRecord: one MLflow run on a client from store.connect. The methods past the
    Protocol's (log_points, info, close, log_*_file) are the tracking process's."""

    def __init__(self, client, uri: str, experiment_id: str, name: str, tags: Dict[str, str],
                 run_id: Optional[str] = None):
        """A new run, or with `run_id` one already in the store (runner.sync's)."""
        import mlflow
        from mlflow.entities import Metric

        self._metric = Metric
        self.client = client
        self.uri = uri
        self.experiment_id = experiment_id
        self.id, self.name = run_id, name
        if run_id is None:
            run = client.create_run(experiment_id, run_name=name,
                                    tags={**tags, "runner.mlflow_version": mlflow.__version__})
            self.id, self.name = run.info.run_id, run.info.run_name
        self._points: List[Any] = []
        self._last_flush = time.monotonic()
        self.received = 0  # points given to log_points: what the tracking process holds

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

    def log_points(self, points: List[Tuple[str, float, int, int]]) -> None:
        """(key, value, timestamp in ms, step) points, as the tracking process receives them."""
        self._points.extend(self._metric(*p) for p in points)
        self.received += len(points)
        if len(self._points) >= FLUSH_POINTS or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def info(self) -> Tuple[str, str, str]:
        return self.id, self.name, self.experiment_id

    def set_experiment_tag(self, key: str, value: str) -> None:
        self.client.set_experiment_tag(self.experiment_id, key, value)

    def flush(self) -> None:
        while self._points:  # a chunk leaves the buffer only once stored (Ctrl-C may come mid-way)
            chunk = self._points[:FLUSH_POINTS]
            self.client.log_batch(self.id, metrics=chunk)
            del self._points[:len(chunk)]
        self._last_flush = time.monotonic()

    def log_artifacts(self, local_dir: str) -> None:
        self.client.log_artifacts(self.id, local_dir)

    def log_dataset_file(self, name: str, source: str, path: str, context: str = "train") -> None:
        """log_dataset of the arrays X and y in an .npz file (the tracking process gets them so)."""
        import numpy as np

        with np.load(path) as arrays:
            self.log_dataset(name, source, arrays["X"], arrays["y"], context)

    def log_dataset(self, name: str, source: str, X: Any, y: Any, context: str = "train") -> None:
        """The data as an MLflow dataset (the runs table's Dataset column): its name, where it
        came from, and MLflow's digest of the arrays, equal for equal data."""
        import warnings

        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # "cannot resolve source": a generator is no file, fine
            warnings.simplefilter("ignore")
            ds = mlflow.data.from_numpy(X, targets=y, source=source, name=name)
        inputs = [DatasetInput(ds._to_mlflow_entity(), [InputTag("mlflow.data.context", context)])]
        try:
            self.client.log_inputs(self.id, datasets=inputs)
        except Exception as e:  # noqa: BLE001  re-raised unless it is that collision
            # MLflow's store looks the dataset up, then inserts it: two runs of one experiment
            # logging equal data at once (parallel jobs; on sqlite too, seen in make test under
            # load) collide on that insert, whose transaction is rolled back. Once more finds the
            # other run's row.
            if not any(m in str(e) for m in DATASET_COLLISION):
                raise
            self.client.log_inputs(self.id, datasets=inputs)

    def log_model(self, module: Any, example: Any, step: int) -> None:
        """The torch module as an MLflow model named `model` (the runs table's Models column;
        `mlflow.pytorch.load_model("runs:/RUN_ID/model")` loads it), saved as a pickle:
        MLflow's default pt2 export imports torch._dynamo and traces the module, 1.7 s a run
        here against 0.1 s. model.pt beside it is the weights-only state_dict. Its id is on the
        run's outputs (interface.RunRecord says why it is not returned)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pth"
            output, torch_version = model_folder.save_module(module, example, path)
            self.log_model_file(str(path), example, output, step, torch_version)

    def log_model_file(self, path: str, example, output, step: int, torch_version: str) -> str:
        """log_model of a module torch.save wrote to `path`: a logged model with the pytorch
        flavour's folder, linked to this run's outputs (the Models column)."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        model = self.client.create_logged_model(self.experiment_id, name="model", source_run_id=self.id)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "model"
            if model_folder.mlflow_tested():
                model_folder.write(root, path, example, output, torch_version)
            else:
                model_folder.save_with_mlflow(root, path, example, output)
            self.client.log_model_artifacts(model.model_id, str(root))
        self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        self.client.log_outputs(self.id, [LoggedModelOutput(model.model_id, step)])
        return model.model_id

    def end(self, error: Optional[BaseException] = None) -> str:
        """Flush, then FINISHED, FAILED (with reason tags) or KILLED. Never leaves it RUNNING."""
        return self.close(*status_of(error))[2]

    def close(self, status: str, tags: Dict[str, Any]) -> Tuple[str, str, str]:
        """Flush, set the reason tags, end the run as `status`. Returns (run id, name, status)."""
        try:
            self.flush()
        finally:
            try:  # a store that refused the points or the tags may still take the status
                if tags:
                    self.set_tags(tags)
            finally:
                self.client.set_terminated(self.id, status)
        return self.id, self.name, status



def status_of(error: Optional[BaseException]):
    if error is None:
        return "FINISHED", {}
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "KILLED", {"runner.failure": "interrupted"}
    if isinstance(error, Offline):
        return "FAILED", {"runner.failure": "server_unreachable", "runner.failure_message": str(error)[:5000]}
    if isinstance(error, Diverged):
        return "FAILED", {"runner.failure": "diverged", "runner.failed_epoch": error.epoch,
                          "runner.failed_value": error.value, "runner.failure_message": str(error)}
    kind = "bad_input" if isinstance(error, UserError) else type(error).__name__
    return "FAILED", {"runner.failure": kind, "runner.failure_message": str(error)[:5000]}


# ---- what a run's params are --------------------------------------------------------------------
def params(resolved: Dict[str, Any]) -> Dict[str, Any]:
    """The values that define a run, flattened with dotted keys. No bookkeeping, no option that
    does not apply, and no name that is also a metric: `loss` (the function) is `loss_fn`."""
    keep = {k: v for k, v in resolved.items() if k not in BOOKKEEPING}
    keep["loss_fn"] = keep.pop("loss")
    if not keep.get("check_grad"):
        keep.pop("check_grad_tol", None)
    model = dict(keep["model"])
    if model.get("init") != "normal":
        model.pop("std", None)
    if model.get("init") != "constant":
        model.pop("value", None)
    keep["model"] = model
    flat = flatten(keep)
    # None means "detected" or "not set" (device.index, dataset.delimiter): nothing to record.
    # A full batch is the exception: optim.batch_size=None is a choice, shown as such.
    return {k: v for k, v in flat.items() if v is not None or k == "optim.batch_size"}


def flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_hash(container: Dict[str, Any]) -> str:
    """What makes two runs 'the same experiment' for resume: the config less its bookkeeping."""
    keep = {k: v for k, v in container.items() if k not in BOOKKEEPING}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_finished(client, experiment_id: str, digest: str) -> Optional[Any]:
    """A FINISHED run of this experiment with the same config hash, for resume."""
    runs = client.search_runs([experiment_id], f"tags.`runner.config_hash` = '{digest}' "
                              "and attributes.status = 'FINISHED'", max_results=1)
    return runs[0] if runs else None
