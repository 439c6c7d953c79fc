"""Every preset, found by glob (a new one is covered without editing a test): it runs from the
CLI, and it sets only what it changes."""
import pytest
from omegaconf import OmegaConf

from conftest import ROOT, all_runs, cli_in_process, make_cfg

PRESETS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
# csv_linreg needs dataset.path (tests/test_readme.py runs it on the shipped CSV); mnist_mlp needs
# the MNIST files (tests/test_mnist.py makes some)
NEEDS_FILES = ["csv_linreg", "mnist_mlp"]


@pytest.mark.slow  # eleven presets through the CLI
def test_every_preset_runs_from_the_cli_by_glob(tmp_path, monkeypatch, capsys):
    """lightning-hydra-template's `experiment=glob(*)`: one sweep, a job per preset, 3 epochs each."""
    out = cli_in_process("-m", f"experiment=glob(*,exclude=[{','.join(NEEDS_FILES)}])", "epochs=3",
                         cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    n = len(PRESETS) - len(NEEDS_FILES)
    assert out.returncode == 0 and f"sweep: {n} of {n} jobs ok" in out.stdout, out.stderr[-2000:]
    runs = all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    jobs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(jobs) == n and all(r.info.status == "FINISHED" for r in jobs)
    assert sorted(r.data.params["epochs"] for r in jobs) == ["3"] * n


def _leaves(node, prefix=""):
    """(dotted key, value) of each value a preset sets, its defaults list and Hydra's settings aside."""
    for key, value in node.items():
        if key in ("defaults", "hydra"):
            continue
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_a_preset_sets_only_what_it_changes_or_says_why():
    """Each value a preset sets differs from what its groups give without it, unless its line
    says why it is restated (`# restated: ...`). A restated default reads as a change."""
    from omegaconf import OmegaConf

    found = []
    for preset in sorted((ROOT / "experiments").glob("*.yaml")):
        raw = OmegaConf.to_container(OmegaConf.load(preset))
        groups = [f"{g}={o}" for d in raw["defaults"] for g, o in d.items()]
        plain = make_cfg(*(o.replace("override /", "") for o in groups))
        text = preset.read_text()
        for key, value in _leaves(raw):
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(key.rsplit(".", 1)[-1] + ":"))
            if OmegaConf.select(plain, key) == value and "# restated:" not in line:
                found.append(f"{preset.name}: {key}: {value}")
    assert not found, found
