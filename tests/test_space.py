"""FlatParamSpace: layout, round trips, gradients, dtypes and input checks.

Truths: NumPy concatenation/reshape of the variables' values, ``np.add.at`` for duplicate
indices, and bit patterns of the variables before and after.
"""

from __future__ import annotations

import keras
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from flatvec import FlatParamSpace

FLOAT_DTYPES = [tf.float16, tf.bfloat16, tf.float32, tf.float64]

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
variable_specs = st.lists(st.tuples(shapes, st.sampled_from(FLOAT_DTYPES)), min_size=1, max_size=5)


def _np(t) -> np.ndarray:
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


def _make_variables(specs, seed: int) -> list[tf.Variable]:
    rng = np.random.default_rng(seed)
    return [
        tf.Variable(tf.cast(rng.normal(size=shape) * 10, dtype), name=f"v{i}")
        for i, (shape, dtype) in enumerate(specs)
    ]


def _expected_dtype(dtypes: set[tf.DType]) -> tf.DType:
    # Independent of the implementation: the smallest float dtype that holds every value.
    if tf.float64 in dtypes:
        return tf.float64
    if tf.float32 in dtypes or dtypes == {tf.float16, tf.bfloat16}:
        return tf.float32
    return dtypes.pop()


def _flat_truth(variables, dtype) -> np.ndarray:
    parts = [_np(v).astype(np.float64).ravel() for v in variables]
    return np.concatenate(parts).astype(dtype.as_numpy_dtype)


# ---------------------------------------------------------------------------- layout


def test_layout_offsets_sizes_names_follow_model_order(make_mlp):
    model = make_mlp(4, 2, hidden=(3, 5), dtype="float32")
    space = FlatParamSpace(model)
    variables = model.trainable_variables
    assert [s.name for s in space.layout] == [v.path for v in variables]
    assert [s.shape for s in space.layout] == [tuple(v.shape) for v in variables]
    sizes = [int(np.prod(v.shape)) for v in variables]
    assert [s.size for s in space.layout] == sizes
    assert [s.offset for s in space.layout] == list(np.cumsum([0] + sizes[:-1]))
    assert space.size == sum(sizes) == 4 * 3 + 3 + 3 * 5 + 5 + 5 * 2 + 2
    assert space.dtype == tf.float32
    np.testing.assert_array_equal(_np(space.get()), _flat_truth(variables, tf.float32))


def test_duplicates_are_removed_keeping_first_position():
    a, b = tf.Variable([1.0, 2.0], name="a"), tf.Variable([[3.0]], name="b")
    space = FlatParamSpace([a, b, a, b])
    assert space.size == 3
    assert [s.offset for s in space.layout] == [0, 2]
    np.testing.assert_array_equal(_np(space.get()), [1.0, 2.0, 3.0])


def test_shared_layer_variables_appear_once():
    shared = keras.layers.Dense(3)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, shared(shared(inputs)))
    assert FlatParamSpace(model).size == 3 * 3 + 3


# ---------------------------------------------------------------------------- round trips


@settings(max_examples=40)
@given(specs=variable_specs, seed=st.integers(0, 2**31 - 1))
def test_unpack_pack_round_trip_and_assign_get_bit_identical(specs, seed):
    variables = _make_variables(specs, seed)
    space = FlatParamSpace(variables)
    expected = _expected_dtype({d for _, d in specs})
    assert space.dtype == expected
    assert space.size == sum(int(np.prod(s)) for s, _ in specs)

    x = space.get()
    assert x.dtype == expected and x.shape == (space.size,)
    np.testing.assert_array_equal(_np(x), _flat_truth(variables, expected))

    values = [tf.convert_to_tensor(v) for v in variables]
    parts = space.unpack(space.pack(values))
    for p, v in zip(parts, values):
        assert p.dtype == v.dtype and p.shape == v.shape
        assert _np(p).tobytes() == _np(v).tobytes()

    before = [_np(v).copy() for v in variables]
    space.assign(x)
    for v, b in zip(variables, before):
        assert _np(v).tobytes() == b.tobytes()


@settings(max_examples=15)
@given(specs=variable_specs, seed=st.integers(0, 2**31 - 1))
def test_assign_writes_each_slice_into_its_variable(specs, seed):
    variables = _make_variables(specs, seed)
    space = FlatParamSpace(variables)
    new = np.random.default_rng(seed + 1).normal(size=space.size).astype(np.float64)
    space.assign(tf.constant(new, space.dtype))
    new = new.astype(space.dtype.as_numpy_dtype)
    for v, slot in zip(variables, space.layout):
        want = new[slot.offset : slot.offset + slot.size].reshape(slot.shape)
        np.testing.assert_array_equal(_np(v), want.astype(v.dtype.as_numpy_dtype))


def test_dtype_override_casts_both_ways():
    w = tf.Variable(np.array([1.0 + 2**-30, 3.0]), dtype=tf.float64)
    h = tf.Variable(np.array([0.5], np.float16))
    space = FlatParamSpace([w, h], dtype="float32")
    assert space.dtype == tf.float32
    x = space.get()
    assert x.dtype == tf.float32
    np.testing.assert_array_equal(_np(x), np.float32([1.0, 3.0, 0.5]))
    space.assign(tf.constant([2.0, 4.0, 0.25], tf.float32))
    assert w.dtype == tf.float64 and _np(w).tolist() == [2.0, 4.0]
    assert _np(h).tolist() == [0.25]


def test_numpy_vectors_are_cast_to_the_working_dtype():
    v = tf.Variable(tf.zeros([3], tf.float32))
    space = FlatParamSpace([v])
    space.assign(np.array([1.0, 2.0, 3.0]))  # float64 array into a float32 space
    np.testing.assert_array_equal(_np(v), [1.0, 2.0, 3.0])
    space.assign(np.array([1.0, 2.0, 4.0], ml_dtypes.bfloat16))
    np.testing.assert_array_equal(_np(v), [1.0, 2.0, 4.0])


# ---------------------------------------------------------------------------- gradients


def test_indexed_slices_with_duplicate_indices_sum_like_np_add_at(rng):
    emb = keras.layers.Embedding(6, 3, dtype="float64")
    dense = keras.layers.Dense(2, dtype="float64")
    ids = np.array([1, 4, 1, 1, 0, 4])
    weights = rng.normal(size=(6, 3))
    _ = dense(emb(ids))
    space = FlatParamSpace(emb.trainable_variables + dense.trainable_variables)
    with tf.GradientTape() as tape:
        f = tf.reduce_sum(emb(ids) * weights) + tf.reduce_sum(dense.kernel)
    grads = tape.gradient(f, space.tf_variables)
    assert isinstance(grads[0], tf.IndexedSlices)  # the path under test
    assert grads[2] is None  # the dense bias does not affect f

    truth = np.zeros((6, 3))
    np.add.at(truth, ids, weights)  # d f / d table[i] = sum of weight rows using i
    g = _np(space.pack(grads, allow_unused=True))
    np.testing.assert_allclose(g[:18], truth.ravel(), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(g[18:24], np.ones(6))
    np.testing.assert_array_equal(g[24:], np.zeros(2))


def test_hand_built_indexed_slices():
    v = tf.Variable(tf.zeros([4, 2], tf.float32))
    space = FlatParamSpace([v])
    values = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    slices = tf.IndexedSlices(values, tf.constant([2, 0, 2]), tf.constant([4, 2]))
    truth = np.zeros((4, 2), np.float32)
    np.add.at(truth, [2, 0, 2], _np(values))
    np.testing.assert_array_equal(_np(space.pack([slices])), truth.ravel())


def test_none_gradient_names_the_variable_or_becomes_zeros():
    a = tf.Variable([1.0, 2.0], name="alpha")
    b = tf.Variable([3.0], name="beta")
    space = FlatParamSpace([a, b])
    with pytest.raises(ValueError, match="beta"):
        space.pack([tf.ones([2]), None])
    np.testing.assert_array_equal(_np(space.pack([tf.ones([2]), None], allow_unused=True)),
                                  [1.0, 1.0, 0.0])


def test_pack_rejects_wrong_count_and_shape():
    a = tf.Variable(tf.zeros([2, 3]), name="alpha")
    space = FlatParamSpace([a])
    with pytest.raises(ValueError, match="expected 1 tensors"):
        space.pack([tf.zeros([6]), tf.zeros([1])])
    with pytest.raises(ValueError, match="alpha"):
        space.pack([tf.zeros([5])])


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64, tf.bool])
def test_non_float_variables_are_rejected(dtype):
    good = tf.Variable([1.0])
    bad = tf.Variable(tf.zeros([2], dtype), name="counter")
    with pytest.raises(TypeError, match="counter"):
        FlatParamSpace([good, bad])


@pytest.mark.parametrize(
    "arg, error, match",
    [
        ("not variables", TypeError, "model_or_variables"),
        (3.0, TypeError, "model_or_variables"),
        ([tf.constant([1.0])], TypeError, "tf.Variable"),
        ([], ValueError, "no trainable variables"),
    ],
)
def test_bad_variable_lists_are_rejected(arg, error, match):
    with pytest.raises(error, match=match):
        FlatParamSpace(arg)


def test_integer_dtype_override_is_rejected():
    with pytest.raises(TypeError, match="dtype"):
        FlatParamSpace([tf.Variable([1.0])], dtype=tf.int32)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (tf.zeros([4], tf.float64), ValueError, "length 5"),
        (tf.zeros([6], tf.float64), ValueError, "length 5"),
        (tf.zeros([5, 1], tf.float64), ValueError, "1-D"),
        (tf.zeros([], tf.float64), ValueError, "1-D"),
        (tf.zeros([5], tf.float32), TypeError, "float64"),
        (tf.zeros([5], tf.int64), TypeError, "floating"),
        (np.zeros(5, np.int64), TypeError, "floating"),
        (np.zeros(4), ValueError, "length 5"),
        ([1.0, 2.0], ValueError, "length 5"),
    ],
)
def test_bad_vectors_are_rejected_before_any_write(x, error, match, unchanged):
    a = tf.Variable(np.arange(3.0), name="a")
    b = tf.Variable(np.arange(2.0, dtype=np.float32), name="b")
    space = FlatParamSpace([a, b])
    with unchanged([a, b]):
        with pytest.raises(error, match=f"x: .*{match}"):
            space.assign(x)
        with pytest.raises(error, match=match):
            space.unpack(x)


def test_bad_vector_inside_tf_function_fails_at_trace_time(unchanged):
    a = tf.Variable(np.arange(3.0), name="a")
    space = FlatParamSpace([a])

    @tf.function
    def write(x):
        space.assign(x)

    with unchanged([a]):
        with pytest.raises(ValueError, match="length 3"):
            write(tf.zeros([4], tf.float64))


# ---------------------------------------------------------------------------- graph modes


def test_tf_function_traces_once_for_repeated_calls(make_mlp):
    model = make_mlp(3, 2, dtype="float32")
    space = FlatParamSpace(model)
    traces = []

    @tf.function
    def roundtrip(x):
        traces.append(1)
        space.assign(x * 2.0)
        return space.get(), space.unpack(x)[0]

    x0 = _np(space.get())
    for k in range(1, 4):
        x = tf.constant(x0 * k)
        got, first = roundtrip(x)
        np.testing.assert_array_equal(_np(got), x0 * k * 2.0)
        np.testing.assert_array_equal(_np(first), (x0 * k)[:9].reshape(3, 3))
    assert len(traces) == 1
    assert roundtrip.experimental_get_tracing_count() == 1


def test_xla_pack_unpack_assign(make_mlp):
    model = make_mlp(3, 2)  # float64: XLA's float32 tanh differs from TF's in the 5th digit
    space = FlatParamSpace(model)
    x0 = _np(space.get())

    @tf.function(jit_compile=True)
    def step(x):
        space.assign(x + 1.0)
        with tf.GradientTape() as tape:
            f = tf.reduce_sum(model(tf.ones([4, 3])))
        g = space.pack(tape.gradient(f, space.tf_variables))
        return space.get(), space.pack(space.unpack(x)), g

    got, round_trip, g = step(tf.constant(x0))
    np.testing.assert_array_equal(_np(got), x0 + 1.0)
    np.testing.assert_array_equal(_np(round_trip), x0)
    with tf.GradientTape() as tape:  # eager reference gradient at the same point
        f = tf.reduce_sum(model(tf.ones([4, 3])))
    want = np.concatenate([_np(t).ravel() for t in tape.gradient(f, space.tf_variables)])
    np.testing.assert_allclose(_np(g), want, rtol=1e-12)
