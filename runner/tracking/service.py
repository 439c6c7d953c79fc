"""The tracking process: one per CLI invocation (a warm sweep's workers share the sweep's), or
per parallel worker of joblib and submitit, started before torch is imported. It imports mlflow
while the trainer imports torch and trains, owns the MLflow runs, batches their metrics, and
closes every run it opened: as the trainer says, or, when the trainer's end of the pipe closes
first (kill -9, the OOM killer, a cluster's hard limit), KILLED with
`runner.failure=process_died` after writing every point it had received.

This is wandb's service process in small: the trainer only hands records over a pipe (a send of
a few hundred bytes) and waits for the store only to learn its run id at the end. Files (the
artifacts, the data, the model) go through a spool folder, not the pipe: a pipe of 188 MB of
MNIST would stall the trainer until the service had read it. Unlike wandb there is no socket or
shared server: a pipe per trainer needs no port and dies with it, which is what tells the service.

This file is the trainer's side: `Service`, interface.Tracking over the pipe (record.Tracker
in-process), and this process's one Service; remote_run.py a run's (RemoteRun, record.Run's
twin); process.py the process's side; messages.py both.
"""
import contextlib
import itertools
import os
import signal
import shutil
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from runner.errors import Offline, UserError
from runner.tracking import process, record
from runner.tracking.interface import RunRecord, Tracking
from runner.tracking.messages import Call, Refused, Reply, Started
from runner.tracking.remote_run import RemoteRun

HELD_SIGNALS = {getattr(signal, s) for s in ("SIGINT", "SIGTERM") if hasattr(signal, s)}


class TrackingError(RuntimeError):
    """The store refused a record after the run started, or the tracking process died."""


@contextlib.contextmanager
def _whole_message():
    """Ctrl-C or SIGTERM held back while a message is written or read, and delivered right after.
    A handler that raised between two writes of one message (the pipe full, the tracking process
    behind) left half of it in the pipe: the tracking process then waited for the rest, and the
    trainer for the answer to its close, for ever (a warm sweep signalled under load); between two
    reads, the next answer would be read from the middle of this one."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class Service(Tracking):
    """interface.Tracking through this process's own tracking process."""

    def __init__(self, hub: Optional["Service"] = None) -> None:
        """A tracking process of its own; or, with `hub`, a new pipe to hub's (attach)."""
        if hub is None:
            self.spool = Path(tempfile.mkdtemp(prefix="runner-tracking-"))  # files handed over
            self.proc, self.out, self.inp, self.control = process.spawn(self.spool)
        else:
            self.spool, self.proc, self.control = hub.spool, hub.proc, None
            self.out, self.inp = process.attach(hub.control)
        self.pid = os.getpid()  # a forked child must start its own
        self.handles = itertools.count(1)
        self.started = hub is not None  # a run or a query reached it: it must not be killed
        self.errors: Dict[Optional[int], Refused] = {}  # the first refusal of each run
        self.reported: Dict[int, Started] = {}  # handle -> its run's ids, as the service reports them
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
        message = Call(handle, method, args, reply, str(remove) if remove else None)
        with _whole_message():
            try:
                self.out.send(message)
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
            self.inp.poll(None)  # the wait, which a signal may cut short
            with _whole_message():  # the read, which it may not
                message = self.inp.recv()
        except (EOFError, OSError):
            raise self._died() from None
        self._note(message)
        return message

    def _note(self, message: tuple) -> None:
        if isinstance(message, Started):
            self.reported[message.handle] = message
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
        self.close_pipes()

    def close_pipes(self) -> None:
        for end in (self.out, self.inp, self.control):
            if end is not None:
                end.close()

    def settle(self) -> None:
        """Wait until every trainer attached to this tracking process has gone (its runs closed:
        by the trainer, or KILLED when its pipe closed)."""
        self.ask(None, process.SETTLED)

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
            if handle in self.reported:
                run_id = self.reported[handle].run_id
                try:  # mlflow, in this process, only now
                    record.Tracker().fail(uri, run_id, "tracking_process_died")
                    closed.append(run_id)
                except Exception:  # noqa: BLE001  the store itself may be what failed
                    pass
        self.open.clear()
        self.dead = TrackingError(f"tracking: the tracking process ended unexpectedly (exit code {code}); "
                                  + (f"run {', '.join(closed)} marked FAILED" if closed else "no run was open"))
        return self.dead


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
        _SERVICE.close_pipes()
    _SERVICE = None


def for_workers(n: int) -> List[Service]:
    """hydra/launcher=warm: n more pipes to this process's tracking process, one for each worker
    it will fork: one tracking process, its mlflow imported and its store open already, records
    the whole sweep (a process a worker cost 1.9 s of CPU for mlflow alone, during the first jobs:
    make bench P5). The sweep process calls close_copies() once it has forked."""
    hub = get()
    return [Service(hub) for _ in range(n)]


def adopt(own: Service, every: List[Service]) -> None:
    """In a forked worker: `own` becomes this process's pipe to the tracking process. The copies
    of the sweep process's pipe and of the other workers' pipes are closed: the tracking process
    must see each trainer's end close (a kill -9) when that trainer dies, and not later."""
    global _SERVICE
    forget_inherited()
    close_copies([s for s in every if s is not own])
    own.pid = os.getpid()
    _SERVICE = own


def close_copies(services: List[Service]) -> None:
    for s in services:
        s.close_pipes()


def release() -> None:
    """The CLI is done: a tracking process that got nothing is stopped; one that holds runs
    closes them and exits when this process's end of the pipe closes."""
    global _SERVICE
    if _SERVICE is not None and _SERVICE.pid == os.getpid():
        _SERVICE.stop()
    _SERVICE = None

