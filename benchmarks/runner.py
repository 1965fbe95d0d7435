"""Running the problem x method grid in one process.

Per problem, every method is prepared, evaluated bare (``t_eval``) and called once cold; then the
timed repeats go round-robin over the methods, so that a burst of load from other processes on a
shared machine spreads over all methods instead of landing on one method's every repeat. Before
each timed run a few bare evaluations are timed again, and ``t_eval`` is the median of all of
them: numerator and denominator of the overhead ratio see the same load.

Repeats of one problem x method stop once its timed runs have taken ``REPEAT_BUDGET_S`` seconds
(slow combinations are then timed once or twice), so the default set stays within minutes.
``repeats=0`` (the ``--quick`` default) reports the cold call itself as the timed run: a smoke
test of the whole pipeline whose times include tracing.
"""

from __future__ import annotations

import statistics
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from benchmarks import problems
from benchmarks.measure import Record, RunOutput, eval_times, timed
from benchmarks.peers import METHODS, Prepared

__all__ = ["REPEAT_BUDGET_S", "run_grid"]

REPEAT_BUDGET_S = 3.0


@dataclass
class _Job:
    record: Record
    prepared: Prepared | None = None
    eval_samples: list[float] = field(default_factory=list)
    runs: list[tuple[float, RunOutput]] = field(default_factory=list)
    cold: RunOutput | None = None
    mem: float = 0.0

    @property
    def spent(self) -> float:
        return sum(w for w, _ in self.runs)


def _guard(job: _Job, log: Callable[[str], None], step: Callable[[], Any]) -> None:
    """Run one step of a job; an exception marks the job failed instead of ending the run."""
    if job.record.error is not None:
        return
    try:
        step()
    except Exception as err:  # one broken peer must not sink the whole run
        job.record.error = f"{type(err).__name__}: {err}"
        log(traceback.format_exc(limit=3))


def _prepare(job: _Job, method: Any, inst: problems.Instance) -> None:
    job.prepared = method.prepare(inst)


def _cold(job: _Job, quick: bool) -> None:
    job.eval_samples += eval_times(job.prepared.evaluate, budget=0.1 if quick else 0.3)
    job.prepared.setup()
    out, job.record.t_first, job.mem = timed(job.prepared.run)  # tracing included
    job.cold = out


def _timed(job: _Job) -> None:
    job.eval_samples += eval_times(job.prepared.evaluate, warmup=0, min_calls=3, max_calls=3)
    job.prepared.setup()
    out, wall, mem = timed(job.prepared.run)
    job.runs.append((wall, out))
    job.mem = max(job.mem, mem)


def _finish(job: _Job) -> None:
    r = job.record
    if r.error is not None or r.skipped is not None:
        return
    if not job.runs:  # repeats=0: the cold call is all there is
        job.runs = [(r.t_first, job.cold)]
    walls = [w for w, _ in job.runs]
    r.walls, r.wall, r.mem_mib = walls, statistics.median(walls), job.mem
    r.t_eval = statistics.median(job.eval_samples)
    # The numbers and trace of the run whose wall time is the median.
    _, out = sorted(job.runs, key=lambda item: item[0])[(len(job.runs) - 1) // 2]
    r.nit, r.nfev, r.nhev, r.njev, r.loss = out.nit, out.nfev, out.nhev, out.njev, out.loss
    r.grad_inf, r.message, r.trace = out.grad_inf, out.message, out.trace


def run_grid(
    problem_names: Sequence[str],
    method_names: Sequence[str] | None,
    *,
    repeats: int,
    seed: int = 0,
    quick: bool = False,
    max_iter: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Record]:
    """Build each problem once and run the methods on it; failures become records.

    ``method_names=None`` runs each problem's default methods (``ProblemSpec.default_methods``,
    or all).
    """
    records: list[Record] = []
    for name in problem_names:
        spec = problems.PROBLEMS[name]
        cap = spec.quick_max_iter if quick and max_iter is None else max_iter
        inst = problems.build(name, seed=seed, max_iter=cap)
        log(f"{name}: n={inst.size}, {spec.dtype}, max_iter={inst.spec.max_iter}, "
            f"gtol={inst.spec.gtol:g}")
        jobs = []
        for method_name in method_names or spec.default_methods or tuple(METHODS):
            method = METHODS[method_name]
            job = _Job(Record(name, method_name, spec.dtype, inst.size, inst.spec.max_iter))
            job.record.skipped = method.unavailable() or method.applies(inst)
            if job.record.skipped is None:
                _guard(job, log, partial(_prepare, job, method, inst))
                _guard(job, log, partial(_cold, job, quick))
            jobs.append(job)
        active = [j for j in jobs if j.record.skipped is None]
        for _ in range(repeats):
            for job in active:
                if not job.runs or job.spent < REPEAT_BUDGET_S:
                    _guard(job, log, partial(_timed, job))
        for job in jobs:
            _finish(job)
            records.append(job.record)
            log("  " + _line(job.record))
    return records


def _line(r: Record) -> str:
    if r.skipped:
        return f"{r.method:16s} skipped: {r.skipped}"
    if r.error:
        return f"{r.method:16s} ERROR: {r.error}"
    nhev = "-" if r.nhev is None else r.nhev
    njev = "" if r.njev is None else f" njev={r.njev:5d}"
    return (f"{r.method:16s} nit={r.nit:5d} nfev={r.nfev:5d}{njev} nhev={nhev:>5} "
            f"f={r.loss:.6g} "
            f"|g|={r.grad_inf:.2e} wall={r.wall:.3f}s first={r.t_first:.3f}s "
            f"t_eval={r.t_eval * 1e3:.2f}ms")
