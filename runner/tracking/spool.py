"""A run kept on disk while its MLflow server does not answer (W&B's offline mode, in small). Once
MLflow's HTTP retries give up on a run, the tracking process (process.py) swaps the run's
record.Run for an OfflineRun here, which writes every later call to a folder; `python -m
runner.sync` (runner/sync.py) sends it when the server answers again.

mlflow-offline/<run id>/, in the folder the command was started from:
  run.json       where the run belongs: the server (without credentials), run and experiment id,
                 name, why it went offline. Written aside, then renamed into place.
  records.jsonl  one JSON object a line, in the order the calls came, each appended and fsynced:
                 {"params": {..}}, {"tags": {..}}, {"experiment_tag": [key, value]},
                 {"metrics": [[key, value, timestamp ms, step], ..]}, {"artifacts": "files/N"},
                 {"dataset": [name, source, "files/N/data.npz", context]},
                 {"model": ["files/N", step, torch version]}, {"end": [status, end time ms]}.
                 A crash mid-write can only cut the last line: the reader drops a line that is
                 not whole.
  files/N/       what a line names, copied in before the line is written
  sent           how many lines runner.sync has stored, so that a second sync goes on from there
"""
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

FOLDER = "mlflow-offline"


def on_server(uri: str) -> bool:
    """Only a server's runs go offline: a sqlite store's errors are the disk's, and fail the run."""
    return uri.lower().startswith(("http://", "https://"))


def unreachable(error: BaseException, uri: str) -> Optional[str]:
    """Why the server at `uri` did not answer, when that is what `error` says (MLflow's HTTP
    retries gave up: no connection, no answer in time, only 5xx answers); None for anything else."""
    if not on_server(uri):
        return None
    import requests

    seen: Optional[BaseException] = error
    while seen is not None:  # MLflow re-raises the requests error as an MlflowException
        if isinstance(seen, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            text = str(seen)  # requests reports a read timeout that outlived the retries so too
            return ("connection refused" if "refused" in text else
                    "no answer in MLFLOW_HTTP_REQUEST_TIMEOUT seconds" if "timed out" in text else "connection lost")
        if isinstance(seen, requests.exceptions.RetryError):
            return "it answered only with errors"
        seen = seen.__cause__ or seen.__context__
    return None


class OfflineRun:
    """record.Run's calls (those process.py makes), written to the run's folder, not the store."""

    def __init__(self, run: Any, reason: str, root: Path = Path(FOLDER)):
        from runner.tracking.store import without_credentials

        self.id, self.name, self.uri, self.experiment_id = run.id, run.name, run.uri, run.experiment_id
        self.received, self.points, self.reason = run.received, 0, reason
        self.folder = root.resolve() / run.id
        (self.folder / "files").mkdir(parents=True, exist_ok=True)
        self.server = without_credentials(run.uri) if on_server(run.uri) else run.uri
        write_aside(self.folder / "run.json", json.dumps(
            {"uri": self.server, "run_id": run.id, "experiment_id": run.experiment_id,
             "name": run.name, "reason": reason, "since": int(time.time() * 1000)}))
        self._lines = open(self.folder / "records.jsonl", "a", encoding="utf-8")
        self._files = len(list((self.folder / "files").iterdir()))
        self._metrics([(m.key, m.value, m.timestamp, m.step) for m in run._points])  # not sent yet

    def _append(self, record: Dict[str, Any]) -> None:
        self._lines.write(json.dumps(record) + "\n")
        self._lines.flush()
        os.fsync(self._lines.fileno())  # on disk before the next call: a crash loses no line

    def _new_files(self) -> Tuple[Path, str]:
        self._files += 1
        name = f"files/{self._files}"
        return self.folder / name, name

    def _metrics(self, points: List[Tuple[str, float, int, int]]) -> None:
        if points:
            self._append({"metrics": [list(p) for p in points]})
            self.points += len(points)

    def info(self) -> Tuple[str, str, str]:
        return self.id, self.name, self.experiment_id

    def log_params(self, params: Dict[str, Any]) -> None:
        self._append({"params": {k: str(v) for k, v in params.items()}})

    def set_tags(self, tags: Dict[str, Any]) -> None:
        self._append({"tags": {k: str(v) for k, v in tags.items()}})

    def set_experiment_tag(self, key: str, value: str) -> None:
        self._append({"experiment_tag": [key, value]})

    def log_points(self, points: List[Tuple[str, float, int, int]]) -> None:
        self.received += len(points)
        self._metrics(points)

    def flush(self) -> None:  # every record is on disk already
        pass

    def log_artifacts(self, local_dir: str) -> None:
        path, name = self._new_files()
        shutil.copytree(local_dir, path)
        self._append({"artifacts": name})

    def log_dataset_file(self, name: str, source: str, path: str, context: str = "train") -> None:
        folder, files = self._new_files()
        folder.mkdir()
        shutil.copy(path, folder / "data.npz")
        self._append({"dataset": [name, source, f"{files}/data.npz", context]})

    def log_model_file(self, path: str, example, output, step: int, torch_version: str) -> None:
        import numpy as np

        folder, files = self._new_files()
        folder.mkdir()
        shutil.copy(path, folder / "model.pth")
        np.savez(folder / "arrays.npz", example=example, output=output)
        self._append({"model": [files, step, torch_version]})

    def close(self, status: str, tags: Dict[str, Any]) -> Tuple[str, str, str, str]:
        """Write the status last; returns (run id, name, status, the line the CLI prints)."""
        self.set_tags({**tags, "runner.points_received": self.received})
        self._append({"end": [status, int(time.time() * 1000)]})
        self._lines.close()
        return self.id, self.name, status, self.line(status)

    def gone(self) -> str:
        return f"the MLflow server at {self.server} stopped answering ({self.reason})"

    def line(self, status: str) -> str:
        shown = shown_path(self.folder)
        return (f"{self.gone()}; run {self.id} is kept in {shown} as {status} ({self.points} points); "
                f"send it with: python -m runner.sync {shown}")


def shown_path(folder: Path) -> str:
    """`folder` relative to the current folder when it is inside it (mlflow-offline/ID)."""
    try:
        return str(folder.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(folder)


def write_aside(path: Path, text: str) -> None:
    """Write `path` whole or not at all: a crash leaves the old file or the new, never half."""
    aside = path.with_name(path.name + ".tmp")
    with open(aside, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(aside, path)


def read(folder: Path) -> Tuple[Dict[str, Any], List[Dict[str, Any]], int]:
    """run.json, the whole lines of records.jsonl, and how many of them were sent already."""
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    records = []
    with open(folder / "records.jsonl", encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):  # cut by a crash mid-write: never fsynced whole
                break
            records.append(json.loads(line))
    sent = folder / "sent"
    return run, records, int(sent.read_text()) if sent.is_file() else 0


def mark_sent(folder: Path, lines: int) -> None:
    write_aside(folder / "sent", str(lines))
