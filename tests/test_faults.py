"""Faults mid-run end with a truthful status and the best accepted point kept.

- An objective that is non-finite at every point but the start ends with ``NON_FINITE`` (not
  "line search failed" nor the trust region's radius floor), at the start point bit for bit,
  with the non-finite evaluations counted in the result.
- A non-finite Hessian-vector or Gauss-Newton product stops the run at once with
  ``NON_FINITE``.
- ``KeyboardInterrupt`` while tracing, in ``on_train_begin`` or in a callback leaves the
  model at the last accepted point: the result's ``x``
  (when there is a result) or the start point.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import flatvec
from flatvec import Status

X0 = np.array([-1.2, 1.0, 0.5])
NAN = np.float64(np.nan)


def rosen(x):
    return tf.reduce_sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def finite_only_at_start(x):
    """Rosenbrock at X0, NaN everywhere else (the gradient at X0 stays finite)."""
    at_start = tf.reduce_all(tf.equal(x, tf.constant(X0, x.dtype)))
    return rosen(x) + tf.where(at_start, tf.zeros([], x.dtype), tf.constant(NAN, x.dtype))


def _poisoned_curvature() -> flatvec.Objective:
    """Rosenbrock whose curvature products (Hessian-vector) come back NaN."""
    objective = flatvec.Objective.from_function(rosen, dtype=tf.float64, size=X0.size)
    exact = objective.hvp
    objective.hvp = lambda x, v: exact(x, v) * NAN  # what the oracle calls
    return objective


ALL = ["lbfgs", "cg", "bfgs", "gd", "newton-cg", "trust-ncg"]


@pytest.mark.parametrize("algo", ALL)
def test_non_finite_everywhere_but_the_start_is_reported_as_such(algo):
    options = {"line_search": "armijo"} if algo == "gd" else {}
    res = flatvec.minimize(finite_only_at_start, X0, algo, max_iter=50, **options)
    assert res.reason == Status.NON_FINITE and not res.success
    np.testing.assert_array_equal(res.x, X0)
    assert res.fun == float(rosen(tf.constant(X0)))
    assert res.nonfinite_evals >= 1 and "Non-finite results" in res.message


@pytest.mark.parametrize("algo", ["newton-cg", "trust-ncg"])
def test_a_non_finite_curvature_product_stops_the_run(algo):
    res = flatvec.minimize(_poisoned_curvature(), X0, algo, max_iter=50)
    assert res.reason == Status.NON_FINITE and not res.success
    assert res.nit == 1 and res.nonfinite_evals >= 1
    assert "curvature products" in res.message
    assert np.all(np.isfinite(res.x)) and res.fun <= float(rosen(tf.constant(X0)))


def test_a_run_that_recovers_from_nan_trials_says_so_and_keeps_its_status():
    """Trials in a NaN region that the line search backs off from are counted, not fatal."""
    f0 = float(rosen(tf.constant(X0)))

    def nan_above_start(x):  # overshooting trials (f above f(x0)) are NaN
        return rosen(x) + tf.where(rosen(x) > f0, NAN, 0.0)

    res = flatvec.minimize(nan_above_start, X0, "lbfgs", gtol=1e-8)
    clean = flatvec.minimize(rosen, X0, "lbfgs", gtol=1e-8)
    assert res.success and clean.success
    assert res.fun < 1e-10 and clean.fun < 1e-10
    assert res.nonfinite_evals >= 1 and f"Non-finite results: {res.nonfinite_evals}" in (
        res.message)
    assert clean.nonfinite_evals == 0 and "Non-finite" not in clean.message


def test_the_non_finite_model_run_keeps_the_variables_at_the_start(make_mlp):
    model = make_mlp(2, 1)
    x = np.random.default_rng(0).normal(size=(16, 2))
    before = [v.numpy().copy() for v in model.trainable_variables]
    # Labels: the target and the start's prediction, so the loss can tell a moved model.
    y = np.concatenate([np.sin(x[:, :1]), model(x).numpy()], axis=1)

    def loss(y, p):  # NaN wherever the predictions differ from the start's
        moved = tf.reduce_any(tf.not_equal(p, y[:, 1:]))
        return tf.reduce_mean((y[:, :1] - p) ** 2, -1) + tf.where(moved, NAN, 0.0)

    res = flatvec.minimize(model, (x, y), "lbfgs", loss=loss, max_iter=20)
    assert res.reason == Status.NON_FINITE and res.nonfinite_evals >= 1
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


# ---------------------------------------------------------------------------- interrupts
def _model_and_data(make_mlp):
    model = make_mlp(3, 1, hidden=(8,))
    x = np.random.default_rng(1).normal(size=(64, 3))
    return model, (x, np.tanh(x.sum(1, keepdims=True)))


def _assert_at(model, x):
    flat = flatvec.FlatParamSpace(model).get().numpy()
    np.testing.assert_array_equal(flat, x)


def test_interrupt_while_tracing_leaves_the_start(make_mlp):
    model, data = _model_and_data(make_mlp)
    start = flatvec.FlatParamSpace(model).get().numpy()

    def loss(y, p):
        if tf.inside_function():  # only while the compiled loop is traced
            raise KeyboardInterrupt
        return tf.reduce_mean((y - p) ** 2, -1)

    with pytest.raises(KeyboardInterrupt):
        flatvec.minimize(model, data, "lbfgs", loss=loss)
    _assert_at(model, start)


@pytest.mark.parametrize("at", [1, 3])
def test_interrupt_in_a_callback_keeps_the_last_accepted_point(make_mlp, at):
    model, data = _model_and_data(make_mlp)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == at:
                raise KeyboardInterrupt

    res = flatvec.minimize(model, data, "lbfgs", loss="mse", callbacks=[Interrupt()])
    assert res.reason == Status.INTERRUPTED and res.nit == at
    _assert_at(model, res.x)
    assert res.fun == min(res.history["loss"])


def test_interrupt_in_on_train_begin_keeps_the_start(make_mlp):
    model, data = _model_and_data(make_mlp)
    start = flatvec.FlatParamSpace(model).get().numpy()

    class Interrupt(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise KeyboardInterrupt

    res = flatvec.minimize(model, data, "lbfgs", loss="mse", callbacks=[Interrupt()])
    assert res.reason == Status.INTERRUPTED and res.nit == 0
    np.testing.assert_array_equal(res.x, start)
    _assert_at(model, start)


@pytest.mark.parametrize("algo", ["lm", "gauss-newton"])
def test_least_squares_methods_report_residuals_non_finite_away_from_the_start(algo):
    zero, nan = tf.constant(0.0, tf.float64), tf.constant(NAN, tf.float64)

    def residuals(x):  # Rosenbrock's residuals at X0, NaN everywhere else
        at_start = tf.reduce_all(tf.equal(x, tf.constant(X0)))
        r = tf.concat([10.0 * (x[1:] - x[:-1] ** 2), 1.0 - x[:-1]], 0)
        return r + tf.where(at_start, zero, nan)

    objective = flatvec.Objective.from_residuals(residuals, dtype=tf.float64, size=X0.size)
    res = flatvec.minimize(objective, X0, algo, max_iter=50)
    assert res.reason == Status.NON_FINITE and res.nit < 50
    np.testing.assert_array_equal(res.x, X0)
    assert res.nonfinite_evals >= 1
