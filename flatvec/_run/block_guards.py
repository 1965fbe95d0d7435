"""What an eager block runs inside (:meth:`flatvec._run.loop.CompiledLoop.advance_eagerly`):
a Ctrl-C held until the iteration it lands in is whole, and NumPy's BLAS on one thread where
that is measured to pay."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf
import threadpoolctl

__all__ = ["ONE_BLAS_THREAD_FROM", "BlasThreads", "interrupts_deferred"]

_blas: list[threadpoolctl.ThreadpoolController] = []  # found once: a scan costs 5-14 ms
# Carries whose largest array has fewer entries run with BLAS's own threads (see BlasThreads).
ONE_BLAS_THREAD_FROM = 100_000
# Host iterations measured on one BLAS thread before a loop chooses (see BlasThreads).
MEASURED_ITERATIONS = 3
# The objective's share of those iterations' time under which BLAS keeps its threads.
THREADS_BELOW_SHARE = 0.5


class BlasThreads:
    """Whether NumPy's BLAS runs on its own threads or on one in a loop's host blocks: chosen
    per loop from what its blocks measured, for a carry on the host (NumPy arrays) with an
    array of :data:`ONE_BLAS_THREAD_FROM` entries or more (smaller carries keep BLAS's own
    threads: OpenBLAS does not split small products, and the limit is not worth its scan).

    Why measured: the objective's kernels run on TensorFlow's threads between two products,
    and OpenBLAS's threads, which spin for a while after each product, take their cores; but
    the passes over n themselves run faster on two threads. Which weighs more depends on the
    problem (L-BFGS on the host, 40 iterations, per iteration in the objective + outside it):

    ========================  ====================  ====================
    problem                   one BLAS thread       OpenBLAS's threads
    ========================  ====================  ====================
    digits MLP f64            8.2 + 1.8 ms          10.9 + 2.3 ms
    digits MLP f32            3.1 + 1.0 ms          3.4 + 1.1 ms
    Rosenbrock n = 10^5       2.9 + 5.0 ms          2.3 + 3.1 ms
    Rosenbrock n = 10^6       15.5 + 41.1 ms        19.1 + 30.8 ms
    ========================  ====================  ====================

    The threads cost the objective up to a third and save the passes a quarter to a third, so
    they pay where the objective takes less than about half of an iteration. Blocks run on one
    thread until :data:`MEASURED_ITERATIONS` iterations have been measured so; from then on
    the loop keeps BLAS's threads if the objective's share of those blocks was under
    :data:`THREADS_BELOW_SHARE` (the choice is the loop's: a warm repeat makes it at once)."""

    def __init__(self) -> None:
        self._objective_seconds = 0.0
        self._block_seconds = 0.0
        self._iterations = 0
        self._threads: bool | None = None  # None: still measuring on one thread

    def record(self, iterations: int, block_seconds: float, objective_seconds: float) -> None:
        """A host block of ``iterations`` took ``block_seconds``, ``objective_seconds`` of them
        in the objective's functions (counted only while measuring on one thread)."""
        if self._threads is not None:
            return
        self._iterations += iterations
        self._block_seconds += block_seconds
        self._objective_seconds += objective_seconds
        if self._iterations >= MEASURED_ITERATIONS and self._block_seconds > 0:
            share = self._objective_seconds / self._block_seconds
            self._threads = share < THREADS_BELOW_SHARE

    def limit(self, carry: Any) -> contextlib.AbstractContextManager[Any]:
        """The block's context: NumPy's BLAS limited to one thread, unless the carry is small
        or the loop has chosen BLAS's threads."""
        sizes = [getattr(a, "size", 0) for a in tf.nest.flatten(carry)
                 if isinstance(a, np.ndarray)]
        if max(sizes, default=0) < ONE_BLAS_THREAD_FROM or self._threads:
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
