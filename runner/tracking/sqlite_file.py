"""A sqlite store's file: where SQLAlchemy reads it, whether it is whole, and its creation
aside and moved into place under the file lock, so that neither two processes at once nor a
kill -9 midway leave a half-made store (MLflow's client migrates a fresh file at construction)."""
import errno
import glob
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Optional

from runner.errors import UserError


def path_of(uri: str) -> Optional[Path]:
    """The file exactly as SQLAlchemy (and so MLflow) opens it: sqlite:///rel is relative to
    the current folder, sqlite:////abs absolute; None for in-memory or empty."""
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(os.path.abspath(database))


def check_file(uri: str, path: Path) -> None:
    """In well under a second, without MLflow: a damaged file (cut short, malformed) is one line."""
    with open(path, "rb") as f:
        head = f.read(100)
    if not head:
        return
    if len(head) < 100 or head[:16] != b"SQLite format 3\0":
        raise UserError(f"tracking.uri={uri!r}: {str(path)!r} is not an SQLite database "
                        "(corrupt or another kind of file)")
    page = int.from_bytes(head[16:18], "big") or 65536  # 1 stands for 65536
    pages, valid_for, changes = (int.from_bytes(head[i:i + 4], "big") for i in (28, 92, 24))
    if valid_for == changes and pages and os.path.getsize(path) < page * pages:
        raise _damaged(uri, path, f"cut short: {os.path.getsize(path)} of {page * pages} bytes")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if "locked" not in str(e):
            raise _damaged(uri, path, str(e)) from e


def _damaged(uri: str, path: Path, what: str) -> UserError:
    return UserError(f"tracking.uri={uri!r}: the store {str(path)!r} is damaged ({what}); "
                     "restore it from a backup or move it away to start a new one")


def prepare(uri: str, path: Path) -> None:
    """Under the store's file lock: a missing, empty or half-made store (no run in it) is made
    whole aside and moved into place; a half-made store that holds runs is refused."""
    for stale in glob.glob(glob.escape(str(path)) + ".creating-*"):  # a creation killed midway
        _remove(Path(stale))
    if path.is_file() and path.stat().st_size > 0:
        check_file(uri, path)
        problem, runs = _incomplete(path)
        if problem is None:
            return
        if runs:
            raise UserError(f"tracking.uri={uri!r}: the store {str(path)!r} is half-migrated ({problem}) "
                            f"and holds {runs} runs; back it up, then run `mlflow db upgrade {uri}`")
    _create(uri, path)


def _incomplete(path: Path):
    """(what is wrong or None, how many runs) of an existing store file."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        runs = con.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        version = (con.execute("SELECT version_num FROM alembic_version").fetchall()
                   if "alembic_version" in tables else [])
    finally:
        con.close()
    leftover = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if leftover:
        return f"leftover table {leftover[0]}", runs
    head = _get_latest_schema_revision()
    if [r[0] for r in version] != [head]:
        return f"schema version {version[0][0] if version else 'missing'}, not {head}", runs
    return None, runs


def _create(uri: str, path: Path) -> None:
    """MLflow's own schema and default experiment, built in a file beside the store and moved
    over it in one rename; whatever a failed creation wrote is removed."""
    aside = path.with_name(f"{path.name}.creating-{os.getpid()}")
    _remove(aside)
    artifacts = path.parent / "mlartifacts"
    try:
        template = template_path()
        if template.is_file() and _incomplete(template) == (None, 0):
            shutil.copyfile(template, aside)
            _own_default_experiment(aside, artifacts)
        else:
            migrate(aside, artifacts)
            _keep_as_template(aside, template)
        os.replace(aside, path)
    except Exception as e:
        _remove(aside)
        raise UserError(f"tracking.uri={uri!r}: cannot create the store {str(path)!r} ({cause(e)})") from e


def migrate(db: Path, artifacts: Path) -> None:
    """MLflow's schema made by MLflow itself (alembic: ~1.9 s of CPU here)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    try:
        SqlAlchemyStore(f"sqlite:///{db}", str(artifacts))
    finally:  # MLflow keeps one engine per URI: its open file must not outlive this creation
        engine = SqlAlchemyStore._engine_map.pop(f"sqlite:///{db}", None)
        if engine is not None:
            engine.dispose()


# A fresh store is a copy of one MLflow made before (`make bench` STORE: 1.9 s -> 0.03 s, on the first
# run in every new folder and in most tests). Two stores MLflow makes differ only in the default
# experiment's artifact folder and times (compared with .dump), which the copy is given.
def template_path() -> Path:
    import mlflow.version

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "runner" / f"mlflow-{mlflow.version.VERSION}-store.db"


def _own_default_experiment(db: Path, artifacts: Path) -> None:
    now = int(time.time() * 1000)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                    "WHERE experiment_id = 0", (str(artifacts / "0"), now, now))
    con.close()


def _keep_as_template(db: Path, template: Path) -> None:
    """Best effort (a read-only home just goes without): copied aside, then renamed into place."""
    part = template.with_name(f"{template.name}.{os.getpid()}")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(db, part)
        os.replace(part, template)
    except OSError:
        _remove(part)


def cause(e: BaseException) -> str:
    """What stopped a write, in words: no space left, read-only, or the error's first line."""
    text = str(e)
    seen = e
    while seen is not None:
        if getattr(seen, "errno", None) == errno.ENOSPC or "disk is full" in str(seen):
            return "no space left on the device"
        if getattr(seen, "errno", None) in (errno.EROFS, errno.EACCES) or "readonly" in str(seen):
            return "read-only"
        seen = seen.__cause__ or seen.__context__
    return text.splitlines()[0][:200] if text else type(e).__name__


def _remove(p: Path) -> None:
    for q in (p, Path(str(p) + "-journal"), Path(str(p) + "-wal"), Path(str(p) + "-shm")):
        try:
            q.unlink()
        except FileNotFoundError:
            pass
