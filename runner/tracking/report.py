"""The sweep's parent run described: the markdown ranking of its jobs and the statistics over
seeds (mean and spread of final_loss for each configuration)."""
import math
import re
import statistics
from typing import Any, Dict, List, Optional, Tuple


def describe(results: List[Dict[str, Any]], experiment_id: str, command: str, charts: str,
             note: Optional[str] = None) -> str:
    """The parent's description (markdown, shown on its run page): the children ranked by
    final_loss, each a link to its run; failures last; the mean and spread over seeds; the link
    to the sweep's charts."""
    ranked = sorted(results, key=lambda r: (r["status"] not in ("FINISHED", "SKIPPED"),
                                            sort_loss(r.get("final_loss"))))
    ok = sum(r["status"] in ("FINISHED", "SKIPPED") for r in results)
    lines = [f"Sweep `python -m runner -m {command}`: {ok} of {len(results)} jobs finished, "
             "ranked by `final_loss` (lower is better).", "", *([note[0].upper() + note[1:], ""] if note else []),
             "| rank | run | final_loss | status |", "|---:|---|---:|---|"]
    for i, r in enumerate(ranked, 1):
        run = f"[{r['name']}]({run_link(experiment_id, r['run_id'])})" if r.get("run_id") else r["name"]
        loss = f"{r['final_loss']:.6g}" if r.get("final_loss") is not None else "–"
        status = r["status"] if r["status"] in ("FINISHED", "SKIPPED") else \
            f"{r['status']}: {r.get('reason', '')}"[:200]
        lines.append(f"| {i} | {run} | {loss} | {status} |")
    seeds = over_seeds([r for r in results if r["status"] in ("FINISHED", "SKIPPED")])
    if seeds:
        lines += ["", "Over seeds (standard deviation with n−1):", "",
                  "| configuration | seeds | mean final_loss | std |", "|---|---:|---:|---:|"]
        for label, (mean, std, n) in sorted(seeds.items(), key=lambda kv: kv[1][0]):
            lines.append(f"| {label} | {n} | {mean:.6g} | {std:.3g} |")
    lines += ["", f"[Open this sweep's runs as charts]({charts})"]
    return "\n".join(lines)


def run_link(experiment_id: str, run_id: str) -> str:
    """A link that MLflow's UI (a hash-routed page) opens from a run's description."""
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def metric_safe(label: str) -> str:
    """MLflow's metric names take letters, digits and _ - . / : and spaces only."""
    return re.sub(r"[^\w.\- :]", "_", label)


def over_seeds(done: List[Dict[str, Any]]) -> Dict[str, Tuple[float, float, int]]:
    """label -> (mean, std, n) of final_loss over the seeds of each configuration, when the sweep
    varies `seed` and at least one configuration has two or more."""
    groups: Dict[str, List[float]] = {}
    for r in done:
        swept_values = r.get("swept") or {}
        if "seed" not in swept_values or not math.isfinite(sort_loss(r.get("final_loss"))):
            continue
        label = " ".join(f"{k}:{v}" for k, v in sorted(swept_values.items()) if k != "seed") or "all"
        groups.setdefault(label, []).append(r["final_loss"])
    if not any(len(v) > 1 for v in groups.values()):
        return {}
    return {label: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
            for label, v in groups.items()}


def sort_loss(value: Any) -> float:
    return value if isinstance(value, (int, float)) and value == value else float("inf")


def seed_note(space: Dict[str, str], seeds: Dict[str, Tuple[float, float, int]]) -> Optional[str]:
    """One line when a sweep over seeds got the same final_loss from every seed of every config."""
    if "seed" not in space or not seeds or any(std != 0 for _, std, n in seeds.values() if n > 1):
        return None
    return ("note: the seed changes nothing here (fixed data and start): each configuration gave "
            "the same final_loss for every seed")
