"""What an :class:`~flatvec.protocol.UpdateRule` must return, checked where it is traced, the
same in ``flatvec.minimize`` and in ``model.fit`` (``flatvec.keras.VectorOptimizer``), with
errors that name the rule and the slot instead of TensorFlow's loop or assignment internals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

__all__ = ["call_update", "check_slots", "check_update"]


def check_slots(rule: Any, slots: Any) -> None:
    """``init_slots``' result: ``()`` or a NamedTuple of tensors."""
    name = type(rule).__name__
    if slots == () or (isinstance(slots, tuple) and hasattr(slots, "_fields")):
        for field, value in zip(getattr(slots, "_fields", ()), slots):
            if not isinstance(value, (tf.Tensor, tf.Variable)) and not hasattr(value, "dtype"):
                raise TypeError(f"{name}.init_slots: slot {field!r} is a "
                                f"{type(value).__name__}; slots are tensors")
        return
    raise TypeError(f"{name}.init_slots: expected a NamedTuple of tensors (or ()), got "
                    f"{type(slots).__name__}; Keras stores each field as an optimizer "
                    "variable by its name, so plain tuples and lists are refused")


def check_update(rule: Any, x: tf.Tensor, x_new: Any, slots: Any, slots_new: Any) -> None:
    """The new point has ``x``'s dtype and shape; the new slots ``slots``' type, and each
    field its dtype and shape (a loop carry and an optimizer variable cannot change them)."""
    name = type(rule).__name__
    if not isinstance(x_new, (tf.Tensor, tf.Variable)):
        raise TypeError(f"{name}.update: expected the new x as a tensor, got "
                        f"{type(x_new).__name__}")
    if x_new.dtype != x.dtype:
        raise TypeError(f"{name}.update: returned x as {x_new.dtype.name}, expected "
                        f"{x.dtype.name} (x's dtype: cast constants with tf.cast(c, x.dtype))")
    if x_new.shape != x.shape:
        raise ValueError(f"{name}.update: returned x of shape {x_new.shape}, expected "
                         f"{x.shape}")
    if type(slots_new) is not type(slots):
        raise TypeError(f"{name}.update: returned slots of type {type(slots_new).__name__}, "
                        f"expected {type(slots).__name__} as init_slots gave")
    for field, old, new in zip(getattr(slots, "_fields", ()), slots, slots_new):
        new_t = tf.convert_to_tensor(new)
        old_t = tf.convert_to_tensor(old)
        if new_t.dtype != old_t.dtype:
            raise TypeError(f"{name}.update: slot {field!r} came back as {new_t.dtype.name}, "
                            f"expected {old_t.dtype.name}")
        if not new_t.shape.is_compatible_with(old_t.shape) or (
                new_t.shape.rank is not None and new_t.shape != old_t.shape):
            raise ValueError(f"{name}.update: slot {field!r} changed shape from "
                             f"{old_t.shape} to {new_t.shape}; slots keep the shape "
                             "init_slots gave them")


def call_update(rule: Any, update: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``update(*args, **kwargs)``, TensorFlow's errors re-raised naming the rule (the dtype of
    a constant, a Python ``if`` on a tensor), whether traced or run eagerly."""
    name = type(rule).__name__
    try:
        return update(*args, **kwargs)
    except tf.errors.OperatorNotAllowedInGraphError as err:
        raise TypeError(
            f"{name}.update: uses a tensor as a Python bool ({err}); write the branch with "
            "tf.where or tf.cond, or define the rule in a module file so that AutoGraph can "
            "read its source and convert the if") from err
    except (TypeError, ValueError, tf.errors.InvalidArgumentError) as err:
        # Traced: TypeError/ValueError; run eagerly (a short run's eager tier):
        # InvalidArgumentError "... was expected to be a double tensor but is a float tensor".
        if "must have the same type" in str(err) or "does not match type" in str(err) or (
                "dtype" in str(err) and "float" in str(err)) or (
                "expected to be a" in str(err) and "tensor but is a" in str(err)):
            raise TypeError(
                f"{name}.update: mixes dtypes ({err}); x is {args[0].dtype.name}: make "
                "constants with tf.constant(c, x.dtype) or tf.cast") from err
        raise
