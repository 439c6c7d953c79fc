"""Where printed links point, and the names and params shaped for MLflow's UI (no server)."""
from runner.tracking import links
from runner.naming import SWEPT_PREFIX, parent_name, swept_params
from runner.tracking.report import seed_note


def test_the_ui_address_comes_from_env_then_server_then_make_ui_s_file_then_5000(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_UI_URL", raising=False)
    sqlite = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert links.ui_base(sqlite) == "http://127.0.0.1:5000"
    (tmp_path / links.UI_URL_FILE).write_text("http://127.0.0.1:5077\n")  # what make ui PORT=5077 writes
    assert links.ui_base(sqlite) == "http://127.0.0.1:5077"
    assert links.ui_base("http://bob:pw@10.0.0.2:8080/") == "http://10.0.0.2:8080"
    monkeypatch.setenv("MLFLOW_UI_URL", "http://ui.example:9000/")
    assert links.ui_base(sqlite) == links.ui_base("http://10.0.0.2:8080") == "http://ui.example:9000"
    link = links.runs_link("http://h:1", "3", "sweep-ab", charts=True)
    assert link == ("http://h:1/#/experiments/3/runs?workflowType=machine_learning"
                    "&viewStateShareKey=sweep-ab&compareRunsMode=CHART")


def test_two_sweeps_of_one_preset_differ_in_the_first_characters_of_their_names():
    a = parent_name("gd_vs_sgd", ["experiment=gd_vs_sgd", "optim=gd,sgd,minibatch,adam"],
                    {"optim": "gd,sgd,minibatch,adam"})
    b = parent_name("gd_vs_sgd", ["experiment=gd_vs_sgd", "seed=0,1,2", "optim=gd,adam", "epochs=5"],
                    {"seed": "0,1,2", "optim": "gd,adam"})
    assert a == "sweep optim=gd,sgd,minibatch,adam (gd_vs_sgd)"
    assert b == "sweep seed=0,1,2 optim=gd,adam epochs=5 (gd_vs_sgd)"
    assert a[:12] != b[:12]


def test_swept_values_are_repeated_under_a_name_that_sorts_before_every_param():
    flat = {"optim.name": "adam", "optim.betas": "[0.9, 0.99]", "seed": 1, "lr": 0.01}
    extra = swept_params(flat, ["optim", "seed"])
    assert extra == {f"{SWEPT_PREFIX}optim.name": "adam", f"{SWEPT_PREFIX}seed": 1}
    assert sorted([*flat, *extra])[:2] == sorted(extra)  # as Compare sorts (JS: code units)


def test_a_seed_sweep_that_changes_nothing_says_so_and_one_that_does_not():
    space = {"seed": "0,1,2", "optim": "gd,adam"}
    assert seed_note(space, {"optim:gd": (0.1, 0.0, 3), "optim:adam": (3.0, 0.0, 3)}).startswith(
        "note: the seed changes nothing here")
    assert seed_note(space, {"optim:gd": (0.1, 0.02, 3)}) is None
    assert seed_note({"lr": "1,2"}, {}) is None
