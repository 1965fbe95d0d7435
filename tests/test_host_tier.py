"""The eager tier on the host: an algorithm that declares ``runs_on_host`` (L-BFGS with
Moré–Thuente) runs its eager iterations on NumPy arrays, TensorFlow only inside the objective.
The truth is the compiled run of the same problem (the same iterates to rounding, the same
counts and statuses) and TensorFlow's own kernels for the host's products."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from flatvec.algorithms.backtracking import Backtracking
from flatvec.algorithms.bfgs import BFGS
from flatvec.algorithms.cg import ConjugateGradient
from flatvec.algorithms.lbfgs import LBFGS
from hypothesis import given, settings
from hypothesis import strategies as st

import flatvec
from flatvec import buffers, scalar_ops, vector_ops
from flatvec._run import tiers
from flatvec._run.loop import CompiledLoop
from flatvec.oracle import Oracle


@pytest.fixture
def carries(monkeypatch, tiers_on):
    """The type of ``x`` in each eager step of the test (tiers on: conftest's ``tiers_on``)."""
    seen = []
    original = CompiledLoop._one_step

    def recorded(self, carry, rule):
        if tf.executing_eagerly():
            seen.append(type(carry.state.x))
        return original(self, carry, rule)

    monkeypatch.setattr(CompiledLoop, "_one_step", recorded)
    return seen


def _compiled(monkeypatch, run):
    monkeypatch.setattr(tiers, "ENABLED", False)
    try:
        return run()
    finally:
        monkeypatch.setattr(tiers, "ENABLED", True)


def _assert_same_run(host, compiled, rtol, loss_floor=0.0):
    """The same run to ``rtol``; losses below ``loss_floor`` times the first differ by
    rounding of the sums that make them (float32: 1e-9 of the start's 187 is 2e-7)."""
    np.testing.assert_allclose(host.x, compiled.x, rtol=rtol, atol=rtol * 1e-3)
    losses = compiled.history["loss"]
    np.testing.assert_allclose(host.history["loss"], losses, rtol=rtol,
                               atol=loss_floor * abs(losses[0]))
    assert (host.nit, host.nfev, host.njev, host.nhev, host.nonfinite_evals) == (
        compiled.nit, compiled.nfev, compiled.njev, compiled.nhev, compiled.nonfinite_evals)
    assert (host.status, host.success) == (compiled.status, compiled.success)
    # Each iteration's counts (the host's tally of the oracle's calls, checked once a block).
    assert host.history["nfev"] == compiled.history["nfev"]


def test_the_quasi_newton_and_cg_methods_declare_it_and_others_do_not():
    assert LBFGS().runs_on_host and LBFGS(line_search="strong_wolfe").runs_on_host
    assert BFGS().runs_on_host and BFGS(line_search="more_thuente").runs_on_host
    assert ConjugateGradient().runs_on_host and ConjugateGradient(beta="hz").runs_on_host
    # A rule of the user's may be TensorFlow code; so may a search the host cannot run.
    assert not ConjugateGradient(beta=lambda g_new, g, d, y: tf.zeros([], g.dtype)).runs_on_host
    assert not LBFGS(line_search=Backtracking()).runs_on_host
    assert not flatvec.get_algorithm("newton-cg").runs_on_host


# (algorithm, options): the methods that run on the host, with their searches and rules.
HOST_METHODS = [("lbfgs", {}), ("lbfgs", {"line_search": "strong_wolfe"}), ("bfgs", {}),
                ("bfgs", {"line_search": "more_thuente", "first_trial": "scipy",
                          "scale_h0": False}),
                ("cg", {}), ("cg", {"beta": "hz"}), ("cg", {"beta": "fr"}),
                ("cg", {"line_search": "more_thuente", "c2": 0.4, "max_first_step": 1.0,
                        "descent_check": 0.01})]


@pytest.mark.parametrize("algo, options", HOST_METHODS)
@pytest.mark.parametrize("dtype, rtol, loss_floor", [(tf.float64, 1e-9, 0.0),
                                                     (tf.float32, 2e-4, 1e-9)])
def test_a_short_run_on_the_host_is_the_compiled_run(monkeypatch, carries, algo, options,
                                                     dtype, rtol, loss_floor):
    scales = tf.constant(np.linspace(1.0, 30.0, 12), dtype)

    def run():
        fun = lambda x: tf.reduce_sum(scales * (x - 1.0) ** 2 + 0.1 * (x - 1.0) ** 4)  # noqa: E731
        return flatvec.minimize(fun, tf.zeros([12], dtype), algo, max_iter=15, gtol=0.0,
                                ftol=0.0, **options)

    host = run()
    assert carries and all(t is np.ndarray for t in carries)
    _assert_same_run(host, _compiled(monkeypatch, run), rtol, loss_floor)
    assert host.x.dtype == dtype.as_numpy_dtype


def test_non_finite_trials_are_counted_on_the_host(monkeypatch, carries):
    # A barrier at x = 1: the first trial steps land past it (NaN) and the search steps back.
    def run():
        fun = lambda x: tf.reduce_sum(x**2 - 4.0 * x - tf.math.log(1.0 - x))  # noqa: E731
        return flatvec.minimize(fun, tf.fill([6], tf.constant(-3.0, tf.float64)), "lbfgs",
                                max_iter=20)

    host = run()
    assert carries and host.nonfinite_evals > 0 and host.success
    _assert_same_run(host, _compiled(monkeypatch, run), 1e-9)


def run_interrupted_at_sixth_evaluation():
    """L-BFGS on a weighted quadratic whose 6th evaluation raises SIGINT: the result, the
    evaluations made, the variable. The signal is raised by the oracle's call on the host,
    in the main thread, as the evaluation returns: nothing depends on timing or on which
    thread receives it (from a ``tf.py_function`` inside the objective it came from whichever
    TensorFlow thread ran that op). What the process does with it is its SIGINT action:
    Python's handler, or the one a test sets."""
    v = tf.Variable(tf.fill([8], tf.constant(-1.0, tf.float64)))
    calls = []
    evaluate = Oracle._call

    def signal_at_sixth(self, *args):
        result = evaluate(self, *args)
        calls.append(1)
        if len(calls) == 6:
            signal.raise_signal(signal.SIGINT)
        return result

    def loss():
        return tf.reduce_sum((v - 2.0) ** 2 * tf.range(1.0, 9.0, dtype=tf.float64))

    # Every iteration on the host (no rent, so no switch to the compiled loop, whatever this
    # process measured): a SIGINT the compiled loop meets is another test's.
    with (mock.patch.object(Oracle, "_call", signal_at_sixth),
          mock.patch.object(tiers.TierPlan, "_rent", lambda self: 0.0)):
        res = flatvec.minimize(loss, [v], "lbfgs", max_iter=15, gtol=0.0, ftol=0.0)
    return res, calls, v


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler (KeyboardInterrupt) for the test, whatever the process
    inherited: a process started in the background (a CI runner's) ignores SIGINT, and an
    eager block then drops a held Ctrl-C as the process asked (the next test checks that)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_ends_the_eager_block_after_a_whole_iteration(monkeypatch, carries,
                                                              python_sigint_handler):
    # The run ends after the iteration the signal interrupted, with the model's variables at
    # the best point of the iterations it completed.
    res, calls, v = run_interrupted_at_sixth_evaluation()
    assert carries and res.reason == flatvec.Status.INTERRUPTED
    assert 1 <= res.nit < 15 and len(calls) == res.nfev
    assert res.history["nfev"][-2] < 6 <= res.history["nfev"][-1]  # the interrupted iteration
    np.testing.assert_array_equal(v.numpy(), res.x)
    w = tf.Variable(tf.fill([8], tf.constant(-1.0, tf.float64)))
    straight = _compiled(monkeypatch, lambda: flatvec.minimize(
        lambda: tf.reduce_sum((w - 2.0) ** 2 * tf.range(1.0, 9.0, dtype=tf.float64)), [w],
        "lbfgs", max_iter=res.nit, gtol=0.0, ftol=0.0))
    np.testing.assert_allclose(res.x, straight.x, rtol=1e-12)
    assert res.nfev == straight.nfev


def test_the_numpy_kind_is_used_inside_on_host_only():
    assert scalar_ops.for_context() is scalar_ops.HOST
    with scalar_ops.on_host():
        assert scalar_ops.for_context() is scalar_ops.NUMPY
        assert tf.function(lambda: tf.constant(
            scalar_ops.for_context() is scalar_ops.TRACED))()
        with scalar_ops.on_host(False):
            assert scalar_ops.for_context() is scalar_ops.HOST
    assert scalar_ops.for_context() is scalar_ops.HOST


@settings(max_examples=25)
@given(m=st.integers(1, 6), n=st.integers(1, 300), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_products_on_numpy_arrays_are_tensorflows_to_rounding(m, n, seed, dtype):
    rng = np.random.default_rng(seed)
    rows, v, c = (rng.standard_normal(shape).astype(dtype) for shape in ((m, n), (n,), (m,)))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    atol = rtol * np.sqrt(n) * 10

    def close(host, traced):
        assert isinstance(host, np.ndarray | np.generic) and host.dtype == dtype
        np.testing.assert_allclose(host, traced.numpy(), rtol=rtol, atol=atol)

    close(vector_ops.dot(v, v), vector_ops.dot(tf.constant(v), tf.constant(v)))
    close(vector_ops.combine_rows(c, rows),
          vector_ops.combine_rows(tf.constant(c), tf.constant(rows)))
    close(vector_ops.matvec(rows, v), vector_ops.matvec(tf.constant(rows), tf.constant(v)))
    close(vector_ops.max_abs(v), vector_ops.max_abs(tf.constant(v)))
    v[rng.integers(n)] = np.nan
    assert vector_ops.all_finite(v) == vector_ops.all_finite(tf.constant(v)).numpy() == False  # noqa: E712


@pytest.mark.parametrize("adjoint", [False, True])
def test_the_numpy_kinds_triangular_solve_is_tensorflows(rng, adjoint):
    r = np.triu(rng.standard_normal((5, 5))) + 4.0 * np.eye(5)
    b = rng.standard_normal((5, 1))
    got = scalar_ops.NUMPY.triangular_solve(r, b, lower=False, adjoint=adjoint)
    want = tf.linalg.triangular_solve(r, b, lower=False, adjoint=adjoint).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13)
    np.testing.assert_allclose((r.T if adjoint else r) @ got, b, rtol=1e-12)


def test_rows_are_written_into_numpy_buffers_where_kept():
    s, y = np.zeros((3, 4)), np.ones((3, 4))
    out = buffers.write_rows((s, y), np.int32(1), (np.full(4, 2.0), np.full(4, 3.0)),
                             keep=np.bool_(True))
    assert out[0] is s and out[1] is y
    np.testing.assert_array_equal(s[1], 2.0)
    np.testing.assert_array_equal(y[1], 3.0)
    buffers.write_rows((s, y), np.int32(2), (np.full(4, 5.0), np.full(4, 5.0)),
                       keep=np.bool_(False))
    np.testing.assert_array_equal(s[2], 0.0)
    np.testing.assert_array_equal(y[2], 1.0)


def test_the_start_on_the_host_leaves_a_compiled_run_bit_for_bit_as_it_was(monkeypatch):
    # A compiled L-BFGS run starts from a start evaluated on the host (NumPy arrays); the same
    # run with the start on tensors (as before the host tier) must give the same bits: the
    # first step's scale is TensorFlow's norm in both.
    # (A start whose gradient's norm by NumPy differs from TensorFlow's in the last bit, as
    # for about half of random vectors: with NumPy's norm on the host this test fails.)
    monkeypatch.setattr(tiers, "ENABLED", False)
    scales = tf.constant(np.linspace(1.0, 30.0, 200), tf.float64)
    x0 = tf.constant(np.random.default_rng(4).standard_normal(200))

    def run():
        fun = lambda x: tf.reduce_sum(scales * (x - 1.0) ** 2 + 0.1 * (x - 1.0) ** 4)  # noqa: E731
        return flatvec.minimize(fun, x0, "lbfgs", max_iter=25, gtol=0.0, ftol=0.0)

    on_host = run()
    monkeypatch.setattr(CompiledLoop, "runs_on_host", property(lambda self: False))
    on_tensors = run()
    np.testing.assert_array_equal(on_host.x, on_tensors.x)
    np.testing.assert_array_equal(on_host.history["loss"], on_tensors.history["loss"])
    assert (on_host.nit, on_host.nfev) == (on_tensors.nit, on_tensors.nfev)


def test_a_run_on_the_host_makes_no_variable_and_a_compiled_one_continues_its_counts(
        monkeypatch, carries):
    # The loop's settings and counters stay NumPy values on the host (each new dtype's first
    # tensor costs TensorFlow some 4.5 ms); compiled code makes its variables from them.
    fun = lambda x: tf.reduce_sum(x**2 - 4.0 * x - tf.math.log(1.0 - x))  # noqa: E731
    objective = flatvec.Objective.from_function(fun, dtype=tf.float64, size=6)
    x0 = tf.fill([6], tf.constant(-3.0, tf.float64))
    made = []

    def record(next_creator, **kwargs):
        made.append(kwargs.get("name"))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(record):
        host = flatvec.minimize(objective, x0, "lbfgs", max_iter=20)
    assert carries and host.nonfinite_evals > 0 and host.success
    assert made == []
    # The same objective's loop, now compiled: the non-finite count starts from zero again
    # and is the compiled run's own (the variable made from the host's value).
    compiled = _compiled(monkeypatch, lambda: flatvec.minimize(objective, x0, "lbfgs",
                                                               max_iter=20))
    assert compiled.nonfinite_evals == host.nonfinite_evals
    assert (compiled.nit, compiled.nfev) == (host.nit, host.nfev)


def test_a_lazy_variable_is_made_from_the_host_value_and_read_from_then_on():
    from flatvec._lazy_variable import LazyVariable

    lazy = LazyVariable([0, 0], np.int64)
    lazy.assign_add([0, 2])
    lazy.assign_add([1, 0])
    assert not lazy.exists and lazy.numpy().tolist() == [1, 2]
    np.testing.assert_array_equal(lazy.variable.numpy(), [1, 2])
    tf.function(lambda: lazy.variable.assign_add(tf.constant([3, 3], tf.int64)))()
    assert lazy.numpy().tolist() == [4, 5]  # what compiled code counted
    lazy.assign([7, 8])
    assert lazy.variable.numpy().tolist() == [7, 8] and lazy.numpy().dtype == np.int64


@pytest.mark.parametrize("handler, code", [("SIG_DFL", -signal.SIGINT), ("SIG_IGN", 0)])
def test_a_ctrl_c_held_by_an_eager_block_gets_the_action_the_process_had_set(handler, code):
    # Where SIGINT's action is the default one (the process ends) or ignoring it, the eager
    # block holds it as it holds Python's handler, then does what the process had set.
    script = f"""
import signal
from test_host_tier import run_interrupted_at_sixth_evaluation
signal.signal(signal.SIGINT, signal.{handler})
res, calls, v = run_interrupted_at_sixth_evaluation()
assert len(calls) > 6, len(calls)
"""
    env = {**os.environ, "FLATVEC_EAGER_TIER": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=os.path.dirname(__file__),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == code, done.stderr[-2000:]


def _quartic(dtype=tf.float64):
    scales = tf.constant(np.linspace(1.0, 30.0, 12), dtype)
    return lambda x: tf.reduce_sum(scales * (x - 1.0) ** 2 + 0.1 * (x - 1.0) ** 4)


def test_a_host_run_reads_the_objectives_counters_once_a_block(monkeypatch, carries):
    """The iterations' counts come from the oracle's tally of its calls; the counters are read
    at each block's start and end (the check), not once an iteration."""
    from flatvec._run import loop

    reads, blocks = [], []
    original_read, original_block = loop.counter_values, CompiledLoop.advance_eagerly
    monkeypatch.setattr(loop, "counter_values", lambda obj: reads.append(1) or original_read(obj))
    monkeypatch.setattr(CompiledLoop, "advance_eagerly",
                        lambda self, n: blocks.append(n) or original_block(self, n))
    res = flatvec.minimize(_quartic(), tf.zeros([12], tf.float64), "lbfgs", max_iter=20,
                           gtol=0.0, ftol=0.0)
    assert res.nit == 20 and len(carries) == 20 and len(blocks) < 20
    assert len(reads) <= 2 * len(blocks) + 2  # (+ the start's report row and the result)


class _CountsTwice(flatvec.Objective):
    """An objective that counts each evaluation twice (its own way of counting)."""

    def __call__(self, x):
        self.nfev.assign_add(1)
        return super().__call__(x)


def test_an_objective_that_counts_its_own_way_keeps_its_counts(monkeypatch, carries):
    """Where the tally misses the objective's counters, the block's last row and the result
    take the counters' values, and later blocks read them every iteration: the compiled run's
    counts, row by row from the end of the first block on."""
    blocks = []
    original_block = CompiledLoop.advance_eagerly

    def recorded(self, n):
        report = original_block(self, n)
        blocks.append(len(report.records()))
        return report

    monkeypatch.setattr(CompiledLoop, "advance_eagerly", recorded)

    def run():
        objective = _CountsTwice(space=None, dtype=tf.float64, size=12, fun=_quartic())
        return flatvec.minimize(objective, tf.zeros([12], tf.float64), "lbfgs", max_iter=20,
                                gtol=0.0, ftol=0.0)

    host = run()
    compiled = _compiled(monkeypatch, run)
    assert carries and len(blocks) > 1 and host.nfev == compiled.nfev == 2 * host.njev
    first_block_end = blocks[0]  # (the history's row 0 is the start)
    assert host.history["nfev"][first_block_end:] == compiled.history["nfev"][first_block_end:]
    np.testing.assert_allclose(host.x, compiled.x, rtol=1e-9)


@pytest.mark.parametrize("structure", ["tensor", "namedtuple", "tuple", "nested"])
def test_host_values_keep_the_outputs_structure_as_read_only_views(structure):
    """The oracle's host results: each output tensor as a read-only NumPy view with its
    values, in the structure the compiled function returned (tf.nest's, for any other)."""
    from flatvec.objective import ValueAndGradient
    from flatvec.oracle import _host_values

    f, g = tf.constant(2.5, tf.float64), tf.constant([1.0, -np.inf], tf.float64)
    outputs = {"tensor": g, "namedtuple": ValueAndGradient(f, g), "tuple": (f, g),
               "nested": {"a": (f, g)}}[structure]
    result, leaves = _host_values(outputs)
    expected = tf.nest.map_structure(lambda t: t.numpy(), outputs)
    tf.nest.assert_same_structure(result, expected)
    assert type(result) is type(expected)
    for leaf, want in zip(leaves, tf.nest.flatten(expected), strict=True):
        np.testing.assert_array_equal(leaf, want)
        assert np.ndim(leaf) == 0 or not leaf.flags.writeable
