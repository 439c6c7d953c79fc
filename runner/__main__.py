"""CLI: `python -m runner [-m] [group=option ...] [key=value ...]`. A thin shell around
train.run(cfg): Hydra composes, we check, train, print one summary line, and map errors to
one line on stderr with exit code 2 (bad input), 1 (a failed run), 130/143 (interrupted)."""
import sys

if __name__ == "__main__":  # the CLI: its tracking process starts before Hydra is even imported
    from runner.tracking import service

    service.start_early(sys.argv[1:])

import contextlib
import gc
import os
import signal
import traceback
import warnings
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner import config
from runner.config import Diverged, Terminated, UserError
from runner.tracking import service, store
from runner.tracking import sweep as sweeps

config.register()
FAILED: list = []  # a single run's error, re-raised outside Hydra (which would print more first)


@hydra.main(version_base="1.3", config_path=config.CONF_DIR, config_name="config")
def task(cfg: DictConfig) -> Optional[float]:
    """One job. Returns final_loss (what an Optuna sweep minimises), None when a sweep job failed."""
    # The tracking process (started by the CLI before Hydra, else now) imports mlflow and opens
    # the store while this process checks the input and imports torch.
    tracker = service.tracker()
    from runner import train  # numpy; torch comes after the input is checked
    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    parent_id, swept_keys = sweeps.read_sweep(hc.sweep.dir) if sweep else (None, [])
    overrides = list(hc.overrides.task)
    varying = {sweeps.override_key(o): o.split("=", 1)[1] for o in overrides
               if sweeps.override_key(o) in swept_keys}
    name = train.run_name(cfg, hc.runtime.choices.get("experiment"), overrides, varying)
    submitted = _in_submitit_job()
    try:
        job = train.Job(launch_dir=hc.runtime.cwd, overrides=overrides, default_name=name,
                        job_num=hc.job.num if sweep else None, parent_run_id=parent_id, quiet=sweep,
                        tracker=tracker, swept=list(swept_keys))
        result = train.run(cfg, job)
    except KeyboardInterrupt:
        if not submitted:
            raise  # Ctrl-C on a sweep in this process stops the whole sweep
        # scancel or a time limit stopped this job alone: the run is KILLED, the sweep goes on
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # SLURM may signal twice; the result must land
        reason = "killed (scancel or the time limit)"
        print(f"killed: {name}: {reason}", file=sys.stderr, flush=True)
        sweeps.write_result(hc.runtime.output_dir, {"status": "KILLED", "name": name, "reason": reason,
                                                    "swept": varying})
        return None
    except Exception as e:  # also OmegaConf's, e.g. a missing mandatory value
        if not sweep:
            e.debug = cfg.debug  # the composed value: debug=true, debug=True, debug=1 ...
            FAILED.append(e)  # main() reports it: one line, the exit code
            return None
        reason = one_line(e)  # in a sweep one failing job must not stop the others
        print(f"failed: {name}: {reason}", file=sys.stderr, flush=True)
        sweeps.write_result(hc.runtime.output_dir, {"status": "FAILED", "name": name, "reason": reason,
                                                    "swept": varying})
        return None
    if not sweep and result.link:  # a sweep prints one link at its end, to all of its jobs
        print(f"open: {result.link}", flush=True)  # before the summary, which stays the last line
    print(result.summary(cfg), flush=True)
    if sweep:
        sweeps.write_result(hc.runtime.output_dir, {**result.as_dict(), "swept": varying})
    return result.final_loss


def _in_submitit_job() -> bool:
    """A job that submitit started (SLURM or submitit_local). submitit sets SIGTERM to be ignored
    there, so scancel or a time limit would leave the run RUNNING until SLURM's SIGKILL, and the
    launcher, finding no result, waiting on accounting: take SIGTERM back to end the run KILLED."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return False
    signal.signal(signal.SIGTERM, _terminate)  # submitit runs the job in its main thread
    warning = signal.getsignal(signal.SIGUSR2)  # submitit's: requeue when preempted, else raise

    def time_limit(signum, frame):
        try:
            warning(signum, frame)
        except Exception:  # timed out, no requeue left: the time limit ends the run as scancel does
            raise Terminated() from None

    if callable(warning):
        signal.signal(signal.SIGUSR2, time_limit)
    return True


def one_line(e: BaseException) -> str:
    """The user-facing line for an error: the key, the value and what is allowed."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    if isinstance(e, OverrideParseException):
        msg = " ".join(str(e).split("See https://")[0].split())
        return f"{e.override}: cannot parse this override ({msg}); quote odd values: key='value'"
    if isinstance(e, MissingConfigException) and e.missing_cfg_file and e.options is not None:
        group, _, option = e.missing_cfg_file.rpartition("/")
        return f"{group}={option}: unknown option; choose one of {', '.join(sorted(e.options))}"
    cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else e
    if isinstance(cause, MissingMandatoryValue):
        return f"{cause.full_key}: required, give it on the command line ({cause.full_key}=...)"
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        msg = str(cause).splitlines()[0]
        return f"{cause.full_key}: {msg}"
    if type(e).__name__ == "OutOfMemoryError":  # torch.cuda's; torch is not imported here
        oom = UserError(f"device: out of GPU memory ({str(e).splitlines()[0][:200]}); use a smaller "
                        f"dataset.n_samples, model.hidden or optim.batch_size")
        oom.run_id, e = getattr(e, "run_id", None), oom
    if getattr(e, "run_id", None):
        return f"{e} (run {e.run_id}, marked FAILED)"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return " ".join(lines)[:500] if lines else type(e).__name__


def exit_code(e: BaseException) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    bad_input = (UserError, HydraException, OmegaConfBaseException)
    return 2 if isinstance(e, bad_input) or type(e).__name__ == "OutOfMemoryError" else 1


def _terminate(signum, frame):
    raise Terminated()


def _cache_help_listing() -> None:
    """Hydra's --help lists every config group by building a fresh copy of the whole config
    repository per group (119 deep copies, ~0.6 s here). The copies are never modified while
    help is printed, so one per (config, overrides) gives byte-identical output in half the
    time. Private Hydra API (pinned 1.3.2): if it is not there, help is just slower."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    original = getattr(ConfigLoaderImpl, "_parse_overrides_and_create_caching_repo", None)
    if original is None:
        return
    cache = {}

    def cached(self, config_name, overrides):
        key = (id(self), config_name, tuple(overrides))
        if key not in cache:
            cache[key] = original(self, config_name, overrides)
        return cache[key]

    ConfigLoaderImpl._parse_overrides_and_create_caching_repo = cached


def main() -> None:
    # torch, mlflow and matplotlib build hundreds of thousands of long-lived objects on import; at
    # Python's default thresholds (700, 10, 10) the collector walks them over and over while they
    # are built: ~0.7 s of a 4.5 s csv_linreg run here (`make bench` P2). Young collections every
    # 100k allocations keep that away while the loop's short-lived cycles are still collected.
    # Restored on the way out: a caller of main() keeps its own settings.
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 1000)
    try:
        # Hydra and MLflow take these from the environment alone. HYDRA_FULL_ERROR lets errors
        # reach us (we print one line each); MLflow's HTTP patience: see store.HTTP_PATIENCE.
        with _environment({"HYDRA_FULL_ERROR": "1"}, store.HTTP_PATIENCE):
            _main()
    finally:
        gc.set_threshold(*thresholds)


@contextlib.contextmanager
def _environment(values: dict, defaults: dict):
    """Set `values`, and `defaults` where the user has not, for the time of the block only."""
    saved = {k: os.environ.get(k) for k in {**values, **defaults}}
    os.environ.update(values)
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _main() -> None:
    if {"--help", "-h"} & set(sys.argv[1:]) and os.environ.get("RUNNER_PLAIN_HELP") != "1":
        _cache_help_listing()
    try:
        _run()
    finally:
        service.release()


def _run() -> None:
    debug = os.environ.get("RUNNER_DEBUG") == "1"
    # hydra-optuna-sweeper 1.3.0 (written for optuna 2) builds the distributions optuna 3 deprecated
    # and hands TPESampler every argument optuna 4.3-4.9 deprecated: warnings about the plugin's
    # code, not the user's config, a dozen per sweep. Both stay until optuna 6.
    warnings.filterwarnings("ignore", r"(`\w+`|\w+Distribution) has been deprecated in v[34]\.",
                            FutureWarning)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        task()
        if FAILED:
            raise FAILED[0]
    except KeyboardInterrupt as e:
        sweeps.abort_sweep(e)
        print("interrupted: the run was closed as KILLED with the points logged so far", file=sys.stderr)
        sys.exit(143 if isinstance(e, Terminated) else 130)
    except Exception as e:
        sweeps.abort_sweep(e)
        debug = debug or getattr(e, "debug", False)  # a config that did not compose has none
        if debug:
            traceback.print_exc()
        hint = "" if debug or exit_code(e) == 2 or isinstance(e, Diverged) else \
            " (debug=true or RUNNER_DEBUG=1 shows the traceback)"
        print(f"error: {store.masked(one_line(e))}{hint}", file=sys.stderr)
        sys.exit(exit_code(e))
    if sweeps.SWEEP_FAILURES:
        print(f"sweep: {len(sweeps.SWEEP_FAILURES)} job(s) failed: " + "; ".join(sweeps.SWEEP_FAILURES),
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    from runner import shutdown

    shutdown.run(main)  # exits right after the summary line: no interpreter teardown
