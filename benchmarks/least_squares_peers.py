"""The least-squares methods of the benchmark, on the problems that have a residual form.

- ``flatvec:lm``, ``flatvec:gauss-newton``: ``flatvec.minimize`` on
  ``Objective.from_residuals`` of the problem's residual form (``benchmarks.residual_forms``),
  where it has one (``lm`` then picks its dense path for n <= 500, else its matrix-free one);
  on the model objective's generalized Gauss-Newton product otherwise (the digits networks).
- ``flatvec:lm-model``: ``lm`` on the model objective (``minimize(model, data, "lm", loss=...)``)
  where the problem is a Keras model fit, beside its residual form: its dense path (the
  Gauss-Newton matrix by forward mode) where the network is small, else matrix-free.
- ``flatvec:lm-ggn``: the same with ``solver="cg"``, always matrix-free (Gauss-Newton
  products).
- ``scipy:lsq-lm``, ``scipy:lsq-trf``: ``scipy.optimize.least_squares(method="lm" | "trf")``
  with residuals and a dense Jacobian from compiled ``tf.function`` s of the same residual
  function (formed as flatvec's dense path forms it: forward mode for m >= n, else reverse),
  SciPy's default scaling (``x_scale``: "jac" for lm, as flatvec's dense path; 1 for trf).
- ``jtj:lm``: the explicit-JᵀJ Levenberg-Marquardt of the Keras LM package
  (``benchmarks.explicit_lm``).

Tolerances. flatvec and the JᵀJ peer stop on ``||g||_inf <= gtol`` and on an accepted step with
``f_k - f_{k+1} <= ftol max(|f_k|, |f_{k+1}|, 1)`` (L-BFGS-B's test; off at ``ftol = 0``).
SciPy gets ``gtol`` as its ``gtol`` (for trf without bounds exactly ``||g||_inf <= gtol``; for
lm MINPACK's test on the cosine between ``r`` and the columns of ``J``, a different, scale-free
quantity) and ``ftol`` as its ``ftol`` (``dF < ftol F``: relative, without the floor at 1),
both raised to machine epsilon where smaller (SciPy's lm refuses smaller ones), and
``xtol`` = machine epsilon (flatvec has no step test). ``max_iter`` trials: every method here
evaluates the residuals once per trial step, and flatvec's ``lm`` counts a rejected step as an
iteration; SciPy gets ``max_nfev = max_iter + 1`` (the start and ``max_iter`` trials), and
``nit`` for the SciPy and JᵀJ peers is that count of trials.

Counts: ``nfev`` residual evaluations and ``njev`` dense Jacobians, as each side made them
(counted in the callbacks for SciPy, which evaluates the Jacobian once more at the end).
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

import flatvec
from benchmarks.measure import RunOutput, Trace
from benchmarks.problems import Instance
from benchmarks.residual_forms import jacobian_fn

if TYPE_CHECKING:
    from benchmarks.peers import Method, Prepared

__all__ = ["DENSE_MAX_ENTRIES", "JTJ_MAX_N", "flatvec_objective", "not_applicable", "prepare"]

EPS = float(np.finfo(np.float64).eps)
DENSE_MAX_ENTRIES = 4_000_000  # m x n Jacobian entries (flatvec lm's own dense limit)
JTJ_MAX_N = 2000  # the n x n matrix and its O(n^3) Cholesky per trial
FAMILIES = ("scipy-lsq", "jtj")


def not_applicable(method: Method, inst: Instance) -> str | None:
    """Why a least-squares method does not run on ``inst`` (None when it does, or when
    ``method`` is not one of them)."""
    form = inst.residuals
    if method.form == "residuals" and form is None and inst.form != "model":
        return "needs a residual form or a model objective (Gauss-Newton products)"
    if method.form == "model" and inst.form != "model":
        return "needs a model objective (Gauss-Newton products of a Keras model)"
    if method.form == "model" and form is None:
        return "no residual form: flatvec:lm already runs on the model objective here"
    if method.family not in FAMILIES:
        return None
    if method.family == "scipy-lsq" and importlib.util.find_spec("scipy") is None:
        return "SciPy not installed"
    if form is None:
        return "no residual form (not a least-squares problem)"
    if form.m * form.n > DENSE_MAX_ENTRIES:
        return f"dense Jacobian, run only for m n <= {DENSE_MAX_ENTRIES:.0e}"
    if method.family == "jtj" and form.n > JTJ_MAX_N:
        return f"dense n x n JtJ, run only for n <= {JTJ_MAX_N}"
    if method.algo == "lm" and method.family == "scipy-lsq" and form.m < form.n:
        return f"MINPACK's lm needs m >= n residuals (m={form.m}, n={form.n})"
    return None


def flatvec_objective(method: Method, inst: Instance) -> flatvec.Objective:
    """The objective a flatvec method runs on: the residual form for ``form="residuals"``
    where the problem has one, else the problem's own objective."""
    if method.form == "residuals" and inst.residuals is not None:
        return inst.residuals.objective(jit_compile=method.jit_compile)
    return inst.objective(jit_compile=method.jit_compile)


def _evaluate(inst: Instance) -> Any:
    """One compiled loss+gradient of ½||r||² at the start (``t_eval`` of these methods)."""
    objective = inst.residuals.objective()
    x0 = tf.constant(inst.x0, inst.dtype)
    return lambda: objective.value_and_gradient(x0).value.numpy()


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """OpenBLAS limited to one thread (where threadpoolctl, a scikit-learn dependency, is
    installed). Right after TensorFlow's ops, OpenBLAS's threads compete with TensorFlow's
    spinning pool for the cores: on 2 cores SciPy's trf took 16.3 s for 30 steps of the sinc
    fit with OpenBLAS's two threads, 2.6 s with one (its factorizations, of J at most
    1000 x 1000, gain little from threads)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def prepare(method: Method, inst: Instance) -> Prepared:
    """Bind a SciPy least-squares or JᵀJ peer to ``inst``."""
    if method.family == "jtj":
        return _prepare_jtj(inst)
    return _prepare_scipy(method, inst)


def _prepare_scipy(method: Method, inst: Instance) -> Prepared:
    import scipy.optimize

    from benchmarks.peers import Prepared

    spec, form = inst.spec, inst.residuals
    signature = [tf.TensorSpec([form.n], form.dtype)]
    residuals = tf.function(form, input_signature=signature)
    jac_fn = jacobian_fn(form)
    jacobian = tf.function(lambda x: jac_fn(x)[1], input_signature=signature)
    log: dict[str, Any] = {}

    def fun(x: np.ndarray) -> np.ndarray:
        r = residuals(tf.constant(x)).numpy()
        log["trace"].nfev.append(len(log["trace"].nfev) + 1)
        log["trace"].time.append(time.perf_counter() - log["start"])
        log["trace"].loss.append(0.5 * float(r @ r))
        return r

    def jac(x: np.ndarray) -> np.ndarray:
        log["njev"] += 1
        return jacobian(tf.constant(x)).numpy()

    def setup() -> None:
        log.update(trace=Trace([], [], []), njev=0, start=0.0)

    def run() -> RunOutput:
        with _one_blas_thread():
            log["start"] = time.perf_counter()
            res = scipy.optimize.least_squares(
                fun, np.asarray(inst.x0, np.float64), jac=jac, method=method.algo,
                ftol=max(spec.ftol, EPS), xtol=EPS, gtol=max(spec.gtol, EPS),
                max_nfev=spec.max_iter + 1)
        trace = log["trace"]
        nfev = len(trace.nfev)
        return RunOutput(nfev - 1, nfev, float(res.cost), float(np.max(np.abs(res.grad))),
                         f"{res.message} (status {res.status})", trace, None, log["njev"])

    setup()
    return Prepared(setup, run, _evaluate(inst))


def _prepare_jtj(inst: Instance) -> Prepared:
    from benchmarks.explicit_lm import ExplicitJtJ
    from benchmarks.peers import Prepared

    spec = inst.spec
    peer = ExplicitJtJ(inst.residuals)

    def run() -> RunOutput:
        out = peer.run(inst.x0, max_iter=spec.max_iter, gtol=spec.gtol, ftol=spec.ftol)
        return RunOutput(out.trials, out.nfev, out.loss, out.grad_inf,
                         f"{out.message} ({out.accepted} accepted steps)", out.trace, None,
                         out.njev)

    return Prepared(lambda: None, run, _evaluate(inst))
