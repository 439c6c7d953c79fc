"""Bad input, divergence, interruption, unreachable stores: one line, the right exit code, and
an intact store with no run left RUNNING. Most cases call the CLI's own entry point, main(), in
this process (a process costs 2 to 3.5 s); a few of each kind of bad input, divergence and
interruption run the real CLI in a subprocess."""
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from conftest import all_runs, cli, cli_in_process, client_for


def assert_one_line(out, code, *needles):
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == code, (out.returncode, out.stderr[-2000:])
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def assert_nothing_running(uri):
    assert all(r.info.status != "RUNNING" for r in all_runs(uri))


BAD_CONFIG = [
    (["model=foo"], ["model=foo", "line, linear, mlp"]),
    (["optim=newton"], ["optim=newton", "adagrad, adam, adamw, gd, minibatch, momentum, nesterov, rmsprop, sgd"]),
    (["lr=abc"], ["lr", "'abc'"]),
    (["lr=0"], ["lr=0.0", "> 0"]),
    (["lr=-1"], ["lr=-1.0", "> 0"]),
    (["lr=inf"], ["lr=inf", "finite"]),
    (["epochs=0"], ["epochs=0", ">= 1"]),
    (["epochs=2.5"], ["epochs", "2.5"]),
    (["optim=minibatch", "optim.batch_size=0"], ["optim.batch_size=0", ">= 1"]),
    (["model=mlp", "model.hidden=0"], ["model.hidden=0", ">= 1"]),
    (["model=mlp", "model.hidden=abc"], ["model.hidden='abc'", "integer >= 1", "[200,200]"]),
    (["model=mlp", "model.hidden=[0]"], ["model.hidden=[0]", "integer >= 1"]),
    (["model=mlp", "model.activation=gelu"], ["model.activation", "'gelu'", "relu, tanh, sigmoid"]),
    (["dataset.noise=-1"], ["dataset.noise=-1.0", ">= 0"]),
    (["dataset.n_samples=0"], ["dataset.n_samples=0", ">= 1"]),
    (["log_every=0"], ["log_every=0", ">= 1"]),
    (["loss=l1"], ["loss", "'l1'", "mse, sse, half_mse"]),
    (["dtype=float16"], ["dtype", "float16", "float32, float64"]),
    (["dataset.nope=1"], ["dataset.nope"]),
    (["dataset=csv"], ["dataset.path", "required"]),
    (["model.init=xavier"], ["model.init", "'xavier'", "default, normal, zeros"]),
    (["model=line", "model.init=default"], ["model.init", "'default'", "zeros, normal, constant"]),
    (["model=mlp", "model.init=zeros"], ["model.init", "'zeros'", "default, normal"]),
    (["device.name=tpu"], ["device.name", "'tpu'", "auto, cpu, cuda, mps"]),
    (["experiment=csv_linreg", "dataset.task=labels"], ["dataset.task", "'labels'", "regression, classification"]),
    (["optim=adam", "optim.betas=[0.9]"], ["optim.betas", "two numbers"]),
    (["optim=sgd", "optim.momentum=1.5"], ["optim.momentum=1.5", "[0, 1)"]),
    (["dataset.weights=[]"], ["dataset.weights", "at least one"]),
    (["experiment=nope"], ["experiment=nope", "csv_linreg"]),
    (["device.index=-1"], ["device.index=-1"]),
    (["experiment_name= "], ["experiment_name"]),
    (["engine=numpy", "model=line", "optim=adam"], ["optim='adam'", "gd only"]),
    (["engine=jax"], ["engine", "'jax'", "torch, numpy"]),
    (["engine=numpy", "model=line", "device=cpu", "device.name=cuda"], ["device='cuda'", "on the CPU"]),
    (["loss=cross_entropy"], ["loss='cross_entropy'", "classification"]),
    (["dataset=digits"], ["loss='mse'", "cross_entropy"]),
    (["dataset=digits", "loss=cross_entropy", "dataset.test_fraction=1"], ["dataset.test_fraction=1.0"]),
    # an option's name is the option: relabelling it would train one thing under another's name
    (["optim.name=foo"], ["optim.name='foo'", "optim=gd"]),
    (["model.name=foo"], ["model.name='foo'", "model=linear"]),
    (["dataset.name=foo"], ["dataset.name='foo'", "dataset=synthetic_linear"]),
    (["optim=gd", "optim.name=sgd"], ["optim.name='sgd'", "optim=gd"]),
    (["optim=sgd", "optim.name=gd"], ["optim.name='gd'", "optim=sgd"]),
    (["seed=-1"], ["seed=-1", "[0, 2**63)"]),
    (["seed=99999999999999999999"], ["seed=99999999999999999999", "[0, 2**63)"]),
    (["seed=9223372036854775808"], ["seed=9223372036854775808", "[0, 2**63)"]),
]


# through a real process too: an unknown option, a wrong type, a range, an Enum, a missing value
REAL_PROCESS = {"model=foo", "lr=abc", "lr=-1", "engine=jax", "dataset=csv", "optim.name=foo",
                "seed=99999999999999999999"}


@pytest.mark.parametrize("args,needles", BAD_CONFIG, ids=[" ".join(a) for a, _ in BAD_CONFIG])
def test_bad_config_is_one_line_exit_2_and_no_run(args, needles, tmp_path, monkeypatch, capsys):
    if " ".join(args) in REAL_PROCESS:
        out = cli(*args, cwd=tmp_path)
    else:
        out = cli_in_process(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line(out, 2, "error: ", *needles)
    assert not (tmp_path / "mlflow.db").exists()  # refused before any store or run was touched


LONG = "1," * 300_000 + "1\n"
BAD_CSV = {
    "missing": (None, ["no such file"]),
    "directory": ("DIR", ["not a file"]),
    "empty": ("", ["empty file"]),
    "blank_lines": ("\n\n  \n", ["empty file"]),
    "header_only": ("x,y\n", ["no data rows", "header only"]),
    "letters": ("x,y\n1,2\n3,abc\n", ["line 3, column 2", "'abc' is not a number"]),
    "code": ("x,y\n1,__import__('os').system('touch PWNED')\n", ["line 2, column 2", "not a number"]),
    "nan": ("x,y\n1,2\nnan,4\n", ["line 3, column 1", "not a finite number"]),
    "inf": ("x,y\n1,2\n3,inf\n5,6\n", ["line 3, column 2", "not a finite number"]),
    "ragged": ("x,y\n1,2\n3,4,5\n", ["line 3", "ragged"]),
    "one_column": ("y\n1\n2\n3\n", ["at least two columns"]),
    "binary": (b"\x89PNG\r\n\x1a\n\0\0\0IHDR", ["binary"]),
    "latin1": ("x,y\n1,2\ncaf\xe9,3\n".encode("latin-1"), ["line 3", "not UTF-8"]),
    "long_line": ("x,y\n1,2\n" + LONG, ["line 3", "columns"]),
    "bad_target": ("x,y\n1,2\n2,4\n", ["dataset.target='z'", "columns: x, y"]),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_csv_is_one_line_naming_the_file(case, tmp_path, monkeypatch, capsys):
    content, needles = BAD_CSV[case]
    path = tmp_path / "data.csv"
    if content == "DIR":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    extra = ["dataset.target=z"] if case == "bad_target" else []
    args = ["experiment=csv_linreg", f"dataset.path={path}", *extra]
    if case in ("missing", "code"):  # through a real process too
        out = cli(*args, cwd=tmp_path)
    else:
        out = cli_in_process(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line(out, 2, "error: ", "data.csv" if case != "bad_target" else "", *needles)
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "mlflow.db").exists()  # checked before torch, mlflow or any run


def test_divergence_fails_the_run_at_that_epoch_and_keeps_the_points(tmp_path):
    out = cli("lr=100", "epochs=50", cwd=tmp_path)
    line = assert_one_line(out, 1, "diverged at epoch", "marked FAILED")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    [run] = all_runs(uri)
    assert run.info.status == "FAILED" and run.info.run_id in line
    tags = run.data.tags
    epoch = int(tags["runner.failed_epoch"])
    assert tags["runner.failure"] == "diverged" and 1 <= epoch < 50
    assert tags["runner.failed_value"] in ("inf", "nan", "-inf")
    steps = [m.step for m in client_for(uri).get_metric_history(run.info.run_id, "loss")]
    assert steps == list(range(epoch))  # every finite point before the blow-up is kept


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: device=cuda is not absent")
def test_absent_device_is_one_line_and_no_run(tmp_path, monkeypatch, capsys):
    """Checked like every other bad input: before the store or a run exists."""
    out = cli_in_process("device=cuda", "epochs=2", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line(out, 2, "device.name='cuda'", "no CUDA GPU")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("uri,needles", [
    ("http://127.0.0.1:9", ["no MLflow server", "127.0.0.1:9"]),
    ("./mlruns", ["not a usable store", "sqlite:///"]),
    ("sqlite://", ["in-memory or empty"]),
    ("sqlite:////no/such/folder/mlflow.db", ["does not exist"]),
    ("nonsense://x", ["not a usable store"]),
])
def test_bad_tracking_uri_fails_fast_with_one_line(uri, needles, tmp_path, monkeypatch, capsys):
    for env in ({}, {"MLFLOW_TRACKING_URI": uri}):
        args = ["epochs=2"] + ([] if env else [f"tracking.uri={uri}"])
        out = cli_in_process(*args, cwd=tmp_path, env=env, monkeypatch=monkeypatch, capsys=capsys)
        assert_one_line(out, 2, "tracking.uri=", *needles)
        assert not (tmp_path / "mlflow.db").exists()
    # checked before torch or mlflow is imported (MLflow itself would retry a server for minutes)
    out = cli(f"tracking.uri={uri}", cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert out.returncode == 2 and "numpy" in imported and not {"torch", "mlflow"} & imported


def test_corrupt_store_is_a_clear_error_and_left_alone(tmp_path, monkeypatch, capsys):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not a database" * 10)
    out = cli_in_process("epochs=2", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line(out, 2, "not an SQLite database")
    assert db.read_bytes() == b"this is not a database" * 10


def test_secrets_in_the_environment_are_never_logged(tmp_path, monkeypatch, capsys):
    secret = "s3cr3t-token-value"
    out = cli_in_process("experiment=gd_vs_sgd", "epochs=2", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
                         env={"MY_API_TOKEN": secret, "AWS_SECRET_ACCESS_KEY": secret})
    assert out.returncode == 0, out.stderr
    [run] = all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = list(run.data.params.items()) + list(run.data.tags.items())
    assert not any(secret in f"{k}={v}" for k, v in logged)


def test_out_of_gpu_memory_is_one_line_naming_the_run():
    """torch.cuda.OutOfMemoryError, as train.run re-raises it after closing the run FAILED."""
    import torch

    from runner.__main__ import exit_code, one_line
    from runner.errors import note_run

    e = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0)\nmore")
    note_run(e, "abc123")  # as train.run leaves it
    line = one_line(e)
    assert "out of GPU memory" in line and "abc123" in line and "\n" not in line
    assert exit_code(e) == 2


def test_divergence_guard_on_a_gpu_reads_losses_in_windows_and_still_names_the_epoch():
    """The GPU path of torch_engine._Guard (exercised for real in test_cuda.py), on cpu tensors."""
    from types import SimpleNamespace

    import torch

    from runner.config import Diverged
    from runner.torch_engine import _Guard

    guard = _Guard(SimpleNamespace(type="cuda"))
    losses = [1.0, 2.0, 4.0, float("inf"), float("nan")]
    for epoch, v in enumerate(losses[:3], start=1):
        guard.add(epoch, torch.tensor(v))
    assert len(guard.pending) == 3  # nothing read yet: no wait on the GPU
    guard.check()
    assert guard.pending == []
    for epoch, v in enumerate(losses, start=1):
        guard.add(epoch, torch.tensor(v))
    with pytest.raises(Diverged) as e:
        guard.check()
    assert (e.value.epoch, e.value.value) == (4, float("inf"))  # the first bad one, not the last
    window = _Guard(SimpleNamespace(type="cuda"))
    with pytest.raises(Diverged) as e:  # a full window is read without waiting for a record
        for epoch in range(1, _Guard.WINDOW + 1):
            window.add(epoch, torch.tensor(float("nan") if epoch == 7 else 1.0))
    assert e.value.epoch == 7


def test_a_store_that_refuses_the_experiment_is_one_line_and_no_run(tmp_path):
    """Found by the tracking process while the trainer trains: reported as bad input."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from mlflow.entities import ViewType

    c = client_for(uri, create=True)  # before the CLI: nothing else makes it meanwhile
    gone = c.create_experiment("gone")
    c.delete_experiment(gone)
    out = cli("experiment_name=gone", "epochs=3", cwd=tmp_path)
    assert_one_line(out, 2, "experiment_name='gone'", "deleted")
    assert c.search_runs([e.experiment_id for e in c.search_experiments(view_type=ViewType.ALL)],
                         run_view_type=ViewType.ALL) == []
