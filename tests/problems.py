"""Classic unconstrained test problems with standard start points and known minima.

Most are from Moré, Garbow & Hillstrom, "Testing unconstrained optimization software",
ACM TOMS 7(1), 1981 (MGH): ``f(x) = sum_i r_i(x)^2`` with the residuals, start points and
minimum values of that paper (minimum values are given there to about six digits). A few
more are the problems the SciPy comparison tests name (SciPy's chained Rosenbrock, a convex
quadratic). Every function is written in TensorFlow for float64 1-D tensors.

``PROBLEMS`` maps a name to a :class:`Problem`; ``ACCEPTANCE`` names the ones the SciPy
comparison tests use; ``solved(problem, f)`` is the success test used by the suite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

__all__ = ["ACCEPTANCE", "PROBLEMS", "SUITE", "Problem", "solved"]

F64 = tf.float64


@dataclass(frozen=True)
class Problem:
    """A test problem.

    Attributes
    ----------
    name : str
    fun : callable
        ``fun(x) -> scalar`` on a float64 1-D tensor (traceable).
    x0 : numpy.ndarray
        The standard start point.
    fmin : tuple of float
        Known local minimum values, best first (empty when none is known).
    xmin : numpy.ndarray or None
        A known minimizer, where one is known exactly.
    residuals : callable or None
        For the MGH least-squares problems, ``r(x)`` with ``fun = sum(r**2)``.
    """

    name: str
    fun: Callable[[tf.Tensor], tf.Tensor]
    x0: np.ndarray
    fmin: tuple[float, ...] = ()
    xmin: np.ndarray | None = field(default=None, compare=False)
    residuals: Callable[[tf.Tensor], tf.Tensor] | None = field(default=None, compare=False)

    @property
    def n(self) -> int:
        return int(self.x0.size)


def solved(problem: Problem, f: float, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """True when ``f`` matches one of the problem's known minimum values:
    ``|f - f*| <= rtol * |f*| + atol`` (MGH lists values to about six digits)."""
    return any(abs(f - fm) <= rtol * abs(fm) + atol for fm in problem.fmin)


def _c(values: object) -> tf.Tensor:
    return tf.constant(np.asarray(values, dtype=np.float64))


def _sumsq(r: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(r))


def _least_squares(residuals: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
    def fun(x: tf.Tensor) -> tf.Tensor:
        return _sumsq(residuals(x))

    fun.__name__ = residuals.__name__
    return fun


# ---------------------------------------------------------------------- MGH residuals
def rosenbrock(x):
    return tf.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def freudenstein_roth(x):
    x1, x2 = x[0], x[1]
    return tf.stack([-13.0 + x1 + ((5.0 - x2) * x2 - 2.0) * x2,
                     -29.0 + x1 + ((x2 + 1.0) * x2 - 14.0) * x2])


def powell_badly_scaled(x):
    return tf.stack([1e4 * x[0] * x[1] - 1.0, tf.exp(-x[0]) + tf.exp(-x[1]) - 1.0001])


def brown_badly_scaled(x):
    return tf.stack([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2.0])


def beale(x):
    i = _c([1.0, 2.0, 3.0])
    return _c([1.5, 2.25, 2.625]) - x[0] * (1.0 - x[1] ** i)


def jennrich_sampson(x):
    i = _c(np.arange(1, 11))
    return 2.0 + 2.0 * i - (tf.exp(i * x[0]) + tf.exp(i * x[1]))


def helical_valley(x):
    theta = tf.atan(x[1] / x[0]) / (2.0 * math.pi) + tf.where(x[0] < 0, _c(0.5), _c(0.0))
    return tf.stack([10.0 * (x[2] - 10.0 * theta),
                     10.0 * (tf.sqrt(x[0] ** 2 + x[1] ** 2) - 1.0), x[2]])


_BARD_Y = [0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10,
           4.39]


def bard(x):
    u = np.arange(1, 16, dtype=float)
    v = 16.0 - u
    w = np.minimum(u, v)
    return _c(_BARD_Y) - (x[0] + _c(u) / (_c(v) * x[1] + _c(w) * x[2]))


_GAUSS_Y = [0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989, 0.3521, 0.2420,
            0.1295, 0.0540, 0.0175, 0.0044, 0.0009]


def gaussian(x):
    t = _c((8.0 - np.arange(1, 16)) / 2.0)
    return x[0] * tf.exp(-x[1] * (t - x[2]) ** 2 / 2.0) - _c(_GAUSS_Y)


_MEYER_Y = [34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005, 5147, 4427,
            3820, 3307, 2872]


def meyer(x):
    t = _c(45.0 + 5.0 * np.arange(1, 17))
    return x[0] * tf.exp(x[1] / (t + x[2])) - _c(_MEYER_Y)


def gulf(x):
    t = np.arange(1, 100) / 100.0
    y = 25.0 + (-50.0 * np.log(t)) ** (2.0 / 3.0)
    return tf.exp(-tf.abs(_c(y) - x[1]) ** x[2] / x[0]) - _c(t)


def box3d(x):
    t = _c(0.1 * np.arange(1, 11))
    return (tf.exp(-t * x[0]) - tf.exp(-t * x[1])
            - x[2] * (tf.exp(-t) - tf.exp(-10.0 * t)))


def powell_singular(x):
    return tf.stack([x[0] + 10.0 * x[1], math.sqrt(5.0) * (x[2] - x[3]),
                     (x[1] - 2.0 * x[2]) ** 2, math.sqrt(10.0) * (x[0] - x[3]) ** 2])


def wood(x):
    return tf.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0], math.sqrt(90.0) * (x[3] - x[2] ** 2),
                     1.0 - x[2], math.sqrt(10.0) * (x[1] + x[3] - 2.0),
                     (x[1] - x[3]) / math.sqrt(10.0)])


_KO_Y = [0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246]
_KO_U = [4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625]


def kowalik_osborne(x):
    u = _c(_KO_U)
    return _c(_KO_Y) - x[0] * (u**2 + u * x[1]) / (u**2 + u * x[2] + x[3])


def brown_dennis(x):
    t = _c(np.arange(1, 21) / 5.0)
    return ((x[0] + t * x[1] - tf.exp(t)) ** 2
            + (x[2] + x[3] * tf.sin(t) - tf.cos(t)) ** 2)


_OSB1_Y = [0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751, 0.718,
           0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490, 0.478, 0.467,
           0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406]


def osborne1(x):
    t = _c(10.0 * np.arange(33))
    return _c(_OSB1_Y) - (x[0] + x[1] * tf.exp(-t * x[3]) + x[2] * tf.exp(-t * x[4]))


def biggs_exp6(x):
    t = 0.1 * np.arange(1, 14)
    y = np.exp(-t) - 5.0 * np.exp(-10.0 * t) + 3.0 * np.exp(-4.0 * t)
    t = _c(t)
    return (x[2] * tf.exp(-t * x[0]) - x[3] * tf.exp(-t * x[1]) + x[5] * tf.exp(-t * x[4])
            - _c(y))


_OSB2_Y = [1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746, 0.679,
           0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649, 0.694, 0.644,
           0.624, 0.661, 0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395, 0.375, 0.372, 0.391,
           0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653, 0.672, 0.708, 0.633, 0.668,
           0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739, 0.710, 0.729, 0.720, 0.636, 0.581,
           0.428, 0.292, 0.162, 0.098, 0.054]


def osborne2(x):
    t = _c(np.arange(65) / 10.0)
    model = (x[0] * tf.exp(-t * x[4]) + x[1] * tf.exp(-((t - x[8]) ** 2) * x[5])
             + x[2] * tf.exp(-((t - x[9]) ** 2) * x[6]) + x[3] * tf.exp(-((t - x[10]) ** 2) * x[7]))
    return _c(_OSB2_Y) - model


def watson(x):
    n = x.shape[0]
    t = np.arange(1, 30) / 29.0
    j = np.arange(n)
    # sum_j (j-1) x_j t^(j-2) and sum_j x_j t^(j-1), with 0-based j: j x_j t^(j-1), x_j t^j.
    dpow = _c(j[None, :] * t[:, None] ** np.maximum(j - 1, 0)[None, :])
    pow_ = _c(t[:, None] ** j[None, :])
    s1 = tf.linalg.matvec(dpow, x)
    s2 = tf.linalg.matvec(pow_, x)
    return tf.concat([s1 - s2**2 - 1.0, tf.stack([x[0], x[1] - x[0] ** 2 - 1.0])], 0)


def extended_rosenbrock(x):
    odd, even = x[0::2], x[1::2]
    return tf.concat([10.0 * (even - odd**2), 1.0 - odd], 0)


def extended_powell(x):
    b = tf.reshape(x, [-1, 4])
    return tf.concat([b[:, 0] + 10.0 * b[:, 1],
                      math.sqrt(5.0) * (b[:, 2] - b[:, 3]),
                      (b[:, 1] - 2.0 * b[:, 2]) ** 2,
                      math.sqrt(10.0) * (b[:, 0] - b[:, 3]) ** 2], 0)


def penalty1(x):
    return tf.concat([math.sqrt(1e-5) * (x - 1.0), [tf.reduce_sum(x**2) - 0.25]], 0)


def penalty2(x):
    n = x.shape[0]
    i = np.arange(2, n + 1)
    y = np.exp(i / 10.0) + np.exp((i - 1) / 10.0)
    a = math.sqrt(1e-5)
    weights = _c(np.arange(n, 0, -1))
    return tf.concat([
        [x[0] - 0.2],
        a * (tf.exp(x[1:] / 10.0) + tf.exp(x[:-1] / 10.0) - _c(y)),
        a * (tf.exp(x[1:] / 10.0) - math.exp(-0.1)),
        [tf.reduce_sum(weights * x**2) - 1.0],
    ], 0)


def variably_dimensioned(x):
    n = x.shape[0]
    s = tf.reduce_sum(_c(np.arange(1, n + 1)) * (x - 1.0))
    return tf.concat([x - 1.0, [s, s**2]], 0)


def trigonometric(x):
    n = x.shape[0]
    i = _c(np.arange(1, n + 1))
    return n - tf.reduce_sum(tf.cos(x)) + i * (1.0 - tf.cos(x)) - tf.sin(x)


def brown_almost_linear(x):
    n = x.shape[0]
    return tf.concat([x[:-1] + tf.reduce_sum(x) - (n + 1.0), [tf.reduce_prod(x) - 1.0]], 0)


def _grid(n: int) -> tuple[float, np.ndarray]:
    h = 1.0 / (n + 1)
    return h, h * np.arange(1, n + 1)


def discrete_boundary_value(x):
    h, t = _grid(x.shape[0])
    xp = tf.pad(x, [[1, 1]])
    return 2.0 * x - xp[:-2] - xp[2:] + h**2 * (x + _c(t) + 1.0) ** 3 / 2.0


def discrete_integral_equation(x):
    n = x.shape[0]
    h, t = _grid(n)
    cube = (x + _c(t) + 1.0) ** 3
    lower = np.tril(np.ones((n, n)))  # j <= i
    left = tf.linalg.matvec(_c(lower * t[None, :]), cube)
    right = tf.linalg.matvec(_c((1.0 - lower) * (1.0 - t)[None, :]), cube)
    return x + h * (_c(1.0 - t) * left + _c(t) * right) / 2.0


def broyden_tridiagonal(x):
    xp = tf.pad(x, [[1, 1]])
    return (3.0 - 2.0 * x) * x - xp[:-2] - 2.0 * xp[2:] + 1.0


def broyden_banded(x):
    n = x.shape[0]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    band = ((j >= i - 5) & (j <= i + 1) & (j != i)).astype(float)
    return x * (2.0 + 5.0 * x**2) + 1.0 - tf.linalg.matvec(_c(band), x * (1.0 + x))


def linear_full_rank(x, m=20):
    n = x.shape[0]
    s = tf.reduce_sum(x)
    return tf.concat([x - 2.0 * s / m - 1.0, tf.fill([m - n], -2.0 * s / m - 1.0)], 0)


def linear_rank1(x, m=20):
    n = x.shape[0]
    s = tf.reduce_sum(_c(np.arange(1, n + 1)) * x)
    return _c(np.arange(1, m + 1)) * s - 1.0


def linear_rank1_zero(x, m=20):
    n = x.shape[0]
    s = tf.reduce_sum(_c(np.arange(2, n)) * x[1:-1])
    return tf.concat([_c([-1.0]), _c(np.arange(1, m - 1)) * s - 1.0, _c([-1.0])], 0)


def chebyquad(x):
    n = x.shape[0]
    # Shifted Chebyshev polynomials T_i(2x - 1), i = 1..n, by the three-term recurrence.
    u = 2.0 * x - 1.0
    t_prev, t_cur = tf.ones_like(u), u
    rows = [t_cur]
    for _ in range(2, n + 1):
        t_prev, t_cur = t_cur, 2.0 * u * t_cur - t_prev
        rows.append(t_cur)
    i = np.arange(1, n + 1)
    integral = np.where(i % 2 == 0, -1.0 / (i**2 - 1.0 + (i % 2)), 0.0)
    return tf.reduce_mean(tf.stack(rows), axis=1) - _c(integral)


# ---------------------------------------------------------------------- other problems
def rosen_chain(x):
    """SciPy's ``rosen``: the chained Rosenbrock function."""
    return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _quadratic(n: int = 50, cond: float = 1e3) -> Problem:
    """``f = x'Ax/2 - b'x`` with a fixed SPD ``A`` of condition number ``cond``."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * np.logspace(0, math.log10(cond), n)) @ q.T
    a = (a + a.T) / 2.0
    b = rng.standard_normal(n)
    xmin = np.linalg.solve(a, b)
    fmin = float(-0.5 * b @ xmin)
    a_t, b_t = _c(a), _c(b)

    def quadratic(x):
        return 0.5 * tf.tensordot(x, tf.linalg.matvec(a_t, x), 1) - tf.tensordot(b_t, x, 1)

    return Problem(f"quadratic_{n}", quadratic, np.zeros(n), (fmin,), xmin)


def _mgh(name, residuals, x0, fmin=(0.0,), xmin=None) -> Problem:
    return Problem(name, _least_squares(residuals), np.asarray(x0, dtype=np.float64),
                   tuple(fmin), None if xmin is None else np.asarray(xmin, dtype=np.float64),
                   residuals)


def _tile(block, n):
    return np.tile(np.asarray(block, dtype=np.float64), n // len(block))


def _build() -> dict[str, Problem]:
    _, t10 = _grid(10)
    start_bv = t10 * (t10 - 1.0)
    problems = [
        _mgh("rosenbrock", rosenbrock, [-1.2, 1.0], xmin=[1.0, 1.0]),
        _mgh("freudenstein_roth", freudenstein_roth, [0.5, -2.0], (0.0, 48.9842536792400)),
        _mgh("powell_badly_scaled", powell_badly_scaled, [0.0, 1.0]),
        _mgh("brown_badly_scaled", brown_badly_scaled, [1.0, 1.0], xmin=[1e6, 2e-6]),
        _mgh("beale", beale, [1.0, 1.0], xmin=[3.0, 0.5]),
        _mgh("jennrich_sampson", jennrich_sampson, [0.3, 0.4], (124.362182,)),
        _mgh("helical_valley", helical_valley, [-1.0, 0.0, 0.0], xmin=[1.0, 0.0, 0.0]),
        _mgh("bard", bard, [1.0, 1.0, 1.0], (8.21487730657e-3, 17.4286)),
        _mgh("gaussian", gaussian, [0.4, 1.0, 0.0], (1.12793276961e-8,)),
        _mgh("meyer", meyer, [0.02, 4000.0, 250.0], (87.9458551,)),
        _mgh("gulf", gulf, [5.0, 2.5, 0.15], xmin=[50.0, 25.0, 1.5]),
        _mgh("box3d", box3d, [0.0, 10.0, 20.0]),
        _mgh("powell_singular", powell_singular, [3.0, -1.0, 0.0, 1.0], xmin=np.zeros(4)),
        _mgh("wood", wood, [-3.0, -1.0, -3.0, -1.0], xmin=np.ones(4)),
        _mgh("kowalik_osborne", kowalik_osborne, [0.25, 0.39, 0.415, 0.39],
             (3.07505603849e-4, 1.02734e-3)),
        _mgh("brown_dennis", brown_dennis, [25.0, 5.0, -5.0, -1.0], (85822.2016263563,)),
        _mgh("osborne1", osborne1, [0.5, 1.5, -1.0, 0.01, 0.02], (5.46489469702e-5,)),
        _mgh("biggs_exp6", biggs_exp6, [1.0, 2.0, 1.0, 1.0, 1.0, 1.0],
             (0.0, 5.65565e-3, 0.306308)),
        _mgh("osborne2", osborne2, [1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5],
             (4.01377362935e-2,)),
        _mgh("watson_6", watson, np.zeros(6), (2.28767005355e-3,)),
        _mgh("watson_9", watson, np.zeros(9), (1.39976155e-6,)),
        _mgh("extended_rosenbrock_10", extended_rosenbrock, _tile([-1.2, 1.0], 10),
             xmin=np.ones(10)),
        _mgh("extended_powell_12", extended_powell, _tile([3.0, -1.0, 0.0, 1.0], 12)),
        _mgh("penalty1_4", penalty1, np.arange(1.0, 5.0), (2.24997829e-5,)),
        _mgh("penalty1_10", penalty1, np.arange(1.0, 11.0), (7.08765e-5,)),
        _mgh("penalty2_4", penalty2, np.full(4, 0.5), (9.37629e-6,)),
        _mgh("penalty2_10", penalty2, np.full(10, 0.5), (2.93660e-4,)),
        _mgh("variably_dimensioned_10", variably_dimensioned, 1.0 - np.arange(1, 11) / 10.0,
             xmin=np.ones(10)),
        _mgh("trigonometric_10", trigonometric, np.full(10, 0.1), (0.0, 2.79506e-5)),
        _mgh("brown_almost_linear_10", brown_almost_linear, np.full(10, 0.5), (0.0, 1.0)),
        _mgh("discrete_boundary_value_10", discrete_boundary_value, start_bv),
        _mgh("discrete_integral_equation_10", discrete_integral_equation, start_bv),
        _mgh("broyden_tridiagonal_10", broyden_tridiagonal, -np.ones(10)),
        _mgh("broyden_banded_10", broyden_banded, -np.ones(10)),
        _mgh("linear_full_rank_10", linear_full_rank, np.ones(10), (10.0,)),
        _mgh("linear_rank1_10", linear_rank1, np.ones(10), (20 * 19 / (2 * 41),)),
        _mgh("linear_rank1_zero_10", linear_rank1_zero, np.ones(10),
             ((400 + 60 - 6) / (2 * 37),)),
        _mgh("chebyquad_8", chebyquad, np.arange(1, 9) / 9.0, (3.51687e-3,)),
        _mgh("chebyquad_9", chebyquad, np.arange(1, 10) / 10.0, (0.0,)),
        Problem("rosen_chain_5", rosen_chain, np.array([1.3, 0.7, 0.8, 1.9, 1.2]), (0.0,),
                np.ones(5)),
        _mgh("extended_rosenbrock_100", extended_rosenbrock, _tile([-1.2, 1.0], 100),
             xmin=np.ones(100)),
        _mgh("extended_rosenbrock_1000", extended_rosenbrock, _tile([-1.2, 1.0], 1000),
             xmin=np.ones(1000)),
        _quadratic(),
    ]
    return {p.name: p for p in problems}


PROBLEMS: dict[str, Problem] = _build()

#: The problems the per-problem SciPy comparison tests run (named in the acceptance criteria).
ACCEPTANCE = ("rosenbrock", "rosen_chain_5", "extended_rosenbrock_100",
              "extended_rosenbrock_1000", "beale", "powell_singular", "quadratic_50")

#: The robustness suite: every MGH problem above plus the acceptance problems.
SUITE = tuple(PROBLEMS)
