"""CLI: `python -m runner [-m] [group=option ...] [key=value ...]`. A thin shell around
train.run(cfg): Hydra composes, we check, train, print one summary line, and map errors to
one line on stderr with exit code 2 (bad input), 1 (a failed run), 130/143 (interrupted)."""
import os
import signal
import sys
import traceback
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner import config, data, tracking
from runner.config import Diverged, Terminated, UserError

config.register()
FAILED: list = []  # a single run's error, re-raised outside Hydra (which would print more first)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def task(cfg: DictConfig) -> Optional[float]:
    """One job. Returns final_loss (what an Optuna sweep minimises), None when a sweep job failed."""
    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    if not sweep:
        try:  # bad values and bad CSVs fail here, before torch or mlflow is imported
            config.check(cfg)
            data.check(cfg)
        except Exception as e:  # also OmegaConf's, e.g. a missing mandatory value
            FAILED.append(e)
            return None
    from runner import train

    job = train.Job(launch_dir=hc.runtime.cwd, overrides=list(hc.overrides.task),
                    default_name=hc.job.override_dirname or "default",
                    job_num=hc.job.num if sweep else None,
                    parent_run_id=tracking.read_parent_id(hc.sweep.dir) if sweep else None,
                    quiet=sweep)
    if not sweep:
        try:
            result = train.run(cfg, job)
        except Exception as e:
            FAILED.append(e)
            return None
        print(result.summary(cfg), flush=True)
        return result.final_loss
    try:  # in a sweep one failing job must not stop the others
        result = train.run(cfg, job)
    except Exception as e:
        reason = one_line(e)
        print(f"failed: {job.default_name}: {reason}", file=sys.stderr, flush=True)
        tracking.write_result(hc.runtime.output_dir, {"status": "FAILED", "name": job.default_name,
                                                      "reason": reason})
        return None
    print(result.summary(cfg), flush=True)
    tracking.write_result(hc.runtime.output_dir, result.as_dict())
    return result.final_loss


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


def main() -> None:
    debug = os.environ.get("RUNNER_DEBUG") == "1" or "debug=true" in sys.argv[1:]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print one line each
    signal.signal(signal.SIGTERM, _terminate)
    try:
        task()
        if FAILED:
            raise FAILED[0]
    except KeyboardInterrupt as e:
        tracking.abort_sweep(e)
        print("interrupted: the run was closed as KILLED with the points logged so far", file=sys.stderr)
        sys.exit(143 if isinstance(e, Terminated) else 130)
    except Exception as e:
        tracking.abort_sweep(e)
        if debug:
            traceback.print_exc()
        hint = "" if debug or exit_code(e) == 2 or isinstance(e, Diverged) else \
            " (debug=true or RUNNER_DEBUG=1 shows the traceback)"
        print(f"error: {one_line(e)}{hint}", file=sys.stderr)
        sys.exit(exit_code(e))
    if tracking.SWEEP_FAILURES:
        print(f"sweep: {len(tracking.SWEEP_FAILURES)} job(s) failed: " + "; ".join(tracking.SWEEP_FAILURES),
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
