"""Row writes into history buffers (L-BFGS's ``[m, n]`` pairs), in place inside the compiled loop.

TensorFlow's graph executor does not hand a ``tf.while_loop`` variable's buffer to
``tf.tensor_scatter_nd_update`` for reuse: writing one row of an ``[m, n]`` buffer copies all
of it (at n = 100 000, m = 10 in float64 about 1 ms a row on a 2-core machine, and the copy
lands in newly allocated memory). :mod:`flatvec._tf.inplace` writes the row into the very
buffer it is given (a private contact: with the switch off every write is a copy). That is
right only where nothing else holds the buffer and every read of its old contents has run.
The compiled loop and :func:`write_rows` see to both:

- ownership is the compiled loop's, not the algorithm's: the loop knows whether anything
  besides itself may hold the carry's buffers (the start's or a caller's tensors, a host
  read, a checkpoint, an eager block: all mark them shared) and traces each iteration inside
  :func:`in_place` with ``owned``, a bool tensor that is False until the block's first write
  has copied them (a ``tf.tensor_scatter_nd_update``: a new buffer), True after; so no
  tensor anything else holds is ever written, and a run that reads nothing between blocks
  copies each buffer once;
- :func:`write_rows` there orders an in-place write after the reads it is given (``after``).

On NumPy arrays (the eager tier of an algorithm that runs on the host,
:func:`flatvec.scalar_ops.on_host`) the rows are written into the arrays themselves: that
tier's buffers are its own (the start's, or copies it made of the variables' values).

Outside that scope (eager calls, a user's own loop, XLA, which has no kernel for the raw op)
:func:`write_rows` is ``tf.tensor_scatter_nd_update`` whose index depends on the reads by
dataflow: XLA then updates a while loop's buffer in place by itself, but only where the
dataflow orders every read of the old rows before the write. An algorithm whose step calls
:func:`write_rows` declares ``writes_rows = True`` and calls it on every step (``keep=False``
for a step that stores nothing), so that the buffers are the loop's own after each step; the
loop enters :func:`in_place` only for algorithms that declare it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from flatvec._tf import inplace

__all__ = ["in_place", "write_rows", "writes_in_place"]

_scope = threading.local()  # per thread: tracing is per thread


@contextlib.contextmanager
def in_place(active: bool = True, owned: tf.Tensor | None = None) -> Iterator[None]:
    """Trace :func:`write_rows` calls in this block as in-place writes where ``owned`` (a bool
    tensor: only the loop holds the buffers) holds, if ``active``.

    Only the compiled loop enters it, around the trace of each iteration (see the module
    docstring)."""
    before = getattr(_scope, "active", False), getattr(_scope, "owned", None)
    _scope.active = bool(active) and inplace.available() and owned is not None
    _scope.owned = owned
    try:
        yield
    finally:
        _scope.active, _scope.owned = before


def writes_in_place() -> bool:
    """Whether :func:`write_rows` traced now writes in place."""
    return getattr(_scope, "active", False)


def write_rows(buffers: Sequence[tf.Tensor], index: tf.Tensor, rows: Sequence[tf.Tensor], *,
               after: Sequence[tf.Tensor] = (),
               keep: tf.Tensor | None = None) -> tuple[tf.Tensor, ...]:
    """Each of ``buffers`` with row ``index`` (int32 scalar) replaced by the matching ``rows``.

    Inside :func:`in_place`, where the loop owns the buffers, each row goes into its buffer's
    own memory once every tensor in ``after`` (each read of the old contents that is not
    already an input of a row) has been computed: the old contents are gone and the results
    are the buffers themselves. Elsewhere the results are new tensors and ``buffers`` are
    unchanged, and the write's index depends on ``after`` by dataflow (for XLA). One call for
    all the buffers of a write: one ``tf.cond`` in the graph.

    ``keep`` (bool scalar, default True): where False the buffers keep row ``index``. No
    ``tf.cond`` skips the write (a fresh model's loop instantiates every branch function
    again, see :mod:`flatvec._tf.graph_reuse`): in the compiled loop the write has zero or one
    rows; elsewhere (XLA needs static shapes) the old row is written back.

    On NumPy buffers (see the module docstring) the rows are written into them."""
    if isinstance(buffers[0], np.ndarray):
        if keep is None or keep:
            for buffer, row in zip(buffers, rows, strict=True):
                buffer[index] = row
        return tuple(buffers)
    indices = tf.reshape(index, [1])
    if after and not writes_in_place():
        indices = _after_reads(indices, after)
    rows = [tf.expand_dims(row, 0) for row in rows]
    if keep is not None and writes_in_place():
        # The first `count` (0 or 1) of the one index and row: a slice that keeps all of a
        # tensor is the tensor itself, so a kept row is not copied.
        count = tf.reshape(tf.cast(keep, tf.int32), [1])
        indices = tf.slice(indices, [0], count)
        rows = [tf.slice(r, [0, 0], tf.concat([count, [-1]], 0)) for r in rows]
    elif keep is not None:
        rows = [tf.where(keep, r, tf.gather(b, indices)) for b, r in zip(buffers, rows)]

    def scatter() -> tuple[tf.Tensor, ...]:
        at = tf.expand_dims(indices, 1)
        return tuple(tf.tensor_scatter_nd_update(b, at, r) for b, r in zip(buffers, rows))

    if not writes_in_place():
        return scatter()

    def overwrite() -> tuple[tf.Tensor, ...]:
        with tf.control_dependencies(list(after)):
            return tuple(inplace.write_rows_in_place(b, indices, r)
                         for b, r in zip(buffers, rows))

    return tf.cond(_scope.owned, overwrite, scatter)


def _after_reads(indices: tf.Tensor, reads: Sequence[tf.Tensor]) -> tf.Tensor:
    """``indices``, computed after ``reads``: a data dependency that changes no value.

    XLA updates a loop's buffer in place only where its dataflow orders every read of the old
    contents before the write; control dependencies do not count (nor does an optimization
    barrier, which the CPU pipeline turns into them). Without this, the compiled L-BFGS loop
    copied each ``[m, n]`` buffer twice an iteration. ``r * 0`` is 0 or NaN, which converts to
    0 or the most negative integer, so the maximum with a non-negative index is the index."""
    zero = tf.add_n([tf.reduce_sum(tf.cast(r, tf.float32)) for r in reads]) * 0.0
    return tf.maximum(indices, tf.cast(zero, indices.dtype))
