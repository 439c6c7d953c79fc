"""runner.run / sweep / compare from Python: the CLI's configs, store and lines; each call leaves
nothing process-wide changed, so ten calls in one process behave like ten CLI runs."""
import gc
import os
import re
import signal
import sys
import warnings

import pytest
from hydra.core.global_hydra import GlobalHydra

import runner
from conftest import all_runs, cli_in_process

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2]


def state():
    return (gc.get_threshold(), [signal.getsignal(s) for s in SIGNALS], dict(os.environ),
            list(warnings.filters), GlobalHydra.instance().is_initialized(), list(sys.argv), os.getcwd())


@pytest.mark.slow  # ten real runs in one process
def test_ten_calls_leave_the_process_as_they_found_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    reference = cli_in_process("experiment=gd_vs_sgd", "epochs=5", cwd=tmp_path, monkeypatch=monkeypatch,
                               capsys=capsys)
    cli_run = re.search(r" run=(\w+) ", reference.stdout).group(1)
    [first] = all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "gd_vs_sgd")
    assert first.info.run_id == cli_run
    expected = first.data.metrics["final_loss"]
    before = state()
    ids = set()
    for i in range(10):
        if i % 3 == 2:  # a bad value: one exception, the CLI's line, no SystemExit
            with pytest.raises(runner.UserError, match=r"^lr=-1.0: must be a finite number > 0$"):
                runner.run("gd_vs_sgd", lr=-1)
        else:
            result = runner.run("gd_vs_sgd", epochs=5)
            assert result.final_loss == expected  # bit-identical, as two CLI runs
            ids.add(result.run_id)
        assert state() == before, i
    runs = all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "gd_vs_sgd")
    assert len(runs) == 1 + len(ids) == 1 + 7 and all(r.info.status == "FINISHED" for r in runs)


@pytest.mark.slow  # a sweep and two runs in one process
def test_the_cli_in_process_puts_back_what_it_changes(tmp_path, monkeypatch, capsys):
    """A run, a diverging run, bad input and a sweep with a failing job through the CLI's own
    main(), with no reset by hand (runner.session owns it): the collector thresholds, signal
    handlers, environment, warnings filters and Hydra's global state are the caller's after each."""
    from runner import session

    monkeypatch.chdir(tmp_path)
    for key in ("MLFLOW_TRACKING_URI", "RUNNER_DEBUG", "HYDRA_FULL_ERROR"):
        monkeypatch.delenv(key, raising=False)
    thresholds = gc.get_threshold()
    assert thresholds != session.GC_THRESHOLDS  # else putting them back would show nothing
    previous = signal.signal(signal.SIGTERM, lambda *a: None)  # the caller's own handler
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # the caller's own filter
            before = state()
            for args, code, says in ((["epochs=3"], 0, "finished:"),
                                     (["lr=1e300"], 1, "marked FAILED"),
                                     (["lr=-1"], 2, "lr=-1"),
                                     (["-m", "lr=0.1,1e300"], 1, "1 job(s) failed")):
                out = cli_in_process(*args, "experiment=gd_vs_sgd", "epochs=3", cwd=tmp_path,
                                     monkeypatch=monkeypatch, capsys=capsys)
                assert out.returncode == code and says in out.stdout + out.stderr, out.stderr
                assert state() == before, args
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_run_returns_history_figures_and_link(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the CLI's rule: the environment's store
    r = runner.run(["experiment=gd_vs_sgd", "lr=0.1"], **{"optim.shuffle": False, "log_every": 10},
                   run_name="lesson 1: gd's line")  # a string Hydra needs quoted
    assert r.summary.startswith("finished: final_loss=") and f"run={r.run_id}" in r.summary
    assert list(r.history.index) == list(range(0, 101, 10)) and r.history["loss"].iloc[-1] == r.final_loss
    assert r.history["w"].iloc[-1] == pytest.approx(2.0, abs=1e-9)  # y = 2x
    assert {"loss_curve", "fit", "trajectory"} <= set(r.figures)
    assert r.figures["loss_curve"].png.startswith(b"\x89PNG")
    bundle = r._repr_mimebundle_()
    assert "image/png" in bundle and r.summary in bundle["text/plain"]
    assert r.link.endswith(f"/runs/{r.run_id}?workflowType=machine_learning")
    [stored] = all_runs(uri, "gd_vs_sgd")
    assert stored.info.run_id == r.run_id and stored.data.params["lr"] == "0.1"
    assert stored.info.run_name == r.name == "lesson 1: gd's line"
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow  # a sweep of real runs
def test_sweep_and_compare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = runner.sweep("gd_vs_sgd", optim=["gd", "sgd"], seed=range(2), epochs=5)
    assert len(s.jobs) == 4 and set(s.jobs["status"]) == {"FINISHED"}
    assert list(s.jobs["final_loss"]) == sorted(s.jobs["final_loss"])  # ranked, best first
    assert set(s.jobs["optim.name"]) == {"gd", "sgd"} and s.figure.png.startswith(b"\x89PNG")
    assert s.summary.startswith("sweep: 4 of 4 jobs ok") and s.parent_run_id in s.summary
    df = runner.compare(experiment="gd_vs_sgd")
    assert list(df["run_id"]) == list(s.jobs["run_id"])
    with pytest.raises(runner.UserError, match="no such experiment"):
        runner.compare(experiment="nope")
    with pytest.raises(runner.UserError, match=r"^optim=nope: unknown option"):
        runner.sweep(optim=["gd", "nope"])


def test_import_runner_is_cheap():
    import subprocess

    code = "import runner, sys; print(sorted(m for m in ('hydra', 'torch', 'mlflow', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_failed_run_raises_and_a_sweep_with_a_failed_job_returns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(runner.RunFailed, match=r"^diverged at epoch 23: loss = inf \(run \w+, marked FAILED\)$"):
        runner.run("gd_vs_sgd", lr=1e6)
    s = runner.sweep("gd_vs_sgd", lr=[0.01, 1e6])
    assert list(s.jobs["status"]) == ["FINISHED", "FAILED"] and s.summary.startswith("sweep: 1 of 2 jobs ok")
    assert len(s.failed) == 1 and "diverged at epoch 23" in s.failed[0]
