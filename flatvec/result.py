"""The result type returned by every entry point."""

from __future__ import annotations

import numpy as np
import scipy.optimize

__all__ = ["OptimizeResult"]


class OptimizeResult(scipy.optimize.OptimizeResult):
    """A ``scipy.optimize.OptimizeResult`` with flatvec's fields.

    Attributes
    ----------
    x : numpy.ndarray
        The best accepted point (the model's variables hold it too).
    fun, jac : float, numpy.ndarray
        Objective value and gradient at ``x``.
    nit, nfev, njev, nhev : int
        Iterations, function, gradient and Hessian-vector evaluations.
    nonfinite_evals : int
        Evaluations (and curvature products) whose result had a non-finite entry; the
        methods back off from such trial points, and ``message`` mentions them.
    status : int
        SciPy's code for the outcome (:attr:`flatvec.Status.scipy_code`): 0 converged, 1 an
        iteration, evaluation or time limit, 2 no acceptable step or another stop, 3
        non-finite values, 99 stopped from outside. Under ``algo="scipy:<method>"`` SciPy's
        own ``status``.
    reason : flatvec.status.Status
        Why the run stopped, in flatvec's finer terms (gtol or ftol, which limit, ...).
    success, message : bool, str
        Whether it converged, and the sentence saying why it stopped (for a success: which
        test held, and the gradient's infinity norm at ``x``).
    history : dict of lists
        Per iteration: ``loss``, ``grad_norm``, ``step_size``, ``nfev``, ``time``.
    state : NamedTuple or None
        The final algorithm state (None for SciPy methods).

    Its ``repr`` is SciPy's layout with the long fields summarized (the state's type, the
    history's length), so that printing a result stays a screenful.
    """

    def __repr__(self) -> str:
        summary = dict(self)
        if summary.get("state") is not None:
            summary["state"] = _Summary(f"<{type(summary['state']).__name__}>")
        if isinstance(summary.get("history"), dict):
            rows = len(next(iter(summary["history"].values()), []))
            summary["history"] = _Summary(f"<{rows} rows: {', '.join(summary['history'])}>")
        if "reason" in summary:
            summary["reason"] = _Summary(getattr(summary["reason"], "name", summary["reason"]))
        with np.printoptions(threshold=6, edgeitems=3, precision=6):
            return repr(scipy.optimize.OptimizeResult(summary))


class _Summary(str):
    """A string that ``repr`` shows without quotes."""

    def __repr__(self) -> str:
        return str(self)
