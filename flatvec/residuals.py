r"""Least-squares objectives :math:`f(x) = \tfrac12 \|r(x)\|^2` and their Jacobian products."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from flatvec._autograph import with_autograph
from flatvec.objective import GaussNewtonSystem, Objective

__all__ = ["ResidualObjective", "residuals_and_jacobian"]


def _flat(r: Any, dtype: tf.DType) -> tf.Tensor:
    if not isinstance(r, (tf.Tensor, tf.Variable)) and not hasattr(r, "shape"):
        raise TypeError(f"fun: must return a residual tensor, got {type(r).__name__}")
    r = tf.convert_to_tensor(r)
    if not r.dtype.is_floating:
        raise TypeError(f"fun: must return a floating residual tensor, got dtype {r.dtype.name}")
    if r.shape.rank == 0:
        raise ValueError("fun: returned a scalar; least-squares methods need the residual "
                         "vector (return r, not a loss such as sum(r**2); a single residual "
                         "as a vector of one)")
    return tf.reshape(tf.cast(r, dtype), [-1])


def residuals_and_jacobian(residual_fun: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor, *,
                           mode: str = "auto") -> tuple[tf.Tensor, tf.Tensor]:
    r"""Traceable :math:`r(x)` (1-D) and its Jacobian :math:`J` (``[m, n]``).

    ``mode="auto"``: forward mode when :math:`m \ge n` (the :math:`n` columns :math:`J e_i`
    vectorized by ``tf.vectorized_map``, the residual pass shared), else reverse mode (the
    :math:`m` rows, ``GradientTape.jacobian``); ``"reverse"``: always reverse mode. Forward
    mode is what makes a dense path pay for tall problems: 7 ms against 83-120 ms by reverse
    mode on the sinc fit's residuals (:math:`m = 1000, n = 61`).
    """
    if mode not in ("auto", "reverse"):
        raise ValueError(f"mode: expected 'auto' or 'reverse', got {mode!r}")
    with tf.GradientTape() as tape:  # recording only; used by the reverse branch
        tape.watch(x)
        r = residual_fun(x)
    m, n = r.shape[0], x.shape[0]
    if mode == "auto" and m is not None and n is not None and m >= n:
        def column(tangent: tf.Tensor) -> tf.Tensor:
            with tf.autodiff.ForwardAccumulator(x, tangent) as acc:
                out = residual_fun(x)
            return acc.jvp(out, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        return r, tf.transpose(tf.vectorized_map(column, tf.eye(n, dtype=x.dtype)))
    return r, tape.jacobian(r, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)


class ResidualObjective(Objective, form="residuals"):
    r"""The objective :math:`f(x) = \tfrac12 \|r(x)\|^2` of a residual function ``r``.

    Besides what every :class:`~flatvec.Objective` offers (value, gradient
    :math:`J^\top r`, Hessian-vector products), traceable products with the Jacobian
    :math:`J = \partial r / \partial x`, none of which forms :math:`J`:

    - :meth:`residuals` :math:`r(x)` (one ``nfev``);
    - :meth:`jvp` :math:`J v` (forward mode), :meth:`vjp` :math:`J^\top u` (reverse mode) and
      :meth:`ggn_vp` :math:`J^\top J v` (both), each one ``nhev``;
    - :meth:`jacobian`, the dense :math:`m \times n` matrix (one ``njev``), and
      :meth:`ggn_matrix`, :math:`(f, J^\top r, J^\top J)` from it, for small problems.

    Build it with :meth:`flatvec.Objective.from_residuals`.
    """

    def __init__(self, residual_fun: Callable[[tf.Tensor], Any], *, dtype: Any, size: int | None,
                 jit_compile: bool = False) -> None:
        fun = with_autograph(residual_fun)
        dt = tf.as_dtype(dtype)
        super().__init__(space=None, dtype=dt, size=size,
                         fun=lambda x: 0.5 * tf.reduce_sum(tf.square(_flat(fun(x), dt))),
                         jit_compile=jit_compile)
        self._residual_fun = lambda x: _flat(fun(x), dt)

    @tf.autograph.experimental.do_not_convert
    def residuals(self, x: tf.Tensor) -> tf.Tensor:
        """Traceable :math:`r(x)` as a 1-D tensor (one ``nfev``)."""
        self.nfev.assign_add(1)
        return self._residual_fun(x)

    @property
    def has_gauss_newton(self) -> bool:
        r"""Always: :math:`J^\top J` is the Gauss-Newton matrix of a residual objective."""
        return True

    def ggn_rows(self, x: tf.Tensor) -> int | None:
        """The number of residuals :math:`m`, read off a trace at ``x`` (no evaluation: the
        traced ops feed nothing and are pruned), or None if it is not static."""
        return self._residual_fun(x).shape[0]

    @tf.autograph.experimental.do_not_convert
    def jacobian(self, x: tf.Tensor) -> tf.Tensor:
        r"""Traceable dense Jacobian ``[m, n]`` (one ``njev``; forward mode for :math:`m \ge
        n`, else reverse mode, vectorized either way)."""
        self.njev.assign_add(1)
        return residuals_and_jacobian(self._residual_fun, x)[1]

    @tf.autograph.experimental.do_not_convert
    def ggn_matrix(self, x: tf.Tensor) -> GaussNewtonSystem:
        r"""Traceable :math:`(f, J^\top r, J^\top J)` from one dense Jacobian (one
        ``njev``)."""
        self.njev.assign_add(1)
        return self._traced_once("ggn_matrix_body", self._ggn_matrix_body, x, xla=True)(x)

    def _ggn_matrix_body(self, x: tf.Tensor) -> GaussNewtonSystem:
        r, jac = residuals_and_jacobian(self._residual_fun, x)
        return GaussNewtonSystem(0.5 * tf.reduce_sum(tf.square(r)),
                                 tf.linalg.matvec(jac, r, transpose_a=True),
                                 tf.linalg.matmul(jac, jac, transpose_a=True))

    @tf.autograph.experimental.do_not_convert
    def jvp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        """Traceable :math:`J v` (forward mode; one ``nhev``)."""
        self.nhev.assign_add(1)
        with tf.autodiff.ForwardAccumulator(x, v) as acc:
            r = self._residual_fun(x)
        return acc.jvp(r, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    @tf.autograph.experimental.do_not_convert
    def vjp(self, x: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        """Traceable :math:`J^\\top u` (reverse mode; one ``nhev``)."""
        self.nhev.assign_add(1)
        with tf.GradientTape() as tape:
            tape.watch(x)
            r = self._residual_fun(x)
        return tape.gradient(r, x, output_gradients=u,
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)

    @tf.autograph.experimental.do_not_convert
    def ggn_vp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        """Traceable Gauss-Newton product :math:`J^\\top J v` (one forward-mode and one
        reverse-mode pass; one ``nhev``)."""
        self.nhev.assign_add(1)
        with tf.GradientTape() as tape:
            tape.watch(x)
            with tf.autodiff.ForwardAccumulator(x, v) as acc:
                r = self._residual_fun(x)
            jv = acc.jvp(r, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tape.gradient(r, x, output_gradients=tf.stop_gradient(jv),
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
