"""Errors of a user's update rule name the rule and the slot, the same in flatvec.minimize
and in model.fit, before any variable is written."""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf

import flatvec
from flatvec.keras import VectorOptimizer
from flatvec.protocol import UpdateRule


class Velocity(NamedTuple):
    v: tf.Tensor


class Float64Constant(UpdateRule):
    def init_slots(self, x):
        return Velocity(tf.zeros_like(x))

    def update(self, x, g, slots, *, learning_rate):
        return x - tf.constant(0.1, tf.float64) * g, slots  # wrong on a float32 model


class GrowingSlot(UpdateRule):
    def init_slots(self, x):
        return Velocity(tf.zeros_like(x))

    def update(self, x, g, slots, *, learning_rate):
        return x - learning_rate * g, Velocity(tf.concat([slots.v, slots.v[:1]], 0))


class TupleSlots(UpdateRule):
    def init_slots(self, x):
        return (tf.zeros_like(x),)

    def update(self, x, g, slots, *, learning_rate):
        return x - learning_rate * g, slots


RULES = [(Float64Constant, TypeError, "Float64Constant.update.*float"),
         (GrowingSlot, ValueError, "GrowingSlot.update: slot 'v' changed shape"),
         (TupleSlots, TypeError, "TupleSlots.init_slots: expected a NamedTuple")]


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])  # float32
    return model


@pytest.mark.parametrize("rule_cls, error, match", RULES)
def test_minimize_names_the_rule(rule_cls, error, match, unchanged):
    model = _model()
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    with unchanged(model.trainable_variables), pytest.raises(error, match=match):
        flatvec.minimize(model, (x, y), rule_cls(learning_rate=0.1), loss="mse", max_iter=2)


@pytest.mark.parametrize("rule_cls, error, match", RULES)
def test_fit_names_the_rule_the_same_way(rule_cls, error, match, unchanged):
    model = _model()
    model.compile(optimizer=VectorOptimizer(rule_cls(), learning_rate=0.1), loss="mse")
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    with unchanged(model.trainable_variables), pytest.raises(error, match=match):
        model.fit(x, y, epochs=1, verbose=0)


def test_a_python_if_on_a_tensor_in_update_works_in_minimize_and_fit():
    from autograph_algorithm import ClippedRule

    res = flatvec.minimize(lambda x: tf.reduce_sum(x**2), [3.0, -2.0], ClippedRule(
        learning_rate=0.25), gtol=1e-8, max_iter=500)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, [0.0, 0.0], atol=1e-8)
    model = _model()
    model.compile(optimizer=VectorOptimizer(ClippedRule(), learning_rate=0.1), loss="mse")
    history = model.fit(np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32), epochs=3,
                        verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
