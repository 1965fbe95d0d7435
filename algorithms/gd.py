"""Gradient descent with optional (Nesterov) momentum."""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from flatvec.algorithm import UpdateRule

__all__ = ["GradientDescent", "MomentumSlots"]


class MomentumSlots(NamedTuple):
    velocity: tf.Tensor


class GradientDescent(UpdateRule):
    r"""Gradient descent, optionally with heavy-ball or Nesterov momentum.

    With momentum :math:`\mu` and step :math:`\eta` (Keras' SGD convention):

    .. math::
        v_{k+1} = \mu v_k - \eta g_k, \qquad
        x_{k+1} = x_k + v_{k+1} \quad\text{or, Nesterov,}\quad
        x_{k+1} = x_k + \mu v_{k+1} - \eta g_k .

    ``momentum=0`` is plain gradient descent :math:`x_{k+1} = x_k - \eta g_k`.

    Parameters
    ----------
    learning_rate : float
        Step :math:`\eta`.
    momentum : float
        :math:`\mu \in [0, 1)`.
    nesterov : bool
        Use Nesterov's look-ahead form.

    Examples
    --------
    >>> import tensorflow as tf, flatvec
    >>> fun = lambda x: tf.reduce_sum(x**2)
    >>> x0 = tf.constant([1.0, -2.0], tf.float64)
    >>> res = flatvec.minimize(fun, x0, algo="gd", learning_rate=0.25, gtol=1e-8)
    >>> bool(res.success)
    True
    """

    def __init__(
        self, *, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False
    ) -> None:
        super().__init__(learning_rate=learning_rate)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def init_slots(self, x: tf.Tensor) -> MomentumSlots:
        # A zero-length buffer when there is no momentum: nothing stored, nothing updated.
        size = tf.shape(x) if self.momentum > 0 else [0]
        return MomentumSlots(tf.zeros(size, x.dtype))

    def update(
        self, x: tf.Tensor, g: tf.Tensor, slots: MomentumSlots, *, learning_rate: tf.Tensor
    ) -> tuple[tf.Tensor, MomentumSlots]:
        if self.momentum == 0.0:
            return x - learning_rate * g, slots
        velocity = self.momentum * slots.velocity - learning_rate * g
        if self.nesterov:
            return x + self.momentum * velocity - learning_rate * g, MomentumSlots(velocity)
        return x + velocity, MomentumSlots(velocity)
