"""runner.run, runner.sweep, runner.compare: the CLI from Python, for a notebook.

Each call is one CLI command, run in this process through the CLI's own entry point (Hydra's
real composition and multirun, the same checks, names, store rule and sweep parent), then read
back from the store. Whatever the CLI changes process-wide (collector thresholds, signal
handlers, environment, warnings filters, Hydra's global state, sys.argv, the working folder) is
put back by the CLI's own session (runner.session) when the call returns, so that ten calls in one kernel behave like ten CLI runs."""
import contextlib
import io
import os
import re
import sys
from typing import Any, List, Optional, Sequence, Tuple, Union

from runner.errors import UserError

Args = Union[str, Sequence[str]]


class RunFailed(Exception):
    """The run (or every job of a sweep) failed after it started: diverged, a store gone. The
    message is the CLI's one line; the run is marked FAILED in the store."""


def run(*args: Args, **overrides: Any):
    """One run, as `python -m runner ARGS KEY=VALUE ...`; returns a RunResult.
    run("gd_vs_sgd", lr=0.1, optim="adam"); run(["experiment=gd_vs_sgd", "lr=0.1"]);
    run(**{"optim.batch_size": 20})."""
    from runner import results

    argv = _argv(args, overrides, sweep=False)
    out = _cli(argv, echo=False)
    line = _last(out, ("finished:", "skipped:"))
    match = re.search(r" run=(\w+) experiment=", line or "")
    if match is None:
        raise RunFailed(f"no summary line from: python -m runner {' '.join(argv)}")
    return results.load_run(_uri(argv), match.group(1), line)


def sweep(*args: Args, sort: str = "final_loss", **overrides: Any):
    """A sweep, as `python -m runner -m ARGS KEY=A,B ...`: a list, tuple or range sweeps over its
    values (lr=[1e-3, 1e-2], seed=range(3)); a string is passed as written (lr="1e-3,1e-2").
    Returns a SweepResult: its jobs as a DataFrame (best first) and the overlaid curves."""
    from runner import results

    argv = ["-m", *_argv(args, overrides, sweep=True)]
    try:
        out = _cli(argv, echo=True)
    except RunFailed as e:  # some jobs failed: the sweep still has a parent worth returning
        out = getattr(e, "stdout", "")
        if not re.search(r"; parent run \w+", out):
            raise
    line = _last(out, ("sweep:",)) or ""
    match = re.search(r"; parent run (\w+)", line)
    if match is None:
        raise RunFailed(f"no sweep summary from: python -m runner {' '.join(argv)}")
    return results.load_sweep(_uri(argv), match.group(1), line, sort)


def compare(experiment: Optional[str] = None, parent: Optional[str] = None, sort: str = "final_loss",
            tracking_uri: Optional[str] = None):
    """The DataFrame `python -m runner.compare` prints: the latest sweep (of `experiment`), or
    the sweep whose parent run is `parent`; one row per job, sorted by `sort`."""
    import argparse

    from runner import compare as cmp  # the module (callable: this function)
    from runner.tracking import read, store

    uri = store.resolve_uri(tracking_uri, os.getcwd())
    client = store.open_store(uri)
    found = cmp.find_parent(client, argparse.Namespace(parent=parent, experiment=experiment))
    runs = read.children(client, found)
    if not runs:
        raise UserError(f"run {found.info.run_id} ({found.info.run_name}) has no child runs")
    return cmp.table(runs, sort)


# ---- from Python values to the CLI's arguments ---------------------------------------------
def _argv(args: Tuple[Args, ...], overrides: dict, sweep: bool) -> List[str]:
    argv: List[str] = []
    for a in args:
        if isinstance(a, str):  # a preset's name, or one override as on the command line
            argv.append(a if "=" in a else f"experiment={a}")
        else:
            argv += [str(x) for x in a]
    for key, value in overrides.items():
        if sweep and isinstance(value, range):
            argv.append(f"{key}=range({value.start},{value.stop},{value.step})")
        elif sweep and isinstance(value, (list, tuple)):
            argv.append(f"{key}=" + ",".join(_value(v) for v in value))
        else:
            argv.append(f"{key}={_value(value)}")
    return argv


def _value(v: Any) -> str:
    """A Python value in Hydra's override grammar."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    s = str(v)
    # as written (Hydra's own syntax: "[200,200]", "1e-3,1e-2", "interval(0.1,1)") unless it
    # holds what only a quoted string can: spaces, quotes, = or a leading sign of Hydra's
    if not re.search(r"[\s'\"=\\]", s) and not s.startswith(("+", "~")):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _uri(argv: List[str]) -> str:
    """The CLI's rule: tracking.uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db."""
    from runner.tracking import store

    given = [a.split("=", 1)[1] for a in argv if a.startswith(("tracking.uri=", "+tracking.uri="))]
    return store.resolve_uri(given[-1].strip("'\"") if given else None, os.getcwd())


def _last(text: str, starts: Tuple[str, ...]) -> Optional[str]:
    lines = [ln for ln in text.splitlines() if ln.startswith(starts)]
    return lines[-1] if lines else None


# ---- one CLI command in this process -------------------------------------------------------
def _cli(argv: List[str], echo: bool) -> str:
    """Run the CLI's main() on argv; returns its stdout. Its error line becomes UserError (exit
    2) or RunFailed (exit 1); Ctrl-C stays KeyboardInterrupt."""
    from runner import __main__ as cli

    out, err = _Tee(sys.stdout if echo else None), _Tee(sys.stderr, hide="error: ")
    # main() puts back what it changes (runner.session); a kernel has mlflow imported already
    defaults = {"RUNNER_TRACKING_PROCESS": "0"}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(argv, env_defaults=defaults)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if code == 0:
        return out.text()
    message = (_last(err.text(), ("error: ",)) or f"exit code {code}").removeprefix("error: ")
    message = message.replace(" (debug=true or RUNNER_DEBUG=1 shows the traceback)", "")
    if code in (130, 143):
        raise KeyboardInterrupt(message)
    error = UserError(message) if code == 2 else RunFailed(message)
    error.stdout = out.text()
    raise error from None


class _Tee(io.TextIOBase):
    """Keeps what is written and passes it on to `to` (None: keeps only); a line starting with
    `hide` is kept only (the error line becomes the exception's message, not printed twice)."""

    def __init__(self, to, hide: Optional[str] = None):
        self.to, self.hide, self.parts, self._hiding = to, hide, [], False

    def write(self, s: str) -> int:
        self.parts.append(s)
        if self.hide and s.startswith(self.hide):
            self._hiding = not s.endswith("\n")
        elif self._hiding and s == "\n":
            self._hiding = False
        elif self.to is not None:
            self.to.write(s)
        return len(s)

    def flush(self) -> None:
        if self.to is not None:
            self.to.flush()

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        return "".join(self.parts)
