"""The result type returned by every entry point."""

from __future__ import annotations

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
    status : flatvec.status.Status
        Why the run stopped (an ``IntEnum``); ``success`` and ``message`` follow from it.
    history : dict of lists
        Per iteration: ``loss``, ``grad_norm``, ``step_size``, ``nfev``, ``time``.
    state : NamedTuple or None
        The final algorithm state (None for SciPy methods).
    """
