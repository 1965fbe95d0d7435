"""Hessian-vector products of user code that holds ``tf.function`` calls, custom gradients
and control flow: against central differences of the gradient, and Newton-CG runs that reach
the same minimum as on the plain closure."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import flatvec
from flatvec._objective import hessian_mode

F64 = tf.float64
X = np.array([0.9, -1.3, 0.4])
V = np.array([0.3, -0.7, 1.1])


@tf.custom_gradient
def softplus(z):
    """Softplus with a hand-written gradient, as TFP's bijectors define theirs."""
    def grad(dy):
        return dy * tf.sigmoid(z)
    return tf.math.softplus(z), grad


def plain_loss(z):
    return tf.reduce_sum(z**4) + z[0] * z[1] ** 2 + tf.reduce_sum(softplus(z) ** 3)


def _forms(variable):
    """name -> zero-argument closure computing ``plain_loss(variable)`` in another guise."""
    inner = tf.function(lambda: tf.reduce_sum(variable**4))
    nested = tf.function(lambda: tf.function(lambda: plain_loss(variable))())

    def mixed():
        return inner() + variable[0] * variable[1] ** 2 + tf.reduce_sum(softplus(variable) ** 3)

    def with_cond():
        quartic = tf.cond(variable[0] > -10.0, lambda: tf.reduce_sum(variable**4),
                          lambda: tf.reduce_sum(variable**2))
        return quartic + variable[0] * variable[1] ** 2 + tf.reduce_sum(softplus(variable) ** 3)

    def with_while():
        quartic = tf.while_loop(lambda i, s: i < 2,
                                lambda i, s: (i + 1, s + 0.5 * tf.reduce_sum(variable**4)),
                                (tf.constant(0), tf.constant(0.0, F64)))[1]
        return quartic + variable[0] * variable[1] ** 2 + tf.reduce_sum(softplus(variable) ** 3)

    return {
        "plain": lambda: plain_loss(variable),
        "tf.function": tf.function(lambda: plain_loss(variable)),
        "nested tf.function": nested,
        "calls a tf.function": mixed,
        "tf.cond": with_cond,
        "tf.while_loop": with_while,
    }


def _central_difference_hvp(objective, x, v, h=1e-5):
    """(g(x + h v) - g(x - h v)) / 2h from the objective's gradient."""
    g_plus = objective.value_and_gradient(tf.constant(x + h * v)).gradient.numpy()
    g_minus = objective.value_and_gradient(tf.constant(x - h * v)).gradient.numpy()
    return (g_plus - g_minus) / (2 * h)


FORM_NAMES = list(_forms(tf.Variable(X)))


@pytest.mark.parametrize("form", FORM_NAMES)
def test_closure_products_match_central_differences(form):
    variable = tf.Variable(X, dtype=F64)
    objective = flatvec.Objective.from_closure(_forms(variable)[form], [variable])
    hv = objective.hessian_vector_product(tf.constant(X), tf.constant(V)).numpy()
    reference = _central_difference_hvp(objective, X, V)
    np.testing.assert_allclose(hv, reference, rtol=1e-6, atol=1e-8)
    assert np.max(np.abs(hv)) > 1.0  # not the silent zero of forward mode


@pytest.mark.parametrize("compiled", [False, True], ids=["plain", "tf.function"])
def test_function_products_match_central_differences(compiled):
    fun = tf.function(plain_loss) if compiled else plain_loss
    objective = flatvec.Objective.from_function(fun, size=3)
    hv = objective.hessian_vector_product(tf.constant(X), tf.constant(V)).numpy()
    np.testing.assert_allclose(hv, _central_difference_hvp(objective, X, V), rtol=1e-6)


def test_the_mode_is_forward_only_for_plain_code():
    variable = tf.Variable(X, dtype=F64)
    forms = _forms(variable)
    modes = {name: hessian_mode.needs_reverse_over_reverse(fn) for name, fn in forms.items()}
    assert modes == {name: name != "plain" for name in forms}


@pytest.mark.parametrize("algo", ["newton-cg", "trust-ncg"])
def test_newton_on_a_compiled_closure_reaches_the_plain_closures_minimum(algo):
    def run(form):
        variable = tf.Variable(X, dtype=F64)
        res = flatvec.minimize(_forms(variable)[form], [variable], algo, gtol=1e-9)
        np.testing.assert_array_equal(variable.numpy(), res.x)
        return res

    plain, compiled = run("plain"), run("nested tf.function")
    assert plain.success and compiled.success, (plain.message, compiled.message)
    np.testing.assert_allclose(compiled.x, plain.x, atol=1e-7)
    assert compiled.nit == pytest.approx(plain.nit, abs=2)
