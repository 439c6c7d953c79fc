"""What both engines' loops hand back (Trace) and the points they log the same way."""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from runner import config

Log = Callable[[str, float, int], None]


@dataclass
class Trace:
    """What the loop hands back besides the metrics: for the summary and the plots."""
    curve: List[Tuple[int, float]] = field(default_factory=list)  # (epoch, loss)
    path: List[Tuple[float, float]] = field(default_factory=list)  # (w, loss), one-input lines
    line: Optional[Tuple[float, float]] = None  # final (w, b) of a one-input line
    labels: Optional[Tuple[np.ndarray, np.ndarray]] = None  # (true, predicted), classification
    state: Dict[str, Any] = field(default_factory=dict)  # the weights
    extra: Dict[str, float] = field(default_factory=dict)
    module: Any = None  # the trained torch model as an nn.Module on the CPU, for MLflow
    seconds: float = 0.0  # the loop alone, from the epoch-0 loss to the last epoch's record


def record_point(trace: Trace, log: Log, epoch: int, value: float, line, optimum) -> None:
    """One logged point: loss, and where they apply w, b and the gap to the optimum."""
    trace.curve.append((epoch, value))
    log("loss", value, epoch)
    if line is not None:
        trace.path.append((line[0], value))
        log("w", line[0], epoch)
        log("b", line[1], epoch)
    if optimum is not None:
        if epoch == 0:  # after loss: MLflow's compare page plots the first metric a run logged
            log("optimal_loss", optimum, 0)
        trace.extra["gap"] = value - optimum
        log("gap", value - optimum, epoch)


def optimum(cfg: Any, solve: Callable[[], float]) -> Optional[float]:
    """optimal_loss for linear models on a squared loss (solved once), else None."""
    if not isinstance(cfg.model, (config.LineModel, config.LinearModel)) or cfg.dataset.classification:
        return None
    return float(solve())
