"""Functions to minimise directly, the parameter being the point itself: the optimizer lab's.

Each objective writes its value `f` and, right beside it, its analytic gradient, both on a
point `p` of plain numbers. They are written with `xp` (math, numpy or torch) for the few
functions that need a module (sin, cos), so one formula serves the loop (floats: cheaper per
step than any tensor op), the contour plots (numpy grids) and the tests (torch, against
autograd). Products are written x*x, not x**2: a float's ** raises OverflowError where * gives
inf, and an inf is how a diverging run is told apart.

Each knows its minima (and saddles) so that a run can log its gap to the nearest one.
"""
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

from omegaconf import MISSING

Point = Tuple[float, ...]


class Objective:
    """f: Rⁿ → R with its gradient, constants and stationary points."""
    name = ""
    dim = 1
    start: Point = ()  # the default start point
    bounds: Tuple[Tuple[float, float], ...] = ()  # plotting box, one (lo, hi) per coordinate
    constants: Dict[str, float] = {}  # the function's own constants, with their defaults

    def __init__(self, **constants: float):
        unknown = set(constants) - set(self.constants)
        if unknown:
            raise TypeError(f"{self.name}: unknown constant(s) {sorted(unknown)}")
        self.c = {**self.constants, **constants}

    def f(self, p: Sequence[Any], xp: Any = math) -> Any:
        raise NotImplementedError

    def grad(self, p: Sequence[Any], xp: Any = math) -> List[Any]:
        raise NotImplementedError

    def minima(self) -> List[Point]:
        """Known (local) minima; the first is the global one where there is one."""
        return []

    def saddles(self) -> List[Point]:
        return []

    def reference_points(self) -> List[Point]:
        """What `gap` is measured to: the minima, or for a function without any (the saddle)
        its stationary points."""
        return self.minima() or self.saddles()

    def gap(self, p: Sequence[float], value: float) -> float:
        """f(p) − f(m) for the known minimum m nearest to p (Euclidean)."""
        if not hasattr(self, "_refs"):  # once: the loop asks every step
            self._refs = [(q, self.f(q)) for q in self.reference_points()]
        _, f_min = min(self._refs, key=lambda r: sum((a - b) * (a - b) for a, b in zip(p, r[0])))
        return value - f_min


class Parabola(Objective):
    """(x − center)², the first lesson's: f'(x) = 2(x − center), zero at x = center."""
    name, dim, start, bounds = "parabola", 1, (0.0,), ((-1.0, 11.0),)
    constants = {"center": 5.0}

    def f(self, p, xp=math):
        d = p[0] - self.c["center"]
        return d * d

    def grad(self, p, xp=math):
        return [2 * (p[0] - self.c["center"])]

    def minima(self):
        return [(self.c["center"],)]


class X2SinX(Objective):
    """x²·sin(x): f'(x) = 2x·sin(x) + x²·cos(x). Odd and unbounded below; a local minimum in
    every other hump, so the start point decides which one gradient descent reaches."""
    name, dim, start, bounds = "x2sinx", 1, (3.0,), ((-10.0, 10.0),)
    SPAN = 4 * math.pi  # the known minima are the local minima in [-SPAN, SPAN]

    def f(self, p, xp=math):
        x = p[0]
        return x * x * xp.sin(x)

    def grad(self, p, xp=math):
        x = p[0]
        return [2 * x * xp.sin(x) + x * x * xp.cos(x)]

    def minima(self):
        return [(x,) for x in _X2SINX_MINIMA]


def _bisect(g, lo: float, hi: float) -> float:
    """The root of g in [lo, hi], where g changes sign, to the last bit."""
    glo = g(lo)
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if (g(mid) > 0) == (glo > 0):
            lo, glo = mid, g(mid)
        else:
            hi = mid
    return (lo + hi) / 2


def _x2sinx_minima() -> List[float]:
    """Where f' goes from − to + (f'' > 0): f' changes sign between consecutive multiples of
    π/2 at most once, so a scan at that spacing brackets each root."""
    def d(x):
        return X2SinX().grad((x,))[0]
    edges = [k * math.pi / 2 + 1e-9 for k in range(-8, 9)]
    return [_bisect(d, a, b) for a, b in zip(edges, edges[1:]) if d(a) < 0 < d(b)]


_X2SINX_MINIMA = _x2sinx_minima()


class Saddle(Objective):
    """x² − y²: one stationary point, (0, 0), a saddle (Hessian eigenvalues 2 and −2). From a
    point on the ridge y = 0 the gradient has no y part, so gradient descent slides to the
    saddle and stays; any noise in y grows and escapes."""
    name, dim, start, bounds = "saddle", 2, (1.0, 0.0), ((-1.5, 1.5), (-1.5, 1.5))

    def f(self, p, xp=math):
        x, y = p[0], p[1]
        return x * x - y * y

    def grad(self, p, xp=math):
        return [2 * p[0], -2 * p[1]]

    def saddles(self):
        return [(0.0, 0.0)]


class Rosenbrock(Objective):
    """(a − x)² + b·(y − x²)²: a curved, flat-bottomed valley; minimum (a, a²)."""
    name, dim, start, bounds = "rosenbrock", 2, (-1.5, 2.0), ((-2.0, 2.0), (-1.0, 3.0))
    constants = {"a": 1.0, "b": 100.0}

    def f(self, p, xp=math):
        x, y = p[0], p[1]
        u, v = self.c["a"] - x, y - x * x
        return u * u + self.c["b"] * v * v

    def grad(self, p, xp=math):
        x, y = p[0], p[1]
        u, v = self.c["a"] - x, y - x * x
        return [-2 * u - 4 * self.c["b"] * x * v, 2 * self.c["b"] * v]

    def minima(self):
        a = self.c["a"]
        return [(a, a * a)]


class Beale(Objective):
    """(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²: minimum (3, 0.5), f = 0."""
    name, dim, start, bounds = "beale", 2, (1.0, 1.5), ((-4.5, 4.5), (-4.5, 4.5))
    C = (1.5, 2.25, 2.625)

    def f(self, p, xp=math):
        x, y = p[0], p[1]
        t = [c - x + x * yk for c, yk in zip(self.C, (y, y * y, y * y * y))]
        return t[0] * t[0] + t[1] * t[1] + t[2] * t[2]

    def grad(self, p, xp=math):
        x, y = p[0], p[1]
        ys = (y, y * y, y * y * y)
        t = [c - x + x * yk for c, yk in zip(self.C, ys)]
        # d/dx of term k: yᵏ − 1; d/dy: k·x·yᵏ⁻¹
        gx = 2 * (t[0] * (ys[0] - 1) + t[1] * (ys[1] - 1) + t[2] * (ys[2] - 1))
        gy = 2 * x * (t[0] + 2 * t[1] * y + 3 * t[2] * ys[1])
        return [gx, gy]

    def minima(self):
        return [(3.0, 0.5)]


OBJECTIVES = {o.name: o for o in (Parabola, X2SinX, Saddle, Rosenbrock, Beale)}


def make(name: str, **constants: float) -> Objective:
    """The objective `name` with its constants (defaults where not given)."""
    return OBJECTIVES[name](**constants)


# ---- the config group `objective` (registered by runner.config.register): one schema each ---
@dataclass
class ObjectiveBase:
    name: str = MISSING
    start: List[float] = MISSING  # the start point, one number per coordinate
    bounds: List[List[float]] = MISSING  # the plots' box: one [lo, hi] per coordinate
    noise: float = 0.0  # std of Gaussian noise added to each gradient coordinate (SGD-like)


@dataclass
class ParabolaObjective(ObjectiveBase):
    name: str = "parabola"  # (x - center)²
    start: List[float] = field(default_factory=lambda: [0.0])
    bounds: List[List[float]] = field(default_factory=lambda: [[-1.0, 11.0]])
    center: float = 5.0


@dataclass
class X2sinxObjective(ObjectiveBase):
    name: str = "x2sinx"  # x²·sin(x)
    start: List[float] = field(default_factory=lambda: [3.0])
    bounds: List[List[float]] = field(default_factory=lambda: [[-10.0, 10.0]])


@dataclass
class SaddleObjective(ObjectiveBase):
    name: str = "saddle"  # x² - y²
    start: List[float] = field(default_factory=lambda: [1.0, 0.0])
    bounds: List[List[float]] = field(default_factory=lambda: [[-1.5, 1.5], [-1.5, 1.5]])


@dataclass
class RosenbrockObjective(ObjectiveBase):
    name: str = "rosenbrock"  # (a - x)² + b·(y - x²)²
    start: List[float] = field(default_factory=lambda: [-1.5, 2.0])
    bounds: List[List[float]] = field(default_factory=lambda: [[-2.0, 2.0], [-1.0, 3.0]])
    a: float = 1.0
    b: float = 100.0


@dataclass
class BealeObjective(ObjectiveBase):
    name: str = "beale"
    start: List[float] = field(default_factory=lambda: [1.0, 1.5])
    bounds: List[List[float]] = field(default_factory=lambda: [[-4.5, 4.5], [-4.5, 4.5]])


SCHEMAS = [ParabolaObjective, X2sinxObjective, SaddleObjective, RosenbrockObjective, BealeObjective]
