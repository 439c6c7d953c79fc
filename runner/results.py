"""What runner.run, runner.sweep and runner.compare return: read back from the store the run was
recorded in (the same numbers the MLflow UI shows), and shown in Jupyter as a one-line summary
and the run's figure (_repr_mimebundle_). pandas and mlflow are imported here, on first use."""
import base64
import html
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from runner.tracking import links, read, store


@dataclass
class Figure:
    """One PNG the run logged; Jupyter shows it as an image."""
    name: str
    png: bytes

    def _repr_png_(self) -> bytes:
        return self.png

    def save(self, path: str) -> None:
        Path(path).write_bytes(self.png)


def _bundle(summary: str, link: str, figure: Optional[Figure]) -> Dict[str, Any]:
    text = html.escape(summary)
    parts = [f"<p><code>{text}</code> <a href=\"{html.escape(link)}\" target=\"_blank\">MLflow</a></p>"]
    bundle = {"text/plain": summary}
    if figure is not None:
        b64 = base64.b64encode(figure.png).decode()
        parts.append(f"<img src=\"data:image/png;base64,{b64}\" alt=\"{html.escape(figure.name)}\"/>")
        bundle["image/png"] = b64
    bundle["text/html"] = "\n".join(parts)
    return bundle


@dataclass
class RunResult:
    summary: str  # the CLI's summary line
    run_id: str
    name: str
    experiment: str
    status: str
    final_loss: float
    link: str  # the run in MLflow's UI
    metrics: Dict[str, float] = field(default_factory=dict)  # each metric's last value
    history: Any = None  # pandas DataFrame: one row per logged epoch, a column per metric
    figures: Dict[str, Figure] = field(default_factory=dict)  # loss_curve, fit, trajectory, ...

    def _repr_mimebundle_(self, include=None, exclude=None) -> Dict[str, Any]:
        return _bundle(self.summary, self.link, self.figures.get("loss_curve"))

    def __repr__(self) -> str:
        return self.summary


@dataclass
class SweepResult:
    summary: str  # the CLI's sweep line
    parent_run_id: str
    experiment: str
    link: str
    jobs: Any  # pandas DataFrame, as python -m runner.compare prints it: best first
    figure: Optional[Figure] = None  # every job's loss curve overlaid
    failed: List[str] = field(default_factory=list)

    def _repr_mimebundle_(self, include=None, exclude=None) -> Dict[str, Any]:
        bundle = _bundle(self.summary, self.link, self.figure)
        bundle["text/html"] += "\n" + self.jobs.to_html(index=False)
        bundle["text/plain"] += "\n" + self.jobs.to_string(index=False)
        return bundle

    def __repr__(self) -> str:
        return self.summary


def _figures(client, run_id: str) -> Dict[str, Figure]:
    import os
    from unittest import mock  # only to set one variable for the block, as os.environ was

    found = {}
    # MLflow draws a progress bar per download: noise under a cell
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.dict(os.environ, {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}):
        for entry in client.list_artifacts(run_id):
            if entry.path.endswith(".png"):
                local = client.download_artifacts(run_id, entry.path, tmp)
                found[Path(entry.path).stem] = Figure(Path(entry.path).stem, Path(local).read_bytes())
    return found


def history(client, run) -> Any:
    """Every metric logged more than once, by epoch (the step), as one DataFrame."""
    import pandas as pd

    columns = {}
    for key in run.data.metrics:
        points = read.curve(client, run.info.run_id, key)
        if len(points) > 1:
            columns[key] = pd.Series({step: value for step, value in points})
    df = pd.DataFrame(columns)
    df.index.name = "epoch"
    return df


def load_run(uri: str, run_id: str, summary: str) -> RunResult:
    client = store.get_client(uri)
    run = client.get_run(run_id)
    exp_id = run.info.experiment_id
    return RunResult(summary=summary, run_id=run_id, name=run.info.run_name,
                     experiment=client.get_experiment(exp_id).name, status=run.info.status,
                     final_loss=run.data.metrics.get("final_loss", float("nan")),
                     link=links.run_link(links.ui_base(uri), exp_id, run_id),
                     metrics=dict(run.data.metrics), history=history(client, run),
                     figures=_figures(client, run_id))


def load_sweep(uri: str, parent_id: str, summary: str, sort: str = "final_loss") -> SweepResult:
    from runner.compare import table

    client = store.get_client(uri)
    parent = client.get_run(parent_id)
    exp_id = parent.info.experiment_id
    overlay = _figures(client, parent_id).get("sweep_loss_curves")
    failed = [f for f in parent.data.tags.get("runner.failed", "").split("; ") if f]
    return SweepResult(summary=summary, parent_run_id=parent_id, experiment=client.get_experiment(exp_id).name,
                       link=links.run_link(links.ui_base(uri), exp_id, parent_id),
                       jobs=table(read.children(client, parent), sort), figure=overlay, failed=failed)
