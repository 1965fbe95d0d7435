"""One status enum, with messages, shared by every algorithm and the SciPy bridge."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Status"]


class Status(IntEnum):
    """Why a run stopped. ``success`` is True for the two convergence tests only."""

    RUNNING = -1
    CONVERGED_GTOL = 0
    CONVERGED_FTOL = 1
    MAX_ITER = 2
    MAX_EVAL = 3
    LINE_SEARCH_FAILED = 4
    NON_FINITE = 5
    INTERRUPTED = 6
    STOPPED_BY_CALLBACK = 7
    SCIPY_OTHER = 8

    @property
    def success(self) -> bool:
        return self in (Status.CONVERGED_GTOL, Status.CONVERGED_FTOL)

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.RUNNING: "Running.",
    Status.CONVERGED_GTOL: "Converged: the gradient's infinity norm is at most gtol.",
    Status.CONVERGED_FTOL: "Converged: the relative reduction of f is at most ftol.",
    Status.MAX_ITER: "Stopped: max_iter iterations reached.",
    Status.MAX_EVAL: "Stopped: max_eval function evaluations reached.",
    Status.LINE_SEARCH_FAILED: "Stopped: the line search found no acceptable step.",
    Status.NON_FINITE: (
        "Stopped: non-finite function value or gradient; the best accepted point was restored."
    ),
    Status.INTERRUPTED: "Interrupted: the last accepted point was kept.",
    Status.STOPPED_BY_CALLBACK: "Stopped by a callback.",
    Status.SCIPY_OTHER: "SciPy stopped for another reason (see message).",
}
