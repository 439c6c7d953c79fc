"""CLI: `python -m runner [-m] [group=option ...] [key=value ...]`. A thin shell around
train.run(cfg): Hydra composes, we check, train, print one summary line, and map errors to
one line on stderr with exit code 2 (bad input), 1 (a failed run), 130/143 (interrupted), 75 (the
MLflow server stopped answering: the run is kept on disk for `python -m runner.sync`)."""
import sys

if __name__ == "__main__":  # the CLI: its tracking process starts before Hydra is even imported
    from runner.tracking import service

    service.start_early(sys.argv[1:])

import os
import signal
import traceback
from typing import Any, List, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner import config, naming, session
from runner.config import Diverged, Terminated, UserError
from runner.errors import Offline, run_note
from runner.tracking import job_files, service, store

config.register()
OFFLINE_EXIT = 75  # sysexits' EX_TEMPFAIL: nothing is lost, send it later (python -m runner.sync)


@hydra.main(version_base="1.3", config_path=config.CONF_DIR, config_name="config")
def task(cfg: DictConfig) -> Optional[float]:
    """One job. Returns final_loss (what an Optuna sweep minimises), None when a sweep job failed."""
    # the tracking process (started before Hydra, else now) opens the store while we check input
    tracker = service.tracker()
    from runner import train  # numpy; torch comes after the input is checked
    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    parent_id, swept_keys = job_files.read_sweep(hc.sweep.dir) if sweep else (None, [])
    overrides = list(hc.overrides.task)
    varying = naming.varying(overrides, swept_keys)
    name = naming.run_name(cfg, hc.runtime.choices.get("experiment"), overrides, varying)
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
        return _job_ended(hc, "KILLED", name, "killed (scancel or the time limit)", varying)
    except Exception as e:  # also OmegaConf's, e.g. a missing mandatory value
        if not sweep:
            session.current().fail(e, cfg.debug)  # main() reports it: one line, the exit code
            return None
        return _job_ended(hc, "FAILED", name, one_line(e), varying)  # the other jobs go on
    if not sweep and result.link:  # a sweep prints one link at its end, to all of its jobs
        print(f"open: {result.link}", flush=True)  # before the summary, which stays the last line
    print(result.summary(cfg), flush=True)
    if sweep:
        job_files.write_result(hc.runtime.output_dir, {**result.as_dict(), "swept": varying})
    return result.final_loss


def _job_ended(hc: Any, status: str, name: str, reason: str, varying: List[str]) -> None:
    """A sweep's job that did not finish: one line on stderr, and its result file for the parent."""
    print(f"{status.lower()}: {name}: {reason}", file=sys.stderr, flush=True)
    job_files.write_result(hc.runtime.output_dir, {"status": status, "name": name, "reason": reason,
                                                   "swept": varying})


def _in_submitit_job() -> bool:
    """A job that submitit started (SLURM or submitit_local). submitit sets SIGTERM to be ignored
    there, so scancel or a time limit would leave the run RUNNING until SLURM's SIGKILL, and the
    launcher, finding no result, waiting on accounting: take SIGTERM back to end the run KILLED."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return False
    signal.signal(signal.SIGTERM, session.terminate)  # submitit runs the job in its main thread
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
    note = run_note(e)
    if type(e).__name__ == "OutOfMemoryError":  # torch.cuda's; torch is not imported here
        e = UserError(f"device: out of GPU memory ({str(e).splitlines()[0][:200]}); use a smaller "
                      f"dataset.n_samples, model.hidden or optim.batch_size")
    if note:
        return f"{e} ({note})"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return " ".join(lines)[:500] if lines else type(e).__name__


def exit_code(e: BaseException) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    bad_input = (UserError, HydraException, OmegaConfBaseException)
    if isinstance(e, Offline):
        return OFFLINE_EXIT
    return 2 if isinstance(e, bad_input) or type(e).__name__ == "OutOfMemoryError" else 1


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


def main(args: Optional[List[str]] = None, env_defaults: Optional[dict] = None) -> None:
    """The CLI on `args` (None: sys.argv's). Every process-wide setting it makes is put back on
    the way out (runner.session): a caller of main() keeps its own."""
    argv = None if args is None else [__file__, *args]
    with session.session(argv, env_defaults) as s:
        if {"--help", "-h"} & set(sys.argv[1:]) and os.environ.get("RUNNER_PLAIN_HELP") != "1":
            _cache_help_listing()
        try:
            _run(s)
        finally:
            service.release()


def _run(s: session.Session) -> None:
    debug = os.environ.get("RUNNER_DEBUG") == "1"
    try:
        task()
        if s.failed is not None:
            raise s.failed
    except KeyboardInterrupt as e:
        s.abort_sweep(e)
        print("interrupted: the run was closed as KILLED with the points logged so far", file=sys.stderr)
        sys.exit(143 if isinstance(e, Terminated) else 130)
    except Exception as e:
        s.abort_sweep(e)
        debug = debug or s.debug  # a config that did not compose has none
        if debug:
            traceback.print_exc()
        hint = "" if debug or exit_code(e) == 2 or isinstance(e, (Diverged, Offline)) else \
            " (debug=true or RUNNER_DEBUG=1 shows the traceback)"
        print(f"error: {store.masked(one_line(e))}{hint}", file=sys.stderr)
        sys.exit(exit_code(e))
    failures = s.sweep_failures()
    if failures:
        print(f"sweep: {len(failures)} job(s) failed: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    from runner import launcher, shutdown

    launcher.guard_joblib(sys.argv[1:])  # loky's kill of its workers spares the tracking processes
    shutdown.run(main)  # exits right after the summary line: no interpreter teardown
