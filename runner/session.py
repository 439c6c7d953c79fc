"""One CLI command's process-wide settings, owned by one context manager (the shape of
lightning-hydra-template's task_wrapper): set on the way in, put back on the way out, so that a
caller of runner.__main__.main() (the notebook API, the tests) keeps its own and ten commands in
one process behave like ten CLI runs. The Session it yields is what one command's parts tell
each other: a single run's error (re-raised outside Hydra), the sweep's callback."""
import contextlib
import gc
import os
import signal
import sys
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from runner.errors import Terminated
from runner.tracking.store import HTTP_PATIENCE

# torch, mlflow and matplotlib build hundreds of thousands of long-lived objects on import; at
# Python's default thresholds (700, 10, 10) the collector walks them over and over while they
# are built: ~0.7 s of a 4.5 s csv_linreg run here (`make bench` P2). Young collections every
# 100k allocations keep that away while the loop's short-lived cycles are still collected.
GC_THRESHOLDS = (100_000, 50, 1000)
# Hydra takes this from the environment alone: errors reach us (we print one line each).
ENVIRONMENT = {"HYDRA_FULL_ERROR": "1"}
# hydra-optuna-sweeper 1.3.0 (written for optuna 2) builds the distributions optuna 3 deprecated
# and hands TPESampler every argument optuna 4.3-4.9 deprecated: warnings about the plugin's
# code, not the user's config, a dozen per sweep. Both stay until optuna 6.
OPTUNA_DEPRECATIONS = r"(`\w+`|\w+Distribution) has been deprecated in v[34]\."
# SIGTERM is ours; submitit's job takes SIGUSR2 (see __main__._in_submitit_job): all put back
SIGNALS = tuple(getattr(signal, s) for s in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, s))


@dataclass
class Session:
    failed: Optional[BaseException] = None  # a single run's error: main() reports it, not Hydra
    debug: bool = False  # that run's composed `debug` (debug=true, True, 1 ...)
    sweep: Any = None  # the sweep's callback (tracking.sweep.SweepCallback), once a sweep starts

    def fail(self, error: BaseException, debug: bool) -> None:
        self.failed, self.debug = error, bool(debug)

    def sweep_failures(self) -> List[str]:
        return list(self.sweep.failures) if self.sweep is not None else []

    def abort_sweep(self, error: BaseException) -> None:
        if self.sweep is not None:
            self.sweep.abort(error)


_CURRENT: ContextVar[Optional[Session]] = ContextVar("runner_session", default=None)


def current() -> Optional[Session]:
    """The command running now, for the parts Hydra calls (the task, the sweep's callback)."""
    return _CURRENT.get()


def terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def session(argv: Optional[List[str]] = None, env_defaults: Optional[Dict[str, str]] = None) -> Iterator[Session]:
    """argv replaces sys.argv for the command (None: as it is); env_defaults are set where the
    environment has none, like MLflow's HTTP patience (store.HTTP_PATIENCE)."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance()
    saved_hydra = hydra.hydra if hydra.is_initialized() else None
    saved_env, saved_argv, cwd = dict(os.environ), sys.argv, os.getcwd()
    thresholds, handlers = gc.get_threshold(), {s: signal.getsignal(s) for s in SIGNALS}
    token = _CURRENT.set(Session())
    try:
        with warnings.catch_warnings():  # puts the filters back
            warnings.filterwarnings("ignore", OPTUNA_DEPRECATIONS, FutureWarning)
            gc.set_threshold(*GC_THRESHOLDS)
            os.environ.update(ENVIRONMENT)
            for key, value in {**HTTP_PATIENCE, **(env_defaults or {})}.items():
                os.environ.setdefault(key, value)
            signal.signal(signal.SIGTERM, terminate)
            sys.argv = sys.argv if argv is None else list(argv)
            hydra.clear()  # @hydra.main initialises Hydra's global state: each command anew
            yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)
        hydra.clear()
        if saved_hydra is not None:
            hydra.initialize(saved_hydra)
        for s, h in handlers.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        gc.set_threshold(*thresholds)
        os.chdir(cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
