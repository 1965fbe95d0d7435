"""What a variable is made of: the ``tf.Variable`` behind a Keras variable, and the
``tf.distribute`` strategy a variable was created under."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from flatvec import _tf

__all__ = ["backing_variable", "variable_strategy"]


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


def variable_strategy(v: Any) -> tf.distribute.Strategy | None:
    """The strategy whose scope created ``v`` (None for the default strategy).

    Private: ``_distribute_strategy``, which distributed variables carry. Fallback (switch
    off): the strategy in scope when flatvec is called, if ``v`` is a distributed value."""
    var = getattr(v, "value", v)
    if _tf.enabled():
        return getattr(var, "_distribute_strategy", None)
    if not isinstance(var, tf.distribute.DistributedValues):
        return None
    if not tf.distribute.has_strategy():
        raise ValueError(
            "the model's variables belong to a tf.distribute strategy: with "
            f"{_tf.SWITCH}=0 flatvec cannot ask a variable for it, so call flatvec inside "
            "strategy.scope()")
    return tf.distribute.get_strategy()
