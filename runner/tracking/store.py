"""The store: resolved once, checked in seconds before a run exists, created safely under
parallel jobs, with one client per store and process."""
import base64
import logging
import os
import re
import urllib.parse
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional

from runner.errors import UserError
from runner.tracking import sqlite_file

# MLflow 3's UI opens an experiment on its GenAI overview unless this tag says model training.
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": (
        "Training runs recorded by `runner` (PyTorch optimisation experiments composed with Hydra). "
        "A sweep (`python -m runner -m ...`) is one parent run: expand it to see its jobs, named by "
        "what varies; its description ranks them by `final_loss`. Select runs and press **Compare** "
        "to plot the swept param against `final_loss`."),
}


def resolve_uri(uri: Optional[str], launch_dir: str) -> str:
    """Command line wins, then $MLFLOW_TRACKING_URI, then sqlite:///<launch dir>/mlflow.db."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{Path(launch_dir).resolve() / 'mlflow.db'}"
    return uri


_SECRET = re.compile(r"(://[^/:@\s]*:)[^@/\s]*@")


def masked(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***, as SQLAlchemy and MLflow
    print them (http://alice:***@host): for printed lines, tags, config.yaml and overrides.yaml."""
    return _SECRET.sub(r"\1***@", text)


def check_uri(uri: str) -> None:
    """Fail in seconds, with one line, on a store MLflow would retry against for minutes."""
    scheme = uri.split(":", 1)[0].lower() if "://" in uri else ""
    if scheme == "sqlite":
        return _check_sqlite(uri)
    if scheme in ("http", "https"):
        return _check_server(uri)
    if scheme in ("postgresql", "mysql", "mssql", "databricks") or scheme.startswith(
            ("postgresql+", "mysql+", "mssql+")):
        return
    raise UserError(f"tracking.uri={masked(uri)!r}: not a usable store; use sqlite:///ABSOLUTE/PATH/mlflow.db "
                    "or http://HOST:PORT (the ./mlruns file store is gone since MLflow 3.13)")


def _check_sqlite(uri: str) -> None:
    path = sqlite_path(uri)
    if path is None:
        raise UserError(f"tracking.uri={uri!r}: an in-memory or empty sqlite path keeps nothing; "
                        "use sqlite:///ABSOLUTE/PATH/mlflow.db")
    if not path.parent.is_dir():
        raise UserError(f"tracking.uri={uri!r}: folder {str(path.parent)!r} does not exist")
    if path.exists():
        if not path.is_file():
            raise UserError(f"tracking.uri={uri!r}: {str(path)!r} is not a file")
        if not os.access(path, os.W_OK):
            raise UserError(f"tracking.uri={uri!r}: {str(path)!r} is read-only")
        sqlite_file.check_file(uri, path)
    elif not os.access(path.parent, os.W_OK):
        raise UserError(f"tracking.uri={uri!r}: cannot create a store in read-only {str(path.parent)!r}")


def _check_server(uri: str) -> None:
    url = without_credentials(uri).rstrip("/") + "/health"
    try:
        request = urllib.request.Request(url, headers=_auth_header(uri))
        with urllib.request.urlopen(request, timeout=3) as r:
            if r.status == 200:
                return
            problem = f"answered {r.status}"
    except urllib.error.HTTPError as e:
        problem = f"answered {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        problem = str(getattr(e, "reason", e))
    raise UserError(f"tracking.uri={masked(uri)!r}: no MLflow server at {url} ({problem}); start one with "
                    "`mlflow server --host 127.0.0.1 --port PORT` or use the default sqlite store")


def without_credentials(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _auth_header(uri: str) -> Dict[str, str]:
    """What MLflow's client sends: Basic from the URI's user:password or from
    MLFLOW_TRACKING_USERNAME/PASSWORD, else Bearer MLFLOW_TRACKING_TOKEN."""
    parts = urllib.parse.urlsplit(uri)
    user, password = parts.username, parts.password
    if user is None and os.environ.get("MLFLOW_TRACKING_USERNAME"):
        user, password = os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user is not None:
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password or '')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]}
    return {}


def sqlite_path(uri: str) -> Optional[Path]:
    """The store's file as SQLAlchemy reads the URI (three slashes: relative to the current folder)."""
    return sqlite_file.path_of(uri)


_CLIENTS: Dict[str, Any] = {}

# We already checked that the server answers. Once a run is under way, a server restart (~30 s
# with PostgreSQL) must not fail it: 5 retries back off 0+4+8+16+32 s (+ up to 1 s of jitter each),
# ~1 min, and the points wait in the buffer meanwhile (tests/cluster restarts the server mid-sweep).
# A server that hangs costs 15 s more an attempt: at most ~2.5 min in all. Then the run is kept on
# disk (spool.py) for `python -m runner.sync`, and the CLI says so in one line. MLflow 3.17.2 takes
# these from the environment only: rest_utils.http_request reads them on every request (the
# client and RestStore have no argument for them). A tracking process gets them in its own
# environment (service.Service, where the user has not set them); the CLI also sets them for the
# time of its run (__main__.main), for recording in-process (RUNNER_TRACKING_PROCESS=0) and for
# the jobs a launcher starts meanwhile (joblib, submitit, sbatch), and restores them after.
HTTP_PATIENCE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


def connect(uri: str, experiment_name: str):
    """(client, experiment_id) on a store `check_uri` accepted. Creating a fresh sqlite store
    from several processes at once corrupts it, and MLflow's client migrates a fresh file when
    it is built, so the schema, the client and the experiment are all made under a file lock."""
    path = _sqlite_file(uri)
    if path is None:
        client = get_client(uri)
        return client, _experiment_id(client, experiment_name, None)
    with _lock(path):
        client = _new_client(uri, path)
        return client, _experiment_id(client, experiment_name, (path.parent / "mlartifacts").as_uri())


def _sqlite_file(uri: str) -> Optional[Path]:
    return sqlite_path(uri) if uri.lower().startswith("sqlite") else None


def _lock(path: Path):
    from filelock import FileLock

    return FileLock(str(path) + ".lock", timeout=120)


def get_client(uri: str):
    """One MlflowClient per store and process: a sweep's jobs share it (~50 ms each)."""
    path = _sqlite_file(uri)
    if path is None or uri in _CLIENTS:
        return _new_client(uri, None)
    with _lock(path):
        return _new_client(uri, path)


def _new_client(uri: str, path: Optional[Path]):
    """The cached client; a sqlite store (path, lock held) is made whole first."""
    if uri not in _CLIENTS:
        from mlflow.tracking import MlflowClient

        # No sqlite pragmas on MLflow's engine: WAL with synchronous=NORMAL measured no faster
        # (the cost is Python, above, not the disk), and WAL sticks to the file for every later
        # user: it does not work on a network file system (a cluster sweep's shared store), and
        # readers such as `mlflow ui` then need write access to the store's folder.
        for name in ("mlflow", "alembic"):  # their INFO lines would break "one line per run"
            logging.getLogger(name).setLevel(logging.WARNING)
        if path is not None:
            sqlite_file.prepare(uri, path)
        _CLIENTS[uri] = MlflowClient(tracking_uri=uri)
    return _CLIENTS[uri]


def _experiment_id(client, name: str, artifact_location: Optional[str]) -> str:
    from mlflow.exceptions import MlflowException

    try:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            try:
                return client.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_TAGS)
            except MlflowException as e:
                # Another process created it meanwhile: two sweepers at once on a server (seen in
                # make test-cluster; a sqlite store is created under a file lock instead).
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = client.get_experiment_by_name(name)
        if exp.lifecycle_stage == "deleted":
            raise UserError(f"experiment_name={name!r}: that experiment is deleted in this store; "
                            "restore it (mlflow experiments restore) or choose another name")
        for key, value in EXPERIMENT_TAGS.items():  # a store made before these tags existed
            if key not in exp.tags:
                client.set_experiment_tag(exp.experiment_id, key, value)
    except MlflowException as e:
        raise UserError(f"tracking: the store refused the experiment {name!r}: "
                        f"{str(e).splitlines()[0]}") from e
    return exp.experiment_id


def open_store(uri: str):
    """A client on an existing store; UserError when there is none (reading must not create one)."""
    check_uri(uri)
    path = sqlite_path(uri) if uri.startswith("sqlite") else None
    if path is not None and not path.is_file():
        raise UserError(f"tracking.uri={uri!r}: no MLflow store at {str(path)!r}; run a sweep first "
                        "(python -m runner -m lr=1e-3,1e-2) or give --tracking-uri")
    return get_client(uri)
