"""The tracking process's side of the pipe (service.py is the trainer's): run as
`python -m runner.tracking.process IN_FD OUT_FD SPOOL CONTROL_FD`. It reads messages.Call from
the pipe, carries out those its allow-list names on a record.Tracker and its Runs, answers with
messages.Started / Reply / Refused, and at the end of the pipe closes every run still open:
KILLED with `runner.failure=process_died`, after writing every point it had received. More
trainers' pipes may come over CONTROL_FD (a warm sweep's workers, attach()): each is served the
same way, and the process ends when the last pipe has closed. A run whose
server stops answering is carried on on disk (Runs, spool.OfflineRun) for `python -m runner.sync`."""
import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from runner.errors import UserError, first_line
from runner.tracking import record, spool, store
from runner.tracking.messages import Call, Refused, Reply, Started

PIPE_BYTES = 1 << 20  # Linux's largest pipe for an unprivileged process: ~25k points in flight
CONTROL_KIND = getattr(socket, "SOCK_SEQPACKET", socket.SOCK_DGRAM)  # one attach a message
SETTLED = "settled"  # a trainer's call answered once every other trainer's pipe has closed

# The calls the trainer may make, by the name it sends; nothing else is carried out. start_run
# and close are the process's own (they add and remove a run) and come first in _dispatch.
TRACKER_CALLS: Dict[str, Callable[..., Any]] = {
    "prepare": record.Tracker.prepare, "find_finished": record.Tracker.find_finished,
    "curve": record.Tracker.curve, "fail": record.Tracker.fail}
RUN_CALLS = ("info", "log_params", "set_tags", "set_experiment_tag", "log_points", "log_artifacts",
             "log_dataset_file", "log_model_file")  # of record.Run and its twin spool.OfflineRun


class NoSuchCall(ValueError):
    """A method name not in the allow-list: refused and reported, never looked up."""


def spawn(spool: Path) -> Tuple[subprocess.Popen, Connection, Connection, socket.socket]:
    """Start it (the trainer calls this): the process, the trainer's end to it and from it, and
    the socket through which attach() hands it more trainers' pipes."""
    to_service, from_service, ours = _pipes()
    control, theirs = socket.socketpair(socket.AF_UNIX, CONTROL_KIND)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}  # not ours
    for key, value in store.HTTP_PATIENCE.items():  # it makes the HTTP requests
        env.setdefault(key, value)
    # Its own session: Ctrl-C in a terminal reaches the trainer only, which then closes
    # the run as KILLED through this process (it also ignores SIGINT and SIGTERM itself).
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.tracking.process", str(to_service), str(from_service),
         str(spool), str(theirs.fileno())], pass_fds=(to_service, from_service, theirs.fileno()),
        start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
    for fd in (to_service, from_service):
        os.close(fd)
    theirs.close()
    return (proc, *ours, control)


def attach(control: socket.socket) -> Tuple[Connection, Connection]:
    """One more trainer for a running tracking process (hydra/launcher=warm: a worker, forked
    later): a new pair of pipes, whose far ends go to it over `control` (SCM_RIGHTS)."""
    to_service, from_service, ours = _pipes()
    socket.send_fds(control, [b"attach"], [to_service, from_service])
    for fd in (to_service, from_service):
        os.close(fd)
    return ours


def _pipes() -> Tuple[int, int, Tuple[Connection, Connection]]:
    """A trainer's two pipes: the tracking process's ends (fds, to pass on and close here) and
    the trainer's (its end to the process, widened, and from it)."""
    to_service, from_trainer = os.pipe()
    to_trainer, from_service = os.pipe()
    _widen(from_trainer)
    ours = Connection(from_trainer, readable=False), Connection(to_trainer, writable=False)
    return to_service, from_service, ours


def _widen(fd: int) -> None:
    import fcntl

    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError:  # not Linux, or over /proc/sys/fs/pipe-max-size: the default 64 KiB works
        pass


class Peer:
    """One trainer's pipes (the CLI's, or a warm worker's) and the runs it opened."""

    def __init__(self, inp: Connection, out: Connection):
        self.inp, self.out, self.runs, self.broken = inp, out, Runs(out), set()
        self.settling = False  # it asked to hear once it is the last trainer (SETTLED)


def serve(inp: Connection, out: Connection, spool: Path, control: Optional[socket.socket]) -> None:
    """Until every trainer's pipe has closed: carry out their calls, one at a time, in the order
    each sent them; a trainer whose pipe closes has its open runs closed KILLED."""
    import mlflow  # noqa: F401  now, while the trainer imports torch: the point of this process

    tracker, peers, flushed = record.Tracker(), [Peer(inp, out)], time.monotonic()
    while peers:
        ready = wait([p.inp for p in peers] + ([control] if control else []), record.FLUSH_SECONDS)
        if control in ready:
            control = _attach(control, peers)
        for peer in [p for p in reversed(peers) if p.inp in ready]:  # workers before the sweep's own
            try:
                call: Call = peer.inp.recv()
            except (EOFError, OSError):
                _close_all(peer)
                peers.remove(peer)
                continue
            if call.method == SETTLED and call.handle is None:
                peer.settling = True
            else:
                _carry_out(call, tracker, peer)
        if time.monotonic() - flushed > record.FLUSH_SECONDS:  # points must not wait for a next message
            flushed = time.monotonic()
            for peer in peers:
                for handle in list(peer.runs):
                    _quietly(peer.runs.call, handle, "flush")
        if len(peers) == 1 and peers[0].settling:  # the last trainer waits for the others
            peers[0].settling = False
            _tell(peers[0].out, Reply(None))
    shutil.rmtree(spool, ignore_errors=True)


def _attach(control: socket.socket, peers: list) -> Optional[socket.socket]:
    """A trainer's pipes from attach(); None once the socket is closed (no more will come)."""
    try:
        message, fds, _, _ = socket.recv_fds(control, 16, 2)
    except OSError:
        message, fds = b"", []
    if not message:
        control.close()
        return None
    peers.append(Peer(Connection(fds[0], writable=False), Connection(fds[1], readable=False)))
    return control


def _close_all(peer: Peer) -> None:
    """Its trainer's end closed with runs open: KILLED, after every point it handed over."""
    for handle in sorted(peer.runs, reverse=True):  # a sweep's job before its parent
        tags = {"runner.failure": "process_died", "runner.points_received": peer.runs[handle].received}
        _quietly(peer.runs.call, handle, "close", "KILLED", tags)
    peer.out.close()


class Runs(dict):
    """handle -> record.Run, or spool.OfflineRun once the run's server has stopped answering:
    MLflow's HTTP retries gave up on it (or on another run of that server: then at once)."""

    def __init__(self, out: Connection):
        super().__init__()
        self.out, self.gone = out, {}  # the trainer; server URI -> why it stopped answering

    def call(self, handle: int, method: str, *args) -> Any:
        if method == "close" and spool.on_server(self[handle].uri):  # a server gone costs one
            with contextlib.suppress(Exception):  # request's retries, not the close's three; any
                self.call(handle, "flush")  # other error: the close's own flush reports it
        run = self[handle]
        if run.uri in self.gone and not isinstance(run, spool.OfflineRun):
            run = self._offline(handle, self.gone[run.uri])
        try:
            return getattr(run, method)(*args)
        except Exception as e:  # noqa: BLE001  re-raised unless the server is gone
            why = None if isinstance(run, spool.OfflineRun) else spool.unreachable(e, run.uri)
            if why is None:
                raise
        self.gone[run.uri] = why
        offline = self._offline(handle, why)  # it takes over the points the run held
        return None if method in ("log_points", "flush") else getattr(offline, method)(*args)

    def _offline(self, handle: int, why: str) -> spool.OfflineRun:
        self[handle] = offline = spool.OfflineRun(self[handle], why)
        # the trainer stops at its next hand-over; its close then gets offline.line()
        _tell(self.out, Refused(handle, False, offline.gone(), False, offline=True))
        return offline


def _carry_out(call: Call, tracker: record.Tracker, peer: Peer) -> None:
    try:
        if call.handle in peer.broken and not call.reply:
            return
        value = _dispatch(tracker, peer.runs, call)
    except Exception as e:  # noqa: BLE001  reported to the trainer, which decides
        peer.broken.add(call.handle)  # the store refused this run: what follows for it is skipped
        _tell(peer.out, Refused(call.handle, isinstance(e, UserError), first_line(e), call.reply))
    else:
        if call.method == "start_run":
            run = peer.runs[call.handle]
            _tell(peer.out, Started(call.handle, run.id, run.experiment_id))  # so that the trainer can close it
        if call.reply:
            _tell(peer.out, Reply(value))
    finally:
        if call.remove:
            shutil.rmtree(call.remove, ignore_errors=True)


def _dispatch(tracker: record.Tracker, runs: Runs, call: Call) -> Any:
    if call.method == "start_run":
        runs[call.handle] = tracker.start_run(*call.args)
        return None
    if call.method == "close":  # a run whose start failed has nothing to close
        try:
            return runs.call(call.handle, "close", *call.args) if call.handle in runs else None
        finally:
            runs.pop(call.handle, None)
    if call.method not in (TRACKER_CALLS if call.handle is None else RUN_CALLS):
        raise NoSuchCall(f"the tracking process has no call {call.method!r}")
    if call.handle is None:
        return TRACKER_CALLS[call.method](tracker, *call.args)
    return runs.call(call.handle, call.method, *call.args)


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


def silence() -> None:
    """The trainer reports each refusal as the CLI's one line (Refused): MLflow's and alembic's
    log records and tracebacks, and Python's warnings, would only bury it on the shared stderr
    (a full disk: 91 lines and 4 tracebacks before it). RUNNER_DEBUG=1 keeps them."""
    if os.environ.get("RUNNER_DEBUG") == "1":
        return
    # disable() holds whatever level or handler mlflow sets on its loggers at import
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"


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
    silence()
    inp, out = Connection(int(argv[0]), writable=False), Connection(int(argv[1]), readable=False)
    serve(inp, out, Path(argv[2]), socket.socket(fileno=int(argv[3])))
    # Every run is closed and its records committed: skip tearing down mlflow's modules (~0.2 s,
    # which whoever reads the trainer's stderr, this process's too, would wait for).
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
