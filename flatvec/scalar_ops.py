"""Scalar and small-array operations on tensors (traced) or NumPy values (host), for code
written once.

A line search's trial, the stopping tests after a step or L-BFGS's algebra on its ``[m, m]``
inner products are a few hundred operations on scalars and small arrays.
Traced into the compiled loop they cost nothing worth counting; executed eagerly (the eager
tier, :mod:`flatvec._run.tiers`) each TensorFlow op is dispatched from Python, 7-17 us apiece
on this project's 2-core machine, against well under 1 us for the same operation on a NumPy
scalar. Code that takes an :class:`ScalarOps` (``ops``) runs on either kind: :data:`TRACED`
inside a ``tf.function``, :data:`HOST` eagerly (:func:`for_context` picks). Vectors stay
TensorFlow tensors in both; ``ops.value`` brings a scalar or small tensor (an oracle's value, an
inner product, L-BFGS's ``[m, m]`` products) into the kind at hand.

+, -, *, /, comparisons and square roots round the same in IEEE arithmetic whichever library
runs them, so the two kinds compute the same bits from the same inputs (the tests compare a
search's host and traced trials bit for bit), and so do selections, gathers and masks. Sums
whose order a library chooses (a matrix-vector product, a triangular solve) are TensorFlow's
kernels in both kinds (``matvec``, ``triangular_solve``: on the host they take and give NumPy
arrays).

Algorithms that declare ``runs_on_host`` go one step further in the eager tier: inside
:func:`on_host` their vectors are NumPy arrays too (the :data:`NUMPY` kind), the objective's
compiled functions are called on them and give NumPy back (:class:`flatvec.oracle.Oracle`),
and the passes over n are NumPy's (:mod:`flatvec.vector_ops`). No TensorFlow op is then
dispatched between two evaluations. Inner products and matrix products sum in NumPy's order,
so that tier agrees with the compiled loop to rounding, not bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
import tensorflow as tf

from flatvec._thread_flags import flag_set

__all__ = ["HOST", "NUMPY", "TRACED", "ScalarOps", "for_context", "on_host"]

_scope = threading.local()  # per thread: eager execution is per thread


class ScalarOps(NamedTuple):
    """The operations, by name (those of ``tf`` where the two kinds differ)."""

    where: Callable[[Any, Any, Any], Any]  # select by a scalar condition
    abs: Callable[[Any], Any]
    maximum: Callable[[Any, Any], Any]
    minimum: Callable[[Any, Any], Any]
    sqrt: Callable[[Any], Any]
    sign: Callable[[Any], Any]
    ones_like: Callable[[Any], Any]
    clip: Callable[[Any, Any, Any], Any]
    isfinite: Callable[[Any], Any]
    equal: Callable[[Any, Any], Any]
    any: Callable[[list[Any]], Any]  # any of a list of scalar conditions
    branch: Callable[[Any, Callable[[], Any], Callable[[], Any]], Any]  # run one of two
    value: Callable[[Any], Any]  # a tensor or Python value (scalar or small) in this kind
    constant: Callable[[Any, Any], Any]  # (value, dtype) in this kind
    cast: Callable[[Any, Any], Any]  # (value of this kind, dtype)
    tensor: Callable[[Any, Any], Any]  # (value of this kind, dtype) as a state field
    zeros: Callable[[Any, Any], Any]  # (shape, dtype): a state field of zeros
    # Small arrays (elementwise where the shapes broadcast).
    select: Callable[[Any, Any, Any], Any]  # elementwise where
    expand_dims: Callable[[Any, int], Any]
    squeeze: Callable[[Any, int], Any]
    gather: Callable[..., Any]  # (params, indices, axis=0)
    range: Callable[[Any], Any]
    floormod: Callable[[Any, Any], Any]
    one_hot_mask: Callable[[Any, int], Any]  # (index, m): bools, True at index
    upper: Callable[[Any], Any]  # the upper triangle (diagonal included)
    diag: Callable[[Any], Any]
    diag_part: Callable[[Any], Any]
    zeros_like: Callable[[Any], Any]
    matvec: Callable[[Any, Any], Any]  # TensorFlow's kernel in TRACED and HOST
    triangular_solve: Callable[..., Any]  # TensorFlow's kernel in TRACED and HOST


TRACED = ScalarOps(
    where=tf.where, abs=tf.abs, maximum=tf.maximum, minimum=tf.minimum, sqrt=tf.sqrt,
    sign=tf.sign, ones_like=tf.ones_like, clip=tf.clip_by_value, isfinite=tf.math.is_finite,
    equal=tf.equal, any=tf.reduce_any, branch=tf.cond, value=tf.convert_to_tensor,
    constant=tf.constant, cast=tf.cast, tensor=lambda t, dtype: t, zeros=tf.zeros,
    select=tf.where, expand_dims=tf.expand_dims, squeeze=tf.squeeze, gather=tf.gather,
    range=tf.range, floormod=tf.math.floormod,
    one_hot_mask=lambda index, m: tf.one_hot(index, m, on_value=True, off_value=False),
    upper=lambda a: tf.linalg.band_part(a, 0, -1), diag=tf.linalg.diag,
    diag_part=tf.linalg.diag_part, zeros_like=tf.zeros_like, matvec=tf.linalg.matvec,
    triangular_solve=tf.linalg.triangular_solve)


def _host_clip(t: Any, lo: Any, hi: Any) -> Any:
    return np.maximum(np.minimum(t, hi), lo)  # tf.clip_by_value's order (a NaN stays NaN)


def _host_value(t: Any) -> Any:
    if isinstance(t, np.generic):  # already a NumPy scalar (most calls: 0.05 against 0.26 us)
        return t
    return np.asarray(t)[()]


@functools.cache
def _numpy_dtype(dtype: Any) -> Any:
    return tf.as_dtype(dtype).as_numpy_dtype  # (tf.as_dtype costs 1 us: 40 calls a step)


def _host_constant(value: Any, dtype: Any) -> Any:
    if isinstance(value, (float, int)):  # a Python number: its NumPy scalar directly
        return _numpy_dtype(dtype)(value)
    return np.asarray(value, dtype=_numpy_dtype(dtype))[()]


def _host_expand_dims(a: Any, axis: int) -> Any:
    """``np.expand_dims`` by indexing (0.1 against 1.4 us: its axis checks are most of it)."""
    if axis == 0:
        return a[None]
    if axis == -1 or axis == np.ndim(a):
        return a[..., None]
    return np.expand_dims(a, axis)


def _host_gather(params: Any, indices: Any, axis: int = 0) -> Any:
    return np.take(params, indices, axis=axis)


def _host_kernel(kernel: Callable[..., tf.Tensor]) -> Callable[..., Any]:
    """``kernel`` (a TensorFlow op) on NumPy arrays, giving a NumPy array."""
    return lambda *args, **kwargs: kernel(*args, **kwargs).numpy()


HOST = ScalarOps(
    where=lambda c, a, b: a if c else b, abs=np.abs, maximum=np.maximum, minimum=np.minimum,
    sqrt=np.sqrt, sign=np.sign, ones_like=lambda t: np.ones_like(t)[()], clip=_host_clip,
    isfinite=np.isfinite, equal=np.equal, any=lambda conditions: np.bool_(any(conditions)),
    branch=lambda c, if_true, if_false: if_true() if c else if_false(),
    value=_host_value, constant=_host_constant, cast=_host_constant, tensor=tf.constant,
    zeros=tf.zeros,
    select=np.where, expand_dims=_host_expand_dims, squeeze=np.squeeze, gather=_host_gather,
    range=np.arange, floormod=np.mod, one_hot_mask=lambda index, m: np.arange(m) == index,
    upper=np.triu, diag=np.diag, diag_part=np.diagonal, zeros_like=np.zeros_like,
    matvec=_host_kernel(tf.linalg.matvec),
    triangular_solve=_host_kernel(tf.linalg.triangular_solve))


def _numpy_triangular_solve(matrix: Any, rhs: Any, lower: bool = True,
                            adjoint: bool = False) -> Any:
    """``tf.linalg.triangular_solve``'s meaning (real matrices), by LAPACK's ``trtrs``
    directly: ``scipy.linalg.solve_triangular``'s checks and dispatch cost 40 us a call. A
    zero on the diagonal gives NaN (LAPACK refuses; TensorFlow's kernel divides by it)."""
    (trtrs,) = scipy.linalg.get_lapack_funcs(("trtrs",), (matrix, rhs))
    solution, info = trtrs(matrix, rhs, lower=int(lower), trans=int(adjoint))
    return solution if info == 0 else np.full_like(solution, np.nan)


# Everything on the host (see the module docstring): HOST, with values of the state (``tensor``)
# kept as NumPy and the small products NumPy's and LAPACK's.
def _numpy_zeros(shape: Any, dtype: Any) -> Any:
    return np.zeros(shape, _numpy_dtype(dtype))[()]


NUMPY = HOST._replace(tensor=_host_constant, zeros=_numpy_zeros, matvec=np.matmul,
                      triangular_solve=_numpy_triangular_solve)


def on_host(active: bool = True) -> contextlib.AbstractContextManager[None]:
    """Run the code in this block (eagerly) in the :data:`NUMPY` kind, if ``active``: what the
    eager tier does for algorithms that declare ``runs_on_host``."""
    return flag_set(_scope, "numpy", bool(active))


def for_context() -> ScalarOps:
    """:data:`TRACED` while tracing a function; eagerly :data:`NUMPY` inside :func:`on_host`,
    else :data:`HOST`."""
    if not tf.executing_eagerly():
        return TRACED
    return NUMPY if getattr(_scope, "numpy", False) else HOST
