"""Shared helpers: compose a config as the CLI would, run the real CLI in a subprocess, read a
store back with MlflowClient, and start and stop a real MLflow server process."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import List

import pytest
from hydra import compose, initialize_config_dir

from runner import config

ROOT = Path(__file__).resolve().parents[1]
config.register()


def make_cfg(*overrides: str):
    """The config `python -m runner OVERRIDES` would compose."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def cli_env(env=None) -> dict:
    """This environment without MLFLOW_TRACKING_URI and RUNNER_DEBUG, plus `env`."""
    e = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RUNNER_DEBUG")}
    return {**e, **(env or {})}


def cli(*args: str, cwd, env=None, timeout=300, **kw) -> subprocess.CompletedProcess:
    """Run `python -m runner ARGS` for real, in `cwd`, with MLFLOW_TRACKING_URI unset."""
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env=cli_env(env), text=True,
                          capture_output=True, timeout=timeout, **kw)


def cli_in_process(*args: str, cwd, monkeypatch, capsys, env=None) -> SimpleNamespace:
    """`python -m runner ARGS` through the CLI's own entry point, runner.__main__.main(), in this
    process (a new process costs 2 to 3.5 s): (returncode, stdout, stderr) as from cli()."""
    from runner import __main__ as cli_main

    monkeypatch.chdir(cwd)
    for key in ("MLFLOW_TRACKING_URI", "RUNNER_DEBUG"):
        monkeypatch.delenv(key, raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    try:  # main() puts back every process-wide setting it makes (runner.session)
        cli_main.main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


class NoStoreYet(LookupError):
    """The sqlite file is not there (yet): a test that polls a store must not create it."""


def client_for(uri: str, create: bool = False):
    """MLflow's client of the store at `uri`. Never for a sqlite file that does not exist: MLflow's
    client creates the store at construction, and one the test creates while the runner creates
    its own (aside, then moved into place) is a hot journal on the runner's new file, which then
    reads `database disk image is malformed` (seen in test_launcher's polls under load).
    create=True: a test that makes the store itself, before any runner process."""
    from mlflow.tracking import MlflowClient

    from runner.tracking import sqlite_file

    path = sqlite_file.path_of(uri)
    if path is not None and not path.exists() and not create:
        raise NoStoreYet(f"no store at {path} yet")
    return MlflowClient(tracking_uri=uri)


def all_runs(uri: str, experiment: str = None):
    """Every run in the store (every experiment unless one is named); none while there is no store."""
    try:
        c = client_for(uri)
    except NoStoreYet:
        return []
    exps = [c.get_experiment_by_name(experiment)] if experiment else c.search_experiments()
    ids = [e.experiment_id for e in exps if e is not None]
    return c.search_runs(ids, max_results=1000) if ids else []


# The files that take longest go first: the workers take tests in this order (`make test`: test by
# test, xdist --dist load; `make test-slow`: file by file, --dist loadfile, for the module-wide UI
# and server), and a long one started last keeps one worker busy alone at the end. test_ui mostly
# waits (its UI process starting, the browser): another worker fills the cores meanwhile.
FIRST = ("test_properties.py", "test_readme.py", "test_keys.py",  # make test's longest
         "test_ui.py", "test_offline.py", "test_sweeps.py", "test_faults.py", "test_store_faults.py", "test_api.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST else len(FIRST))


@pytest.fixture
def store(tmp_path):
    """A sqlite URI in a fresh temporary folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One store for a module's many small runs (creating a store costs about a second)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


# ---- a real MLflow server process (test_ui) ----------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int):
    """(state, parent pid) of a process from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name, in parentheses, may hold spaces
    return fields[0], int(fields[1])


def descendants(pid: int) -> List[int]:
    """Every process below `pid`, children first (psutil is not installed: read /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = st[1]
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, ppid in parents.items() if ppid in frontier]
        found += kids
        frontier = kids
    return found


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie has exited


def stop(proc: subprocess.Popen, grace: float = 20.0, first: int = signal.SIGTERM) -> List[int]:
    """`first` (SIGTERM; SIGKILL for a server lost at once) to the server and each of its
    descendants by PID, then SIGKILL what is left after `grace` seconds. The tree is read
    first: once the server exits, its children are re-parented."""
    pids = [proc.pid, *descendants(proc.pid)]
    for pid in pids:
        try:
            os.kill(pid, first)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (proc.poll() is None or any(alive(p) for p in pids[1:])):
        time.sleep(0.2)
    for pid in pids:
        try:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it exited meanwhile
            pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30  # SIGKILLed children are reaped by init: poll, don't guess
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def wait_healthy(uri: str, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server not healthy after {timeout:.0f} s: {log.read_text()[-2000:]}")
