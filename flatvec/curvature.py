"""Per-batch curvature products of a Keras model's loss: the generalized Gauss-Newton product."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from flatvec.space import FlatParamSpace

__all__ = ["ggn_terms"]


def ggn_terms(
    space: FlatParamSpace,
    call: Callable[[], Any],
    data_loss: Callable[[Any], tuple[tf.Tensor, tf.Tensor]],
    regularization: Callable[[], tf.Tensor],
    tangents: list[tf.Tensor],
    allow_unused: bool,
) -> Any:
    r"""One batch's share of the generalized Gauss-Newton product
    :math:`G v = J^\top H_L J v + n_b \nabla^2 R\, v`.

    ``call()`` runs the model on the batch (outputs :math:`z`, Jacobian :math:`J = \partial z /
    \partial w`), ``data_loss(z)`` gives the batch's weighted loss sum and element count
    :math:`n_b`, ``regularization()`` the model's regularization :math:`R` (read after the
    call). :math:`H_L = \nabla_z^2 \text{loss}` is the loss's Hessian in output space, applied
    by forward-over-reverse differentiation of the loss in :math:`z` alone, so any loss works
    and no output-space matrix is formed (for MSE it is a multiple of the identity, for softmax
    cross-entropy with logits :math:`\operatorname{diag}(p) - p p^\top`, and :math:`G` is the
    Fisher matrix). Three passes: the model forward with :math:`J v` carried along (forward
    mode), the loss's curvature in output space, and one backward pass for :math:`J^\top u`.
    The regularization's curvature is exact (weight regularizers are convex).

    Returns the batch's ``_Terms``: loss sum (regularization included, as the value), count,
    an empty gradient and :math:`G v` summed over the batch.
    """
    from flatvec.objective import _Terms  # the sweep's record type

    variables = space.tf_variables
    with tf.autodiff.ForwardAccumulator(variables, tangents) as acc:
        with tf.GradientTape(persistent=True) as tape:
            outputs = call()
            reg = regularization()
        reg_grads = tape.gradient(reg, variables,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
    jv = tf.nest.map_structure(
        lambda z: acc.jvp(z, unconnected_gradients=tf.UnconnectedGradients.ZERO), outputs)
    reg_hv = acc.jvp(reg_grads, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    z = tf.nest.map_structure(tf.stop_gradient, outputs)
    with tf.autodiff.ForwardAccumulator(z, tf.nest.map_structure(tf.stop_gradient, jv)) as acc2:
        with tf.GradientTape() as inner:
            inner.watch(z)
            loss_sum, count = data_loss(z)
        gz = inner.gradient(loss_sum, z, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    hjv = tf.nest.map_structure(
        lambda t: tf.stop_gradient(acc2.jvp(t, unconnected_gradients="zero")), gz)
    jt_u = tape.gradient(outputs, variables, output_gradients=hjv,
                         unconnected_gradients=tf.UnconnectedGradients.NONE)
    del tape
    gv = space.pack(jt_u, allow_unused=allow_unused, name="grads")
    gv += count * space.pack(reg_hv, allow_unused=True, name="grads")
    empty = tf.zeros([0], space.dtype)
    return _Terms(tf.cast(loss_sum, space.dtype) + count * reg, count, empty, gv)
