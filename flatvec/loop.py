"""The compiled iteration: algorithm step, stopping tests and best-point tracking in one graph."""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf

from flatvec.algorithm import Algorithm
from flatvec.objective import Objective
from flatvec.status import Status

__all__ = ["Carry", "StopRule", "build_loop"]


class StopRule(NamedTuple):
    """Stopping tests, evaluated in graph after every step."""

    gtol: float
    ftol: float
    max_iter: int
    max_eval: int  # 0: no limit


class Carry(NamedTuple):
    """What passes from one compiled call to the next."""

    state: Any  # the algorithm's State NamedTuple
    best_x: tf.Tensor
    best_f: tf.Tensor
    best_g: tf.Tensor
    nit: tf.Tensor  # int64
    status: tf.Tensor  # int32, Status


class Report(NamedTuple):
    """Scalars the host reads after each call: one transfer."""

    values: tf.Tensor  # [f, ||g||_inf, step_size, nfev, njev, nhev] as float64
    nit: tf.Tensor
    status: tf.Tensor


def _grad_norm(g: tf.Tensor) -> tf.Tensor:
    return tf.reduce_max(tf.abs(g))


def _status_after_step(
    f_prev: tf.Tensor, state: Any, nit: tf.Tensor, nfev: tf.Tensor, rule: StopRule
) -> tf.Tensor:
    """The first stopping test that holds, or RUNNING. Order matters: failures first."""
    f, g = state.f, state.g
    finite = tf.math.is_finite(f) & tf.reduce_all(tf.math.is_finite(g))
    failed = tf.convert_to_tensor(getattr(state, "failed", False))
    # L-BFGS-B's test; a rise in f (non-monotone rules) is not convergence.
    decrease = f_prev - f
    scale = tf.maximum(tf.maximum(tf.abs(f_prev), tf.abs(f)), tf.ones_like(f))
    ftol_met = (decrease >= 0) & (decrease <= rule.ftol * scale)
    over_eval = (nfev >= rule.max_eval) if rule.max_eval > 0 else tf.constant(False)
    tests = [
        (~finite, Status.NON_FINITE),
        (failed, Status.LINE_SEARCH_FAILED),
        (_grad_norm(g) <= rule.gtol, Status.CONVERGED_GTOL),
        (ftol_met, Status.CONVERGED_FTOL),
        (nit >= rule.max_iter, Status.MAX_ITER),
        (over_eval, Status.MAX_EVAL),
    ]
    status = tf.constant(int(Status.RUNNING), tf.int32)
    for holds, code in reversed(tests):
        status = tf.where(holds, tf.constant(int(code), tf.int32), status)
    return status


def initial_status(f: tf.Tensor, g: tf.Tensor, rule: StopRule) -> tf.Tensor:
    """Status at the start point (non-finite, already converged, or max_iter=0)."""
    finite = tf.math.is_finite(f) & tf.reduce_all(tf.math.is_finite(g))
    status = tf.constant(int(Status.RUNNING), tf.int32)
    if rule.max_iter == 0:
        status = tf.constant(int(Status.MAX_ITER), tf.int32)
    status = tf.where(_grad_norm(g) <= rule.gtol, int(Status.CONVERGED_GTOL), status)
    return tf.where(finite, status, int(Status.NON_FINITE))


def build_loop(
    algorithm: Algorithm,
    objective: Objective,
    rule: StopRule,
    *,
    steps_per_call: int,
    jit_compile: bool,
) -> tuple[Any, Any]:
    """The two compiled functions of a run: ``start(x0) -> (Carry, Report)`` and
    ``advance(carry) -> (Carry, Report)`` (up to ``steps_per_call`` iterations)."""

    def report(carry: Carry) -> Report:
        state = carry.state
        step_size = getattr(state, "step_size", tf.zeros([], state.f.dtype))
        values = tf.stack(
            [
                tf.cast(state.f, tf.float64),
                tf.cast(_grad_norm(state.g), tf.float64),
                tf.cast(step_size, tf.float64),
                tf.cast(objective.nfev, tf.float64),
                tf.cast(objective.njev, tf.float64),
                tf.cast(objective.nhev, tf.float64),
            ]
        )
        return Report(values, carry.nit, carry.status)

    def start(x0: tf.Tensor) -> tuple[Carry, Report]:
        f, g = objective(x0)
        state = algorithm.init(x0, f, g)
        carry = Carry(state, x0, f, g, tf.zeros([], tf.int64), initial_status(f, g, rule))
        return carry, report(carry)

    def one_step(carry: Carry) -> Carry:
        state = algorithm.step(carry.state, objective)
        nit = carry.nit + 1
        status = _status_after_step(carry.state.f, state, nit, objective.nfev, rule)
        better = tf.math.is_finite(state.f) & (state.f < carry.best_f)
        better &= tf.reduce_all(tf.math.is_finite(state.g))
        return Carry(
            state,
            tf.where(better, state.x, carry.best_x),
            tf.where(better, state.f, carry.best_f),
            tf.where(better, state.g, carry.best_g),
            nit,
            status,
        )

    def advance(carry: Carry) -> tuple[Carry, Report]:
        if steps_per_call == 1:
            carry = one_step(carry)
        else:
            def cond(i: tf.Tensor, c: Carry) -> tf.Tensor:
                return (i < steps_per_call) & (c.status == int(Status.RUNNING))

            def body(i: tf.Tensor, c: Carry) -> tuple[tf.Tensor, Carry]:
                return i + 1, one_step(c)

            _, carry = tf.while_loop(cond, body, (tf.constant(0), carry))
        return carry, report(carry)

    jit = jit_compile or None
    return tf.function(start, jit_compile=jit), tf.function(advance, jit_compile=jit)
