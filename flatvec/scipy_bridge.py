"""``algo="scipy:<method>"``: ``scipy.optimize.minimize`` on the same flatvec objective."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.optimize
import tensorflow as tf

from flatvec._run.problem import Problem
from flatvec._run.record import IterationRecord
from flatvec._run.reporting import RunReporter
from flatvec.result import OptimizeResult
from flatvec.status import Status

__all__ = ["minimize_with_scipy"]

# Methods that take a Hessian-vector product (`hessp`).
_HESSP_METHODS = {"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"}
_GRADIENT_FREE = {"nelder-mead", "powell", "cobyla", "cobyqa"}


def _options(method: str, *, max_iter: int, max_eval: int | None, gtol: float, ftol: float):
    """Map flatvec's options to each SciPy method's names (same semantics where they exist)."""
    options: dict[str, Any] = {"maxiter": max_iter}
    if method == "l-bfgs-b":
        options.update(gtol=gtol, ftol=ftol, maxfun=max_eval or 15000)
    elif method in ("cg", "bfgs"):
        options.update(gtol=gtol, norm=np.inf)
    elif method in ("trust-ncg", "trust-krylov", "trust-exact", "dogleg"):
        options.update(gtol=gtol)
    elif method == "trust-constr":
        options.update(gtol=gtol)
    elif method == "tnc":
        options.update(gtol=gtol, ftol=ftol, maxfun=max_eval)
        options.pop("maxiter")
    elif method == "slsqp":
        options.update(ftol=ftol)
    return options


def minimize_with_scipy(
    problem: Problem,
    method: str,
    *,
    max_iter: int,
    max_eval: int | None,
    gtol: float,
    ftol: float,
    callbacks: Any,
    verbose: int,
    bounds: Any,
    max_time: float | None = None,
    options: dict[str, Any] | None = None,
) -> OptimizeResult:
    """Run ``scipy.optimize.minimize(method=method)`` with ``jac=True`` on ``problem``.

    Values and gradients come from the objective's compiled ``value_and_gradient`` (in the
    objective's dtype) and are handed to SciPy in float64; methods that accept ``hessp`` get the
    objective's forward-over-reverse Hessian-vector product. The result has flatvec's type and
    status enum; the model's variables are left at the returned ``x``.

    ``options``: SciPy's own options of the method, over the ones mapped from flatvec's;
    ``max_time``: seconds after which the run ends at the next iteration (SciPy's callback).
    """
    key = method.lower()
    if key in _GRADIENT_FREE:
        raise ValueError(f"algo: scipy:{method} is gradient-free; flatvec bridges gradient methods")
    objective = problem.objective
    dtype = objective.dtype
    reporter = RunReporter(callbacks, problem.model, verbose=verbose, max_iter=max_iter)
    last: dict[str, Any] = {}
    nonfinite = [0]  # evaluations and products with a non-finite result

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        # A repeated point (x0 evaluated by us and by SciPy, the final x) is served from the
        # last evaluation, so nfev counts distinct evaluations as SciPy's own counter does.
        if "x" in last and np.array_equal(last["x"], x):
            return last["f"], last["g"].copy()
        f, g = objective.value_and_gradient(tf.constant(x, dtype))
        g = g.numpy().astype(np.float64)
        nonfinite[0] += int(not (np.isfinite(float(f)) and np.all(np.isfinite(g))))
        last.update(x=np.array(x), f=float(f), g=g)
        return float(f), g.copy()

    def hessp(x: np.ndarray, v: np.ndarray) -> np.ndarray:
        hv = objective.hessian_vector_product(tf.constant(x, dtype), tf.constant(v, dtype))
        hv = hv.numpy().astype(np.float64)
        nonfinite[0] += int(not np.all(np.isfinite(hv)))
        return hv

    state = {"nit": 0, "stop": False, "timeout": False}
    t0 = time.perf_counter()

    def callback(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        state["nit"] += 1
        x = np.asarray(intermediate_result.x)
        fun(x)  # served from the cache unless the accepted point was not the last evaluated
        nfev, njev, nhev = (int(c.numpy()) for c in (objective.nfev, objective.njev,
                                                      objective.nhev))
        record = IterationRecord(last["f"], float(np.max(np.abs(last["g"]))), np.nan, nfev,
                                 njev, nhev, state["nit"], int(Status.RUNNING))
        point = (x, last["g"])
        elapsed = time.perf_counter() - t0
        if reporter.iteration(record, elapsed, lambda: point):
            state["stop"] = True
            raise StopIteration  # SciPy >= 1.11 ends the run cleanly on StopIteration
        if max_time is not None and elapsed >= max_time:
            state["timeout"] = True
            raise StopIteration

    objective.reset_counters()
    x0 = problem.x0.numpy().astype(np.float64)
    f0, g0 = fun(x0)
    reporter.begin(IterationRecord(f0, float(np.max(np.abs(g0))), 0.0, 1, 1, 0, 0,
                                   int(Status.RUNNING)), time.perf_counter() - t0)
    status = Status.RUNNING
    try:
        raw = scipy.optimize.minimize(
            fun, x0, jac=True, method=method, bounds=bounds, callback=callback,
            hessp=hessp if key in _HESSP_METHODS else None,
            options={**_options(key, max_iter=max_iter, max_eval=max_eval, gtol=gtol,
                                ftol=ftol), **(options or {})},
        )
    except KeyboardInterrupt:
        raw = scipy.optimize.OptimizeResult(x=last.get("x", x0), message="interrupted")
        status = Status.INTERRUPTED
    x = np.asarray(raw.x, dtype=np.float64)
    f, g = fun(x)  # exact f and g at the returned point, in the objective's dtype
    if status is Status.RUNNING:
        status = Status.MAX_TIME if state["timeout"] else _status(raw, g, gtol, state["stop"],
                                                                  key)
    if objective.space is not None:
        objective.space.assign(tf.constant(x, dtype))
    # SciPy's own status and message where SciPy ended the run; flatvec's where it did.
    success = bool(raw.get("success", False)) and status in (
        Status.CONVERGED_GTOL, Status.CONVERGED_FTOL, Status.SCIPY_OTHER)
    code = status.scipy_code if status in _STOPPED_BY_FLATVEC else int(
        raw.get("status", status.scipy_code))
    message = status.message if status in _STOPPED_BY_FLATVEC else (
        f"{raw.get('message', '')} (SciPy's {method}; gradient infinity norm at x: "
        f"{float(np.max(np.abs(g))) if g.size else 0.0:.3g})")
    result = OptimizeResult(
        x=x, fun=f, jac=g, nit=int(raw.get("nit", state["nit"])),
        nfev=int(objective.nfev.numpy()), njev=int(objective.njev.numpy()),
        nhev=int(objective.nhev.numpy()), status=code, reason=status, success=success,
        message=message,
        history=reporter.history, state=None, method=f"scipy:{method}",
        nonfinite_evals=nonfinite[0],
    )
    reporter.end(result)
    return result


# Outcomes flatvec decided (SciPy's own status would say "stopped by the callback").
_STOPPED_BY_FLATVEC = (Status.STOPPED_BY_CALLBACK, Status.MAX_TIME, Status.INTERRUPTED)
# The methods whose success can come from a relative-decrease (ftol) test.
_FTOL_METHODS = {"l-bfgs-b", "tnc", "slsqp"}


def _status(raw: scipy.optimize.OptimizeResult, g: np.ndarray, gtol: float, stopped: bool,
            method: str) -> Status:
    """flatvec's reason for SciPy's outcome (``result.reason``)."""
    if stopped:
        return Status.STOPPED_BY_CALLBACK
    if not np.isfinite(raw.get("fun", 0.0)) or not np.all(np.isfinite(g)):
        return Status.NON_FINITE
    if raw.get("success", False):
        if np.max(np.abs(g)) <= gtol:
            return Status.CONVERGED_GTOL
        # Newton-CG's xtol and the trust-region methods' own tests are not an ftol test.
        return Status.CONVERGED_FTOL if method in _FTOL_METHODS else Status.SCIPY_OTHER
    message = str(raw.get("message", "")).lower()
    if "iteration" in message:
        return Status.MAX_ITER
    if "evaluation" in message:
        return Status.MAX_EVAL
    if "line search" in message or "abnormal" in message or "precision loss" in message:
        return Status.LINE_SEARCH_FAILED
    return Status.SCIPY_OTHER
