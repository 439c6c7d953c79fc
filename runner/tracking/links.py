"""Links into MLflow's UI that open where a person wants to be, and `make ui`.

MLflow 3.17's UI (mlflow/server/js, built into the package) opens an experiment on its GenAI
overview unless its `workflowType` says model training; it reads that from the URL's
`?workflowType=` or else from the browser's localStorage (`mlflow.workflowType_v1`, default
`genai`), which only a click on the sidebar's switch writes. It does not read the store (the
`mlflow.experimentKind` tag is behind a flag that is off), and the experiment list's links carry
no `workflowType`. So nothing a run records can steer it: every link printed here carries
`workflowType=machine_learning` and points at the runs, and `make ui` prints one per experiment.

Where the UI answers, first that applies: $MLFLOW_UI_URL (or the `ui_url` passed in); an http(s)
store is its own UI; a sqlite store's `.mlflow-ui-url` beside the database, which `make ui`
writes with the host and port it serves on; else http://127.0.0.1:5000, `make ui`'s default."""
import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import quote

UI_URL_FILE = ".mlflow-ui-url"
DEFAULT_UI = "http://127.0.0.1:5000"
TRAINING = "workflowType=machine_learning"


def ui_base(uri: str, ui_url: Optional[str] = None) -> str:
    """http://HOST:PORT of the UI that shows the store `uri`."""
    explicit = ui_url or os.environ.get("MLFLOW_UI_URL")
    if explicit:
        return explicit.strip().rstrip("/")
    if uri.startswith(("http://", "https://")):
        from runner.tracking.store import without_credentials

        return without_credentials(uri).rstrip("/")  # the server is its own UI; the link is printed
    db = _sqlite_file(uri)
    written = db.parent / UI_URL_FILE if db else None
    if written is not None and written.is_file():
        return written.read_text().strip().rstrip("/") or DEFAULT_UI
    return DEFAULT_UI


def runs_link(base: str, experiment_id: str, view: Optional[str] = None, charts: bool = False) -> str:
    """The experiment's runs table (a saved view of it, as charts) in the model-training UI."""
    extra = (f"&viewStateShareKey={quote(view)}" if view else "") + ("&compareRunsMode=CHART" if charts else "")
    return f"{base}/#/experiments/{experiment_id}/runs?{TRAINING}{extra}"


def run_link(base: str, experiment_id: str, run_id: str) -> str:
    """A run's own page (overview, then its Model metrics) in the model-training UI."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING}"


def _sqlite_file(uri: str) -> Optional[Path]:
    from runner.tracking.store import sqlite_path

    return sqlite_path(uri) if uri.startswith("sqlite://") else None


def experiment_links(uri: str, base: str) -> List[str]:
    """'NAME: LINK' for each experiment of a sqlite store that has runs, the latest run's first."""
    db = _sqlite_file(uri)
    if db is None or not db.is_file():
        return []
    import sqlite3  # not MLflow's client: this runs before the UI and must cost no seconds

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute(
            "SELECT e.experiment_id, e.name, MAX(r.start_time) AS latest FROM experiments e "
            "JOIN runs r ON r.experiment_id = e.experiment_id WHERE e.lifecycle_stage = 'active' "
            "GROUP BY e.experiment_id, e.name ORDER BY latest DESC").fetchall()
    return [f"  {name}: {runs_link(base, str(eid))}" for eid, name, _ in rows]


def serve(argv: Optional[List[str]] = None) -> None:
    """`make ui`: note where the UI answers beside the store (the links a run prints read it),
    print a link to each experiment's runs, then become `mlflow ui`."""
    p = argparse.ArgumentParser(prog="python -m runner.tracking.links")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--store", default="mlflow.db", help="the sqlite file")
    args = p.parse_args(argv)
    db = Path(args.store).resolve()
    uri = f"sqlite:///{db}"
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = f"http://{shown}:{args.port}"
    (db.parent / UI_URL_FILE).write_text(base + "\n")
    # The list's own URL without workflowType: only there does one press of "Model training"
    # store it in the browser (with it in the URL the switch already shows it and a press does
    # nothing), and from then on a click on an experiment opens its runs.
    print(f"MLflow UI: {base}/#/experiments  (press \"Model training\" at the top left once; "
          "the browser keeps it)")
    lines = experiment_links(uri, base)
    if lines:
        print("Each experiment's runs, in one click:", *lines, sep="\n")
    sys.stdout.flush()
    mlflow = Path(sys.executable).with_name("mlflow")
    os.execv(str(mlflow), [str(mlflow), "ui", "--host", args.host, "--port", str(args.port),
                           "--backend-store-uri", uri])


if __name__ == "__main__":
    serve()
