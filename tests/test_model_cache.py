"""Repeated ``minimize(model, data)`` calls reuse the traced objective only when nothing that
defines it changed; tolerances and limits never need a new trace."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import flatvec
from flatvec import Status


@pytest.fixture
def problem(make_mlp, rng):
    """A small regression model, its data, its initial weights and a trace-counting loss."""
    model = make_mlp(3, 2, hidden=(4,))
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    traces = []

    def loss(y_true, y_pred):
        traces.append(1)  # runs only while tracing
        return tf.reduce_mean((y_true - y_pred) ** 2, axis=-1)

    return model, x, y, model.get_weights(), loss, traces


def _run(model, data, loss, **kwargs):
    kwargs.setdefault("max_iter", 15)
    return flatvec.minimize(model, data, "lbfgs", loss=loss, **kwargs)


def _fresh_value(model, data, loss, x):
    """f at x from an objective built outside any cache (the independent truth)."""
    objective = flatvec.Objective.from_model(model, data, loss)
    return float(objective.value_and_gradient(tf.constant(x)).value)


def test_a_repeated_call_traces_nothing_and_repeats_the_run(problem):
    model, x, y, weights, loss, traces = problem
    first = _run(model, (x, y), loss)
    traced = len(traces)
    model.set_weights(weights)
    # A new array with the same content (as ``X / 16`` written again) is the same data.
    again = _run(model, (x.copy(), y), loss)
    assert len(traces) == traced
    assert again.nit == first.nit and again.nfev == first.nfev
    np.testing.assert_array_equal(again.x, first.x)


def test_data_changed_in_place_gets_a_new_objective(problem):
    model, x, y, weights, loss, traces = problem
    _run(model, (x, y), loss)
    traced = len(traces)
    x *= 2.0  # same array object, new content
    model.set_weights(weights)
    res = _run(model, (x, y), loss)
    assert len(traces) > traced
    assert res.fun == pytest.approx(_fresh_value(model, (x, y), loss, res.x), rel=1e-12)


def test_another_loss_or_trainable_set_gets_a_new_objective(problem):
    model, x, y, weights, loss, traces = problem
    _run(model, (x, y), loss)
    model.set_weights(weights)
    mae = _run(model, (x, y), "mae")
    assert mae.fun == pytest.approx(_fresh_value(model, (x, y), "mae", mae.x), rel=1e-12)
    model.set_weights(weights)
    model.layers[0].trainable = False
    frozen = _run(model, (x, y), loss)
    assert frozen.x.size == 4 * 2 + 2  # only the output layer's kernel and bias
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], weights[0])


def test_built_in_losses_match_by_options_not_identity(problem):
    model, x, y, weights, _, _ = problem
    data = (x, np.argmax(y, axis=1))  # two classes

    def run(from_logits):
        model.set_weights(weights)
        sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        return _run(model, data, sparse)

    first, again, other = run(True), run(True), run(False)
    np.testing.assert_array_equal(again.x, first.x)
    # from_logits=False on raw outputs is another function: it must not reuse the first one.
    assert other.fun == pytest.approx(
        _fresh_value(model, data, keras.losses.SparseCategoricalCrossentropy(), other.x),
        rel=1e-12,
    )


def test_datasets_are_matched_by_identity_and_the_cache_can_be_cleared(problem):
    model, x, y, weights, loss, traces = problem
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    _run(model, dataset, loss)
    counts = [len(traces)]
    for data in (dataset, tf.data.Dataset.from_tensor_slices((x, y)).batch(16)):
        model.set_weights(weights)
        _run(model, data, loss)
        counts.append(len(traces))
    flatvec.clear_objective_cache(model)
    model.set_weights(weights)
    _run(model, dataset, loss)
    counts.append(len(traces))
    assert counts[1] == counts[0]  # the same dataset object: reused
    assert counts[2] > counts[1]  # a new dataset object: read anew
    assert counts[3] > counts[2]  # cleared


def test_at_most_max_entries_objectives_are_kept(problem):
    model, x, y, weights, loss, traces = problem
    for k in range(flatvec._objective.model_cache.MAX_ENTRIES + 1):
        _run(model, (x + k, y), loss, max_iter=1)
    traced = len(traces)
    _run(model, (x + flatvec._objective.model_cache.MAX_ENTRIES, y), loss, max_iter=1)  # the newest
    assert len(traces) == traced
    _run(model, (x, y), loss, max_iter=1)  # the oldest, dropped
    assert len(traces) > traced


def test_other_tolerances_and_limits_reuse_the_compiled_iteration():
    traces = []

    def rosen(x):
        traces.append(1)
        return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    objective = flatvec.Objective.from_function(rosen)
    x0 = np.array([-1.2, 1.0])
    short = flatvec.minimize(objective, x0, "lbfgs", max_iter=3)
    traced = len(traces)
    runs = {
        "max_iter": flatvec.minimize(objective, x0, "lbfgs", max_iter=7, gtol=0.0, ftol=0.0),
        "gtol": flatvec.minimize(objective, x0, "lbfgs", gtol=1e3),
        "max_eval": flatvec.minimize(objective, x0, "lbfgs", max_eval=5),
        "ftol": flatvec.minimize(objective, x0, "lbfgs", ftol=0.5),
        "max_iter=0": flatvec.minimize(objective, x0, "lbfgs", max_iter=0),
    }
    assert len(traces) == traced
    assert short.nit == 3 and short.reason == Status.MAX_ITER
    assert runs["max_iter"].nit == 7 and runs["max_iter"].reason == Status.MAX_ITER
    assert runs["gtol"].nit == 0 and runs["gtol"].reason == Status.CONVERGED_GTOL
    assert runs["max_eval"].reason == Status.MAX_EVAL and 5 <= runs["max_eval"].nfev < 9
    assert runs["ftol"].reason == Status.CONVERGED_FTOL and runs["ftol"].nit < 7
    assert runs["max_iter=0"].nit == 0 and runs["max_iter=0"].nfev == 1
    # The 7-iteration run follows the 3-iteration one's trajectory.
    np.testing.assert_allclose(
        flatvec.minimize(objective, x0, "lbfgs", max_iter=3, gtol=0.0, ftol=0.0).x,
        short.x, rtol=1e-12,
    )


def test_objectives_holding_much_data_are_not_kept(problem, monkeypatch):
    model, x, y, weights, loss, traces = problem
    held = flatvec.Objective.from_model(model, (x, y), loss).data_bytes
    assert held == x.nbytes + y.nbytes  # the arrays, materialized once
    assert flatvec.Objective.from_model(model, (x, y), loss, in_memory=False).data_bytes == 0
    monkeypatch.setattr(flatvec._objective.model_cache, "MAX_CACHED_BYTES", held - 1)
    _run(model, (x, y), loss, max_iter=1)
    traced = len(traces)
    _run(model, (x, y), loss, max_iter=1)
    assert len(traces) > traced
