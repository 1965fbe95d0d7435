"""Row writes into history buffers (L-BFGS's ``[m, n]`` pairs), in place inside the compiled loop.

TensorFlow's graph executor does not hand a ``tf.while_loop`` variable's buffer to
``tf.tensor_scatter_nd_update`` for reuse: writing one row of an ``[m, n]`` buffer copies all
of it (at n = 100 000, m = 10 in float64 about 1 ms a row on a 2-core machine, and the copy
lands in newly allocated memory). ``tf.raw_ops.InplaceUpdate`` writes the row into the very
buffer it is given. That is right only where nothing else holds the buffer and every read of
its old contents has run. The compiled loop and :func:`write_row` see to both:

- a buffer is *private* once the compiled loop has written it by a copy: that write is a
  ``tf.tensor_scatter_nd_update`` (a new buffer), later ones are in place. The algorithm
  keeps a bool ``private`` beside its buffers, which its ``own_buffers(state)`` sets to
  False. The loop calls ``own_buffers`` before a block whenever the carry's buffers may be
  held elsewhere (after the start, which took the start state's or a caller's tensors, and
  after every host read or checkpoint of the carry), so none of those is ever written; a
  run that reads nothing between blocks copies each buffer once;
- the loop traces the block inside :func:`in_place`, and :func:`write_row` there orders an
  in-place write after the reads it is given (``after``).

Outside that scope (eager calls, a user's own loop, XLA, which updates loop buffers in place
by itself) :func:`write_row` is ``tf.tensor_scatter_nd_update``. An algorithm that calls
:func:`write_row` must define ``own_buffers``; the loop enters :func:`in_place` only for
algorithms that do.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import tensorflow as tf

__all__ = ["in_place", "write_row", "writes_in_place"]

# The raw op this relies on; where a TensorFlow lacks it, rows are scattered.
_RAW_OPS = hasattr(tf.raw_ops, "InplaceUpdate")
_scope = threading.local()  # per thread: tracing is per thread


@contextlib.contextmanager
def in_place(active: bool = True) -> Iterator[None]:
    """Trace :func:`write_row` calls in this block as in-place writes (if ``active``).

    Only the compiled loop enters it, around the trace of a block whose algorithm state went
    through ``own_buffers`` (see the module docstring)."""
    before = getattr(_scope, "active", False)
    _scope.active = bool(active) and _RAW_OPS
    try:
        yield
    finally:
        _scope.active = before


def writes_in_place() -> bool:
    """Whether :func:`write_row` traced now writes in place."""
    return getattr(_scope, "active", False)


def write_row(buffer: tf.Tensor, index: tf.Tensor, row: tf.Tensor, *, private: tf.Tensor,
              after: Sequence[tf.Tensor] = ()) -> tf.Tensor:
    """``buffer`` with row ``index`` (int32 scalar) replaced by ``row``.

    Inside :func:`in_place`, where ``private`` (bool scalar: the loop wrote ``buffer`` by a
    copy before) holds, the row goes into ``buffer``'s own memory once every tensor in ``after``
    (each read of the old contents that is not already an input of ``row``) has been
    computed: the old contents are gone and the result is ``buffer`` itself. Elsewhere the
    result is a new tensor (private from then on) and ``buffer`` is unchanged."""
    indices = tf.reshape(index, [1])
    rows = tf.expand_dims(row, 0)

    def scatter() -> tf.Tensor:
        return tf.tensor_scatter_nd_update(buffer, tf.expand_dims(indices, 1), rows)

    if not writes_in_place():
        return scatter()

    def overwrite() -> tf.Tensor:
        with tf.control_dependencies(list(after)):
            return tf.raw_ops.InplaceUpdate(x=buffer, i=indices, v=rows)

    return tf.cond(private, overwrite, scatter)
