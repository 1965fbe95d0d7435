"""The benchmark's least-squares side: residual forms against the problems' own losses, the
peers' Jacobians against finite differences and the loss's gradient, and a short run of each
least-squares method through the runner."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks/` is a folder of the repository, not installed

from benchmarks import analysis, problems  # noqa: E402
from benchmarks.explicit_lm import ExplicitJtJ  # noqa: E402
from benchmarks.measure import Record, Trace  # noqa: E402
from benchmarks.peers import METHODS  # noqa: E402
from benchmarks.residual_forms import jacobian_fn  # noqa: E402

LSQ_PROBLEMS = ("rosenbrock-1k", "pinn-poisson-f64", "sinc-mlp-f64")


@pytest.fixture(scope="module")
def built() -> dict[str, problems.Instance]:
    return {name: problems.build(name) for name in LSQ_PROBLEMS}


def _points(inst: problems.Instance) -> list[tf.Tensor]:
    """The start and a point away from it (the scalings must hold everywhere, not at x0)."""
    rng = np.random.default_rng(1)
    x0 = inst.x0
    return [tf.constant(x0), tf.constant(x0 + 0.1 * rng.standard_normal(x0.size))]


@pytest.mark.parametrize("name", LSQ_PROBLEMS)
def test_half_squared_residuals_are_the_problems_loss(built, name: str) -> None:
    inst = built[name]
    form = inst.residuals
    assert (form.n, form.dtype) == (inst.size, tf.float64)
    loss = inst.objective()  # the problem's own loss (function, closure or Keras model + MSE)
    least_squares = form.objective()
    for x in _points(inst):
        f, g = loss.value_and_gradient(x)
        r = form(x).numpy()
        assert r.shape == (form.m,)
        assert 0.5 * float(r @ r) == pytest.approx(float(f), rel=1e-13)
        f_ls, g_ls = least_squares.value_and_gradient(x)
        assert float(f_ls) == pytest.approx(float(f), rel=1e-13)
        scale = np.max(np.abs(g.numpy()))
        np.testing.assert_allclose(g_ls.numpy(), g.numpy(), rtol=0, atol=1e-12 * scale)
    inst.reset()


def test_rosenbrock_residuals_closed_form(built) -> None:
    form = built["rosenbrock-1k"].residuals
    r = form(tf.constant(built["rosenbrock-1k"].x0)).numpy()
    # Each (-1.2, 1) pair: sqrt(2) (10 (1 - 1.44), 1 + 1.2) = sqrt(2) (-4.4, 2.2).
    expected = np.sqrt(2.0) * np.concatenate([np.full(500, -4.4), np.full(500, 2.2)])
    np.testing.assert_allclose(r, expected, rtol=1e-14)


def test_peer_jacobian_against_differences_and_gradient(built) -> None:
    # The PINN: the residuals hold second input derivatives (nested tapes) under the Jacobian.
    inst = built["pinn-poisson-f64"]
    form = inst.residuals
    x = _points(inst)[1]
    r, jac = tf.function(jacobian_fn(form))(x)
    r, jac = r.numpy(), jac.numpy()
    assert jac.shape == (form.m, form.n)
    # J v against central differences of r along random directions (an independent truth:
    # only residual values are used).
    rng = np.random.default_rng(2)
    h = 1e-5
    for _ in range(3):
        v = rng.standard_normal(form.n)
        v /= np.linalg.norm(v)
        diff = (form(x + h * v).numpy() - form(x - h * v).numpy()) / (2 * h)
        np.testing.assert_allclose(jac @ v, diff, rtol=0,
                                   atol=1e-6 * max(1.0, np.max(np.abs(diff))))
    # J'r is the gradient of the problem's own loss (1/2 |r|^2 equals it).
    _, g = inst.objective().value_and_gradient(x)
    g = g.numpy()
    np.testing.assert_allclose(jac.T @ r, g, rtol=0, atol=1e-11 * np.max(np.abs(g)))
    inst.reset()


def test_explicit_peer_accumulates_the_whole_normal_equations() -> None:
    import keras

    from benchmarks.residual_forms import keras_mse

    model = keras.Sequential([keras.Input((1,), dtype="float64"),
                              keras.layers.Dense(4, "tanh", dtype="float64"),
                              keras.layers.Dense(1, dtype="float64")])
    t = np.linspace(-1.0, 1.0, 250)[:, None]
    form = keras_mse(model, t, np.sinc(t))
    assert [len(p(tf.zeros(form.n, tf.float64))) for p in form.parts] == [100, 100, 50]
    x = tf.constant(np.random.default_rng(3).standard_normal(form.n))
    peer = ExplicitJtJ(form)
    assert not peer.underdetermined
    (a, _), g, f = peer._normal(x)
    jac = form.objective().jacobian(x).numpy()  # flatvec's Jacobian of all rows at once
    r = form(x).numpy()
    np.testing.assert_allclose(a.numpy(), jac.T @ jac, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g.numpy(), jac.T @ r, rtol=1e-12, atol=1e-16)
    assert float(f) == pytest.approx(0.5 * float(r @ r), rel=1e-13)


def test_explicit_peer_solves_rosenbrock() -> None:
    from benchmarks.residual_forms import rosenbrock

    out = ExplicitJtJ(rosenbrock(4)).run([-1.2, 1.0, -1.2, 1.0], max_iter=200, gtol=1e-10)
    assert out.message == "gtol"
    np.testing.assert_allclose(out.x, np.ones(4), atol=1e-9)
    assert out.trials >= out.accepted >= 1 and out.njev == out.accepted + 1
    assert out.nfev == len(out.trace.loss)


def test_explicit_peer_with_fewer_residuals_than_parameters() -> None:
    from benchmarks.residual_forms import ResidualForm

    def first(x: tf.Tensor) -> tf.Tensor:
        return tf.stack([x[0] ** 2 + x[1] - 1.0, x[2] * x[3] - 2.0])

    form = ResidualForm((first, lambda x: tf.sin(x[:1]) + x[3]), 3, 5, tf.float64)
    peer = ExplicitJtJ(form)
    assert peer.underdetermined
    x = tf.constant([0.3, -0.2, 1.1, 0.4, 2.0], tf.float64)
    system, _, _ = peer._normal(x)
    p, f_new = peer._trial(x, *system, tf.constant(0.5, tf.float64))
    # The m x m form must give the n x n Levenberg-Marquardt step (push-through identity).
    jac = form.objective().jacobian(x).numpy()
    r = form(x).numpy()
    expected = -np.linalg.solve(jac.T @ jac + 0.5 * np.eye(5), jac.T @ r)
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-12)
    r_new = form(x + p).numpy()
    assert float(f_new) == pytest.approx(0.5 * float(r_new @ r_new), rel=1e-14)
    out = peer.run(x.numpy(), max_iter=100, gtol=1e-12)
    assert out.message == "gtol" and out.loss < 1e-20


def test_least_squares_methods_skip_where_they_cannot_run(built) -> None:
    pinn, rosen = built["pinn-poisson-f64"], built["rosenbrock-1k"]
    assert "m >= n" in METHODS["scipy:lsq-lm"].applies(pinn)  # m = 130 < n = 1153
    assert METHODS["scipy:lsq-trf"].applies(pinn) is None
    assert "model objective" in METHODS["flatvec:lm-ggn"].applies(pinn)  # closure form
    assert METHODS["flatvec:lm"].applies(pinn) is None  # on its residual form
    assert METHODS["jtj:lm"].applies(rosen) is None
    logreg = problems.build("logreg-cancer")
    assert "residual form" in METHODS["jtj:lm"].applies(logreg)
    assert METHODS["flatvec:lm"].applies(logreg) is not None


@pytest.fixture
def tiny_rosenbrock(monkeypatch: pytest.MonkeyPatch) -> str:
    """A 4-parameter Rosenbrock registered as a benchmark problem (traces in a blink)."""
    spec = problems.ProblemSpec("rosenbrock-4", "extended Rosenbrock, n=4", "float64", 50,
                                1e-8, 1e-3)
    monkeypatch.setitem(problems.PROBLEMS, spec.name, spec)
    monkeypatch.setitem(problems._BUILDERS, spec.name,
                        lambda s, seed: problems._rosenbrock(s, 4, seed))
    return spec.name


def _check_runs(records: list[Record], names: list[str], max_iter: int) -> None:
    assert [r.method for r in records] == names
    start = {r.trace.loss[0] for r in records}
    assert max(start) == pytest.approx(min(start), rel=1e-12)  # the same f(x0) everywhere
    for r in records:
        assert r.error is None and r.skipped is None, (r.method, r.error, r.skipped)
        assert 1 <= r.nit <= max_iter and r.nfev >= r.nit and r.njev >= 1, r.method
        assert r.loss < r.trace.loss[0], r.method
        assert r.time_to_target is None or r.time_to_target <= r.wall


def test_each_least_squares_method_runs_through_the_runner(tiny_rosenbrock: str) -> None:
    from benchmarks.runner import run_grid

    names = ["flatvec:lm", "flatvec:gauss-newton", "scipy:lsq-lm", "scipy:lsq-trf", "jtj:lm"]
    records = run_grid([tiny_rosenbrock], names, repeats=0, quick=True, max_iter=50,
                       log=lambda _: None)
    _check_runs(records, names, 50)
    by = {r.method: r for r in records}
    for name in names:  # n = 4 from MGH's start: every Levenberg-Marquardt solves it
        assert by[name].loss < 1e-10, name  # from 48.4, gtol 1e-8
    for name in ("scipy:lsq-lm", "scipy:lsq-trf", "jtj:lm"):  # counted per evaluation
        assert by[name].nfev == by[name].trace.nfev[-1] == len(by[name].trace.loss), name


def test_lm_on_the_model_objective_runs_through_the_runner() -> None:
    from benchmarks.runner import run_grid

    records = run_grid(["sinc-mlp-f64"], ["flatvec:lm-ggn"], repeats=0, quick=True,
                       max_iter=3, log=lambda _: None)
    _check_runs(records, ["flatvec:lm-ggn"], 3)
    assert records[0].nhev > 0  # matrix-free: Gauss-Newton products, no Jacobian


def test_fixed_target_replaces_the_derived_one() -> None:
    trace = Trace([1, 2, 3], [0.0, 0.1, 0.2], [1.0, 1e-5, 1e-7])
    r = Record("p", "a", "float64", 2, 10, nit=2, nfev=3, loss=1e-7, wall=0.3, t_eval=0.1,
               trace=trace)
    analysis.derive([r], {"p": 1e-6})
    assert r.target == 1e-6 and (r.time_to_target, r.evals_to_target) == (0.2, 3)
    analysis.derive([r], {})
    assert r.target == pytest.approx(1e-7 + 1e-8 * (1.0 - 1e-7))  # the 1e-8 floor rule
