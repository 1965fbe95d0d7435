"""The built-in methods (lbfgs, cg, bfgs, gd): known minima, SciPy comparisons on the same
problems, component checks against dense references, failure handling and XLA."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from flatvec.algorithms.bfgs import bfgs_update
from flatvec.algorithms.cg import BETA_RULES
from flatvec.algorithms.gd import GradientDescent, MomentumSlots
from flatvec.algorithms.lbfgs import LBFGS, inverse_hessian_product
from problems import ACCEPTANCE, PROBLEMS, SUITE, solved

import flatvec
from flatvec import Status

F64 = tf.float64
ALGORITHMS = ("lbfgs", "cg", "bfgs")
SCIPY_METHOD = {"lbfgs": "L-BFGS-B", "cg": "CG", "bfgs": "BFGS"}
GTOL = 1e-6
# SciPy's CG and BFGS have no relative-decrease test; L-BFGS-B has ftol = 2.2e-9 (flatvec's
# default). Each flatvec method runs with the stopping rules of the SciPy method it is
# compared with.
FTOL = {"lbfgs": 2.220446049250313e-09, "cg": 0.0, "bfgs": 0.0}
# Evaluations on Rosenbrock from (-1.2, 1) with the settings above: a change shows here first.
PINNED_NFEV = {"lbfgs": 44, "cg": 59, "bfgs": 45}


def _minimize(problem, algo, **options):
    # ftol_floor=1: L-BFGS-B's exact relative-decrease test, and for lbfgs L-BFGS-B's memory
    # (maxcor=10), as the SciPy runs compared have.
    options = {"gtol": GTOL, "ftol": FTOL.get(algo, 0.0), "ftol_floor": 1.0, "max_iter": 10000,
               **({"memory": 10} if algo == "lbfgs" else {}), **options}
    return flatvec.minimize(problem.fun, tf.constant(problem.x0), algo, **options)


@pytest.fixture(scope="module")
def runs():
    """``runs(name, algo)``: flatvec's run; ``runs(name, "scipy:" + algo)``: SciPy's matching
    method with the same gtol (default ftol; norm=inf for CG/BFGS). Each runs once per module."""
    cache = {}

    def get(name, algo):
        if (name, algo) not in cache:
            problem = PROBLEMS[name]
            if algo.startswith("scipy:"):
                cache[name, algo] = flatvec.minimize(
                    problem.fun, tf.constant(problem.x0), "scipy:" + SCIPY_METHOD[algo[6:]],
                    gtol=GTOL, max_iter=10000,
                )
            else:
                cache[name, algo] = _minimize(problem, algo)
        return cache[name, algo]

    return get


# ---------------------------------------------------------------------- against SciPy
# SciPy's dense BFGS does two n x n matrix products per iteration (minutes at n = 1000 on two
# cores); tests/compare_suite.py runs that case.
CASES = [(a, n) for a in ALGORITHMS for n in ACCEPTANCE
         if not (a == "bfgs" and n == "extended_rosenbrock_1000")]
# Where flatvec needs more evaluations than SciPy (measured; see tests/compare_suite.py for the
# whole suite). Strict: a fix shows up as XPASS.
# BFGS's default is the scale-invariant method (H0 rescaled by N&W eq. 6.20; issue 12), which
# withdrew the per-problem parity with SciPy's H0 = I: SciPy's choice wins where the problem's
# curvature happens to be near 1 (the quadratic's smallest eigenvalue is 1) and loses by 10x on
# extended Rosenbrock (47 against 483 at n = 100). SciPy's choices stay options with SciPy's
# counts.
_SCALED = "scale-invariant BFGS default: H0 = I is lucky on this problem's scale"
KNOWN_LOSSES: dict[tuple[str, str], str] = {
    ("bfgs", "rosenbrock"): _SCALED,  # 45 vs 40
    ("bfgs", "powell_singular"): _SCALED,  # 59 vs 46
    ("bfgs", "quadratic_50"): _SCALED,  # 198 vs 65
}


def _case(algo, name):
    reason = KNOWN_LOSSES.get((algo, name))
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(algo, name, marks=marks, id=f"{algo}-{name}")


@pytest.mark.parametrize("algo, name", [_case(a, n) for a, n in CASES])
def test_against_scipy_on_acceptance_problems(algo, name, runs):
    problem = PROBLEMS[name]
    res, ref = runs(name, algo), runs(name, "scipy:" + algo)
    assert res.success, res.message
    # At a known minimum, or (Powell's singular function, where the relative-decrease test
    # stops both runs early) no worse than SciPy.
    assert solved(problem, res.fun) or res.fun <= ref.fun * (1 + 1e-6), (res.fun, ref.fun)
    if FTOL[algo] == 0.0:  # run to the gradient test, as SciPy's CG and BFGS
        assert np.max(np.abs(res.jac)) <= GTOL
    if problem.xmin is not None and solved(problem, res.fun):
        # Within 1e-3 (relative), or no farther than SciPy's point (Powell's singular function:
        # the Hessian is singular at the minimizer, |x - x*| ~ f^(1/4) ~ 2e-3 at f = 3e-11).
        scale = max(1.0, np.abs(problem.xmin).max())
        atol = max(1e-3 * scale, 1.01 * np.abs(np.asarray(ref.x) - problem.xmin).max())
        np.testing.assert_allclose(res.x, problem.xmin, atol=atol)
    assert res.nfev <= ref.nfev, f"{algo}: {res.nfev} evaluations, SciPy {ref.nfev}"


@pytest.mark.parametrize("algo, options", [
    ("lbfgs", {"line_search": "strong_wolfe"}),
    ("cg", {"line_search": "more_thuente", "c2": 0.4, "max_first_step": 1.0,
            "descent_check": 0.01, "stop_on_stall": True}),
    ("bfgs", {"line_search": "more_thuente", "first_trial": "scipy"}),
])
def test_the_other_line_search_choices_remain_selectable(algo, options):
    res = _minimize(PROBLEMS["rosenbrock"], algo, **options)
    assert res.success and solved(PROBLEMS["rosenbrock"], res.fun)
    assert res.nfev <= 100


def test_bfgs_with_unit_h0_makes_scipys_trials(runs):
    # SciPy's H0 = I stays an option, with SciPy's evaluation count on Rosenbrock.
    res = _minimize(PROBLEMS["rosenbrock"], "bfgs", scale_h0=False, line_search="more_thuente",
                    first_trial="scipy")
    assert res.nfev == runs("rosenbrock", "scipy:bfgs").nfev == 40


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_pinned_evaluation_counts(algo, runs):
    # A change in any line-search or update detail shows here first.
    assert runs("rosenbrock", algo).nfev == PINNED_NFEV[algo]


# The robustness suite less the problems where SciPy's methods need over 1000 evaluations (cost
# only: tests/compare_suite.py runs them all). A handful of problems is not enough: trajectories
# part in the last bit on another CPU, and four problems once gave CG a median of 1.22 on one
# machine and below 1 on another, while its median over the suite stayed at 0.89 (c2=0.1;
# 0.94 with c2=0.3).
SLOW = ("meyer", "osborne1", "watson_6", "watson_9")
SAMPLE = tuple(n for n in SUITE if n not in SLOW and n != "extended_rosenbrock_1000")


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_robustness_sample_against_scipy(algo, runs):
    # The external suite's criterion: solve at least as many problems as SciPy's matching
    # method, with a median nfev ratio of at most 1 over the problems both solve.
    ours = {n: runs(n, algo) for n in SAMPLE}
    refs = {n: runs(n, "scipy:" + algo) for n in SAMPLE}
    solved_ours = {n for n in SAMPLE if solved(PROBLEMS[n], ours[n].fun)}
    solved_refs = {n for n in SAMPLE if solved(PROBLEMS[n], refs[n].fun)}
    assert len(solved_ours) >= len(solved_refs), (solved_refs - solved_ours)
    ratios = {n: ours[n].nfev / refs[n].nfev for n in solved_ours & solved_refs}
    assert float(np.median(list(ratios.values()))) <= 1.0, ratios


# ---------------------------------------------------------------------- components
def _pairs(rng, n, k):
    """``k`` curvature pairs of a fixed SPD quadratic (so s'y > 0)."""
    a = rng.standard_normal((n, n))
    a = a @ a.T + n * np.eye(n)
    s = rng.standard_normal((k, n))
    return s, s @ a


def _dense_inverse(s, y, gamma):
    """The BFGS recursion H <- V'HV + rho s s' from gamma I, oldest pair first."""
    n = s.shape[1]
    h = gamma * np.eye(n)
    for si, yi in zip(s, y, strict=True):
        rho = 1.0 / (si @ yi)
        v = np.eye(n) - rho * np.outer(yi, si)
        h = v.T @ h @ v + rho * np.outer(si, si)
    return h


def _two_loop(g, s, y, gamma):
    """N&W Algorithm 7.4 in NumPy, oldest pair first: an independent route to H g."""
    q, alphas = g.copy(), []
    for si, yi in zip(s[::-1], y[::-1], strict=True):
        alphas.append((si @ q) / (si @ yi))
        q = q - alphas[-1] * yi
    r = gamma * q
    for si, yi, a in zip(s, y, alphas[::-1], strict=True):
        r = r + (a - (yi @ r) / (si @ yi)) * si
    return r


def _ring_product(rng, g, s, y, m, gamma, stale=False):
    """The compact-form product from ring buffers filled as L-BFGS fills them: pair i in slot
    i mod m; the newest m survive. ``stale`` fills the unused slots with junk."""
    pushed, n = len(s), s.shape[1]
    s_buf, y_buf = np.zeros((m, n)), np.zeros((m, n))
    if stale:
        s_buf, y_buf = rng.standard_normal((m, n)), rng.standard_normal((m, n))
    for i in range(pushed):
        s_buf[i % m], y_buf[i % m] = s[i], y[i]
    head, count = pushed % m, min(pushed, m)
    args = (g, s_buf, y_buf, s_buf @ y_buf.T, y_buf @ y_buf.T, s_buf @ g, y_buf @ g)
    got = inverse_hessian_product(*(tf.constant(v, F64) for v in args), tf.constant(head),
                                  tf.constant(count), tf.constant(gamma, F64))
    return got.numpy()


@pytest.mark.parametrize("pushed", [0, 1, 3, 5, 9])
def test_lbfgs_product_matches_the_dense_inverse_hessian(rng, pushed):
    m, n = 5, 7
    s, y = _pairs(rng, n, pushed)
    count = min(pushed, m)
    gamma = (s[-1] @ y[-1]) / (y[-1] @ y[-1]) if pushed else 0.7
    g = rng.standard_normal(n)
    h = _dense_inverse(s[pushed - count:], y[pushed - count:], gamma)
    got = _ring_product(rng, g, s, y, m, gamma)
    np.testing.assert_allclose(got, h @ g, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, _two_loop(g, s[pushed - count:], y[pushed - count:], gamma),
                               rtol=1e-10, atol=1e-12)
    # Slots not in use (after a memory reset) do not leak into the product.
    np.testing.assert_allclose(_ring_product(rng, g, s, y, m, gamma, stale=pushed < m), got,
                               rtol=1e-10, atol=1e-12)
    if pushed:  # the newest pair satisfies the secant equation H y = s
        np.testing.assert_allclose(_ring_product(rng, y[-1], s, y, m, gamma), s[-1], rtol=1e-10)


def test_bfgs_update_matches_the_product_form(rng):
    n = 6
    s, y = _pairs(rng, n, 1)
    h0 = np.diag(rng.uniform(0.5, 2.0, n))
    got = bfgs_update(tf.constant(h0), tf.constant(s[0]), tf.constant(y[0])).numpy()
    rho = 1.0 / (s[0] @ y[0])
    v = np.eye(n) - rho * np.outer(y[0], s[0])
    np.testing.assert_allclose(got, v.T @ h0 @ v + rho * np.outer(s[0], s[0]), rtol=1e-12)
    np.testing.assert_allclose(got @ y[0], s[0], rtol=1e-12)
    np.testing.assert_allclose(got, got.T, rtol=1e-14)


def test_lbfgs_memory_holds_the_last_pairs_of_a_quadratic():
    problem = PROBLEMS["quadratic_50"]
    res = _minimize(problem, "lbfgs", memory=4, max_iter=7)
    state = res.state.memory
    g_end = res.state.g.numpy()
    count, head = int(state.count), int(state.head)
    assert res.nit == 7 and count == 4 and 0 <= head < 4
    # On f = x'Ax/2 - b'x every stored pair has y = A s.
    x = tf.constant(problem.x0)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            f = problem.fun(x)
        g = inner.gradient(f, x)
    a = outer.jacobian(g, x).numpy()
    s, y = state.s.numpy(), state.y.numpy()
    np.testing.assert_allclose(y, s @ a.T, rtol=1e-8, atol=1e-12)
    # The inner products kept up to date step by step equal the ones computed afresh (of S'Y,
    # the part the compact form reads: on and above the diagonal in chronological order).
    order = [(head - count + i) % 4 for i in range(count)]
    upper = np.triu(np.ones((count, count), bool))
    sy_chrono = state.sy.numpy()[np.ix_(order, order)]
    np.testing.assert_allclose(sy_chrono[upper], (s[order] @ y[order].T)[upper], rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(state.yy.numpy(), y @ y.T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state.sg.numpy(), s @ g_end, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state.yg.numpy(), y @ g_end, rtol=1e-9, atol=1e-12)
    # gamma = s'y / y'y of the newest pair (slot head - 1).
    newest = (head - 1) % 4
    assert float(state.gamma) == pytest.approx((s[newest] @ y[newest]) / (y[newest] @ y[newest]))


def test_lbfgs_resets_memory_and_retries_along_the_gradient():
    # A stored pair that makes -Hg absurdly long: the one allowed trial fails, the memory is
    # dropped and the step is retried along -gamma g inside the same iteration.
    oracle = flatvec.Oracle(flatvec.Objective.from_function(lambda x: 0.5 * tf.reduce_sum(x**2)))
    algo = LBFGS(memory=3, max_evals=1)
    x = tf.constant([1.0, 2.0, -1.0], F64)
    state = algo.init(x, oracle)
    s_buf = np.zeros((3, 3))
    y_buf = np.zeros((3, 3))
    s_buf[0], y_buf[0] = [1.0, 0.0, 0.0], [1e-8, 0.0, 0.0]
    g = state.g.numpy()
    state = state._replace(memory=state.memory._replace(
        s=tf.constant(s_buf), y=tf.constant(y_buf),
        sy=tf.constant(s_buf @ y_buf.T), yy=tf.constant(y_buf @ y_buf.T),
        sg=tf.constant(s_buf @ g), yg=tf.constant(y_buf @ g),
        head=tf.constant(1), count=tf.constant(1), gamma=tf.constant(0.5, F64),
    ))
    new = algo.step(state, oracle)
    assert not bool(new.failed)
    np.testing.assert_allclose(new.x.numpy(), x.numpy() / 2)  # -0.5 g, step 1
    assert int(new.memory.count) == 1  # reset, then the new pair (s = y = -x/2)
    assert float(new.memory.gamma) == pytest.approx(1.0)


@pytest.mark.parametrize("rule", sorted(BETA_RULES))
def test_beta_rules_match_their_formulas(rule, rng):
    g, g_new, d = (rng.standard_normal(5) for _ in range(3))
    y = g_new - g
    expected = {
        "fr": g_new @ g_new / (g @ g),
        "pr": g_new @ y / (g @ g),
        "pr+": max(0.0, g_new @ y / (g @ g)),
        "hs": g_new @ y / (d @ y),
        "dy": g_new @ g_new / (d @ y),
        "hz": max((y - 2 * d * (y @ y) / (d @ y)) @ g_new / (d @ y),
                  -1.0 / (np.linalg.norm(d) * min(0.01, np.linalg.norm(g)))),
    }[rule]
    got = BETA_RULES[rule](*(tf.constant(v) for v in (g_new, g, d, y)))
    assert float(got) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("beta", sorted(BETA_RULES))
def test_every_beta_rule_solves_a_small_problem(beta):
    res = _minimize(PROBLEMS["beale"], "cg", beta=beta, max_iter=2000)
    assert res.success and solved(PROBLEMS["beale"], res.fun)


# ---------------------------------------------------------------------- failures, XLA
@pytest.mark.parametrize("algo", ALGORITHMS)
def test_backs_off_from_non_finite_regions(algo):
    # Minimum at (1, 0), NaN for x_0 > 1.2: the first trial step (length 1 from x_0 = 0.5)
    # lands there and must be shrunk.
    nan, zero = tf.constant(math.nan, F64), tf.constant(0.0, F64)
    seen_nan = tf.Variable(False)

    def fun(x):
        seen_nan.assign(seen_nan | (x[0] > 1.2))
        return (x[0] - 1.0) ** 2 + x[1] ** 2 + tf.where(x[0] > 1.2, nan, zero)

    res = flatvec.minimize(fun, tf.constant([0.5, 0.0], F64), algo, gtol=1e-8)
    assert bool(seen_nan.numpy())
    assert res.success
    np.testing.assert_allclose(res.x, [1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_no_finite_trial_reports_non_finite(algo):
    inf, zero = tf.constant(math.inf, F64), tf.constant(0.0, F64)

    def fun(x):  # finite only at the start point
        return tf.reduce_sum(x) + tf.where(tf.reduce_any(x != 1.0), inf, zero)

    res = flatvec.minimize(fun, tf.constant([1.0, 1.0], F64),
                           flatvec.get_algorithm(algo, max_evals=5))
    assert res.reason == Status.NON_FINITE and not res.success
    assert res.nonfinite_evals >= 1
    np.testing.assert_array_equal(res.x, [1.0, 1.0])


@tf.custom_gradient
def _uphill(x):
    """sum(x) with a gradient that points the wrong way: no trial along -g decreases f."""
    return tf.reduce_sum(x), lambda upstream: -upstream * tf.ones_like(x)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_no_descent_possible_reports_a_failed_line_search(algo):
    res = flatvec.minimize(_uphill, tf.constant([1.0, 1.0], F64),
                           flatvec.get_algorithm(algo, max_evals=5))
    assert res.reason == Status.LINE_SEARCH_FAILED and not res.success
    assert res.nonfinite_evals == 0
    np.testing.assert_array_equal(res.x, [1.0, 1.0])


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_xla_runs_the_same_iterations(algo, runs):
    plain = runs("rosenbrock", algo)
    xla = _minimize(PROBLEMS["rosenbrock"], algo, jit_compile=True)
    assert xla.success and abs(xla.nfev - plain.nfev) <= 2
    np.testing.assert_allclose(xla.x, plain.x, atol=1e-5)


def test_cg_refuses_a_descent_check_its_line_search_cannot_apply():
    # Silently dropping the condition would run another method than the one asked for.
    with pytest.raises(ValueError, match="descent_check"):
        flatvec.minimize(PROBLEMS["rosenbrock"].fun, tf.constant(PROBLEMS["rosenbrock"].x0),
                         "cg", line_search="strong_wolfe", descent_check=0.01)


# ---------------------------------------------------------------------- gradient descent
def test_gd_armijo_mode():
    weights, target = tf.constant([1.0, 2.0, 5.0], F64), tf.constant([3.0, -1.0, 0.5], F64)

    def fun(x):
        return tf.reduce_sum(weights * (x - target) ** 2)

    res = flatvec.minimize(fun, tf.zeros(3, F64), "gd", line_search="armijo",
                           learning_rate=1.0, gtol=1e-8, ftol=0.0, max_iter=5000)
    assert res.reason == Status.CONVERGED_GTOL
    np.testing.assert_allclose(res.x, target.numpy(), atol=1e-8)
    steps = np.asarray(res.history["step_size"][1:])
    assert np.all(steps > 0) and np.all(steps < 1.0)  # 1.0 overshoots (curvature up to 10)
    with pytest.raises(ValueError, match="line_search"):
        GradientDescent(line_search="wolfe")
    with pytest.raises(ValueError, match="momentum"):
        GradientDescent(line_search="armijo", momentum=0.9)


@pytest.mark.parametrize("nesterov", [False, True])
def test_gd_momentum_rule_matches_keras_sgd(nesterov, rng):
    grads = rng.standard_normal((4, 3))
    var = keras.Variable(np.ones(3), dtype="float64")
    # Binary fractions: Keras keeps the learning rate in a float32 variable.
    sgd = keras.optimizers.SGD(learning_rate=0.125, momentum=0.75, nesterov=nesterov)
    rule = GradientDescent(learning_rate=0.125, momentum=0.75, nesterov=nesterov)
    x = tf.ones(3, F64)
    slots = rule.init_slots(x)
    assert isinstance(slots, MomentumSlots)
    for g in grads:
        sgd.apply_gradients([(tf.constant(g), var)])
        x, slots = rule.update(x, tf.constant(g), slots, learning_rate=tf.constant(0.125, F64))
        np.testing.assert_allclose(x.numpy(), var.numpy(), rtol=1e-14)


def test_armijo_descent_is_what_gd_with_an_armijo_search_runs():
    from flatvec.algorithms.gd import ArmijoDescent

    fun = lambda x: tf.reduce_sum(tf.range(1.0, 6.0, dtype=tf.float64) * (x - 1.0) ** 2)  # noqa: E731
    x0 = tf.zeros([5], tf.float64)
    by_name = flatvec.minimize(fun, x0, "gd", line_search="armijo", learning_rate=1.0,
                               max_iter=30, gtol=0.0, ftol=0.0)
    direct = flatvec.minimize(fun, x0, ArmijoDescent(learning_rate=1.0), max_iter=30, gtol=0.0,
                              ftol=0.0)
    np.testing.assert_array_equal(by_name.x, direct.x)
    assert (by_name.nit, by_name.nfev) == (direct.nit, direct.nfev) == (30, direct.nfev)
    # Every accepted step met the Armijo condition: the loss never rose.
    assert np.all(np.diff(direct.history["loss"]) <= 0)
    np.testing.assert_allclose(direct.x, 1.0, atol=1e-3)
