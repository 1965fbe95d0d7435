"""The stopping tests of the compiled loop, evaluated in graph after every step."""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf

from flatvec.status import ALGORITHM_CODE_BASE, Status

__all__ = ["RuleTensors", "StepFaults", "StopRule", "grad_norm", "initial_status",
           "status_after_step"]


class StopRule(NamedTuple):
    """Stopping tests, evaluated in graph after every step."""

    gtol: float
    ftol: float
    max_iter: int
    max_eval: int  # 0: no limit
    ftol_floor: float = 0.0  # the relative-decrease test's least scale (L-BFGS-B: 1)



def grad_norm(g: tf.Tensor) -> tf.Tensor:
    return tf.reduce_max(tf.abs(g))


class RuleTensors(NamedTuple):
    """A :class:`StopRule` as read inside the graph (from the loop's variables)."""

    gtol: tf.Tensor
    ftol: tf.Tensor
    max_iter: tf.Tensor  # int64
    max_eval: tf.Tensor  # int64, 0: no limit
    ftol_floor: tf.Tensor


class StepFaults(NamedTuple):
    """What the oracle's non-finite counters say of one step."""

    bad_products: tf.Tensor  # bool: a curvature product was not finite
    nonfinite_trials: tf.Tensor  # bool: an evaluation of the step was not finite


def status_after_step(
    f_prev: tf.Tensor, state: Any, finite: tf.Tensor, nit: tf.Tensor, evaluations: tf.Tensor,
    rule: RuleTensors, faults: StepFaults, codes: tuple[tuple[int, ...], tuple[int, ...]],
) -> tf.Tensor:
    """The first stopping test that holds, or RUNNING (``finite``: f and g are finite;
    ``evaluations``: nfev + nhev). Order matters: failures first.

    ``faults`` turn a stop into the non-finite status where non-finite values took part: a
    failed step (line search failed, or an unsuccessful stop reason of the algorithm, listed
    in ``codes[0]``) among whose evaluations were non-finite ones (when every trial away from
    x is, the last trials of a failing line search land on x itself, finite but no
    decrease: "all" would never hold); or any unsuccessful stop
    or running state (not convergence, nor a successful stop reason listed in ``codes[1]``)
    after a non-finite curvature product, which no method recovers from."""
    f, g = state.f, state.g
    failed = tf.convert_to_tensor(getattr(state, "failed", False))
    accepted = tf.convert_to_tensor(getattr(state, "accepted", True))
    reason = tf.convert_to_tensor(getattr(state, "stop_reason", 0), tf.int32)
    # L-BFGS-B's test, relative to f itself (its floor of 1 with ftol_floor = 1: it stops a
    # loss of 1e-5 that still falls by 1e-9 an iteration); a rise in f (non-monotone rules)
    # is not convergence, a rejected proposal (f unchanged by construction) is not either,
    # and ftol = 0 is off.
    decrease = f_prev - f
    scale = tf.maximum(tf.maximum(tf.abs(f_prev), tf.abs(f)),
                       tf.cast(rule.ftol_floor, f.dtype))
    ftol = tf.cast(rule.ftol, f.dtype)
    ftol_met = accepted & (ftol > 0) & (decrease >= 0) & (decrease <= ftol * scale)
    over_eval = (rule.max_eval > 0) & (evaluations >= rule.max_eval)
    tests = [
        (~finite, Status.NON_FINITE),
        (failed, Status.LINE_SEARCH_FAILED),
        (grad_norm(g) <= tf.cast(rule.gtol, g.dtype), Status.CONVERGED_GTOL),
        (reason > 0, ALGORITHM_CODE_BASE + reason),
        (ftol_met, Status.CONVERGED_FTOL),
        (nit >= rule.max_iter, Status.MAX_ITER),
        (over_eval, Status.MAX_EVAL),
    ]
    status = tf.constant(int(Status.RUNNING), tf.int32)
    for holds, code in reversed(tests):
        status = tf.where(holds, tf.cast(code, tf.int32), status)
    failures, successes = codes
    failed_stop = tf.reduce_any(
        [status == code for code in (int(Status.LINE_SEARCH_FAILED), *failures)])
    converged = tf.reduce_any([status == code for code in (
        int(Status.CONVERGED_GTOL), int(Status.CONVERGED_FTOL), *successes)])
    nonfinite = (failed_stop & faults.nonfinite_trials) | (faults.bad_products & ~converged)
    return tf.where(nonfinite, int(Status.NON_FINITE), status)


def initial_status(f: tf.Tensor, g: tf.Tensor, rule: RuleTensors) -> tf.Tensor:
    """Status at the start point (non-finite, already converged, or max_iter=0)."""
    finite = tf.math.is_finite(f) & tf.reduce_all(tf.math.is_finite(g))
    status = tf.where(rule.max_iter == 0, int(Status.MAX_ITER), int(Status.RUNNING))
    status = tf.where(grad_norm(g) <= tf.cast(rule.gtol, g.dtype), int(Status.CONVERGED_GTOL),
                      status)
    return tf.where(finite, status, int(Status.NON_FINITE))
