"""Writing new methods: rules that see the loss value, the registry's protection of names, and
what loading a model with an unknown rule says."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import tensorflow as tf
from flatvec.algorithms.lbfgs import LBFGS

import flatvec
from flatvec.keras import VectorOptimizer
from flatvec.protocol import UpdateRule

F64 = tf.float64


class RestartSlots(NamedTuple):
    previous_x: tf.Tensor
    previous_f: tf.Tensor
    restarts: tf.Tensor


class NesterovWithRestart(UpdateRule):
    """Nesterov's accelerated gradient with O'Donoghue & Candès' function-value restart:
    when f rises, the momentum is dropped."""

    def init_slots(self, x):
        return RestartSlots(x, tf.constant(np.inf, x.dtype), tf.zeros([], tf.int32))

    def update(self, x, g, slots, *, learning_rate, f):
        rose = f > slots.previous_f
        momentum = tf.where(rose, tf.zeros_like(x), x - slots.previous_x)
        y = x + 0.9 * momentum
        x_new = y - learning_rate * g
        return x_new, RestartSlots(x, f, slots.restarts + tf.cast(rose, tf.int32))


def _quadratic(x):
    return 0.5 * tf.reduce_sum(tf.constant([1.0, 50.0], F64) * x**2)


def test_a_rule_whose_update_takes_f_gets_the_loss_at_x():
    seen = []

    class Recorder(UpdateRule):
        def init_slots(self, x):
            return ()

        def update(self, x, g, slots, *, learning_rate, f):
            seen.append(f)  # traced: a symbolic tensor
            tf.debugging.assert_near(f, _quadratic(x))  # the value at x, checked in graph
            return x - learning_rate * g, slots

    res = flatvec.minimize(_quadratic, [1.0, 1.0], Recorder(learning_rate=0.01), max_iter=5)
    assert seen and res.nit == 5


def test_function_value_restart_restarts_and_converges():
    rule = NesterovWithRestart(learning_rate=0.02)
    assert rule.takes_value
    res = flatvec.minimize(_quadratic, [1.0, 1.0], rule, gtol=1e-8, max_iter=2000)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, [0.0, 0.0], atol=1e-7)
    assert int(res.state.slots.restarts) >= 1


def test_vector_optimizer_refuses_a_rule_that_needs_the_loss_value():
    with pytest.raises(ValueError, match="NesterovWithRestart.*takes the loss value f"):
        VectorOptimizer(NesterovWithRestart(learning_rate=0.1))


# ---------------------------------------------------------------------- registry
def test_registering_a_taken_name_needs_override():
    class Other(LBFGS):
        pass

    with pytest.raises(ValueError, match="'lbfgs' is already registered.*override=True"):
        flatvec.register_algorithm("lbfgs", Other)
    assert type(flatvec.get_algorithm("lbfgs")) is LBFGS
    flatvec.register_algorithm("plugin-test", NesterovWithRestart)
    flatvec.register_algorithm("plugin-test", NesterovWithRestart)  # the same class: no-op
    with pytest.raises(ValueError, match="already registered"):
        flatvec.register_algorithm("plugin-test", Other)
    flatvec.register_algorithm("plugin-test", Other, override=True)
    assert isinstance(flatvec.get_algorithm("plugin-test"), Other)


def test_an_unknown_name_says_to_register_it_or_install_its_package():
    with pytest.raises(ValueError, match="registered again in each new process.*installed"):
        flatvec.minimize(_quadratic, [1.0, 1.0], "nag")
