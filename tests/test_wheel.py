"""The wheel: built from this checkout, installed (not editable) into a fresh venv, and run from
an empty folder, where only what the wheel carries (conf/, experiments/) can be found."""
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, all_runs, cli_env


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_runs_a_preset_from_an_empty_folder(tmp_path):
    # build from a copy: an in-tree build would write build/ into the checkout under other tests
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("runner", "conf", "experiments", "hydra_plugins"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", src)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    build = subprocess.run([*pip, "wheel", "-v", "--no-deps", "--no-index", "--no-build-isolation", "-w",
                            tmp_path / "dist", src], check=True, capture_output=True, text=True)
    [wheel] = (tmp_path / "dist").glob("runner-*.whl")
    # silent: no setuptools warning (a folder of data files missing from `packages`, ...)
    log = build.stdout + build.stderr
    assert "absent from the `packages`" not in log and "SetuptoolsDeprecationWarning" not in log, log[-3000:]
    # each preset and data file once: conf/experiment (a symlink to experiments/) is not mapped twice
    names = zipfile.ZipFile(wheel).namelist()
    presets = sorted(p.name for p in (ROOT / "experiments").glob("*.yaml"))
    data = sorted(p.name for p in (ROOT / "experiments" / "data").iterdir())
    assert sorted(Path(n).name for n in names if Path(n).name in presets) == presets
    assert sorted(Path(n).name for n in names if Path(n).name in data) == data
    assert f"runner/conf/experiment/{presets[0]}" in names and f"runner/experiments/data/{data[0]}" in names

    # a venv of its own; its dependencies (torch, mlflow, ...) are this venv's, through a .pth line,
    # so nothing is downloaded and no second torch is installed
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", fresh], check=True)
    python = fresh / "bin" / "python"
    subprocess.run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], check=True,
                   capture_output=True)
    fresh_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                check=True, capture_output=True, text=True).stdout.strip()
    (Path(fresh_site) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run([python, "-m", "runner", "experiment=gd_vs_sgd"], cwd=empty, env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    [run] = all_runs(f"sqlite:///{empty / 'mlflow.db'}")
    assert run.info.status == "FINISHED"
    # the preset's data came from the installed wheel, not from this checkout
    assert run.data.params["dataset.path"].startswith(fresh_site)
