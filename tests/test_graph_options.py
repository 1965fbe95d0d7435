"""The lean graph-optimization configuration of flatvec's own calls: it reaches the calls, stays
inside them, and changes a run by rounding only (same iterations and evaluations, the same
point to the last few bits) against TensorFlow's default."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from problems import PROBLEMS
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context

import flatvec
from flatvec._run.loop import CompiledLoop
from flatvec._run.stopping import StopRule
from flatvec._tf import call_options, graph_reuse

# The lean configuration is a private contact (flatvec/_tf/call_options.py).
pytestmark = pytest.mark.private_tf


def _rewrite_options() -> rewriter_config_pb2.RewriterConfig:
    config = config_pb2.ConfigProto()
    config.ParseFromString(context.context().function_call_options.config_proto_serialized)
    return config.graph_options.rewrite_options


def test_the_lean_configuration_holds_inside_the_block_only(monkeypatch):
    monkeypatch.setenv("FLATVEC_LEAN_GRAPHS", "1")
    before = context.context().function_call_options.config_proto_serialized
    with call_options.lean_calls():
        rewrite = _rewrite_options()
        assert rewrite.meta_optimizer_iterations == rewriter_config_pb2.RewriterConfig.ONE
        assert rewrite.layout_optimizer == rewriter_config_pb2.RewriterConfig.OFF
        # The passes that change rounding stay on (DEFAULT = on).
        assert rewrite.arithmetic_optimization != rewriter_config_pb2.RewriterConfig.OFF
        assert rewrite.common_subgraph_elimination != rewriter_config_pb2.RewriterConfig.OFF
    assert context.context().function_call_options.config_proto_serialized == before
    monkeypatch.setenv("FLATVEC_LEAN_GRAPHS", "0")
    with call_options.lean_calls():
        assert context.context().function_call_options.config_proto_serialized == before


def _sinc_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((1,), dtype="float64"),
                             keras.layers.Dense(8, "tanh", dtype="float64"),
                             keras.layers.Dense(1, dtype="float64")])


def _runs():
    x = np.linspace(-1.0, 1.0, 200)[:, None]
    quadratic = PROBLEMS["quadratic_50"]
    rosen = PROBLEMS["extended_rosenbrock_100"]
    return {
        "cg-quadratic": lambda: flatvec.minimize(quadratic.fun, tf.constant(quadratic.x0), "cg",
                                                 gtol=1e-6, ftol=0.0, max_iter=10000),
        "lbfgs-rosenbrock": lambda: flatvec.minimize(rosen.fun, tf.constant(rosen.x0), "lbfgs",
                                                     gtol=1e-6, max_iter=10000),
        "lm-sinc": lambda: flatvec.minimize(_sinc_model(), (x, np.sinc(x)), "lm", loss="mse",
                                            max_iter=30, gtol=0.0),
        "newton-cg-sinc": lambda: flatvec.minimize(_sinc_model(), (x, np.sinc(x)), "newton-cg",
                                                   loss="mse", max_iter=10, gtol=0.0),
    }


@pytest.mark.parametrize("name", list(_runs()))
def test_a_lean_run_is_the_default_run_up_to_rounding(monkeypatch, name):
    run = _runs()[name]
    results = {}
    for lean in ("0", "1"):
        monkeypatch.setenv("FLATVEC_LEAN_GRAPHS", lean)
        graph_reuse.clear()
        tf.random.set_seed(0)  # clears TensorFlow's caches: each run instantiates its graphs
        results[lean] = run()
    default, lean = results["0"], results["1"]
    assert (lean.nit, lean.nfev, lean.njev, lean.nhev, lean.reason) == \
        (default.nit, default.nfev, default.njev, default.nhev, default.reason)
    np.testing.assert_allclose(lean.x, default.x, rtol=1e-12, atol=1e-14)
    assert lean.fun == pytest.approx(default.fun, rel=1e-12, abs=1e-15)


def _call_nodes(graph_def):
    for function in graph_def.library.function:
        for node in function.node_def:
            if node.op in ("PartitionedCall", "StatefulPartitionedCall"):
                yield node


def test_the_iteration_calls_the_objective_instead_of_inlining_it():
    x = np.linspace(-1.0, 1.0, 50)[:, None]
    model = _sinc_model()
    objective = flatvec.Objective.from_model(model, (x, np.sinc(x)), loss="mse")
    loop = CompiledLoop(flatvec.get_algorithm("lbfgs"), objective, jit_compile=False)
    loop.start(objective.space.get(), StopRule(1e-9, 0.0, 3, 0))
    loop.advance()
    calls = list(_call_nodes(loop.advance_function.get_concrete_function().graph.as_graph_def()))
    vg = objective.compiled("__call__").get_concrete_function(
        tf.TensorSpec([objective.space.size], tf.float64))
    assert [node.attr["f"].func.name for node in calls] == [vg.name.decode()]
