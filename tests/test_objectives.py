"""The optimizer lab's objectives: each analytic gradient against autograd, and each known
minimum (and saddle) checked by its gradient and the signs of its Hessian's eigenvalues."""
import math

import numpy as np
import pytest
import torch

from runner import objectives

NAMES = sorted(objectives.OBJECTIVES)


def _autograd(obj, point):
    p = torch.tensor(point, dtype=torch.float64, requires_grad=True)
    value = obj.f(p, torch)
    (g,) = torch.autograd.grad(value, p)
    return value.item(), g.tolist()


def _hessian(obj, point):
    p = torch.tensor(point, dtype=torch.float64)
    return torch.autograd.functional.hessian(lambda q: obj.f(q, torch), p).numpy()


@pytest.mark.parametrize("name", NAMES)
def test_analytic_gradient_equals_autograd(name):
    obj = objectives.make(name)
    rng = np.random.default_rng(0)
    for _ in range(50):
        point = [float(rng.uniform(lo, hi)) for lo, hi in obj.bounds]
        value, expected = _autograd(obj, point)
        assert obj.f(point) == pytest.approx(value, rel=1e-12, abs=1e-12)
        got = obj.grad(point)
        scale = max(1.0, max(abs(g) for g in expected))
        assert max(abs(a - b) for a, b in zip(got, expected)) <= 1e-12 * scale, (point, got, expected)


def test_constants_reach_the_formulas():
    """Rosenbrock with a=2, b=10: the minimum moves to (2, 4), and the gradient still agrees."""
    obj = objectives.make("rosenbrock", a=2.0, b=10.0)
    assert obj.minima() == [(2.0, 4.0)]
    assert obj.grad((2.0, 4.0)) == [0.0, 0.0]
    assert obj.f((0.0, 0.0)) == 4.0
    _, expected = _autograd(obj, [0.3, -0.7])
    assert obj.grad([0.3, -0.7]) == pytest.approx(expected, rel=1e-12)
    assert objectives.make("parabola", center=-1.0).minima() == [(-1.0,)]
    with pytest.raises(TypeError, match="unknown constant"):
        objectives.make("beale", a=1.0)


@pytest.mark.parametrize("name", NAMES)
def test_minima_have_zero_gradient_and_positive_curvature(name):
    obj = objectives.make(name)
    for m in obj.minima():
        g = obj.grad(m)
        assert max(abs(v) for v in g) <= 1e-12 * max(1.0, abs(obj.f(m))) * 10, (m, g)
        eig = np.linalg.eigvalsh(_hessian(obj, m))
        assert (eig > 1e-6).all(), (m, eig)


@pytest.mark.parametrize("name", NAMES)
def test_saddles_have_zero_gradient_and_mixed_curvature(name):
    obj = objectives.make(name)
    for s in obj.saddles():
        assert obj.grad(s) == [0.0] * obj.dim
        eig = np.linalg.eigvalsh(_hessian(obj, s))
        assert eig.min() < 0 < eig.max(), (s, eig)
    assert bool(obj.minima()) or bool(obj.saddles()), "every objective needs a point to measure gap to"


def test_known_values():
    """Independent of the code: the textbook's closed forms."""
    assert objectives.make("parabola").minima() == [(5.0,)]
    assert objectives.make("rosenbrock").f((1.0, 1.0)) == 0.0
    assert objectives.make("beale").f((3.0, 0.5)) == 0.0
    assert objectives.make("saddle").f((1.0, 0.0)) == 1.0
    # x²·sin(x): each local minimum solves tan(x) = −x/2, one in every other hump
    minima = [m[0] for m in objectives.make("x2sinx").minima()]
    assert [round(m, 4) for m in minima] == [-8.0962, -2.2889, 5.087, 11.1727]
    for x in minima:
        assert math.tan(x) == pytest.approx(-x / 2, rel=1e-9)


def test_gap_is_to_the_nearest_known_minimum():
    obj = objectives.make("x2sinx")
    left, right = obj.minima()[1][0], obj.minima()[2][0]
    assert obj.gap((left + 0.1,), obj.f((left + 0.1,))) == pytest.approx(obj.f((left + 0.1,)) - obj.f((left,)))
    assert obj.gap((right,), obj.f((right,))) == 0.0
    saddle = objectives.make("saddle")  # no minimum: the gap is to its saddle, f = 0 there
    assert saddle.gap((0.5, 0.0), 0.25) == 0.25
