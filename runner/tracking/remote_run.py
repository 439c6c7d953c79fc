"""One run over the pipe: interface.RunRecord for the trainer, its records handed to the
tracking process (service.Service) in batches; record.Run is its in-process twin."""
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from runner.errors import Offline
from runner.tracking import model_folder, record

if TYPE_CHECKING:
    from runner.tracking.service import Service

HANDOVER_SECONDS, HANDOVER_POINTS = 0.2, 1000  # the trainer's points wait at most this long


class RemoteRun:
    """interface.RunRecord over the pipe (record.Run is its twin). Points are handed over in
    batches (every HANDOVER_SECONDS or HANDOVER_POINTS); what was handed over survives the trainer."""

    def __init__(self, service: "Service", handle: int, uri: str, name: str):
        self.service, self.handle, self.uri, self.name = service, handle, uri, name
        self._id: Optional[str] = None
        self._experiment_id: Optional[str] = None
        self._points: List[Tuple[str, float, int, int]] = []
        self._handed = time.monotonic()

    @property
    def id(self) -> str:
        if self._id is None:  # end() sets it too, from the close's answer
            self._learn_ids()
        return self._id

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._learn_ids()
        return self._experiment_id

    def _learn_ids(self) -> None:
        """From the service's Started, without a question once it came; else asked (it waits for
        the service to have created the run)."""
        started = self.service.reported.get(self.handle)
        if started is not None:
            self._id, self._experiment_id = self._id or started.run_id, started.experiment_id
        else:
            self._id, self.name, self._experiment_id = self.service.ask(self.handle, "info")

    def _send(self, method: str, *args, remove: Optional[Path] = None) -> None:
        self.service.send(self.handle, method, args, remove=remove)

    def log_params(self, params: Dict[str, Any]) -> None:
        self._send("log_params", {k: str(v) for k, v in params.items()})

    def set_tags(self, tags: Dict[str, Any]) -> None:
        self._send("set_tags", {k: str(v) for k, v in tags.items()})

    def set_experiment_tag(self, key: str, value: str) -> None:
        self._send("set_experiment_tag", key, value)

    def log(self, key: str, value: float, step: int) -> None:
        self._points.append((key, float(value), int(time.time() * 1000), step))
        if len(self._points) >= HANDOVER_POINTS or time.monotonic() - self._handed > HANDOVER_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._hand_over()
        self.service.raise_error(self.handle)  # a store that refused us: stop now, not at the end

    def _hand_over(self) -> None:
        if self._points:
            self._send("log_points", self._points)
            self._points = []
        self._handed = time.monotonic()

    def log_artifacts(self, local_dir: str) -> None:
        copy = self.service.spooled("artifacts")
        shutil.copytree(local_dir, copy)
        self._send("log_artifacts", str(copy), remove=copy.parent)

    def log_dataset(self, name: str, source: str, X: Any, y: Any, context: str = "train") -> None:
        import numpy as np

        path = self.service.spooled("data.npz")
        np.savez(path, X=X, y=y)
        self._send("log_dataset_file", name, source, str(path), context, remove=path.parent)

    def log_model(self, module: Any, example: Any, step: int) -> None:
        path = self.service.spooled("model.pth")
        output, torch_version = model_folder.save_module(module, example, path)
        self._send("log_model_file", str(path), example, output, step, torch_version, remove=path.parent)

    def end(self, error: Optional[BaseException] = None) -> str:
        status, tags = record.status_of(error)
        self._hand_over()  # on the way out with an error, without raising another
        if error is None:  # all handed over: FINISHED, also on disk (then the close says so)
            self.service.raise_error(self.handle, offline=False)
        closed = self.service.ask(self.handle, "close", status, tags)
        self.service.open.pop(self.handle, None)
        if closed:
            self._id, self.name, status, *kept = closed
            if kept:  # spool.OfflineRun's close: the run is on disk, not in the store; the line to print
                raise Offline(f"tracking: {kept[0]}")
        return status
