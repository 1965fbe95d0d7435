"""Line searches: strong Wolfe and Moré–Thuente (vs SciPy and the conditions themselves), Armijo
backtracking, interpolation helpers, non-finite trials, restarts, evaluation counts and XLA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf
from flatvec.algorithms.backtracking import Backtracking
from flatvec.algorithms.line_search import (
    cubic_minimizer,
    quadratic_minimizer,
    search_with_restart,
)
from flatvec.algorithms.more_thuente import MoreThuente
from flatvec.algorithms.strong_wolfe import StrongWolfe
from scipy.optimize._dcsrch import DCSRCH

F64 = tf.float64


def _phi_mt3(a, m):
    """Moré & Thuente (1994), function 3: a wiggly function with many local minimizers."""
    beta, ell = 0.01, 39.0
    smooth = m.where(a <= 1 - beta, 1.0 - a,
                     m.where(a >= 1 + beta, a - 1.0, (a - 1.0) ** 2 / (2 * beta) + beta / 2))
    return smooth + 2 * (1 - beta) / (ell * math.pi) * m.sin(ell * math.pi * a / 2)


# name -> (phi(alpha, math-module), c1, c2). 1-D functions of the step along d = +1 from 0,
# all with phi'(0) < 0; the Moré–Thuente ones with c2 of their paper (c1 < c2 here).
LINE_FUNCTIONS = {
    "quadratic": (lambda a, m: (a - 3.0) ** 2, 1e-4, 0.9),
    "quartic": (lambda a, m: a**4 - 4.0 * a**2 - a, 1e-4, 0.1),
    "exp": (lambda a, m: m.exp(a) - 5.0 * a, 1e-4, 0.9),
    "mt1": (lambda a, m: -a / (a**2 + 2.0), 1e-3, 0.1),
    "mt2": (lambda a, m: (a + 0.004) ** 5 - 2.0 * (a + 0.004) ** 4, 0.01, 0.1),
    "mt3": (_phi_mt3, 0.01, 0.1),
}


class CountingOracle:
    """``oracle(x) -> (f, g)`` of ``fun`` that counts its calls in a tf.Variable."""

    def __init__(self, fun):
        self.fun = fun
        self.calls = tf.Variable(0, dtype=tf.int64)

    def __call__(self, x):
        self.calls.assign_add(1)
        with tf.GradientTape() as tape:
            tape.watch(x)
            f = self.fun(x)
        return f, tape.gradient(f, x)


class _TFMath:
    """The few math functions the line functions use, for TensorFlow scalars."""

    where, sin, exp = staticmethod(tf.where), staticmethod(tf.sin), staticmethod(tf.exp)


def _oracle_1d(phi):
    return CountingOracle(lambda x: phi(x[0], _TFMath))


def _np_value_grad(oracle, x):
    f, g = oracle(tf.constant(x, F64))
    return float(f), g.numpy()


def _run(search, oracle, x0, d, step0):
    x = tf.constant(x0, F64)
    f, g = oracle(x)
    oracle.calls.assign(0)
    return search.search(oracle, x, f, g, tf.constant(d, F64), tf.constant(step0, F64))


def assert_strong_wolfe(oracle, x0, d, step, c1, c2):
    """Check the strong Wolfe conditions at ``step`` from values evaluated here."""
    x0, d = np.asarray(x0, float), np.asarray(d, float)
    f0, g0 = _np_value_grad(oracle, x0)
    fa, ga = _np_value_grad(oracle, x0 + step * d)
    d0, da = g0 @ d, ga @ d
    assert step > 0
    assert fa <= f0 + c1 * step * d0, "sufficient decrease"
    assert abs(da) <= c2 * abs(d0) * (1 + 1e-12), "curvature"


@pytest.mark.parametrize("name", sorted(LINE_FUNCTIONS))
def test_strong_wolfe_against_scipy(name):
    phi, c1, c2 = LINE_FUNCTIONS[name]
    oracle = _oracle_1d(phi)
    res = _run(StrongWolfe(c1=c1, c2=c2), oracle, [0.0], [1.0], 1.0)
    assert int(oracle.calls.numpy()) == int(res.nfev)
    assert bool(res.success)
    assert_strong_wolfe(oracle, [0.0], [1.0], float(res.step), c1, c2)
    # The returned point, value and gradient are the ones at the returned step.
    f_at, g_at = _np_value_grad(oracle, [float(res.step)])
    assert float(res.f) == pytest.approx(f_at, rel=1e-14, abs=1e-14)
    np.testing.assert_allclose(res.g.numpy(), g_at, rtol=1e-14, atol=1e-14)

    # SciPy's strong Wolfe search (N&W Alg. 3.5/3.6, first trial 1) on the same function.
    def f_np(x):
        return _np_value_grad(oracle, x)[0]

    def g_np(x):
        return _np_value_grad(oracle, x)[1]

    ref = scipy.optimize.line_search(f_np, g_np, np.zeros(1), np.ones(1), c1=c1, c2=c2)
    alpha = ref[0]
    assert alpha is not None
    assert_strong_wolfe(oracle, [0.0], [1.0], alpha, c1, c2)
    if alpha == 1.0:  # SciPy accepted the first trial: so must we, with one evaluation
        assert float(res.step) == 1.0 and int(res.nfev) == 1
    # Not more evaluations than SciPy's search (ref[1] = its function evaluations).
    assert int(res.nfev) <= ref[1]


@pytest.mark.parametrize("step0", [1e-3, 1e-1, 10.0, 1e3])
@pytest.mark.parametrize("name", ["mt1", "mt2", "mt3"])
def test_strong_wolfe_from_far_starting_steps(name, step0):
    # Moré & Thuente's experiment: the same functions from tiny and huge first trials (their
    # search needs 1 to 13 evaluations on these; the bound leaves a little room).
    phi, c1, c2 = LINE_FUNCTIONS[name]
    oracle = _oracle_1d(phi)
    res = _run(StrongWolfe(c1=c1, c2=c2), oracle, [0.0], [1.0], step0)
    assert bool(res.success)
    assert_strong_wolfe(oracle, [0.0], [1.0], float(res.step), c1, c2)
    assert int(res.nfev) <= 15


@pytest.mark.parametrize("step0", [1e-3, 0.1, 1.0, 10.0, 1e3])
@pytest.mark.parametrize("name", sorted(set(LINE_FUNCTIONS) - {"exp"}))
def test_more_thuente_matches_minpack(name, step0):
    # SciPy's port of MINPACK-2's dcsrch (behind line_search_wolfe1 and L-BFGS-B's search):
    # the same trials, so the same step and evaluation count.
    phi, c1, c2 = LINE_FUNCTIONS[name]
    oracle = _oracle_1d(phi)
    res = _run(MoreThuente(c1=c1, c2=c2, xtol=1e-14), oracle, [0.0], [1.0], step0)
    assert int(oracle.calls.numpy()) == int(res.nfev) and bool(res.success)
    assert_strong_wolfe(oracle, [0.0], [1.0], float(res.step), c1, c2)
    calls = []

    def f(a):
        calls.append(a)
        return _np_value_grad(oracle, [a])[0]

    f0, g0 = _np_value_grad(oracle, [0.0])
    search = DCSRCH(f, lambda a: _np_value_grad(oracle, [a])[1][0], c1, c2, 1e-14, 0.0, 1e10)
    alpha, _, _, task = search(step0, phi0=f0, derphi0=g0[0])
    assert task.startswith(b"CONV")
    assert float(res.step) == pytest.approx(alpha, rel=1e-9)
    assert int(res.nfev) == len(calls)


def test_more_thuente_closed_forms():
    # phi(a) = (a - 3)^2: from 10 the cubic through both ends is exact (2 evaluations);
    # from 1e-3 the trials grow by 1 + 4 = 5 until the minimizer is bracketed.
    oracle = _oracle_1d(LINE_FUNCTIONS["quadratic"][0])
    res = _run(MoreThuente(c2=0.1), oracle, [0.0], [1.0], 10.0)
    assert float(res.step) == 3.0 and int(res.nfev) == 2
    res = _run(MoreThuente(c2=0.9), oracle, [0.0], [1.0], 1e-3)
    assert int(res.nfev) == 5 and float(res.step) == pytest.approx(0.341)
    # An extra condition that only holds near the minimizer keeps the search going.
    res = _run_extra(oracle, lambda d, g: tf.abs(g[0]) < 1e-3)
    assert float(res.step) == pytest.approx(3.0, abs=1e-3) and bool(res.success)


def _run_extra(oracle, extra):
    x = tf.constant([0.0], F64)
    f, g = oracle(x)
    return MoreThuente(c2=0.9).search(oracle, x, f, g, tf.constant([1.0], F64),
                                      tf.constant(1.0, F64), extra_condition=extra)


def rosen(x):
    return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@pytest.mark.parametrize("search", [StrongWolfe, MoreThuente])
@pytest.mark.parametrize("c2", [0.1, 0.4, 0.9])
def test_wolfe_searches_on_rosenbrock_directions(c2, search, rng):
    oracle = CountingOracle(rosen)
    for _ in range(3):
        x0 = rng.uniform(-2, 2, size=4)
        _, g0 = _np_value_grad(oracle, x0)
        d = -g0 / np.linalg.norm(g0)
        res = _run(search(c2=c2), oracle, x0, d, 1.0)
        assert bool(res.success)
        assert_strong_wolfe(oracle, x0, d, float(res.step), 1e-4, c2)
        np.testing.assert_array_equal(res.x.numpy(), x0 + float(res.step) * d)


def test_non_finite_trials_shrink_the_step():
    # f = (a - 2)^2 for a <= 3 and NaN beyond: a first trial of 100 is "too far".
    nan, zero = tf.constant(math.nan, F64), tf.constant(0.0, F64)
    oracle = CountingOracle(lambda x: (x[0] - 2.0) ** 2 + tf.where(x[0] > 3.0, nan, zero))
    for search in (StrongWolfe(c2=0.1), MoreThuente(c2=0.1)):
        res = _run(search, oracle, [0.0], [1.0], 100.0)
        assert bool(res.success)
        assert np.isfinite(float(res.f))
        assert_strong_wolfe(oracle, [0.0], [1.0], float(res.step), 1e-4, 0.1)

    res = _run(Backtracking(), oracle, [0.0], [1.0], 100.0)
    assert bool(res.success) and np.isfinite(float(res.f))
    assert float(res.f) <= 4.0 + 1e-4 * float(res.step) * -4.0


class _InfiniteCrossSlope:
    """f = (x0 - 2)^2 on R^2 whose gradient's x1 entry is infinite where x0 > 1.5: f and the
    slope along d = (1, 0) look fine there, but the gradient is not finite."""

    def __init__(self):
        self.calls = tf.Variable(0, dtype=tf.int64)

    def __call__(self, x):
        self.calls.assign_add(1)
        inf, zero = tf.constant(math.inf, F64), tf.constant(0.0, F64)
        cross = tf.where(x[0] > 1.5, inf, zero)
        return (x[0] - 2.0) ** 2, tf.stack([2.0 * (x[0] - 2.0), cross])


@pytest.mark.parametrize("search", [StrongWolfe, MoreThuente])
def test_a_trial_whose_gradient_is_not_finite_is_never_accepted(search):
    # Every strong Wolfe step (c2 = 0.1: x0 in [1.8, 2.2]) has an infinite gradient entry
    # where d is zero; the search must not return it, and its result stays finite.
    oracle = _InfiniteCrossSlope()
    res = _run(search(c2=0.1, max_evals=12), oracle, [0.0, 0.0], [1.0, 0.0], 1.0)
    assert not bool(res.success)
    assert np.all(np.isfinite(res.g.numpy())) and np.isfinite(float(res.f))
    assert float(res.x[0]) <= 1.5


def test_no_acceptable_point_returns_the_start():
    # Finite only at 0: every trial fails; the start point comes back with step 0.
    inf, zero = tf.constant(math.inf, F64), tf.constant(0.0, F64)
    for search in (StrongWolfe(max_evals=7), MoreThuente(max_evals=7), Backtracking(max_evals=7)):
        oracle = CountingOracle(lambda x: -x[0] + tf.where(x[0] > 0.0, inf, zero))
        res = _run(search, oracle, [0.0], [1.0], 1.0)
        assert float(res.step) == 0.0 and not bool(res.success)
        assert res.x.numpy().tolist() == [0.0] and float(res.f) == 0.0
        assert int(res.nfev) == 7 == int(oracle.calls.numpy())


def test_backtracking_quadratic_interpolation_is_exact_on_a_quadratic():
    # phi(a) = (1 - 2a)^2 from a = 4: the interpolated minimizer 1/2 is the exact one.
    oracle = CountingOracle(lambda x: tf.reduce_sum(x**2))
    res = _run(Backtracking(), oracle, [1.0], [-2.0], 4.0)
    assert float(res.step) == 0.5 and int(res.nfev) == 2 and bool(res.success)


def test_backtracking_accepts_the_first_armijo_step(rng):
    oracle = CountingOracle(rosen)
    x0 = np.array([-1.2, 1.0])
    _, g0 = _np_value_grad(oracle, x0)
    f0 = _np_value_grad(oracle, x0)[0]
    for step0 in (1e-5, 1e-3, 1.0):
        res = _run(Backtracking(c1=1e-4), oracle, x0, -g0, step0)
        a = float(res.step)
        assert bool(res.success)
        assert float(res.f) <= f0 - 1e-4 * a * (g0 @ g0)
        # Each rejected trial was shrunk by a factor in [0.1, 0.5].
        assert step0 * 0.1 ** (int(res.nfev) - 1) <= a <= step0 * 0.5 ** (int(res.nfev) - 1)
    res = _run(Backtracking(), oracle, x0, -g0, 1e-5)
    assert int(res.nfev) == 1 and float(res.step) == 1e-5


def test_cubic_and_quadratic_minimizers():
    # p(t) = t^3 - 6 t^2 + 9 t + 1: local minimizer 3 (p' = 3(t-1)(t-3)).
    def p(t):
        return t**3 - 6 * t**2 + 9 * t + 1, 3 * t**2 - 12 * t + 9

    a, b = tf.constant(2.0, F64), tf.constant(5.0, F64)
    (fa, da), (fb, db) = p(a), p(b)
    assert float(cubic_minimizer(a, fa, da, b, fb, db)) == pytest.approx(3.0, rel=1e-14)
    assert float(cubic_minimizer(b, fb, db, a, fa, da)) == pytest.approx(3.0, rel=1e-14)
    # q(t) = 2 (t - 0.7)^2: exact from value and slope at 0 and the value at 2.
    q0, dq0, q2 = 2 * 0.49, -4 * 0.7, 2 * 1.3**2
    t = quadratic_minimizer(*(tf.constant(v, F64) for v in (0.0, q0, dq0, 2.0, q2)))
    assert float(t) == pytest.approx(0.7, rel=1e-14)
    # A concave quadratic has no minimizer: NaN.
    t = quadratic_minimizer(*(tf.constant(v, F64) for v in (0.0, 0.0, -1.0, 1.0, -5.0)))
    assert math.isnan(float(t))
    # Large slopes do not overflow the discriminant.
    big = tf.constant(1e200, F64)
    t = cubic_minimizer(tf.constant(0.0, F64), tf.constant(0.0, F64), -big,
                        tf.constant(1.0, F64), tf.constant(0.0, F64), big)
    assert float(t) == pytest.approx(0.5, rel=1e-12)


def test_search_with_restart_falls_back_to_the_gradient():
    oracle = CountingOracle(rosen)
    x = tf.constant([-1.2, 1.0], F64)
    f, g = oracle(x)
    one = tf.constant(1.0, F64)
    scale = 1.0 / tf.norm(g)
    # An ascent direction is never searched: the fallback is used directly.
    out = search_with_restart(StrongWolfe(), oracle, x, f, g, g, one, -scale * g, one,
                              tf.constant(True))
    assert bool(out.restarted) and bool(out.result.success)
    assert float(out.result.f) < float(f)
    # A descent direction along which the search fails (max_evals=1, absurd first trial).
    out = search_with_restart(StrongWolfe(max_evals=1), oracle, x, f, g, -g,
                              tf.constant(1e6, F64), -scale * g, tf.constant(0.01, F64),
                              tf.constant(True))
    assert bool(out.restarted) and int(out.nfev) == 2 and float(out.result.f) < float(f)
    out = search_with_restart(StrongWolfe(max_evals=1), oracle, x, f, g, -g,
                              tf.constant(1e6, F64), -scale * g, tf.constant(0.01, F64),
                              tf.constant(False))
    assert not bool(out.restarted) and float(out.result.step) == 0.0


@pytest.mark.parametrize("dtype", [tf.float32, F64])
@pytest.mark.parametrize("make", [StrongWolfe, MoreThuente])
def test_wolfe_searches_trace_under_xla_like_in_graph(make, dtype):
    oracle = CountingOracle(rosen)
    x = tf.constant([-1.2, 1.0, 0.5], dtype)
    search = make(c2=0.1)

    def run(x):
        f, g = oracle(x)
        return search.search(oracle, x, f, g, -g, 1.0 / tf.norm(g))

    graph = tf.function(run)(x)
    xla = tf.function(run, jit_compile=True)(x)
    assert bool(xla.success) and int(xla.nfev) == int(graph.nfev)
    rtol = 1e-10 if dtype == F64 else 1e-4
    np.testing.assert_allclose(xla.x.numpy(), graph.x.numpy(), rtol=rtol)
    np.testing.assert_allclose(float(xla.step), float(graph.step), rtol=rtol)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: StrongWolfe(c1=0.6), "c1"),
        (lambda: StrongWolfe(c1=0.1, c2=0.05), "c2"),
        (lambda: StrongWolfe(max_evals=0), "max_evals"),
        (lambda: StrongWolfe(noise=-1.0), "noise"),
        (lambda: MoreThuente(c2=1.0), "c2"),
        (lambda: MoreThuente(xtol=1.0), "xtol"),
        (lambda: MoreThuente(min_step=2.0, max_step=1.0), "min_step"),
        (lambda: Backtracking(c1=1.5), "c1"),
        (lambda: Backtracking(shrink=(0.6, 0.5)), "shrink"),
    ],
)
def test_bad_options_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "search", [StrongWolfe(max_evals=1), MoreThuente(max_evals=1), Backtracking(max_evals=1)],
    ids=["in-loop restart", "in-loop restart (MT)", "second search in a cond"])
def test_search_with_restart_retries_along_the_fallback(search):
    # Along d the one allowed trial overshoots (no decrease); along the fallback -g/2 the first
    # trial lands on the minimizer of f = |x|^2 / 2. Both restart routes give the same answer.
    def oracle(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            f = 0.5 * tf.reduce_sum(x**2)
        return f, tape.gradient(f, x)

    x = tf.constant([1.0, -2.0], tf.float64)
    f, g = oracle(x)
    one = tf.constant(1.0, tf.float64)
    found = tf.function(search_with_restart, autograph=False)(
        search, oracle, x, f, g, -10.0 * g, one, -0.5 * g, tf.constant(2.0, tf.float64),
        tf.constant(True))
    assert bool(found.restarted)
    np.testing.assert_allclose(found.result.x.numpy(), [0.0, 0.0], atol=1e-15)
    assert int(found.nfev) == 2
    # Without permission to restart, the failed search is returned as it is.
    kept = search_with_restart(search, oracle, x, f, g, -10.0 * g, one, -0.5 * g, one,
                               tf.constant(False))
    assert not bool(kept.restarted) and float(kept.result.step) == 0.0
    np.testing.assert_array_equal(kept.result.x.numpy(), x.numpy())


# ---------------------------------------------------------------------- declared capabilities
def test_the_searches_declare_what_they_can_do():
    from flatvec.algorithms.line_search import Capabilities, capabilities

    assert capabilities(MoreThuente()) == Capabilities(False, True, True)
    assert capabilities(StrongWolfe()) == Capabilities(False, False, True)
    assert capabilities(Backtracking()) == Capabilities(True, False, False)

    class Plain:  # a user's search that declares nothing: plain search() only
        def search(self, oracle, x, f, g, d, step0):
            return Backtracking().search(oracle, x, f, g, d, step0)

    assert capabilities(Plain()) == Capabilities(False, False, False)


def test_a_search_is_refused_what_it_does_not_declare():
    from flatvec.algorithms.line_search import search_with_restart

    def oracle(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            f = tf.reduce_sum((x - 3.0) ** 2)
        return f, tape.gradient(f, x)

    x = tf.constant([0.0], tf.float64)
    f, g = oracle(x)
    one = tf.constant(1.0, tf.float64)
    with pytest.raises(TypeError, match="StrongWolfe takes no extra_condition"):
        search_with_restart(StrongWolfe(), oracle, x, f, g, -g, one, -g, one,
                            tf.constant(True), extra_condition=lambda d, g_new: True)
    with pytest.raises(TypeError, match="MoreThuente takes no reference"):
        search_with_restart(MoreThuente(), oracle, x, f, g, -g, one, -g, one,
                            tf.constant(True), reference=f)
    # Declared and used: a strong Wolfe step (c2 = 0.9) from the search's own loop.
    result = search_with_restart(MoreThuente(), oracle, x, f, g, -g, one, -g, one,
                                 tf.constant(True), extra_condition=lambda d, g_new: True)
    step = float(result.result.step)
    assert bool(result.result.success) and float(result.result.f) <= float(f) - 1e-4 * step * 36
    assert abs(float(result.result.g[0] * -g[0])) <= 0.9 * 36.0


def _host_and_traced(run, *args):
    """``run(*args)`` eagerly (Moré–Thuente's scalars on the host) and traced (tensors)."""
    return run(*args), tf.function(run)(*args)


class _EagerOracle(CountingOracle):
    """``CountingOracle`` whose values are computed eagerly even inside a traced search (a
    ``tf.py_function``): the graph optimizer cannot reorder them, so both runs of
    :func:`_host_and_traced` get the same bits from the oracle and any difference is the
    search's own."""

    def __call__(self, x):
        f, g = tf.py_function(super().__call__, [x], [x.dtype, x.dtype])
        return tf.ensure_shape(f, []), tf.ensure_shape(g, x.shape)


@pytest.mark.parametrize("dtype", [tf.float32, F64])
@pytest.mark.parametrize("step0", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("name", sorted(LINE_FUNCTIONS))
def test_more_thuente_on_host_scalars_makes_the_traced_trials(name, step0, dtype):
    # Run eagerly, the search keeps its scalars as NumPy scalars; traced, as tensors. The same
    # formulas in IEEE arithmetic: the same trials, bit for bit, in both precisions.
    phi, c1, c2 = LINE_FUNCTIONS[name]
    oracle = _EagerOracle(lambda x: phi(x[0], _TFMath))
    search = MoreThuente(c1=c1, c2=c2, xtol=1e-14)

    def run(x, d, step0):
        f, g = oracle(x)
        return search.search(oracle, x, f, g, d, step0)

    host, traced = _host_and_traced(run, tf.constant([0.0], dtype), tf.constant([1.0], dtype),
                                    tf.constant(step0, dtype))
    for got, want in zip(host, traced, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_more_thuente_on_host_scalars_restarts_like_the_traced_search():
    # Along d every trial is infinite; the fallback direction (x1) has a minimizer at 0.25.
    inf, zero = tf.constant(math.inf, F64), tf.constant(0.0, F64)
    oracle = _EagerOracle(
        lambda x: -x[0] - 0.5 * x[1] + x[1] ** 2 + tf.where(x[0] > 0.0, inf, zero))
    search = MoreThuente(c2=0.1, max_evals=6)

    def run(x, can_restart):
        f, g = oracle(x)
        one = tf.ones([], F64)
        return search_with_restart(search, oracle, x, f, g, tf.constant([1.0, 0.0], F64), one,
                                   tf.constant([0.0, 1.0], F64), one, can_restart)

    x = tf.constant([0.0, 0.0], F64)
    for can_restart in (True, False):
        host, traced = _host_and_traced(run, x, tf.constant(can_restart))
        assert bool(host.restarted) == can_restart
        if can_restart:
            assert float(host.result.f) < 0.0 and bool(host.result.success)
        else:
            assert float(host.result.step) == 0.0
        for got, want in zip(tf.nest.flatten(host), tf.nest.flatten(traced), strict=True):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
