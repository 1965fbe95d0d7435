r"""Least-squares objectives :math:`f(x) = \tfrac12 \|r(x)\|^2` and their Jacobian products."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from flatvec.objective import Objective, with_autograph

__all__ = ["ResidualObjective"]


def _flat(r: Any, dtype: tf.DType) -> tf.Tensor:
    if not isinstance(r, (tf.Tensor, tf.Variable)) and not hasattr(r, "shape"):
        raise TypeError(f"fun: must return a residual tensor, got {type(r).__name__}")
    r = tf.convert_to_tensor(r)
    if not r.dtype.is_floating:
        raise TypeError(f"fun: must return a floating residual tensor, got dtype {r.dtype.name}")
    return tf.reshape(tf.cast(r, dtype), [-1])


class ResidualObjective(Objective):
    r"""The objective :math:`f(x) = \tfrac12 \|r(x)\|^2` of a residual function ``r``.

    Besides what every :class:`~flatvec.Objective` offers (value, gradient
    :math:`J^\top r`, Hessian-vector products), traceable products with the Jacobian
    :math:`J = \partial r / \partial x`, none of which forms :math:`J`:

    - :meth:`residuals` :math:`r(x)` (one ``nfev``);
    - :meth:`jvp` :math:`J v` (forward mode), :meth:`vjp` :math:`J^\top u` (reverse mode) and
      :meth:`ggn_vp` :math:`J^\top J v` (both), each one ``nhev``;
    - :meth:`jacobian`, the dense :math:`m \times n` matrix (one ``njev``), for small problems.

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

    @tf.autograph.experimental.do_not_convert
    def jacobian(self, x: tf.Tensor) -> tf.Tensor:
        """Traceable dense Jacobian ``[m, n]`` (one ``njev``; reverse mode, vectorized)."""
        self.njev.assign_add(1)
        with tf.GradientTape() as tape:
            tape.watch(x)
            r = self._residual_fun(x)
        return tape.jacobian(r, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)

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
