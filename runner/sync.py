"""`python -m runner.sync [FOLDER ...]`: send runs kept on disk while their MLflow server did not
answer (runner/tracking/spool.py) to that server, then remove them. No folder: every run under
./mlflow-offline. Each run ends on the server with every point and its status set last; a sync cut
short (the server gone again, a crash) is taken up where it stopped by the next one: the spool
counts the lines stored, and the server drops a metric it already holds (same key, value, step
and timestamp). One line a run; exit 0, or 2 with one line when the server does not answer (the
spool is kept)."""
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List

from runner.errors import UserError, first_line
from runner.tracking import record, spool, store


def main(argv: List[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return 0
    folders = [Path(a) for a in argv] or sorted(p.parent for p in Path(spool.FOLDER).glob("*/run.json"))
    if not folders:
        print(f"sync: nothing to send: no run kept in ./{spool.FOLDER}")
        return 0
    for folder in folders:
        try:
            print(send(folder), flush=True)
        except UserError as e:
            print(f"error: sync: {e}", file=sys.stderr)
            return 2
    return 0


def send(folder: Path) -> str:
    """Send one spooled run; returns the line to print. UserError: not a spool, or no server."""
    if not (folder / "run.json").is_file():
        raise UserError(f"{folder}: not a run kept by runner (no run.json); runs are kept in ./{spool.FOLDER}/RUN_ID")
    meta, records, sent = spool.read(folder)
    uri, shown = meta["uri"], spool.shown_path(folder)
    try:
        store.check_uri(uri)
        run = record.Run(store.get_client(uri), uri, meta["experiment_id"], meta["name"], {}, run_id=meta["run_id"])
        status = _replay(run, folder, records, sent)
    except UserError as e:
        raise UserError(f"{shown}: {e}; the run stays kept there") from e
    except Exception as e:  # noqa: BLE001  MLflow's, once its HTTP retries gave up
        why = spool.unreachable(e, uri)
        raise UserError(f"{shown}: the MLflow server at {uri} "
                        f"{'does not answer (' + why + ')' if why else 'refused the run: ' + first_line(e)}; "
                        "the run stays kept there, try again later") from e
    shutil.rmtree(folder)
    points = sum(len(r["metrics"]) for r in records if "metrics" in r)
    return f"sent: run {meta['run_id']} to {uri} as {status} ({points} points kept offline); {shown} removed"


def _replay(run: record.Run, folder: Path, records: List[Dict[str, Any]], sent: int) -> str:
    """Records from line `sent` on, in their order; the progress is written after each stored line.
    Returns the run's status: KILLED when the spool has no end (its tracking process was killed)."""
    if not any("end" in rec for rec in records):  # never left RUNNING
        records = [*records, {"tags": {"runner.failure": "process_died"}}, {"end": ["KILLED", None]}]
    status = "RUNNING"
    for i, rec in enumerate(records):
        if "end" in rec:
            status = rec["end"][0]
        if i < sent:
            continue
        if "metrics" in rec:  # buffered: stored in log_batch calls of up to 1000 points
            run.log_points(rec["metrics"])
            continue
        run.flush()
        spool.mark_sent(folder, i)
        _one(run, folder, rec)
        spool.mark_sent(folder, i + 1)
    run.flush()
    spool.mark_sent(folder, len(records))
    return status


def _one(run: record.Run, folder: Path, rec: Dict[str, Any]) -> None:
    """One record that is not metrics, as the tracking process would have sent it."""
    kind, value = next(iter(rec.items()))
    if kind == "params":
        run.log_params(value)
    elif kind == "tags":
        run.set_tags(value)
    elif kind == "experiment_tag":
        run.set_experiment_tag(*value)
    elif kind == "artifacts":
        run.log_artifacts(str(folder / value))
    elif kind == "dataset":
        name, source, path, context = value
        run.log_dataset_file(name, source, str(folder / path), context)
    elif kind == "model":
        _model(run, folder / value[0], *value[1:])
    elif kind == "end":
        status, end_time = value
        run.client.set_terminated(run.id, status, end_time=end_time)


def _model(run: record.Run, files: Path, step: int, torch_version: str) -> None:
    import numpy as np

    with np.load(files / "arrays.npz") as arrays:
        example, output = arrays["example"], arrays["output"]
    run.log_model_file(str(files / "model.pth"), example, output, step, torch_version)


if __name__ == "__main__":
    for key, value in store.HTTP_PATIENCE.items():  # a server gone again: one line within minutes
        os.environ.setdefault(key, value)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # our line says it all
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its "Retrying ..." warning a retry
    sys.exit(main(sys.argv[1:]))
