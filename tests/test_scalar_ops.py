"""Code written once on flatvec.scalar_ops runs on host values eagerly and on tensors traced:
L-BFGS's compact form, its memory update and the stopping tests give the same bits both ways
(Moré–Thuente's trials: tests/test_line_search.py)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
import tensorflow as tf
from flatvec.algorithms.lbfgs import LBFGSDirection, LBFGSMemory, inverse_hessian_product
from flatvec.algorithms.line_search import LineSearchResult, Restarted
from hypothesis import given, settings
from hypothesis import strategies as st

from flatvec import scalar_ops
from flatvec._run.stopping import RuleTensors, StepFaults, status_after_step
from flatvec.status import ALGORITHM_CODE_BASE


def _assert_same_bits(host, traced):
    for got, want in zip(tf.nest.flatten(host), tf.nest.flatten(traced), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def _memory(rng, dtype, m=5, n=7, pushed=7):
    """Ring buffers filled as L-BFGS fills them (pair i in slot i mod m), products included."""
    s_buf, y_buf = np.zeros((m, n)), np.zeros((m, n))
    for i in range(pushed):
        s = rng.standard_normal(n)
        s_buf[i % m], y_buf[i % m] = s, s + 0.3 * rng.standard_normal(n)
    g = rng.standard_normal(n)
    mem = LBFGSMemory(s_buf, y_buf, s_buf @ y_buf.T, y_buf @ y_buf.T, s_buf @ g, y_buf @ g,
                      pushed % m, min(pushed, m), 0.7)
    cast = [tf.constant(v, dtype) for v in mem[:6]] + [
        tf.constant(mem.head, tf.int32), tf.constant(mem.count, tf.int32),
        tf.constant(mem.gamma, dtype)]
    return LBFGSMemory(*cast), tf.constant(g, dtype)


def test_the_kind_follows_the_context():
    assert scalar_ops.for_context() is scalar_ops.HOST
    assert tf.function(lambda: tf.constant(scalar_ops.for_context() is scalar_ops.TRACED))()


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("pushed", [0, 1, 3, 5, 9])
def test_lbfgs_direction_on_host_values_is_the_traced_one(rng, dtype, pushed):
    mem, g = _memory(rng, dtype, pushed=pushed)

    def product(g, *mem):
        return inverse_hessian_product(g, *mem)

    _assert_same_bits(product(g, *mem), tf.function(product)(g, *mem))


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("case", ["kept", "not_positive", "restarted", "no_move"])
def test_lbfgs_memory_update_on_host_values_is_the_traced_one(rng, dtype, case):
    mem, g = _memory(rng, dtype, pushed=3 if case != "restarted" else 7)
    n = g.shape[0]
    x = tf.constant(rng.standard_normal(n), dtype)
    step = 0.0 if case == "no_move" else 0.5
    d = -g if case != "not_positive" else g  # s'y < 0 along an ascent step of a quadratic
    x_new = x + step * d
    g_new = g + 2.0 * step * d  # the gradient of |x|^2 moved along d
    found = Restarted(
        LineSearchResult(tf.constant(step, dtype), x_new, tf.constant(1.0, dtype),
                         g_new if case != "not_positive" else g - 2.0 * step * d,
                         tf.constant(2, tf.int32), tf.constant(True)),
        tf.constant(case == "restarted"), tf.constant(2, tf.int32))
    direction = LBFGSDirection(memory=5)

    def update(mem, x, g, found):
        return direction.update(mem, x, tf.constant(0.0, dtype), g, found, None)

    host = update(mem, x, g, found)
    _assert_same_bits(host, tf.function(update)(mem, x, g, found))
    kept = case in ("kept", "restarted")
    assert int(host.count) == (1 if case == "restarted" else 3 + kept)


class _State(NamedTuple):
    f: tf.Tensor
    g: tf.Tensor
    failed: tf.Tensor
    accepted: tf.Tensor
    stop_reason: tf.Tensor


_VALUES = st.sampled_from([0.0, 1e-12, 0.5, 1.0, 1.0 + 1e-9, 3.0, -2.0, math.inf, -math.inf,
                           math.nan])


@settings(max_examples=60, deadline=None)
@given(f_prev=_VALUES, f=_VALUES, g=st.lists(_VALUES, min_size=2, max_size=2),
       flags=st.lists(st.booleans(), min_size=5, max_size=5),
       reason=st.integers(0, 2), nit=st.integers(1, 6), evaluations=st.integers(0, 9),
       gtol=st.sampled_from([0.0, 1e-5, 1.0]), ftol=st.sampled_from([0.0, 1e-8, 0.5]),
       max_eval=st.integers(0, 6))
def test_stopping_tests_on_host_scalars_are_the_traced_ones(
        f_prev, f, g, flags, reason, nit, evaluations, gtol, ftol, max_eval):
    # Every stop reason and the non-finite overrides, host (eager) against traced.
    failed, accepted, finite, bad_products, nonfinite_trials = flags
    state = _State(tf.constant(f, tf.float64), tf.constant(g, tf.float64), tf.constant(failed),
                   tf.constant(accepted), tf.constant(reason, tf.int32))
    rule = RuleTensors(tf.constant(gtol, tf.float64), tf.constant(ftol, tf.float64),
                       tf.constant(5, tf.int64), tf.constant(max_eval, tf.int64),
                       tf.constant(1.0, tf.float64))
    faults = StepFaults(tf.constant(bad_products), tf.constant(nonfinite_trials))
    args = (tf.constant(f_prev, tf.float64), state, tf.constant(finite),
            tf.constant(nit, tf.int64), tf.constant(evaluations, tf.int64), rule, faults)
    codes = ((ALGORITHM_CODE_BASE + 2,), (ALGORITHM_CODE_BASE + 1,))

    def status(*args):
        return status_after_step(*args, codes)

    with np.errstate(all="ignore"):  # as the eager tier runs them
        host = status(*args)
    assert host.dtype == tf.int32
    assert int(host) == int(tf.function(status)(*args))
