"""Shared helpers: compose a config as the CLI would, run the real CLI in a subprocess, and
read a store back with MlflowClient."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from runner import config

ROOT = Path(__file__).resolve().parents[1]
config.register()


def make_cfg(*overrides: str):
    """The config `python -m runner OVERRIDES` would compose."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def cli(*args: str, cwd, env=None, timeout=300, **kw) -> subprocess.CompletedProcess:
    """Run `python -m runner ARGS` for real, in `cwd`, with MLFLOW_TRACKING_URI unset."""
    e = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RUNNER_DEBUG")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env=e, text=True,
                          capture_output=True, timeout=timeout, **kw)


def client_for(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def all_runs(uri: str, experiment: str = None):
    """Every run in the store (every experiment unless one is named)."""
    c = client_for(uri)
    exps = [c.get_experiment_by_name(experiment)] if experiment else c.search_experiments()
    ids = [e.experiment_id for e in exps if e is not None]
    return c.search_runs(ids, max_results=1000) if ids else []


@pytest.fixture
def store(tmp_path):
    """A sqlite URI in a fresh temporary folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One store for a module's many small runs (creating a store costs about a second)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
