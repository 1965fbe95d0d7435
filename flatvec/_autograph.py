"""User code converted by AutoGraph, once, where flatvec traces with ``autograph=False``."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import tensorflow as tf

__all__ = ["with_autograph"]


def with_autograph(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` converted by AutoGraph, so that Python control flow on tensors in user code
    works as it does in any ``tf.function``.

    flatvec traces its own graphs with ``autograph=False``: converting flatvec's line searches
    and algorithms took 8.8 s of a 9.2 s first call on the digits MLP, and they need no
    conversion. User code is converted here instead, once (user functions, losses and
    algorithms). What AutoGraph cannot or need not convert (flatvec, Keras and TensorFlow code,
    callables without source, ``tf.function`` s) is returned unchanged.
    """
    if not isinstance(fn, (types.FunctionType, types.MethodType)):
        return fn
    module = getattr(fn, "__module__", None) or ""
    if module.split(".")[0] in ("flatvec", "keras", "tensorflow", "tf_keras"):
        return fn
    try:
        if isinstance(fn, types.MethodType):  # AutoGraph converts the function, not the binding
            return types.MethodType(tf.autograph.to_graph(fn.__func__), fn.__self__)
        return tf.autograph.to_graph(fn)
    except Exception:  # noqa: BLE001 - AutoGraph's own fallback: call the function unconverted
        return fn
