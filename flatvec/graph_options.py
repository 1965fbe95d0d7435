"""Lighter graph optimization for flatvec's own compiled iterations.

TensorFlow optimizes a function's graph (Grappler) when the function is first called, and again
after every ``tf.random.set_seed`` (which ``keras.utils.set_random_seed`` calls: it clears the
eager context's caches, compiled functions included). Most scripts reseed before building each
model, so each run pays that set-up again: for the sinc fit's Levenberg-Marquardt iteration
(about 900 nodes of scalar logic, while loops and the objective inlined) two rounds of the full
optimizer took 0.32 s of a 0.44 s first call, and an iteration ran no faster for them.

The lean configuration runs one round and skips the passes that rewrite structure (layout,
memory, loop-invariant, control-dependency, shape, implementation selection, host pinning,
scoped allocators). It keeps pruning, constant folding, arithmetic rewriting,
common-subexpression elimination, function inlining and the remapper's fused kernels: the ones
that pay at run time on CPU. Arithmetic can round differently in the last place from a run
under TensorFlow's default (as the default's own first calls can differ from its later
ones); without common-subexpression elimination it differed enough to move CG
on the 50-dimensional quadratic from fewer evaluations than SciPy to 571 against SciPy's 524,
so that pass stays. Measured, interleaved in one process, reseeded fresh models: the sinc fit's
``lm`` to 1e-8 1.33 s -> 1.13 s, 100 L-BFGS iterations on the digits MLP 0.89 s -> 0.72 s.

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

# Passes skipped by the lean configuration (RewriterConfig toggles).
_SKIPPED = (
    "layout_optimizer", "memory_optimization", "loop_optimization", "dependency_optimization",
    "shape_optimization", "implementation_selector", "pin_to_host_optimization",
    "scoped_allocator_optimization",
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
        off = rewriter_config_pb2.RewriterConfig.OFF
        for name in _SKIPPED:
            if name == "memory_optimization":
                rewrite.memory_optimization = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
            else:
                setattr(rewrite, name, off)
        _lean[key] = context.FunctionCallOptions(executor_type=default.executor_type,
                                                 config_proto=config)
    return _lean[key]


@contextlib.contextmanager
def lean_calls() -> Iterator[None]:
    """Within the block, the functions this thread calls run as optimized with the lean
    configuration (each configuration has its own cached instance of a function; a no-op
    when :func:`enabled` is false)."""
    if not enabled():
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
