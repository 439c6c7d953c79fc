"""Instruments for learning: gradient check, closed-form optimum, numpy engine, classification."""
import numpy as np
import pytest
import torch

from conftest import client_for, make_cfg
from runner import models, numpy_engine, optim, train
from runner.config import UserError


def history(uri, run_id, key):
    return [(m.step, m.value) for m in sorted(client_for(uri).get_metric_history(run_id, key),
                                               key=lambda m: m.step)]


@pytest.mark.parametrize("model,loss,extra", [
    ("line", "mse", []), ("line", "half_mse", ["dataset.n_samples=30"]), ("linear", "sse", []),
    ("mlp", "mse", ["model.hidden=8"]), ("mlp", "cross_entropy", ["dataset=digits", "model.hidden=8"]),
    ("mlp", "mse", ["model.hidden=[8,6]", "model.activation=tanh"]),
    ("mlp", "cross_entropy", ["dataset=digits", "model.hidden=[8,6,5]", "model.activation=sigmoid"]),
    ("line", "cross_entropy", ["dataset=digits"])])
def test_check_grad_logs_a_tiny_difference_first_and_last(model, loss, extra, shared_store):
    result = train.run(make_cfg(f"model={model}", f"loss={loss}", "epochs=3", "check_grad=true",
                                "dtype=float32", f"tracking.uri={shared_store}", *extra))
    points = history(shared_store, result.run_id, "grad_check_max_rel_diff")
    assert [s for s, _ in points] == [0, 3]
    assert all(v < 1e-12 for _, v in points), points  # float64 hand vs autograd


def test_check_grad_fails_the_run_when_the_hand_gradient_is_wrong(monkeypatch, shared_store):
    right = models.Line.gradients
    monkeypatch.setattr(models.Line, "gradients",
                        lambda self, X, y, loss: [g * 1.01 for g in right(self, X, y, loss)])
    with pytest.raises(UserError, match="check_grad"):
        train.run(make_cfg("experiment=gd_vs_sgd", "check_grad=true", f"tracking.uri={shared_store}",
                           "run_name=wrong-grad"))
    [run] = client_for(shared_store).search_runs(
        [client_for(shared_store).get_experiment_by_name("gd_vs_sgd").experiment_id],
        "attributes.run_name = 'wrong-grad'")
    assert run.info.status == "FAILED"
    assert run.data.metrics["grad_check_max_rel_diff"] == pytest.approx(0.01, rel=1e-6)


@pytest.mark.parametrize("model,bias", [("line", True), ("linear", True), ("line", False)])
def test_optimal_loss_matches_numpy_lstsq_and_gap_is_loss_minus_it(model, bias, shared_store):
    result = train.run(make_cfg(f"model={model}", f"model.bias={str(bias).lower()}", "dtype=float64",
                                "dataset.n_samples=200", "dataset.noise=0.5", "epochs=50", "lr=0.05",
                                f"tracking.uri={shared_store}"))
    from runner import data

    d = data.build(make_cfg("dataset.n_samples=200", "dataset.noise=0.5"), 0)
    A = np.hstack([d.X, np.ones((len(d.X), 1))]) if bias else d.X
    coef = np.linalg.lstsq(A, d.y, rcond=None)[0]
    expected = float(((A @ coef - d.y) ** 2).mean())
    [(step, optimal)] = history(shared_store, result.run_id, "optimal_loss")
    assert step == 0 and optimal == pytest.approx(expected, rel=1e-10)
    losses = dict(history(shared_store, result.run_id, "loss"))
    gaps = history(shared_store, result.run_id, "gap")
    assert [s for s, _ in gaps] == sorted(losses)
    for s, g in gaps:
        assert g == pytest.approx(losses[s] - expected, rel=1e-9, abs=1e-12)
        assert g >= -1e-12  # nothing beats the least-squares optimum
    assert result.extra["gap"] == gaps[-1][1]


@pytest.mark.parametrize("preset", ["gd_vs_sgd", "csv_linreg"])
def test_numpy_engine_matches_torch_step_for_step_on_the_line(preset, shared_store, tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n" + "".join(f"{i / 7},{2.5 * i / 7 - 1 + (i % 3) / 10}\n" for i in range(40)))
    extra = [f"dataset.path={csv}", "epochs=200"] if preset == "csv_linreg" else []
    runs = {e: train.run(make_cfg(f"experiment={preset}", f"engine={e}", "log_every=1",
                                  f"tracking.uri={shared_store}", *extra)) for e in ("torch", "numpy")}
    for key in ("loss", "w", "b"):
        t, n = (history(shared_store, runs[e].run_id, key) for e in ("torch", "numpy"))
        assert [s for s, _ in t] == [s for s, _ in n] and len(t) > 100
        for (_, a), (_, b) in zip(t, n):
            assert b == pytest.approx(a, rel=1e-10, abs=1e-300), key


def test_numpy_two_layer_network_matches_torch_from_the_same_weights():
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((64, 50)), rng.standard_normal((64, 10))
    p = {"w1": rng.standard_normal((50, 20)), "w2": rng.standard_normal((20, 10))}
    net = torch.nn.Sequential(torch.nn.Linear(50, 20, bias=False), torch.nn.ReLU(),
                              torch.nn.Linear(20, 10, bias=False)).double()
    with torch.no_grad():  # torch stores Linear weights transposed: (out, in)
        net[0].weight.copy_(torch.from_numpy(p["w1"].T))
        net[2].weight.copy_(torch.from_numpy(p["w2"].T))
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    gd = optim.GradientDescent(list(net.parameters()), lr=1e-5)
    torch_losses = [models.loss_value("sse", net(Xt), yt).item()]
    for _ in range(100):
        models.Net(net).fill_gradients("sse", Xt, yt)
        gd.step()
        torch_losses.append(models.loss_value("sse", net(Xt), yt).item())
    curve = numpy_engine.train_loop(p, X, y, "sse", lr=1e-5, epochs=100)
    assert torch_losses[-1] < torch_losses[0] / 10  # it really trained
    for (_, a), b in zip(curve, torch_losses):
        assert a == pytest.approx(b, rel=1e-10)
    np.testing.assert_allclose(p["w1"], net[0].weight.detach().numpy().T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(p["w2"], net[2].weight.detach().numpy().T, rtol=1e-10, atol=1e-12)


def test_hidden_is_an_int_or_a_list_and_builds_that_network():
    from runner.config import hidden_sizes

    assert hidden_sizes(100) == (100,) and hidden_sizes([200, 200]) == (200, 200)
    for bad in (0, -1, 2.5, True, "abc", [], [0], [200, "abc"], None):
        with pytest.raises(UserError, match="model.hidden="):
            hidden_sizes(bad)
    one = models.build(make_cfg("model=mlp", "model.hidden=7").model, 5, 3, torch.float64, torch.device("cpu")).module
    assert [type(m).__name__ for m in one] == ["Linear", "ReLU", "Linear"]  # as before lists existed
    deep = models.build(make_cfg("experiment=mnist_mlp", "model.activation=tanh").model, 784, 10, torch.float32,
                        torch.device("cpu")).module
    assert [type(m).__name__ for m in deep] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert [(m.in_features, m.out_features) for m in deep[::2]] == [(784, 200), (200, 200), (200, 10)]


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_numpy_deep_network_matches_torch_from_the_same_weights(activation):
    """Three hidden layers: the numpy engine's forward, backprop and update against torch's
    autograd and SGD, step for step, in float64."""
    cfg = make_cfg("model=mlp", "model.hidden=[12,9,7]", f"model.activation={activation}")
    torch.manual_seed(1)
    net = models.build(cfg.model, 6, 4, torch.float64, torch.device("cpu")).module
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    p = {}
    for i, layer in enumerate(layers, 1):  # numpy stores x·w: torch's weight transposed
        p[f"w{i}"], p[f"b{i}"] = layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()
    rng = np.random.default_rng(2)
    X = rng.standard_normal((32, 6))
    y = 2 * np.tanh(X @ rng.standard_normal((6, 4)))  # something a network can fit
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    sgd = torch.optim.SGD(net.parameters(), lr=0.2)
    torch_losses = [models.loss_value("mse", net(Xt), yt).item()]
    for _ in range(60):
        models.Net(net).fill_gradients("mse", Xt, yt)
        sgd.step()
        torch_losses.append(models.loss_value("mse", net(Xt), yt).item())
    curve = numpy_engine.train_loop(p, X, y, "mse", lr=0.2, epochs=60, activation=activation)
    assert torch_losses[-1] < torch_losses[0] * 0.97  # it trained (sigmoid's deep net the slowest: ~0.96)
    assert [v for _, v in curve] == pytest.approx(torch_losses, rel=1e-10)
    for i, layer in enumerate(layers, 1):
        np.testing.assert_allclose(p[f"w{i}"], layer.weight.detach().numpy().T, rtol=1e-9, atol=1e-12)


def test_numpy_engine_runs_a_deep_mlp_from_the_config(shared_store):
    result = train.run(make_cfg("experiment=mlp_gd", "engine=numpy", "model.hidden=[30,20]", "model.activation=tanh",
                                "model.std=0.1", "lr=1e-3", "epochs=50", f"tracking.uri={shared_store}"))
    assert result.curve[-1][1] < result.curve[0][1] / 5  # sse falls from ~640 to ~75


def test_digits_mlp_preset_reaches_95_percent_test_accuracy(shared_store, tmp_path):
    result = train.run(make_cfg("experiment=digits_mlp", f"tracking.uri={shared_store}"))
    acc = history(shared_store, result.run_id, "test_accuracy")
    assert [s for s, _ in acc] == list(range(31))
    assert acc[-1][1] >= 0.95 and result.extra["test_accuracy"] == pytest.approx(acc[-1][1])
    names = {a.path for a in client_for(shared_store).list_artifacts(result.run_id)}
    assert "confusion.png" in names and "fit.png" not in names


def test_csv_with_a_label_column_trains_a_classifier(tmp_path, shared_store):
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [4, 0], [0, 4]])
    labels = rng.integers(0, 3, 300)
    X = centres[labels] + rng.normal(0, 0.5, (300, 2))
    csv = tmp_path / "blobs.csv"
    csv.write_text("label;a;b\n" + "".join(f"{c};{a};{b}\n" for c, (a, b) in zip(labels, X)))
    result = train.run(make_cfg("dataset=csv", f"dataset.path={csv}", "dataset.task=classification",
                                "dataset.target=label", "dataset.test_fraction=0.25", "model=linear",
                                "loss=cross_entropy", "optim=adam", "lr=0.1", "epochs=100",
                                f"tracking.uri={shared_store}"))
    assert result.extra["test_accuracy"] >= 0.95
    # the independent check: predict with the stored weights by hand
    state = torch.load(client_for(shared_store).download_artifacts(result.run_id, "model.pt", str(tmp_path)),
                       weights_only=True)
    pred = (torch.from_numpy(X).float() @ state["weight"].T + state["bias"]).argmax(1).numpy()
    assert (pred == labels).mean() >= 0.95


def test_one_input_line_has_a_trajectory_plot(shared_store):
    result = train.run(make_cfg("experiment=gd_vs_sgd", f"tracking.uri={shared_store}"))
    names = {a.path for a in client_for(shared_store).list_artifacts(result.run_id)}
    assert {"trajectory.png", "fit.png", "loss_curve.png"} <= names
