"""A sqlite store under faults: many processes creating it at once, a creation killed midway
(half-made store), a full or read-only disk, a damaged file, a three-slash URI."""
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import all_runs, cli_env, cli_in_process

pytestmark = pytest.mark.slow  # many processes on one store, kills and full disks: make test-slow (README)
from runner.errors import UserError
from runner.tracking import sqlite_file, store


def _tables(db):
    with sqlite3.connect(db) as con:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def assert_whole(db):
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert not [t for t in _tables(db) if t.startswith("_alembic_tmp_")]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (_get_latest_schema_revision(),)]
    assert sqlite_file._incomplete(db)[0] is None


def _connect_and_run(uri, barrier, errors):
    try:
        barrier.wait(timeout=60)  # every process reaches the fresh store at the same instant
        client, exp = store.connect(uri, "at-once")
        run = client.create_run(exp)
        client.set_terminated(run.info.run_id)
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        errors.put(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        os._exit(1)
    os._exit(0)


def connect_at_once(db, n=4):
    """n processes, held at a barrier, connect to one fresh store and record a run each."""
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(n), ctx.Queue()
    uri = f"sqlite:///{db}"
    procs = [ctx.Process(target=_connect_and_run, args=(uri, barrier, errors)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    found = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    return [p.exitcode for p in procs], found, uri


@pytest.fixture
def no_template(tmp_path, monkeypatch):
    """An empty cache: the store is made by MLflow's migrations, the slow way and the first time."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    return {"XDG_CACHE_HOME": str(tmp_path / "empty-cache")}


@pytest.mark.parametrize("made_by", ["migrations", "template"])
def test_connects_at_the_same_instant_on_a_fresh_store(tmp_path, monkeypatch, made_by):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if made_by == "template":
        store.connect(f"sqlite:///{tmp_path / 'first.db'}", "e")
        assert sqlite_file.template_path().is_file()
    db = tmp_path / "mlflow.db"
    codes, errors, uri = connect_at_once(db)
    assert codes == [0, 0, 0, 0], errors
    assert len(all_runs(uri, "at-once")) == 4
    assert_whole(db)
    assert not list(tmp_path.glob("mlflow.db.creating-*"))


def test_two_cli_sweeps_at_once_on_a_fresh_store(tmp_path, no_template):
    db = tmp_path / "mlflow.db"
    args = [sys.executable, "-m", "runner", "-m", "lr=1e-3,2e-3", "epochs=5", f"tracking.uri=sqlite:///{db}"]
    go = tmp_path / "go"
    # Both wait on one file, then exec the CLI: they start at the same instant.
    wait = f"import os,sys,time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\nos.execv(sys.executable, {args!r})"
    procs = [subprocess.Popen([sys.executable, "-c", wait], cwd=d, env=cli_env(no_template), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for d in (tmp_path / "a", tmp_path / "b") if d.mkdir() is None]
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    runs = all_runs(f"sqlite:///{db}")
    assert len([r for r in runs if r.info.status == "FINISHED"]) == 6  # 2 parents + 4 jobs
    assert_whole(db)


def test_a_kill_9_during_creation_leaves_no_store(tmp_path, no_template):
    db = tmp_path / "mlflow.db"
    code = f"from runner.tracking import store; store.connect('sqlite:///{db}', 'e')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=cli_env(no_template))
    aside = tmp_path / f"mlflow.db.creating-{proc.pid}"
    while proc.poll() is None and not (aside.exists() and aside.stat().st_size > 0):
        time.sleep(0.01)  # polls for the moment MLflow starts writing the schema
    proc.kill()
    proc.wait()
    assert aside.exists() and not db.exists()  # half-made, but aside: no store in its place
    store.connect(f"sqlite:///{db}", "e")
    assert_whole(db)
    assert not aside.exists()


def _dump(db):
    """The store's schema and rows, but the default experiment's creation times. A table's lines
    are sorted: MLflow's migrations order its constraints differently from one creation to the next."""
    with sqlite3.connect(db) as con:
        con.execute("UPDATE experiments SET creation_time = 0, last_update_time = 0 WHERE experiment_id = 0")
        return sorted(sorted(line.rstrip(", ") for line in statement.splitlines()) for statement in con.iterdump())


def test_a_store_copied_from_the_template_is_the_store_mlflow_makes(tmp_path, no_template):
    template = sqlite_file.template_path()
    (tmp_path / "first").mkdir()
    store.connect(f"sqlite:///{tmp_path / 'first' / 'mlflow.db'}", "e")  # made by MLflow, kept as template
    assert sqlite_file._incomplete(template) == (None, 0)
    (tmp_path / "copied").mkdir()
    sqlite_file._create("uri", tmp_path / "copied" / "mlflow.db")
    sqlite_file.migrate(tmp_path / "made.db", tmp_path / "copied" / "mlartifacts")  # independent: MLflow itself
    assert _dump(tmp_path / "copied" / "mlflow.db") == _dump(tmp_path / "made.db")
    client, exp = store.connect(f"sqlite:///{tmp_path / 'copied' / 'mlflow.db'}", "e")
    assert client.get_experiment("0").artifact_location == str(tmp_path / "copied" / "mlartifacts" / "0")
    run = client.create_run(exp)
    assert run.info.artifact_uri.startswith((tmp_path / "copied" / "mlartifacts").as_uri())


def _half_made(db, with_run):
    client, exp = store.connect(f"sqlite:///{db}", "e")
    if with_run:
        client.create_run(exp)
    store._CLIENTS.clear()
    with sqlite3.connect(db) as con:  # what a kill -9 midway through alembic's upgrade leaves
        con.execute("CREATE TABLE _alembic_tmp_experiments (x INTEGER)")
        con.execute("UPDATE alembic_version SET version_num = 'a8c4a736bde6'")


def test_a_half_made_store_without_runs_is_made_anew(tmp_path):
    db = tmp_path / "mlflow.db"
    _half_made(db, with_run=False)
    (tmp_path / "mlflow.db.creating-99999").write_bytes(b"a creation killed midway")
    client, exp = store.connect(f"sqlite:///{db}", "e")
    assert client.get_experiment(exp).name == "e"
    assert_whole(db)
    assert not list(tmp_path.glob("mlflow.db.creating-*"))


def test_a_half_made_store_with_runs_is_refused_in_one_line(tmp_path):
    db = tmp_path / "mlflow.db"
    _half_made(db, with_run=True)
    before = db.read_bytes()
    with pytest.raises(UserError, match=r"half-migrated \(leftover table _alembic_tmp_experiments\) "
                                        r"and holds 1 runs; back it up, then run `mlflow db upgrade"):
        store.connect(f"sqlite:///{db}", "e")
    assert db.read_bytes() == before


def test_a_store_cut_short_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    db = tmp_path / "mlflow.db"
    store.connect(f"sqlite:///{db}", "e")
    store._CLIENTS.clear()
    db.write_bytes(db.read_bytes()[:4096])
    r = cli_in_process("epochs=5", f"tracking.uri=sqlite:///{db}", cwd=tmp_path, monkeypatch=monkeypatch,
                       capsys=capsys)
    assert r.returncode == 2
    line = r.stderr.strip()
    assert "\n" not in line and "tracking.uri=" in line and "is damaged (cut short: 4096 of" in line
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "mlartifacts").glob("*"))


@pytest.fixture
def tmpfs(tmp_path):
    """A real 3 MB tmpfs (root only), unmounted after."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_leaves_no_half_made_store(tmpfs):
    fill = tmpfs / "fill"
    with open(fill, "wb") as f:  # leave ~190 KB free: less than a fresh store needs (~1 MB)
        f.write(b"\0" * (os.statvfs(tmpfs).f_bavail * os.statvfs(tmpfs).f_frsize - 190_000))
    db = tmpfs / "mlflow.db"
    with pytest.raises(UserError) as e:
        store.connect(f"sqlite:///{db}", "e")
    assert str(e.value) == (f"tracking.uri='sqlite:///{db}': cannot create the store {str(db)!r} "
                            "(no space left on the device)")
    assert sorted(p.name for p in tmpfs.iterdir()) == ["fill", "mlflow.db.lock"]
    fill.unlink()  # space again: the store is made
    store.connect(f"sqlite:///{db}", "e")
    assert_whole(db)


def test_a_read_only_folder_is_one_line_before_a_run(tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(UserError, match=r"cannot create a store in read-only"):
        store.check_uri(f"sqlite:///{tmpfs / 'mlflow.db'}")


@pytest.mark.parametrize("uri", ["sqlite:///tmp/x/mlflow.db", "sqlite:////tmp/x/mlflow.db",
                                 "sqlite:///./rel.db", "sqlite:///../up/m.db"])
def test_a_sqlite_uri_is_read_as_sqlalchemy_reads_it(uri, tmp_path, monkeypatch):
    from sqlalchemy.engine import make_url

    monkeypatch.chdir(tmp_path)
    assert store.sqlite_path(uri) == Path(os.path.normpath(tmp_path / make_url(uri).database))
    if uri == "sqlite:///tmp/x/mlflow.db":
        assert store.sqlite_path(uri) == tmp_path / "tmp" / "x" / "mlflow.db"


@pytest.mark.parametrize("uri", ["postgresql+psycopg2://user:PASS%40WORD@db.example:5432/mlflow",
                                 "mysql://u:p@h/d", "postgresql://user@h/d", "sqlite:////x/mlflow.db"])
def test_a_uri_is_masked_as_sqlalchemy_prints_it(uri):
    from sqlalchemy.engine import make_url

    assert store.masked(uri) == make_url(uri).render_as_string(hide_password=True)


def test_a_uri_is_masked_in_any_text():
    text = "lr=0.1 tracking.uri=http://alice:SECRET@127.0.0.1:5000 epochs=3"
    assert store.masked(text) == "lr=0.1 tracking.uri=http://alice:***@127.0.0.1:5000 epochs=3"
    from runner.tracking import links

    assert links.ui_base("http://alice:SECRET@127.0.0.1:5000/", ui_url=None) == "http://127.0.0.1:5000"


@pytest.fixture
def guarded_server():
    """A tiny HTTP server whose /health answers 200 only with the expected Authorization header."""
    import http.server
    import threading

    seen = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append((self.path, self.headers.get("Authorization")))
            ok = self.path == "/health" and self.headers.get("Authorization") in Health.accept
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(port=server.server_address[1], seen=seen, handler=Health)
    server.shutdown()
    server.server_close()


def test_the_health_check_sends_credentials(guarded_server, monkeypatch):
    import base64

    port, basic = guarded_server.port, "Basic " + base64.b64encode(b"alice:S3CRET").decode()
    guarded_server.handler.accept = {basic, "Bearer TOKEN"}
    store.check_uri(f"http://alice:S3CRET@127.0.0.1:{port}")  # in the URI
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "S3CRET")
    store.check_uri(f"http://127.0.0.1:{port}")  # MLflow's variables
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "TOKEN")
    store.check_uri(f"http://127.0.0.1:{port}/")
    assert guarded_server.seen == [("/health", basic), ("/health", basic), ("/health", "Bearer TOKEN")]


def test_a_refused_password_is_never_printed(guarded_server, tmp_path, monkeypatch, capsys):
    guarded_server.handler.accept = set()
    uri = f"http://alice:WRONG-SECRET@127.0.0.1:{guarded_server.port}"
    r = cli_in_process("epochs=5", f"tracking.uri={uri}", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"error: tracking.uri='http://alice:***@127.0.0.1:{guarded_server.port}': no MLflow "
                                f"server at http://127.0.0.1:{guarded_server.port}/health (answered 401); start one "
                                "with `mlflow server --host 127.0.0.1 --port PORT` or use the default sqlite store")
    assert "WRONG-SECRET" not in r.stdout + r.stderr
