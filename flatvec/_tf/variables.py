"""The ``tf.Variable`` behind a Keras variable."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from flatvec import _tf

__all__ = ["backing_variable"]


def backing_variable(v: Any) -> Any:
    """The ``tf.Variable`` behind a Keras 3 variable (for identity, tapes and fast reads).

    ``KerasVariable.value`` is a *cast copy* inside a mixed-precision autocast scope; the
    private ``_value`` is the variable itself everywhere. Fallback (switch off): ``.value``,
    the variable itself outside autocast scopes (where flatvec reads it)."""
    if isinstance(v, tf.Variable):
        return v
    if _tf.enabled():
        stored = getattr(v, "_value", None)
        if isinstance(stored, tf.Variable):
            return stored
    return v.value
