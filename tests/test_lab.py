"""The optimizer lab's loop against independent references: the closed form of gradient descent
on a parabola, and each optimizer against its textbook update equations written out here (not
torch.optim), in float64, step for step."""
import math

import pytest

from runner import lab, objectives
from runner.errors import Diverged

STEPS = 100


def build(name: str, **hp):
    """The runner's optimizer `name`, as `optim=NAME` builds it: its schema's defaults unless
    given, through optim.build."""
    from runner import config, groups_optim, optim
    from omegaconf import OmegaConf

    node = next(n for n in (config.GdOptim, config.AdamOptim, *groups_optim.LAB_OPTIMS) if n.name == name)
    o = OmegaConf.structured(node(**hp))
    return lambda ps, lr: optim.build(o, ps, lr)


def run(objective, name, lr, steps=STEPS, start=None, **kw):
    points = []
    trace = lab.minimise(objective, start or objective.start, lambda ps: build(name)(ps, lr), steps,
                         lambda k, v, s: points.append((k, v, s)), **kw)
    return trace, points


def test_gd_on_the_parabola_follows_the_closed_form():
    """x_k = 5 − 5·(1 − 2·lr)^k, every step, to 1e-12."""
    lr = 0.1
    trace, points = run(objectives.make("parabola"), "gd", lr, steps=60, start=[0.0])
    assert len(trace.path) == 61 and trace.path[0] == (0.0,)
    for k, (x,) in enumerate(trace.path):
        assert abs(x - (5 - 5 * (1 - 2 * lr) ** k)) <= 1e-12, k
    xs = {s: v for k, v, s in points if k == "x"}
    assert sorted(xs) == list(range(61)) and xs[60] == trace.path[60][0]
    fs = {s: v for k, v, s in points if k == "f"}
    assert fs[0] == 25.0 and fs[60] == pytest.approx((5 * 0.8 ** 60) ** 2, rel=1e-9)
    grads = {s: v for k, v, s in points if k == "grad_norm"}
    assert grads[0] == 10.0  # |f'(0)| = |2·(0 − 5)|
    gaps = {s: v for k, v, s in points if k == "gap"}
    assert gaps[60] == fs[60]  # the minimum's f is 0


# ---- the textbook loops: g is the objective's gradient at the current point -------------------
def textbook(name, obj, start, lr, steps, hp):
    x, out = list(start), [tuple(start)]
    n = len(x)
    v, s = [0.0] * n, [0.0] * n
    for t in range(1, steps + 1):
        g = obj.grad(x)
        if name == "momentum":  # heavy ball (d2l 12.6): v ← μv + g; x ← x − lr·v
            v = [hp["momentum"] * vi + gi for vi, gi in zip(v, g)]
            x = [xi - lr * vi for xi, vi in zip(x, v)]
        elif name == "rmsprop":  # s ← αs + (1−α)g²; x ← x − lr·g/(√s + ε)
            s = [hp["alpha"] * si + (1 - hp["alpha"]) * gi * gi for si, gi in zip(s, g)]
            x = [xi - lr * gi / (math.sqrt(si) + hp["eps"]) for xi, gi, si in zip(x, g, s)]
        elif name == "adagrad":  # s ← s + g²; x ← x − lr·g/(√s + ε)
            s = [si + gi * gi for si, gi in zip(s, g)]
            x = [xi - lr * gi / (math.sqrt(si) + hp["eps"]) for xi, gi, si in zip(x, g, s)]
        elif name in ("adam", "adamw"):  # AdamW decays the weights first: x ← x·(1 − lr·λ)
            b1, b2 = hp["betas"]
            x = [xi * (1 - lr * hp.get("weight_decay", 0.0)) for xi in x]
            v = [b1 * mi + (1 - b1) * gi for mi, gi in zip(v, g)]  # first moment
            s = [b2 * si + (1 - b2) * gi * gi for si, gi in zip(s, g)]  # second moment
            x = [xi - lr * (mi / (1 - b1 ** t)) / (math.sqrt(si / (1 - b2 ** t)) + hp["eps"])
                 for xi, mi, si in zip(x, v, s)]
        out.append(tuple(x))
    return out


def nesterov(obj, start, lr, steps, mu):
    """Sutskever's form (Goodfellow et al., algorithm 8.3): the gradient at the look-ahead point
    θ + μv; v ← μv − lr·g; θ ← θ + v. The optimizer steps the look-ahead point itself,
    φ = θ + μv (Bengio et al. 2012), so that is what the loop's path must be."""
    theta, v = list(start), [0.0] * len(start)
    out = [tuple(start)]
    for _ in range(steps):
        ahead = [ti + mu * vi for ti, vi in zip(theta, v)]
        g = obj.grad(ahead)
        v = [mu * vi - lr * gi for vi, gi in zip(v, g)]
        theta = [ti + vi for ti, vi in zip(theta, v)]
        out.append(tuple(ti + mu * vi for ti, vi in zip(theta, v)))
    return out


CASES = [  # optimizer, its hyperparameters as the test writes them, lr
    ("momentum", {"momentum": 0.9}, 1e-4),
    ("rmsprop", {"alpha": 0.99, "eps": 1e-8}, 1e-3),
    ("adagrad", {"eps": 1e-10}, 1e-2),
    ("adam", {"betas": (0.9, 0.999), "eps": 1e-8}, 1e-2),
    ("adamw", {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}, 1e-2),
]


def _close(path, expected):
    assert len(path) == len(expected) == STEPS + 1
    worst = max(abs(a - b) for p, q in zip(path, expected) for a, b in zip(p, q))
    assert worst <= 1e-12, worst


@pytest.mark.parametrize("objective", ["rosenbrock", "beale"])
@pytest.mark.parametrize("name,hp,lr", CASES, ids=[c[0] for c in CASES])
def test_optimizer_follows_its_textbook_update(name, hp, lr, objective):
    obj = objectives.make(objective)
    trace, _ = run(obj, name, lr)
    _close(trace.path, textbook(name, obj, obj.start, lr, STEPS, hp))
    assert trace.path[-1] != trace.path[0]  # it moved


@pytest.mark.parametrize("objective", ["rosenbrock", "beale"])
def test_nesterov_follows_sutskevers_update(objective):
    obj = objectives.make(objective)
    trace, _ = run(obj, "nesterov", 1e-4)
    _close(trace.path, nesterov(obj, obj.start, 1e-4, STEPS, 0.9))


def test_hyperparameters_given_reach_the_update():
    """Not the defaults: rmsprop with alpha=0.5, eps=0.1 and momentum with 0.5 follow the
    textbook with those values, and differ from the defaults' path."""
    obj = objectives.make("rosenbrock")
    for name, hp in (("rmsprop", {"alpha": 0.5, "eps": 0.1}), ("momentum", {"momentum": 0.5})):
        trace = lab.minimise(obj, obj.start, lambda ps: build(name, **hp)(ps, 1e-3), STEPS, lambda *a: None)
        _close(trace.path, textbook(name, obj, obj.start, 1e-3, STEPS, hp))
        assert trace.path != run(obj, name, 1e-3)[0].path


def test_too_large_a_step_diverges_at_the_step_f_overflows():
    """lr = 1.5 on (x−5)²: x_k − 5 = −5·(−2)^k, so f = 25·4^k overflows at the first k where that
    product is inf in float64."""
    first = next(k for k in range(2000) if 25.0 * 4.0 ** k == math.inf)
    with pytest.raises(Diverged) as e:
        run(objectives.make("parabola"), "gd", 1.5, steps=2000, start=[0.0])
    assert e.value.epoch == first and e.value.what == "f"
    assert f"diverged at epoch {first}: f = inf" in str(e.value)


def test_log_every_keeps_the_start_and_the_last_step():
    trace, points = run(objectives.make("beale"), "adam", 0.01, steps=10, log_every=4)
    assert sorted({s for k, v, s in points if k == "f"}) == [0, 4, 8, 10]
    assert {k for k, v, s in points} == {"x", "y", "f", "grad_norm", "gap"}
    assert len(trace.path) == 11  # the plots get every step


def test_noise_escapes_the_saddle_and_is_seeded():
    """From the ridge y = 0 plain gd slides into the saddle (0, 0) and stays; noise on the
    gradient pushes y off the ridge and it runs downhill."""
    obj = objectives.make("saddle")
    plain, _ = run(obj, "gd", 0.1, steps=80, start=[1.0, 0.0])
    assert all(y == 0.0 for _, y in plain.path) and abs(plain.path[-1][0]) < 1e-6
    noisy, _ = run(obj, "gd", 0.1, steps=80, start=[1.0, 0.0], noise=0.01, seed=3)
    assert abs(noisy.path[-1][1]) > 1.0 and obj.f(noisy.path[-1]) < -1.0
    again, _ = run(obj, "gd", 0.1, steps=80, start=[1.0, 0.0], noise=0.01, seed=3)
    assert again.path == noisy.path


def test_thin_keeps_the_ends():
    path = [(float(i),) for i in range(10_001)]
    short = lab.thin(path, 1000)
    assert len(short) == 1000 and short[0] == path[0] and short[-1] == path[-1]
    assert lab.thin(path[:5]) == path[:5]


# ---- the new optimizers on a dataset and model, against torch.optim itself ------------------
TORCH = {"momentum": lambda ps, lr: __import__("torch").optim.SGD(ps, lr=lr, momentum=0.9),
         "nesterov": lambda ps, lr: __import__("torch").optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True),
         "rmsprop": lambda ps, lr: __import__("torch").optim.RMSprop(ps, lr=lr, alpha=0.99, eps=1e-8),
         "adagrad": lambda ps, lr: __import__("torch").optim.Adagrad(ps, lr=lr, eps=1e-10),
         "adamw": lambda ps, lr: __import__("torch").optim.AdamW(ps, lr=lr, eps=1e-8, weight_decay=0.01)}


@pytest.mark.parametrize("name", sorted(TORCH))
def test_optimizer_on_a_line_matches_torch_optim(name):
    """optim=NAME on the one-input line (analytic gradients, full batch, float64) for 30
    epochs: w and b at every epoch equal a plain autograd loop with torch.optim's optimizer."""
    import torch
    from omegaconf import OmegaConf
    from conftest import make_cfg
    from runner import config, data, torch_engine
    from runner.tracking import record

    cfg = make_cfg("model=line", f"optim={name}", "dataset.weights=[2.0]", "dataset.n_samples=50",
                   "dtype=float64", "epochs=30", "lr=0.05")
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    ds = data.build(cfg, cfg.seed)
    logged = {}
    torch_engine.torch_train(config.typed(cfg), ds, lambda k, v, s: logged.setdefault(k, {}).update({s: v}),
                      lambda tags: None, torch.device("cpu"))
    X, y = torch.tensor(ds.X), torch.tensor(ds.y)
    w, b = torch.zeros(1, 1, dtype=X.dtype, requires_grad=True), torch.zeros(1, dtype=X.dtype, requires_grad=True)
    opt = TORCH[name]([w, b], 0.05)
    expected = []
    for _ in range(30):
        opt.zero_grad()
        ((X @ w + b - y) ** 2).mean().backward()
        opt.step()
        expected.append((w.item(), b.item()))
    got = [[logged[k][s] for s in range(1, 31)] for k in ("w", "b")]
    assert max(abs(a - e) for k in range(2) for a, e in zip(got[k], [p[k] for p in expected])) <= 1e-12
    assert expected[-1] != expected[0]
    # its own hyperparameters, and no other option's, among the params
    optim_params = {k for k in record.params(resolved) if k.startswith("optim.")}
    assert optim_params == {"optim.name", "optim.batch_size", "optim.shuffle", *(f"optim.{h}" for h in _HYPER[name])}


_HYPER = {"momentum": ["momentum"], "nesterov": ["momentum"], "rmsprop": ["alpha", "eps"],
          "adagrad": ["eps"], "adamw": ["betas", "eps", "weight_decay"]}


# ---- from the CLI: the presets, divergence, a sweep's overlay --------------------------------
def _runs(uri):
    from conftest import all_runs
    return all_runs(uri, "lab")


def test_parabola_preset_runs_and_logs_every_step(tmp_path, monkeypatch, capsys):
    from conftest import cli_in_process, client_for

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = cli_in_process("experiment=parabola", f"tracking.uri={uri}", cwd=tmp_path, monkeypatch=monkeypatch,
                         capsys=capsys)
    assert out.returncode == 0, out.stderr
    (run,) = _runs(uri)
    client = client_for(uri)
    xs = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "x"))
    assert [s for s, _ in xs] == list(range(61))
    assert max(abs(x - (5 - 5 * 0.8 ** k)) for k, x in xs) <= 1e-12  # the closed form, through MLflow
    assert run.data.tags["runner.objective"] == "parabola" and "runner.dataset" not in run.data.tags
    params = run.data.params
    assert params["objective.name"] == "parabola" and params["objective.center"] == "5.0"
    assert not any(k.startswith(("dataset.", "model.")) or k in ("optim.batch_size", "loss_fn") for k in params)
    assert {"x", "f", "grad_norm", "gap", "final_loss"} <= set(run.data.metrics)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"path.png", "loss_curve.png", "config.yaml"}
    assert "objective=parabola optim=gd" in out.stdout


def test_too_large_an_lr_on_the_parabola_fails_with_the_step(tmp_path, monkeypatch, capsys):
    from conftest import cli_in_process

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = cli_in_process("experiment=parabola", "lr=1.5", "epochs=2000", f"tracking.uri={uri}", cwd=tmp_path,
                         monkeypatch=monkeypatch, capsys=capsys)
    first = next(k for k in range(2000) if 25.0 * 4.0 ** k == math.inf)
    assert out.returncode == 1 and f"diverged at epoch {first}: f = inf" in out.stderr
    (run,) = _runs(uri)
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("args,key", [(("objective.start=[1.0,2.0]",), "objective.start"),
                                      (("optim.batch_size=4",), "optim.batch_size"),
                                      (("optim=rmsprop", "optim.alpha=1.5"), "optim.alpha"),
                                      (("optim.momentum=0.5",), "optim.momentum")])
def test_bad_input_is_one_line_exit_2_and_no_store(args, key, tmp_path, monkeypatch, capsys):
    from conftest import cli_in_process

    out = cli_in_process("experiment=parabola", *args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert out.returncode == 2 and out.stderr.startswith(f"error: {key}"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow  # a four-job sweep
def test_sweep_overlays_every_path_on_the_parent(tmp_path, monkeypatch, capsys):
    """The textbook's "different solvers" figure: one contour with each child's path, on the
    sweep's parent run."""
    from conftest import cli_in_process, client_for

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = cli_in_process("-m", "experiment=rosenbrock", "optim=gd,adam", "epochs=200",
                         f"tracking.uri={uri}", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert out.returncode == 0, out.stderr
    runs = _runs(uri)
    (parent,) = [r for r in runs if r.data.tags.get("runner.sweep") == "true"]
    children = [r for r in runs if r is not parent]
    assert sorted(r.data.params["optim.name"] for r in children) == ["adam", "gd"]
    assert "sweep_paths.png" in {a.path for a in client_for(uri).list_artifacts(parent.info.run_id)}


def test_x2sinx_two_start_points_reach_two_different_minima():
    """The preset's two starts (3 and −3, lr 0.01, 300 steps): each ends at a known minimum, f' = 0
    there, and they are not the same one: gradient descent is greedy."""
    obj = objectives.make("x2sinx")
    ends = [run(obj, "gd", 0.01, steps=300, start=[s])[0].path[-1] for s in (3.0, -3.0)]
    near = [lab.nearest_minimum(obj, e) for e in ends]
    assert all(abs(e[0] - m[0]) < 1e-9 for e, m in zip(ends, near))
    assert near[0] != near[1] and near[0][0] > 0 > near[1][0]


@pytest.mark.parametrize("model,dataset", [("line", "synthetic_linear"), ("linear", "synthetic_linear"),
                                           ("mlp", "synthetic_linear"), ("mlp", "digits")])
def test_every_new_optimizer_trains_every_model(model, dataset):
    """Each of the lab's optimizers on the line (analytic gradients), nn.Linear and the mlp
    (autograd), regression and classification: the loss goes down in 5 epochs."""
    import torch
    from conftest import make_cfg
    from runner import config, data, torch_engine

    extra = ["loss=cross_entropy"] if dataset == "digits" else []
    for name in sorted(TORCH):
        cfg = make_cfg(f"model={model}", f"dataset={dataset}", f"optim={name}", "epochs=5", "lr=0.01", *extra)
        trace = torch_engine.torch_train(config.typed(cfg), data.build(cfg, cfg.seed), lambda *a: None, lambda t: None,
                                  torch.device("cpu"))
        assert trace.curve[-1][1] < trace.curve[0][1], (name, trace.curve)
