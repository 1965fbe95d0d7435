"""The stopping tests after every step: traced into the compiled loop, or on host scalars in
the eager tier (written once on :mod:`flatvec.scalar_ops`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf

from flatvec import scalar_ops, vector_ops
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
    """The infinity norm of a gradient (a tensor, or a NumPy array on the host)."""
    return vector_ops.max_abs(g)


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
    ops = scalar_ops.for_context()  # eagerly (the eager tier): on host scalars
    f, f_prev = ops.value(state.f), ops.value(f_prev)
    failed = ops.value(getattr(state, "failed", False))
    accepted = ops.value(getattr(state, "accepted", True))
    reason = ops.value(getattr(state, "stop_reason", 0))
    dtype = state.f.dtype
    # L-BFGS-B's test, relative to f itself (its floor of 1 with ftol_floor = 1: it stops a
    # loss of 1e-5 that still falls by 1e-9 an iteration); a rise in f (non-monotone rules)
    # is not convergence, a rejected proposal (f unchanged by construction) is not either,
    # and ftol = 0 is off.
    decrease = f_prev - f
    scale = ops.maximum(ops.maximum(ops.abs(f_prev), ops.abs(f)),
                        ops.cast(ops.value(rule.ftol_floor), dtype))
    ftol = ops.cast(ops.value(rule.ftol), dtype)
    ftol_met = accepted & (ftol > 0) & (decrease >= 0) & (decrease <= ftol * scale)
    max_eval, evaluations = ops.value(rule.max_eval), ops.value(evaluations)
    over_eval = (max_eval > 0) & (evaluations >= max_eval)
    tests = [
        (~ops.value(finite), Status.NON_FINITE),
        (failed, Status.LINE_SEARCH_FAILED),
        (ops.value(grad_norm(state.g)) <= ops.cast(ops.value(rule.gtol), dtype),
         Status.CONVERGED_GTOL),
        (reason > 0, ALGORITHM_CODE_BASE + reason),
        (ftol_met, Status.CONVERGED_FTOL),
        (ops.value(nit) >= ops.value(rule.max_iter), Status.MAX_ITER),
        (over_eval, Status.MAX_EVAL),
    ]
    status = ops.constant(int(Status.RUNNING), tf.int32)
    for holds, code in reversed(tests):
        status = ops.where(holds, ops.cast(code, tf.int32), status)
    failures, successes = codes
    failed_stop = ops.any(
        [status == code for code in (int(Status.LINE_SEARCH_FAILED), *failures)])
    converged = ops.any([status == code for code in (
        int(Status.CONVERGED_GTOL), int(Status.CONVERGED_FTOL), *successes)])
    nonfinite = ((failed_stop & ops.value(faults.nonfinite_trials))
                 | (ops.value(faults.bad_products) & ~converged))
    status = ops.where(nonfinite, ops.constant(int(Status.NON_FINITE), tf.int32), status)
    return ops.tensor(status, tf.int32)


def initial_status(f: tf.Tensor, g: tf.Tensor, rule: RuleTensors) -> tf.Tensor:
    """Status at the start point (non-finite, already converged, or max_iter=0)."""
    ops = scalar_ops.for_context()

    def code(status: Status) -> Any:
        return ops.constant(int(status), tf.int32)

    finite = ops.isfinite(ops.value(f)) & ops.value(vector_ops.all_finite(g))
    status = ops.where(ops.value(rule.max_iter) == 0, code(Status.MAX_ITER), code(Status.RUNNING))
    converged = ops.value(grad_norm(g)) <= ops.cast(ops.value(rule.gtol), g.dtype)
    status = ops.where(converged, code(Status.CONVERGED_GTOL), status)
    return ops.tensor(ops.where(finite, status, code(Status.NON_FINITE)), tf.int32)
