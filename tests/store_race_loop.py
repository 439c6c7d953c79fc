"""N processes held at a barrier connect to one fresh sqlite store and record a run each,
TRIES times in a row (issue 21). Not part of the suite: run it by hand.

    PYTHONPATH=$PWD .venv/bin/python tests/store_race_loop.py [TRIES] [N]
"""
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time

from runner.tracking import store


def _one(uri, barrier, errors):
    try:
        barrier.wait(timeout=60)
        client, exp = store.connect(uri, "at-once")
        client.set_terminated(client.create_run(exp).info.run_id)
    except BaseException as e:  # noqa: BLE001
        errors.put(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160])
        os._exit(1)
    os._exit(0)


def attempt(n):
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(n), ctx.Queue()
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "mlflow.db")
        # an empty cache each try: the store is made by MLflow's migrations, the slow path where
        # the race was (with the template, the copy is over in ~20 ms)
        os.environ["XDG_CACHE_HOME"] = os.path.join(d, "cache")
        procs = [ctx.Process(target=_one, args=(f"sqlite:///{db}", barrier, errors)) for _ in range(n)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(180)
        problems = []
        while not errors.empty():
            problems.append(errors.get())
        with sqlite3.connect(db) as con:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            runs = con.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        problems += [f"leftover table {t}" for t in tables if t.startswith("_alembic_tmp_")]
        if runs != n:
            problems.append(f"{runs} of {n} runs stored")
        return problems


if __name__ == "__main__":
    tries, n = (int(a) for a in (sys.argv[1:] + ["20", "4"])[:2])
    t0, failed = time.time(), 0
    for i in range(1, tries + 1):
        problems = attempt(n)
        failed += bool(problems)
        print(f"try {i}: {'ok' if not problems else '; '.join(problems)}", flush=True)
    print(f"{tries - failed} of {tries} tries whole, {failed} failed, {time.time() - t0:.0f} s")
