"""hydra/launcher=warm for real (its every-job-FINISHED check is test_sweeps's parallel test, beside joblib);
and a parallel sweep stopped by Ctrl-C or SIGTERM while its jobs run (issue 21): every run
closed KILLED with the points its job handed over, the sweep exits 130/143 with one line."""
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import all_runs, cli, cli_env, client_for
from test_sweeps import sqlite_uri, sweep_runs

pytestmark = pytest.mark.slow  # parallel sweeps signalled mid-run: make test-slow (README)


def test_n_jobs_is_checked(tmp_path):
    proc = cli("-m", "hydra/launcher=warm", "hydra.launcher.n_jobs=0", "lr=0.1,0.2", cwd=tmp_path)
    assert proc.returncode == 2 and "hydra.launcher.n_jobs=0" in proc.stderr, proc.stderr


def _running_children(uri: str, want: int, seen: list) -> bool:
    """True once `want` child runs are RUNNING and each has points in the store; `seen` keeps
    what each look found, for the message when they never are."""
    try:
        runs = [r for r in all_runs(uri) if r.data.tags.get("mlflow.parentRunId") and r.info.status == "RUNNING"]
        client = client_for(uri)
        with_points = [r for r in runs if client.get_metric_history(r.info.run_id, "loss")]
        seen.append(f"{len(runs)} running, {len(with_points)} with points")
        return len(with_points) >= want
    except Exception as e:  # noqa: BLE001  the store is still being made
        seen.append(repr(e)[:200])
        return False


@pytest.mark.parametrize("launcher,sig,code", [("warm", signal.SIGINT, 130), ("warm", signal.SIGTERM, 143)])
def test_an_interrupted_parallel_sweep_leaves_every_run_killed_with_its_points(tmp_path, launcher, sig, code):
    uri = sqlite_uri(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "-m", f"hydra/launcher={launcher}",
                             "hydra.launcher.n_jobs=2", "lr=1e-3,2e-3,3e-3", "epochs=3000000", "log_every=10",
                             "device=cpu"], cwd=tmp_path, env=cli_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, seen = time.monotonic() + 240, []
        while not _running_children(uri, 2, seen):  # an event in the store, polled: not a guessed delay
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, seen[-5:]  # the sweep runs on: killed in finally
            time.sleep(0.5)
        os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C or `kill -- -PGID` reaches the whole group
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert "interrupted" in err and "Traceback" not in err, err
    deadline = time.monotonic() + 60  # a tracking process may still be closing its run
    while any(r.info.status == "RUNNING" for r in all_runs(uri)) and time.monotonic() < deadline:
        time.sleep(0.5)
    parent, children = sweep_runs(uri)
    assert parent.info.status == "KILLED"
    assert len(children) >= 2 and all(r.info.status == "KILLED" for r in children), \
        [(r.info.run_name, r.info.status) for r in children]
    client = client_for(uri)
    for run in children:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss"))
        assert steps and steps == list(range(0, steps[-1] + 1, 10)), run.info.run_name  # no gaps
        received = run.data.tags.get("runner.points_received")
        if received is not None:  # closed by its tracking process: every point it got is stored
            stored = sum(len(client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics)
            assert stored == int(received), run.info.run_name

def test_the_fast_exit_runs_atexit_handlers_and_flushes_and_keeps_the_code(tmp_path):
    code = ("import atexit, sys; from runner import shutdown\n"
            "atexit.register(lambda: print('atexit ran'))\n"
            "def main():\n    sys.stdout.write('x' * 100000); sys.exit(3)\n"
            "shutdown.run(main)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stdout == "x" * 100000 + "atexit ran\n"


def _wait_for_running_children(uri: str, n: int, proc, timeout: float = 600):
    """Until the store holds n RUNNING children with at least one loss point each (n=0: until
    the sweep's parent exists, the jobs starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            every = all_runs(uri)
            runs = [r for r in every if r.data.tags.get("mlflow.parentRunId")
                    and r.info.status == "RUNNING" and "loss" in r.data.metrics]
        except Exception:  # noqa: BLE001  the store is still being created
            every = runs = []
        if (n and len(runs) >= n) or (not n and every):
            return
        time.sleep(0.5)  # a poll interval, not an event stand-in
    pytest.fail("the sweep's jobs never showed points")


@pytest.mark.parametrize("signum, code, running", [(signal.SIGINT, 130, 2), (signal.SIGTERM, 143, 0),
                                                  (signal.SIGINT, 130, 0), (signal.SIGTERM, 143, 2)],
                         ids=["sigint-running", "sigterm-starting", "sigint-starting", "sigterm-running"])
def test_joblib_sweep_interrupted_closes_every_run_killed(tmp_path, signum, code, running):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "runner", "-m", "hydra/launcher=joblib",
                             "hydra.launcher.n_jobs=2", "lr=1e-3,2e-3", "epochs=3000000", "log_every=10"],
                            cwd=tmp_path, env=cli_env(), text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_running_children(uri, running, proc)
        os.killpg(proc.pid, signum)  # as a terminal's Ctrl-C: the whole process group
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith("interrupted:"), err
    runs = all_runs(uri)
    assert len(runs) == 3 if running else len(runs) >= 1
    assert {r.info.status for r in runs} == {"KILLED"}, [
        (r.info.run_name, r.info.status) for r in runs]
    client = client_for(uri)
    for run in runs:
        if run.data.tags.get("mlflow.parentRunId"):
            points = len(client.get_metric_history(run.info.run_id, "loss"))
            assert points > 0 or not running
            received = run.data.tags.get("runner.points_received")
            if received is not None:  # closed by its tracking process: every point it was handed
                assert int(received) >= points


def test_a_warm_sweep_records_through_one_tracking_process_and_a_killed_worker_s_run_ends_killed(tmp_path):
    """Issue 23: the warm workers share the sweep's tracking process (one mlflow import, one open
    store), each over its own pipe; kill -9 of one worker closes its run KILLED with every point it
    handed over, the other worker's running job ends KILLED too, and nothing stays RUNNING."""
    import psutil

    uri = sqlite_uri(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "-m", "hydra/launcher=warm",
                             "hydra.launcher.n_jobs=2", "lr=1e-3,2e-3,3e-3", "epochs=3000000", "log_every=10",
                             "device=cpu"], cwd=tmp_path, env=cli_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, seen = time.monotonic() + 240, []
        while not _running_children(uri, 2, seen):  # an event in the store, polled
            assert proc.poll() is None and time.monotonic() < deadline, seen[-5:]
            time.sleep(0.5)
        tree = psutil.Process(proc.pid).children(recursive=True)
        tracking = [p for p in tree if "runner.tracking.process" in " ".join(p.cmdline())]
        workers = [p for p in psutil.Process(proc.pid).children() if p not in tracking]
        assert len(tracking) == 1 and len(workers) == 2, [p.cmdline()[-3:] for p in tree]
        workers[0].kill()
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1 and "a worker died" in err and "Traceback" not in err, err
    parent, children = sweep_runs(uri)  # the CLI exits once the tracking process closed them all
    assert parent.info.status != "RUNNING"
    killed = [r for r in children if r.data.tags.get("runner.failure") == "process_died"]
    assert len(killed) == 1 and all(r.info.status == "KILLED" for r in children), \
        [(r.info.run_name, r.info.status, r.data.tags.get("runner.failure")) for r in children]
    client = client_for(uri)
    stored = sum(len(client.get_metric_history(killed[0].info.run_id, k)) for k in killed[0].data.metrics)
    assert stored == int(killed[0].data.tags["runner.points_received"]) > 0


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"])
def test_joblib_sweep_signalled_while_its_jobs_finish_keeps_them_finished(tmp_path, signum, code):
    """The third moment: each job has trained and sent its close, and waits for the answer (its
    tracking process held with SIGSTOP), when the signal comes. The close is whole in the pipe:
    each job's run ends FINISHED with every point, the parent KILLED, exit 130/143."""
    import psutil

    from test_faults import _waiting_for_an_answer

    uri, epochs = f"sqlite:///{tmp_path / 'mlflow.db'}", 200
    proc = subprocess.Popen([sys.executable, "-m", "runner", "-m", "hydra/launcher=joblib",
                             "hydra.launcher.n_jobs=2", "lr=1e-3,2e-3", f"epochs={epochs}", "log_every=1"],
                            cwd=tmp_path, env=cli_env(), text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    held: dict = {}  # a job's tracking process -> its trainer (the joblib worker)
    try:
        deadline = time.monotonic() + 240
        while len(held) < 2 or not all(_waiting_for_an_answer(t) for t in held.values()):
            assert proc.poll() is None and time.monotonic() < deadline, (held, proc.poll())
            for p in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):  # the CLI's own tracking process holds the parent
                    if ("runner.tracking.process" in " ".join(p.cmdline()) and p.pid not in held
                            and p.ppid() != proc.pid):
                        p.suspend()  # SIGSTOP: what its trainer sends waits in the pipe
                        held[p.pid] = p.ppid()
            time.sleep(0.2)  # a poll interval
        os.killpg(proc.pid, signum)  # as a terminal's Ctrl-C: the whole process group
        for pid in held:
            os.kill(pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=300)
    finally:
        for pid in held:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith("interrupted:") and "Traceback" not in err, err
    parent, children = sweep_runs(uri)
    assert parent.info.status == "KILLED"
    assert [r.info.status for r in children] == ["FINISHED", "FINISHED"], [r.data.tags for r in children]
    client = client_for(uri)
    for run in children:
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == list(range(epochs + 1))
