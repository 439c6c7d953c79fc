"""The files a sweep's processes share, the one route that every launcher (submitit on other
hosts included) offers: the parent run's id and the swept keys in the sweep dir, written by the
callback before any job starts; each job's result in its own dir, read back at the end."""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

PARENT_FILE = "mlflow_parent_run_id"  # in the sweep dir: how jobs on other hosts find the parent
SWEPT_FILE = "swept_keys.json"  # in the sweep dir: the keys that vary, which name each job
RESULT_FILE = "result.json"  # in each job's dir: what the parent summarises at the end


def read_sweep(sweep_dir: str) -> Tuple[Optional[str], List[str]]:
    """(parent run id, swept keys) from the files SweepCallback left in the sweep dir: the one
    place that the jobs of every launcher share."""
    path = Path(sweep_dir)
    if not path.is_absolute() and HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.cwd) / path  # the launch dir, even with job.chdir
    parent, keys = path / PARENT_FILE, path / SWEPT_FILE
    return (parent.read_text().strip() if parent.is_file() else None,
            json.loads(keys.read_text()) if keys.is_file() else [])


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


def write_result(job_dir: str, result: Dict[str, Any]) -> None:
    """Each job leaves its outcome in its own folder; the parent reads them all at the end."""
    path = Path(job_dir) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
