"""LAB: 10,000 Adam steps on Rosenbrock through the optimizer lab's loop (runner.lab.minimise,
every step's x, y, f, grad_norm and gap logged to a list) against a bare torch loop of the same
update (the point a tensor, f in torch ops, autograd's backward, torch.optim.Adam's step), the
loop a user writes by hand. Interleaved rounds, medians; target: the lab >= 0.8x the bare loop's
steps per second. Standalone: `python benchmarks/bench_lab.py` prints one JSON line; bench.py
runs it as a child (its own process never imports torch)."""
import json
import statistics
import sys
import time
from pathlib import Path

STEPS, ROUNDS, LR, TARGET = 10_000, 5, 1e-3, 0.8
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def lab_loop() -> float:
    import torch
    from runner import lab, objectives

    obj, logged = objectives.make("rosenbrock"), []
    trace = lab.minimise(obj, obj.start, lambda ps: torch.optim.Adam(ps, lr=LR), STEPS,
                         lambda k, v, s: logged.append((k, v, s)))
    assert len(logged) == 5 * (STEPS + 1)
    return trace.seconds


def bare_loop() -> float:
    import torch

    p = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=LR)
    start = time.perf_counter()
    for _ in range(STEPS):
        opt.zero_grad()
        x, y = p[0], p[1]
        f = (1 - x) ** 2 + 100 * (y - x * x) ** 2
        f.backward()
        opt.step()
    return time.perf_counter() - start


def measure() -> dict:
    lab_loop(), bare_loop()  # warm: the first optimizer step builds its state, imports settle
    lab_s, bare_s = [], []
    for _ in range(ROUNDS):  # interleaved: a slow moment of a shared machine hits both arms
        lab_s.append(lab_loop())
        bare_s.append(bare_loop())
    ratio = statistics.median(bare_s) / statistics.median(lab_s)  # steps/s of lab over bare
    return {"lab_s": lab_s, "bare_s": bare_s, "lab_steps_per_s": STEPS / statistics.median(lab_s),
            "bare_steps_per_s": STEPS / statistics.median(bare_s), "ratio": ratio, "pass": ratio >= TARGET}


def section(b) -> None:
    """bench.py's LAB row."""
    import subprocess

    from bench_common import PY, Row, child_env

    out = subprocess.run([PY, __file__], capture_output=True, text=True, env=child_env(), timeout=600)
    if out.returncode != 0:
        raise ValueError(out.stderr.strip()[-500:])
    r = json.loads(out.stdout.strip().splitlines()[-1])
    b.rows.append(Row("LAB", "10,000 Adam steps on Rosenbrock: lab loop vs bare torch loop (steps/s)",
                      f"{r['ratio']:.2f}x ({r['lab_steps_per_s']:.0f} vs {r['bare_steps_per_s']:.0f}/s)",
                      f">= {TARGET}x", "PASS" if r["pass"] else "FAIL",
                      f"medians of {ROUNDS} interleaved rounds"))


if __name__ == "__main__":
    print(json.dumps(measure()))
