"""flatvec.vector_ops: both forms of the inner products equal NumPy's, and the XLA-compiled
loop traces the XLA form (no rank-1 dot and no dot over the buffers' leading dimension in
its optimized HLO) while graph mode keeps the MatMul."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from problems import PROBLEMS

import flatvec
from flatvec import vector_ops
from flatvec._run.loop import CompiledLoop
from flatvec._run.stopping import StopRule

ROSENBROCK = PROBLEMS["extended_rosenbrock_100"]


def _both_forms(a: np.ndarray, b: np.ndarray, c: np.ndarray, rows: np.ndarray, xla: bool):
    def products(a, b, c, rows):
        with vector_ops.xla_scope(xla):
            assert vector_ops.traced_for_xla() == xla
            return vector_ops.dot(a, b), vector_ops.combine_rows(c, rows)

    compiled = tf.function(products, jit_compile=xla or None, autograph=False)
    return [t.numpy() for t in compiled(*map(tf.constant, (a, b, c, rows)))]


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 300), m=st.integers(1, 12), seed=st.integers(0, 2**31 - 1),
       xla=st.booleans())
def test_dot_and_combine_rows_equal_numpy_in_either_form(n, m, seed, xla):
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=n), rng.normal(size=n), rng.normal(size=m)
    rows = rng.normal(size=(m, n))
    got_dot, got_rows = _both_forms(a, b, c, rows, xla)
    # Sums in another order: rounding relative to the sum of |terms|.
    assert abs(got_dot - a @ b) <= 1e-13 * (np.abs(a) @ np.abs(b) + 1e-300)
    bound = 1e-13 * (np.abs(c) @ np.abs(rows)) + 1e-300
    assert np.all(np.abs(got_rows - c @ rows) <= bound)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5000), seed=st.integers(0, 2**31 - 1), scale=st.floats(-3.0, 3.0),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_the_norm_of_a_numpy_array_is_tensorflows_bit_for_bit(n, seed, scale, dtype):
    # The host start's first step is scaled by it; a compiled run from that start must be the
    # run a start on tensors gives (NumPy's own sum differs in the last bit for about half of
    # random vectors).
    a = (np.random.default_rng(seed).normal(size=n) * 10.0**scale).astype(dtype)
    got = vector_ops.norm(a)
    assert got.dtype == dtype and got == tf.norm(tf.constant(a)).numpy()


def test_the_scope_is_off_outside_it_and_restored_after_nesting():
    assert not vector_ops.traced_for_xla()
    with vector_ops.xla_scope():
        with vector_ops.xla_scope(False):
            assert not vector_ops.traced_for_xla()
        assert vector_ops.traced_for_xla()
    assert not vector_ops.traced_for_xla()


def _advance_hlo(monkeypatch: pytest.MonkeyPatch, xla_form: bool) -> str:
    if not xla_form:
        monkeypatch.setattr(vector_ops, "traced_for_xla", lambda: False)
    objective = flatvec.Objective.from_function(ROSENBROCK.fun, dtype=tf.float64,
                                                size=ROSENBROCK.x0.size)
    loop = CompiledLoop(flatvec.get_algorithm("lbfgs", memory=4), objective, jit_compile=True)
    loop.start(tf.constant(ROSENBROCK.x0), StopRule(0.0, 0.0, 1000, 0))
    loop.advance()
    return loop.advance_function.experimental_get_compiler_ir()(stage="optimized_hlo")


@pytest.mark.parametrize("xla_form", [True, False])
def test_the_xla_loop_traces_the_xla_form(monkeypatch, xla_form):
    # XLA's CPU backend runs a rank-1 dot as one sequential chain and a dot over the leading
    # dimension of [m, n] slowly (flatvec.vector_ops); the loop must trace the reductions.
    # The control (the scope ignored) shows the test sees those dots where they are traced.
    hlo = _advance_hlo(monkeypatch, xla_form)
    n = ROSENBROCK.x0.size
    rank1 = [line for line in hlo.splitlines() if "= f64[] dot(" in line]
    over_rows = [line for line in hlo.splitlines() if f"= f64[{n}]{{0}} dot(" in line]
    if xla_form:
        assert rank1 == [] and over_rows == []
    else:
        assert rank1 and over_rows
