"""Sweeps for real: `python -m runner -m ...` in a subprocess (basic, joblib, submitit_local and
Optuna), read back from the store with MlflowClient. Plus the GPU assignment and the SLURM preset,
which need neither a GPU nor a cluster."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from conftest import ROOT, all_runs, cli, client_for

pytestmark = pytest.mark.slow  # sweeps through the CLI in subprocesses, every launcher: make test-slow (README)
from runner import devices
from runner.config import UserError

TINY = ("dataset.n_samples=50", "epochs=5")  # a job trains in milliseconds; imports dominate
GD_VS_SGD_CSV = ROOT / "experiments" / "data" / "gd_vs_sgd.csv"


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def sweep_runs(uri: str, experiment: str = "runner"):
    """(parent, children) of the one sweep in this experiment."""
    runs = all_runs(uri, experiment)
    parents = [r for r in runs if r.data.tags.get("runner.sweep") == "true"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


def sweep_dirs(cwd: Path):
    return sorted(p.parent for p in (cwd / "multirun").glob("*/*/mlflow_parent_run_id"))


def assert_nothing_running(uri: str):
    assert [r.info.run_name for r in all_runs(uri) if r.info.status == "RUNNING"] == []


def test_sweep_records_parent_children_best_and_overlay_and_compare_shows_it(tmp_path):
    proc = cli("-m", "lr=1e-3,1e-2", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    uri = sqlite_uri(tmp_path)
    parent, children = sweep_runs(uri)
    assert len(children) == 2
    assert {r.data.params["lr"] for r in children} == {"0.001", "0.01"}
    assert all(r.info.status == "FINISHED" for r in [parent, *children])
    assert parent.info.run_name.startswith("sweep ") and "lr=1e-3,1e-2" in parent.info.run_name
    assert "lr=1e-3,1e-2" in parent.data.tags["runner.sweep_overrides"]
    best = min(children, key=lambda r: r.data.metrics["final_loss"])
    assert parent.data.tags["runner.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_final_loss"] == best.data.metrics["final_loss"]
    artifacts = [a.path for a in client_for(uri).list_artifacts(parent.info.run_id)]
    assert "sweep_loss_curves.png" in artifacts
    assert f"parent run {parent.info.run_id}" in proc.stdout

    # python -m runner.compare: the latest sweep by default, only the params that differ
    compare = cli_compare("--out", "curves.png", cwd=tmp_path)
    assert compare.returncode == 0, compare.stderr
    header = [line for line in compare.stdout.splitlines() if "final_loss" in line][0].split()
    assert header[:2] == ["lr", "status"] and "train_seconds" in header
    assert "epochs" not in header and "optim.name" not in header  # the same in every run
    assert parent.info.run_id in compare.stdout and best.info.run_id in compare.stdout
    rows = [line.split() for line in compare.stdout.splitlines() if line.endswith(tuple(
        r.info.run_id for r in children))]
    assert rows[0][-1] == best.info.run_id  # sorted by final_loss, the best first
    assert (tmp_path / "curves.png").stat().st_size > 1000


def cli_compare(*args: str, cwd: Path):
    """Run `python -m runner.compare ARGS` for real, in `cwd`, with MLFLOW_TRACKING_URI unset."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "runner.compare", *args], cwd=cwd, env=env,
                          text=True, capture_output=True, timeout=120)


def test_compare_without_a_store_or_a_sweep_is_one_line_and_exit_2(tmp_path):
    proc = cli_compare(cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no MLflow store" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # reading never creates a store


@pytest.mark.parametrize("launcher", ["hydra/launcher=joblib hydra.launcher.n_jobs=4",
                                      "hydra/launcher=warm hydra.launcher.n_jobs=2"], ids=["joblib", "warm"])
def test_parallel_jobs_on_a_fresh_store_keep_every_run_and_point(tmp_path, launcher):
    epochs, log_every = 20, 2
    assert not (tmp_path / "mlflow.db").exists()
    proc = cli("-m", *launcher.split(), "experiment=gd_vs_sgd",
               "optim=gd,sgd,minibatch,adam", f"epochs={epochs}", f"log_every={log_every}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "4 of 4 jobs ok" in proc.stdout
    uri = sqlite_uri(tmp_path)
    parent, children = sweep_runs(uri, "gd_vs_sgd")
    assert sorted(r.data.params["optim.name"] for r in children) == ["adam", "gd", "minibatch", "sgd"]
    assert all(r.info.status == "FINISHED" for r in [parent, *children])
    client = client_for(uri)
    points = epochs // log_every + 1
    for run in children:
        for key in ("loss", "w", "b"):  # a line: w and b at every point too
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(0, epochs + 1, log_every)), (run.info.run_name, key)
        assert len(client.get_metric_history(run.info.run_id, "final_loss")) == 1
    total = sum(len(client.get_metric_history(r.info.run_id, k)) for r in children
                for k in ("loss", "w", "b"))
    assert total == 4 * 3 * points


def test_submitit_local_jobs_find_the_parent_through_the_sweep_dir(tmp_path):
    proc = cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=3",
               "lr=1e-3,1e-2", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    uri = sqlite_uri(tmp_path)
    parent, children = sweep_runs(uri)
    [sweep_dir] = sweep_dirs(tmp_path)
    # the file is the parent id's only route: the jobs ran in processes submitit started from
    # pickles in the sweep dir, and nothing passes the id through the environment
    assert (sweep_dir / "mlflow_parent_run_id").read_text().strip() == parent.info.run_id
    assert len(list(sweep_dir.glob(".submitit/*/*_submitted.pkl"))) == 2
    assert len(children) == 2
    assert all(r.info.status == "FINISHED" for r in [parent, *children])
    best = min(children, key=lambda r: r.data.metrics["final_loss"])
    assert parent.data.tags["runner.best_run_id"] == best.info.run_id


def test_optuna_search_goes_on_after_a_diverged_trial(tmp_path):
    # lr 1e6 diverges with gd (a FAILED trial) but not with adam; the optimizer is a config group
    proc = cli("-m", "hparams_search=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.seed=0",
               "lr=choice(1e-2,1e6)", *TINY, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # some jobs failed
    uri = sqlite_uri(tmp_path)
    parent, children = sweep_runs(uri)
    assert len(children) == 4  # the study went on after the failure
    failed = [r for r in children if r.info.status == "FAILED"]
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert failed and finished and len(failed) + len(finished) == 4
    assert all(r.data.tags["runner.failure"] == "diverged" for r in failed)
    assert len({r.data.params["optim.name"] for r in children}) >= 2  # the group was searched
    assert all(r.info.run_name in parent.data.tags["runner.failed"] for r in failed)
    [sweep_dir] = sweep_dirs(tmp_path)
    study = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best = min(r.data.metrics["final_loss"] for r in finished)
    assert study["best_value"] == pytest.approx(best)
    assert parent.data.metrics["best_final_loss"] == pytest.approx(best)
    assert_nothing_running(uri)


def test_failed_jobs_do_not_stop_the_sweep_and_resume_skips_the_finished(tmp_path):
    missing = tmp_path / "missing.csv"  # bad input that only shows once the job runs
    args = ["-m", "experiment=gd_vs_sgd", "epochs=5", "lr=1e-2,2e-2",
            f"dataset.path={GD_VS_SGD_CSV},{missing}"]
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 1
    assert "2 job(s) failed" in proc.stderr and "missing.csv" in proc.stderr
    uri = sqlite_uri(tmp_path)
    parent, children = sweep_runs(uri, "gd_vs_sgd")
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert len(finished) == 2 and all(r.data.params["dataset.path"] == str(GD_VS_SGD_CSV) for r in finished)
    assert all(r.info.status == "FAILED" for r in children if r not in finished)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["runner.jobs"] == "4" and parent.data.tags["runner.failed_jobs"] == "2"
    assert parent.data.tags["runner.failed"].count("missing.csv") >= 2
    assert parent.data.tags["runner.best_run_id"] in {r.info.run_id for r in finished}
    assert_nothing_running(uri)

    # the same sweep again with resume=true: the FINISHED configs are skipped, the failed rerun
    again = cli(*args, "resume=true", cwd=tmp_path)
    assert again.returncode == 1, again.stderr
    assert again.stdout.count("skipped:") == 2 and "2 job(s) failed" in again.stderr
    runs = all_runs(uri, "gd_vs_sgd")
    assert sorted(r.info.run_id for r in runs if r.info.status == "FINISHED"
                  and "runner.config_hash" in r.data.tags) == sorted(r.info.run_id for r in finished)
    resumed = [r for r in runs if r.data.tags.get("runner.sweep") == "true"
               and r.info.run_id != parent.info.run_id]
    assert len(resumed) == 1
    assert set(resumed[0].data.tags["runner.reused_run_ids"].split(",")) == {r.info.run_id for r in finished}
    assert resumed[0].data.tags["runner.best_run_id"] == parent.data.tags["runner.best_run_id"]
    assert_nothing_running(uri)


def test_a_job_killed_before_it_wrote_its_result_counts_as_failed(tmp_path):
    """A job dir that Hydra set up but that holds no result.json (out of memory, a cluster time
    limit) is a failed job in the parent's summary, not a missing one."""
    from runner.tracking import job_files as sweep

    for num, overrides in ((0, ["lr=0.1"]), (1, ["lr=0.2"]), (10, ["lr=0.3"])):
        (tmp_path / str(num) / ".hydra").mkdir(parents=True)
        (tmp_path / str(num) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    sweep.write_result(str(tmp_path / "0"), {"status": "FINISHED", "name": "lr=0.1", "final_loss": 1.0,
                                                "run_id": "r0", "curve": [[0, 2.0], [1, 1.0]]})
    sweep.write_result(str(tmp_path / "10"), {"status": "FAILED", "name": "lr=0.3", "reason": "diverged"})
    results = sweep.job_results(tmp_path)
    assert [(r["name"], r["status"]) for r in results] == [("lr=0.1", "FINISHED"), ("lr=0.2", "LOST"),
                                                            ("lr=0.3", "FAILED")]
    assert "killed or crashed" in results[1]["reason"]


# ---- without a GPU or a cluster ----------------------------------------------------------------
@pytest.mark.parametrize("index, job_num, count, expected", [
    (None, None, 4, 0), (None, 0, 4, 0), (None, 1, 4, 1), (None, 5, 4, 1), (None, 7, 2, 1),
    (None, 3, 1, 0), (2, 5, 4, 2), (0, 3, 4, 0), (3, None, 4, 3)])
def test_gpu_index_spreads_jobs_one_per_gpu_unless_an_index_is_given(index, job_num, count, expected):
    assert devices.gpu_index(index, job_num, count) == expected


def test_gpu_index_out_of_range_is_a_user_error():
    with pytest.raises(UserError, match="device.index=4"):
        devices.gpu_index(4, 0, 4)


def test_cuda_jobs_of_a_sweep_spread_over_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [devices.resolve("cuda", None, n).index for n in range(5)] == [0, 1, 2, 0, 1]
    assert devices.resolve("cuda", 2, 0) == torch.device("cuda", 2)
    assert devices.resolve("auto", None, 4) == torch.device("cuda", 1)
    assert devices.resolve("cuda", None, None) == torch.device("cuda", 0)  # a single run


def hydra_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_optuna_preset_searches_lr_on_a_log_scale_and_the_optimizer():
    sweeper = hydra_cfg("hparams_search=optuna").hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert sweeper.params.lr == "tag(log, interval(1e-5, 1e-1))"
    assert sweeper.params.optim == "choice(gd, sgd, minibatch, adam)"
    assert sweeper.max_failure_rate == 1.0 and sweeper.n_trials == 20


def test_slurm_preset_gives_sbatch_its_partition_time_and_gpus(tmp_path, monkeypatch):
    """The documented preset, turned into an sbatch script the way Hydra's SlurmLauncher does
    (submitit only wants an `srun` on the PATH to build it)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    launcher = hydra_cfg("hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                         "hydra.launcher.timeout_min=30", "hydra.launcher.gpus_per_node=2").hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    params = OmegaConf.to_container(launcher, resolve=False)
    del params["_target_"], params["submitit_folder"]
    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    executor = submitit.AutoExecutor(cluster="slurm", folder=str(tmp_path / "%j"),
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()
                                  if k != "name"})
    script = executor._executor._make_submission_file_text("python -m runner", "0")
    for flag in ("--partition=gpu", "--time=30", "--gpus-per-node=2", "--cpus-per-task=4"):
        assert f"#SBATCH {flag}" in script, script
