"""One status enum, with messages, shared by every algorithm and the SciPy bridge."""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np

__all__ = ["ALGORITHM_CODE_BASE", "Status", "StopReason", "Verdict", "verdict_at_best"]

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
    CONVERGED_ABOVE_BEST = 10
    MAX_TIME = 11

    @property
    def success(self) -> bool:
        return self in (Status.CONVERGED_GTOL, Status.CONVERGED_FTOL)

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def scipy_code(self) -> int:
        """SciPy's ``status`` for the same outcome: 0 converged, 1 an iteration or evaluation
        limit (L-BFGS-B's and BFGS's 1; a time limit too), 2 no acceptable step (L-BFGS-B's
        ABNORMAL, BFGS's precision loss), 3 non-finite values (BFGS's NaN), 99 stopped from
        outside (SciPy's callback that raised ``StopIteration``; Ctrl-C)."""
        return _SCIPY_CODES[self]


_MESSAGES = {
    Status.RUNNING: "Running.",
    Status.CONVERGED_GTOL: "Converged: the gradient's infinity norm is at most gtol.",
    Status.CONVERGED_FTOL: "Converged: the relative reduction of f is at most ftol.",
    Status.MAX_ITER: "Stopped: max_iter iterations reached.",
    Status.MAX_EVAL: (
        "Stopped: max_eval evaluations reached (function evaluations and curvature products "
        "counted together)."),
    Status.LINE_SEARCH_FAILED: "Stopped: the line search found no acceptable step.",
    Status.NON_FINITE: (
        "Stopped: non-finite function value, gradient or curvature product; the best accepted "
        "point was restored."
    ),
    Status.INTERRUPTED: "Interrupted: the last accepted point was kept.",
    Status.STOPPED_BY_CALLBACK: "Stopped by a callback.",
    Status.SCIPY_OTHER: "SciPy stopped for another reason (see message).",
    Status.ALGORITHM_STOP: "Stopped by the algorithm for a reason of its own.",
    Status.MAX_TIME: "Stopped: max_time seconds reached.",
    Status.CONVERGED_ABOVE_BEST: (
        "Stopped: an iterate met the convergence test, but above the best point seen, which "
        "is returned and does not meet it (result.state holds that iterate)."),
}

_SCIPY_CODES = {
    Status.RUNNING: -1, Status.CONVERGED_GTOL: 0, Status.CONVERGED_FTOL: 0, Status.MAX_ITER: 1,
    Status.MAX_EVAL: 1, Status.MAX_TIME: 1, Status.LINE_SEARCH_FAILED: 2, Status.NON_FINITE: 3,
    Status.INTERRUPTED: 99, Status.STOPPED_BY_CALLBACK: 99, Status.SCIPY_OTHER: 2,
    Status.ALGORITHM_STOP: 2, Status.CONVERGED_ABOVE_BEST: 2,
}


def decode_status(code: int, reasons: tuple[StopReason, ...]) -> tuple[Status, StopReason | None]:
    """The :class:`Status` for a status code, and the algorithm's reason when it is one."""
    if code > ALGORITHM_CODE_BASE:
        index = code - ALGORITHM_CODE_BASE - 1
        reason = reasons[index] if index < len(reasons) else StopReason(
            f"Stopped by the algorithm (undeclared reason {index + 1}).")
        return Status.ALGORITHM_STOP, reason
    return Status(code), None


class Verdict(NamedTuple):
    """What a result reports: why it stopped, whether it counts as converged, its message."""

    reason: Status
    success: bool
    message: str

    @property
    def scipy_code(self) -> int:
        """SciPy's status code (an algorithm's own successful stop is 0)."""
        return 0 if self.success else self.reason.scipy_code


def verdict_at_best(
    status: Status, reason: StopReason | None, *, gtol: float, best_f: float,
    best_g: np.ndarray, iterate_is_best: bool, iterate_f: float,
) -> Verdict:
    """The verdict on a run whose result is its best point, ``status``/``reason`` having been
    decided at its last iterate.

    A claim of convergence must hold at the returned point. Where the last iterate is the best
    point, it does. Where it is not (a non-monotone method ended above the best point it saw):
    the gradient test is re-applied to the best point's gradient; any other claim (ftol, an
    algorithm's own successful stop) is about the iterate, so it becomes
    ``CONVERGED_ABOVE_BEST``, not a success. Success messages end with the gradient norm at
    the returned point."""
    success = status.success if reason is None else reason.success
    message = status.message if reason is None else reason.message
    grad_norm = float(np.max(np.abs(best_g))) if np.size(best_g) else 0.0
    if success and not iterate_is_best:
        if grad_norm <= gtol:
            status, reason = Status.CONVERGED_GTOL, None
            message = (f"{Status.CONVERGED_GTOL.message[:-1]} at the best point seen (the "
                       f"method's last iterate, f = {iterate_f:.6g}, is above it).")
        else:
            return Verdict(Status.CONVERGED_ABOVE_BEST, False, (
                f"{Status.CONVERGED_ABOVE_BEST.message} The iterate: f = {iterate_f:.6g}; the "
                f"best point: f = {best_f:.6g}, gradient infinity norm {grad_norm:.3g}."))
    if success:
        message = f"{message} Gradient infinity norm at x: {grad_norm:.3g}."
    return Verdict(status, success, message)
