"""Wrong arguments are refused up front: a TypeError/ValueError naming the argument, raised
before anything is traced, with every variable of the model bit-identical afterwards.

Hypothesis draws which argument is wrong and how; the catalog below says, per argument, what
wrong values look like and which error they must raise. The truth each example is checked
against is the argument's documented contract (the docstrings of ``minimize``,
``Objective.from_model``, ``FlatParamSpace`` and ``VectorOptimizer``).
"""

from __future__ import annotations

import math
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import flatvec
from flatvec._run.loop import CompiledLoop
from flatvec.keras import VectorOptimizer

N, FEATURES, OUTPUTS = 12, 3, 2
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, FEATURES)).astype("float32")
Y = RNG.normal(size=(N, OUTPUTS)).astype("float32")


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(4, "tanh"),
                             keras.layers.BatchNormalization(), keras.layers.Dense(OUTPUTS)])


MODEL = _model()
MODEL.compile(loss="mse")

non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
negative = st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False)
not_a_number = st.sampled_from(["1e-5", None, [1e-5], object(), True])
not_an_int = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just("3"),
                       st.just(True))
# Shapes no loss can pair with the output (broadcastable ones, (N, 1) say, Keras accepts).
bad_shapes = st.sampled_from([(N, OUTPUTS + 1), (N, 5), (N, 3, 5)])


def _labels(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, "float32")


def _concatenated(width: int) -> tf.data.Dataset:
    """Batches whose labels change width part-way (tf.data keeps the structure)."""
    head = tf.data.Dataset.from_tensor_slices((X[:8], Y[:8])).batch(4)
    return head.concatenate(tf.data.Dataset.from_tensor_slices((X[8:], _labels((4, width))))
                            .batch(4))


# argument -> (strategy of wrong values as minimize keyword arguments, error, text in message)
CATALOG = {
    "gtol": (st.one_of(non_finite, negative).map(lambda v: {"gtol": v}), ValueError, "gtol"),
    "gtol-type": (not_a_number.map(lambda v: {"gtol": v}), TypeError, "gtol"),
    "ftol": (st.one_of(non_finite, negative).map(lambda v: {"ftol": v}), ValueError, "ftol"),
    "max_iter": (not_an_int.map(lambda v: {"max_iter": v}), TypeError, "max_iter"),
    "max_iter-value": (st.integers(max_value=-1).map(lambda v: {"max_iter": v}), ValueError,
                       "max_iter"),
    "max_eval": (st.integers(max_value=0).map(lambda v: {"max_eval": v}), ValueError,
                 "max_eval"),
    "steps_per_call": (not_an_int.map(lambda v: {"steps_per_call": v}), TypeError,
                       "steps_per_call"),
    "verbose": (st.sampled_from(["yes", 1.5, None]).map(lambda v: {"verbose": v}), TypeError,
                "verbose"),
    "jit_compile": (st.sampled_from(["yes", 1, None]).map(lambda v: {"jit_compile": v}),
                    TypeError, "jit_compile"),
    "training": (st.sampled_from(["no", 0, None]).map(lambda v: {"training": v}), TypeError,
                 "training"),
    "in_memory": (st.sampled_from(["no", 1]).map(lambda v: {"in_memory": v}), TypeError,
                  "in_memory"),
    "batch_size": (st.one_of(st.integers(max_value=0)).map(lambda v: {"batch_size": v}),
                   ValueError, "batch_size"),
    "batch_size-type": (st.sampled_from([2.0, "4", True]).map(lambda v: {"batch_size": v}),
                        TypeError, "batch_size"),
    "algo": (st.text(min_size=1, max_size=8).filter(
        lambda s: s.lower() not in flatvec.available_algorithms()
        and not s.lower().startswith("scipy:")).map(lambda v: {"algo": v}), ValueError, "algo"),
    "algo-type": (st.sampled_from([3, 1.5, None, ["lbfgs"]]).map(lambda v: {"algo": v}),
                  TypeError, "algo"),
    "algo-option": (st.sampled_from(["memroy", "beta", "lr"]).map(lambda k: {k: 1}), TypeError,
                    "option"),
    "memory": (st.integers(max_value=0).map(lambda v: {"memory": v}), ValueError, "memory"),
    "callbacks": (st.sampled_from([3, "print", [None], [1.5]]).map(lambda v: {"callbacks": v}),
                  TypeError, "callbacks"),
    "initial_state": (st.sampled_from([3, (1, 2), {"x": 1}, "state"]).map(
        lambda v: {"initial_state": v}), TypeError, "initial_state"),
    "checkpoint": (st.sampled_from([3, b"dir", ["dir"]]).map(lambda v: {"checkpoint": v}),
                   TypeError, "checkpoint"),
    "checkpoint_every": (st.one_of(st.integers(max_value=0), st.sampled_from([2.5, "10"])).map(
        lambda v: {"checkpoint": "unused-dir", "checkpoint_every": v}),
        (TypeError, ValueError), "checkpoint_every"),
    "loss": (st.sampled_from(["msee", "cross_entropy_of_doom"]).map(lambda v: {"loss": v}),
             ValueError, "loss"),
    "loss-type": (st.sampled_from([3, 1.5, ["mse"]]).map(lambda v: {"loss": v}), TypeError,
                  "loss"),
    "loss-dtype": (st.sampled_from([tf.int32, tf.int64, tf.bool]).map(
        lambda d: {"loss": lambda y, p: tf.cast(tf.reduce_sum(y - p, axis=-1), d)}),
        TypeError, "loss"),
    "labels-shape": (bad_shapes.map(lambda s: {"dataset": (X, _labels(s))}), ValueError,
                     "dataset"),
    "labels-count": (st.integers(1, N - 1).map(lambda n: {"dataset": (X, Y[:n])}), ValueError,
                     "dataset"),
    "labels-dtype": (st.just({"dataset": (X, np.array([["a", "b"]] * N))}), TypeError,
                     "dataset"),
    "sample_weight": (st.sampled_from([(N, 4), (N, 3, 1)]).map(
        lambda s: {"dataset": (X, Y, np.ones(s, "float32"))}), ValueError, "sample_weight"),
    "features": (st.integers(1, 6).filter(lambda k: k != FEATURES).map(
        lambda k: {"dataset": (np.zeros((N, k), "float32"), Y)}), ValueError, "dataset"),
    "dataset-unbatched": (st.just({"dataset": tf.data.Dataset.from_tensor_slices((X, Y))}),
                          ValueError, "batched"),
    "dataset-inconsistent": (st.sampled_from([1, 3]).map(
        lambda w: {"dataset": _concatenated(w)}), ValueError, "dataset"),
    "dataset-type": (st.sampled_from([3, "data", None, {"x": X}]).map(
        lambda d: {"dataset": d}), TypeError, "dataset"),
    "dataset-structure": (st.just({"dataset": (X, Y, Y, Y)}), ValueError, "dataset"),
}


def _run(kwargs: dict) -> None:
    kwargs = dict(kwargs)
    dataset = kwargs.pop("dataset", (X, Y))
    algo = kwargs.pop("algo", "lbfgs")
    kwargs.setdefault("max_iter", 2)
    flatvec.minimize(MODEL, dataset, algo, **kwargs)


def _all_bits() -> list[np.ndarray]:
    """Every variable of the model (batch-norm statistics included), as raw bits."""
    return [np.asarray(v.numpy()).view(np.uint32).copy() for v in MODEL.variables]


@settings(max_examples=120)
@given(data=st.data(), argument=st.sampled_from(sorted(CATALOG)))
def test_a_wrong_argument_names_itself_and_touches_nothing(data, argument):
    strategy, error, text = CATALOG[argument]
    kwargs = data.draw(strategy, label=argument)
    before = _all_bits()
    # Every check must come before the compiled loop starts (traces, evaluates, writes).
    with mock.patch.object(CompiledLoop, "start", side_effect=AssertionError("loop started")):
        with pytest.raises(error, match=text):
            _run(kwargs)
    for b, a in zip(before, _all_bits()):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=40)
@given(x0=st.lists(st.one_of(st.floats(-5, 5), non_finite), min_size=1, max_size=6).filter(
    lambda v: not all(map(math.isfinite, v))))
def test_a_non_finite_start_point_is_refused(x0):
    calls = []

    def fun(x):
        calls.append(1)
        return tf.reduce_sum(x**2)

    with pytest.raises(ValueError, match="x0: expected finite values"):
        flatvec.minimize(fun, np.array(x0), "lbfgs")
    assert calls == []


@pytest.mark.parametrize(
    ("fun", "error", "match"),
    [
        (lambda x: tf.cast(tf.reduce_sum(x), tf.int32), TypeError, "floating"),
        (lambda x: tf.reduce_all(x > 0), TypeError, "floating"),
        (lambda x: np.float64(1.0), TypeError, "tf.Tensor"),
        (lambda x: None, TypeError, "tf.Tensor"),
        (lambda x: x, ValueError, "scalar"),
        (lambda x, y: tf.reduce_sum(x), TypeError, "one argument"),
        (lambda: 1.0, TypeError, "one argument"),
    ],
)
def test_a_wrong_function_is_named(fun, error, match):
    with pytest.raises(error, match=f"fun: .*{match}"):
        flatvec.minimize(fun, np.zeros(3), "lbfgs")


def test_a_closure_taking_arguments_is_refused(unchanged):
    v = tf.Variable([1.0, 2.0])
    with unchanged([v]), pytest.raises(TypeError, match="loss_fn: expected a function of no"):
        flatvec.minimize(lambda x: tf.reduce_sum(v**2), [v], "lbfgs")


def test_a_non_finite_initial_state_is_refused():
    fun = lambda x: tf.reduce_sum((x - 1.0) ** 2)  # noqa: E731
    x0 = tf.zeros([3], tf.float64)
    state = flatvec.minimize(fun, x0, "lbfgs", max_iter=1).state
    with pytest.raises(ValueError, match="initial_state"):
        flatvec.minimize(fun, x0, "lbfgs", initial_state=state._replace(x=state.x * np.nan))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(learning_rate=math.nan), ValueError, "learning_rate"),
        (dict(learning_rate=-0.1), ValueError, "learning_rate"),
        (dict(learning_rate=math.inf), ValueError, "learning_rate"),
        (dict(clipnorm="a"), TypeError, "clipnorm"),
        (dict(clipvalue=-1.0), ValueError, "clipvalue"),
        (dict(global_clipnorm=math.nan), ValueError, "global_clipnorm"),
    ],
)
def test_vector_optimizer_refuses_bad_numbers(kwargs, error, match):
    with pytest.raises(error, match=match):
        VectorOptimizer("gd", **kwargs)
