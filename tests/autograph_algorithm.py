"""A user algorithm with Python control flow on tensors (a module file, so AutoGraph can read
its source; used by tests/test_driver.py)."""

from typing import NamedTuple

import tensorflow as tf

import flatvec


class ClippedState(NamedTuple):
    x: tf.Tensor
    f: tf.Tensor
    g: tf.Tensor


class ClippedGradientDescent(flatvec.Algorithm):
    """Gradient descent whose step is halved while the gradient is large (a Python ``if``)."""

    def init(self, x, f, g):
        return ClippedState(x, f, g)

    def step(self, state, oracle):
        if tf.reduce_max(tf.abs(state.g)) > 1.0:
            x = state.x - 0.05 * state.g
        else:
            x = state.x - 0.1 * state.g
        f, g = oracle(x)
        return ClippedState(x, f, g)


class NoSlots(NamedTuple):
    pass


class ClippedRule(flatvec.UpdateRule):
    """An update rule with a Python ``if`` on a tensor (converted by AutoGraph)."""

    def init_slots(self, x):
        return NoSlots()

    def update(self, x, g, slots, *, learning_rate):
        if tf.reduce_max(tf.abs(g)) > 1.0:
            step = 0.5 * learning_rate
        else:
            step = learning_rate
        return x - step * g, slots
