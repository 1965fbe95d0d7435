"""Keras' private optimizer hook that ``VectorOptimizer`` overrides, and the check that it is there.

Why a private hook
------------------
Keras 3 calls ``update_step(gradient, variable, learning_rate)`` once per variable, so a
public override never sees the whole gradient at once. The TensorFlow backend's
``TFOptimizer._backend_update_step(grads, variables, lr)`` all-reduces the gradients (after
Keras has unscaled, accumulated and clipped them) and then calls, in cross-replica context,

    ``self._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)``

which by default runs ``update_step`` per variable on each device. Overriding that one method
(:class:`WholeVectorUpdate`) gives the reduced gradients of all variables at once, with
everything around it unchanged, and runs the rule once per device through the public
``distribution.extended.update``: under ``MirroredStrategy`` every replica applies the same
reduced gradient.

The public fallback (switch off, or a Keras without the hook: :func:`check_keras_update_hook`
fails and ``VectorOptimizer`` warns) is Keras' own per-variable ``update_step``:
``VectorOptimizer`` gathers one step's gradients there and applies the rule once the last one
has arrived. Its results are the hook's (the tests compare them). Under a ``tf.distribute``
strategy ``update_step`` sees each device's copy of a variable, not the variable the optimizer
was built with: the fallback refuses that with :class:`KerasHookError`. Measured gain of the
hook besides strategies: none to speak of (the same ops either way).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import keras
import tensorflow as tf

from flatvec import _tf

__all__ = ["EXPECTED_HOOK_PARAMETERS", "KerasHookError", "WholeVectorUpdate",
           "check_keras_update_hook", "hook_usable"]

HOOK_NAME = "_distributed_tf_update_step"
EXPECTED_HOOK_PARAMETERS = ("self", "distribution", "grads_and_vars", "learning_rate")
_CALLER_NAME = "_backend_update_step"
_HELPERS = ("_all_reduce_sum_gradients",)


class KerasHookError(RuntimeError):
    """The installed Keras no longer has the private update hook ``VectorOptimizer`` uses."""


def _fail(what: str) -> KerasHookError:
    return KerasHookError(
        f"flatvec.keras.VectorOptimizer relies on the private Keras hook "
        f"TFOptimizer.{HOOK_NAME}(distribution, grads_and_vars, learning_rate), called from "
        f"TFOptimizer.{_CALLER_NAME}; with Keras {keras.__version__} {what}. This Keras "
        "release changed its optimizer internals; flatvec.keras needs updating for it "
        "(see flatvec/_tf/keras_hook.py)."
    )


def _tf_optimizer_class() -> type:
    from keras.src.backend.tensorflow.optimizer import TFOptimizer

    return TFOptimizer


def check_keras_update_hook() -> None:
    """Raise :class:`KerasHookError` unless the installed Keras routes updates through the hook.

    Checks: the TensorFlow backend is active; ``TFOptimizer`` defines
    ``_distributed_tf_update_step`` with parameters
    ``(self, distribution, grads_and_vars, learning_rate)``; its ``_backend_update_step``
    refers to that name; the helper methods exist; and ``keras.optimizers.Optimizer``
    inherits all of it.
    """
    check_keras_backend()
    try:
        tf_optimizer = _tf_optimizer_class()
    except ImportError as err:
        raise _fail(f"keras.src.backend.tensorflow.optimizer.TFOptimizer is gone ({err})") from err
    hook = getattr(tf_optimizer, HOOK_NAME, None)
    if not callable(hook):
        raise _fail(f"TFOptimizer has no method {HOOK_NAME}")
    params = tuple(inspect.signature(hook).parameters)
    if params != EXPECTED_HOOK_PARAMETERS:
        raise _fail(f"its parameters are {params}, expected {EXPECTED_HOOK_PARAMETERS}")
    caller = getattr(tf_optimizer, _CALLER_NAME, None)
    code = getattr(caller, "__code__", None)
    if code is None or HOOK_NAME not in code.co_names:
        raise _fail(f"TFOptimizer.{_CALLER_NAME} no longer calls {HOOK_NAME}")
    missing = [name for name in _HELPERS if not callable(getattr(tf_optimizer, name, None))]
    if missing:
        raise _fail(f"TFOptimizer lacks {missing}")
    if not issubclass(keras.optimizers.Optimizer, tf_optimizer):
        raise _fail("keras.optimizers.Optimizer does not derive from TFOptimizer")


def check_keras_backend() -> None:
    """Raise :class:`KerasHookError` unless Keras runs on TensorFlow (public API only)."""
    if keras.backend.backend() != "tensorflow":
        raise KerasHookError(
            "flatvec.keras.VectorOptimizer needs the TensorFlow Keras backend, "
            f"got KERAS_BACKEND={keras.backend.backend()!r}"
        )


def hook_usable() -> bool:
    """Whether ``VectorOptimizer`` may update through the private hook: the switch is on and
    :func:`check_keras_update_hook` passes (else it warns, and the fallback runs)."""
    check_keras_backend()
    if not _tf.enabled():
        return False
    try:
        check_keras_update_hook()
    except KerasHookError as err:
        warnings.warn(f"{err} VectorOptimizer updates through Keras' public update_step "
                      "instead (not under tf.distribute strategies).", stacklevel=3)
        return False
    return True


class WholeVectorUpdate:
    """The override of Keras' private hook (mixed into ``VectorOptimizer``, before Keras'
    optimizer class). The optimizer supplies ``uses_private_hook``,
    ``vector_gradients(grads_and_vars)`` and ``update_vector(anchor, grads, learning_rate)``,
    and its ``space``."""

    def _distributed_tf_update_step(
        self, distribution: tf.distribute.Strategy, grads_and_vars: Any, learning_rate: Any
    ) -> Any:
        """Apply the rule to the whole vector on each device (see the module docstring).

        ``distribution.extended.update`` (anchored on the first variable, whose copies live on
        every replica device) runs the vector update once per device in an update context,
        where reading or assigning any mirrored variable touches that device's copy."""
        if not self.uses_private_hook:
            return super()._distributed_tf_update_step(  # Keras' own: update_step per variable
                distribution, grads_and_vars, learning_rate)
        grads = self.vector_gradients(grads_and_vars)
        anchor = self.space.tf_variables[0]
        return distribution.extended.update(
            anchor, self.update_vector, args=(grads, learning_rate), group=False)
