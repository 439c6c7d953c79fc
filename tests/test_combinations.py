"""Every option of every group with every other, on the CPU, a few epochs each."""
import itertools
import math

import pytest

from conftest import ROOT, client_for, make_cfg
from runner import train

DATASETS = {"csv": None, "synthetic_linear": ["dataset.n_samples=40"],
            "random_mlp": ["dataset.n_samples=16", "dataset.in_features=8", "dataset.out_features=3"]}
MODELS = ["line", "linear", "mlp"]
OPTIMS = ["gd", "sgd", "minibatch", "adam"]


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "three_columns.csv"
    rows = [f"{i / 10},{(i % 7) / 3},{0.5 * i / 10 - (i % 7) / 6 + 1}" for i in range(30)]
    path.write_text("a,b,target\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("dataset,model,optim", list(itertools.product(DATASETS, MODELS, OPTIMS)))
def test_every_combination_trains_and_logs(dataset, model, optim, csv_path, shared_store):
    extra = DATASETS[dataset] or [f"dataset.path={csv_path}"]
    cfg = make_cfg(f"dataset={dataset}", f"model={model}", f"optim={optim}", "device=cpu", "epochs=3",
                   "lr=0.001", f"tracking.uri={shared_store}", f"run_name={dataset}-{model}-{optim}", *extra)
    result = train.run(cfg)
    assert result.status == "FINISHED"
    assert [s for s, _ in result.curve] == [0, 1, 2, 3]
    assert all(math.isfinite(v) for _, v in result.curve)
    stored = client_for(shared_store).get_run(result.run_id)
    assert stored.info.status == "FINISHED" and stored.info.run_name == f"{dataset}-{model}-{optim}"
    assert len(client_for(shared_store).get_metric_history(result.run_id, "loss")) == 4


def test_every_preset_logs_to_an_experiment_named_after_it():
    """One rule for experiment names: the preset's file name (the lab's objectives: `lab`)."""
    for preset in sorted((ROOT / "experiments").glob("*.yaml")):
        cfg = make_cfg(f"experiment={preset.stem}")
        expected = "lab" if cfg.get("objective") else preset.stem  # the optimizer lab's presets share one
        assert cfg.experiment_name == expected, preset.name
