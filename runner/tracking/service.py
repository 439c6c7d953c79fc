"""The tracking process: one per CLI invocation, or per parallel worker (joblib, submitit), started
before torch is imported. It imports mlflow while the trainer imports torch and trains, owns the
MLflow runs, batches their metrics, and closes every run it opened: as the trainer says, or, when
the trainer's end of the pipe closes first (kill -9, the OOM killer, a cluster's hard limit),
KILLED with `runner.failure=process_died` after writing every point it had received.

This is wandb's service process in small: the trainer only hands records over a pipe (a send of
a few hundred bytes) and waits for the store only to learn its run id at the end. Files (the
artifacts, the data, the model) go through a spool folder, not the pipe: a pipe of 188 MB of
MNIST would stall the trainer until the service had read it. Unlike wandb there is no socket or
shared server: a pipe per trainer needs no port and dies with it, which is what tells the service.

This file is the trainer's side: `Service` and `RemoteRun`, interface.Tracking and RunRecord
over the pipe (record.Tracker, record.Run in-process); process.py the process's; messages.py both.
"""
import itertools
import os
import shutil
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from runner.errors import Offline, UserError
from runner.tracking import model_folder, process, record
from runner.tracking.interface import RunRecord, Tracking
from runner.tracking.messages import Call, Refused, Reply, Started

HANDOVER_SECONDS, HANDOVER_POINTS = 0.2, 1000  # the trainer's points wait at most this long


class TrackingError(RuntimeError):
    """The store refused a record after the run started, or the tracking process died."""


class Service(Tracking):
    """interface.Tracking through this process's own tracking process."""

    def __init__(self) -> None:
        self.spool = Path(tempfile.mkdtemp(prefix="runner-tracking-"))  # files handed over
        self.proc, self.out, self.inp = process.spawn(self.spool)
        self.pid = os.getpid()  # a forked child must start its own
        self.handles = itertools.count(1)
        self.started = False  # a run or a query reached it: it must not be killed
        self.errors: Dict[Optional[int], Refused] = {}  # the first refusal of each run
        self.run_ids: Dict[int, str] = {}  # handle -> MLflow run id, as the service reports them
        self.open: Dict[int, str] = {}  # handle -> store URI of each run not closed yet
        self.dead: Optional[TrackingError] = None

    def __getstate__(self) -> dict:
        # Hydra's joblib launcher pickles the callbacks (the sweep's, which holds the parent run)
        # to its workers: there this process's pipe means nothing; get() starts their own.
        return {"pid": None}

    # what record.Tracker does in-process
    def prepare(self, uri: str, experiment_name: str) -> None:
        """Open the store and the experiment now, while this process imports torch."""
        self.send(None, "prepare", (uri, experiment_name))

    def start_run(self, uri: str, experiment_name: str, name: str, tags: Dict[str, Any]) -> RunRecord:
        handle = next(self.handles)
        self.open[handle] = uri
        # plain str: torch.__version__ is torch's own str type, and unpickling it imports torch
        self.send(handle, "start_run", (uri, experiment_name, name, {k: str(v) for k, v in tags.items()}))
        return RemoteRun(self, handle, uri, name)

    def find_finished(self, uri: str, experiment_name: str, digest: str) -> Optional[Tuple[str, str, float]]:
        return self.ask(None, "find_finished", uri, experiment_name, digest)

    def curve(self, uri: str, run_id: str) -> List[List[float]]:
        return self.ask(None, "curve", uri, run_id)

    def fail(self, uri: str, run_id: str, reason: str) -> None:
        self.ask(None, "fail", uri, run_id, reason)

    # the pipe
    def send(self, handle: Optional[int], method: str, args: tuple, reply: bool = False,
             remove: Optional[Path] = None) -> None:
        self.started = True
        try:
            self.out.send(Call(handle, method, args, reply, str(remove) if remove else None))
        except OSError:
            raise self._died() from None

    def ask(self, handle: Optional[int], method: str, *args) -> Any:
        """Send, wait for the answer; the error on this call or on the run's start (its root cause) is raised."""
        self.send(handle, method, args, reply=True)
        while True:
            message = self._receive()
            if isinstance(message, Reply):
                return message.value
            if isinstance(message, Refused) and message.answered:
                self.raise_error(handle, message.handle)

    def raise_error(self, handle: Optional[int], *also: Optional[int], offline: bool = True) -> None:
        """Raise the first error reported on this run, if one came (no waiting); offline=False: not Offline."""
        while self._ready():
            self._receive()
        for h in (handle, *also):
            if h in self.errors and (offline or not self.errors[h].offline):
                r = self.errors.pop(h)  # offline: its server stopped answering, kept on disk (spool.py)
                raise (Offline(f"tracking: {r.message}") if r.offline else UserError(r.message) if r.user
                       else TrackingError(f"tracking: {r.message}"))

    def _ready(self) -> bool:
        try:
            return self.inp.poll()
        except OSError:
            raise self._died() from None

    def _receive(self) -> tuple:
        """The next message: a Reply, or news of a run (Started, Refused)."""
        try:
            message = self.inp.recv()
        except (EOFError, OSError):
            raise self._died() from None
        self._note(message)
        return message

    def _note(self, message: tuple) -> None:
        if isinstance(message, Started):
            self.run_ids[message.handle] = message.run_id
        elif isinstance(message, Refused):  # the first refusal of a run is its root cause
            self.errors.setdefault(message.handle, message)

    def spooled(self, name: str) -> Path:
        """A fresh path in the spool folder; the service deletes what it was given."""
        return Path(tempfile.mkdtemp(dir=self.spool)) / name

    def stop(self) -> None:
        """No run will come: stop it at once if it has nothing to close, else let it finish."""
        if not self.started and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            shutil.rmtree(self.spool, ignore_errors=True)
        self.out.close()

    def _died(self) -> TrackingError:
        """The tracking process is gone (killed, out of memory): close here, FAILED, the runs it
        had started, so that none stays RUNNING; the points it held are lost."""
        if self.dead is not None:
            return self.dead
        code = self.proc.wait()
        shutil.rmtree(self.spool, ignore_errors=True)  # its to clear, had it lived
        try:  # what it said before it died is still in the pipe: the ids of the runs it started
            while self.inp.poll():
                self._note(self.inp.recv())
        except (EOFError, OSError):
            pass
        self.errors.clear()
        closed = []
        for handle, uri in self.open.items():
            if handle in self.run_ids:
                try:  # mlflow, in this process, only now
                    record.Tracker().fail(uri, self.run_ids[handle], "tracking_process_died")
                    closed.append(self.run_ids[handle])
                except Exception:  # noqa: BLE001  the store itself may be what failed
                    pass
        self.open.clear()
        self.dead = TrackingError(f"tracking: the tracking process ended unexpectedly (exit code {code}); "
                                  + (f"run {', '.join(closed)} marked FAILED" if closed else "no run was open"))
        return self.dead


class RemoteRun:
    """interface.RunRecord over the pipe (record.Run is its twin). Points are handed over in
    batches (every HANDOVER_SECONDS or HANDOVER_POINTS); what was handed over survives the trainer."""

    def __init__(self, service: Service, handle: int, uri: str, name: str):
        self.service, self.handle, self.uri, self.name = service, handle, uri, name
        self._id: Optional[str] = None
        self._experiment_id: Optional[str] = None
        self._points: List[Tuple[str, float, int, int]] = []
        self._handed = time.monotonic()

    @property
    def id(self) -> str:
        if self._id is None:  # end() sets it too, from the close's answer
            self._info()
        return self._id

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._info()
        return self._experiment_id

    def _info(self) -> None:  # waits for the service to have created the run
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


_SERVICE: Optional[Service] = None  # this process's: get() starts it, release() ends it


def tracker() -> Tracking:
    """What the CLI tracks through: this process's tracking process, or, with
    RUNNER_TRACKING_PROCESS=0 (a debugger, `make bench`'s comparison), tracking in-process."""
    if os.environ.get("RUNNER_TRACKING_PROCESS", "1") == "0":
        return record.Tracker()
    return get()


# Hydra's flags that print and exit: no run, so no tracking process.
PRINT_ONLY = ("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i",
              "--shell-completion", "-sc")


def start_early(argv: List[str]) -> None:
    """The CLI starts it before importing Hydra (~0.3 s more of overlap), unless it only prints.
    A command line that does not compose stops it again, unused (release)."""
    if not set(PRINT_ONLY) & {a.split("=", 1)[0] for a in argv}:
        tracker()


def get() -> Service:
    """This process's tracking process, started on first use."""
    global _SERVICE
    if _SERVICE is None or _SERVICE.pid != os.getpid():
        _SERVICE = Service()
    return _SERVICE


def forget_inherited() -> None:
    """In a forked worker (hydra/launcher=warm): the sweep process's tracking process is not this
    one's to use or stop. Close this copy of its pipe, so that it still sees its trainer's end
    close when the sweep process dies; get() then starts this worker's own."""
    global _SERVICE
    if _SERVICE is not None and _SERVICE.pid != os.getpid():
        for conn in (_SERVICE.out, _SERVICE.inp):
            conn.close()
    _SERVICE = None


def for_workers(n: int) -> List[Service]:
    """hydra/launcher=warm: a tracking process for each of n workers, started before the sweep
    process imports torch and forks them, so that their imports of mlflow overlap that import
    instead of the workers' first jobs. The sweep process calls close_copies() once it has forked."""
    return [Service() for _ in range(n)]


def adopt(own: Service, every: List[Service]) -> None:
    """In a forked worker: `own` becomes this process's tracking process. The copies of the sweep
    process's pipe and of the other workers' pipes are closed: each tracking process must see its
    own trainer's end close (a kill -9) and nobody else's."""
    global _SERVICE
    forget_inherited()
    close_copies([s for s in every if s is not own])
    own.pid = os.getpid()  # it is the sweep process's child: stop() here closes the pipe, no wait
    _SERVICE = own


def close_copies(services: List[Service]) -> None:
    for s in services:
        s.out.close()
        s.inp.close()


def release() -> None:
    """The CLI is done: a tracking process that got nothing is stopped; one that holds runs
    closes them and exits when this process's end of the pipe closes."""
    global _SERVICE
    if _SERVICE is not None and _SERVICE.pid == os.getpid():
        _SERVICE.stop()
    _SERVICE = None

