"""The tracking surface the trainer and the sweep use, in one place: record.Tracker / record.Run
track in this process, service.Service / remote_run.RemoteRun through the tracking process; both
pairs implement these Protocols, and tests/test_tracking.py checks that their signatures match.
The shape is torchtune's MetricLoggerInterface: a few calls, nothing about how they are stored."""
from typing import Any, Dict, List, Optional, Protocol, Tuple


class RunRecord(Protocol):
    """One run, open from start_run until end."""

    @property
    def id(self) -> str: ...  # the MLflow run id (through the process: waits for the store)

    @property
    def name(self) -> str: ...

    @property
    def uri(self) -> str: ...

    @property
    def experiment_id(self) -> str: ...

    def log_params(self, params: Dict[str, Any]) -> None: ...

    def set_tags(self, tags: Dict[str, Any]) -> None: ...

    def set_experiment_tag(self, key: str, value: str) -> None: ...

    def log(self, key: str, value: float, step: int) -> None: ...

    def flush(self) -> None: ...  # buffered points to the store (through the process: handed over)

    def log_artifacts(self, local_dir: str) -> None: ...

    def log_dataset(self, name: str, source: str, X: Any, y: Any, context: str = "train") -> None: ...

    # None, not the model's id: through the process the id would make the trainer wait for the
    # store mid-run, which the process exists to avoid; the id is on the run's outputs.
    def log_model(self, module: Any, example: Any, step: int) -> None: ...

    def end(self, error: Optional[BaseException] = None) -> str: ...  # FINISHED, FAILED or KILLED


class Tracking(Protocol):
    """Where runs are opened: a store (uri) and an experiment in it."""

    def prepare(self, uri: str, experiment_name: str) -> None: ...  # open them now, ahead of the run

    def start_run(self, uri: str, experiment_name: str, name: str, tags: Dict[str, Any]) -> RunRecord: ...

    def find_finished(self, uri: str, experiment_name: str,
                      digest: str) -> Optional[Tuple[str, str, float]]: ...  # for resume

    def curve(self, uri: str, run_id: str) -> List[List[float]]: ...

    def fail(self, uri: str, run_id: str, reason: str) -> None: ...  # end a run left open: FAILED
