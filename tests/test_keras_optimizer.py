"""flatvec.keras.VectorOptimizer inside model.fit.

The independent truth is Keras' own per-variable optimizer: ``VectorOptimizer("gd",
momentum=...)`` computes the same update as ``keras.optimizers.SGD`` in another order of
operations, so after real ``model.fit`` epochs from the same start the weights must agree. A
user rule (Barzilai-Borwein) is checked against a NumPy replay with the analytic gradient.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import flatvec
from flatvec.keras import KerasHookError, VectorOptimizer, check_keras_update_hook

TOL = 1e-6
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x[:160] / 16.0).astype("float32"), y[:160]


def digits_mlp(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="tanh"),
            keras.layers.Dense(128, activation="tanh"),
            keras.layers.Dense(10),
        ]
    )


def fit(model, optimizer, x, y, *, epochs=2, **compile_kwargs):
    model.compile(optimizer=optimizer, loss=LOSS, **compile_kwargs)
    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0)
    return model


def max_diff(a: keras.Model, b: keras.Model) -> float:
    return max(float(np.abs(u - v).max()) for u, v in zip(a.get_weights(), b.get_weights()))


def assert_same_as_sgd(make_model, x, y, sgd_kwargs, *, tol=TOL, **compile_kwargs):
    """Fit two copies 2 epochs with SGD and with VectorOptimizer('gd'); compare the weights."""
    start = make_model().get_weights()
    reference = fit(make_model(), keras.optimizers.SGD(**sgd_kwargs), x, y, **compile_kwargs)
    vector = fit(make_model(), VectorOptimizer("gd", **sgd_kwargs), x, y, **compile_kwargs)
    moved = max(float(np.abs(u - v).max()) for u, v in zip(start, reference.get_weights()))
    assert moved > 1e-3, "training did not change the weights: the comparison proves nothing"
    diff = max_diff(reference, vector)
    assert diff <= tol, f"VectorOptimizer differs from SGD by {diff:.3g}"
    return vector


# ---------------------------------------------------------------------- equality with SGD
@pytest.mark.parametrize(
    "compile_kwargs",
    [{"jit_compile": False}, {"jit_compile": True}, {"run_eagerly": True}],
    ids=["graph", "xla", "eager"],
)
def test_gd_momentum_matches_sgd(digits, compile_kwargs):
    assert_same_as_sgd(
        digits_mlp, *digits, {"learning_rate": 0.05, "momentum": 0.9}, **compile_kwargs
    )


@pytest.mark.parametrize(
    "sgd_kwargs",
    [
        {"learning_rate": 0.05, "momentum": 0.9, "clipnorm": 0.05},
        {
            "learning_rate": keras.optimizers.schedules.ExponentialDecay(0.1, 3, 0.8),
            "momentum": 0.9,
        },
        {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True},
        {
            "learning_rate": 0.05,
            "weight_decay": 0.01,
            "gradient_accumulation_steps": 2,
            "use_ema": True,
        },
    ],
    ids=["clipnorm", "lr-schedule", "nesterov", "decay-accumulation-ema"],
)
def test_keras_optimizer_features_match_sgd(digits, sgd_kwargs):
    # Each case needs its own schedule object only if it is stateful; Keras' are not.
    assert_same_as_sgd(digits_mlp, *digits, sgd_kwargs)


def test_mixed_float16_matches_sgd(digits):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        vector = assert_same_as_sgd(digits_mlp, *digits, {"learning_rate": 0.05, "momentum": 0.9})
    finally:
        keras.config.set_dtype_policy(previous)
    assert isinstance(vector.optimizer, keras.optimizers.LossScaleOptimizer)
    assert vector.optimizer.inner_optimizer.space.dtype == tf.float32


def test_embedding_indexed_slices_match_sgd():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, size=(96, 6))  # many repeated rows per batch
    labels = rng.integers(0, 3, size=96)

    def model():
        keras.utils.set_random_seed(1)
        return keras.Sequential(
            [
                keras.Input((6,), dtype="int32"),
                keras.layers.Embedding(20, 4),
                keras.layers.GlobalAveragePooling1D(),
                keras.layers.Dense(3),
            ]
        )

    seen = []
    original = VectorOptimizer.update_vector

    def spy(self, anchor, grads, learning_rate):
        seen.extend(type(g) for g in grads)
        return original(self, anchor, grads, learning_rate)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VectorOptimizer, "update_vector", spy)
        assert_same_as_sgd(model, tokens, labels, {"learning_rate": 0.5, "momentum": 0.9})
    assert tf.IndexedSlices in seen, "the embedding gradient did not arrive as IndexedSlices"


def test_float64_and_float32_layers_match_sgd(digits):
    def model():
        keras.utils.set_random_seed(2)
        return keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(32, activation="tanh", dtype="float64"),
                keras.layers.Dense(10, dtype="float32"),
            ]
        )

    # The vector is float64; SGD rounds float32 variables' updates in float32, hence 1e-6.
    vector = assert_same_as_sgd(model, *digits, {"learning_rate": 0.05, "momentum": 0.9})
    assert vector.optimizer.space.dtype == tf.float64
    assert {w.dtype for w in vector.get_weights()} == {np.dtype("float64"), np.dtype("float32")}


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from sklearn.datasets import load_digits
    from flatvec.keras import VectorOptimizer

    x, y = load_digits(return_X_y=True)
    x, y = (x[:192] / 16.0).astype("float32"), y[:192]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    models = []
    for make in (lambda: keras.optimizers.SGD(0.05, momentum=0.9),
                 lambda: VectorOptimizer("gd", learning_rate=0.05, momentum=0.9)):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((64,)),
                                      keras.layers.Dense(128, activation="tanh"),
                                      keras.layers.Dense(128, activation="tanh"),
                                      keras.layers.Dense(10)])
            model.compile(optimizer=make(),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        models.append(model)
    sgd, vec = models
    state = vec.trainable_variables + vec.optimizer.variables
    copies = [[c.numpy() for c in v.value.values] for v in state]
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "per_variable_copies": min(len(c) for c in copies),
        "replica_diff": max(float(np.abs(c[0] - c[1]).max()) for c in copies),
        "sgd_diff": max(float(np.abs(a - b).max())
                        for a, b in zip(sgd.get_weights(), vec.get_weights())),
    }))
    """
)


@pytest.mark.private_tf  # the public update_step route refuses strategies
def test_mirrored_strategy_matches_sgd_and_replicas_agree():
    # Logical devices must be configured before TensorFlow starts: run in a fresh process.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["per_variable_copies"] == 2
    assert result["replica_diff"] == 0.0, result
    assert result["sgd_diff"] <= TOL, result


# ---------------------------------------------------------------------- tracing
def test_train_step_traces_once(digits):
    calls = []
    original = VectorOptimizer.update_vector

    def spy(self, *args):
        calls.append(1)  # runs only while tracing in graph mode
        return original(self, *args)

    model = digits_mlp()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VectorOptimizer, "update_vector", spy)
        fit(model, VectorOptimizer("gd", learning_rate=0.05, momentum=0.9), *digits, epochs=1)
        after_first = len(calls)
        model.fit(*digits, batch_size=32, epochs=3, shuffle=False, verbose=0)
    assert 1 <= after_first <= 2  # Keras may trace the train function once more at build
    assert len(calls) == after_first, "the update was retraced during training"


# ---------------------------------------------------------------------- saving
def _saved_and_continued(tmp_path, digits, restore):
    x, y = digits
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, 3, 0.9)
    model = fit(
        digits_mlp(), VectorOptimizer("gd", learning_rate=schedule, momentum=0.9), x, y, epochs=1
    )
    restored = restore(model, tmp_path)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    restored.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    return model, restored


def test_keras_file_round_trip_continues_identically(tmp_path, digits):
    def restore(model, path):
        model.save(path / "m.keras")
        return keras.models.load_model(path / "m.keras")

    model, restored = _saved_and_continued(tmp_path, digits, restore)
    assert isinstance(restored.optimizer, VectorOptimizer)
    assert restored.optimizer.rule.get_config() == model.optimizer.rule.get_config()
    assert restored.optimizer.rule.momentum == 0.9
    # Momentum matters in the next epoch: a lost velocity slot would change the weights.
    assert max_diff(model, restored) == 0.0


def test_tf_checkpoint_round_trip_continues_identically(tmp_path, digits):
    def restore(model, path):
        prefix = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(path / "ckpt")
        fresh = digits_mlp(seed=5)  # other weights: restoring must overwrite them
        schedule = keras.optimizers.schedules.ExponentialDecay(0.05, 3, 0.9)
        optimizer = VectorOptimizer("gd", learning_rate=schedule, momentum=0.9)
        fresh.compile(optimizer=optimizer, loss=LOSS)
        optimizer.build(fresh.trainable_variables)
        tf.train.Checkpoint(model=fresh, optimizer=optimizer).restore(prefix).assert_consumed()
        assert int(optimizer.iterations) == int(model.optimizer.iterations)
        return fresh

    model, restored = _saved_and_continued(tmp_path, digits, restore)
    assert max_diff(model, restored) == 0.0


def test_config_round_trip():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([10], [0.1, 0.01])
    opt = VectorOptimizer("gd", learning_rate=schedule, momentum=0.5, nesterov=True, clipnorm=1.0)
    config = opt.get_config()
    assert config["rule"] == "gd" and config["clipnorm"] == 1.0
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(again, VectorOptimizer)
    assert again.get_config() == config
    assert again.rule.momentum == 0.5 and again.rule.nesterov is True


# ---------------------------------------------------------------------- a user rule
class BBSlots(NamedTuple):
    prev_x: tf.Tensor
    prev_g: tf.Tensor
    started: tf.Tensor


class BarzilaiBorwein(flatvec.UpdateRule):
    """x <- x - a g with a = s's / s'y (BB1), the learning rate on the first step."""

    def __init__(self, *, learning_rate: float = 0.01, max_step: float = 10.0) -> None:
        super().__init__(learning_rate=learning_rate)
        self.max_step = float(max_step)

    def init_slots(self, x):
        return BBSlots(tf.zeros_like(x), tf.zeros_like(x), tf.zeros([], x.dtype))

    def update(self, x, g, slots, *, learning_rate):
        s, y = x - slots.prev_x, g - slots.prev_g
        sy = tf.tensordot(s, y, 1)
        bb = tf.math.divide_no_nan(tf.tensordot(s, s, 1), sy)
        ok = (slots.started > 0) & (sy > 0)
        step = tf.where(ok, tf.minimum(bb, self.max_step), learning_rate)
        return x - step * g, BBSlots(x, g, tf.ones_like(slots.started))


def _bb_reference(w, b, x, y, lr, steps, max_step):
    """The same rule in NumPy, with the analytic gradient of mean((x w + b - y)^2)."""
    theta, prev_t, prev_g = np.concatenate([w.ravel(), b]), None, None
    design = np.hstack([x, np.ones((len(x), 1))])
    for _ in range(steps):
        g = 2.0 / len(x) * design.T @ (design @ theta - y.ravel())
        step = lr
        if prev_t is not None:
            s, d = theta - prev_t, g - prev_g
            if s @ d > 0:
                step = min(s @ s / (s @ d), max_step)
        prev_t, prev_g = theta, g
        theta = theta - step * g
    return theta


def test_user_barzilai_borwein_rule_in_fit(tmp_path):
    rng = np.random.default_rng(3)
    # float32-representable data: Keras' data adapter may pass inputs through float32.
    x = rng.normal(size=(64, 5)).astype("float32").astype("float64")
    y = (x @ rng.normal(size=(5, 1)) + 0.3).astype("float32").astype("float64")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((5,), dtype="float64"), keras.layers.Dense(1, dtype="float64")]
    )
    w0, b0 = (v.copy() for v in model.get_weights())
    model.compile(
        optimizer=VectorOptimizer(BarzilaiBorwein(max_step=5.0), learning_rate=0.05),
        loss=keras.losses.MeanSquaredError(dtype="float64"),
    )
    steps = 8  # full batch: one optimizer step per epoch
    history = model.fit(x, y, batch_size=64, epochs=steps, shuffle=False, verbose=0)
    expected = _bb_reference(w0, b0, x, y, 0.05, steps, 5.0)
    got = np.concatenate([v.ravel() for v in model.get_weights()])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert history.history["loss"][-1] < 1e-2 * history.history["loss"][0]

    # Saved by class name and config; loading needs the class (custom_objects).
    model.save(tmp_path / "bb.keras")
    with pytest.raises(TypeError, match="custom_objects"):
        keras.models.load_model(tmp_path / "bb.keras")
    loaded = keras.models.load_model(
        tmp_path / "bb.keras", custom_objects={"BarzilaiBorwein": BarzilaiBorwein}
    )
    assert isinstance(loaded.optimizer.rule, BarzilaiBorwein)
    assert loaded.optimizer.rule.max_step == 5.0
    for saved, original in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(saved.numpy(), original.numpy())


# ---------------------------------------------------------------------- refusals and errors
class _LineSearchMethod(flatvec.Algorithm):
    def init(self, x, f, g):
        return (x, f, g)

    def step(self, state, oracle):
        return state


class _RuleThatSearches(flatvec.UpdateRule):
    uses_line_search = True


@pytest.mark.parametrize(
    "rule, options",
    [
        ("lbfgs", {}),
        ("cg", {}),
        ("bfgs", {}),
        ("gd", {"line_search": "armijo"}),
        (_LineSearchMethod(), {}),
        (_RuleThatSearches(), {}),
    ],
    ids=["lbfgs", "cg", "bfgs", "gd-armijo", "algorithm", "rule-with-line-search"],
)
def test_line_search_methods_are_refused(rule, options):
    if isinstance(rule, str) and importlib.util.find_spec(f"flatvec.algorithms.{rule}") is None:
        pytest.skip(f"flatvec.algorithms.{rule} is not written yet")
    with pytest.raises(ValueError, match=r"flatvec\.minimize\(model, dataset"):
        VectorOptimizer(rule, **options)


def test_bad_rule_arguments():
    with pytest.raises(ValueError, match="unknown algorithm 'nope'"):
        VectorOptimizer("nope")
    with pytest.raises(TypeError, match="rule: expected"):
        VectorOptimizer(3)
    with pytest.raises(TypeError, match="momentum"):
        VectorOptimizer(BarzilaiBorwein(), momentum=0.9)  # options go on the instance
    with pytest.raises(TypeError, match="unknown option"):
        VectorOptimizer("gd", beta="pr")


class _NoSlots(NamedTuple):
    pass


class _WrongDtypeRule(flatvec.UpdateRule):
    def init_slots(self, x):
        return _NoSlots()

    def update(self, x, g, slots, *, learning_rate):
        return tf.cast(x - learning_rate * g, tf.float64), slots


class _TupleSlotsRule(_WrongDtypeRule):
    def init_slots(self, x):
        return (tf.zeros_like(x),)


def test_broken_rules_fail_naming_the_rule():
    variables = [keras.Variable(np.ones(3, "float32"))]
    with pytest.raises(TypeError, match=r"_WrongDtypeRule\.update: returned x as float64, "
                                        r"expected float32"):
        VectorOptimizer(_WrongDtypeRule()).apply([tf.ones(3)], variables)
    with pytest.raises(TypeError, match=r"_TupleSlotsRule\.init_slots: expected a NamedTuple"):
        VectorOptimizer(_TupleSlotsRule()).build(variables)
    np.testing.assert_array_equal(variables[0].numpy(), 1.0)


def test_learning_rate_defaults_to_the_rules():
    assert float(
        VectorOptimizer(BarzilaiBorwein(learning_rate=0.3)).learning_rate
    ) == pytest.approx(0.3)
    assert float(VectorOptimizer("gd", learning_rate=0.2).learning_rate) == pytest.approx(0.2)


# ---------------------------------------------------------------------- the private Keras hook
@pytest.mark.private_tf
def test_installed_keras_has_the_private_hook():
    check_keras_update_hook()  # raises KerasHookError on a Keras that changed it
    from keras.src.backend.tensorflow.optimizer import TFOptimizer

    assert tuple(inspect.signature(TFOptimizer._distributed_tf_update_step).parameters) == (
        "self",
        "distribution",
        "grads_and_vars",
        "learning_rate",
    )


@pytest.mark.private_tf
def test_hook_check_fails_loudly_when_keras_changes(monkeypatch):
    from keras.src.backend.tensorflow.optimizer import TFOptimizer

    def update_without_hook(self, grads, trainable_variables, learning_rate):
        for g, v in zip(grads, trainable_variables):
            self.update_step(g, v, learning_rate)

    monkeypatch.setattr(TFOptimizer, "_backend_update_step", update_without_hook)
    with pytest.raises(KerasHookError, match="no longer calls _distributed_tf_update_step"):
        check_keras_update_hook()
    # The optimizer warns and takes Keras' public update_step route instead of refusing.
    with pytest.warns(UserWarning, match="no longer calls .* public update_step"):
        assert not VectorOptimizer("gd").uses_private_hook
    monkeypatch.undo()

    def renamed(self, strategy, grads_and_vars, lr):
        return None

    monkeypatch.setattr(TFOptimizer, "_distributed_tf_update_step", renamed)
    with pytest.raises(KerasHookError, match="parameters"):
        check_keras_update_hook()
    monkeypatch.delattr(TFOptimizer, "_distributed_tf_update_step")
    with pytest.raises(KerasHookError, match="has no method _distributed_tf_update_step"):
        check_keras_update_hook()


def _momentum_steps(variables, steps=3):
    optimizer = VectorOptimizer("gd", learning_rate=0.1, momentum=0.9)
    grads = [tf.constant([1.0, -2.0, 0.5]), None, tf.constant([3.0, 1.0])]
    for _ in range(steps):
        optimizer.apply(grads, variables)
    return optimizer, [v.numpy() for v in variables]


def _variables():
    return [keras.Variable(np.ones(3, "float32")), keras.Variable(np.ones(4, "float32")),
            keras.Variable(np.ones(2, "float32"))]


@pytest.mark.private_tf
def test_the_public_route_is_the_hook_route(monkeypatch):
    # Heavy-ball momentum in closed form: v <- 0.9 v + g, x <- x - 0.1 v; a variable without
    # a gradient (None) does not move (its gradient counts as zero, its velocity stays 0).
    hooked, through_hook = _momentum_steps(_variables())
    assert hooked.uses_private_hook
    monkeypatch.setenv("FLATVEC_PRIVATE_TF", "0")
    public, through_update_step = _momentum_steps(_variables())
    assert not public.uses_private_hook
    g = np.array([1.0, -2.0, 0.5, 0, 0, 0, 0, 3.0, 1.0])
    velocity, x = np.zeros(9), np.ones(9)
    for _ in range(3):
        velocity = 0.9 * velocity + g
        x = x - 0.1 * velocity
    for values in (through_hook, through_update_step):
        np.testing.assert_allclose(np.concatenate(values), x, rtol=1e-6)


@pytest.mark.private_tf
def test_a_keras_that_bypasses_the_hook_still_gets_whole_vector_updates(monkeypatch):
    from keras.src.backend.tensorflow.optimizer import TFOptimizer
    from keras.src.optimizers.base_optimizer import BaseOptimizer

    expected = _momentum_steps(_variables())[1]
    # A Keras that updated variable by variable (the generic loop) reaches update_step.
    monkeypatch.setattr(TFOptimizer, "_backend_update_step", BaseOptimizer._backend_update_step)
    with pytest.warns(UserWarning, match="public update_step"):
        bypassed = _momentum_steps(_variables())[1]
    for a, b in zip(expected, bypassed):
        np.testing.assert_allclose(a, b, rtol=1e-6)
