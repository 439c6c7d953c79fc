"""`make test-cluster`: the cluster path for real on this machine. scripts/local_cluster.sh brings
up munge, a one-node SLURM, PostgreSQL and `mlflow server` on it (its own folder and ports, apart
from a cluster started by hand); sweeps go through sbatch and log over HTTP; everything is read
back with MlflowClient; at the end `down` stops every daemon by PID. Not collected by `make test`
(pyproject's norecursedirs)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT, all_runs, client_for

SCRIPT = ROOT / "scripts" / "local_cluster.sh"
PORTS = {"MLFLOW_PORT": "5056", "PG_PORT": "5498", "SLURMCTLD_PORT": "6827", "SLURMD_PORT": "6828"}
# one CPU and 1 GB a job, two jobs at a time on this machine's CPUs; no GPU
SLURM = ("hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.launcher.array_parallelism=2", "device=cpu")
LONG = 1_000_000  # epochs: about 90 s of training, far longer than any fault needs


@pytest.fixture(scope="session")
def cluster():
    folder = tempfile.mkdtemp(prefix="runner-cluster-")  # not under pytest's root-only tmp:
    os.chmod(folder, 0o755)  # PostgreSQL runs as its own user and must reach its data folder
    env = {**os.environ, **PORTS, "CLUSTER_DIR": folder, "PYTHON": sys.executable}
    up = subprocess.run([str(SCRIPT), "up"], env=env, text=True, capture_output=True, timeout=400)
    blocked = None
    if up.returncode != 0 and any(d in up.stderr for d in ("munge", "slurmctld", "slurmd")):
        blocked = up.stderr.strip()  # the daemon's own log lines: why SLURM cannot run here
        up = subprocess.run([str(SCRIPT), "up", "--no-slurm"], env=env, text=True, capture_output=True,
                            timeout=400)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        again = subprocess.run([str(SCRIPT), "up"] + (["--no-slurm"] if blocked else []), env=env,
                               text=True, capture_output=True, timeout=60)
        assert again.returncode == 0 and "started" not in again.stdout, again.stdout  # harmless
        env["SLURM_CONF"] = f"{env['CLUSTER_DIR']}/slurm/slurm.conf"
        yield {"env": env, "uri": f"http://127.0.0.1:{PORTS['MLFLOW_PORT']}", "blocked": blocked,
               "dir": Path(env["CLUSTER_DIR"])}
    finally:
        down = subprocess.run([str(SCRIPT), "down"], env=env, text=True, capture_output=True, timeout=120)
        status = subprocess.run([str(SCRIPT), "status"], env=env, text=True, capture_output=True, timeout=60)
        assert down.returncode == 0, down.stderr
        assert "running:" not in status.stdout, status.stdout
        shutil.rmtree(folder)


@pytest.fixture
def slurm(cluster):
    if cluster["blocked"]:
        pytest.skip(f"SLURM cannot run here: {cluster['blocked'].splitlines()[0]}")
    return cluster


def sweep(cluster, cwd: Path, *args: str) -> subprocess.Popen:
    """`python -m runner -m ARGS` launched in the background, as a user's shell would."""
    env = {k: v for k, v in cluster["env"].items() if k not in ("MLFLOW_TRACKING_URI", "RUNNER_DEBUG")}
    return subprocess.Popen([sys.executable, "-m", "runner", "-m", *args,
                             f"tracking.uri={cluster['uri']}"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = 300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, "\n".join(ln for ln in err.splitlines()  # no accounting here
                                          if "sacct" not in ln and "accounting storage" not in ln)


def family(uri: str, experiment: str):
    """(parent, {job name: child}) of the one sweep in an experiment."""
    runs = all_runs(uri, experiment)
    [parent] = [r for r in runs if r.data.tags.get("runner.sweep") == "true"]
    kids = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(runs) == len(kids) + 1
    return parent, kids


def steps(uri: str, run) -> list:
    return sorted(m.step for m in client_for(uri).get_metric_history(run.info.run_id, "loss"))


def wait_logging(uri: str, experiment: str, jobs: int, timeout: float = 180):
    """Until `jobs` child runs of the sweep are RUNNING and have stored loss points (an event,
    polled, not a sleep in place of one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [r for r in all_runs(uri, experiment) if r.info.status == "RUNNING"
                   and r.data.tags.get("runner.sweep") != "true" and r.data.metrics.get("loss") is not None]
        if len(running) >= jobs:
            return running
        time.sleep(1)
    raise AssertionError(f"{jobs} job(s) of {experiment} never logged points")


def slurm_job_id(cwd: Path, num: int) -> str:
    """The SLURM id of the sweep's job `num` (submitit names its log folder after it)."""
    [folder] = [p for p in cwd.glob("multirun/*/*/.submitit/*") if p.name.endswith(f"_{num}")]
    return folder.name


def report(uri: str, experiment: str, seconds: float) -> None:
    """One line per run for the log of `make test-cluster`: what ran and how it ended."""
    parent, kids = family(uri, experiment)
    print(f"\n{experiment}: parent {parent.info.status} in {seconds:.0f} s; "
          f"failed: {parent.data.tags.get('runner.failed', '-')}")
    for name, run in sorted(kids.items()):
        print(f"  {name}: {run.info.status}, {len(steps(uri, run))} loss points")


def test_the_readme_sweep_runs_through_slurm_and_logs_every_point(slurm, tmp_path):
    epochs, log_every = 2000, 10
    start = time.monotonic()
    proc = sweep(slurm, tmp_path, *SLURM, "hydra.launcher.timeout_min=5", "experiment_name=cluster",
                 f"epochs={epochs}", f"log_every={log_every}", "lr=1e-4,1e-3,1e-2,1e-1")
    rc, out, err = finish(proc)
    assert rc == 0, err
    assert "sweep: 4 of 4 jobs ok" in out
    uri = slurm["uri"]
    parent, kids = family(uri, "cluster")
    report(uri, "cluster", time.monotonic() - start)
    assert len(kids) == 4 and parent.info.status == "FINISHED"
    assert sorted(r.data.params["lr"] for r in kids.values()) == ["0.0001", "0.001", "0.01", "0.1"]
    for run in kids.values():
        assert run.info.status == "FINISHED"
        assert steps(uri, run) == list(range(0, epochs + 1, log_every))
        assert "config.yaml" in [a.path for a in client_for(uri).list_artifacts(run.info.run_id)]
    # SLURM ran them: four array tasks, each job's log from sbatch's srun
    assert len(list(tmp_path.glob("multirun/*/*/.submitit/*_[0-3]/*_log.out"))) == 4
    # artifacts went through the server into the cluster's shared folder
    assert list(slurm["dir"].glob("artifacts/**/config.yaml"))
    # never more than two jobs at a time (array_parallelism=2): runs' lifetimes overlap at most pairwise
    spans = sorted((r.info.start_time, r.info.end_time) for r in kids.values())
    assert all(sum(s < end and start_ < e for s, e in spans) <= 2 for start_, end in spans)
    assert [r.info.run_name for r in all_runs(uri) if r.info.status == "RUNNING"] == []


@pytest.mark.parametrize("fault", ["scancel", "time limit"])
def test_a_cancelled_or_timed_out_job_ends_killed_and_the_others_finish(slurm, tmp_path, fault):
    experiment = "cluster_" + fault.replace(" ", "_")
    # job 0 trains far longer than the fault allows; job 1 finishes in seconds
    limit = ["hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=20"] if fault == "time limit" \
        else ["hydra.launcher.timeout_min=5"]
    start = time.monotonic()
    proc = sweep(slurm, tmp_path, *SLURM, *limit, f"experiment_name={experiment}", "log_every=1000",
                 f"epochs={LONG},20000")
    uri = slurm["uri"]
    if fault == "scancel":
        wait_logging(uri, experiment, 1)
        subprocess.run(["scancel", slurm_job_id(tmp_path, 0)], env=slurm["env"], check=True, timeout=30)
    rc, out, err = finish(proc)
    report(uri, experiment, time.monotonic() - start)
    assert rc == 1, err
    parent, kids = family(uri, experiment)
    long, short = kids[f"epochs={LONG}"], kids["epochs=20000"]  # a job is named by what its sweep varies
    assert long.info.status == "KILLED" and long.data.tags["runner.failure"] == "interrupted"
    kept = steps(uri, long)
    assert kept and kept == list(range(0, 1000 * len(kept), 1000))  # every point up to the kill
    assert len(kept) < LONG // 1000 + 1
    assert short.info.status == "FINISHED" and steps(uri, short) == list(range(0, 20001, 1000))
    assert parent.info.status == "FINISHED" and parent.data.tags["runner.failed_jobs"] == "1"
    assert "killed (scancel or the time limit)" in parent.data.tags["runner.failed"]
    assert f"epochs={LONG}" in err.splitlines()[-1] and "killed" in err.splitlines()[-1]
    assert [r.info.run_name for r in all_runs(uri) if r.info.status == "RUNNING"] == []


def test_jobs_ride_out_a_server_restart_without_losing_a_point(slurm, tmp_path):
    experiment, epochs = "cluster_restart", 300_000
    start = time.monotonic()
    proc = sweep(slurm, tmp_path, *SLURM, "hydra.launcher.timeout_min=5", f"experiment_name={experiment}",
                 "log_every=1000", f"epochs={epochs}", "lr=1e-3,1e-2")
    uri = slurm["uri"]
    wait_logging(uri, experiment, 2)
    restart = subprocess.run([str(SCRIPT), "restart-server"], env=slurm["env"], text=True,
                             capture_output=True, timeout=300)
    assert restart.returncode == 0, restart.stderr
    assert "stopped mlflow server" in restart.stdout and "mlflow server: started" in restart.stdout
    rc, out, err = finish(proc)
    report(uri, experiment, time.monotonic() - start)
    assert rc == 0, err
    parent, kids = family(uri, experiment)
    assert parent.info.status == "FINISHED" and len(kids) == 2
    for run in kids.values():
        assert run.info.status == "FINISHED"
        assert steps(uri, run) == list(range(0, epochs + 1, 1000))  # nothing lost, nothing twice


@pytest.mark.filterwarnings("ignore:LogUniformDistribution:FutureWarning")  # the plugin's, read back
def test_two_optuna_sweepers_share_one_study_in_postgresql(cluster, tmp_path):
    """One budget of TRIALS split over two sweeper processes started at once: hydra-optuna-sweeper's
    n_trials is per process (it asks that many whatever the study holds), so each gets half, and
    both ask and tell through the one study in PostgreSQL: one trial counter, each sampler seeing
    the other's results."""
    import optuna

    trials, processes = 6, 2
    storage = f"postgresql+psycopg2://mlflow:mlflow@127.0.0.1:{PORTS['PG_PORT']}/optuna"
    # the study first, as Optuna's distributed set-up does: no two processes then create the tables
    # of an empty database at the same moment
    create = subprocess.run([str(Path(sys.executable).parent / "optuna"), "create-study", "--storage",
                             storage, "--study-name", "shared", "--direction", "minimize",
                             "--skip-if-exists"],
                            text=True, capture_output=True, timeout=120)
    assert create.returncode == 0, create.stderr
    args = ("hparams_search=optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared",
            f"hydra.sweeper.n_trials={trials // processes}", "experiment_name=cluster_optuna",
            "dataset.n_samples=50", "epochs=50")
    start = time.monotonic()
    for i in range(processes):
        (tmp_path / str(i)).mkdir()
    procs = [sweep(cluster, tmp_path / str(i), *args) for i in range(processes)]  # all at once
    for proc in procs:
        rc, out, err = finish(proc)
        assert rc == 0, err
        assert f"sweep: {trials // processes} of {trials // processes} jobs ok" in out, (out[-300:], err[-3000:])
    study = optuna.load_study(study_name="shared", storage=storage)
    assert sorted(t.number for t in study.trials) == list(range(trials))  # one study: n in all, not 2n
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    # every trial is one child run in MLflow, its value that run's final_loss
    uri = cluster["uri"]
    runs = all_runs(uri, "cluster_optuna")
    parents = {r.info.run_id for r in runs if r.data.tags.get("runner.sweep") == "true"}
    kids = {(float(r.data.params["lr"]), r.data.params["optim.name"]): r for r in runs
            if r.info.run_id not in parents}
    assert len(parents) == processes and len(kids) == len(runs) - processes == trials
    print(f"\ncluster_optuna: {trials} trials from {processes} sweepers in {time.monotonic() - start:.0f} s")
    for t in sorted(study.trials, key=lambda t: t.number):
        run = kids[(t.params["lr"], t.params["optim"])]
        assert run.info.status == "FINISHED" and run.data.metrics["final_loss"] == pytest.approx(t.value)
        print(f"  trial {t.number}: {t.state.name}, value {t.value:.4g}, run {run.info.run_name} "
              f"under parent {run.data.tags['mlflow.parentRunId'][:8]}")
    assert all(sum(r.data.tags.get("mlflow.parentRunId") == p for r in runs) == trials // processes
               for p in parents)


@pytest.mark.filterwarnings("ignore:The specified dataset source")  # a name, not a file: fine
def test_a_run_logging_data_another_run_is_inserting_keeps_it(cluster):
    """MLflow's store looks a dataset up, then inserts it, so two runs of one experiment logging
    equal data at once collide on the insert (`dataset_pk`), as the two sweepers above do when their
    first trials start together. Made certain here: a transaction of ours holds that row uncommitted
    until the server's insert waits on it (pg_locks), then commits."""
    import threading

    import mlflow.data
    import numpy as np
    import psycopg2

    from runner.tracking.record import Run

    client = client_for(cluster["uri"])
    experiment = client.create_experiment("cluster_datasets")
    X, y = np.arange(6.0).reshape(3, 2), np.arange(3.0)
    digest = mlflow.data.from_numpy(X, targets=y, source="equal", name="equal").digest
    db = psycopg2.connect(host="127.0.0.1", port=PORTS["PG_PORT"], user="mlflow", password="mlflow",
                          dbname="mlflow")
    try:
        with db.cursor() as cur:  # the other run's insert, not yet committed
            cur.execute("insert into datasets (dataset_uuid, experiment_id, name, digest,"
                        " dataset_source_type, dataset_source)"
                        " values ('other', %s, 'equal', %s, 'code', '{}')",
                        (experiment, digest))
        run, errors = Run(client, cluster["uri"], experiment, "equal", {}), []
        thread = threading.Thread(target=lambda: _collect(errors, run.log_dataset, "equal", "equal", X, y))
        thread.start()
        deadline = time.monotonic() + 60
        while not _waiting_on_a_lock(cluster, "mlflow"):  # the server's insert is blocked on ours
            assert time.monotonic() < deadline and thread.is_alive(), errors
            time.sleep(0.1)
        db.commit()
        thread.join(timeout=60)
    finally:
        db.close()
    assert errors == []
    [logged] = client.get_run(run.id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest) == ("equal", digest)


def _collect(errors: list, fn, *args) -> None:
    try:
        fn(*args)
    except Exception as e:  # the test's thread reads it
        errors.append(e)


def _waiting_on_a_lock(cluster, dbname: str) -> bool:
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=PORTS["PG_PORT"], user="mlflow", password="mlflow",
                          dbname=dbname) as db, db.cursor() as cur:
        cur.execute("select count(*) from pg_locks l join pg_stat_activity a using (pid)"
                    " where not l.granted and a.datname = %s", (dbname,))
        return cur.fetchone()[0] > 0
