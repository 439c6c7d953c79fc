"""Where a run's numbers came from: the versions, the overrides, the parent and the commit, as tags."""
import functools
import platform
import subprocess
from pathlib import Path
from typing import Any, Optional

import numpy as np

from runner.tracking import store


def tags(cfg: Any, digest: str, job: Any) -> dict:
    import hydra

    tags = {"runner.dataset": cfg.dataset.name, "runner.model": cfg.model.name,
            "runner.optim": cfg.optim.name, "runner.device": cfg.device.name, "runner.engine": cfg.engine,
            "runner.config_hash": digest, "runner.overrides": store.masked(" ".join(job.overrides)),
            "runner.hydra_version": hydra.__version__, "runner.python_version": platform.python_version(),
            "runner.numpy_version": np.__version__, "mlflow.source.name": "runner"}
    if job.parent_run_id:
        tags["mlflow.parentRunId"] = job.parent_run_id
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


@functools.lru_cache(maxsize=1)  # once per process: a sweep's jobs share it
def git_commit() -> Optional[str]:
    """The commit of the runner's own checkout, if it is one (the code that made the numbers)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, timeout=5,
                             capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
