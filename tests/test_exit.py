"""The CLI exits right after its summary line (runner/shutdown.py skips the interpreter's
teardown): nothing written may be lost on the way, and every exit code stays what it was."""
import subprocess
import sys

from conftest import all_runs, cli_env, client_for


def _cli_to_files(tmp_path, *args):
    """The real CLI with stdout and stderr redirected to files, as in `make run > log`: a
    buffered stream that was not flushed before os._exit would come back short."""
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as o, open(err, "w") as e:
        code = subprocess.run([sys.executable, "-m", "runner", *args], cwd=tmp_path, env=cli_env(),
                              stdout=o, stderr=e, timeout=300).returncode
    return code, out.read_text(), err.read_text()


def test_a_finished_run_keeps_its_summary_and_its_whole_history(tmp_path):
    code, out, err = _cli_to_files(tmp_path, "epochs=40", "device=cpu")
    assert code == 0, err
    summary = [line for line in out.splitlines() if line.startswith("finished:")]
    assert len(summary) == 1 and " experiment=runner" in summary[0], out
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (run,) = all_runs(uri)
    assert run.info.status == "FINISHED"
    history = client_for(uri).get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(41))
    assert run.info.run_id in summary[0]


def test_exit_codes_are_unchanged(tmp_path):
    code, out, err = _cli_to_files(tmp_path, "lr=-1")
    assert (code, out) == (2, "") and err.strip() == "error: lr=-1.0: must be a finite number > 0"
    code, out, err = _cli_to_files(tmp_path, "lr=1e6", "epochs=50", "device=cpu")
    assert code == 1 and "diverged" in err.lower() and err.count("\n") == 1, err
    (run,) = all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.status == "FAILED"
