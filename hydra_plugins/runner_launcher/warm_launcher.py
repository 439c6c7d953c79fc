"""`hydra/launcher=warm`: the runner's parallel launcher, a Hydra plugin like joblib's.

Hydra imports every module under hydra_plugins at start-up, so this one stays light: the
work is in runner/launcher.py, imported only when a sweep launches."""
from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class WarmLauncher(Launcher):
    def __init__(self, n_jobs: Any = "auto") -> None:
        self.n_jobs = n_jobs
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from runner import launcher

        return launcher.launch(self, job_overrides, initial_job_idx)
