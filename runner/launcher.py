"""The warm launcher's work (`hydra/launcher=warm`): a parallel sweep whose workers start warm.

Hydra's joblib launcher starts each worker as a fresh interpreter (loky) that imports torch, the
runner and, through its own tracking process, mlflow: on 2 cores that cost more than the second
core gave (issue 23: 1.32x slower than the basic launcher). Here the sweep's process imports
torch and the trainer once, then forks its workers (Linux; copy-on-write, so they start in
milliseconds). The sweep's own tracking process, mlflow imported and the store open, records
every job: each worker gets its own pipe to it before the fork. Jobs go to whichever worker is
free, one at a time.

The guarantees are the CLI's: the store exists before the fan-out (the sweep callback made the
parent run); a worker dies with the sweep's process (PR_SET_PDEATHSIG), and the tracking process
then closes its run KILLED (`process_died`) with every point it received, when that worker's
pipe closes; Ctrl-C or SIGTERM closes every running job KILLED before the sweep exits 130/143;
each job keeps its job number, so device.index spreads jobs over several GPUs.
"""
import multiprocessing
import os
import signal
import sys
from multiprocessing.connection import wait
from typing import Any, List, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, run_job, setup_globals
from omegaconf import open_dict

from runner.errors import Terminated, UserError
from runner.tracking import service


def workers(n_jobs: Any, jobs: int) -> int:
    """How many workers: `auto` is one per usable core, never more than there are jobs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if n_jobs == "auto":
        return max(1, min(cores, jobs))
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs < 1:
        raise UserError(f"hydra.launcher.n_jobs={n_jobs!r}: must be auto or an integer >= 1")
    return min(n_jobs, jobs)


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
    setup_globals()
    jobs = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
    n = workers(launcher.n_jobs, len(jobs))
    if n == 1 or sys.platform != "linux":  # nothing to share out (one core or one job), or no fork
        print(f"launcher=warm: {len(jobs)} job(s) one after another in this process (1 worker)",
              file=sys.stderr, flush=True)
        return [_execute(launcher, idx, overrides) for idx, overrides in jobs]
    services = service.for_workers(n)  # pipes to the sweep's own tracking process, one a worker
    _preload()
    try:
        return _fan_out(launcher, jobs, services)
    finally:  # the runs of workers stopped by a signal or a kill are closed KILLED, then we go on
        service.get().settle()


def _preload() -> None:
    """What every job imports, once, before the fork: torch (~0.9 s), torch._dynamo (which the
    first torch.optim optimizer imports, ~0.8 s) and the trainer with its plots."""
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401
    import torch.optim  # noqa: F401

    from runner import data, devices, models, optim, plots, train  # noqa: F401


def _fan_out(launcher, jobs: list, services: list) -> List[JobReturn]:
    ctx = multiprocessing.get_context("fork")
    todo, done = ctx.SimpleQueue(), ctx.SimpleQueue()
    for job in jobs:
        todo.put(job)
    for _ in services:
        todo.put(None)  # one stop sign a worker
    threads = max(1, len(os.sched_getaffinity(0)) // len(services))
    procs = [ctx.Process(target=_worker, args=(launcher, todo, done, threads, s, services), daemon=False)
             for s in services]
    for p in procs:
        p.start()
    service.close_copies(services)  # the workers hold them now: a worker's death must close its pipe
    results: dict = {}
    try:
        _collect(procs, done, results, len(jobs))
    except KeyboardInterrupt as e:
        _stop(procs, signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT, grace=10)
        raise
    except BaseException:  # a worker died: the others' running jobs end KILLED, not later
        _stop(procs, signal.SIGTERM, grace=0)
        raise
    return [results[idx] for idx, _ in jobs]


def _collect(procs, done, results: dict, count: int) -> None:
    """Results as workers send them; a worker that dies (kill -9, out of memory) fails the sweep."""
    while len(results) < count:
        live = [p for p in procs if p.is_alive()]
        # SimpleQueue: its write lock keeps two workers' pickles from interleaving on the pipe;
        # its reader Connection (no public name) is what wait() takes beside the sentinels
        ready = wait([done._reader, *(p.sentinel for p in live)])
        if done._reader in ready:
            kind, idx, value = done.get()
            if kind == "interrupted":
                raise KeyboardInterrupt()
            results[idx] = value
        elif done.empty() and (any(p.exitcode not in (None, 0) for p in procs)
                               or not any(p.is_alive() for p in procs)):
            code = next((p.exitcode for p in procs if p.exitcode not in (None, 0)), 0)
            raise RuntimeError(f"launcher=warm: a worker died (exit code {code}) with {count - len(results)} "
                               "job(s) left; a run it had open is closed KILLED by its tracking process")


def _stop(procs, sig: int, grace: float) -> None:
    """Ctrl-C reaches every worker with the terminal's process group; SIGTERM (kill, scancel) may
    reach this process alone: hand it on. Then wait while each worker closes its run KILLED."""
    for handler in (signal.SIGINT, signal.SIGTERM):
        signal.signal(handler, signal.SIG_IGN)  # a second signal must not cut the wait short
    for p in procs:
        p.join(timeout=grace)  # workers the signal reached end by themselves
        if p.is_alive():
            os.kill(p.pid, sig)
            p.join(timeout=60)
        if p.is_alive():  # the tracking process still closes its run, KILLED, process_died
            p.kill()
            p.join()


def _worker(launcher, todo, done, threads: int, own, services: list) -> None:
    _die_with_parent()
    import torch

    torch.set_num_threads(threads)  # two workers on two cores: one thread each
    service.adopt(own, services)  # its pipe to the sweep's tracking process, for every job
    while (job := todo.get()) is not None:
        idx, overrides = job
        try:
            ret = _execute(launcher, idx, overrides)
        except KeyboardInterrupt:  # the run is closed KILLED already (train.run); tell, and stop
            done.put(("interrupted", idx, None))
            break
        done.put(("done", idx, ret))
    service.release()
    sys.stdout.flush()
    os._exit(0)  # forked: the sweep process's atexit handlers are not this worker's to run


def _execute(launcher, idx: int, overrides: List[str]) -> JobReturn:
    """One job, as Hydra's own launchers run it (hydra_joblib_launcher._core.execute_job)."""
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=launcher.hydra_context, config=sweep_config, task_function=launcher.task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: the kernel sends SIGKILL when the sweep's process dies, even by kill -9."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # it died before the prctl
        os._exit(1)

# ---- hydra/launcher=joblib: Ctrl-C or SIGTERM must not lose the runs ----------------------------
# loky (joblib's backend) stops its workers on Ctrl-C, SIGTERM or an error by SIGKILL of each
# worker *and all its descendants*, the worker's tracking process included, which alone could
# close the job's run: the run stayed RUNNING (issue 21). The tracking process lives in its own
# session (service.Service starts it so); sparing the descendants in another session lets each
# see its trainer's pipe close and end the run KILLED (`runner.failure=process_died`) with every
# point handed over, as after a kill -9 of a single run; the sweep waits for them.
TRACKING_WAIT_SECONDS = 120  # a tracking process closing a run on a slow server; then we go on


def spare_tracking_processes() -> None:
    """Make loky's kill of a worker tree leave the tracking processes (another session) alive,
    and wait for them to close their runs. Private loky API (joblib pinned): if it moved, the
    old behaviour stays and test_launcher says so."""
    try:
        import psutil  # noqa: F401  the tree is read as loky reads it
        from joblib.externals.loky import process_executor
    except ImportError:
        return
    original = process_executor.kill_process_tree
    if getattr(original, "runner_spares", False):
        return

    def kill_process_tree(process, use_psutil=True):
        import psutil

        try:
            tree = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        session = os.getsid(0)
        keep = [p for p in tree if _sid(p.pid) not in (session, None)]
        for p in reversed([p for p in tree if p not in keep]):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            psutil.Process(process.pid).kill()
        except psutil.NoSuchProcess:
            pass
        process.join()
        psutil.wait_procs(keep, timeout=TRACKING_WAIT_SECONDS)  # they close the runs, then exit

    kill_process_tree.runner_spares = True
    process_executor.kill_process_tree = kill_process_tree


def _sid(pid: int):
    try:
        return os.getsid(pid)
    except OSError:
        return None


def guard_joblib(argv) -> None:
    """The CLI's start: the loky guard when the command line picks the joblib launcher."""
    if any(a.split("=", 1)[0].lstrip("+~") == "hydra/launcher" and a.endswith("=joblib") for a in argv):
        spare_tracking_processes()
