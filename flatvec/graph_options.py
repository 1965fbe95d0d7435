"""Lighter graph optimization for flatvec's own compiled iterations; the objective keeps it.

TensorFlow optimizes a function's graph (Grappler) when the function is first called, and again
after every ``tf.random.set_seed`` (which ``keras.utils.set_random_seed`` calls: it clears the
eager context's caches, compiled functions included). Most scripts reseed before building each
model, so each run pays that set-up again.

The iteration's graph holds the algorithm's logic (hundreds of scalar nodes, while loops,
conditionals) and calls the objective's compiled functions (``flatvec.oracle.CompiledCalls``)
rather than inlining them; the call nodes carry the configuration they were traced with, so
the objective is set up with TensorFlow's default optimization (fused kernels pay at run time).
flatvec's own calls run one round of arithmetic rewriting, common-subexpression elimination
and pruning on that logic and skip the rest, function inlining included (it would pull the
objective back into the loop). The two kept passes change rounding: with the optimizer off
entirely, CG on the 50-dimensional quadratic took 571 evaluations against SciPy's 524 (484
with them) and L-BFGS on the 100-dimensional Rosenbrock 50 against 48, so they stay.

Measured, digits MLP f32, L-BFGS to convergence (40 iterations), reseeded fresh models, medians
of 4 interleaved with the SciPy bridge in one process: the objective inlined under the previous
configuration (one round, inlining, folding and the remapper kept) 0.548 s against 0.524 s;
the objective called, this configuration, 0.525 s against 0.483 s and 0.594 s against 0.591 s
in a second run (this machine's noise is of that order); the optimizer off, 0.450 s against
0.491 s. Cold first call 1.19 s -> 1.10 s.

The configuration travels as the ``config_proto`` attribute of the call (TensorFlow's
``FunctionCallOptions``, the one place it can be given per call), set only around flatvec's own
calls; a user's functions and ``model.fit`` keep TensorFlow's default. :func:`enabled` is the
switch: off with ``FLATVEC_LEAN_GRAPHS=0``, and off on TensorFlow/Keras versions outside the
tested ones (:mod:`flatvec.versions`), where the calls run with TensorFlow's defaults.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

from flatvec.versions import is_tested

__all__ = ["enabled", "lean_calls"]

# Passes skipped (RewriterConfig toggles). Function inlining is among them: it would inline the
# objective's called functions into the loop and optimize them as part of it.
_SKIPPED = (
    "layout_optimizer", "memory_optimization", "loop_optimization", "dependency_optimization",
    "shape_optimization", "implementation_selector", "pin_to_host_optimization",
    "scoped_allocator_optimization", "function_optimization", "remapping", "constant_folding",
)

_lean: dict[bytes, object] = {}  # the default call options' config -> lean call options


@functools.lru_cache(maxsize=1)
def _tested() -> bool:
    return is_tested()  # versions do not change in a process; parsing them costs 40 us a call


def enabled() -> bool:
    """Whether flatvec's calls use the lean configuration."""
    return os.environ.get("FLATVEC_LEAN_GRAPHS", "1") != "0" and _tested()


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
