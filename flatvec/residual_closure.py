r"""Least squares from a closure: :math:`f = \tfrac12 \|r\|^2` of residuals that a
zero-argument function computes from variables (a PINN's loss terms, a GPflow-style model).

``residual_fn()`` returns one residual tensor (any shape) or a list of them, the groups of a
PINN loss (PDE residuals at collocation points, boundary and initial conditions). Groups are
weighted: with ``weights=[w_1, ...]`` the objective is :math:`\tfrac12 \sum_i w_i \|r_i\|^2`
(the stacked residual is :math:`\sqrt{w_i}\, r_i`); ``weights="mean"`` gives
:math:`\sum_i \operatorname{mean}(r_i^2)`, the mean-squared-error sum a PINN reports
(:math:`w_i = 2 / N_i`). The Jacobian products work on the variables (forward mode through
the closure for :math:`J v`, reverse mode for :math:`J^\top u`), so ``lm`` and
``gauss-newton`` run on the closure as on :meth:`flatvec.Objective.from_residuals`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from flatvec._autograph import with_autograph
from flatvec._objective.objective_checks import check_arity
from flatvec._objective.sweep import closure_terms
from flatvec.objective import GaussNewtonSystem, Objective
from flatvec.space import FlatParamSpace

__all__ = ["ResidualClosureObjective", "check_weights"]

ZERO = tf.UnconnectedGradients.ZERO


def check_weights(weights: Any) -> Any:
    """``None``, ``"mean"`` or a sequence of finite non-negative numbers (one per group)."""
    if weights is None or (isinstance(weights, str) and weights == "mean"):
        return weights
    if isinstance(weights, str) or not isinstance(weights, Sequence):
        raise TypeError(f"residual_weights: expected None, 'mean' or a list of numbers (one per "
                        f"residual group), got {weights!r}")
    values = np.asarray(weights, dtype=object)
    if values.ndim != 1 or not all(
            isinstance(w, (int, float, np.integer, np.floating)) and not isinstance(w, bool)
            and np.isfinite(w) and w >= 0 for w in values):
        raise ValueError(f"residual_weights: expected finite non-negative numbers, got "
                         f"{list(weights)!r}")
    return tuple(float(w) for w in values)


class ResidualClosureObjective(Objective, form="residual_closure"):
    r""":math:`f = \tfrac12 \|r\|^2` of a closure ``residual_fn()`` over ``variables``, with
    the Gauss-Newton products and matrix of
    :class:`~flatvec.residuals.ResidualObjective`.

    Build it with :meth:`flatvec.Objective.from_residual_closure`."""

    def __init__(self, residual_fn: Callable[[], Any], variables: Sequence[Any], *,
                 weights: Any = None, dtype: Any = None, allow_unused: bool = False,
                 jit_compile: bool = False) -> None:
        if not callable(residual_fn):
            raise TypeError(f"residual_fn: expected a zero-argument callable, got "
                            f"{type(residual_fn).__name__}")
        check_arity(residual_fn, "residual_fn", 0)
        weights = check_weights(weights)
        space = FlatParamSpace(variables, dtype=dtype)
        # Value, gradient and Hessian-vector products are the closure form's, of 1/2 |r|^2.
        super().__init__(space=space, dtype=space.dtype, size=space.size,
                         terms=closure_terms(space, self._loss, allow_unused),
                         jit_compile=jit_compile)
        self._user_fn = with_autograph(residual_fn)
        self._weights = weights
        self._allow_unused = allow_unused

    # ------------------------------------------------------------------ the residual vector
    def _stacked(self) -> tf.Tensor:
        """The weighted residual groups, flattened and stacked into one 1-D tensor."""
        out = self._user_fn()
        groups = list(out) if isinstance(out, (list, tuple)) else [out]
        if not groups:
            raise ValueError("residual_fn: returned no residuals")
        weights = self._weights
        if isinstance(weights, tuple) and len(weights) != len(groups):
            raise ValueError(f"residual_weights: {len(weights)} weights for {len(groups)} "
                             "residual groups; give one per group")
        parts = []
        for i, r in enumerate(groups):
            if not isinstance(r, (tf.Tensor, tf.Variable)) or not r.dtype.is_floating:
                raise TypeError(f"residual_fn: group {i} is not a floating tensor "
                                f"(got {type(r).__name__}); return residual tensors")
            if r.shape.rank == 0 and len(groups) == 1:
                raise ValueError("residual_fn: returned a scalar; least-squares methods need "
                                 "the residual vector (return r, not a loss such as sum(r**2))")
            r = tf.reshape(tf.cast(r, self._dtype), [-1])
            if weights == "mean":
                r = r * tf.sqrt(2.0 / tf.cast(tf.maximum(tf.size(r), 1), self._dtype))
            elif weights is not None:
                r = r * np.sqrt(weights[i])
            parts.append(r)
        return parts[0] if len(parts) == 1 else tf.concat(parts, 0)

    def _loss(self) -> tf.Tensor:
        r = self._stacked()
        return 0.5 * tf.reduce_sum(tf.square(r))

    def _pack(self, parts: list[Any], name: str) -> tf.Tensor:
        return self._space.pack(parts, allow_unused=self._allow_unused, name=name)

    # ------------------------------------------------------------------ Objective's oracles
    @property
    def has_gauss_newton(self) -> bool:
        return True

    def ggn_rows(self, x: tf.Tensor) -> int | None:
        """The number of residuals, read off a trace (nothing of it runs)."""
        del x
        graph = tf.function(self._stacked, autograph=False).get_concrete_function().graph
        return graph.outputs[0].shape[0]

    @tf.autograph.experimental.do_not_convert
    def residuals(self, x: tf.Tensor) -> tf.Tensor:
        """The stacked weighted residual vector (one ``nfev``)."""
        self.nfev.assign_add(1)
        self._space.assign(x)
        return self._stacked()

    @tf.autograph.experimental.do_not_convert
    def jvp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        r""":math:`J v` (forward mode; one ``nhev``)."""
        self.nhev.assign_add(1)
        self._space.assign(x)
        return self._jvp(v)[1]

    def _jvp(self, v: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.autodiff.ForwardAccumulator(self._space.tf_variables,
                                            self._space.unpack(v)) as acc:
            r = self._stacked()
        return r, acc.jvp(r, unconnected_gradients=ZERO)

    @tf.autograph.experimental.do_not_convert
    def vjp(self, x: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        r""":math:`J^\top u` (reverse mode; one ``nhev``)."""
        self.nhev.assign_add(1)
        self._space.assign(x)
        with tf.GradientTape() as tape:
            r = self._stacked()
        return self._pack(tape.gradient(r, self._space.tf_variables, output_gradients=u),
                          "vjp")

    @tf.autograph.experimental.do_not_convert
    def ggn_vp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        r""":math:`J^\top J v` (one forward and one reverse pass; one ``nhev``)."""
        self.nhev.assign_add(1)
        self._space.assign(x)
        with tf.GradientTape() as tape:
            r, jv = self._jvp(v)
        grads = tape.gradient(r, self._space.tf_variables, output_gradients=tf.stop_gradient(jv))
        return self._pack(grads, "ggn_vp")

    @tf.autograph.experimental.do_not_convert
    def jacobian(self, x: tf.Tensor) -> tf.Tensor:
        """The dense Jacobian ``[m, n]`` (one ``njev``)."""
        self.njev.assign_add(1)
        self._space.assign(x)
        return self._residuals_and_jacobian()[1]

    def _residuals_and_jacobian(self) -> tuple[tf.Tensor, tf.Tensor]:
        variables = self._space.tf_variables
        with tf.GradientTape() as tape:
            r = self._stacked()
        # Unconnected: None, so that a variable the residuals do not read is named (as the
        # value and gradient name it) unless allowed; zeros then.
        parts = tape.jacobian(r, variables, unconnected_gradients=tf.UnconnectedGradients.NONE)
        if not self._allow_unused:
            self._space.check_connected(parts, "jacobian")
        parts = [tf.zeros(tf.concat([tf.shape(r), tf.shape(v)], 0), r.dtype) if p is None else p
                 for p, v in zip(parts, variables)]
        m = tf.shape(r)[0]
        columns = [tf.reshape(tf.cast(p, self._dtype), [m, -1]) for p in parts]
        return r, tf.concat(columns, 1)

    @tf.autograph.experimental.do_not_convert
    def ggn_matrix(self, x: tf.Tensor) -> GaussNewtonSystem:
        r""":math:`(f, J^\top r, J^\top J)` from one dense Jacobian (one ``njev``)."""
        self.njev.assign_add(1)
        self._space.assign(x)
        r, jac = self._residuals_and_jacobian()
        return GaussNewtonSystem(0.5 * tf.reduce_sum(tf.square(r)),
                                 tf.linalg.matvec(jac, r, transpose_a=True),
                                 tf.linalg.matmul(jac, jac, transpose_a=True))

