"""The optimizer lab's pictures: a path over the curve (1-D) or over a contour plot (2-D), with
the start, the end and the known minima (and saddles) marked; one path or a sweep's every path."""
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from runner.objectives import Objective

STYLES = ("-", "--", "-.", ":")


def path(objective: Objective, bounds: Sequence[Sequence[float]], paths: Dict[str, Sequence[Sequence[float]]],
         out: Path, title: str) -> None:
    """paths: label -> the points, the start first. Drawn over the objective within `bounds`."""
    fig = Figure(figsize=(7, 5.5) if objective.dim == 2 else (7, 4.5))
    ax = fig.subplots()
    if objective.dim == 1:
        _curve(ax, objective, bounds[0], paths)
    else:
        _contour(ax, objective, bounds, paths)
    ax.set_title(title[:80])
    if len(paths) <= 12:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def _curve(ax: Any, objective: Objective, box: Sequence[float], paths: Dict[str, Sequence]) -> None:
    x = np.linspace(box[0], box[1], 800)
    ax.plot(x, objective.f([x], np), color="0.4", lw=1, label="f")
    for i, (label, pts) in enumerate(paths.items()):
        xs = np.array([p[0] for p in pts])
        ys = objective.f([xs], np)
        ax.plot(xs, ys, ".-", color=f"C{i}", ms=3, lw=0.8, alpha=0.8, label=f"{label[:50]}  f={ys[-1]:.2g}")
        ax.plot(xs[:1], ys[:1], "o", color=f"C{i}", mfc="none", ms=9)  # start: hollow
        ax.plot(xs[-1:], ys[-1:], "o", color=f"C{i}", ms=7)  # end: filled
    ms = [m for m in objective.minima() if box[0] <= m[0] <= box[1]]
    if ms:
        ax.plot([m[0] for m in ms], [objective.f(m) for m in ms], "k*", ms=11, label="known minima")
    ax.set(xlabel="x", ylabel="f(x)", xlim=box)
    ax.grid(alpha=0.3)


def _contour(ax: Any, objective: Objective, bounds: Sequence[Sequence[float]], paths: Dict[str, Sequence]) -> None:
    x = np.linspace(*bounds[0], 300)
    y = np.linspace(*bounds[1], 300)
    X, Y = np.meshgrid(x, y)
    Z = objective.f([X, Y], np)
    # grey contours: the paths keep the colours
    if Z.min() >= 0:  # valleys (Rosenbrock, Beale): log-spaced levels show the floor
        lo = max(Z.min(), Z.max() * 1e-7, 1e-3)
        ax.contour(X, Y, np.maximum(Z, lo), levels=np.geomspace(lo, Z.max(), 25), norm=LogNorm(),
                   cmap="Greys", linewidths=0.6, alpha=0.6)
    else:
        ax.contour(X, Y, Z, levels=25, cmap="Greys", linewidths=0.6, alpha=0.6)
    n = len(paths)
    for i, (label, pts) in enumerate(paths.items()):
        p = np.array(pts)
        # Solvers often share a stretch of path (the valley floor): the earlier ones are drawn
        # wider and dashed differently, so that none hides under another.
        ax.plot(p[:, 0], p[:, 1], STYLES[i % len(STYLES)], color=f"C{i}", lw=1.2 + 2.4 * (n - 1 - i) / max(n - 1, 1),
                alpha=0.9, label=f"{label[:50]}  f={objective.f(p[-1]):.2g}")
        ax.plot(p[:1, 0], p[:1, 1], "o", color=f"C{i}", mfc="none", ms=9)
        ax.plot(p[-1:, 0], p[-1:, 1], "o", color=f"C{i}", ms=7, mec="k", mew=0.6, zorder=5)
    for points, marker, label in ((objective.minima(), "k*", "known minimum"), (objective.saddles(), "kX", "saddle")):
        if points:
            ax.plot([m[0] for m in points], [m[1] for m in points], marker, ms=12, label=label)
    ax.set(xlabel="x", ylabel="y", xlim=bounds[0], ylim=bounds[1])


def sweep_paths(results: List[Dict[str, Any]], out_dir: Path, title: str) -> None:
    """sweep_paths.png on a sweep's parent: every finished child's path on one picture, each
    labelled by its name (what varies). Nothing when no child minimised an objective, or when
    the children minimised different ones."""
    from runner.lab import objective_of

    done = [r for r in results if r.get("path") and r.get("objective")]
    def key(o: Dict[str, Any]) -> str:  # the function and the box; start points may differ
        return str({k: v for k, v in sorted(o.items()) if k not in ("start", "noise")})

    if not done or len({key(r["objective"]) for r in done}) > 1:
        return
    config = done[0]["objective"]
    paths = {r["name"]: r["path"] for r in done}
    path(objective_of(config), config["bounds"], paths, Path(out_dir) / "sweep_paths.png", title)
