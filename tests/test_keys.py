"""A key no schema has is refused, also with Hydra's `+`: one line naming it and the closest
known key, exit 2, nothing left behind; every preset and group option passes the same check."""
import pytest

from conftest import ROOT, cli_in_process, make_cfg
from runner import keys


@pytest.mark.parametrize("args,expected", [
    (["+lrr=0.1"], "error: lrr: unknown key; did you mean lr?"),
    (["optim=sgd", "+optim.momentumm=0.9"], "error: optim.momentumm: unknown key; did you mean optim.momentum?"),
    (["+optim.momentum=0.9"], "error: optim.momentum: unknown key here; it applies to optim=sgd, minibatch"),
    (["+model.hiden=3"], "error: model.hiden: unknown key; did you mean model.hidden (model=mlp)?"),
    (["+newgroup.x=1"], "error: newgroup: unknown key"),
])
def test_an_unknown_key_with_plus_is_one_line_and_exit_2(args, expected, tmp_path, monkeypatch, capsys):
    out = cli_in_process(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert out.stdout.strip() == ""
    assert not (tmp_path / "mlflow.db").exists()  # nothing left behind


def test_hydra_keys_are_hydras_business(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RUNNER_H20", "0")  # hydra.job.env_set sets it in this process: restored after
    out = cli_in_process("+hydra.job.env_set.RUNNER_H20=1", "epochs=2", f"tracking.uri=sqlite:///{tmp_path}/m.db",
                         cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert out.returncode == 0, out.stderr


def test_every_preset_and_option_has_only_known_keys():
    for preset in sorted((ROOT / "experiments").glob("*.yaml")):
        keys.check_known(make_cfg(f"experiment={preset.stem}", "dataset.path=x.csv")
                         if preset.stem == "csv_linreg" else make_cfg(f"experiment={preset.stem}"))
    for group in ("dataset", "model", "optim", "device"):
        for option in (ROOT / "conf" / group).glob("*.yaml"):
            keys.check_known(make_cfg(f"{group}={option.stem}"))

