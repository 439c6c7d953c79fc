"""The sweep's parent run, a Hydra callback in the launching process: created once before any
job starts (so parallel jobs never race to create the store), summarised at the end from the
result file each job leaves in its own folder (which works for every launcher, on other hosts
too, and for jobs that failed before an MLflow run existed)."""
import json
import tempfile
from pathlib import Path
from typing import Any, Dict, List

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner import naming, session
from runner.errors import first_line
from runner.tracking import links, service
from runner.tracking.job_files import PARENT_FILE, RESULT_FILE, SWEPT_FILE, job_results
from runner.tracking.report import describe, metric_safe, over_seeds, seed_note, sort_loss
from runner.tracking.store import check_uri, masked, resolve_uri
from runner.tracking.view import saved_view


def swept(config: DictConfig) -> Dict[str, str]:
    """key -> what the sweep tries: the command line's sweep overrides (`lr=1e-6,1e-4`) and an
    Optuna sweeper's search space (`hydra.sweeper.params`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = {o.key_or_group: o.input_line.split("=", 1)[1] for o in overrides if o.is_sweep_override()}
    space = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return {**keys, **{k: str(v) for k, v in space.items()}}


class SweepCallback(Callback):
    # Hydra turns a callback's exception into a warning and goes on (exit 0): each callback
    # catches its own and counts it as a failure of the sweep (one line, exit 1, from __main__,
    # which finds this object on its session).
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.failures: List[str] = []  # the sweep's failed jobs, or its parent's trouble
        self.parent = self.open_parent = None  # open_parent: until it is closed, for abort()
        if session.current() is not None:  # None in a test that calls the callback alone
            session.current().sweep = self
        try:
            self._open(config)
        except Exception as e:  # noqa: BLE001  the jobs still run, without a parent
            self.failures.append(f"the sweep's parent run: {first_line(e, 300)}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent is None:
            return  # no parent to summarise on: on_multirun_start said why
        try:
            self._summarise(config)
        except Exception as e:  # noqa: BLE001
            self.abort(e)
            self.failures.append(f"the sweep's summary on its parent run: {first_line(e, 300)}")

    def _open(self, config: DictConfig) -> None:
        uri = resolve_uri(config.tracking.uri, config.hydra.runtime.cwd)
        check_uri(uri)
        self.tracker = service.tracker()  # the jobs of the basic launcher share it
        overrides = list(config.hydra.overrides.task)
        self.space = space = swept(config)
        preset = OmegaConf.select(config, "hydra.runtime.choices.experiment")
        name = naming.parent_name(preset, overrides, space)
        self.parent = self.tracker.start_run(uri, config.experiment_name, name, {
            "runner.sweep": "true", "runner.sweep_overrides": masked(" ".join(overrides))})
        self.parent.log_params({naming.param_name(k): v for k, v in space.items()})
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.sweep_dir.glob(f"**/{RESULT_FILE}"):  # a reused sweep dir: not ours
            stale.unlink()
        # The only route to the jobs: every launcher (submitit on other hosts included) shares it.
        (self.sweep_dir / SWEPT_FILE).write_text(json.dumps(sorted(space)))
        from runner import preload  # the trainer's imports, the one call upward: see there

        swept_optims = [v.strip() for v in space.get("optim", "").split(",") if v.strip()]
        parent_id = preload.while_waiting(lambda: self.parent.id, str(config.engine),  # waits for the store
                                          swept_optims or [config.optim.name])
        (self.sweep_dir / PARENT_FILE).write_text(parent_id)
        self.open_parent = self.parent

    def _summarise(self, config: DictConfig) -> None:
        results = job_results(self.sweep_dir)
        done = [r for r in results if r["status"] in ("FINISHED", "SKIPPED")]
        failed = [r for r in results if r not in done]
        self.failures = [f"{r['name']}: {r.get('reason') or r['status']}" for r in failed]
        link = self._save_view()
        note = seed_note(self.space, over_seeds(done))
        tags = {"runner.jobs": len(results), "runner.failed_jobs": len(failed),
                "mlflow.note.content": describe(results, self.parent.experiment_id, " ".join(
                    config.hydra.overrides.task), link, note)}
        if failed:
            tags["runner.failed"] = "; ".join(self.failures)[:5000]
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
        self.open_parent = None
        print(f"sweep: {len(done)} of {len(results)} jobs ok"
              + (f", best {best['name']} final_loss={best['final_loss']:.6g} run {best['run_id']}"
                 if done else "") + f"; parent run {self.parent.id}; charts: {link}")
        if note:
            print(note)

    def _save_view(self) -> str:
        """A saved view of this sweep in MLflow's UI (its "Views" menu; an experiment tag): only
        its children, sorted by final_loss, the swept params and final_loss as columns, and
        charts of each swept param against final_loss. Returns a link that opens it."""
        key = f"sweep-{self.parent.id[:12]}"
        params = [naming.param_name(k) for k in sorted(self.space)]
        self.parent.set_experiment_tag(f"mlflow.sharedViewState.{key}",
                                       json.dumps(saved_view(self.parent.name, self.parent.id, params)))
        return links.runs_link(links.ui_base(self.parent.uri), self.parent.experiment_id, key, charts=True)

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

    def abort(self, error: BaseException) -> None:
        """Close the parent run that an error cut short (FAILED, or KILLED on Ctrl-C)."""
        parent, self.open_parent = self.open_parent, None
        if parent is not None:
            parent.end(error)
