"""The runner's performance targets (P1-P7, P2' and K9, and cuda against cpu where a GPU is present), measured.

    .venv/bin/python benchmarks/bench.py              # everything; writes BENCHMARKS.md (or: make bench)
    .venv/bin/python benchmarks/bench.py --only P1,P3 # some targets; writes nothing unless --out
    .venv/bin/python benchmarks/bench.py --only P7    # the MNIST network's epoch alone (~1 minute)
    .venv/bin/python benchmarks/bench.py --only "P2',K9"  # the tracking process (~6 minutes)

Each comparison runs its arms interleaved (A, B, A, B, ...) and compares medians, so drift in
the machine's load hits both arms alike. Whole processes run with a temporary folder as cwd and
an sqlite store in a temporary folder, never the checkout. In-process figures (P3, P6, GPU) run
in a child process of this script, so that this process never imports torch or mlflow.
Stdlib only here; the child uses what the runner's venv has.

This file is the command line; the rest, by concern: bench_common.py (constants, rows, timing
whole processes, interleaving), bench_sections.py (one function per target, each adding rows),
bench_children.py (the child's in-process arms and the bare torch loops), bench_report.py (the
machine, the table, BENCHMARKS.md).
"""
import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_children import bare_mlp, child  # noqa: F401 (bare_mlp: P5's ceiling runs bench.bare_mlp)
from bench_common import (BUDGET_S, DEADLINE, PY, REPEATS, ROOT, TARGETS, Bench, BenchError, Row, child_env,
                          make_csv)
from bench_report import machine, table, write_report
from bench_sections import gpu, p1, p2, p3, p4, p5, p6, p7
from bench_tracking import k9, p2_process, store_row
import bench_lab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated targets (P1, P2, \"P2'\", K9, P3..P7, GPU); default all")
    ap.add_argument("--repeats", type=int, default=REPEATS, help="whole-process runs per arm (default 3)")
    ap.add_argument("--budget", type=float, default=BUDGET_S,
                    help=f"seconds after which comparisons stop at 2 rounds (default {BUDGET_S})")
    ap.add_argument("--out", help="report file (default BENCHMARKS.md, and none with --only)")
    ap.add_argument("--child", choices=("P3", "P6", "P7", "GPU"), help=argparse.SUPPRESS)
    ap.add_argument("--csv", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    only = [t.strip().upper() for t in args.only.split(",")] if args.only else list(TARGETS)
    unknown = [t for t in only if t not in TARGETS]
    if unknown:
        sys.exit(f"error: --only: unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    out = Path(args.out) if args.out else (None if args.only else ROOT / "BENCHMARKS.md")

    started, t0 = datetime.datetime.now(), time.perf_counter()
    load0 = tuple(round(x, 2) for x in os.getloadavg())
    info = machine()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    DEADLINE[0] = t0 + args.budget
    b = Bench(Path(tempfile.mkdtemp(prefix="runner-bench-")), max(1, args.repeats))
    try:
        data = make_csv(b.tmp / "data.csv")
        # warm the page cache for everything the runs import, so the first timed run is not special
        subprocess.run([PY, "-c", "import torch, mlflow, hydra, matplotlib.pyplot, runner.train"],
                       cwd=b.tmp, env=child_env(), capture_output=True)
        sections = {"P1": lambda: p1(b), "P2": lambda: p2(b, data), "P2'": lambda: p2_process(b, data),
                    "K9": lambda: k9(b), "P3": lambda: p3(b, data),
                    "P4": lambda: p4(b), "P5": lambda: p5(b), "P6": lambda: p6(b, data),
                    "P7": lambda: p7(b, data),
                    "GPU": lambda: gpu(b, data), "LAB": lambda: bench_lab.section(b),
                    "STORE": lambda: store_row(b)}
        for name in [t for t in TARGETS if t in only]:
            start = time.perf_counter()
            print(f"{name} ...", end=" ", flush=True)
            try:
                sections[name]()
            except Exception as e:  # noqa: BLE001  one section's failure is its ERROR row, not a lost report
                b.rows.append(Row(name, "could not be measured", "-", "-", "ERROR", str(e)[:600]))
            b.seconds[f"section {name}"] = time.perf_counter() - start
            print(f"{b.seconds[f'section {name}']:.0f} s", flush=True)
    finally:
        shutil.rmtree(b.tmp, ignore_errors=True)
    total = time.perf_counter() - t0
    printed = table(b.rows)
    print()
    print(printed)
    for r in b.rows:
        if r.detail:
            print(f"  {r.target}: {r.detail}")
    verdicts = [r.result for r in b.rows]
    print(f"\n{verdicts.count('PASS')} pass, {verdicts.count('FAIL')} fail, {verdicts.count('ERROR')} error; "
          f"{total:.0f} s in all")
    if out:
        load1 = tuple(round(x, 2) for x in os.getloadavg())
        write_report(out, b, info, printed, total, started, (load0, load1))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
