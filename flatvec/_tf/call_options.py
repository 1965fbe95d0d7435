"""Lighter graph optimization for flatvec's own compiled iterations.

TensorFlow optimizes a function's graph (Grappler) when the function is first called, and again
after every ``tf.random.set_seed`` (which ``keras.utils.set_random_seed`` calls: it clears the
eager context's caches, compiled functions included). Most scripts reseed before building each
model, so each run pays that set-up again.

The iteration's graph holds the algorithm's logic (hundreds of scalar nodes, while loops,
conditionals) and calls the objective's compiled functions (``flatvec.oracle.CompiledCalls``).
Grappler optimizes the functions a graph calls with that graph's configuration, so the lean
configuration is the objective's too. It runs one round and skips the passes that rewrite
structure (layout, memory, loop-invariant, control-dependency, shape, implementation
selection, host pinning, scoped allocators) and function inlining (the objective stays a called
function). It keeps pruning, constant folding, arithmetic rewriting, common-subexpression
elimination and the remapper's fused kernels, which pay at run time or set rounding:

- without constant folding and the remapper, the objective's ``x ** 2`` stayed a ``Pow``: on
  Rosenbrock n = 100 000 three of them took 0.31 s of a 0.57 s L-BFGS run (0.32-0.36 s with
  them);
- with the optimizer off entirely the scalar logic rounds differently enough that CG on the
  50-dimensional quadratic took 571 evaluations against SciPy's 524 (484 with it) and L-BFGS on
  the 100-dimensional Rosenbrock 50 against 48.

Measured, digits MLP f32, L-BFGS to convergence (40 iterations), reseeded fresh models, medians
interleaved with the SciPy bridge: 0.536 s against 0.487 s (0.450 s with the optimizer off,
which the two points above rule out); TensorFlow's default configuration (off with the switch
below) costs about 0.1 s more per reseeded call on this model.

The configuration travels as the ``config_proto`` attribute of the call (TensorFlow's
``FunctionCallOptions``, the one place it can be given per call), set only around flatvec's own
calls; a user's functions and ``model.fit`` keep TensorFlow's default. :func:`enabled` is the
switch: off with ``FLATVEC_LEAN_GRAPHS=0`` or with every private contact
(:func:`flatvec._tf.enabled`), where the calls run with TensorFlow's defaults.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from flatvec import _tf

__all__ = ["enabled", "lean_calls"]

# Passes skipped (RewriterConfig toggles).
_SKIPPED = (
    "layout_optimizer", "memory_optimization", "loop_optimization", "dependency_optimization",
    "shape_optimization", "implementation_selector", "pin_to_host_optimization",
    "scoped_allocator_optimization", "function_optimization",
)

_lean: dict[bytes, object] = {}  # the default call options' config -> lean call options


def enabled() -> bool:
    """Whether flatvec's calls use the lean configuration."""
    return os.environ.get("FLATVEC_LEAN_GRAPHS", "1") != "0" and _tf.enabled()


def _lean_options(default: object) -> object:
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.eager import context

    key = default.config_proto_serialized
    if key not in _lean:
        config = config_pb2.ConfigProto()
        config.ParseFromString(key)
        rewrite = config.graph_options.rewrite_options
        rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
        for name in _SKIPPED:
            if name == "memory_optimization":
                rewrite.memory_optimization = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
            else:
                setattr(rewrite, name, rewriter_config_pb2.RewriterConfig.OFF)
        _lean[key] = context.FunctionCallOptions(executor_type=default.executor_type,
                                                 config_proto=config)
    return _lean[key]


@contextlib.contextmanager
def lean_calls(active: bool = True) -> Iterator[None]:
    """Within the block, the functions this thread calls run lean (each configuration
    has its own cached instance of a function; a no-op when :func:`enabled` is false or
    ``active`` is: a loop with the objective inlined, under a strategy, keeps the default)."""
    if not (active and enabled()):
        yield
        return
    from tensorflow.python.eager import context

    ctx = context.context()
    default = ctx.function_call_options
    ctx.function_call_options = _lean_options(default)
    try:
        yield
    finally:
        ctx.function_call_options = default
