"""Algorithm state as ``tf.Variable`` s, so ``tf.train.Checkpoint`` can save and restore it."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["StateCheckpoint"]


class StateCheckpoint(tf.Module):
    """A trackable copy of an algorithm state (one ``tf.Variable`` per tensor in it).

    Use it with ``tf.train.Checkpoint`` to save a run and resume it on the same trajectory.
    To restore, build one from any state of the same algorithm and problem size (for example
    ``minimize(..., max_iter=0).state``), restore into it, and pass :meth:`value` as
    ``initial_state``. To save and resume a whole run (its iteration count, best point and
    evaluation counts too), pass ``checkpoint=DIR`` to :func:`flatvec.minimize` instead.

    Examples
    --------
    >>> import tensorflow as tf, flatvec, tempfile, os
    >>> fun = lambda x: tf.reduce_sum((x - 3.0) ** 2 * tf.range(1.0, 4.0, dtype=tf.float64))
    >>> x0 = tf.zeros([3], tf.float64)
    >>> first = flatvec.minimize(fun, x0, "lbfgs", max_iter=1)
    >>> path = tf.train.Checkpoint(state=flatvec.StateCheckpoint(first.state)).write(
    ...     os.path.join(tempfile.mkdtemp(), "run"))
    >>> saved = flatvec.StateCheckpoint(flatvec.minimize(fun, x0, "lbfgs", max_iter=0).state)
    >>> _ = tf.train.Checkpoint(state=saved).read(path)
    >>> rest = flatvec.minimize(fun, x0, "lbfgs", initial_state=saved.value())
    >>> [round(v, 6) for v in rest.x.tolist()]
    [3.0, 3.0, 3.0]
    """

    def __init__(self, state: Any, name: str | None = None) -> None:
        super().__init__(name=name)
        self._template = state
        leaves = tf.nest.flatten(state)
        self.leaves = [tf.Variable(t, trainable=False) for t in leaves]

    def assign(self, state: Any) -> None:
        """Copy ``state`` (same structure) into the variables."""
        tf.nest.assert_same_structure(self._template, state)
        for var, value in zip(self.leaves, tf.nest.flatten(state)):
            var.assign(value)

    def value(self) -> Any:
        """The stored state, with the structure it was built from."""
        return tf.nest.pack_sequence_as(
            self._template, [tf.convert_to_tensor(v) for v in self.leaves]
        )
