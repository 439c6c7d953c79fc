"""The errors the CLI maps to exit codes; apart from config so that the tracking process can
use them without importing Hydra."""
from typing import Optional


class UserError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2."""


class Diverged(Exception):
    """The loss or a parameter became NaN or infinite: the run is FAILED at that epoch."""

    def __init__(self, epoch: int, what: str, value: float):
        super().__init__(f"diverged at epoch {epoch}: {what} = {value}")
        self.epoch, self.what, self.value = epoch, what, value


class Offline(Exception):
    """The MLflow server stopped answering mid-run: the run is kept on disk for `python -m
    runner.sync` (tracking/spool.py). The CLI's exit code is 75 (sysexits' EX_TEMPFAIL)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the run is closed as KILLED with its points kept."""


def first_line(e: BaseException, limit: int = 500) -> str:
    """An error's first non-blank line (its type's name if it has none), at most `limit` long."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # SQLAlchemy puts "(raised as a result of Query-invoked autoflush; ...)" before the cause
    # (a full disk's "database or disk is full"): the cause is the line to show
    lines = [ln for ln in lines if not ln.startswith("(raised as a result of")] or lines
    return lines[0][:limit] if lines else type(e).__name__


def note_run(error: BaseException, run_id: str) -> None:
    """Name on `error` the run it closed FAILED: a note, so that the error keeps its own type
    (callers of train.run catch UserError, Diverged ...) and a traceback shows it too."""
    error.add_note(f"run {run_id}, marked FAILED")


def run_note(error: BaseException) -> Optional[str]:
    """The note note_run left on `error`, if any."""
    notes = getattr(error, "__notes__", ())
    return next((n for n in notes if n.startswith("run ") and n.endswith(", marked FAILED")), None)
