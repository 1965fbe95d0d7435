"""Least squares from closures: weighted residual groups against closed forms (a linear
model's normal equations) and SciPy's ``least_squares`` on a nonlinear fit, and bad input
refused with the variables untouched."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

import flatvec

F64 = tf.float64
RNG = np.random.default_rng(7)
A1, A2 = RNG.normal(size=(12, 4)), RNG.normal(size=(5, 4))
B1, B2 = RNG.normal(size=12), RNG.normal(size=5)
W = (0.5, 3.0)


def _linear_groups(w):
    return lambda: [tf.linalg.matvec(A1, w) - B1, tf.linalg.matvec(A2, w) - B2]


def test_gauss_newton_products_and_matrix_are_the_weighted_normal_equations():
    w = tf.Variable(np.zeros(4), dtype=F64)
    objective = flatvec.Objective.from_residual_closure(_linear_groups(w), [w], weights=W)
    x, v = RNG.normal(size=4), RNG.normal(size=4)
    gram = W[0] * A1.T @ A1 + W[1] * A2.T @ A2
    gradient = W[0] * A1.T @ (A1 @ x - B1) + W[1] * A2.T @ (A2 @ x - B2)
    value = 0.5 * (W[0] * np.sum((A1 @ x - B1) ** 2) + W[1] * np.sum((A2 @ x - B2) ** 2))
    f, g, matrix = objective.gauss_newton_matrix(tf.constant(x))
    np.testing.assert_allclose(float(f), value, rtol=1e-12)
    np.testing.assert_allclose(g.numpy(), gradient, rtol=1e-10)
    np.testing.assert_allclose(matrix.numpy(), gram, rtol=1e-10)
    np.testing.assert_allclose(objective.gauss_newton_product(tf.constant(x), tf.constant(v)),
                               gram @ v, rtol=1e-10)
    np.testing.assert_allclose(
        objective.hessian_vector_product(tf.constant(x), tf.constant(v)), gram @ v, rtol=1e-10)


@pytest.mark.parametrize("algo, options", [("lm", {}), ("lm", {"solver": "cg"}),
                                           ("gauss-newton", {})])
def test_least_squares_methods_solve_a_weighted_linear_problem(algo, options):
    w = tf.Variable(np.zeros(4), dtype=F64)
    res = flatvec.minimize(_linear_groups(w), [w], algo, residual_weights=list(W), gtol=1e-10,
                           **options)
    design = np.vstack([np.sqrt(W[0]) * A1, np.sqrt(W[1]) * A2])
    target = np.concatenate([np.sqrt(W[0]) * B1, np.sqrt(W[1]) * B2])
    exact = np.linalg.lstsq(design, target, rcond=None)[0]
    assert res.success, res.message
    np.testing.assert_allclose(res.x, exact, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(w.numpy(), res.x)  # written back


def test_mean_weights_make_the_loss_a_sum_of_mean_squared_errors():
    w = tf.Variable(np.ones(4), dtype=F64)
    objective = flatvec.Objective.from_residual_closure(_linear_groups(w), [w], weights="mean")
    f = float(objective.value_and_gradient(tf.constant(np.ones(4)))[0])
    x = np.ones(4)
    assert f == pytest.approx(np.mean((A1 @ x - B1) ** 2) + np.mean((A2 @ x - B2) ** 2),
                              rel=1e-12)


def test_lm_on_a_compiled_nonlinear_residual_closure_matches_scipy_least_squares():
    t = np.linspace(0.0, 3.0, 30)
    y = 2.5 * np.exp(-1.3 * t) + 0.5 + 0.01 * RNG.normal(size=t.size)
    params = tf.Variable([1.0, -0.5, 0.0], dtype=F64)

    @tf.function  # as GPflow's compiled closures are
    def residual_fn():
        return params[0] * tf.exp(params[1] * t) + params[2] - y

    ref = scipy.optimize.least_squares(
        lambda p: p[0] * np.exp(p[1] * t) + p[2] - y, [1.0, -0.5, 0.0], method="lm",
        xtol=1e-15, ftol=1e-15, gtol=1e-15)
    res = flatvec.minimize(residual_fn, [params], "lm", gtol=1e-12)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-7)
    assert res.fun == pytest.approx(ref.cost, rel=1e-9)  # both are half the squared norm


def test_the_residual_form_can_run_any_method():
    w = tf.Variable(np.zeros(4), dtype=F64)
    res = flatvec.minimize(_linear_groups(w), [w], "lbfgs", residuals=True, gtol=1e-9)
    design = np.vstack([A1, A2])
    exact = np.linalg.lstsq(design, np.concatenate([B1, B2]), rcond=None)[0]
    np.testing.assert_allclose(res.x, exact, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("closure, options, error, match", [
    (lambda w: (lambda: tf.reduce_sum(w**2)), {}, ValueError, "returned a scalar"),
    (lambda w: (lambda: [w - 1.0, 2.0 * w]), {"residual_weights": [1.0]}, ValueError,
     "2 residual groups"),
    (lambda w: (lambda: [w - 1.0]), {"residual_weights": [-1.0]}, ValueError,
     "residual_weights"),
    (lambda w: (lambda: [w - 1.0]), {"residual_weights": "sum"}, TypeError,
     "residual_weights"),
    (lambda w: (lambda: "r"), {}, TypeError, "residual_fn"),
    (lambda w: (lambda: [w - 1.0]), {"maxiter": 3}, TypeError, "max_iter"),
])
def test_bad_residual_closures_are_refused_with_the_variables_untouched(
        closure, options, error, match, unchanged):
    w = tf.Variable([0.5, 2.0], dtype=F64)
    with unchanged([w]), pytest.raises(error, match=match):
        flatvec.minimize(closure(w), [w], "lm", **options)


def test_a_variable_the_residuals_do_not_read_is_named(unchanged):
    w, unused = tf.Variable([0.5, 2.0], dtype=F64), tf.Variable([1.0], dtype=F64)
    with unchanged([w, unused]), pytest.raises(ValueError, match="allow_unused"):
        flatvec.minimize(lambda: w - 1.0, [w, unused], "lm")
    res = flatvec.minimize(lambda: w - 1.0, [w, unused], "lm", allow_unused=True)
    np.testing.assert_allclose(res.x, [1.0, 1.0, 1.0])
