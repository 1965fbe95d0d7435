"""Scalar operations on tensors (traced) or on NumPy scalars (host), for code written once.

A line search's trial or the stopping tests after a step are a few hundred scalar operations.
Traced into the compiled loop they cost nothing worth counting; executed eagerly (the eager
tier, :mod:`flatvec._run.tiers`) each TensorFlow op is dispatched from Python, 7-17 us apiece
on this project's 2-core machine, against well under 1 us for the same operation on a NumPy
scalar. Code that takes an :class:`ScalarOps` (``ops``) runs on either kind: :data:`TRACED`
inside a ``tf.function``, :data:`HOST` eagerly (:func:`for_context` picks). Vectors stay
TensorFlow tensors in both; ``ops.value`` brings a scalar tensor (an oracle's value, an inner
product) into the kind at hand.

+, -, *, /, comparisons and square roots round the same in IEEE arithmetic whichever library
runs them, so the two kinds compute the same bits from the same inputs (the tests compare a
search's host and traced trials bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

__all__ = ["HOST", "TRACED", "ScalarOps", "for_context"]


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
    value: Callable[[Any], Any]  # a scalar tensor (or variable) in this kind
    constant: Callable[[Any, Any], Any]  # (value, dtype) in this kind
    cast: Callable[[Any, Any], Any]  # (value of this kind, dtype)
    tensor: Callable[[Any, Any], Any]  # (value of this kind, dtype) as a tensor


TRACED = ScalarOps(
    where=tf.where, abs=tf.abs, maximum=tf.maximum, minimum=tf.minimum, sqrt=tf.sqrt,
    sign=tf.sign, ones_like=tf.ones_like, clip=tf.clip_by_value, isfinite=tf.math.is_finite,
    equal=tf.equal, any=tf.reduce_any, branch=tf.cond, value=lambda t: t,
    constant=tf.constant, cast=tf.cast, tensor=lambda t, dtype: t)


def _host_clip(t: Any, lo: Any, hi: Any) -> Any:
    return np.maximum(np.minimum(t, hi), lo)  # tf.clip_by_value's order (a NaN stays NaN)


def _host_value(t: Any) -> Any:
    return np.asarray(t)[()]


def _host_constant(value: Any, dtype: Any) -> Any:
    return np.asarray(value, dtype=tf.as_dtype(dtype).as_numpy_dtype)[()]


HOST = ScalarOps(
    where=lambda c, a, b: a if c else b, abs=np.abs, maximum=np.maximum, minimum=np.minimum,
    sqrt=np.sqrt, sign=np.sign, ones_like=lambda t: np.ones_like(t)[()], clip=_host_clip,
    isfinite=np.isfinite, equal=np.equal, any=lambda conditions: np.bool_(any(conditions)),
    branch=lambda c, if_true, if_false: if_true() if c else if_false(),
    value=_host_value, constant=_host_constant, cast=_host_constant, tensor=tf.constant)


def for_context() -> ScalarOps:
    """:data:`HOST` when executing eagerly, :data:`TRACED` while tracing a function."""
    return HOST if tf.executing_eagerly() else TRACED
