"""What every benchmark section shares: the constants, the rows of the report, and running,
timing and interleaving whole processes. Stdlib only."""
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
REPEATS = 3  # whole-process repetitions per arm (each run takes seconds: imports and the store)
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"  # BENCHMARKS.md: text outside is kept
TARGETS = ("P1", "P2", "P2'", "K9", "P3", "P4", "P5", "P6", "P7", "GPU", "LAB")

# The floor of P2 and P4: what any Python+torch+MLflow tool pays before doing anything.
FLOOR_CODE = ("import sys, torch, mlflow; from mlflow.tracking import MlflowClient; "
              "MlflowClient(sys.argv[1]).search_experiments()")
SWEEP_LRS = [round(0.005 * (k + 1), 3) for k in range(20)]  # gd_vs_sgd converges for lr < 0.21
P4_NAIVE_EPOCHS, NAIVE_JOBS = 1000, 4
P5_EPOCHS = 3000  # mlp_adam: about 2 s of compute per job on this 2-core machine
P6_MLP_EPOCHS, P6_LINE_EPOCHS = 5000, 3000  # mlp: the tutorial's 64x1000 -> 100 -> 10 at mlp_adam's size
P7_TRAIN, P7_TEST = 60000, 10000  # MNIST's sizes, random 28x28 pixels: one epoch of experiment=mnist_mlp
BUDGET_S = 480  # past this, comparisons stop after their second round, so a run ends in ~10 min


class BenchError(Exception):
    """A benchmark could not be measured (a run failed): its row reads ERROR."""


@dataclass
class Row:
    target: str
    what: str
    figure: str
    threshold: str
    result: str  # PASS, FAIL, INFO, SKIP, ERROR
    detail: str = ""


@dataclass
class Bench:
    tmp: Path
    repeats: int
    rows: List[Row] = field(default_factory=list)
    commands: Dict[str, List[str]] = field(default_factory=dict)
    samples: Dict[str, Dict[str, List[float]]] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)

    def fresh_dir(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.tmp))

    def note(self, target: str, cmd: List[str], cwd: Path, untimed: bool = False) -> None:
        """Keep one example of each command, with temporary paths shown as $TMP."""
        shown = f"(cd {cwd} && {' '.join(shlex.quote(c) for c in cmd)})".replace(str(self.tmp), "$TMP")
        shown = shown.replace(PY, "python").replace(str(ROOT), "$REPO") + ("  # set-up, untimed" if untimed else "")
        seen = self.commands.setdefault(target, [])
        if re.sub(r"-[\w]{8}", "", shown) not in [re.sub(r"-[\w]{8}", "", s) for s in seen]:
            seen.append(shown)


# ---- running and timing ----------------------------------------------------------------------
def child_env() -> Dict[str, str]:
    """The user's environment less what would redirect or change a run."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RUNNER_DEBUG")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def timed(b: Bench, target: str, cmd: List[str], cwd: Path, timeout: float = 900, untimed: bool = False):
    """(wall seconds, stdout) of one whole process; BenchError if it fails."""
    b.note(target, cmd, cwd, untimed)
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        tail = [ln for ln in p.stderr.splitlines() if ln.strip() and " INFO " not in ln][-3:]
        raise BenchError(f"exit {p.returncode} from {' '.join(cmd[1:4])} ...: {' | '.join(tail)[:400]}")
    return wall, p.stdout


def train_seconds(stdout: str, jobs: int) -> List[float]:
    """train_seconds=... of every summary line; BenchError unless there is one per job."""
    found = [float(x) for x in re.findall(r"train_seconds=([0-9.]+)", stdout)]
    if len(found) != jobs:
        raise BenchError(f"expected {jobs} summary lines with train_seconds, found {len(found)}")
    return found


DEADLINE = [float("inf")]  # perf_counter time after which comparisons stop at 2 rounds


def interleave(arms: Dict[str, Callable[[], Dict[str, float]]], repeats: int) -> Dict[str, Dict[str, List[float]]]:
    """Run arm A, B, ..., A, B, ... `repeats` times (fewer, but at least 2, past the time
    budget); each call returns named figures."""
    out: Dict[str, Dict[str, List[float]]] = {name: {} for name in arms}
    for i in range(repeats):
        if i >= 2 and time.perf_counter() > DEADLINE[0]:
            print(f"(time budget: {i} rounds)", end=" ", flush=True)
            break
        for name, arm in arms.items():
            for key, value in arm().items():
                out[name].setdefault(key, []).append(value)
    return out


def med(xs: List[float]) -> float:
    return statistics.median(xs)


def fmt_samples(xs: List[float]) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in xs) + "]"


def make_csv(path: Path, n: int = 100) -> Path:
    """x,y with y = 3x + 2 + noise: the 100-point file of P2/P3/P6."""
    rng = random.Random(0)
    lines = ["x,y"]
    for _ in range(n):
        x = rng.uniform(0, 10)
        lines.append(f"{x:.6f},{3 * x + 2 + rng.gauss(0, 0.5):.6f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def runner_cmd(*args: str) -> List[str]:
    return [PY, "-m", "runner", *args]


def floor_cmd(store: Path) -> List[str]:
    return [PY, "-c", FLOOR_CODE, f"sqlite:///{store}"]


def judge(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
