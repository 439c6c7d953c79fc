"""The README as a new user meets it: the first run shows learning, and every `python -m runner`
line of its everyday block runs as written (in this process, through the CLI's own main())."""
import re
import shlex

import numpy as np

from conftest import ROOT, all_runs, cli_in_process, make_cfg

SERVERS = ("make ui",)  # never exits: tests/test_ui.py starts the UI and looks at it


def everyday_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"Then, every day[^\n]*\n\n```\n(.*?)```", text, re.S).group(1)
    lines = [ln.split("  #")[0].strip() for ln in block.splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith(SERVERS)]
    assert all(c.startswith("python -m runner") for c in commands), commands
    return [shlex.split(c)[3:] for c in commands]


def test_every_everyday_command_of_the_readme_exits_0(tmp_path, monkeypatch, capsys):
    commands = everyday_commands()
    assert len(commands) >= 5 and any("experiments/data/study_hours.csv" in " ".join(c) for c in commands)
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")  # a fresh clone's top, as cwd
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for args in commands:
        out = cli_in_process(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
                             env={"MLFLOW_TRACKING_URI": store})
        assert out.returncode == 0, (args, out.stderr[-2000:])
        assert "error" not in out.stderr.lower(), (args, out.stderr[-2000:])
    runs = all_runs(store)
    assert len(runs) == 1 + 3 + 1  # mlp adam; a sweep's parent and two jobs; csv_linreg
    assert all(r.info.status == "FINISHED" for r in runs)


def test_make_run_reaches_the_least_squares_optimum(tmp_path, monkeypatch, capsys):
    """`make run` is `python -m runner`: its summary says the optimum was reached, and the final
    loss equals numpy's least-squares loss on the same data to 1e-3 (an independent reference)."""
    out = cli_in_process(cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert "(optimum reached)" in line, line
    final = float(re.search(r"final_loss=(\S+)", line).group(1))
    gap = float(re.search(r"gap=(\S+)", line).group(1))
    assert 0 <= gap < 1e-3
    from runner import data

    cfg = make_cfg()
    d = data.build(cfg, cfg.seed)
    X = np.c_[np.asarray(d.X, dtype=np.float64), np.ones(len(d.X))]
    y = np.asarray(d.y, dtype=np.float64).reshape(len(X), -1)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    optimum = float(((X @ w - y) ** 2).mean())
    assert abs(final - optimum) < 1e-3 and final >= optimum - 1e-6, (final, optimum)
