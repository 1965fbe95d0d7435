"""Keras 3 integration: run whole-vector first-order rules inside ``model.fit``.

``VectorOptimizer`` (see :mod:`flatvec.keras.optimizer`) is a ``keras.optimizers.Optimizer``
whose update sees all gradients and all trainable variables as one vector each. Methods that
need loss re-evaluations (L-BFGS, CG, BFGS) run through ``flatvec.minimize(model, dataset)``.
"""

from flatvec._tf.keras_hook import KerasHookError, check_keras_update_hook
from flatvec.keras.optimizer import VectorOptimizer

__all__ = ["KerasHookError", "VectorOptimizer", "check_keras_update_hook"]
