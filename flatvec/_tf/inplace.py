"""Writing rows into a buffer in place: ``tf.raw_ops.InplaceUpdate``.

TensorFlow's graph executor does not hand a ``tf.while_loop`` variable's buffer to
``tf.tensor_scatter_nd_update`` for reuse: writing one row of L-BFGS's ``[m, n]`` buffers copies
all of it (at n = 100 000, m = 10 in float64 about 1 ms a row on 2 cores). ``InplaceUpdate``
writes the row into the buffer it is given; TensorFlow documents the op but not that it writes
in place, so :mod:`flatvec.buffers` uses it only where nothing else can hold the buffer, and
only while :func:`flatvec._tf.enabled` (else every write is a scatter).
"""

from __future__ import annotations

import tensorflow as tf

from flatvec import _tf

__all__ = ["available", "write_rows_in_place"]


def available() -> bool:
    """Whether rows may be written in place: the switch is on and the op exists."""
    return _tf.enabled() and hasattr(tf.raw_ops, "InplaceUpdate")


def write_rows_in_place(buffer: tf.Tensor, indices: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """``buffer`` with rows ``indices`` (int32, 1-D) replaced by ``rows``, in its own memory."""
    return tf.raw_ops.InplaceUpdate(x=buffer, i=indices, v=rows)
