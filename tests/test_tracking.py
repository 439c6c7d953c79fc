"""What a run leaves in MLflow, read back with MlflowClient from a real sqlite store."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, all_runs, cli, cli_in_process, client_for, make_cfg
from runner import train


def write_csv(path, n=30):
    path.write_text("x,y\n" + "".join(f"{i / n},{3 * i / n + 1}\n" for i in range(n)))
    return path


def test_cli_run_record_params_metrics_tags_artifacts(tmp_path):
    csv = write_csv(tmp_path / "data.csv")
    out = cli("experiment=csv_linreg", f"dataset.path={csv}", "epochs=20", "log_every=5", "lr=0.1",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the default store: ./mlflow.db in the launch dir
    [run] = all_runs(uri, "csv_linreg")
    c = client_for(uri)
    assert run.info.status == "FINISHED"

    p = run.data.params
    assert p["lr"] == "0.1" and p["epochs"] == "20" and p["optim.name"] == "gd"
    assert p["model.name"] == "line" and p["dataset.name"] == "csv" and p["device.name"] == "auto"
    assert p["optim.batch_size"] == "None" and p["dataset.path"] == str(csv) and p["dtype"] == "float64"
    assert not any(k.startswith("tracking") for k in p)

    steps = {k: [m.step for m in c.get_metric_history(run.info.run_id, k)] for k in ("loss", "w", "b")}
    assert steps == {k: [0, 5, 10, 15, 20] for k in ("loss", "w", "b")}
    assert set(run.data.metrics) == {"loss", "w", "b", "final_loss", "train_seconds", "optimal_loss", "gap"}
    assert run.data.metrics["final_loss"] == run.data.metrics["loss"] < 1.0

    t = run.data.tags
    assert (t["runner.dataset"], t["runner.model"], t["runner.optim"], t["runner.device"]) == (
        "csv", "line", "gd", "auto")
    # device=auto takes the GPU where there is one (this test also runs on GPU machines)
    auto = f"cuda:0 {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
    assert t["runner.device_resolved"] == auto
    assert t["runner.torch_version"] == torch.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert t["mlflow.source.git.commit"] == head.stdout.strip()

    names = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert names == {"config.yaml", "overrides.yaml", "loss_curve.png", "fit.png", "trajectory.png", "model.pt"}
    state = torch.load(c.download_artifacts(run.info.run_id, "model.pt", str(tmp_path)), weights_only=True)
    assert set(state) == {"w", "b"} and state["w"].dtype == torch.float64
    assert float(state["w"].reshape(())) == run.data.metrics["w"]
    overrides = open(c.download_artifacts(run.info.run_id, "overrides.yaml", str(tmp_path))).read()
    assert "epochs=20" in overrides and "experiment=csv_linreg" in overrides

    last = out.stdout.strip().splitlines()[-1]
    assert run.info.run_id in last and "final_loss=" in last and "experiment=csv_linreg" in last


def test_log_every_always_includes_the_last_epoch(shared_store):
    result = train.run(make_cfg("epochs=7", "log_every=3", f"tracking.uri={shared_store}"))
    assert [s for s, _ in result.curve] == [0, 3, 6, 7]
    hist = client_for(shared_store).get_metric_history(result.run_id, "loss")
    assert sorted(m.step for m in hist) == [0, 3, 6, 7]


def test_store_resolution_order(tmp_path, monkeypatch):
    from runner.tracking.store import resolve_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None, str(tmp_path)) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////x/env.db")
    assert resolve_uri(None, str(tmp_path)) == "sqlite:////x/env.db"
    assert resolve_uri("http://127.0.0.1:5000", str(tmp_path)) == "http://127.0.0.1:5000"


def test_env_store_is_used_when_no_override(tmp_path, monkeypatch, capsys):
    other = tmp_path / "elsewhere"
    other.mkdir()
    out = cli_in_process("experiment=gd_vs_sgd", "epochs=2", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
                         env={"MLFLOW_TRACKING_URI": f"sqlite:///{other / 'env.db'}"})
    assert out.returncode == 0, out.stderr
    assert (other / "env.db").exists() and not (tmp_path / "mlflow.db").exists()
    assert [r.info.status for r in all_runs(f"sqlite:///{other / 'env.db'}")] == ["FINISHED"]


def test_help_and_cfg_job_import_neither_torch_nor_mlflow(tmp_path):
    # printed by an atexit handler: the CLI ends in os._exit after running them (runner/shutdown.py)
    probe = ("import atexit, runpy, sys\n"
             "sys.argv = ['runner'] + sys.argv[1:]\n"
             "atexit.register(lambda: print('HEAVY', [m for m in ('torch', 'mlflow', 'matplotlib')"
             " if m in sys.modules]))\n"
             "runpy.run_module('runner', run_name='__main__')\n")
    for args in (["--help"], ["--cfg", "job"], ["--cfg", "job", "model=mlp", "optim=adam"]):
        out = subprocess.run([sys.executable, "-c", probe, *args], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "HEAVY []" in out.stdout, (args, out.stdout[-300:])
    helped = subprocess.run([sys.executable, "-m", "runner", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60).stdout
    for line in ("dataset: csv, digits, mnist, random_mlp, synthetic_linear", "model: line, linear, mlp",
                 "optim: adagrad, adam, adamw, gd, minibatch, momentum, nesterov, rmsprop, sgd",
                 "objective: beale, parabola, rosenbrock, saddle, x2sinx", "device: auto, cpu, cuda, mps"):
        assert line in helped
    assert "csv_linreg" in helped and "gd_vs_sgd" in helped and "mnist_mlp" in helped
    plain = subprocess.run([sys.executable, "-m", "runner", "--help"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60, env={**os.environ, "RUNNER_PLAIN_HELP": "1"}).stdout
    assert plain == helped  # the cached group listing changes nothing but the time


def test_store_stays_in_rollback_journal_mode(shared_store):
    """WAL is deliberately not enabled (runner/tracking/store.py, get_client): it persists in the file and
    breaks stores on network file systems that cluster sweeps share."""
    import sqlite3

    from runner.tracking.store import sqlite_path

    train.run(make_cfg("epochs=3", f"tracking.uri={shared_store}"))
    path = sqlite_path(shared_store)
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not path.with_name(path.name + "-wal").exists()


def test_the_logged_model_loads_with_mlflow_and_predicts_as_the_state_dict(tmp_path, monkeypatch):
    """runs:/ID/model through MLflow's pytorch flavour; model.pt through a plain weights-only load
    into a fresh module: the same predictions, for the hand-written line and for an mlp."""
    import mlflow.pytorch
    import numpy as np

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for overrides, fresh in ((["experiment=gd_vs_sgd"], None),
                             (["model=mlp", "optim=adam", "model.hidden=7", "epochs=5"],
                              lambda: torch.nn.Sequential(torch.nn.Linear(2, 7), torch.nn.ReLU(),
                                                          torch.nn.Linear(7, 1)))):
        result = train.run(make_cfg(*overrides, f"tracking.uri={uri}"))
        c = client_for(uri)
        run = c.get_run(result.run_id)
        assert [m.model_id for m in run.outputs.model_outputs]  # the Models column's link
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # where runs:/ looks
        loaded = mlflow.pytorch.load_model(f"runs:/{result.run_id}/model")
        state = torch.load(c.download_artifacts(result.run_id, "model.pt", str(tmp_path)), weights_only=True)
        X = torch.from_numpy(np.random.default_rng(1).standard_normal((6, 1 if fresh is None else 2)))
        X = X.to(next(loaded.parameters()).dtype)
        if fresh is None:  # the line: ŷ = X·w + b from its own tensors
            expected = X @ state["w"] + state.get("b", 0.0)
        else:
            module = fresh().to(X.dtype)
            module.load_state_dict(state)
            expected = module(X)
        with torch.no_grad():
            assert torch.allclose(loaded(X), expected, rtol=1e-12, atol=0)
    [inp] = run.inputs.dataset_inputs
    assert inp.dataset.name == "synthetic_linear" and "seed=0" in inp.dataset.source


@pytest.mark.parametrize("mlflow_version", ["tested", "another"])
def test_the_model_folder_is_the_one_mlflow_pytorch_save_model_writes(tmp_path, monkeypatch, mlflow_version):
    """The tracking process writes the pytorch flavour's folder itself (no torch there): the
    same files and the same MLmodel as mlflow.pytorch.save_model, the independent reference.
    With an MLflow its private helpers were not checked against, MLflow's own save_model does."""
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import yaml
    from mlflow.models import infer_signature

    from runner.tracking import model_folder, record

    if mlflow_version == "another":
        monkeypatch.setattr(model_folder, "TESTED_MLFLOW", ())
        monkeypatch.setattr(model_folder, "write", None)  # must not be called
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)).double()
    example = np.random.default_rng(0).standard_normal((5, 2))
    with torch.no_grad():
        output = module(torch.from_numpy(example)).numpy()
    reference = tmp_path / "reference"
    mlflow.pytorch.save_model(module, str(reference), signature=infer_signature(example, output),
                              input_example=example, serialization_format="pickle",
                              pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = record.Tracker().start_run(uri, "models", "m", {})
    run.log_model(module, example, 0)
    run.end()
    [output_ref] = client_for(uri).get_run(run.id).outputs.model_outputs  # the Models column's link
    model_id = output_ref.model_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    ours = Path(mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=str(tmp_path / "ours")))

    def files(root):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    assert [f for f in files(ours) if f != "registered_model_meta"] == files(reference)  # the store adds it
    for name in ("requirements.txt", "conda.yaml", "python_env.yaml", "input_example.json",
                 "serving_input_example.json", "data/pickle_module_info.txt"):
        if (reference / name).exists():
            assert (ours / name).read_text() == (reference / name).read_text(), name
    volatile = ("utc_time_created", "model_uuid", "model_size_bytes", "model_id", "artifact_path", "run_id")
    mine, theirs = (yaml.safe_load((d / "MLmodel").read_text()) for d in (ours, reference))
    assert {k: v for k, v in mine.items() if k not in volatile} == \
        {k: v for k, v in theirs.items() if k not in volatile}
    loaded = mlflow.pyfunc.load_model(f"models:/{model_id}")  # the pyfunc flavour predicts too
    assert np.allclose(loaded.predict(example), output, rtol=1e-12, atol=0)


def _methods(protocol):
    return [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]


def test_both_tracking_surfaces_have_the_protocols_signatures():
    """issue 18: record (in-process) and service (through the tracking process) drifted while a
    comment kept them in step; now each method has the Protocol's signature, annotations included."""
    import inspect

    from runner.tracking import interface, record, remote_run, service

    pairs = [(interface.Tracking, record.Tracker, service.Service),
             (interface.RunRecord, record.Run, remote_run.RemoteRun)]
    for protocol, here, remote in pairs:
        names = _methods(protocol)
        assert len(names) >= 5, protocol
        for name in names:
            want = inspect.signature(getattr(protocol, name))
            assert inspect.signature(getattr(here, name)) == want, f"{here.__name__}.{name}"
            assert inspect.signature(getattr(remote, name)) == want, f"{remote.__name__}.{name}"
    properties = [n for n, v in vars(interface.RunRecord).items() if isinstance(v, property)]
    assert set(properties) == {"id", "name", "uri", "experiment_id"}
    assert all(isinstance(getattr(remote_run.RemoteRun, n), property) for n in ("id", "experiment_id"))


def test_the_tracking_process_carries_out_only_the_calls_on_its_list():
    """A method name read from the pipe is looked up in an allow-list, never with getattr: a real
    method of record.Tracker that is not on it (connect), or a dunder, is refused and reported."""
    import pytest

    from runner.tracking import service

    svc = service.Service()
    try:
        for name in ("connect", "__init__", "log_points"):  # log_points is a run's, not the tracker's
            with pytest.raises(service.TrackingError, match=f"has no call '{name}'"):
                svc.ask(None, name)
        assert svc.proc.poll() is None  # refused, and still serving
    finally:
        svc.stop()
        assert svc.proc.wait(timeout=120) == 0
