"""A small value kept on the host until compiled code needs it as a ``tf.Variable``.

The compiled loop reads its settings (tolerances, limits, the block size) and keeps its
counters in variables, so that a new setting does not retrace it. A run that stays on the host
(:mod:`flatvec._run.tiers`) never calls the compiled loop, and making those variables cost its
first call more than anything else it does outside the objective: TensorFlow's first tensor of
each dtype in a process costs some 4.5 ms (measured, TF 2.21: ``tf.constant`` of an int64,
int32, bool or float32 value, each first time; 0.03 ms after; 0.5 ms with oneDNN's graph
passes off, ``TF_ENABLE_ONEDNN_OPTS=0``), and the variables' eager assigns
and reads the first use of each kernel (0.5-5 ms). So the value lives in NumPy, and the variable
is made, from that value, the first time it is asked for; from then on both are written.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["LazyVariable"]


class LazyVariable:
    """A value of a fixed dtype and shape, a ``tf.Variable`` from the first :attr:`variable`.

    Compiled code may change the variable (a counter, a flag); :meth:`numpy` reads it where it
    exists."""

    def __init__(self, value: Any, dtype: Any) -> None:
        self._host = np.array(value, dtype=dtype)
        self._variable: tf.Variable | None = None

    @property
    def variable(self) -> tf.Variable:
        """The ``tf.Variable``, made (outside any function being traced) on first use."""
        if self._variable is None:
            with tf.init_scope():
                self._variable = tf.Variable(self._host, trainable=False)
        return self._variable

    @property
    def exists(self) -> bool:
        """Whether :attr:`variable` was made."""
        return self._variable is not None

    def assign(self, value: Any) -> None:
        """Set the value (and the variable's, where it exists) from the host."""
        self._host = np.array(value, dtype=self._host.dtype)
        if self._variable is not None:
            self._variable.assign(self._host)

    def assign_add(self, delta: Any) -> None:
        """Add ``delta`` from the host."""
        if self._variable is not None:
            self._variable.assign_add(np.asarray(delta, dtype=self._host.dtype))
        else:
            self._host = self._host + np.asarray(delta, dtype=self._host.dtype)

    def numpy(self) -> np.ndarray:
        """The current value (the variable's, where it exists), as a NumPy copy."""
        if self._variable is not None:
            return self._variable.numpy()
        return self._host.copy()
