"""Derived numbers, computed only from what was recorded: overheads and time to a target.

``overhead = wall / (nfev * t_eval)``
    how much longer the whole call took than its evaluations alone would have; 1 is a driver
    that costs nothing beyond the objective. ``wall`` covers the whole call (for flatvec and the
    SciPy bridge that includes building the objective and tracing its graphs).
``overhead_steady``
    the same on the run's trace with its first point dropped (``(t_last - t_1) /
    ((nfev_last - nfev_1) * t_eval)``): the per-iteration cost once everything is compiled.
``target``
    per problem, the problem's fixed target loss where it sets one (``ProblemSpec.target``:
    a loss that says "solved", for problems where the best final loss of a run depends on
    who was allowed the most iterations), else
    ``f_best + max(0.05 |f_best|, 1e-8 (f_0 - f_best))`` with ``f_best`` the best
    final loss of any method and ``f_0`` the start loss: ``1.05 f_best`` for positive losses,
    with a floor for problems whose minimum is 0 (Rosenbrock), where 1.05 x 1e-15 would time
    round-off rather than optimization.
``time_to_target`` / ``evals_to_target``
    the first trace point (time since the run started, evaluations so far) whose best-so-far
    loss is at or below the target; None when never reached.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from benchmarks.measure import Record

__all__ = ["derive", "problem_target"]

TARGET_FACTOR = 0.05
TARGET_FLOOR = 1e-8


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def problem_target(records: Iterable[Record]) -> float | None:
    """The target loss of one problem's records (None when no run finished)."""
    ran = [r for r in records if _finite(r.loss) and r.trace and r.trace.loss]
    if not ran:
        return None
    best = min(r.loss for r in ran)
    start = max(r.trace.loss[0] for r in ran)
    return best + max(TARGET_FACTOR * abs(best), TARGET_FLOOR * max(start - best, 0.0))


def _first_below(record: Record, target: float) -> tuple[float, int] | None:
    best = math.inf
    trace = record.trace
    for nfev, t, loss in zip(trace.nfev, trace.time, trace.loss):
        best = min(best, loss)
        if best <= target:
            return t, nfev
    return None


def _steady(record: Record) -> float | None:
    trace = record.trace
    if len(trace.nfev) < 3 or not record.t_eval:
        return None
    evals = trace.nfev[-1] - trace.nfev[1]
    if evals <= 0:
        return None
    return (trace.time[-1] - trace.time[1]) / (evals * record.t_eval)


def derive(records: list[Record], targets: Mapping[str, float] | None = None) -> None:
    """Fill the derived fields of every record, in place; ``targets`` maps problems with a
    fixed target loss to it."""
    by_problem: dict[str, list[Record]] = {}
    for r in records:
        by_problem.setdefault(r.problem, []).append(r)
    for name, group in by_problem.items():
        fixed = (targets or {}).get(name)
        target = problem_target(group) if fixed is None else fixed
        for r in group:
            if r.wall is None or r.trace is None:
                continue
            if r.nfev and r.t_eval:
                r.overhead = r.wall / (r.nfev * r.t_eval)
            r.overhead_steady = _steady(r)
            r.target = target
            hit = None if target is None else _first_below(r, target)
            r.time_to_target, r.evals_to_target = hit if hit else (None, None)
