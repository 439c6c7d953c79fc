"""The tracking process (runner/tracking/service.py, process.py), measured: P2' (a small run against the
serial floor, on both cores and pinned to one) and K9 (kill -9 at a random moment, 20 times)."""
import random
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from bench_common import (PY, Bench, BenchError, Row, child_env, floor_cmd, fmt_samples, interleave, judge, med,
                          runner_cmd, timed, train_seconds)

IN_PROCESS = ["env", "RUNNER_TRACKING_PROCESS=0"]  # the same CLI, recording in the trainer
PINNED = ["taskset", "-c", "0"]  # one core: nothing can overlap
K9_RUNS, K9_WITHIN_S = 20, 5.0


def p2_process(b: Bench, data: Path) -> None:
    """P2': csv_linreg end to end on a fresh store, with the tracking process and without,
    against the serial floor (import torch, then mlflow, then one sqlite client)."""
    def arm(prefix: List[str], runner: bool) -> Callable[[], Dict[str, float]]:
        def run() -> Dict[str, float]:
            d = b.fresh_dir("p2p")
            store = f"sqlite:///{d / 'mlflow.db'}"
            cmd = runner_cmd("experiment=csv_linreg", f"dataset.path={data}", "device=cpu",
                             f"tracking.uri={store}") if runner else floor_cmd(d / "mlflow.db")
            wall, out = timed(b, "P2'", prefix + cmd, d)
            if runner:
                train_seconds(out, 1)  # a summary line: the run finished
            return {"wall": wall}
        return run

    two = interleave({"process": arm([], True), "in-process": arm(IN_PROCESS, True),
                      "floor": arm([], False)}, b.repeats)
    p, i, f = (med(two[k]["wall"]) for k in ("process", "in-process", "floor"))
    b.samples["P2' two cores"] = {k: v["wall"] for k, v in two.items()}
    b.rows.append(Row("P2'", "csv_linreg, tracking process / serial floor, fresh store, 2 cores",
                      f"{p / f:.3f}x", "<= 0.8x", judge(p / f <= 0.8),
                      f"tracking process {p:.2f} s {fmt_samples(two['process']['wall'])}, floor {f:.2f} s "
                      f"{fmt_samples(two['floor']['wall'])}; in-process {i:.2f} s ({i / f:.3f}x of the floor)"))
    one = interleave({"process": arm(PINNED, True), "in-process": arm(PINNED + IN_PROCESS, True)}, b.repeats)
    p1, i1 = med(one["process"]["wall"]), med(one["in-process"]["wall"])
    b.samples["P2' one core"] = {k: v["wall"] for k, v in one.items()}
    b.rows.append(Row("P2'", "the same pinned to one core (taskset -c 0): tracking process / in-process",
                      f"{p1 / i1:.3f}x", "<= 1.05x", judge(p1 / i1 <= 1.05),
                      f"tracking process {p1:.2f} s {fmt_samples(one['process']['wall'])}, in-process "
                      f"{i1:.2f} s {fmt_samples(one['in-process']['wall'])}"))


def k9(b: Bench) -> None:
    """kill -9 of the trainer at a random moment after its run exists, K9_RUNS times in one loop,
    each run checked against what the tracking process had received (runner.points_received).
    Two loops: a long run (mlp_adam, a point every 100 epochs: the kill lands mid-training and
    the run must end KILLED within 5 s, no gap), and issue 21's run whose record lags behind
    (the default line, a point every epoch, 6000 epochs: the kill lands mid-training, during the
    close or after the end; KILLED or FINISHED, never empty)."""
    _k9_loop(b, "K9", ["experiment=mlp_adam", "epochs=200000", "log_every=100", "device=cpu"], 100, ("KILLED",))
    _k9_loop(b, "K9-lag", ["epochs=6000", "log_every=1", "device=cpu"], 1, ("KILLED", "FINISHED"))


def _k9_loop(b: Bench, target: str, args: List[str], every: int, allowed: tuple) -> None:
    d = b.fresh_dir(target.lower())
    db = d / "mlflow.db"
    cmd = runner_cmd(*args, f"tracking.uri=sqlite:///{db}")
    rng = random.Random(0)
    latencies, points, bad, statuses = [], [], [], []
    for i in range(K9_RUNS):
        b.note(target, cmd, d)
        known = _query(db, "select count(*) from runs") or 0
        proc = subprocess.Popen(cmd, cwd=b.fresh_dir("k9-run"), env=child_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        run = _wait(lambda: _query(db, f"select run_uuid from runs order by start_time limit 1 offset {known}"),
                    proc)
        time.sleep(rng.uniform(0, 4))  # the moment of the kill
        proc.kill()
        killed = time.perf_counter()
        proc.wait()
        _wait(lambda: _query(db, f"select status from runs where run_uuid='{run}'") in ("KILLED", "FAILED",
                                                                                        "FINISHED"), None)
        latencies.append(time.perf_counter() - killed)
        status = _query(db, f"select status from runs where run_uuid='{run}'")
        failure = _query(db, f"select value from tags where run_uuid='{run}' and key='runner.failure'")
        received = _query(db, f"select value from tags where run_uuid='{run}' and key='runner.points_received'")
        stored = _query(db, f"select count(*) from metrics where run_uuid='{run}'")
        params = _query(db, f"select count(*) from params where run_uuid='{run}'")  # empty: none (issue 21)
        steps = [r[0] for r in _rows(db, f"select step from metrics where run_uuid='{run}' and key='loss' "
                                         "order by step")]
        points.append(stored)
        statuses.append(status)
        whole = str(stored) == str(received) if status == "KILLED" else len(steps) == 6000 // every + 1
        if status not in allowed or (status == "KILLED" and failure != "process_died") or not whole or \
                not params or steps != list(range(0, every * len(steps), every)) or latencies[-1] > K9_WITHIN_S:
            bad.append(f"run {i}: {status} {failure}, {params} params, {stored} stored of {received} received, "
                       f"{len(steps)} loss steps, closed after {latencies[-1]:.2f} s")
    ok = K9_RUNS - len(bad)
    b.samples[target] = {"seconds from kill to closed": latencies, "points stored": points}
    b.rows.append(Row(target, f"kill -9 at a random moment ({' '.join(args)}): runs {' or '.join(allowed)} within "
                      f"{K9_WITHIN_S:g} s with every point received", f"{ok} of {K9_RUNS}", f"{K9_RUNS} of {K9_RUNS}", judge(not bad),
                      f"{', '.join(f'{statuses.count(s)} {s}' for s in sorted(set(statuses), key=str))}; kill to closed: median {med(latencies):.2f} s, max {max(latencies):.2f} s; points stored "
                      f"{min(points)}..{max(points)}" + (f"; {'; '.join(bad)[:500]}" if bad else "")))


def _wait(value: Callable[[], object], proc: Optional[subprocess.Popen], limit: float = 120.0):
    """Poll until value() is truthy; BenchError if the process ends first or after `limit` s."""
    deadline = time.monotonic() + limit
    while True:
        v = value()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"the run ended by itself (exit {proc.returncode}): {proc.stderr.read()[-300:]}")
        if time.monotonic() > deadline:
            raise BenchError(f"waited {limit:g} s")
        time.sleep(0.05)


def _rows(db: Path, sql: str) -> list:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=30) as con:  # read-only looks, as `mlflow ui` does
            return con.execute(sql).fetchall()
    except sqlite3.Error:  # the store being created
        return []


def _query(db: Path, sql: str):
    rows = _rows(db, sql)
    return rows[0][0] if rows else None


# ---- STORE: a fresh sqlite store, made by MLflow's migrations or copied from the template -----
STORE_CODE = """
import json, sys, time
from pathlib import Path
from runner.tracking import sqlite_file
d = Path(sys.argv[1]); out = {"migrations": [], "template": []}
sqlite_file._create("uri", d / "first.db")  # the template, as the first store on a machine makes it
for i in range(int(sys.argv[2])):
    t = time.perf_counter(); sqlite_file.migrate(d / f"m{i}.db", d / "mlartifacts"); out["migrations"].append(time.perf_counter() - t)
    t = time.perf_counter(); sqlite_file._create("uri", d / f"t{i}.db"); out["template"].append(time.perf_counter() - t)
print(json.dumps(out))
"""


def store_row(b: Bench) -> None:
    """What runner/tracking/sqlite_file.py's template buys: a fresh store's creation, in one child
    process (mlflow imported once, untimed), the two ways interleaved."""
    import json

    d = b.fresh_dir("store")
    env = {**child_env(), "XDG_CACHE_HOME": str(d / "cache")}  # this machine's cache left alone
    b.note("STORE", [PY, "-c", "STORE_CODE", str(d)], d)
    p = subprocess.run([PY, "-c", STORE_CODE, str(d), str(max(5, b.repeats))], cwd=d, env=env,
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise BenchError(f"store row: {p.stderr.strip().splitlines()[-1:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    slow, fast = med(res["migrations"]), med(res["template"])
    b.rows.append(Row("STORE", "a fresh sqlite store: MLflow's migrations / a copy of the template",
                      f"{slow / fast:.0f}x", "(informative)", "INFO",
                      f"migrations {slow:.3f} s {fmt_samples(res['migrations'])}, template {fast:.3f} s "
                      f"{fmt_samples(res['template'])}"))
