"""A loop shares an earlier loop's compiled functions exactly when its objective traces to the
same graph, and a shared run is the run it would have been on its own (bit for bit)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import flatvec
from flatvec import driver
from flatvec._run import tiers
from flatvec._tf import graph_reuse
from flatvec.protocol import Algorithm

# Graph sharing is a private contact (flatvec/_tf/graph_reuse.py).
pytestmark = pytest.mark.private_tf


@pytest.fixture(autouse=True)
def no_templates(monkeypatch):
    # Sharing concerns compiled loops: short runs here stay compiled (see flatvec._run.tiers).
    monkeypatch.setattr(tiers, "ENABLED", False)
    graph_reuse.clear()
    yield
    graph_reuse.clear()


@pytest.fixture
def loops(monkeypatch):
    """Every CompiledLoop the driver builds, in order."""
    built = []

    class Recorded(driver.CompiledLoop):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(driver, "CompiledLoop", Recorded)
    return built


def _traces(loop) -> int:
    """Graphs the loop traced: its iteration, and its start where that is not run eagerly
    (curvature methods), counted as one with the iteration; an eager start is never traced."""
    start, advance = loop.trace_counts
    if not loop.start_is_traced:
        assert start == 0
    else:
        assert start == advance  # traced together, or shared together
    return advance


def _unshared(monkeypatch, run, model=None):
    """``run()`` with sharing switched off: the independent truth. ``model``: one already
    optimized, whose cached objective (holding the shared loop) is dropped first, so that the
    run traces its own."""
    if model is not None:
        flatvec.clear_objective_cache(model)
    with monkeypatch.context() as patch:
        patch.setattr(graph_reuse, "find", lambda key: None)
        patch.setattr(graph_reuse, "keep", lambda key, template: None)
        return run()


def _data(rng, n=100):
    # Over 128 elements each: captured by reference, not folded into the graph as constants.
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 2))


def _fit(model, data, **kwargs):
    kwargs.setdefault("max_iter", 25)
    return flatvec.minimize(model, data, loss="mse", **kwargs)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_fresh_model_of_the_same_architecture_traces_no_loop(
        make_mlp, rng, loops, monkeypatch, jit_compile):
    data = _data(rng)
    _fit(make_mlp(3, 2, seed=1), data, jit_compile=jit_compile)
    model = make_mlp(3, 2, seed=2)  # other layer names, other weights
    weights = model.get_weights()
    shared = _fit(model, data, jit_compile=jit_compile)
    assert _traces(loops[0]) == 1 and _traces(loops[1]) == 0
    model.set_weights(weights)
    alone = _unshared(monkeypatch, lambda: _fit(model, data, jit_compile=jit_compile), model)
    assert len(loops) == 3 and _traces(loops[2]) == 1  # traced on its own
    assert (shared.nit, shared.nfev, shared.reason) == (alone.nit, alone.nfev, alone.reason)
    np.testing.assert_array_equal(shared.x, alone.x)
    # The model ends at the shared run's best point (its own variables were written).
    np.testing.assert_array_equal(
        np.concatenate([w.ravel() for w in model.get_weights()]), alone.x)


@pytest.mark.parametrize("algo, options", [
    ("lm", {}),  # the dense Gauss-Newton matrix (a nested, XLA-compiled function)
    ("lm", {"solver": "cg"}),  # Gauss-Newton products
    ("newton-cg", {}),  # Hessian-vector products
])
def test_curvature_methods_share_and_run_as_alone(make_mlp, rng, loops, monkeypatch, algo,
                                                  options):
    data = _data(rng)
    _fit(make_mlp(3, 2, seed=1), data, algo=algo, max_iter=8, **options)
    model = make_mlp(3, 2, seed=2)
    weights = model.get_weights()
    shared = _fit(model, data, algo=algo, max_iter=8, **options)
    assert _traces(loops[1]) == 0
    if algo == "lm":
        assert bool(shared.state.dense) == (options.get("solver") != "cg")
    model.set_weights(weights)
    alone = _unshared(monkeypatch, lambda: _fit(model, data, algo=algo, max_iter=8, **options),
                      model)
    assert len(loops) == 3 and _traces(loops[2]) == 1  # traced on its own
    assert (shared.nit, shared.nfev, shared.njev, shared.nhev) == \
        (alone.nit, alone.nfev, alone.njev, alone.nhev)
    # To rounding: the shared run calls the first run's (warm) product functions, the other
    # its own first calls, and Grappler's first calls of a function can differ in the last
    # bits from later ones (newton-cg differed by 1.6e-15 in one run of five).
    np.testing.assert_allclose(shared.x, alone.x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        np.concatenate([w.ravel() for w in model.get_weights()]), alone.x, rtol=1e-12,
        atol=1e-14)


def test_other_data_of_the_same_shape_is_the_new_runs_own(make_mlp, rng, loops, monkeypatch):
    first, second = _data(rng), _data(rng)
    _fit(make_mlp(3, 2), first)
    model = make_mlp(3, 2)
    shared = _fit(model, second)
    assert _traces(loops[1]) == 0
    alone = _unshared(monkeypatch, lambda: _fit(make_mlp(3, 2), second))
    np.testing.assert_array_equal(shared.x, alone.x)
    assert shared.fun == alone.fun


@pytest.mark.parametrize(
    "variant, shared",
    [
        ({"kernel_regularizer": keras.regularizers.L2(1e-3)}, True),  # the same graph
        ({"hidden": (4,), "kernel_regularizer": keras.regularizers.L2(1e-3)}, False),  # shapes
        ({}, False),  # fewer ops
        ({"kernel_regularizer": keras.regularizers.L2(2e-3)}, False),  # another constant
    ],
    ids=["same", "width", "ops", "constant"],
)
def test_only_the_same_graph_shares(make_mlp, rng, loops, variant, shared):
    data = _data(rng)
    _fit(make_mlp(3, 2, kernel_regularizer=keras.regularizers.L2(1e-3)), data)
    _fit(make_mlp(3, 2, seed=5, **variant), data)
    assert _traces(loops[1]) == (0 if shared else 1)


def test_functions_differing_only_in_captured_data_reach_their_own_minima(loops):
    # Tensors this large are captured by reference, not folded into the graph as constants:
    # the two objectives trace to one graph and the second loop runs the first one's
    # functions with its own target.
    targets = [tf.constant(np.linspace(-1.0, 1.0, 500) * k) for k in (1.0, 3.0)]
    results = []
    for target in targets:
        results.append(flatvec.minimize(
            lambda x, t=target: tf.reduce_sum((x - t) ** 2 + 0.1 * (x - t) ** 4),
            np.zeros(500), "lbfgs", gtol=1e-10))
    assert _traces(loops[1]) == 0
    for target, res in zip(targets, results):
        np.testing.assert_allclose(res.x, target.numpy(), atol=1e-8)


def test_an_algorithm_with_its_own_variables_is_never_shared(loops):
    from typing import NamedTuple

    class State(NamedTuple):
        x: tf.Tensor
        f: tf.Tensor
        g: tf.Tensor

    class CountingGD(Algorithm):
        def __init__(self) -> None:
            self.steps = tf.Variable(0, dtype=tf.int64)

        def init(self, x, f, g):
            return State(x, f, g)

        def step(self, state, oracle):
            self.steps.assign_add(1)
            x = state.x - 0.25 * state.g
            f, g = oracle(x)
            return State(x, f, g)

    algorithm = CountingGD()
    for start in (1.0, 2.0):
        flatvec.minimize(lambda x: tf.reduce_sum(x**2), np.full(3, start), algorithm,
                         max_iter=5, gtol=0.0, ftol=0.0)
    assert _traces(loops[0]) == 1 and _traces(loops[1]) == 1
    assert int(algorithm.steps.numpy()) == 10


def test_fingerprint_ignores_names_but_not_structure():
    def graph(fn):
        objective = flatvec.Objective.from_function(fn)
        return graph_reuse.trace_objective(objective, tf.zeros([4], tf.float64))

    a = graph(lambda x: tf.identity(tf.reduce_sum(tf.sin(x) * x), name="one"))
    b = graph(lambda x: tf.identity(tf.reduce_sum(tf.sin(x) * x), name="two"))
    c = graph(lambda x: tf.identity(tf.reduce_sum(tf.cos(x) * x), name="one"))
    d = graph(lambda x: tf.reduce_sum(tf.sin(x) * x))
    assert a.fingerprint == b.fingerprint  # names only
    assert a.fingerprint != c.fingerprint  # another op
    assert a.fingerprint != d.fingerprint  # one node fewer
