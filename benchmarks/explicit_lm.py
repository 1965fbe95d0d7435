r"""The explicit-JᵀJ Levenberg-Marquardt peer: the approach of the Keras Levenberg-Marquardt
package, written here from its description.

At each accepted point the full Jacobian is formed part by part (sub-batches of rows,
``GradientTape.jacobian`` on each: reverse mode, as that package does), accumulated into the
:math:`n \times n` matrix
:math:`A = J^\top J` and the gradient :math:`g = J^\top r`; each trial solves
:math:`(A + \lambda I) p = -g` by Cholesky and evaluates :math:`f(x + p)`. The damping starts at
:math:`10^{-2}`, is divided by 10 after a step that lowers :math:`f` and multiplied by 10 after
one that does not (that package's rule, bounded to :math:`[10^{-12}, 10^{12}]`). Memory is
:math:`O(n^2)` for :math:`A` (flatvec's matrix-free ``lm`` is :math:`O(n)`), time
:math:`O(m n^2 + n^3)` per Jacobian and per trial. With fewer residuals than parameters
(:math:`m < n`) it solves, as the package does, the :math:`m \times m` system
:math:`(J J^\top + \lambda I) u = r`, :math:`p = -J^\top u` (the same step), on all of
:math:`J` at once.

The damping acts on :math:`J^\top J` of the residual form, whose scale is fixed by
:math:`\tfrac12\|r\|^2` being the problem's loss (the package's residuals of an MSE fit are
:math:`\hat y - y` unscaled, so its :math:`\lambda` is :math:`N/2` times larger for the same
step); the ×10 rule adapts it within a few trials either way.

Counts: ``nfev`` residual evaluations, the start (whose residuals come with the first Jacobian)
included; ``njev`` Jacobians; ``trials`` damped solves, each an iteration in the sense of
flatvec's ``lm``, whose rejected steps are iterations too.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from benchmarks.measure import Trace
from benchmarks.residual_forms import ResidualForm, jacobian_fn

__all__ = ["ExplicitJtJ", "ExplicitResult"]


class ExplicitResult(NamedTuple):
    """One run of :class:`ExplicitJtJ` (``loss`` is :math:`\\tfrac12\\|r\\|^2` at ``x``)."""

    x: np.ndarray
    loss: float
    grad_inf: float
    trials: int
    accepted: int
    nfev: int
    njev: int
    message: str
    trace: Trace


class ExplicitJtJ:
    """Levenberg-Marquardt on the explicit :math:`J^\\top J` of a residual form.

    The graphs (normal equations, one trial) are compiled once at construction's first use and
    reused by every :meth:`run`, so only the first run pays for tracing.

    Parameters
    ----------
    form : ResidualForm
        The residuals, in the parts whose Jacobians are formed one at a time.
    damping : float
        Starting :math:`\\lambda`.
    factor : float
        Division after a success, multiplication after a failure.
    min_damping, max_damping : float
        Bounds of :math:`\\lambda`; a failure above ``max_damping`` ends the run.

    Examples
    --------
    >>> import tensorflow as tf
    >>> from benchmarks.residual_forms import rosenbrock
    >>> out = ExplicitJtJ(rosenbrock(2)).run([-1.2, 1.0], max_iter=100, gtol=1e-10)
    >>> out.message, round(out.loss, 12)
    ('gtol', 0.0)
    """

    def __init__(self, form: ResidualForm, *, damping: float = 1e-2, factor: float = 10.0,
                 min_damping: float = 1e-12, max_damping: float = 1e12) -> None:
        self.form = form
        self.damping, self.factor = damping, factor
        self.min_damping, self.max_damping = min_damping, max_damping
        self.underdetermined = form.m < form.n
        n, dt = form.n, form.dtype
        spec = tf.TensorSpec([n], dt)
        jacobians = [jacobian_fn(form, [part], mode="reverse") for part in form.parts]

        def normal_equations(x: tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor, tf.Tensor]:
            a, g, f = tf.zeros([n, n], dt), tf.zeros([n], dt), tf.zeros([], dt)
            for jac in jacobians:  # one sub-batch Jacobian alive at a time
                r, j = jac(x)
                a += tf.linalg.matmul(j, j, transpose_a=True)
                g += tf.linalg.matvec(j, r, transpose_a=True)
                f += 0.5 * tf.reduce_sum(r * r)
            return (a, g), g, f

        def trial(x: tf.Tensor, a: tf.Tensor, g: tf.Tensor,
                  lam: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            chol = tf.linalg.cholesky(a + lam * tf.eye(n, dtype=dt))
            p = -tf.linalg.cholesky_solve(chol, g[:, None])[:, 0]
            r = form(x + p)
            return p, 0.5 * tf.reduce_sum(r * r)

        # Fewer residuals than parameters (the PINN): the package solves the m x m system
        # (J J' + lam I) u = r, p = -J' u instead, the same step (J'J + lam I)^-1 J' =
        # J' (J J' + lam I)^-1; that needs all of J at once (m x n), as it does.
        def small_system(x: tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor, tf.Tensor]:
            parts = [jac(x) for jac in jacobians]
            r = tf.concat([r for r, _ in parts], axis=0)
            j = tf.concat([j for _, j in parts], axis=0)
            b = tf.linalg.matmul(j, j, transpose_b=True)
            return (b, j, r), tf.linalg.matvec(j, r, transpose_a=True), 0.5 * tf.reduce_sum(r * r)

        def small_trial(x: tf.Tensor, b: tf.Tensor, j: tf.Tensor, r: tf.Tensor,
                        lam: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            chol = tf.linalg.cholesky(b + lam * tf.eye(form.m, dtype=dt))
            p = -tf.linalg.matvec(j, tf.linalg.cholesky_solve(chol, r[:, None])[:, 0],
                                  transpose_a=True)
            r_new = form(x + p)
            return p, 0.5 * tf.reduce_sum(r_new * r_new)

        scalar = tf.TensorSpec([], dt)
        if self.underdetermined:
            self._normal = tf.function(small_system, input_signature=[spec])
            self._trial = tf.function(small_trial, input_signature=[
                spec, tf.TensorSpec([form.m, form.m], dt), tf.TensorSpec([form.m, n], dt),
                tf.TensorSpec([form.m], dt), scalar])
        else:
            self._normal = tf.function(normal_equations, input_signature=[spec])
            self._trial = tf.function(trial, input_signature=[
                spec, tf.TensorSpec([n, n], dt), spec, scalar])

    def _try(self, x: tf.Tensor, system: tuple[tf.Tensor, ...],
             lam: float) -> tuple[tf.Tensor | None, float]:
        """One damped solve and f at its point; (None, inf) where the factorization fails."""
        try:
            p, f_new = self._trial(x, *system, tf.constant(lam, self.form.dtype))
        except tf.errors.InvalidArgumentError:  # the damped matrix not numerically PD
            return None, float("inf")
        f_new = float(f_new)
        return p, f_new if np.isfinite(f_new) else float("inf")

    def run(self, x0: np.ndarray | list[float], *, max_iter: int, gtol: float = 0.0,
            ftol: float = 0.0, target: float | None = None) -> ExplicitResult:
        """Minimize from ``x0`` for at most ``max_iter`` trials.

        Stops (``message``) on ``"gtol"`` (:math:`\\|g\\|_\\infty \\le` ``gtol``), ``"ftol"``
        (an accepted step with :math:`f_k - f_{k+1} \\le` ``ftol`` :math:`\\max(|f_k|,
        |f_{k+1}|, 1)`, flatvec's and L-BFGS-B's test), ``"target"`` (:math:`f \\le`
        ``target``), ``"damping"`` (no step lowers f up to ``max_damping``) or
        ``"max_iter"``.
        """
        start = time.perf_counter()
        x = tf.constant(np.asarray(x0, dtype=self.form.dtype.as_numpy_dtype))
        system, g, f_t = self._normal(x)
        f, lam = float(f_t), self.damping
        trials = accepted = 0
        nfev = njev = 1
        trace = Trace([1], [time.perf_counter() - start], [f])
        message = "max_iter"
        while True:
            if float(tf.reduce_max(tf.abs(g))) <= gtol:
                message = "gtol"
                break
            if target is not None and f <= target:
                message = "target"
                break
            if trials >= max_iter:
                break
            trials += 1
            p, f_new = self._try(x, system, lam)
            if p is not None:
                nfev += 1
                trace.nfev.append(nfev)
                trace.time.append(time.perf_counter() - start)
                trace.loss.append(f_new)
            if f_new < f:
                accepted += 1
                x, lam = x + p, max(lam / self.factor, self.min_damping)
                system, g, _ = self._normal(x)
                njev += 1
                small = f - f_new <= ftol * max(abs(f), abs(f_new), 1.0)
                f = f_new
                if small:
                    message = "ftol"
                    break
            else:
                lam *= self.factor
                if lam > self.max_damping:
                    message = "damping"
                    break
        return ExplicitResult(x.numpy(), f, float(tf.reduce_max(tf.abs(g))), trials, accepted,
                              nfev, njev, message, trace)
