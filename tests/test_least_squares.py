"""Residual objectives, Gauss-Newton products and the least-squares methods: products against
dense Jacobians and finite differences, lm against MINPACK (scipy.optimize.least_squares) on
the MGH problems, and the Keras-model path."""

from __future__ import annotations

import statistics

import keras
import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf
from problems import PROBLEMS, solved

import flatvec
from flatvec import Status

F64 = tf.float64


def _exp_fit():
    t = tf.linspace(tf.constant(0.0, F64), 2.0, 15)
    y = 3.0 * tf.exp(-0.7 * t) + 0.2 * tf.sin(3.0 * t)
    return lambda p: p[0] * tf.exp(-p[1] * t) + p[2] * tf.sin(p[3] * t) - y


def test_residual_products_match_the_dense_jacobian_and_finite_differences():
    fun = _exp_fit()
    obj = flatvec.Objective.from_residuals(fun, size=4)
    rng = np.random.default_rng(0)
    x = tf.constant([2.0, 0.5, 0.1, 2.5], F64)
    v, u = tf.constant(rng.normal(size=4)), tf.constant(rng.normal(size=15))
    jac = tf.function(obj.jacobian)(x).numpy()
    # Central differences of r: an independent truth for J.
    h = 1e-6
    fd = np.stack([(fun(x + h * e) - fun(x - h * e)).numpy() / (2 * h) for e in np.eye(4)], 1)
    np.testing.assert_allclose(jac, fd, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(tf.function(obj.jvp)(x, v).numpy(), jac @ v.numpy(), rtol=1e-12)
    np.testing.assert_allclose(tf.function(obj.vjp)(x, u).numpy(), jac.T @ u.numpy(), rtol=1e-12)
    np.testing.assert_allclose(obj.gauss_newton_product(x, v).numpy(),
                               jac.T @ (jac @ v.numpy()), rtol=1e-12)
    f, g = obj.value_and_gradient(x)
    r = fun(x).numpy()
    assert float(f) == pytest.approx(0.5 * r @ r, rel=1e-14)
    np.testing.assert_allclose(g.numpy(), jac.T @ r, rtol=1e-12)
    assert (int(obj.nfev), int(obj.njev), int(obj.nhev)) == (1, 2, 3)


# ---------------------------------------------------------------------- GGN of a Keras model
def _classifier_data(n=23):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)), rng


def _net(outputs):
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((3,), dtype="float64"),
        keras.layers.Dense(4, "tanh", dtype="float64",
                           kernel_regularizer=keras.regularizers.L2(0.01)),
        keras.layers.Dense(outputs, dtype="float64"),
    ])


def _dense_ggn(model, x, y, loss):
    """J' H J + the L2 term's Hessian, from the full Jacobian of all outputs and the Hessian
    of the mean loss in output space (tape.jacobian: an independent dense computation)."""
    with tf.GradientTape() as tape:
        z = model(x)
    jac = tf.concat([tf.reshape(j, [tf.size(z), -1])
                     for j in tape.jacobian(z, model.trainable_variables)], axis=1)
    z_flat = tf.reshape(z, [-1])
    with tf.GradientTape() as outer:
        outer.watch(z_flat)
        with tf.GradientTape() as inner:
            inner.watch(z_flat)
            losses = loss(y, tf.reshape(z_flat, z.shape))
            mean = tf.reduce_sum(losses) / tf.cast(tf.size(losses), F64)
        gz = inner.gradient(mean, z_flat)
    h = outer.jacobian(gz, z_flat)
    ggn = (tf.transpose(jac) @ h @ jac).numpy()
    reg = np.zeros(ggn.shape[0])
    reg[:12] = 2 * float(np.float32(0.01))  # Keras keeps the factor in float32
    return ggn + np.diag(reg)


@pytest.mark.parametrize("kind", ["mse", "cross-entropy"])
def test_ggn_matches_the_dense_product_and_does_not_depend_on_batching(kind):
    x, rng = _classifier_data()
    if kind == "mse":
        model, y = _net(2), rng.normal(size=(23, 2))
        loss = keras.losses.MeanSquaredError(dtype="float64")
    else:
        model, y = _net(3), rng.integers(0, 3, 23)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    dense = _dense_ggn(model, x, y, loss.call)
    np.testing.assert_allclose(dense, dense.T, atol=1e-14)
    assert np.linalg.eigvalsh(dense).min() > -1e-12  # PSD, as a GGN of a convex loss is
    w = flatvec.FlatParamSpace(model).get()
    v = tf.constant(rng.normal(size=dense.shape[0]))
    for batch_size in (None, 5):
        obj = flatvec.Objective.from_model(model, (x, y), loss, batch_size=batch_size)
        got = obj.gauss_newton_product(w, v).numpy()
        np.testing.assert_allclose(got, dense @ v.numpy(), rtol=1e-10, atol=1e-13)
        assert int(obj.nhev) == 1 and int(obj.nfev) == 0


@pytest.mark.parametrize("kind", ["mse", "cross-entropy", "weighted"])
def test_the_dense_ggn_matrix_matches_the_dense_reference_on_any_batching(kind):
    x, rng = _classifier_data()
    weights = None
    if kind == "cross-entropy":
        model, y = _net(3), rng.integers(0, 3, 23)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    else:
        model, y = _net(2), rng.normal(size=(23, 2))
        loss = keras.losses.MeanSquaredError(dtype="float64")
    if kind == "weighted":  # sample weights scale each sample's share (mean over N elements)
        weights = rng.uniform(0.5, 2.0, 23)
        scaled = lambda yt, yp: loss.call(yt, yp) * weights  # noqa: E731
        dense = _dense_ggn(model, x, y, scaled)
    else:
        dense = _dense_ggn(model, x, y, loss.call)
    space = flatvec.FlatParamSpace(model)
    w = space.get()
    data = (x, y) if weights is None else (x, y, weights)
    for batch_size in (None, 5):
        obj = flatvec.Objective.from_model(model, data, loss, batch_size=batch_size)
        f, g = obj.value_and_gradient(w)
        system = obj.gauss_newton_matrix(w)
        np.testing.assert_allclose(system.matrix.numpy(), dense, rtol=1e-10, atol=1e-13)
        assert float(system.value) == pytest.approx(float(f), rel=1e-13)
        np.testing.assert_allclose(system.gradient.numpy(), g.numpy(), rtol=1e-10, atol=1e-14)
        assert (int(obj.njev), int(obj.nfev), int(obj.nhev)) == (2, 1, 0)
    assert obj.ggn_rows(w) == 5 * (3 if kind == "cross-entropy" else 2)


def test_the_dense_residual_system_is_j_transpose_j_in_either_mode():
    fun = _exp_fit()  # m = 15 >= n = 4: forward mode
    wide = lambda p: fun(p)[:3]  # noqa: E731 - m = 3 < n = 4: reverse mode
    x = tf.constant([2.0, 0.5, 0.1, 2.5], F64)
    h = 1e-6
    for f in (fun, wide):
        obj = flatvec.Objective.from_residuals(f, size=4)
        fd = np.stack([(f(x + h * e) - f(x - h * e)).numpy() / (2 * h) for e in np.eye(4)], 1)
        r = f(x).numpy()
        value, grad, matrix = obj.gauss_newton_matrix(x)
        np.testing.assert_allclose(matrix.numpy(), fd.T @ fd, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(grad.numpy(), fd.T @ r, rtol=1e-7, atol=1e-9)
        assert float(value) == pytest.approx(0.5 * r @ r, rel=1e-14)
        assert obj.ggn_rows(x) == len(r) and int(obj.njev) == 1 and int(obj.nfev) == 0


def test_a_residual_function_xla_cannot_lower_still_gets_its_matrix():
    fun = _exp_fit()

    def through_numpy(p):  # a NumPy call XLA cannot compile: the matrix is formed without XLA
        two = tf.reshape(tf.numpy_function(lambda: np.array(2.0), [], F64), [])
        return fun(p) * (two - 1.0)

    obj = flatvec.Objective.from_residuals(through_numpy, size=4)
    x = tf.constant([2.0, 0.5, 0.1, 2.5], F64)
    _, _, matrix = obj.gauss_newton_matrix(x)
    h = 1e-6  # central differences of the residuals: an independent J
    fd = np.stack([(fun(x + h * e) - fun(x - h * e)).numpy() / (2 * h) for e in np.eye(4)], 1)
    np.testing.assert_allclose(matrix.numpy(), fd.T @ fd, rtol=1e-7, atol=1e-9)
    assert not obj.uses_xla("ggn_matrix_body")
    res = flatvec.minimize(obj, x, "lm", gtol=1e-10)
    assert res.success and bool(res.state.dense)


def test_a_function_objective_has_no_gauss_newton_product():
    obj = flatvec.Objective.from_function(lambda x: tf.reduce_sum(x**4))
    with pytest.raises(TypeError, match="ggn_vp: needs a model objective"):
        obj.gauss_newton_product(tf.ones([2], F64), tf.ones([2], F64))
    # minimize takes a function for lm as residuals: a scalar loss is refused as such.
    with pytest.raises(ValueError, match="returned a scalar"):
        flatvec.minimize(lambda x: tf.reduce_sum(x**4), tf.ones([2], F64), "lm", solver="dense")
    with pytest.raises(TypeError, match="needs a residual or model objective"):
        flatvec.minimize(obj, tf.ones([2], F64), "lm", solver="dense")


# ---------------------------------------------------------------------- methods
def _minpack(problem):
    """MINPACK's lmder through SciPy, residuals and Jacobian from the same TF function."""
    residuals = tf.function(problem.residuals)

    @tf.function
    def jacobian(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            r = problem.residuals(x)
        return tape.jacobian(r, x)

    return scipy.optimize.least_squares(
        lambda x: residuals(tf.constant(x)).numpy(), problem.x0,
        jac=lambda x: jacobian(tf.constant(x)).numpy(), method="lm")


# Every third MGH problem (each run traces a loop of its own); the whole family's numbers are
# in algorithms/levenberg_marquardt.py.
MGH = [name for name, p in PROBLEMS.items() if p.residuals is not None and p.n <= 100][::3]


def test_lm_against_minpack_on_the_mgh_problems():
    ours, refs = {}, {}
    for name in MGH:
        problem = PROBLEMS[name]
        obj = flatvec.Objective.from_residuals(problem.residuals, size=problem.n)
        res = flatvec.minimize(obj, tf.constant(problem.x0), "lm", gtol=5e-7, max_iter=2000,
                               steps_per_call=20)
        assert bool(res.state.dense)  # chosen automatically at these sizes
        ref = _minpack(problem)
        # problems.py's f is sum(r^2); the residual objective's is sum(r^2) / 2.
        ours[name] = (solved(problem, 2 * res.fun), res.nfev + res.njev)
        refs[name] = (solved(problem, 2 * ref.cost), ref.nfev + ref.njev)
        assert not (res.success and np.max(np.abs(res.jac)) > 5e-7), name
    assert sum(s for s, _ in ours.values()) >= sum(s for s, _ in refs.values())
    both = [n for n in MGH if ours[n][0] and refs[n][0]]
    assert statistics.median(ours[n][1] / refs[n][1] for n in both) <= 1.0


def test_lm_paths_and_gauss_newton_agree_on_a_curve_fit():
    fun = _exp_fit()
    obj = flatvec.Objective.from_residuals(fun, size=4)
    x0 = tf.constant([2.5, 0.5, 0.1, 2.8], F64)  # in the basin of the zero-residual fit
    ref = scipy.optimize.least_squares(lambda p: fun(tf.constant(p)).numpy(), x0.numpy(),
                                       method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    for algo, options, dense in (("lm", {}, True), ("lm", {"solver": "cg"}, False),
                                 ("gauss-newton", {}, None),
                                 ("newton-cg", {"curvature": "ggn"}, None)):
        res = flatvec.minimize(obj, x0, algo, gtol=1e-10, max_iter=500, **options)
        assert res.success, (algo, options, res.message)
        np.testing.assert_allclose(ref.x, [3.0, 0.7, 0.2, 3.0], rtol=1e-9)
        np.testing.assert_allclose(res.x, ref.x, rtol=1e-9)
        if dense is not None:
            assert bool(res.state.dense) is dense
        if algo != "lm" or not dense:
            assert res.nhev > 0


@pytest.mark.parametrize("solver", ["cg", "auto"])
def test_lm_fits_the_sinc_network(solver):
    # The Keras LM package's example: 1 -> 20 -> 1 tanh MLP, y = sinc(x) on [-1, 1].
    x = np.linspace(-1.0, 1.0, 200)[:, None]
    y = np.sinc(x)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,), dtype="float64"),
                              keras.layers.Dense(20, "tanh", dtype="float64"),
                              keras.layers.Dense(1, dtype="float64")])
    seen = []
    res = flatvec.minimize(model, (x, y), "lm", loss="mse", max_iter=400, gtol=0.0,
                           solver=solver, callbacks=[lambda r: seen.append((r.fun, r.x.copy()))])
    # "auto": 61 parameters x 200 outputs is small: the dense Gauss-Newton matrix, no products
    dense = solver == "auto"
    assert bool(res.state.dense) == dense and (res.nhev == 0) == dense
    assert res.fun <= 1e-8, res.fun
    pred = model(x).numpy()
    assert float(np.mean((pred - y) ** 2)) == pytest.approx(res.fun, rel=1e-9)
    # A rejected iteration moves nothing: the model is at the best point bit for bit.
    rejected = [i for i in range(1, len(seen)) if res.history["step_size"][i + 1] == 0.0]
    assert rejected, "no rejected step to check"
    for i in rejected:
        assert seen[i][1].tobytes() == seen[i - 1][1].tobytes()


def test_lm_bad_options_name_the_option():
    with pytest.raises(ValueError, match="solver"):
        flatvec.minimize(_exp_fit(), tf.ones([4], F64), "lm", solver="qr")
    with pytest.raises(ValueError, match="tau"):
        flatvec.get_algorithm("lm", tau=0.0)
    obj = flatvec.Objective.from_residuals(_exp_fit(), size=4)
    res = flatvec.minimize(obj, tf.ones([4], F64), "lm", max_iter=0)
    assert res.reason is Status.MAX_ITER and res.nit == 0


def test_the_least_squares_guide_example():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "least_squares.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    namespace: dict = {}
    exec(compile(block, "least_squares.md", "exec"), namespace)
    res = namespace["res"]
    assert res.success and bool(res.state.dense)
    np.testing.assert_allclose(res.x, [3.0, 0.7], rtol=1e-10)  # the exact, zero-residual fit
