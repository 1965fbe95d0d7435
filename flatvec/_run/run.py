"""A run of the compiled loop: blocks of iterations, reported to the history and callbacks,
checkpointed, timed, and turned into the result at the best point."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf

from flatvec._run.record import IterationRecord
from flatvec._run.report_rows import counter_values
from flatvec._run.tiers import TierPlan
from flatvec.result import OptimizeResult
from flatvec.status import Status, decode_status, verdict_at_best

__all__ = ["AUTO_BLOCK_SECONDS", "MAX_AUTO_BLOCK", "BlockSize", "run_loop"]

# steps_per_call=None: without callbacks, iterations are run in blocks that take about this
# long (one compiled call, one host transfer per block instead of per iteration), at most
# MAX_AUTO_BLOCK of them. Short enough that Ctrl-C and the progress bar still answer promptly;
# long enough to amortize a call's fixed cost, which grows with the graph: on the digits MLP
# (float64) 0.2 s blocks made an iteration 14 % faster than 0.05 s blocks.
AUTO_BLOCK_SECONDS = 0.2
MAX_AUTO_BLOCK = 64  # = loop.MAX_ROWS, so that the history keeps every iteration


def _spans_processes(strategy: Any) -> bool:
    """True when ``strategy``'s replicas live in several processes (MultiWorkerMirrored over
    a cluster, multi-host TPU): every process must then make the same compiled calls."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return False
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs) > 1


class BlockSize:
    """Iterations per compiled call: fixed, or (``steps_per_call=None`` without callbacks)
    grown to about :data:`AUTO_BLOCK_SECONDS` per call from the time the calls take.

    ``lockstep``: the replicas span processes. Sizes from each process's own clock differ
    between processes, and calls of different lengths leave their collectives unmatched
    (two loopback workers deadlocked with adaptive sizes), so the size is fixed at 1.
    """

    def __init__(self, steps_per_call: int | None, has_callbacks: bool,
                 lockstep: bool = False) -> None:
        self.fixed = steps_per_call if steps_per_call is not None else (
            1 if has_callbacks or lockstep else None)
        self.lockstep = lockstep  # every process must make the same calls: sizes never vary

    def next(self, seconds: float, iterations: int, current: int,
             remaining: float | None = None) -> int:
        """The next block's size from the last one's ``seconds`` for ``iterations``; with
        ``remaining`` seconds of a ``max_time``, no more iterations than fit in them."""
        per_iteration = max(seconds / max(iterations, 1), 1e-6)
        fitting = MAX_AUTO_BLOCK if remaining is None else max(1, int(remaining / per_iteration))
        if self.fixed is not None:
            return self.fixed if self.lockstep else min(self.fixed, fitting)
        wanted = int(AUTO_BLOCK_SECONDS / per_iteration)
        return max(1, min(MAX_AUTO_BLOCK, wanted, 2 * current, fitting))  # grow gradually


def run_loop(problem, algorithm, loop, rule, reporter, initial_state, steps_per_call,
             keeper, max_time=None, tier_key=None) -> OptimizeResult:
    """Run ``loop`` on ``problem`` from its start (or ``initial_state``) until a stopping rule,
    a callback, ``max_time`` or Ctrl-C ends it; the result at the best accepted point, which
    the model's variables are left at whatever happens.

    ``keeper``: the run's checkpoint (:func:`~flatvec._run.run_checkpoint.open_checkpoint`);
    ``max_time``: seconds from the call's start after which no block is begun; ``tier_key``:
    which earlier runs predict this one's length (:class:`~flatvec._run.tiers.TierPlan`)."""
    objective = problem.objective
    objective.reset_counters()
    sizes = BlockSize(steps_per_call, reporter.has_callbacks,
                      _spans_processes(objective.strategy))
    loop.set_block(sizes.fixed or 1)
    t0 = time.perf_counter()
    try:
        if initial_state is not None:
            x = objective.check_vector(tf.convert_to_tensor(initial_state.x), "initial_state.x")
            info = loop.start(x, rule, initial_state)  # evaluated once more for the report
        else:
            info = loop.start(problem.x0, rule)
        info = keeper.resume(loop, rule, info)  # a checkpoint's run, if its directory holds one
    except BaseException:
        # Interrupted (or failed) while tracing or evaluating the start point: nothing was
        # accepted yet, so the variables go back to where they were.
        if objective.space is not None:
            objective.space.assign(problem.x0)
        raise
    last = info.records()[0]  # the one host transfer per call
    loop.set_block(keeper.block(loop.block, last.nit))
    tiers = TierPlan(loop, tier_key, rule.max_iter, rule.max_eval, last.nit)
    reasons = tuple(getattr(algorithm, "stop_reasons", ()))
    status, reason = decode_status(last.status, reasons)

    def point() -> tuple[np.ndarray, np.ndarray]:
        carry = loop.carry()
        return carry.state.x.numpy(), carry.state.g.numpy()

    try:
        reporter.begin(last, time.perf_counter() - t0)
        elapsed = time.perf_counter() - t0
        while status is Status.RUNNING:
            records = tiers.advance()  # the one host transfer per call
            before, elapsed = elapsed, time.perf_counter() - t0
            keeper.after_block(records[-1].nit)  # before callbacks: they see it saved
            status, reason = decode_status(records[-1].status, reasons)
            stop = _report(reporter, records, last, before, elapsed, point)
            loop.raise_held_interrupt()  # a Ctrl-C during an eager block, once it is recorded
            last = records[-1]
            if stop and status is Status.RUNNING:
                status = Status.STOPPED_BY_CALLBACK
            remaining = None if max_time is None else max_time - elapsed
            if remaining is not None and remaining <= 0 and status is Status.RUNNING:
                status = Status.MAX_TIME
            loop.set_block(keeper.block(
                sizes.next(elapsed - before, len(records), loop.block, remaining), last.nit))
    except KeyboardInterrupt:
        status, reason = Status.INTERRUPTED, None
    finally:
        # Whatever happened, the variables end at the best accepted point.
        carry = loop.carry()
        if objective.space is not None:
            objective.space.assign(carry.best_x)
    keeper.finish()
    tiers.finish(int(carry.nit.numpy()), cut_short=status in _LIMITS)
    result = _result(carry, status, reason, objective, reporter.history,
                     type(algorithm).__name__, loop.oracle.fault_totals(), rule.gtol)
    note = getattr(algorithm, "result_note", None)
    if note is not None:
        result.message += " " + note(carry.state)
    reporter.end(result)
    return result


# Statuses that end a run before it ends by itself.
_LIMITS = (Status.MAX_ITER, Status.MAX_EVAL, Status.MAX_TIME, Status.STOPPED_BY_CALLBACK,
           Status.INTERRUPTED)


def _report(reporter: Any, records: list[IterationRecord], previous: IterationRecord,
            before: float, after: float, point: Any) -> bool:
    """History for every record of a call; callbacks for its last. Times within the call are
    interpolated by evaluation count (evaluations are most of an iteration's cost)."""
    spent = max(records[-1].nfev - previous.nfev, 1)
    for record in records[:-1]:
        share = (record.nfev - previous.nfev) / spent
        reporter.record(record, before + share * (after - before))
    return reporter.iteration(records[-1], after, point)


def _result(carry, status, reason, objective, history, method, nonfinite,
            gtol) -> OptimizeResult:
    """``reason``: the algorithm's own :class:`~flatvec.status.StopReason` when it stopped the
    run (status ``ALGORITHM_STOP``; its message and success are the result's).
    ``nonfinite``: the loop's counts of non-finite evaluations and products.

    The result is at the best accepted point. A convergence status is kept only where it holds
    there (:func:`flatvec.status.verdict_at_best`): a non-monotone method can meet its test
    at an iterate above the best point it saw."""
    best_x, best_g = carry.best_x.numpy(), carry.best_g.numpy()
    best_f = float(carry.best_f.numpy())
    verdict = verdict_at_best(
        status, reason, gtol=gtol, best_f=best_f, best_g=best_g,
        iterate_is_best=bool(np.array_equal(best_x, carry.state.x.numpy())),
        iterate_f=float(carry.state.f.numpy()))
    message = verdict.message
    counts = [int(c) for c in counter_values(objective)]
    evaluations, products = (int(n) for n in nonfinite)
    if evaluations or products:
        nfev, nhev = counts[0], counts[2]
        message += (f" Non-finite results: {evaluations} of {nfev} evaluations"
                    f"{f', {products} of {nhev} curvature products' if products else ''}.")
    return OptimizeResult(
        x=best_x,
        fun=best_f,
        jac=best_g,
        nit=int(carry.nit.numpy()),
        nfev=counts[0],
        njev=counts[1],
        nhev=counts[2],
        status=verdict.scipy_code,
        reason=verdict.reason,
        success=verdict.success,
        message=message,
        nonfinite_evals=evaluations + products,
        history=history,
        state=carry.state,
        method=method,
    )
