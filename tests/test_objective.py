"""Objective: full-batch values and gradients, Hessian-vector products, counters, errors.

Truths: the whole dataset evaluated as one batch under a plain ``tf.GradientTape`` with Keras'
own loss reduction, closed forms, dense Hessians from nested tapes, and central differences.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from flatvec import Objective

N = 67  # prime: every batch size below leaves a ragged last batch
_rng = np.random.default_rng(7)
X = _rng.normal(size=(N, 4))
Y = _rng.normal(size=(N, 2))
W = _rng.uniform(0.5, 1.5, size=N)
LABELS = _rng.integers(0, 3, size=N)

L2 = 0.01
L2_KERAS = float(np.float32(L2))  # Keras keeps the coefficient as a float32 constant


def _flat(tensors) -> np.ndarray:
    return np.concatenate([np.asarray(t).ravel() for t in tensors])


def _reference(model, loss, *, weights=None, x=X, y=Y):
    """f and g of the whole dataset as one batch: Keras' loss reduction plus model.losses."""
    with tf.GradientTape() as tape:
        f = loss(y, model(x), sample_weight=weights)
        if model.losses:
            f += tf.add_n(model.losses)
    return float(f), _flat(tape.gradient(f, model.trainable_variables))


def _assert_close(f, g, f_ref, g_ref, rtol=1e-10):
    assert abs(float(f) - f_ref) <= rtol * abs(f_ref), (float(f), f_ref)
    np.testing.assert_allclose(np.asarray(g), g_ref, rtol=rtol, atol=rtol * np.abs(g_ref).max())


def _dataset(batch_size, weighted, x=X, y=Y):
    parts = (x, y, W) if weighted else (x, y)
    return tf.data.Dataset.from_tensor_slices(parts).batch(batch_size)


def _uneven_dataset():
    """41 batches whose sizes change in the middle (1, ..., 1, 3, ..., 3, 2)."""
    a = tf.data.Dataset.from_tensor_slices((X[:32], Y[:32], W[:32])).batch(1)
    b = tf.data.Dataset.from_tensor_slices((X[32:], Y[32:], W[32:])).batch(3)
    return a.concatenate(b)


def _mse():
    return keras.losses.MeanSquaredError(dtype="float64")


# ---------------------------------------------------------------------------- full batch

FULL_BATCH_CASES = {
    # id: (make data, weighted, in_memory) -- batch counts for N = 67 in comments
    "dataset-b16-unrolled": (lambda: _dataset(16, False), False, None),  # 5 batches, last 3
    "dataset-b16-weighted": (lambda: _dataset(16, True), True, True),
    "dataset-b16-streamed": (lambda: _dataset(16, True), True, False),
    "dataset-one-batch": (lambda: _dataset(N, True), True, None),
    "arrays-one-batch": (lambda: (X, Y, W), True, None),
    "arrays-b13-streamed": (lambda: ((X, Y), 13), False, False),  # 6 batches, last 2
    "arrays-b13-in-memory": (lambda: ((X, Y, W), 13), True, True),
    "dataset-b1-stacked": (lambda: _dataset(1, True), True, None),  # 67 batches in a loop
    "dataset-b2-stacked-tail": (lambda: _dataset(2, True), True, True),  # 33 + tail of 1
    "dataset-b2-streamed": (lambda: _dataset(2, False), False, False),
    "dataset-uneven-41": (_uneven_dataset, True, None),  # cannot stack: cached stream
}


@pytest.mark.parametrize("case", list(FULL_BATCH_CASES))
def test_full_batch_equals_one_big_batch(case, make_mlp):
    make_data, weighted, in_memory = FULL_BATCH_CASES[case]
    model = make_mlp(4, 2, kernel_regularizer=keras.regularizers.L2(L2))
    data = make_data()
    batch_size = None
    if isinstance(data, tuple) and isinstance(data[1], int):
        data, batch_size = data
    obj = Objective.from_model(model, data, _mse(), batch_size=batch_size, in_memory=in_memory)
    x = obj.space.get()
    f, g = obj.value_and_gradient(x)
    _assert_close(f, g, *_reference(model, _mse(), weights=W if weighted else None))


@pytest.mark.parametrize("batch_size, in_memory", [(16, None), (2, None), (16, False)])
def test_uncompiled_oracle_agrees(batch_size, in_memory, make_mlp):
    model = make_mlp(4, 2)
    obj = Objective.from_model(model, _dataset(batch_size, True), _mse(), in_memory=in_memory)
    _assert_close(*obj(obj.space.get()), *_reference(model, _mse(), weights=W))


def _per_sample_mse(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)


def _scalar_mse(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - y_pred))


LOSS_CASES = {
    # id: (loss for the objective or "compiled", reference Loss object, weighted)
    "keras-name": ("mean_squared_error", _mse, True),
    "keras-object-with-options": (
        lambda: keras.losses.Huber(delta=0.3, dtype="float64"),
        lambda: keras.losses.Huber(delta=0.3, dtype="float64"),
        True,
    ),
    "callable-per-sample": (lambda: _per_sample_mse, _mse, True),
    "callable-scalar-mean": (lambda: _scalar_mse, _mse, False),
    "compiled-model-loss": ("compiled", lambda: keras.losses.LogCosh(dtype="float64"), True),
}


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_loss_forms(case, make_mlp):
    loss, reference_loss, weighted = LOSS_CASES[case]
    model = make_mlp(4, 2)
    if loss == "compiled":
        model.compile(loss=keras.losses.LogCosh(dtype="float64"))
        loss = None
    elif callable(loss):
        loss = loss()
    obj = Objective.from_model(model, _dataset(16, weighted), loss)
    f, g = obj.value_and_gradient(obj.space.get())
    _assert_close(f, g, *_reference(model, reference_loss(), weights=W if weighted else None))


def test_classification_with_integer_labels(make_mlp):
    model = make_mlp(4, 3)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    data = tf.data.Dataset.from_tensor_slices((X, LABELS, W)).batch(9)
    obj = Objective.from_model(model, data, loss)
    f, g = obj.value_and_gradient(obj.space.get())
    _assert_close(f, g, *_reference(model, loss, weights=W, y=LABELS))


# ---------------------------------------------------------------------------- regularization

BATCHINGS = {
    "one-batch": lambda: _dataset(N, False),
    "b16-unrolled": lambda: _dataset(16, False),
    "b2-stacked": lambda: _dataset(2, False),
    "b16-streamed": lambda: (_dataset(16, False), False),
}


def _batching(name):
    data = BATCHINGS[name]()
    return data if isinstance(data, tuple) else (data, None)


@pytest.mark.parametrize("batching", list(BATCHINGS))
def test_weight_regularization_is_counted_once(batching, make_mlp):
    model = make_mlp(4, 2, kernel_regularizer=keras.regularizers.L2(L2))
    data, in_memory = _batching(batching)

    def zero_loss(y_true, y_pred):  # leaves only the regularization
        return 0.0 * y_pred[:, 0]

    obj = Objective.from_model(model, data, zero_loss, in_memory=in_memory)
    f, g = obj.value_and_gradient(obj.space.get())
    kernels = [v.numpy() for v in model.trainable_variables if v.path.endswith("kernel")]
    f_closed = L2_KERAS * sum(np.sum(k**2) for k in kernels)  # Keras L2: l2 * sum(w^2)
    g_closed = _flat(
        2 * L2_KERAS * v.numpy() if v.path.endswith("kernel") else np.zeros(v.shape)
        for v in model.trainable_variables
    )
    _assert_close(f, g, f_closed, g_closed, rtol=1e-12)


@pytest.mark.parametrize("batching", list(BATCHINGS))
def test_activity_regularizer_equals_whole_dataset_as_one_batch(batching):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((4,), dtype="float64"),
            keras.layers.Dense(
                3, "tanh", dtype="float64", activity_regularizer=keras.regularizers.L2(0.1)
            ),
            keras.layers.Dense(2, dtype="float64"),
        ]
    )
    data, in_memory = _batching(batching)
    obj = Objective.from_model(model, data, _mse(), in_memory=in_memory)
    f, g = obj.value_and_gradient(obj.space.get())
    # Keras 3 divides the activity penalty by the batch size: one batch of all N samples.
    hidden = np.tanh(X @ model.layers[0].kernel.numpy() + model.layers[0].bias.numpy())
    penalty = float(np.float32(0.1)) * np.sum(hidden**2) / N  # float32 coefficient, as L2
    f_ref, g_ref = _reference(model, _mse())
    assert abs(f_ref - float(_mse()(Y, model(X))) - penalty) <= 1e-12  # reference has it once
    _assert_close(f, g, f_ref, g_ref)


# ---------------------------------------------------------------------------- XLA and tracing


@pytest.mark.parametrize("batch_size", [16, 2])
def test_xla_matches_reference(batch_size, make_mlp):
    model = make_mlp(4, 2, kernel_regularizer=keras.regularizers.L2(L2))
    obj = Objective.from_model(model, _dataset(batch_size, True), _mse(), jit_compile=True)
    f, g = obj.value_and_gradient(obj.space.get())
    _assert_close(f, g, *_reference(model, _mse(), weights=W))


def test_compiled_oracles_trace_once(make_mlp):
    model = make_mlp(4, 2)
    calls = []

    def loss(y_true, y_pred):  # runs only while tracing
        calls.append(1)
        return _per_sample_mse(y_true, y_pred)

    obj = Objective.from_model(model, _dataset(23, False), loss)
    assert calls, "the loss is probed once, eagerly, on a sample of the data"
    calls.clear()
    x0 = obj.space.get().numpy()
    for k in range(3):
        obj.value_and_gradient(tf.constant(x0 * (1 + 0.1 * k)))
    assert len(calls) == 3  # one trace of the 3 unrolled batches
    for k in range(3):
        obj.hessian_vector_product(tf.constant(x0), tf.constant(x0 * k))
    assert len(calls) == 6
    assert int(obj.nfev) == int(obj.njev) == 3 and int(obj.nhev) == 3


# ---------------------------------------------------------------------------- function source


def _rosenbrock(x):
    return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _rosenbrock_grad(x):
    g = np.zeros_like(x)
    g[:-1] += -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g


def _rosenbrock_hess(x):
    n = len(x)
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200.0 * x[i] ** 2 - 400.0 * x[i + 1] + 2.0
        h[i + 1, i + 1] += 200.0
        h[i, i + 1] = h[i + 1, i] = -400.0 * x[i]
    return h


@pytest.mark.parametrize("jit_compile", [False, True])
def test_function_value_gradient_hvp_closed_form(jit_compile, rng):
    obj = Objective.from_function(_rosenbrock, size=5, jit_compile=jit_compile)
    x = rng.normal(size=5)
    v = rng.normal(size=5)
    f, g = obj.value_and_gradient(x)
    assert abs(float(f) - float(_rosenbrock(tf.constant(x)))) <= 1e-12 * abs(float(f))
    np.testing.assert_allclose(g.numpy(), _rosenbrock_grad(x), rtol=1e-12)
    np.testing.assert_allclose(
        obj.hessian_vector_product(x, v).numpy(), _rosenbrock_hess(x) @ v, rtol=1e-12, atol=1e-9
    )
    # central differences of the gradient
    eps = 1e-6
    fd = (obj.value_and_gradient(x + eps * v).gradient - obj.value_and_gradient(x - eps * v)
          .gradient).numpy() / (2 * eps)
    np.testing.assert_allclose(obj.hessian_vector_product(x, v).numpy(), fd, rtol=1e-6, atol=1e-6)


def test_function_constant_part_has_zero_gradient():
    obj = Objective.from_function(lambda x: tf.reduce_sum(x[:1] ** 2), size=3)
    _, g = obj.value_and_gradient([2.0, 5.0, 7.0])
    np.testing.assert_array_equal(g.numpy(), [4.0, 0.0, 0.0])
    np.testing.assert_array_equal(obj.hessian_vector_product([2.0, 5, 7], [1.0, 1, 1]).numpy(),
                                  [2.0, 0.0, 0.0])


def test_counters_inside_a_compiled_loop():
    obj = Objective.from_function(_rosenbrock)

    @tf.function
    def run(x):
        def body(i, x):
            f, g = obj(x)
            return i + 1, x - 1e-4 * g

        _, x = tf.while_loop(lambda i, _: i < 5, body, (tf.constant(0), x))
        return obj.hvp(x, x) + obj.hvp(x, x)

    x0 = tf.constant([0.5, -0.3, 0.2], tf.float64)
    run(x0)
    assert (int(obj.nfev), int(obj.njev), int(obj.nhev)) == (5, 5, 2)
    run(x0)
    assert (int(obj.nfev), int(obj.njev), int(obj.nhev)) == (10, 10, 4)
    obj.reset_counters()
    obj.value_and_gradient(x0)
    assert (int(obj.nfev), int(obj.njev), int(obj.nhev)) == (1, 1, 0)


# ---------------------------------------------------------------------------- closure source


def test_closure_value_gradient_hvp_closed_form(rng):
    # f(w, b) = 1/2 w'Aw + sum(sin b) * sum(w): couples the two variables.
    a = rng.normal(size=(3, 3))
    a = a @ a.T
    w = tf.Variable(rng.normal(size=3))
    b = tf.Variable(rng.normal(size=(2, 1)))

    def loss_fn():
        return 0.5 * tf.tensordot(w, tf.linalg.matvec(a, w), 1) + tf.reduce_sum(
            tf.sin(b)
        ) * tf.reduce_sum(w)

    obj = Objective.from_closure(loss_fn, [w, b])
    x = rng.normal(size=5)
    wx, bx = x[:3], x[3:]
    f, g = obj.value_and_gradient(x)
    f_closed = 0.5 * wx @ a @ wx + np.sin(bx).sum() * wx.sum()
    g_closed = np.concatenate([a @ wx + np.sin(bx).sum(), np.cos(bx) * wx.sum()])
    assert abs(float(f) - f_closed) <= 1e-12 * abs(f_closed)
    np.testing.assert_allclose(g.numpy(), g_closed, rtol=1e-12)
    h = np.zeros((5, 5))
    h[:3, :3] = a
    h[:3, 3:] = np.cos(bx)[None, :]
    h[3:, :3] = np.cos(bx)[:, None]
    h[3:, 3:] = np.diag(-np.sin(bx) * wx.sum())
    v = rng.normal(size=5)
    np.testing.assert_allclose(obj.hessian_vector_product(x, v).numpy(), h @ v, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_array_equal(w.numpy(), wx)  # the oracle leaves the point in the variables


def test_closure_unused_variable():
    w = tf.Variable([1.0, 2.0], dtype=tf.float64)
    unused = tf.Variable([3.0], dtype=tf.float64, name="unused_var")
    with pytest.raises(ValueError, match="unused_var"):
        Objective.from_closure(lambda: tf.reduce_sum(w**2), [w, unused]).value_and_gradient(
            [1.0, 2.0, 3.0]
        )
    obj = Objective.from_closure(lambda: tf.reduce_sum(w**2), [w, unused], allow_unused=True)
    np.testing.assert_array_equal(obj.value_and_gradient([1.0, 2.0, 3.0]).gradient, [2, 4, 0])


# ---------------------------------------------------------------------------- Hessians


@pytest.mark.parametrize(
    "batch_size, in_memory",
    [(23, None), (2, None), (23, False)],
    ids=["unrolled", "stacked", "streamed"],
)
def test_model_hvp_against_dense_hessian_and_differences(batch_size, in_memory, make_mlp, rng):
    model = make_mlp(4, 2, hidden=(2,), kernel_regularizer=keras.regularizers.L2(L2))
    obj = Objective.from_model(model, _dataset(batch_size, True), _mse(), in_memory=in_memory)
    x = obj.space.get().numpy()
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            f = _mse()(Y, model(X), sample_weight=W) + tf.add_n(model.losses)
        g = tf.concat([tf.reshape(t, [-1]) for t in inner.gradient(f, variables)], 0)
    h = np.concatenate(
        [np.reshape(j, (len(x), -1)) for j in outer.jacobian(g, variables)], axis=1
    )
    np.testing.assert_allclose(h, h.T, atol=1e-12)
    v = rng.normal(size=len(x))
    hv = obj.hessian_vector_product(x, v).numpy()
    np.testing.assert_allclose(hv, h @ v, rtol=1e-10, atol=1e-12)
    eps = 1e-5
    fd = (obj.value_and_gradient(x + eps * v).gradient.numpy()
          - obj.value_and_gradient(x - eps * v).gradient.numpy()) / (2 * eps)
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------- bad input


def test_vector_checks_leave_variables_untouched(make_mlp, unchanged):
    model = make_mlp(4, 2)
    obj = Objective.from_model(model, (X, Y), "mse")
    n = obj.size
    good = np.zeros(n)
    with unchanged(model.trainable_variables):
        with pytest.raises(ValueError, match=f"x: expected length {n}"):
            obj.value_and_gradient(np.zeros(n + 1))
        with pytest.raises(ValueError, match="x: expected a 1-D"):
            obj.value_and_gradient(np.zeros((n, 1)))
        with pytest.raises(TypeError, match="x: expected dtype float64"):
            obj.value_and_gradient(tf.zeros([n], tf.float32))
        with pytest.raises(TypeError, match="x: expected a floating"):
            obj.value_and_gradient(np.zeros(n, np.int32))
        with pytest.raises(ValueError, match="v: expected length"):
            obj.hessian_vector_product(good, np.zeros(n - 1))
        with pytest.raises(TypeError, match="v: expected dtype"):
            obj.hessian_vector_product(good, tf.zeros([n], tf.float32))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"model": "a model"}, TypeError, "model"),
        ({"loss": 42}, TypeError, "loss"),
        ({"loss": "no_such_loss"}, ValueError, "loss"),
        ({"dataset": [1, 2, 3, 4]}, ValueError, "dataset"),
        ({"dataset": np.zeros((3, 4))}, TypeError, "dataset"),
        ({"dataset": (X, Y[:5])}, ValueError, "dataset"),
        ({"dataset": _dataset(7, False).repeat()}, ValueError, "dataset.*infinite"),
        ({"dataset": _dataset(7, False).take(0)}, ValueError, "dataset.*empty"),
        ({"dataset": tf.data.Dataset.from_tensor_slices({"x": X, "y": Y})}, TypeError, "dict"),
        ({"batch_size": 0, "dataset": (X, Y)}, ValueError, "batch_size"),
        ({"batch_size": 4}, ValueError, "batch_size"),
        ({"in_memory": "yes"}, TypeError, "in_memory"),
        ({"training": None}, TypeError, "training"),
        ({"dtype": "int32"}, TypeError, "dtype"),
    ],
    ids=lambda p: p if isinstance(p, str) else None,
)
def test_from_model_bad_arguments(kwargs, error, match, make_mlp, unchanged):
    model = make_mlp(4, 2)
    args = {"model": model, "dataset": _dataset(7, False), "loss": "mse"} | kwargs
    with unchanged(model.trainable_variables):
        with pytest.raises(error, match=match):
            Objective.from_model(args.pop("model"), args.pop("dataset"), args.pop("loss"), **args)


def test_from_model_unbuilt_and_uncompiled(make_mlp):
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="model: is not built"):
        Objective.from_model(unbuilt, (X, Y), "mse")
    with pytest.raises(ValueError, match="loss: none given"):
        Objective.from_model(make_mlp(4, 2), (X, Y))


def test_scalar_loss_with_sample_weights_fails_up_front_and_writes_nothing(make_mlp, unchanged):
    model = make_mlp(4, 2)
    with unchanged(model.trainable_variables):
        with pytest.raises(ValueError, match="loss: returned a scalar"):
            Objective.from_model(model, (X, Y, W), _scalar_mse)


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: Objective.from_function("not callable"), TypeError, "fun"),
        (lambda: Objective.from_function(_rosenbrock, dtype="int32"), TypeError, "dtype"),
        (lambda: Objective.from_function(_rosenbrock, size=0), ValueError, "size"),
        (lambda: Objective.from_closure(None, [tf.Variable(1.0)]), TypeError, "loss_fn"),
        (lambda: Objective.from_closure(lambda: 0.0, "w"), TypeError, "model_or_variables"),
    ],
)
def test_constructor_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_function_bad_vectors_and_non_scalar_value():
    obj = Objective.from_function(_rosenbrock, size=3)
    with pytest.raises(ValueError, match="x: expected length 3"):
        obj.value_and_gradient(np.zeros(4))
    with pytest.raises(TypeError, match="x: expected dtype float64"):
        obj.value_and_gradient(tf.zeros([3], tf.float32))
    with pytest.raises(TypeError, match="x: expected a floating"):
        obj.value_and_gradient(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="fun: must return a scalar"):
        Objective.from_function(lambda x: x**2).value_and_gradient(np.zeros(3))


@pytest.mark.parametrize(
    "value, error",
    [(lambda w: w * 2.0, ValueError), (lambda w: (tf.reduce_sum(w), 2.0), TypeError)],
    ids=["vector", "tuple"],
)
def test_closure_must_return_a_scalar(value, error, unchanged):
    w = tf.Variable([1.0, 2.0], dtype=tf.float64)
    obj = Objective.from_closure(lambda: value(w), [w])
    with unchanged([w]):
        with pytest.raises(error, match="loss_fn: must return a scalar"):
            obj.value_and_gradient(tf.constant([5.0, 6.0], tf.float64))
