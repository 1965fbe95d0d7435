"""The one private Keras hook ``VectorOptimizer`` relies on, and the check that it is still there.

Why a private hook
------------------
Keras 3 calls ``update_step(gradient, variable, learning_rate)`` once per variable, so a
public override never sees the whole gradient. Overriding ``apply``/``apply_gradients``
instead sees all gradients, but under ``tf.distribute.MirroredStrategy`` it runs in each
replica with that replica's *un-reduced* gradient: the replicas drift apart silently. It would
also have to redo gradient clipping, weight decay, EMA, gradient accumulation, loss-scale
unscaling and learning-rate schedules.

The TensorFlow backend's ``TFOptimizer._backend_update_step(grads, variables, lr)`` all-reduces
the gradients (after Keras has unscaled, accumulated and clipped them) and then calls,
in cross-replica context,

    ``self._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)``

which by default runs ``update_step`` per variable on each device. Overriding that one method
gives the reduced gradients of all variables at once with everything around it unchanged.
``VectorOptimizer`` also needs ``_var_key``/``_get_variable_index`` (map a variable to its
position in the list the optimizer was built with).

The hook is private, so :func:`check_keras_update_hook` verifies at construction that it
exists with the expected signature and is still called by ``_backend_update_step``; and
``VectorOptimizer.update_step`` raises if Keras ever calls it, which is what a Keras release
that stopped routing through the hook would do. Both fail with :class:`KerasHookError`.
"""

from __future__ import annotations

import inspect

import keras

__all__ = ["EXPECTED_HOOK_PARAMETERS", "KerasHookError", "check_keras_update_hook"]

HOOK_NAME = "_distributed_tf_update_step"
EXPECTED_HOOK_PARAMETERS = ("self", "distribution", "grads_and_vars", "learning_rate")
_CALLER_NAME = "_backend_update_step"
_HELPERS = ("_var_key", "_get_variable_index", "_all_reduce_sum_gradients")


class KerasHookError(RuntimeError):
    """The installed Keras no longer has the private update hook ``VectorOptimizer`` uses."""


def _fail(what: str) -> KerasHookError:
    return KerasHookError(
        f"flatvec.keras.VectorOptimizer relies on the private Keras hook "
        f"TFOptimizer.{HOOK_NAME}(distribution, grads_and_vars, learning_rate), called from "
        f"TFOptimizer.{_CALLER_NAME}; with Keras {keras.__version__} {what}. This Keras "
        "release changed its optimizer internals; flatvec.keras needs updating for it "
        "(see flatvec/keras/hook.py)."
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
    if keras.backend.backend() != "tensorflow":
        raise KerasHookError(
            "flatvec.keras.VectorOptimizer needs the TensorFlow Keras backend, "
            f"got KERAS_BACKEND={keras.backend.backend()!r}"
        )
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
