"""The sweep's parent run, a Hydra callback in the launching process: created once before any
job starts (so parallel jobs never race to create the store), summarised at the end from the
result file each job leaves in its own folder (which works for every launcher, on other hosts
too, and for jobs that failed before an MLflow run existed)."""
import json
import math
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.errors import first_line
from runner.tracking import service
from runner.tracking.store import check_uri, masked, resolve_uri, ui_base

PARENT_FILE = "mlflow_parent_run_id"  # in the sweep dir: how jobs on other hosts find the parent
SWEPT_FILE = "swept_keys.json"  # in the sweep dir: the keys that vary, which name each job
RESULT_FILE = "result.json"  # in each job's dir: what the parent summarises at the end
GROUPS = ("dataset", "model", "optim", "device", "objective")  # `optim=adam` is the param `optim.name`
SWEEP_FAILURES: List[str] = []  # set by SweepCallback in the launching process, read by __main__
ACTIVE_PARENT: list = []  # the open parent run, so an aborted sweep can close it


# On the command line but not what a run is about: left out of run names and the sweep's name
# (the preset, `experiment`, leads them instead).
UNNAMED = ("experiment", "tracking.uri", "hydra/launcher", "hydra/sweeper", "hparams_search", "resume",
           "debug", "run_name", "experiment_name")


def named(overrides: List[str]) -> List[str]:
    """The overrides that say what a run or a sweep is about."""
    return [o for o in overrides if override_key(o) not in UNNAMED]


def override_key(override: str) -> str:
    """`lr=0.1` -> `lr`, `+foo.bar=1` -> `foo.bar`."""
    return override.split("=", 1)[0].lstrip("+~")


def param_name(key: str) -> str:
    """The param a command-line key lands in: a group's choice is its `.name`."""
    return f"{key}.name" if key in GROUPS else key


def swept(config: DictConfig) -> Dict[str, str]:
    """key -> what the sweep tries: the command line's sweep overrides (`lr=1e-6,1e-4`) and an
    Optuna sweeper's search space (`hydra.sweeper.params`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = {o.key_or_group: o.input_line.split("=", 1)[1] for o in overrides if o.is_sweep_override()}
    space = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return {**keys, **{k: str(v) for k, v in space.items()}}


def read_sweep(sweep_dir: str) -> Tuple[Optional[str], List[str]]:
    """(parent run id, swept keys) from the files SweepCallback left in the sweep dir: the one
    place that the jobs of every launcher share."""
    path = Path(sweep_dir)
    if not path.is_absolute() and HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.cwd) / path  # the launch dir, even with job.chdir
    parent, keys = path / PARENT_FILE, path / SWEPT_FILE
    return (parent.read_text().strip() if parent.is_file() else None,
            json.loads(keys.read_text()) if keys.is_file() else [])


class SweepCallback(Callback):
    # Hydra turns a callback's exception into a warning and goes on (exit 0): each callback
    # catches its own and counts it as a failure of the sweep (one line, exit 1, from __main__).
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SWEEP_FAILURES.clear()
        self.parent = None
        try:
            self._open(config)
        except Exception as e:  # noqa: BLE001  the jobs still run, without a parent
            SWEEP_FAILURES.append(f"the sweep's parent run: {first_line(e, 300)}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent is None:
            return  # no parent to summarise on: on_multirun_start said why
        try:
            self._summarise(config)
        except Exception as e:  # noqa: BLE001
            abort_sweep(e)
            SWEEP_FAILURES.append(f"the sweep's summary on its parent run: {first_line(e, 300)}")

    def _open(self, config: DictConfig) -> None:
        uri = resolve_uri(config.tracking.uri, config.hydra.runtime.cwd)
        check_uri(uri)
        self.tracker = service.tracker()  # the jobs of the basic launcher share it
        overrides = list(config.hydra.overrides.task)
        self.space = space = swept(config)
        preset = OmegaConf.select(config, "hydra.runtime.choices.experiment")
        name = " ".join(["sweep", *([preset] if preset else []), *named(overrides)])
        self.parent = self.tracker.start_run(uri, config.experiment_name, name[:250], {
            "runner.sweep": "true", "runner.sweep_overrides": masked(" ".join(overrides))})
        self.parent.log_params({param_name(k): v for k, v in space.items()})
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.sweep_dir.glob(f"**/{RESULT_FILE}"):  # a reused sweep dir: not ours
            stale.unlink()
        # The only route to the jobs: every launcher (submitit on other hosts included) shares it.
        (self.sweep_dir / SWEPT_FILE).write_text(json.dumps(sorted(space)))
        (self.sweep_dir / PARENT_FILE).write_text(self.parent.id)  # waits for the store
        ACTIVE_PARENT[:] = [self.parent]

    def _summarise(self, config: DictConfig) -> None:
        results = job_results(self.sweep_dir)
        done = [r for r in results if r["status"] in ("FINISHED", "SKIPPED")]
        failed = [r for r in results if r not in done]
        SWEEP_FAILURES[:] = [f"{r['name']}: {r.get('reason') or r['status']}" for r in failed]
        link = self._save_view()
        tags = {"runner.jobs": len(results), "runner.failed_jobs": len(failed),
                "mlflow.note.content": describe(results, self.parent.experiment_id, " ".join(
                    config.hydra.overrides.task), link)}
        if failed:
            tags["runner.failed"] = "; ".join(SWEEP_FAILURES)[:5000]
        reused = [r["run_id"] for r in done if r["status"] == "SKIPPED"]
        if reused:  # resume: these jobs are runs of an earlier sweep; compare lists them too
            tags["runner.reused_run_ids"] = ",".join(reused[:150])  # whole ids, within a tag's size
        if done:
            best = min(done, key=lambda r: sort_loss(r["final_loss"]))
            tags.update({"runner.best_run_id": best["run_id"], "runner.best_run_name": best["name"]})
            self.parent.log("best_final_loss", best["final_loss"], 0)  # step 0: a bar a run
        for label, (mean, std, _) in over_seeds(done).items():
            self.parent.log(f"final_loss_mean/{metric_safe(label)}", mean, 0)
            self.parent.log(f"final_loss_std/{metric_safe(label)}", std, 0)
        self.parent.set_tags(tags)
        self._log_overlay(results)
        self.parent.end(None)
        ACTIVE_PARENT.clear()
        print(f"sweep: {len(done)} of {len(results)} jobs ok"
              + (f", best {best['name']} final_loss={best['final_loss']:.6g} run {best['run_id']}"
                 if done else "") + f"; parent run {self.parent.id}; charts: {link}")

    def _save_view(self) -> str:
        """A saved view of this sweep in MLflow's UI (its "Views" menu; an experiment tag): only
        its children, sorted by final_loss, the swept params and final_loss as columns, and
        charts of each swept param against final_loss. Returns a link that opens it."""
        key = f"sweep-{self.parent.id[:12]}"
        params = [param_name(k) for k in sorted(self.space)]
        self.parent.set_experiment_tag(f"mlflow.sharedViewState.{key}",
                                       json.dumps(saved_view(self.parent.name, self.parent.id, params)))
        return (f"{ui_base(self.parent.uri)}/#/experiments/{self.parent.experiment_id}/runs"
                f"?viewStateShareKey={key}&compareRunsMode=CHART&workflowType=machine_learning")

    def _log_overlay(self, results: List[Dict[str, Any]]) -> None:
        """sweep_loss_curves.png on the parent: every job's loss curve in one plot."""
        from runner import plots

        curves = {}
        for r in results:
            points = r.get("curve") or []
            if not points and r["status"] == "SKIPPED":  # resume: the earlier run's curve
                points = self.tracker.curve(self.parent.uri, r["run_id"])
            if points:  # Optuna may try one config twice: keep both lines apart
                curves[r["name"] if r["name"] not in curves else f"{r['name']} ({r['run_id'][:8]})"] = points
        if curves:
            with tempfile.TemporaryDirectory() as tmp:
                plots.overlay(curves, Path(tmp) / "sweep_loss_curves.png", self.parent.name)
                from runner import lab_plots  # the optimizer lab: every child's path on one contour

                lab_plots.sweep_paths(results, Path(tmp), self.parent.name)
                self.parent.log_artifacts(tmp)


def saved_view(name: str, parent_id: str, params: List[str]) -> Dict[str, Any]:
    """The UI state MLflow 3.17's experiment page keeps in a `mlflow.sharedViewState.*` tag."""
    section = "sec-sweep"
    charts = [{"uuid": f"scatter-{p}", "type": "SCATTER", "runsCountToCompare": 100, "metricSectionId": section,
               "deleted": False, "isGenerated": False, "xaxis": {"key": p, "type": "PARAM"},
               "yaxis": {"key": "final_loss", "type": "METRIC"}} for p in params]
    charts.append({"uuid": "parallel", "type": "PARALLEL", "runsCountToCompare": 100, "metricSectionId": section,
                   "deleted": False, "isGenerated": False, "selectedParams": params,
                   "selectedMetrics": ["final_loss"], "showAllRuns": True})
    state = {"orderByKey": "metrics.`final_loss`", "orderByAsc": True,
             "searchFilter": f"tags.`mlflow.parentRunId` = '{parent_id}'",
             "selectedColumns": [f"params.`{p}`" for p in params] + ["metrics.`final_loss`",
                                                                   "attributes.`Dataset`", "attributes.`Models`"],
             "runsHiddenMode": "SHOW_ALL",
             "compareRunSections": [{"uuid": section, "name": "final_loss against what the sweep varies",
                                     "display": True, "isReordered": False, "deleted": False, "isGenerated": False}],
             "compareRunCharts": charts}
    now = int(time.time() * 1000)
    return {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}


def describe(results: List[Dict[str, Any]], experiment_id: str, command: str, charts: str) -> str:
    """The parent's description (markdown, shown on its run page): the children ranked by
    final_loss, each a link to its run; failures last; the mean and spread over seeds; the link
    to the sweep's charts."""
    ranked = sorted(results, key=lambda r: (r["status"] not in ("FINISHED", "SKIPPED"),
                                            sort_loss(r.get("final_loss"))))
    ok = sum(r["status"] in ("FINISHED", "SKIPPED") for r in results)
    lines = [f"Sweep `python -m runner -m {command}`: {ok} of {len(results)} jobs finished, "
             "ranked by `final_loss` (lower is better).", "",
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


def job_results(sweep_dir: Path) -> List[Dict[str, Any]]:
    """Every job's result.json; a job dir that Hydra set up but that has none was killed or
    crashed hard (out of memory, a cluster time limit): it counts as failed, never as absent."""
    job_dirs = {p.parent for p in sweep_dir.glob("**/.hydra")} | \
        {p.parent for p in sweep_dir.glob(f"**/{RESULT_FILE}")}
    results = []
    for job_dir in sorted(job_dirs, key=_job_order):
        path = job_dir / RESULT_FILE
        if path.is_file():
            results.append(json.loads(path.read_text()))
            continue
        overrides = job_dir / ".hydra" / "overrides.yaml"
        name = ",".join(OmegaConf.load(overrides)) if overrides.is_file() else str(job_dir)
        results.append({"status": "LOST", "name": name or str(job_dir),
                        "reason": f"no {RESULT_FILE} in {job_dir} (killed or crashed)"})
    return results


def _job_order(job_dir: Path):
    return (int(job_dir.name), "") if job_dir.name.isdigit() else (float("inf"), str(job_dir))


def sort_loss(value: Any) -> float:
    return value if isinstance(value, (int, float)) and value == value else float("inf")


def write_result(job_dir: str, result: Dict[str, Any]) -> None:
    """Each job leaves its outcome in its own folder; the parent reads them all at the end."""
    path = Path(job_dir) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)


def abort_sweep(error: BaseException) -> None:
    """Close a sweep's parent run that an error cut short (FAILED, or KILLED on Ctrl-C)."""
    parent = ACTIVE_PARENT.pop() if ACTIVE_PARENT else None
    if parent is not None:
        parent.end(error)
