"""One status enum, with messages, shared by every algorithm and the SciPy bridge."""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = ["ALGORITHM_CODE_BASE", "Status", "StopReason"]

# A status tensor holds ALGORITHM_CODE_BASE + k when the algorithm stopped for its own k-th
# declared reason (1-based); the host turns that into Status.ALGORITHM_STOP and the message.
ALGORITHM_CODE_BASE = 100


class StopReason(NamedTuple):
    """A stop reason an algorithm declares in ``Algorithm.stop_reasons``.

    Attributes
    ----------
    message : str
        What the result's ``message`` says.
    success : bool
        Whether the result counts as converged (``result.success``).
    """

    message: str
    success: bool = False


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
    ALGORITHM_STOP = 9

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
        "Stopped: non-finite function value, gradient or curvature product; the best accepted "
        "point was restored."
    ),
    Status.INTERRUPTED: "Interrupted: the last accepted point was kept.",
    Status.STOPPED_BY_CALLBACK: "Stopped by a callback.",
    Status.SCIPY_OTHER: "SciPy stopped for another reason (see message).",
    Status.ALGORITHM_STOP: "Stopped by the algorithm for a reason of its own.",
}


def decode_status(code: int, reasons: tuple[StopReason, ...]) -> tuple[Status, StopReason | None]:
    """The :class:`Status` for a status code, and the algorithm's reason when it is one."""
    if code > ALGORITHM_CODE_BASE:
        index = code - ALGORITHM_CODE_BASE - 1
        reason = reasons[index] if index < len(reasons) else StopReason(
            f"Stopped by the algorithm (undeclared reason {index + 1}).")
        return Status.ALGORITHM_STOP, reason
    return Status(code), None
