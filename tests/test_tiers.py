"""Tiered execution: a run expected to be short runs its iterations eagerly (no compiled loop
traced), with the same operations as the compiled loop, and switches to the compiled loop when
it outlasts the prediction. The truth is the compiled run of the same problem: the same
iterates to rounding, the same counts, statuses and history."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from autograph_algorithm import ClippedGradientDescent

import flatvec
from flatvec._run import tiers
from flatvec._run.loop import CompiledLoop

# Short enough to run eagerly under the default costs.
SHORT = int(tiers.COMPILE_SECONDS / tiers.EAGER_RENT_SECONDS) // 2


def _rosen(x):
    return tf.reduce_sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


_SPECTRUM = tf.constant(np.logspace(0.0, 4.0, 50))


def _valley(x):
    """An ill-conditioned convex quartic (n = 50): L-BFGS runs 60 iterations without
    converging, and rounding differences stay rounding (Rosenbrock's valley amplifies the
    last bits of NumPy's inner products, where eager iterations ran on the host, to 3e-6
    over 60 iterations; here 1e-9)."""
    r = x - 1.0
    return 0.5 * tf.reduce_sum(_SPECTRUM * r**2) + 0.25 * tf.reduce_sum(r**4)


def _x0(n: int = 10) -> tf.Tensor:
    return tf.constant(np.resize([-1.2, 1.0], n), tf.float64)


@pytest.fixture
def eager_calls(monkeypatch, tiers_on):
    """How many times advance_eagerly ran in the test (tiers on: conftest's ``tiers_on``)."""
    calls = []
    original = CompiledLoop.advance_eagerly

    def counted(self, iterations):
        calls.append(iterations)
        return original(self, iterations)

    monkeypatch.setattr(CompiledLoop, "advance_eagerly", counted)
    return calls


def _both_tiers(monkeypatch, run):
    """``run()`` eagerly and compiled (each on a fresh objective: a new function object)."""
    eager = run()
    monkeypatch.setattr(tiers, "ENABLED", False)
    compiled = run()
    monkeypatch.setattr(tiers, "ENABLED", True)
    return eager, compiled


def _assert_same_run(eager, compiled, rtol=1e-9):
    np.testing.assert_allclose(eager.x, compiled.x, rtol=rtol, atol=1e-12)
    # (atol: losses that reach 0 differ in their last bits at 1e-30.)
    np.testing.assert_allclose(eager.history["loss"], compiled.history["loss"], rtol=rtol,
                               atol=1e-20)
    assert (eager.nit, eager.nfev, eager.njev, eager.nhev) == (
        compiled.nit, compiled.nfev, compiled.njev, compiled.nhev)
    assert (eager.reason, eager.status, eager.success) == (
        compiled.reason, compiled.status, compiled.success)
    np.testing.assert_array_equal(eager.history["nit"], compiled.history["nit"])


@pytest.mark.parametrize("algo", ["lbfgs", "cg", "bfgs", "newton-cg", "trust-ncg", "bb", "gd"])
def test_a_short_run_is_the_compiled_run(algo, monkeypatch, eager_calls):
    eager, compiled = _both_tiers(
        monkeypatch, lambda: flatvec.minimize(lambda x: _rosen(x), _x0(), algo, max_iter=SHORT))
    assert eager_calls, "the short run did not run eagerly"
    calls_after_eager = len(eager_calls)
    _assert_same_run(eager, compiled)
    assert len(eager_calls) == calls_after_eager  # the compiled run stayed compiled


def test_a_run_that_stops_early_reports_the_same_status(monkeypatch, eager_calls):
    # Converges in fewer than SHORT iterations: the stop comes from inside the eager tier.
    quadratic = lambda x: tf.reduce_sum((x - 3.0) ** 2)  # noqa: E731
    eager, compiled = _both_tiers(monkeypatch, lambda: flatvec.minimize(
        lambda x: quadratic(x), tf.zeros([5], tf.float64), "lbfgs", max_iter=SHORT))
    assert eager.reason == flatvec.Status.CONVERGED_GTOL and eager.nit < SHORT
    _assert_same_run(eager, compiled)


def test_a_user_algorithm_with_python_control_flow_runs_eagerly_too(monkeypatch, eager_calls):
    eager, compiled = _both_tiers(monkeypatch, lambda: flatvec.minimize(
        lambda x: _rosen(x), _x0(4), ClippedGradientDescent(), max_iter=SHORT, gtol=0.0))
    assert eager_calls
    _assert_same_run(eager, compiled)


def test_callbacks_see_every_iteration_and_can_stop_in_both_tiers(monkeypatch, eager_calls):
    def run():
        seen = []

        def callback(intermediate):
            seen.append((intermediate.nit, float(intermediate.fun)))
            return intermediate.nit == 7

        res = flatvec.minimize(lambda x: _rosen(x), _x0(), "lbfgs", max_iter=SHORT,
                               callbacks=[callback])
        return res, seen

    (eager, seen_eager), (compiled, seen_compiled) = _both_tiers(monkeypatch, run)
    assert eager_calls
    assert [n for n, _ in seen_eager] == list(range(1, 8)) == [n for n, _ in seen_compiled]
    np.testing.assert_allclose([f for _, f in seen_eager], [f for _, f in seen_compiled],
                               rtol=1e-9)
    assert eager.reason == compiled.reason == flatvec.Status.STOPPED_BY_CALLBACK
    _assert_same_run(eager, compiled)


def test_an_interrupt_leaves_the_variables_at_the_best_point_in_both_tiers(monkeypatch,
                                                                           eager_calls):
    def run():
        v = tf.Variable(_x0(6))

        def interrupt(intermediate):
            if intermediate.nit == 5:
                raise KeyboardInterrupt

        res = flatvec.minimize(lambda: _rosen(v), [v], "lbfgs", max_iter=SHORT,
                               callbacks=[interrupt])
        np.testing.assert_array_equal(v.numpy(), res.x)
        return res

    eager, compiled = _both_tiers(monkeypatch, run)
    assert eager_calls
    assert eager.reason == compiled.reason == flatvec.Status.INTERRUPTED
    _assert_same_run(eager, compiled)


def test_a_checkpointed_eager_run_resumes_compiled_on_the_same_trajectory(tmp_path, monkeypatch,
                                                                         eager_calls):
    fun = lambda x: _valley(x)  # noqa: E731  (one objective: the resumed call compiles its loop)
    first = flatvec.minimize(fun, _x0(50), "lbfgs", max_iter=8, checkpoint=tmp_path / "run",
                             checkpoint_every=4)
    assert eager_calls and first.nit == 8
    calls = len(eager_calls)
    monkeypatch.setattr(tiers, "ENABLED", False)  # the resumed run compiles
    resumed = flatvec.minimize(fun, _x0(50), "lbfgs", max_iter=60, checkpoint=tmp_path / "run")
    assert len(eager_calls) == calls
    straight = flatvec.minimize(lambda x: _valley(x), _x0(50), "lbfgs", max_iter=60)
    assert straight.nit == 60
    np.testing.assert_allclose(resumed.x, straight.x, rtol=1e-8)
    assert (resumed.nit, resumed.nfev) == (straight.nit, straight.nfev)
    np.testing.assert_allclose(resumed.history["loss"], straight.history["loss"][8:], rtol=1e-8)


def test_an_eager_run_that_outlasts_its_prediction_switches_to_the_compiled_loop(
        monkeypatch, eager_calls):
    # A rent of 5 ms an iteration against a set-up of 0.1 s: break-even at 20 iterations. A
    # quadratic of the same size ends by itself (eagerly) and predicts the valley run,
    # which starts eagerly, outlasts the prediction and switches once it has paid 0.1 s of
    # rent. (The rent is fixed, not measured.)
    monkeypatch.setattr(tiers.TierPlan, "_rent", lambda self: 0.005)
    monkeypatch.setattr(tiers, "HOST_START_SECONDS", 0.0)
    monkeypatch.setattr(tiers, "COMPILE_SECONDS", 0.1)
    short = flatvec.minimize(lambda x: tf.reduce_sum((x - 1.0) ** 2), _x0(50), "lbfgs",
                             max_iter=10)
    assert eager_calls and short.success and short.nit < 10
    switched = flatvec.minimize(lambda x: _valley(x), _x0(50), "lbfgs", max_iter=60)
    assert eager_calls and sum(eager_calls) < switched.nit == 60  # both tiers ran
    # The quadratic paid 0.005 s a step eagerly; the rest of the 0.1 s, the valley's eager steps.
    assert sum(eager_calls) >= 20 - short.nit
    monkeypatch.setattr(tiers, "ENABLED", False)
    calls = len(eager_calls)
    compiled = flatvec.minimize(lambda x: _valley(x), _x0(50), "lbfgs", max_iter=60)
    assert len(eager_calls) == calls
    # Rounding apart: the eager steps ran on the host (NumPy's inner products).
    _assert_same_run(switched, compiled, rtol=1e-7)


def test_a_run_is_predicted_by_the_last_run_of_its_kind(monkeypatch, eager_calls):
    # The first run (default max_iter) compiles; the next run of lbfgs on a problem of the
    # same size and dtype (another function: no compiled loop to share) is predicted to be as
    # short, and runs eagerly; one of another size compiles.
    # (Eager iterations priced low: the prediction, not the machine's speed, decides here.)
    monkeypatch.setattr(tiers.TierPlan, "_rent", lambda self: 0.001)
    scales = tf.constant(np.linspace(1.0, 10.0, 10), tf.float64)
    first = flatvec.minimize(lambda x: tf.reduce_sum(scales * (x - 1.0) ** 2), _x0(), "lbfgs")
    assert not eager_calls and first.nit < 20
    second = flatvec.minimize(lambda x: tf.reduce_sum(scales * (x - 2.0) ** 2), _x0(), "lbfgs")
    assert eager_calls and second.success
    np.testing.assert_allclose(second.x, 2.0, rtol=1e-5)
    calls = len(eager_calls)
    flatvec.minimize(lambda x: tf.reduce_sum((x - 2.0) ** 2), _x0(12), "lbfgs")
    assert len(eager_calls) == calls


def test_a_kind_compiles_once_its_runs_have_paid_the_set_up_in_rent(monkeypatch, eager_calls):
    # Rent 5 ms an iteration, set-up 0.1 s: runs of 8 iterations pay 0.04 s each. Two run
    # eagerly; the third would bring the kind's rent past the set-up, and compiles. (The
    # rent is fixed: the measured one of an iteration on the host is some 1 ms here.)
    monkeypatch.setattr(tiers.TierPlan, "_rent", lambda self: 0.005)
    monkeypatch.setattr(tiers, "HOST_START_SECONDS", 0.0)
    monkeypatch.setattr(tiers, "COMPILE_SECONDS", 0.1)
    counts = []
    for shift in (0.0, 0.1, 0.2):
        res = flatvec.minimize(lambda x, s=shift: _rosen(x + s), _x0(), "lbfgs", max_iter=8)
        assert res.nit == 8
        counts.append(len(eager_calls))
    assert counts[0] > 0 and counts[1] > counts[0] and counts[2] == counts[1]


def test_limits_bound_the_predicted_length(monkeypatch, eager_calls):
    # The default rent, not the measured one (on the host some 1 ms here: 100 iterations
    # would run eagerly).
    monkeypatch.setattr(tiers.TierPlan, "_rent", lambda self: tiers.EAGER_RENT_SECONDS)
    flatvec.minimize(lambda x: _rosen(x), _x0(), "lbfgs", max_eval=SHORT)
    assert eager_calls
    calls = len(eager_calls)
    flatvec.minimize(lambda x: _rosen(x), _x0(), "lbfgs", max_iter=100, gtol=0.0, ftol=0.0,
                     initial_state=None)
    assert len(eager_calls) == calls  # 100 iterations: compiled


def test_xla_runs_stay_compiled(eager_calls):
    res = flatvec.minimize(lambda x: _rosen(x), _x0(), "lbfgs", max_iter=5, jit_compile=True)
    assert res.nit == 5 and not eager_calls


@pytest.mark.parametrize("solver", ["dense", "cg"])
def test_a_short_least_squares_run_is_the_compiled_run(solver, monkeypatch, eager_calls):
    # Levenberg-Marquardt's start is traced (the dense matrix); its iterations run eagerly.
    t = tf.linspace(tf.constant(0.0, tf.float64), 1.0, 30)
    y = 2.0 * tf.exp(-1.5 * t) + 0.1 * tf.sin(7.0 * t)

    def run():
        objective = flatvec.Objective.from_residuals(lambda p: p[0] * tf.exp(-p[1] * t) - y)
        # 10 iterations: beyond them the loss plateaus, where the CG path's rounding (below)
        # decides when the ftol test holds.
        return flatvec.minimize(objective, tf.constant([1.0, 1.0], tf.float64), "lm",
                                solver=solver, max_iter=10, gtol=0.0)

    eager, compiled = _both_tiers(monkeypatch, run)
    assert eager_calls
    # Truncated CG's inner sums round differently op by op than in the graph (1e-9 apart).
    _assert_same_run(eager, compiled, rtol=1e-9 if solver == "dense" else 1e-7)
    assert bool(eager.state.dense) == (solver == "dense")


def test_the_eager_tier_has_a_switch(monkeypatch, eager_calls):
    monkeypatch.setenv("FLATVEC_EAGER_TIER", "0")
    res = flatvec.minimize(lambda x: _rosen(x), _x0(), "lbfgs", max_iter=SHORT)
    assert res.nit == SHORT and not eager_calls


def test_a_host_run_whose_algebra_is_slow_switches_after_a_few_iterations(monkeypatch,
                                                                          eager_calls):
    """The rent of a host iteration is half its measured time outside the objective (before a
    compiled iteration of the kind is measured): 20 ms of algebra an iteration against a
    set-up of 0.1 s switches after some 10 iterations, not after the default rent's 50."""
    import time

    monkeypatch.setattr(tiers, "COMPILE_SECONDS", 0.1)
    monkeypatch.setattr(tiers, "HOST_START_SECONDS", 0.0)
    original = CompiledLoop._one_step

    def slow_algebra(self, carry, rule):
        result = original(self, carry, rule)
        if isinstance(carry.state.x, np.ndarray):
            time.sleep(0.02)  # outside the objective's functions
        return result

    monkeypatch.setattr(CompiledLoop, "_one_step", slow_algebra)
    res = flatvec.minimize(lambda x: _valley(x), _x0(50), "lbfgs", max_iter=40, gtol=0.0,
                           ftol=0.0)
    assert res.nit == 40
    assert tiers.MEASURED_ITERATIONS <= sum(eager_calls) <= 15  # default rent 2 ms: 50
