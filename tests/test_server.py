"""Server mode for real: one `mlflow server` process (sqlite backend, proxied artifacts) started
once per test session; sweeps log to it over HTTP. At the end the server and every process it
started (uvicorn, the job runner and its consumers) are stopped, each by its own PID."""
import os
import subprocess
import sys

import pytest

from conftest import all_runs, cli, client_for, free_port, stop, wait_healthy

pytestmark = pytest.mark.slow  # a real server process: ~25 s to start


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """The URI of a real `mlflow server` on a free port, started once for the session."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
             "--artifacts-destination", str(root / "artifacts")],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(uri, proc, log)
        yield uri
    finally:
        survivors = stop(proc)
        assert survivors == [], f"mlflow server processes still alive: {survivors}"


def test_a_sweep_logs_to_the_mlflow_server(mlflow_server, tmp_path):
    epochs = 8
    proc = cli("-m", f"tracking.uri={mlflow_server}", "experiment_name=server_sweep", "lr=1e-3,1e-2",
               "dataset.n_samples=50", f"epochs={epochs}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the default store
    runs = all_runs(mlflow_server, "server_sweep")
    [parent] = [r for r in runs if r.data.tags.get("runner.sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and len(runs) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    client = client_for(mlflow_server)
    for run in children:
        assert [m.step for m in sorted(client.get_metric_history(run.info.run_id, "loss"),
                                       key=lambda m: m.step)] == list(range(epochs + 1))
        assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    best = min(children, key=lambda r: r.data.metrics["final_loss"])
    assert parent.data.tags["runner.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_final_loss"] == best.data.metrics["final_loss"]
    assert "sweep_loss_curves.png" in [a.path for a in client.list_artifacts(parent.info.run_id)]
