"""flatvec.minimize: forms, options, stopping, callbacks, failures, checkpoints, SciPy bridge."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

import flatvec
from flatvec import Status
from flatvec._tf import graph_reuse

WEIGHTS = np.arange(1.0, 6.0)
TARGET = np.array([3.0, -1.0, 0.5, 2.0, -2.0])


def quadratic(x):
    """f(x) = Σ w_i (x_i - t_i)²; minimizer t, minimum 0."""
    return tf.reduce_sum(tf.constant(WEIGHTS, x.dtype) * (x - tf.constant(TARGET, x.dtype)) ** 2)


def rosen(x):
    return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosen_np(x):
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


def rosen_grad_np(x):
    return scipy.optimize.rosen_der(x)


def docs_namespace() -> dict:
    """Execute the first Python block of the algorithm-writing guide (so the docs cannot rot)."""
    text = (Path(__file__).parents[1] / "docs" / "writing_an_algorithm.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    namespace: dict = {}
    exec(compile(block, "writing_an_algorithm.md", "exec"), namespace)
    return namespace


# ---------------------------------------------------------------------- forms
def test_function_form_reaches_closed_form_minimum():
    res = flatvec.minimize(quadratic, np.zeros(5), "gd", learning_rate=0.09, gtol=1e-9, ftol=0.0)
    assert res.success and res.reason == Status.CONVERGED_GTOL
    np.testing.assert_allclose(res.x, TARGET, atol=1e-9)
    assert isinstance(res, scipy.optimize.OptimizeResult)
    assert res.nfev == res.nit + 1  # gd evaluates once per iteration, plus x0
    assert len(res.history["loss"]) == res.nit + 1


def test_closure_form_leaves_variables_at_result():
    a, b = tf.Variable(np.zeros(2)), tf.Variable(np.zeros(3))

    def loss_fn():
        return quadratic(tf.concat([a, b], 0))

    res = flatvec.minimize(loss_fn, [a, b], "gd", learning_rate=0.09, gtol=1e-9, ftol=0.0)
    np.testing.assert_allclose(np.concatenate([a.numpy(), b.numpy()]), res.x, rtol=0, atol=0)
    np.testing.assert_allclose(res.x, TARGET, atol=1e-9)


def _linear_model(dtype="float64"):
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, dtype=dtype)])


def test_model_form_matches_least_squares_and_leaves_model_at_result():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=64)
    model = _linear_model()
    res = flatvec.minimize(model, (X, y[:, None]), "gd", loss="mse", learning_rate=0.2,
                           gtol=1e-10, ftol=0.0, batch_size=20)
    coef, *_ = np.linalg.lstsq(np.c_[X, np.ones(64)], y, rcond=None)
    np.testing.assert_allclose(res.x, coef, atol=1e-8)
    np.testing.assert_array_equal(flatvec.FlatParamSpace(model).get().numpy(), res.x)


def test_max_iter_zero_returns_start_value_and_gradient():
    x0 = np.array([-1.2, 1.0])
    res = flatvec.minimize(rosen, x0, "gd", max_iter=0)
    assert res.reason == Status.MAX_ITER and res.nit == 0 and res.nfev == 1
    assert res.fun == pytest.approx(rosen_np(x0), rel=1e-15)
    np.testing.assert_allclose(res.jac, rosen_grad_np(x0), rtol=1e-14)


# ---------------------------------------------------------------------- compiled loop
def test_traced_once_per_run_whatever_the_number_of_iterations():
    def count_traces(max_iter):
        calls = []

        def fun(x):
            calls.append(1)  # runs only while tracing
            return rosen(x)

        graph_reuse.clear()  # else the second run shares the first one's loop
        flatvec.minimize(fun, np.array([-1.2, 1.0]), "lbfgs", max_iter=max_iter, gtol=0.0,
                         ftol=0.0)
        return len(calls)

    assert count_traces(3) == count_traces(25)


def test_reusing_an_objective_reuses_the_compiled_iteration():
    calls = []

    def fun(x):
        calls.append(1)  # runs only while tracing
        return rosen(x)

    objective = flatvec.Objective.from_function(fun)
    x0 = np.array([-1.2, 1.0])
    first = flatvec.minimize(objective, x0, "lbfgs", gtol=1e-8)
    traced = len(calls)
    again = flatvec.minimize(objective, x0, "lbfgs", gtol=1e-8)
    assert len(calls) == traced
    assert again.nfev == first.nfev and again.nit == first.nit
    np.testing.assert_allclose(again.x, first.x, rtol=1e-12)
    # The loop keeps its carry in variables between calls: an earlier result's state is a
    # snapshot that a later run on the same objective does not overwrite.
    kept = tf.nest.map_structure(lambda t: np.array(t), first.state)
    other = flatvec.minimize(objective, np.array([2.0, 3.0]), "lbfgs", gtol=1e-8)
    assert len(calls) == traced and other.nit != first.nit  # same loop, another trajectory
    for before, now in zip(tf.nest.flatten(kept), tf.nest.flatten(first.state)):
        np.testing.assert_array_equal(np.array(now), before)


def test_steps_per_call_follows_the_same_trajectory():
    kwargs = dict(learning_rate=0.05, momentum=0.5, gtol=1e-9, ftol=0.0)
    one = flatvec.minimize(quadratic, np.zeros(5), "gd", **kwargs)
    many = flatvec.minimize(quadratic, np.zeros(5), "gd", steps_per_call=7, **kwargs)
    assert many.nit == one.nit and many.reason == one.reason
    np.testing.assert_allclose(many.x, one.x, rtol=1e-12)


def test_blocks_of_iterations_keep_the_trajectory_and_every_iteration_in_history(monkeypatch):
    calls = []
    advance = flatvec._run.loop.CompiledLoop.advance

    def counted(self):
        calls.append(1)
        return advance(self)

    monkeypatch.setattr(flatvec._run.loop.CompiledLoop, "advance", counted)
    x0 = np.array([-1.2, 1.0])
    kwargs = dict(gtol=1e-8)
    one = flatvec.minimize(rosen, x0, "lbfgs", steps_per_call=1, **kwargs)
    assert len(calls) == one.nit
    calls.clear()
    auto = flatvec.minimize(rosen, x0, "lbfgs", **kwargs)  # no callbacks: blocks grow
    assert len(calls) < one.nit / 3
    seen = []
    seven = flatvec.minimize(rosen, x0, "lbfgs", steps_per_call=7,
                             callbacks=[lambda r: seen.append(r.nit)], **kwargs)
    assert seen == [*range(7, one.nit, 7), one.nit]
    for res in (auto, seven):
        assert res.nit == one.nit and res.nfev == one.nfev
        np.testing.assert_array_equal(res.x, one.x)
        assert res.history["nit"] == list(range(one.nit + 1))
        assert res.history["loss"] == one.history["loss"]
        assert res.history["nfev"] == one.history["nfev"]
        assert np.all(np.diff(res.history["time"]) >= 0)


def test_xla_run_agrees_with_graph_run():
    # L-BFGS under XLA is covered in test_algorithms; here the driver's own loop (stopping
    # tests, best point, steps_per_call) under jit_compile, with a rule that compiles fast.
    kwargs = dict(learning_rate=0.05, momentum=0.5, gtol=1e-9, ftol=0.0)
    plain = flatvec.minimize(quadratic, np.zeros(5), "gd", **kwargs)
    xla = flatvec.minimize(quadratic, np.zeros(5), "gd", jit_compile=True, steps_per_call=4,
                           **kwargs)
    assert xla.success and xla.reason == plain.reason
    assert abs(xla.nit - plain.nit) <= 1
    np.testing.assert_allclose(xla.x, plain.x, atol=1e-9)


# ---------------------------------------------------------------------- failures
def nan_beyond_two(x):
    """A bowl centred at 3 that is NaN for x > 2: the best finite point is near x = 2."""
    return tf.where(tf.reduce_any(x > 2.0), tf.constant(np.nan, x.dtype),
                    tf.reduce_sum((x - 3.0) ** 2))


def test_nan_region_stops_with_non_finite_status_and_best_point():
    res = flatvec.minimize(nan_beyond_two, np.zeros(2), "gd", learning_rate=0.3)
    assert res.reason == Status.NON_FINITE and not res.success
    assert np.isfinite(res.fun) and np.all(np.isfinite(res.x))
    assert res.fun == pytest.approx(min(res.history["loss"]))
    assert np.all(res.x <= 2.0)


def test_line_search_methods_back_off_from_nan_region():
    res = flatvec.minimize(nan_beyond_two, np.zeros(2), "lbfgs")
    assert np.isfinite(res.fun) and np.all(res.x <= 2.0)
    # f(0) = 18; the best finite value is f(2, 2) = 2, on the NaN region's edge.
    assert res.fun < 2.0 + 1e-6


def test_keyboard_interrupt_returns_last_accepted_point():
    seen = []

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(logs["loss"])
            if epoch == 4:
                raise KeyboardInterrupt

    model = _linear_model()
    X = np.random.default_rng(1).normal(size=(32, 3))
    res = flatvec.minimize(model, (X, X.sum(1, keepdims=True)), "lbfgs", loss="mse",
                           callbacks=[Interrupt()])
    assert res.reason == Status.INTERRUPTED and res.nit == 5
    assert res.fun == pytest.approx(seen[-1])
    np.testing.assert_array_equal(flatvec.FlatParamSpace(model).get().numpy(), res.x)


# ---------------------------------------------------------------------- callbacks
def test_keras_callbacks_see_iterations_as_epochs_and_can_stop():
    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.logs = []

        def on_epoch_end(self, epoch, logs=None):
            self.logs.append((epoch, dict(logs)))
            if epoch == 2:
                self.model.stop_training = True

    rec = Recorder()
    res = flatvec.minimize(quadratic, np.zeros(5), "gd", learning_rate=0.01, callbacks=[rec])
    assert res.reason == Status.STOPPED_BY_CALLBACK and res.nit == 3
    assert [e for e, _ in rec.logs] == [0, 1, 2]
    assert set(rec.logs[0][1]) == {"loss", "grad_norm", "step_size", "nfev", "njev", "nhev"}
    assert rec.logs[-1][1]["loss"] == pytest.approx(res.fun)


def test_plain_callable_receives_intermediate_result_and_can_stop():
    seen = []

    def callback(intermediate_result):
        seen.append(intermediate_result.fun)
        assert intermediate_result.fun == pytest.approx(quadratic(
            tf.constant(intermediate_result.x)).numpy())
        return len(seen) == 4

    res = flatvec.minimize(quadratic, np.zeros(5), "gd", learning_rate=0.01, callbacks=[callback])
    assert res.reason == Status.STOPPED_BY_CALLBACK and len(seen) == 4


def test_verbose_shows_a_keras_progress_bar(capsys):
    flatvec.minimize(quadratic, np.zeros(5), "gd", learning_rate=0.01, max_iter=3, verbose=1)
    assert "loss" in capsys.readouterr().out


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_and_resume_continue_the_same_trajectory(tmp_path):
    x0 = np.tile([-1.2, 1.0], 10)
    opts = dict(gtol=0.0, ftol=0.0)
    straight = flatvec.minimize(rosen, x0, "lbfgs", max_iter=40, **opts)
    first = flatvec.minimize(rosen, x0, "lbfgs", max_iter=20, **opts)
    path = tf.train.Checkpoint(state=flatvec.StateCheckpoint(first.state)).write(
        str(tmp_path / "run"))
    template = flatvec.minimize(rosen, x0, "lbfgs", max_iter=0).state
    restored = flatvec.StateCheckpoint(template)
    tf.train.Checkpoint(state=restored).read(path).assert_consumed()
    resumed = flatvec.minimize(rosen, x0, "lbfgs", max_iter=20, initial_state=restored.value(),
                               **opts)
    assert straight.nit == 40 and resumed.nit == 20
    np.testing.assert_allclose(resumed.x, straight.x, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        (dict(gtol=-1.0), ValueError, "gtol"),
        (dict(ftol="small"), TypeError, "ftol"),
        (dict(max_iter=-1), ValueError, "max_iter"),
        (dict(max_eval=0), ValueError, "max_eval"),
        (dict(steps_per_call=0), ValueError, "steps_per_call"),
        (dict(algo="newton-raphson-9000"), ValueError, "algo"),
        (dict(algo=3), TypeError, "algo"),
        (dict(algo="gd", momentum=2.0), ValueError, "momentum"),
        (dict(algo="gd", not_an_option=1), TypeError, "not_an_option"),
        (dict(callbacks=[42]), TypeError, "callbacks"),
    ],
)
def test_bad_options_raise_before_anything_runs(kwargs, error, name):
    calls = []

    def fun(x):
        calls.append(1)
        return quadratic(x)

    kwargs.setdefault("algo", "gd")
    with pytest.raises(error, match=name):
        flatvec.minimize(fun, np.zeros(5), **kwargs)
    assert calls == []


def test_unknown_algo_lists_known_names():
    with pytest.raises(ValueError, match="lbfgs"):
        flatvec.minimize(quadratic, np.zeros(5), "nope")


@pytest.mark.parametrize(
    ("x0", "error"),
    [(np.zeros((5, 1)), ValueError), (np.array(["a"] * 5), TypeError), (np.array([]), ValueError)],
)
def test_bad_start_point(x0, error):
    with pytest.raises(error, match="x0"):
        flatvec.minimize(quadratic, x0, "gd")


def test_fun_returning_non_scalar_is_rejected():
    with pytest.raises(ValueError, match="scalar"):
        flatvec.minimize(lambda x: x**2, np.zeros(3), "gd")


def test_bad_input_leaves_model_variables_untouched():
    model = _linear_model()
    before = [v.numpy().copy() for v in model.trainable_variables]
    with pytest.raises(ValueError, match="gtol"):
        flatvec.minimize(model, (np.zeros((4, 3)), np.zeros((4, 1))), "gd", loss="mse", gtol=-1)
    with pytest.raises(ValueError, match="jit_compile"):
        ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 3)), np.zeros((4, 1)))).batch(2)
        flatvec.minimize(model, ds, "gd", loss="mse", jit_compile=True, in_memory=False)
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


# ---------------------------------------------------------------------- user algorithm
def test_barzilai_borwein_from_the_guide_runs_through_minimize():
    ns = docs_namespace()
    rule = ns["BarzilaiBorwein"](learning_rate=0.01)
    res = flatvec.minimize(quadratic, np.zeros(5), rule, gtol=1e-8, ftol=0.0)
    assert res.success
    np.testing.assert_allclose(res.x, TARGET, atol=1e-8)
    fixed = flatvec.minimize(quadratic, np.zeros(5), "gd", learning_rate=0.01, gtol=1e-8,
                             ftol=0.0)
    assert res.nit < fixed.nit / 5  # the secant step beats the fixed step by far


def test_registered_user_algorithm_resolves_by_name():
    ns = docs_namespace()
    flatvec.register_algorithm("bb-test", ns["BarzilaiBorwein"])
    assert "bb-test" in flatvec.available_algorithms()
    res = flatvec.minimize(quadratic, np.zeros(5), "bb-test", learning_rate=0.01, gtol=1e-8)
    assert res.success


# ---------------------------------------------------------------------- SciPy bridge
def test_scipy_bridge_matches_scipy_on_the_same_function():
    x0 = np.array([1.3, 0.7, 0.8, 1.9, 1.2])
    ours = flatvec.minimize(rosen, x0, "scipy:L-BFGS-B", gtol=1e-6)
    ref = scipy.optimize.minimize(lambda x: (rosen_np(x), rosen_grad_np(x)), x0, jac=True,
                                  method="L-BFGS-B", options=dict(gtol=1e-6))
    np.testing.assert_allclose(ours.x, ref.x, rtol=1e-7)
    assert ours.nfev == ref.nfev and ours.nit == ref.nit and ours.success == ref.success
    assert ours.method == "scipy:L-BFGS-B" and len(ours.history["loss"]) == ours.nit + 1


def test_scipy_bridge_passes_hessian_vector_products():
    res = flatvec.minimize(quadratic, np.zeros(5), "scipy:Newton-CG")
    assert res.success and res.nhev > 0
    np.testing.assert_allclose(res.x, TARGET, atol=1e-6)


def test_scipy_bridge_on_a_model_leaves_model_at_result():
    model = _linear_model()
    X = np.random.default_rng(2).normal(size=(40, 3))
    res = flatvec.minimize(model, (X, X @ [[1.0], [2.0], [3.0]]), "scipy:BFGS", loss="mse")
    assert res.success
    np.testing.assert_allclose(res.x, [1.0, 2.0, 3.0, 0.0], atol=1e-5)
    np.testing.assert_array_equal(flatvec.FlatParamSpace(model).get().numpy(), res.x)


def test_python_control_flow_in_user_code_is_converted_by_autograph():
    # flatvec traces its loop without AutoGraph; the user's function is converted on its own.
    def piecewise(x):
        if tf.reduce_sum(x) > 0.0:
            total = tf.reduce_sum((x - 1.0) ** 2)
        else:
            total = tf.reduce_sum((x + 1.0) ** 2) + 10.0
        return total

    res = flatvec.minimize(piecewise, tf.constant([0.5, 2.0], tf.float64), "lbfgs", gtol=1e-8)
    assert res.success
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-7)
    variable = tf.Variable([0.5, 2.0], dtype=tf.float64)
    res = flatvec.minimize(lambda: piecewise(variable), [variable], "cg", gtol=1e-8)
    np.testing.assert_allclose(variable.numpy(), [1.0, 1.0], atol=1e-7)


def test_python_control_flow_in_a_user_algorithm_is_converted_by_autograph():
    from autograph_algorithm import ClippedGradientDescent

    res = flatvec.minimize(lambda x: tf.reduce_sum((x - 3.0) ** 2), np.zeros(2),
                           ClippedGradientDescent(), gtol=1e-8, ftol=0.0)
    assert res.success
    np.testing.assert_allclose(res.x, [3.0, 3.0], atol=1e-8)
