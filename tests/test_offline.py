"""A server that goes away mid-run: the run is kept on disk (runner/tracking/spool.py), the CLI
says so in one line with exit code 75, and `python -m runner.sync` sends it, every point, once a
server answers again on the same store; a second sync stores nothing twice."""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import cli_env, client_for, free_port, stop, wait_healthy

pytestmark = pytest.mark.slow  # a real mlflow server stopped and restarted: make test-slow (README)

from runner.tracking import spool
from test_faults import SYSCALL, _tracking_process, _waiting_for_an_answer

# MLflow's own variables (the CLI keeps them when set): one attempt of at most 5 s, so that the
# run goes offline at the first refused request, not after the ~1 minute of the defaults.
GIVE_UP_AT_ONCE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
LOG_EVERY = 100
FINISHING_EPOCHS = 50000  # seconds of training: its run is on the server long before its end


def sync(cwd: Path, *folders: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.sync", *folders], cwd=cwd, env=cli_env(GIVE_UP_AT_ONCE),
                          text=True, capture_output=True, timeout=300)


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """A real `mlflow server` on 127.0.0.1:port over folder's sqlite store and artifacts."""
    log = folder / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        cwd=folder, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=cli_env())
    wait_healthy(f"http://127.0.0.1:{port}", proc, log)
    return proc


def kill_server(proc: subprocess.Popen) -> None:
    """SIGKILL the server and each of its processes (uvicorn's worker, the job runner) by PID."""
    assert stop(proc, grace=0, first=signal.SIGKILL) == []


def trainer(launch: Path, uri: str, name: str, epochs: int = 10**8) -> subprocess.Popen:
    """`python -m runner`; 10^8 epochs end only by its server's loss or a signal."""
    return subprocess.Popen(
        [sys.executable, "-m", "runner", f"tracking.uri={uri}", f"epochs={epochs}", f"log_every={LOG_EVERY}",
         f"run_name={name}"], cwd=launch, env=cli_env(GIVE_UP_AT_ONCE), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_on_server(uri: str, name: str, proc: subprocess.Popen) -> str:
    """The run's id, once the server holds its params: the trainer has its run and is training."""
    client = client_for(uri)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        experiment = client.get_experiment_by_name("runner")
        runs = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'") if experiment else []
        if runs and runs[0].data.params:
            return runs[0].info.run_id
        time.sleep(0.2)
    raise AssertionError(f"no run {name} on the server: {proc.poll()=}")


def wait_for(predicate, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not predicate():
        assert time.monotonic() < deadline and proc.poll() is None, "gave up waiting"
        time.sleep(0.05)


def files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def every_point(uri: str, run_id: str, status: str, failure: str = None) -> int:
    """The run on the server in its end state, with every point the tracking process got, once."""
    client = client_for(uri)
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags.get("runner.failure")) == (status, failure)
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert steps == list(range(0, LOG_EVERY * len(steps), LOG_EVERY))  # none missing, none twice
    points = sum(len(client.get_metric_history(run_id, key)) for key in run.data.metrics)
    assert points == int(run.data.tags["runner.points_received"]) > len(steps) > 0
    assert run.data.params["lr"] and "config.yaml" in [a.path for a in client.list_artifacts(run_id)]
    return points


def finished(uri: str, run_id: str) -> int:
    """A run kept on disk after its last epoch: on the server FINISHED, whole, its model too."""
    points = every_point(uri, run_id, "FINISHED")
    client = client_for(uri)
    run = client.get_run(run_id)
    assert len(client.get_metric_history(run_id, "loss")) == FINISHING_EPOCHS // LOG_EVERY + 1
    assert "final_loss" in run.data.metrics and run.outputs.model_outputs and run.inputs.dataset_inputs
    assert any(a.path.endswith(".png") for a in client.list_artifacts(run_id))
    return points


def the_line(err: str, uri: str, run_id: str, status: str) -> None:
    kept = f"mlflow-offline/{run_id}"
    assert re.fullmatch(f"error: tracking: the MLflow server at {uri} stopped answering \\(connection (refused|lost)\\); "
                        f"run {run_id} is kept in {kept} as {status} \\([0-9]+ points\\); "
                        f"send it with: python -m runner.sync {kept}\n", err), err


@pytest.mark.skipif(SYSCALL is None, reason="syscall numbers known for x86_64 and aarch64 only")
def test_a_server_gone_mid_run_is_kept_on_disk_and_synced_with_every_point(tmp_path):
    """Three runs lose their server: one while training (FAILED), one while it closes after a
    SIGTERM (KILLED: the CLI once said "closed as KILLED" of a run the server held RUNNING), one
    while it closes after its last epoch (FINISHED, its plots and model sent by the sync)."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    launch = tmp_path / "launch"
    launch.mkdir()
    server = start_server(tmp_path, port)
    procs = {"finishing": trainer(launch, uri, "finishing", epochs=FINISHING_EPOCHS),
             "training": trainer(launch, uri, "training"), "closing": trainer(launch, uri, "closing")}
    ids, tracking = {}, {}
    try:
        for name, proc in procs.items():  # "finishing" first: its epochs take seconds, this a moment
            ids[name] = run_on_server(uri, name, proc)
            tracking[name] = _tracking_process(proc.pid)
            if name != "training":
                os.kill(tracking[name], signal.SIGSTOP)  # it holds what its trainer sends from now on
        procs["closing"].send_signal(signal.SIGTERM)
        for name in ("finishing", "closing"):  # waiting for the close's answer: all is sent
            wait_for(lambda: _waiting_for_an_answer(procs[name].pid), procs[name])
        kill_server(server)
        for name in ("finishing", "closing"):
            os.kill(tracking[name], signal.SIGCONT)
        errs = {name: proc.communicate(timeout=300)[1] for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.kill()
        for pid in tracking.values():  # a stopped one would be left behind
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if server.poll() is None:  # the test failed before it stopped the server
            kill_server(server)
    assert [p.returncode for p in procs.values()] == [75, 75, 75], errs
    for name, status in (("training", "FAILED"), ("closing", "KILLED"), ("finishing", "FINISHED")):
        the_line(errs[name], uri, ids[name], status)
    folders = [launch / "mlflow-offline" / run_id for run_id in ids.values()]

    # still down: one line, exit 2, the spool as it was
    before = [files(f) for f in folders]
    down = sync(launch)
    assert down.returncode == 2 and len(down.stderr.splitlines()) == 1, down.stderr
    assert down.stderr.startswith("error: sync: mlflow-offline/") and "the run stays kept there" in down.stderr
    assert [files(f) for f in folders] == before

    server = start_server(tmp_path, port)  # the same store and port, minutes later on a busy machine
    try:
        shutil.copytree(launch / "mlflow-offline", tmp_path / "copy")
        sent = sync(launch)  # every run kept in ./mlflow-offline
        assert sent.returncode == 0 and len(sent.stdout.splitlines()) == 3, sent
        assert f"sent: run {ids['training']} to {uri} as FAILED (" in sent.stdout
        assert not any(f.exists() for f in folders)
        points = [every_point(uri, ids["training"], "FAILED", "server_unreachable"),
                  every_point(uri, ids["closing"], "KILLED", "interrupted"), finished(uri, ids["finishing"])]
        # as if that sync had died after the status, before removing the spool: nothing twice
        shutil.rmtree(launch / "mlflow-offline")
        shutil.copytree(tmp_path / "copy", launch / "mlflow-offline")
        again = sync(launch, *[f"mlflow-offline/{run_id}" for run_id in ids.values()])
        assert again.returncode == 0, again.stderr
        assert points == [every_point(uri, ids["training"], "FAILED", "server_unreachable"),
                          every_point(uri, ids["closing"], "KILLED", "interrupted"), finished(uri, ids["finishing"])]
        assert not any(f.exists() for f in folders)
    finally:
        kill_server(server)


def test_sync_while_the_server_is_down_keeps_the_spool(tmp_path, monkeypatch):
    """A spool written by the tracking process's own class; no server on its port."""
    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"
    run = SimpleNamespace(id="0123abcd", name="a run", uri=uri, experiment_id="1", received=0, _points=[])
    offline = spool.OfflineRun(run, "connection refused")
    offline.log_params({"lr": 0.1})
    offline.log_points([("loss", 1.0, 1000, 0), ("loss", 0.5, 1001, 1)])
    assert offline.close("FINISHED", {})[3] == (
        f"the MLflow server at {uri} stopped answering (connection refused); run 0123abcd is kept in "
        "mlflow-offline/0123abcd as FINISHED (2 points); send it with: python -m runner.sync mlflow-offline/0123abcd")
    folder = tmp_path / "mlflow-offline" / "0123abcd"
    before = files(folder)
    r = sync(tmp_path)
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.startswith("error: sync: mlflow-offline/0123abcd: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert files(folder) == before


def test_a_line_cut_by_a_crash_is_dropped_and_no_spool_is_nothing_to_send(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = SimpleNamespace(id="feed", name="n", uri="http://127.0.0.1:1", experiment_id="1", received=0, _points=[])
    offline = spool.OfflineRun(run, "no connection")
    offline.log_points([("loss", 1.0, 1000, 0)])
    offline.close("KILLED", {"runner.failure": "interrupted"})
    folder = tmp_path / "mlflow-offline" / "feed"
    with open(folder / "records.jsonl", "a") as f:
        f.write('{"metrics": [["loss", 2.0, 1001')  # a crash mid-write
    meta, records, sent = spool.read(folder)
    assert meta["run_id"] == "feed" and sent == 0
    assert records == [{"metrics": [["loss", 1.0, 1000, 0]]},
                       {"tags": {"runner.failure": "interrupted", "runner.points_received": "1"}},
                       {"end": ["KILLED", records[-1]["end"][1]]}]
    shutil.rmtree(tmp_path / "mlflow-offline")
    r = sync(tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "sync: nothing to send: no run kept in ./mlflow-offline\n", "")


def test_a_sync_cut_short_goes_on_where_it_stopped_and_never_leaves_the_run_running(tmp_path, monkeypatch):
    """runner.sync on a real store (sqlite: the same client calls as on a server): lines already
    counted as sent are not sent again; a spool without its end (a killed tracking process) ends
    the run KILLED with runner.failure=process_died, never RUNNING."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = client_for(uri, create=True)
    run = client.create_run(client.create_experiment("offline"))
    kept = SimpleNamespace(id=run.info.run_id, name=run.info.run_name, uri=uri,
                           experiment_id=run.info.experiment_id, received=0, _points=[])
    offline = spool.OfflineRun(kept, "connection refused")
    offline.log_params({"sent_before": "1"})  # line 0: stored by a sync that then died
    offline.log_points([("loss", 2.0, 1000, 0), ("loss", 1.0, 1001, 1)])
    offline.log_params({"sent_now": "1"})
    folder = tmp_path / "mlflow-offline" / run.info.run_id
    spool.mark_sent(folder, 1)
    r = sync(tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(f"sent: run {run.info.run_id} to {uri} as KILLED ("), r
    stored = client.get_run(run.info.run_id)
    assert set(stored.data.params) == {"sent_now"}  # line 0 was counted as sent: not sent again
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [2.0, 1.0]
    assert (stored.info.status, stored.data.tags["runner.failure"]) == ("KILLED", "process_died")
    assert not folder.exists()
