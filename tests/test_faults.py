"""A run's process stopped from outside: Ctrl-C, SIGTERM, kill -9 of the trainer at three moments,
kill -9 of its tracking process. Every run ends KILLED or FAILED with its points, never RUNNING.
"""
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import alive, all_runs, client_for, descendants

pytestmark = pytest.mark.slow


def start(folder) -> tuple:
    """(process, its store): a run long enough never to end by itself, logging every epoch (so
    that the tracking process's first flush, at 1000 points, comes within a second)."""
    cmd = [sys.executable, "-m", "runner", "model=mlp", "dataset=random_mlp", "dataset.n_samples=256",
           "optim=adam", "lr=1e-4", "log_every=1", "epochs=1000000"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, folder / "mlflow.db"


@pytest.fixture
def trainer(tmp_path):
    proc, db = start(tmp_path)
    yield proc, db
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interruption_ends_killed_with_points_kept(trainer, sig, code):
    proc, db = trainer
    # more than 5 points stored (asserted below; how many a first flush holds depends on the load)
    _wait_for(lambda: _stored_loss(db) > 5, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "KILLED" in err
    [run] = all_runs(f"sqlite:///{db}")
    assert run.info.status == "KILLED"
    steps = [m.step for m in client_for(f"sqlite:///{db}").get_metric_history(run.info.run_id, "loss")]
    assert len(steps) > 5 and sorted(steps) == list(range(len(steps)))  # nothing lost, no gaps


def test_kill_9_of_the_trainer_ends_its_run_killed_with_every_point_it_handed_over(tmp_path):
    """The tracking process outlives a trainer killed outright (kill -9, the OOM killer, a hard
    time limit): it stores every point it had received and closes the run KILLED. Three
    trainers at once, killed at three moments: as soon as their run exists, once points are
    stored, and at a random moment after that."""
    folders = [tmp_path / moment for moment in ("start", "points", "random")]
    for folder in folders:
        folder.mkdir()
    trainers = [start(folder) for folder in folders]
    try:
        for (proc, db), moment in zip(trainers, ("at start", "after points", "at random")):
            _wait_for(lambda: _query(db, "select count(*) from runs where status='RUNNING'"), proc)
            if moment != "at start":
                _wait_for(lambda: _stored_loss(db) > 0, proc)
            if moment == "at random":
                time.sleep(random.uniform(0, 1.5))  # the moment of the kill, not a wait for an event
            services = descendants(proc.pid)
            assert services, "no tracking process under the trainer"
            proc.kill()
            proc.wait(timeout=30)
            _wait_for(lambda: not _query(db, "select count(*) from runs where status='RUNNING'"), None)
            uri = f"sqlite:///{db}"
            [run] = all_runs(uri)
            assert (run.info.status, run.data.tags.get("runner.failure")) == ("KILLED", "process_died"), moment
            client = client_for(uri)
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
            assert sorted(steps) == list(range(len(steps)))  # in order, no gaps
            stored = sum(len(client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics)
            assert stored == int(run.data.tags["runner.points_received"])  # everything it was given
            _wait_for(lambda: not any(alive(p) for p in services), None)  # and then it is gone
    finally:
        for proc, _ in trainers:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


# ---- kill -9 of the trainer while the tracking process lags behind (stopped, then resumed) ------
# The moments are observed, not waited for: the tracking process is SIGSTOPped (state T), the
# trainer is seen blocked in write() on the full pipe, or in read() on the answer to its close.
# poll: the trainer waits for an answer in poll() (service._receive), then reads it whole
SYSCALL = {"x86_64": {"write": 1, "poll": 7}, "aarch64": {"write": 64, "poll": 73}}.get(platform.machine())


@pytest.mark.skipif(SYSCALL is None, reason="syscall numbers known for x86_64 and aarch64 only")
@pytest.mark.parametrize("moment", ["before start_run is answered", "mid-training, pipe full",
                                    "after the close was sent"])
def test_kill_9_while_the_record_lags_keeps_everything_in_the_pipe(tmp_path, moment):
    """issue 21: the tracking process reached start_run after its trainer had died, could not
    answer it, and skipped everything else of that run: FINISHED (or KILLED) with nothing."""
    short = moment == "after the close was sent"
    proc = subprocess.Popen([sys.executable, "-m", "runner", "log_every=1",
                             "epochs=50" if short else "epochs=2000000"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db, tracking = tmp_path / "mlflow.db", None
    try:
        _wait_for(lambda: _tracking_process(proc.pid), proc)
        tracking = _tracking_process(proc.pid)
        if moment == "mid-training, pipe full":  # the run exists and has points stored
            _wait_for(lambda: _stored_loss(db) > 0, proc)
        os.kill(tracking, signal.SIGSTOP)
        _wait_for(lambda: _state(tracking) == "T", proc)
        if short:  # the close is its last message: waiting for its answer, it has sent it
            _wait_for(lambda: _waiting_for_an_answer(proc.pid), proc)
        else:
            _wait_for(lambda: _blocked_on_pipe(proc.pid, tracking, "write"), proc)
        proc.kill()
        proc.wait(timeout=30)
        os.kill(tracking, signal.SIGCONT)
        _wait_for(lambda: not alive(tracking), None)  # it records what it had, closes, exits
    finally:
        if proc.poll() is None:
            proc.kill()
        if tracking and alive(tracking):  # stopped, it would hold the stderr pipe open for ever
            os.kill(tracking, signal.SIGKILL)
        proc.communicate()
    uri = f"sqlite:///{db}"
    [run] = all_runs(uri)
    client = client_for(uri)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == list(range(len(steps)))  # in order, no gaps
    assert run.data.params["epochs"] and "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    if short:  # its close arrived whole: the trainer's own word, with all it had sent before
        assert run.info.status == "FINISHED" and len(steps) == 51
        assert run.outputs.model_outputs and run.inputs.dataset_inputs
        return
    assert (run.info.status, run.data.tags.get("runner.failure")) == ("KILLED", "process_died")
    stored = sum(len(client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics)
    received = int(run.data.tags["runner.points_received"])
    assert stored == received >= 1000  # a full pipe holds ~25k points: more than one hand-over


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def _tracking_process(pid: int):
    for child in descendants(pid):
        try:
            if b"runner.tracking." in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            pass
    return None


def _state(pid: int):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()[0]


def _waiting_for_an_answer(pid: int) -> bool:
    """`pid`'s main thread is inside poll() on one descriptor with no timeout: service.Service
    waiting for the tracking process's answer (a timeout of 0 is the trainer's own look)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    if len(fields) < 4 or fields[0] != str(SYSCALL["poll"]) or int(fields[2], 16) != 1:
        return False
    if platform.machine() == "aarch64":  # ppoll: a NULL timeout
        return int(fields[3], 16) == 0
    return int(fields[3], 16) & 0xFFFFFFFF == 0xFFFFFFFF  # poll: an int timeout of -1


def _blocked_on_pipe(pid: int, other: int, call: str) -> bool:
    """`pid`'s main thread is inside read() or write() on a pipe that `other` holds too."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
        if fields[0] != str(SYSCALL[call]):
            return False
        link = os.readlink(f"/proc/{pid}/fd/{int(fields[1], 16)}")
        theirs = {os.readlink(f) for f in Path(f"/proc/{other}/fd").iterdir()}
    except (OSError, IndexError, ValueError):
        return False
    return link.startswith("pipe:") and link in theirs


def test_a_killed_tracking_process_fails_the_run_with_one_line(trainer):
    """The other way round: the tracking process dies (kill -9, out of memory). The trainer
    stops at its next hand-over with one line, exit 1, and marks the run FAILED itself."""
    proc, db = trainer
    # points stored: the tracking process has told the trainer its run's id (Started comes right
    # after the run's creation, before anything else of it is carried out)
    _wait_for(lambda: _stored_loss(db) > 0, proc)
    [service] = descendants(proc.pid)
    os.kill(service, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "tracking process ended unexpectedly" in lines[0] and "marked FAILED" in lines[0]
    [run] = all_runs(f"sqlite:///{db}")
    assert (run.info.status, run.data.tags.get("runner.failure")) == ("FAILED", "tracking_process_died")


def _wait_for(event, proc, limit=180.0) -> None:
    """Poll until `event()` holds (a bound, not a timing assertion: CI may be slow)."""
    deadline = time.monotonic() + limit
    while not event():
        assert proc is None or proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.2)


def _query(db, sql) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:  # a read-only look
            return con.execute(sql).fetchone()[0]
    except sqlite3.Error:
        return 0


def _stored_loss(db) -> int:
    return _query(db, "select count(*) from runs join metrics using (run_uuid) "
                      "where status='RUNNING' and key='loss'")


# ---- a disk that fills during a run: the store's refusal is the CLI's one line ------------------
# Run in a user and mount namespace (unshare -rm) on a 6 MB tmpfs, filled once points are stored.
FULL_DISK = r"""
import json
import os
import sqlite3
import subprocess
import sys
import time

folder = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", folder], check=True)
db = os.path.join(folder, "mlflow.db")
proc = subprocess.Popen([sys.executable, "-m", "runner", "epochs=2000000", "log_every=1"], cwd=folder,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def query(sql):
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
            return c.execute(sql).fetchall()
    except sqlite3.Error:  # not there yet, or mid-creation
        return []


while proc.poll() is None and not query("select 1 from metrics limit 1"):
    time.sleep(0.2)  # polling the store for the event (points stored), not a stand-in for it
with open(os.path.join(folder, "filler"), "wb") as f:  # every byte left
    try:
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    except OSError:
        pass
err = proc.communicate()[1]
os.remove(os.path.join(folder, "filler"))
status = query("select status from runs")
points = query("select count(*) from metrics")
print(json.dumps({"rc": proc.returncode, "stderr": err, "status": status, "points": points}))
"""


def _can_mount_tmpfs() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "tmpfs", "/mnt"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare -rm and a tmpfs mount")
def test_a_disk_that_fills_mid_run_is_one_line_without_mlflow_logs(tmp_path):
    """issue 21: MLflow's logger, through the tracking process, printed 394 lines (SQL, bound
    parameters, tracebacks) before the CLI's one line; the process now silences it."""
    import json

    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    (tmp_path / "store").mkdir()
    out = subprocess.run(["unshare", "-rm", sys.executable, str(script), str(tmp_path / "store")],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rc"] == 1 and result["points"][0][0] >= 1000  # stored before the disk filled
    [line] = result["stderr"].splitlines()
    assert line.startswith("error: tracking: ") and "disk is full" in line, line
