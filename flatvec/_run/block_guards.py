"""What an eager block runs inside (:meth:`flatvec._run.loop.CompiledLoop.advance_eagerly`):
a Ctrl-C held until the iteration it lands in is whole, and NumPy's BLAS on one thread."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf
import threadpoolctl

__all__ = ["ONE_BLAS_THREAD_FROM", "interrupts_deferred", "one_blas_thread"]

_blas: list[threadpoolctl.ThreadpoolController] = []  # found once: a scan costs 5-14 ms
# Carries whose largest array has fewer entries run with BLAS's own threads (see below).
ONE_BLAS_THREAD_FROM = 100_000


def one_blas_thread(carry: Any) -> contextlib.AbstractContextManager[Any]:
    """NumPy's BLAS on one thread in this block, for a carry on the host (NumPy arrays) with
    an array of :data:`ONE_BLAS_THREAD_FROM` entries or more. Why: the objective's kernels
    run on TensorFlow's threads between two products, and OpenBLAS's threads, which spin for
    a while after each product, took their cores. Measured (L-BFGS on the host, 40
    iterations, first call): digits MLP f64 (buffers of 480 000 entries) 0.95 s with
    OpenBLAS's threads, 0.73 s with one, an iteration 13.5-14.5 against 10-12 ms; the MLP in
    float32 and the PINN (24 000 entries) unchanged. Finding the libraries to limit scans
    every library the process loaded (TensorFlow's: some 250) once, 5-14 ms, which only
    large carries recover."""
    sizes = [getattr(a, "size", 0) for a in tf.nest.flatten(carry) if isinstance(a, np.ndarray)]
    if max(sizes, default=0) < ONE_BLAS_THREAD_FROM:
        return contextlib.nullcontext()
    if not _blas:  # the libraries loaded in the process, scanned once (TensorFlow's: ~250)
        _blas.append(threadpoolctl.ThreadpoolController())
    return _blas[0].limit(limits=1, user_api="blas")


@contextlib.contextmanager
def interrupts_deferred(held: list[Any] | None = None) -> Iterator[list[Any]]:
    """Hold a Ctrl-C that arrives inside the block until it ends (in the main thread), so that
    the carry is never left half written; the block sees it in the list it is given. At the
    end the interrupt is raised, or with ``held`` appended to it as ``(handler, args)`` for
    the caller to raise later."""
    caught: list[Any] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, previous)
        handler = _replay(previous)
        if caught and handler is not None:
            if held is None:
                handler(*caught[0])
            else:
                held.append((handler, caught[0]))


def _replay(previous: Any) -> Any:
    """What to call for a held Ctrl-C, given the handler that was in place: that handler;
    nothing where it was ``SIG_IGN``; else (``SIG_DFL``, or a handler not set from Python) the
    signal raised again, so that its own action (ending the process) takes place."""
    if callable(previous):
        return previous
    if previous == signal.SIG_IGN:
        return None
    return lambda *args: signal.raise_signal(signal.SIGINT)
