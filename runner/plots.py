"""PNGs: a run's loss curve, the data with the fitted line, and a sweep's overlaid curves."""
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no window, works headless and in workers
import matplotlib.pyplot as plt  # noqa: E402


def loss_curve(steps: Sequence[int], losses: Sequence[float], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, losses, marker="." if len(steps) < 50 else None)
    _log_scale_if_positive(ax, losses)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def fit(x: Sequence[float], y: Sequence[float], w: float, b: float, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(x, y, s=8, alpha=0.6, label="data")
    lo, hi = min(x), max(x)
    ax.plot([lo, hi], [w * lo + b, w * hi + b], color="C3", label=f"ŷ = {w:.4g}·x + {b:.4g}")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend()
    _save(fig, path)


def overlay(curves: Dict[str, List[List[float]]], path: Path, title: str) -> None:
    """curves: name -> [[step, loss], ...]."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    values = []
    for name, points in curves.items():
        steps, losses = zip(*points) if points else ((), ())
        ax.plot(steps, losses, label=name[:60])
        values += losses
    _log_scale_if_positive(ax, values)
    ax.set(xlabel="epoch", ylabel="loss", title=title[:80])
    ax.grid(alpha=0.3)
    if len(curves) <= 12:
        ax.legend(fontsize=7)
    _save(fig, path)


def _log_scale_if_positive(ax, values) -> None:
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 100:
        ax.set_yscale("log")


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
