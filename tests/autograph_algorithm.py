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
