"""The textbook results (DESIGN.md, reference results), each against an independent reference."""
import math

import numpy as np
import pytest
import torch

from conftest import client_for, make_cfg
from runner import train


def metric(uri, run_id, key):
    """[(step, value)] of one metric, read back from the store."""
    hist = client_for(uri).get_metric_history(run_id, key)
    return [(m.step, m.value) for m in sorted(hist, key=lambda m: m.step)]


def load_weights(uri, run_id, tmp_path):
    path = client_for(uri).download_artifacts(run_id, "model.pt", str(tmp_path))
    return torch.load(path, weights_only=True)


def test_csv_linreg_follows_the_textbook_update_step_for_step(tmp_path, shared_store):
    rng = np.random.default_rng(1)
    x = [float(v) for v in rng.uniform(0, 10, 60)]
    y = [3.0 * v + 1.5 + float(e) for v, e in zip(x, rng.normal(0, 0.5, 60))]
    csv = tmp_path / "data.csv"
    csv.write_text("x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(x, y)))
    cfg = make_cfg("experiment=csv_linreg", f"dataset.path={csv}", "log_every=1",
                   f"tracking.uri={shared_store}")
    result = train.run(cfg)

    # the textbook loop, in plain Python floats
    w = b = 0.0
    lr, n = 1e-4, len(x)
    expected = []
    for _ in range(1000):
        err = [yi - (w * xi + b) for xi, yi in zip(x, y)]
        grad_b = (-2 / n) * sum(err)
        grad_w = (-2 / n) * sum(xi * ei for xi, ei in zip(x, err))
        b -= lr * grad_b
        w -= lr * grad_w
        expected.append((w, b, sum((yi - (w * xi + b)) ** 2 for xi, yi in zip(x, y)) / n))

    ws, bs = metric(shared_store, result.run_id, "w"), metric(shared_store, result.run_id, "b")
    losses = metric(shared_store, result.run_id, "loss")
    assert [s for s, _ in ws] == list(range(0, 1001))
    assert ws[0][1] == 0.0 and bs[0][1] == 0.0
    for epoch, (we, be, le) in enumerate(expected, start=1):
        assert ws[epoch][1] == pytest.approx(we, rel=1e-9), f"w at epoch {epoch}"
        assert bs[epoch][1] == pytest.approx(be, rel=1e-9), f"b at epoch {epoch}"
        assert losses[epoch][1] == pytest.approx(le, rel=1e-9), f"loss at epoch {epoch}"


def test_gd_vs_sgd_reference_values(shared_store):
    gd = train.run(make_cfg("experiment=gd_vs_sgd", f"tracking.uri={shared_store}"))
    w_gd = metric(shared_store, gd.run_id, "w")[-1]
    assert w_gd[0] == 100
    assert w_gd[1] == pytest.approx(1.9999444396553017, rel=1e-13)
    # closed form of the same recursion: w - 2 shrinks by (1 - lr*(2/3)*Σx²) each epoch
    assert w_gd[1] == pytest.approx(2 - (1 - 0.01 * 2 / 3 * 14) ** 100, rel=1e-13)

    sgd = train.run(make_cfg("experiment=gd_vs_sgd", "optim=sgd", f"tracking.uri={shared_store}"))
    w_sgd = metric(shared_store, sgd.run_id, "w")[-1][1]
    shrink = ((1 - 0.02) * (1 - 0.08) * (1 - 0.18)) ** 100  # one sample at a time, in order
    assert 2 - w_sgd == pytest.approx(shrink, rel=1e-3)
    assert 0 < 2 - w_sgd < 1e-13


@pytest.mark.parametrize("preset", ["d2l_scratch", "d2l_concise"])
def test_d2l_presets_recover_the_true_weights(preset, shared_store, tmp_path):
    result = train.run(make_cfg(f"experiment={preset}", f"tracking.uri={shared_store}"))
    state = load_weights(shared_store, result.run_id, tmp_path)
    w = (state["w"].reshape(-1) if "w" in state else state["weight"].reshape(-1)).double()
    b = (state["b"] if "b" in state else state["bias"]).reshape(()).item()
    assert torch.allclose(w, torch.tensor([2.0, -3.4], dtype=torch.float64), atol=2e-3)
    assert b == pytest.approx(4.2, abs=2e-3)
    mse = result.final_loss * (2 if preset == "d2l_scratch" else 1)  # half_mse is mse/2
    assert 2e-5 < mse < 5e-4  # the noise is 0.01, so the best mse is about 1e-4


@pytest.mark.parametrize("preset", ["mlp_gd", "mlp_adam"])
def test_mlp_presets_lower_the_loss_by_orders_of_magnitude(preset, shared_store):
    result = train.run(make_cfg(f"experiment={preset}", f"tracking.uri={shared_store}"))
    first, last = result.curve[0][1], result.curve[-1][1]
    assert result.curve[-1][0] == 500
    assert last < first / 1000, (first, last)


def test_same_seed_gives_bit_identical_metrics(shared_store):
    runs = [train.run(make_cfg("model=mlp", "optim=minibatch", "epochs=5", "seed=7", "lr=0.01",
                               f"tracking.uri={shared_store}")) for _ in range(2)]
    a, b = (metric(shared_store, r.run_id, "loss") for r in runs)
    assert len(a) == 6 and a == b  # exact equality of every float
    other = train.run(make_cfg("model=mlp", "optim=minibatch", "epochs=5", "seed=8", "lr=0.01",
                               f"tracking.uri={shared_store}"))
    assert metric(shared_store, other.run_id, "loss") != a
    assert all(math.isfinite(v) for _, v in a)
