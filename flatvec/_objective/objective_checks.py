"""Argument checks of the objective constructors (each error names the argument)."""

from __future__ import annotations

import inspect
from typing import Any

import tensorflow as tf

__all__ = ["check_arity", "check_function_options", "check_scalar"]


def check_function_options(fun: Any, dtype: Any, size: Any) -> None:
    """The checks shared by the function and residual constructors."""
    if not callable(fun):
        raise TypeError(f"fun: expected a callable, got {type(fun).__name__}")
    try:
        floating = tf.as_dtype(dtype).is_floating
    except TypeError:
        floating = False
    if not floating:
        raise TypeError(f"dtype: expected a floating dtype, got {dtype!r}")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ValueError(f"size: expected a positive int or None, got {size!r}")
    check_arity(fun, "fun", 1)


def check_arity(fun: Any, name: str, count: int) -> None:
    """``fun`` must take ``count`` positional arguments (where its signature can be read)."""
    try:
        signature = inspect.signature(fun)
    except (TypeError, ValueError):  # builtins and extension types: nothing to read
        return
    try:
        signature.bind(*[None] * count)
    except TypeError as err:
        wanted = "no arguments" if count == 0 else "one argument (a 1-D tensor)"
        raise TypeError(f"{name}: expected a function of {wanted}, got one with signature "
                        f"{signature} ({err})") from None


def check_scalar(f: Any, name: str = "fun") -> None:
    if not isinstance(f, (tf.Tensor, tf.Variable)):
        # A NumPy or Python number is a constant: it carries no gradient.
        raise TypeError(f"{name}: must return a scalar tf.Tensor computed from its argument, "
                        f"got {type(f).__name__}")
    if not f.dtype.is_floating:
        raise TypeError(f"{name}: must return a floating scalar, got dtype {f.dtype.name}")
    if tf.TensorShape(f.shape).rank != 0:
        raise ValueError(f"{name}: must return a scalar, got shape {tuple(f.shape)}")
