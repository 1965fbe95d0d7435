r"""Residual forms of the benchmark problems that are least squares.

A residual form is :math:`r(x)`, a function of the flat parameter vector, with
:math:`\tfrac12 \|r(x)\|^2` *equal* to the problem's loss (not merely proportional to it): the
losses every method reports and the target loss are then on one scale, whether a method
minimizes the loss (L-BFGS) or the residuals (Levenberg-Marquardt). Each form keeps its
residuals in parts (sub-batches of data rows, or natural blocks) whose concatenation is
:math:`r`, so that an explicit-Jacobian method can form :math:`J` part by part, as the Keras
Levenberg-Marquardt package does with its row limit.

The scalings:

- extended Rosenbrock, :math:`f = \sum 100 (x_{2i} - x_{2i-1}^2)^2 + (1 - x_{2i-1})^2`:
  :math:`r = \sqrt2\,(10 (x_{2i} - x_{2i-1}^2),\ 1 - x_{2i-1})`;
- a Keras model under MSE, :math:`f = \frac1N \sum_i \|\hat y_i - y_i\|^2 / k` (Keras' mean
  over the ``k`` outputs and the ``N`` samples): :math:`r = \sqrt{2/(N k)}\,(\hat y - y)`;
- the PINN, :math:`f = \frac1M \sum_j (u''(x_j) - s(x_j))^2 + \frac12 (u(0)^2 + u(1)^2)`:
  :math:`r = (\sqrt{2/M}\,(u'' - s),\ u(0),\ u(1))`.

The network residuals call the problem's own Keras model statelessly
(``model.stateless_call`` on the unpacked vector), so they are the same TF function as the
loss, and evaluating them never writes the model's weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import flatvec
from flatvec.residuals import residuals_and_jacobian

__all__ = ["ResidualForm", "jacobian_fn", "keras_mse", "pinn", "rosenbrock"]

ROWS = 100  # rows per part for data residuals (the Keras LM package's default row limit)
Part = Callable[[tf.Tensor], tf.Tensor]


@dataclass(frozen=True)
class ResidualForm:
    r"""The residuals :math:`r(x)` of a problem, in parts.

    Attributes
    ----------
    parts : tuple of callables
        ``part(x) -> tensor`` for a 1-D parameter tensor ``x``; :math:`r` is the concatenation
        of the flattened parts.
    m : int
        Number of residuals (the length of :math:`r`).
    n : int
        Number of parameters.
    dtype : tf.DType
        Working dtype of ``x`` and :math:`r`.
    """

    parts: tuple[Part, ...]
    m: int
    n: int
    dtype: tf.DType

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """:math:`r(x)` as one 1-D tensor (traceable)."""
        return tf.concat([tf.reshape(part(x), [-1]) for part in self.parts], axis=0)

    def objective(self, jit_compile: bool = False) -> flatvec.Objective:
        r"""A fresh :meth:`flatvec.Objective.from_residuals` of :math:`r`
        (:math:`f = \tfrac12 \|r\|^2`)."""
        return flatvec.Objective.from_residuals(self, dtype=self.dtype, size=self.n,
                                                jit_compile=jit_compile)


def _row_slices(count: int, rows: int) -> list[slice]:
    return [slice(i, min(i + rows, count)) for i in range(0, count, rows)]


def rosenbrock(n: int) -> ResidualForm:
    r"""Extended Rosenbrock in two blocks, :math:`\sqrt2 \cdot 10 (x_{2i} - x_{2i-1}^2)` and
    :math:`\sqrt2 (1 - x_{2i-1})` (so :math:`\tfrac12\|r\|^2` is the problem's sum)."""
    root2 = np.sqrt(2.0)

    def curvature(x: tf.Tensor) -> tf.Tensor:
        return root2 * 10.0 * (x[1::2] - x[0::2] ** 2)

    def offset(x: tf.Tensor) -> tf.Tensor:
        return root2 * (1.0 - x[0::2])

    return ResidualForm((curvature, offset), n, n, tf.float64)


def _stateless(model: keras.Model) -> tuple[flatvec.FlatParamSpace, Callable[..., tf.Tensor]]:
    """The model's flat space and ``call(x, inputs)``: the model's output with its trainable
    weights taken from ``x`` (gradients flow to ``x``; the variables are not written)."""
    variables = list(model.trainable_variables)
    space = flatvec.FlatParamSpace(variables)
    frozen = list(model.non_trainable_variables)

    def call(x: tf.Tensor, inputs: tf.Tensor) -> tf.Tensor:
        outputs, _ = model.stateless_call(space.unpack(x), [v.value for v in frozen], inputs)
        return outputs

    return space, call


def keras_mse(model: keras.Model, x: np.ndarray, y: np.ndarray,
              rows: int = ROWS) -> ResidualForm:
    r"""A Keras model's MSE fit to ``(x, y)`` as residuals :math:`\sqrt{2/(N k)}(\hat y - y)`,
    one part per ``rows`` samples (no regularization losses: the model must have none)."""
    if model.losses:
        raise ValueError("model: has regularization losses, which are not residuals")
    space, call = _stateless(model)
    dtype = tf.as_dtype(space.dtype)
    count, outputs = len(x), int(np.prod(y.shape[1:]))
    scale = np.sqrt(2.0 / (count * outputs))
    chunks = [(tf.constant(x[s], dtype), tf.constant(y[s], dtype))
              for s in _row_slices(count, rows)]

    def part_of(xb: tf.Tensor, yb: tf.Tensor) -> Part:
        return lambda w: scale * (call(w, xb) - yb)

    return ResidualForm(tuple(part_of(xb, yb) for xb, yb in chunks), count * outputs,
                        space.size, dtype)


def pinn(model: keras.Model, points: np.ndarray, source: np.ndarray, bound: np.ndarray,
         rows: int = ROWS) -> ResidualForm:
    r"""The PINN's residuals: :math:`\sqrt{2/M}\,(u''(x_j) - s(x_j))` in parts of ``rows``
    collocation points, and the boundary values :math:`u(0), u(1)` as one more part.

    :math:`u''` is taken as in the problem's loss, by two nested input tapes (each
    :math:`u(x_j)` depends on :math:`x_j` only, so the gradient of the sum is pointwise).
    """
    space, call = _stateless(model)
    dtype = tf.as_dtype(space.dtype)
    count = len(points)
    scale = np.sqrt(2.0 / count)

    def interior(xs: tf.Tensor, sb: tf.Tensor) -> Part:
        def part(w: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as outer:
                outer.watch(xs)
                with tf.GradientTape() as inner:
                    inner.watch(xs)
                    u = call(w, xs)
                du = inner.gradient(u, xs)
            return scale * (outer.gradient(du, xs) - sb)

        return part

    parts: list[Part] = [interior(tf.constant(points[s], dtype), tf.constant(source[s], dtype))
                         for s in _row_slices(count, rows)]
    edges = tf.constant(bound, dtype)
    parts.append(lambda w: call(w, edges))
    return ResidualForm(tuple(parts), count + len(bound), space.size, dtype)


def jacobian_fn(form: ResidualForm, parts: Sequence[Part] | None = None, *,
                mode: str = "auto") -> Callable[..., Any]:
    """``jac(x) -> (r, J)`` for the concatenation of ``parts`` (default: all of ``form``), by
    :func:`flatvec.residuals.residuals_and_jacobian`: ``mode="auto"`` as flatvec's
    residual objective forms it (forward mode for m >= n, else reverse), ``"reverse"`` always
    reverse mode (the Keras LM package's way). Traceable; not compiled here."""
    chosen = tuple(form.parts if parts is None else parts)

    def residuals(x: tf.Tensor) -> tf.Tensor:
        return tf.concat([tf.reshape(part(x), [-1]) for part in chosen], axis=0)

    return lambda x: residuals_and_jacobian(residuals, x, mode=mode)
