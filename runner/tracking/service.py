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

Trainer side: `Service` (has record.Tracker's methods) and `RemoteRun` (has record.Run's).
Process side: `serve()`, run as `python -m runner.tracking.service IN_FD OUT_FD SPOOL`.
"""
import gc
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from runner.errors import UserError
from runner.tracking import record, store

HANDOVER_SECONDS, HANDOVER_POINTS = 0.2, 1000  # the trainer's points wait at most this long
PIPE_BYTES = 1 << 20  # Linux's largest pipe for an unprivileged process: ~25k points in flight


class TrackingError(RuntimeError):
    """The store refused a record after the run started, or the tracking process died."""


# ---- trainer side ---------------------------------------------------------------------------
class Service:
    def __init__(self) -> None:
        to_service, from_trainer = os.pipe()
        to_trainer, from_service = os.pipe()
        self.spool = Path(tempfile.mkdtemp(prefix="runner-tracking-"))  # files handed over
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}  # not ours
        for key, value in store.HTTP_PATIENCE.items():  # it makes the HTTP requests
            env.setdefault(key, value)
        # Its own session: Ctrl-C in a terminal reaches the trainer only, which then closes
        # the run as KILLED through this process (it also ignores SIGINT and SIGTERM itself).
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner.tracking.service", str(to_service), str(from_service),
             str(self.spool)], pass_fds=(to_service, from_service), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
        os.close(to_service)
        os.close(from_service)
        _widen(from_trainer)
        self.out = Connection(from_trainer, readable=False)
        self.inp = Connection(to_trainer, writable=False)
        self.pid = os.getpid()  # a forked child must start its own
        self.handles = itertools.count(1)
        self.started = False  # a run or a query reached it: it must not be killed
        self.errors: Dict[Optional[int], Tuple[bool, str]] = {}
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

    def start_run(self, uri: str, experiment_name: str, name: str, tags: Dict[str, Any]) -> "RemoteRun":
        handle = next(self.handles)
        self.open[handle] = uri
        # plain str: torch.__version__ is torch's own str type, and unpickling it imports torch
        self.send(handle, "start_run", (uri, experiment_name, name, {k: str(v) for k, v in tags.items()}))
        return RemoteRun(self, handle, uri, name)

    def find_finished(self, uri: str, experiment_name: str, digest: str):
        return self.ask(None, "find_finished", uri, experiment_name, digest)

    def curve(self, uri: str, run_id: str) -> List[List[float]]:
        return self.ask(None, "curve", uri, run_id)

    # the pipe
    def send(self, handle: Optional[int], method: str, args: tuple, reply: bool = False,
             remove: Optional[Path] = None) -> None:
        self.started = True
        try:
            self.out.send((handle, method, args, reply, str(remove) if remove else None))
        except OSError:
            raise self._died() from None

    def ask(self, handle: Optional[int], method: str, *args) -> Any:
        """Send and wait for the answer. The service's error on this call, or on the start of
        this run (the root cause), is raised here."""
        self.send(handle, method, args, reply=True)
        while True:
            kind, *rest = self._receive()
            if kind == "reply":
                return rest[0]
            if kind == "failed":
                self.raise_error(handle, rest[0])

    def raise_error(self, handle: Optional[int], *also: Optional[int]) -> None:
        """Raise the first error the service reported on this run, if one came (no waiting)."""
        while self._ready():
            self._receive()
        for h in (handle, *also):
            if h in self.errors:
                user, message = self.errors.pop(h)
                raise UserError(message) if user else TrackingError(f"tracking: {message}")

    def _ready(self) -> bool:
        try:
            return self.inp.poll()
        except OSError:
            raise self._died() from None

    def _receive(self) -> tuple:
        """The next message: a reply, or news of a run ("started", "error", "failed")."""
        try:
            message = self.inp.recv()
        except (EOFError, OSError):
            raise self._died() from None
        self._note(message)
        return message

    def _note(self, message: tuple) -> None:
        kind, *rest = message
        if kind == "started":
            self.run_ids[rest[0]] = rest[1]
        elif kind in ("error", "failed"):
            self.errors.setdefault(rest[0], (rest[1], rest[2]))  # (handle, user error?, message)

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
    """record.Run's methods, over the pipe. Points are handed over in batches (every
    HANDOVER_SECONDS or HANDOVER_POINTS); what was handed over survives the trainer."""

    def __init__(self, service: Service, handle: int, uri: str, name: str):
        self.service, self.handle, self.uri, self.name = service, handle, uri, name
        self._id: Optional[str] = None
        self._experiment_id: Optional[str] = None
        self._points: List[Tuple[str, float, int, int]] = []
        self._handed = time.monotonic()

    @property
    def id(self) -> str:
        if self._id is None:
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

    def log_dataset(self, name: str, source: str, X, y, context: str = "train") -> None:
        import numpy as np

        path = self.service.spooled("data.npz")
        np.savez(path, X=X, y=y)
        self._send("log_dataset_file", name, source, str(path), context, remove=path.parent)

    def log_model(self, module, example, step: int) -> None:
        path = self.service.spooled("model.pth")
        output, torch_version = record.save_module(module, example, path)
        self._send("log_model_file", str(path), example, output, step, torch_version, remove=path.parent)

    def end(self, error: Optional[BaseException] = None) -> str:
        status, tags = record.status_of(error)
        # on the way out with an error, hand the points over without raising another
        self.flush() if error is None else self._hand_over()
        closed = self.service.ask(self.handle, "close", status, tags)
        self.service.open.pop(self.handle, None)
        if closed:
            self._id, self.name, status = closed
        return status


_SERVICE: Optional[Service] = None


def tracker():
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


def release() -> None:
    """The CLI is done: a tracking process that got nothing is stopped; one that holds runs
    closes them and exits when this process's end of the pipe closes."""
    global _SERVICE
    if _SERVICE is not None and _SERVICE.pid == os.getpid():
        _SERVICE.stop()
    _SERVICE = None


def _widen(fd: int) -> None:
    import fcntl

    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError:  # not Linux, or over /proc/sys/fs/pipe-max-size: the default 64 KiB works
        pass


# ---- process side ---------------------------------------------------------------------------
def serve(inp: Connection, out: Connection, spool: Path) -> None:
    import mlflow  # noqa: F401  now, while the trainer imports torch: the point of this process

    tracker, runs, broken = record.Tracker(), {}, set()
    while True:
        try:
            if not inp.poll(record.FLUSH_SECONDS):
                for run in runs.values():  # points must not wait for the trainer's next message
                    _quietly(run.flush)
                continue
            handle, method, args, reply, remove = inp.recv()
        except (EOFError, OSError):
            break
        try:
            if handle in broken and not reply:
                continue
            value = _dispatch(tracker, runs, handle, method, args)
        except Exception as e:  # noqa: BLE001  reported to the trainer, which decides
            broken.add(handle)  # the store refused this run: what follows for it is skipped
            kind = "failed" if reply else "error"  # a waiting trainer gets it as its answer
            _tell(out, (kind, handle, isinstance(e, UserError), _first_line(e)))
        else:
            if method == "start_run":
                _tell(out, ("started", handle, runs[handle].id))  # so that the trainer can close it
            if reply:
                _tell(out, ("reply", value))
        finally:
            if remove:
                shutil.rmtree(remove, ignore_errors=True)
    for handle in sorted(runs, reverse=True):  # a sweep's job before its parent
        run = runs[handle]
        _quietly(run.close, "KILLED", {"runner.failure": "process_died", "runner.points_received": run.received})
    shutil.rmtree(spool, ignore_errors=True)


def _dispatch(tracker, runs: Dict[int, Any], handle: Optional[int], method: str, args: tuple) -> Any:
    if method.startswith("_"):
        raise ValueError(f"no such call: {method}")
    if method == "start_run":
        runs[handle] = tracker.start_run(*args)
        return None
    if handle is None:
        return getattr(tracker, method)(*args)
    if method == "close":  # a run whose start failed has nothing to close
        return runs.pop(handle).close(*args) if handle in runs else None
    return getattr(runs[handle], method)(*args)


def _tell(out: Connection, message: tuple) -> None:
    """Answer the trainer, if it is still there to hear. A trainer killed meanwhile (kill -9)
    breaks only this: what it had sent is still in the pipe and is recorded all the same, and
    its run is closed KILLED at the end of the pipe unless its own close came first."""
    try:
        out.send(message)
    except OSError:  # BrokenPipe: its end is closed
        pass


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001  the store is gone: nothing more can be kept
        pass


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:500] if lines else type(e).__name__


def main(argv: List[str]) -> None:
    # Never stopped by a signal meant for the trainer: it closes the runs, as the trainer says
    # or when the trainer is gone. SLURM signals every process of a job: SIGTERM on scancel,
    # SIGUSR2 before the time limit (submitit's warning, which would kill this process: seen in
    # make test-cluster). SIGKILL still works; then the trainer marks its runs FAILED.
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    # mlflow builds ~10^5 long-lived objects on import; at the default thresholds the collector
    # walks them again and again meanwhile (the CLI's main() does the same for torch's: make bench P2)
    gc.set_threshold(100_000, 50, 1000)
    inp, out = Connection(int(argv[0]), writable=False), Connection(int(argv[1]), readable=False)
    serve(inp, out, Path(argv[2]))
    # Every run is closed and its records committed: skip tearing down mlflow's modules (~0.2 s,
    # which whoever reads the trainer's stderr, this process's too, would wait for).
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
