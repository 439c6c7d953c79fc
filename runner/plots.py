"""PNGs: a run's loss curve, the data with the fitted line, and a sweep's overlaid curves."""
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend, no leaks


def loss_curve(steps: Sequence[int], losses: Sequence[float], path: Path, title: str) -> None:
    fig, ax = _figure((6, 4))
    ax.plot(steps, losses, marker="." if len(steps) < 50 else None)
    _log_scale_if_positive(ax, losses)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def fit(x: Sequence[float], y: Sequence[float], w: float, b: float, path: Path, title: str) -> None:
    fig, ax = _figure((6, 4))
    ax.scatter(x, y, s=8, alpha=0.6, label="data")
    lo, hi = min(x), max(x)
    ax.plot([lo, hi], [w * lo + b, w * hi + b], color="C3", label=f"ŷ = {w:.4g}·x + {b:.4g}")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend()
    _save(fig, path)


def overlay(curves: Dict[str, List[List[float]]], path: Path, title: str) -> None:
    """curves: name -> [[step, loss], ...]."""
    fig, ax = _figure((7, 4.5))
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
        ax.minorticks_off()  # log minor ticks cost more than the rest of the plot


def _figure(size):
    # Fixed margins instead of tight_layout, which measured 0.08 s a plot, half of its cost.
    fig = Figure(figsize=size)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.91)
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=100, pil_kwargs={"compress_level": 1})  # fast zlib: a few KB more


def trajectory(path: List[Tuple[float, float]], out: Path, title: str) -> None:
    """The parameter's path over the loss, as the textbooks draw gradient descent: (w, loss)."""
    fig, ax = _figure((6, 4))
    ws, losses = zip(*path)
    ax.plot(ws, losses, marker=".", alpha=0.7)
    ax.scatter([ws[0]], [losses[0]], color="C2", zorder=3, label="start")
    ax.scatter([ws[-1]], [losses[-1]], color="C3", zorder=3, label="end")
    _log_scale_if_positive(ax, losses)
    ax.set(xlabel="w", ylabel="loss", title=title)
    ax.legend()
    _save(fig, out)


def confusion(true, predicted, n_classes: int, out: Path, title: str) -> None:
    """Counts of (true class, predicted class)."""
    import numpy as np

    counts = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(counts, (true, predicted), 1)
    fig, ax = _figure((5.5, 5))
    ax.imshow(counts, cmap="Blues")
    for (i, j), c in np.ndenumerate(counts):
        if c:
            ax.text(j, i, str(c), ha="center", va="center", fontsize=7,
                    color="white" if c > counts.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title, xticks=range(n_classes), yticks=range(n_classes))
    _save(fig, out)
