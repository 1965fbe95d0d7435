"""Which automatic-differentiation mode gives a right Hessian-vector product of user code.

Forward-over-reverse (a ``tf.autodiff.ForwardAccumulator`` around a ``tf.GradientTape``) is
the cheaper product, and right for plain TensorFlow ops. Inside a ``tf.function`` (as the
compiled loop traces it), TensorFlow 2.16-2.21 get it wrong when the differentiated code holds
a call of another function or control flow, measured on ``f = sum(v**4) + v0 * v1**2``:

- the closure is a ``tf.function`` (GPflow's ``training_loss_closure``, a nested one, one with
  a ``tf.custom_gradient`` inside as TFP's bijectors have): the product is **zero**;
- a plain closure that calls a ``tf.function`` for part of the loss: the product misses that
  part (``[-2.8, -0.2]`` against ``[0.8, -33.8]``), silently;
- ``tf.cond``, ``tf.while_loop`` and ``tf.map_fn``: TensorFlow raises.

Reverse-over-reverse (the gradient of ``g(x) . v``) is right in all of these; it costs a
second backward pass. :func:`needs_reverse_over_reverse` looks at one trace of the user's code
for the op types that carry a function (calls and control flow) and picks it only there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

__all__ = ["FUNCTION_OP_TYPES", "needs_reverse_over_reverse", "reverse_over_reverse"]

# Op types whose body is another function: forward mode through them is wrong or refused.
FUNCTION_OP_TYPES = frozenset({
    "PartitionedCall", "StatefulPartitionedCall",
    "If", "StatelessIf", "Case", "StatelessCase", "While", "StatelessWhile",
})


def needs_reverse_over_reverse(fn: Callable[..., Any], *specs: tf.TensorSpec) -> bool:
    """Whether ``fn`` (called with arguments of ``specs``) holds calls or control flow, so
    that its Hessian-vector products must be taken reverse-over-reverse.

    Traces ``fn`` once into a graph of its own (nothing of it runs)."""
    graph = tf.function(fn, autograph=False).get_concrete_function(*specs).graph
    return any(op.type in FUNCTION_OP_TYPES for op in graph.get_operations())


def reverse_over_reverse(
    value_and_gradient: Callable[[], tuple[Any, tf.Tensor]],
    sources: Sequence[Any],
    tangent: tf.Tensor,
    gather: Callable[[Sequence[Any]], tf.Tensor],
) -> tuple[Any, tf.Tensor, tf.Tensor]:
    """``(value, g, H v)``: ``value_and_gradient()`` returns the value (any structure) and the
    flat gradient ``g`` of ``sources``; ``H v`` is the gradient of ``g . v`` in ``sources``,
    flattened by ``gather`` (unconnected parts are zero: a linear function has ``H = 0``)."""
    with tf.GradientTape() as outer:
        for source in sources:
            outer.watch(source)
        value, g = value_and_gradient()
        g_dot_v = tf.reduce_sum(g * tf.stop_gradient(tangent))
    hv = outer.gradient(g_dot_v, list(sources),
                        unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return value, g, gather(hv)
