"""The report: the machine, the table of rows, what each figure is, and BENCHMARKS.md."""
import datetime
import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Dict, List

from bench_common import (BEGIN, BUDGET_S, END, FLOOR_CODE, NAIVE_JOBS, P4_NAIVE_EPOCHS, P5_EPOCHS,
                          P6_LINE_EPOCHS, P6_MLP_EPOCHS, P7_TEST, P7_TRAIN, ROOT, Bench, Row)


def machine() -> Dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = names[0].strip() if names else cpu
    except OSError:
        pass

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "absent"

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", ".", ":!benchmarks", ":!BENCHMARKS.md")  # less our own files
    return {"cpu": cpu, "cores": str(os.cpu_count()), "os": platform.platform(),
            "python": platform.python_version(), "torch": version("torch"), "mlflow": version("mlflow"),
            "hydra-core": version("hydra-core"), "hydra-joblib-launcher": version("hydra-joblib-launcher"),
            "commit": (git("rev-parse", "--short", "HEAD") or "none")
            + (f" + {len(dirty.splitlines())} uncommitted changes in the working tree" if dirty else "")}


def table(rows: List[Row]) -> str:
    head = ("target", "figure", "threshold", "result", "what")
    cells = [head] + [(r.target, r.figure, r.threshold, r.result, r.what) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(4)) + "  " + c[4] for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(lines)


DEFINITIONS = f"""\
- **P1**: wall time of the whole process, `--help` and `--cfg job` interleaved, at least 5 runs
  each after one warm-up; the modules imported are read once with `python -X importtime` (untimed).
  Interleaved with them, `--help` with `RUNNER_PLAIN_HELP=1` (Hydra's own help, composing the
  config, instead of the runner's cached page): informative, what the cache buys.
- **P2**: `experiment=csv_linreg` (line, gd, float64, 1000 epochs, log_every=10) on a generated
  100-point CSV, against the **floor**: `python -c '{FLOOR_CODE}' sqlite:///DIR/mlflow.db`,
  i.e. interpreter start, `import torch, mlflow` and one MlflowClient that opens the sqlite store and
  reads it. The gated figure puts both on a **fresh** store in a fresh temporary folder (both pay for
  creating the store's tables, as a first run in a folder does); the informative row puts both on an
  existing store (created beforehand, untimed). Figure = median(runner) / median(floor).
- **P2'**: the same command on a fresh store, the CLI as it is (a tracking process imports mlflow
  and opens the store while the trainer imports torch) against the same floor, gated at 0.8x: faster
  than importing the two libraries one after the other. Interleaved with it, the CLI recording
  in-process (`RUNNER_TRACKING_PROCESS=0`, the code before the tracking process), informative. Then
  both CLIs pinned to one core (`taskset -c 0`, where nothing can overlap), gated at 1.05x.
- **K9**: `experiment=mlp_adam epochs=200000 log_every=100` on one store, 20 times: once the run
  exists, the trainer is killed with SIGKILL after a random 0-4 s (seeded); gated: every run ends
  KILLED with `runner.failure=process_died` within 5 s of the kill (the store polled every 50 ms),
  with as many points stored as its tracking process received (`runner.points_received`) and the
  loss steps without a gap.
- **P3**: csv_linreg with 1000 epochs, `log_every=1` (every metric at every epoch) against
  `log_every=1000` (epochs 0 and 1000 only), everything else equal. The difference lies wholly
  inside `runner.train.run(cfg)` (recording through a tracking process, as the CLI does; it waits
  at the end until every point is stored), so it is measured there: in one Python process, after one warm-up
  run of each arm, at least 7 interleaved pairs timed with perf_counter. The gated figure is that
  difference over the wall time of the whole command with `log_every=1000` (`python -m runner ...`
  on an existing store, interleaved with `log_every=1`, 3 each): (median in-process[1] - median
  in-process[1000]) / median whole[1000]. Informative rows: the whole processes compared directly
  (the same quantity, but a 0.2 s difference in 5 s runs is within their noise), and the difference
  relative to `train.run()` alone (without interpreter start, imports and opening the store).
- **P4**: `python -m runner -m experiment=gd_vs_sgd lr=<20 values 0.005..0.1> device=cpu` (basic
  launcher, 100 epochs, log_every=1, fresh store) interleaved with the P2 floor on a fresh store
  (its samples pooled with P2's fresh-store floor samples).
  **Cost per job beyond training** = (median sweep wall - median floor - median of the sum of the 20
  jobs' `train_seconds`) / 20; so it counts Hydra, the parent run, matplotlib, every job's run set-up,
  artifacts and plots, but not interpreter start, torch/mlflow imports, creating the store, or the
  training loops. **Against the naive script** (`benchmarks/naive_sweep.py`: same data, maths,
  metric names and steps, one fluent `mlflow.log_metric` per point, basic launcher, fresh store),
  both at {P4_NAIVE_EPOCHS} epochs, the textbook's count (at the preset's 100 epochs both are mostly
  the import floor): the runner's whole 20-job sweep, twice; of the naive sweep, {NAIVE_JOBS} of its
  20 jobs (lr spread over the range), once, between them, since each of its jobs takes ~15 s here
  (every point is an sqlite commit, an fsync). Naive 20 jobs = its wall + 16 x (its wall - the
  floor) / {NAIVE_JOBS}: the jobs differ only in lr, so each costs the same.
- **P5**: `-m experiment=mlp_adam seed=0,1,2,3 epochs={P5_EPOCHS} log_every=100 device=cpu` on a
  pre-created store, three arms interleaved: the basic launcher (jobs one after another, torch's
  default 2 threads), `hydra/launcher=warm hydra.launcher.n_jobs=2` (the runner's launcher: two
  workers forked from the sweep's process after torch and the trainer are imported, one thread
  each, one tracking process per worker) and `hydra/launcher=joblib hydra.launcher.n_jobs=2`
  (informative: loky's fresh interpreters import everything per worker). Gated figure =
  median(basic wall) / median(warm wall), whole processes. **P5-short**: the same sweep with
  500-epoch jobs and `n_jobs=auto`, gated at 1.0x (never slower than one after another).
  **P5-scale**: the warm sweep pinned with `taskset` to one core, then to two: what the second
  core buys, gated at 1.7x. **EXIT**: `experiment=mlp_adam`, the time from its summary line on
  stdout to the process's exit (runner/shutdown.py skips the interpreter's teardown), gated at
  0.15 s. The informative P5 ceiling: the same bare mlp + Adam loop with 2 threads, 1 thread, and
  two 1-thread processes side by side.
- **K9-lag**: issue 21's case, the default line with a point every epoch for 6000 epochs (the
  tracking process lags behind the trainer), 20 kills at a random 0-4 s after the run exists
  (seeded): the kill lands mid-training, during the close, or after the run ended; gated: every
  run KILLED (`process_died`, points stored = `runner.points_received`) or FINISHED with all 6001
  loss steps, none empty (every run has its params), no gap in the steps. The row lists how many
  ended each way. In both loops a kill before the first point leaves a run with its params and
  no metric, and that counts as whole: nothing had reached the pipe.
- **LAB**: 10,000 Adam steps on Rosenbrock from (-1.5, 2) in float64 through the optimizer
  lab's loop (`runner.lab.minimise`, every step's x, y, f, grad_norm and gap recorded) against a
  bare torch loop (autograd and `torch.optim.Adam`, the same start and lr), in one child process,
  interleaved. Figure = lab steps/s / bare steps/s, gated at 0.8x.
- **STORE**: in one child process (mlflow imported once, untimed; a cache folder of its own), a
  fresh sqlite store made by MLflow's own migrations (`sqlite_file.migrate`) against one copied from
  the template (`sqlite_file._create`, what a first run in a new folder does once a store has been
  made on the machine), interleaved, at least 5 each; informative, the figure behind the template.
- **Time budget**: past `--budget` seconds (default {BUDGET_S}) a comparison stops after its second
  round; the samples listed show how many rounds each figure got.
- **P6**: in-process, torch set to 1 thread for both arms (with other work on the 2 cores, OpenMP
  barriers in a 2-thread step made single steps 10-50x slower at random, which swamps any loop
  overhead; at these sizes a second thread gains nothing on an idle machine). The runner's
  `train_seconds` as `train.run` returns it (device=cpu, no progress bar; whatever set-up the runner
  puts inside its own timer counts against it) against a bare loop written in this file that does
  the same maths: the same parameter updates, each epoch's loss (mlp: the loss that backward()
  needs; line: the textbook's `loss = mse(ŷ, y)`, which the runner computes to stop a diverging
  run at once), and at the same logged epochs (log_every=10) what the runner records (the
  whole-set loss, and a line's w and b, each read with `.item()`), timed from just before the
  epoch-0 loss to after the last. The bare loops skip the runner's divergence check, its metric
  buffer and its MLflow writes. An informative row compares the line with a bare loop that skips
  the epoch's loss as well. mlp:
  `experiment=mlp_adam epochs={P6_MLP_EPOCHS}`; line: `experiment=csv_linreg epochs={P6_LINE_EPOCHS}`
  on the 100-point CSV against a vectorized analytic-gradient loop. Figure = median(bare) /
  median(runner) = runner steps/s / bare steps/s; at least 5 interleaved repeats after a warm-up.
- **P7**: in-process, torch set to 1 thread for both arms (as P6). `experiment=mnist_mlp epochs=1
  device=cpu` on {P7_TRAIN} training and {P7_TEST} test images of random pixels and labels, written
  as the four IDX files MNIST comes in (the runner reads them as it reads MNIST), against a bare
  loop written in this file: the same network (784 -> 200 -> 200 -> 10, ReLU, torch's default
  init), `torch.optim.SGD(lr=0.01, momentum=0.9)`, one epoch of `torch.randperm` batches of 200
  (indexing X, as the runner does), cross-entropy; before and after the epoch it reads what the
  runner records for a classifier with a test split (loss and accuracy on the training set and
  on the test set, each with `.item()`). The runner's `train_seconds` (epoch-0 record to the last
  record) against the bare loop's time over the same span. Figure = median(bare) / median(runner) =
  runner steps/s / bare steps/s; at least 5 interleaved repeats after a warm-up. The time to read
  and normalise the images (`data.build`, which also checks them) is shown beside it.
- **GPU**: only where `torch.cuda.is_available()`: bare mlp + Adam loops at 8192 samples, 1000 inputs,
  hidden 1000, 10 outputs, synchronized, after warm-up steps; and the runner's loop on cuda against
  the bare cuda loop.
"""


def write_report(path: Path, b: Bench, info: Dict[str, str], printed: str, total: float,
                 started: datetime.datetime, load: tuple) -> None:
    md = [BEGIN, "# Benchmarks", "",
          f"Generated by `benchmarks/bench.py` on {started:%Y-%m-%d %H:%M} "
          f"({total / 60:.1f} minutes). Re-run: `make bench` or `.venv/bin/python benchmarks/bench.py`.", "",
          "## Machine", ""]
    md += [f"- {k}: {v}" for k, v in info.items()]
    md += [f"- load average (1, 5, 15 min) at start {load[0]}, at end {load[1]}: other work shared the "
           "machine when these are above ~0.5; interleaving spreads it over both arms of each comparison",
           "", "## Results", "", "| target | figure | threshold | result | what | detail |",
           "|---|---|---|---|---|---|"]
    md += [f"| {r.target} | {r.figure} | {r.threshold} | **{r.result}** | {r.what} | {r.detail} |"
           for r in b.rows]
    md += ["", "What the script printed:", "", "```", printed, "```", "", "## What each figure is", "",
           DEFINITIONS, "## Commands", "",
           "Each whole-process run has its own temporary folder as cwd ($TMP is a fresh `mkdtemp` folder, "
           "removed at the end).", ""]
    for target, cmds in b.commands.items():
        md += [f"- {target}:"] + [f"  - `{c}`" for c in cmds]
    md += ["", "Per-section wall time of the benchmark itself: "
           + ", ".join(f"{k} {v:.0f} s" for k, v in b.seconds.items() if k.startswith("section ")), "",
           "Raw samples (seconds):", "", "```", json.dumps(b.samples, indent=1), "```", END]
    block = "\n".join(md)
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        block = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    elif old:
        block = block + "\n\n" + old
    path.write_text(block.rstrip() + "\n")
