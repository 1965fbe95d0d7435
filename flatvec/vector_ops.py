"""Inner products and row combinations over n, in the form that is fastest for the compiler.

The same sum compiles to very different code in TensorFlow's graph executor and in XLA's CPU
backend (TensorFlow 2.21), measured on this project's 2-core machine in float64:

- ``a . b`` of two n-vectors: XLA emits ``tf.tensordot`` (a rank-1 ``dot``) as one sequential
  chain of multiply-adds, 0.16 ms at n = 100 000, while a fused ``reduce_sum(a * b)`` is
  vectorized, 0.055 ms. In graph mode the ``MatMul`` is the better one inside the loop (the
  product ``a * b`` would be a temporary of n and a second kernel).
- ``c . R`` of m coefficients with the m rows of ``[m, n]`` (L-BFGS's direction): XLA's
  ``dot`` over the leading dimension takes 0.27 ms at n = 100 000 and 3.4 ms at n = 10^6,
  a fused ``reduce_sum(c[:, None] * R, 0)`` 0.12 ms and 0.55 ms. In graph mode that form
  would build the ``[m, n]`` product (4x slower); the ``MatMul`` stays.

The compiled loop traces its graphs inside :func:`xla_scope` when it compiles them with XLA,
and these functions pick the form from it; anywhere else (eager calls, a user's own
functions) they take the graph form, which is right everywhere and only slower under XLA.
Executed eagerly (the eager tier, :mod:`flatvec._run.tiers`) the graph form's ``MatMul`` is
called directly: ``tf.tensordot`` reaches it through reshapes to shapes given as Python lists,
each converted on every call (0.28 ms a product against 0.05 ms at n = 9 610), and the same
``MatMul`` on the same shapes gives the same bits. On NumPy arrays (the eager tier of an
algorithm that runs on the host, :func:`flatvec.scalar_ops.on_host`) they are NumPy's.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import tensorflow as tf

from flatvec._thread_flags import flag_set

__all__ = ["all_finite", "any_differ", "combine_rows", "dot", "max_abs", "matvec", "norm",
           "select", "traced_for_xla", "xla_scope"]

_scope = threading.local()  # per thread: tracing is per thread


def xla_scope(active: bool = True) -> contextlib.AbstractContextManager[None]:
    """Trace the calls in this block in the form for XLA (if ``active``)."""
    return flag_set(_scope, "xla", bool(active))


def traced_for_xla() -> bool:
    """Whether the code traced now is compiled by XLA (inside :func:`xla_scope`)."""
    return getattr(_scope, "xla", False)


def dot(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Inner product of two 1-D tensors."""
    if isinstance(a, np.ndarray):
        return np.dot(a, b)
    if traced_for_xla():
        return tf.reduce_sum(a * b)
    if tf.executing_eagerly():  # tensordot's MatMul, [1, n] x [n, 1], without its reshapes
        return tf.squeeze(tf.matmul(tf.expand_dims(a, 0), tf.expand_dims(b, 1)), [0, 1])
    return tf.tensordot(a, b, 1)


def combine_rows(coefficients: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """``sum_i coefficients[i] * rows[i]`` for ``[m]`` coefficients and ``[m, n]`` rows."""
    if isinstance(rows, np.ndarray):
        return coefficients @ rows
    if traced_for_xla():
        return tf.reduce_sum(coefficients[:, None] * rows, 0)
    # Row vector times matrix: one MatMul, 2-3x faster than matvec(..., transpose_a=True).
    if tf.executing_eagerly():  # tensordot's MatMul, [1, m] x [m, n], without its reshapes
        return tf.squeeze(tf.matmul(tf.expand_dims(coefficients, 0), rows), [0])
    return tf.tensordot(coefficients, rows, 1)


def matvec(rows: tf.Tensor, vector: tf.Tensor) -> tf.Tensor:
    """``rows @ vector``: the ``[m]`` inner products of ``[m, n]`` rows with an n-vector."""
    if isinstance(rows, np.ndarray):
        return rows @ vector
    return tf.linalg.matvec(rows, vector)


def norm(a: tf.Tensor) -> tf.Tensor:
    """The Euclidean norm; on NumPy arrays with TensorFlow's sum (a NumPy scalar back).

    Why not NumPy's sum: the start of a run that declares ``runs_on_host`` is evaluated on the
    host whichever tier then runs it, and its first step is scaled by this norm (see
    :func:`flatvec.algorithms.line_search.unit_step_scale`); with TensorFlow's order of
    summation a compiled run is the one it was before the host tier, bit for bit. The squares
    and the square root are NumPy's (exactly rounded, as TensorFlow's): one kernel where
    ``tf.norm`` dispatches four, whose first uses in a process cost some 4 ms."""
    if isinstance(a, np.ndarray):
        return np.sqrt(tf.reduce_sum(a * a).numpy())
    return tf.norm(a)


def select(condition: tf.Tensor, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``a`` where the scalar ``condition`` holds, else ``b`` (a select: both computed)."""
    if isinstance(a, np.ndarray):
        return a if condition else b
    return tf.where(condition, a, b)


def any_differ(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Whether ``a`` and ``b`` differ in any entry."""
    if isinstance(a, np.ndarray):
        return np.any(a != b)
    return tf.reduce_any(a != b)


def max_abs(a: tf.Tensor) -> tf.Tensor:
    """``max |a_i|``, the infinity norm."""
    if isinstance(a, np.ndarray):
        return np.max(np.abs(a))
    return tf.reduce_max(tf.abs(a))


def all_finite(a: tf.Tensor) -> tf.Tensor:
    """Whether every entry of ``a`` is finite."""
    if isinstance(a, np.ndarray):
        return np.isfinite(a).all()
    return tf.reduce_all(tf.math.is_finite(a))
