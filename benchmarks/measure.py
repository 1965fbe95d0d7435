"""Measurement: wall clocks, the bare cost of one evaluation, resident memory, and the record.

Memory. ``tracemalloc`` sees only Python's allocator, not TensorFlow's or PyTorch's buffers, so
memory is measured on the whole process: a background thread samples the resident set size
(``/proc/self/statm``) every few milliseconds during a run and reports the peak *increase* over
the size at the start of the run. Memory freed by an earlier run and kept by the allocator is
reused without growing the process, so the number is "how much more memory this run needed than
was already mapped", a lower bound on its working set. Where ``/proc`` is missing the
``getrusage`` high-water mark is used instead (it only moves when a new process peak is set).
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

__all__ = ["RssSampler", "Record", "RunOutput", "Trace", "eval_times", "timed"]

MIB = 2.0**20


class Trace(NamedTuple):
    """A loss trace: per point the cumulative evaluations, seconds since the start, and loss.

    Points are iterations (flatvec, SciPy) or evaluations (tfp, torch); the loss is the one
    reported at that point.
    """

    nfev: list[int]
    time: list[float]
    loss: list[float]


class RunOutput(NamedTuple):
    """What one optimization run returns (numbers of the run, taken from the method itself)."""

    nit: int
    nfev: int
    loss: float
    grad_inf: float
    message: str
    trace: Trace
    nhev: int | None = 0  # Hessian-vector products (None: the method does not report them)
    njev: int | None = None  # dense Jacobians or gradients of the least-squares methods


@dataclass
class Record:
    """One problem x method row (see ``report`` for the meaning of each column)."""

    problem: str
    method: str
    dtype: str
    n: int
    max_iter: int
    skipped: str | None = None
    error: str | None = None
    nit: int | None = None
    nfev: int | None = None
    nhev: int | None = None
    njev: int | None = None
    loss: float | None = None
    grad_inf: float | None = None
    message: str = ""
    wall: float | None = None  # median over the timed repeats, seconds
    walls: list[float] = field(default_factory=list)
    t_first: float | None = None  # the first (cold) call: tracing/compilation included
    t_eval: float | None = None  # median seconds of one bare loss+gradient evaluation
    mem_mib: float | None = None
    trace: Trace | None = None
    # derived in `analysis`
    overhead: float | None = None
    overhead_steady: float | None = None
    target: float | None = None
    time_to_target: float | None = None
    evals_to_target: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["trace"] = None if self.trace is None else self.trace._asdict()
        return out


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class RssSampler:
    """Context manager: peak resident-set growth during the block, in MiB (``.peak_mib``)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._use_proc = _rss_bytes() is not None

    def __enter__(self) -> RssSampler:
        if self._use_proc:
            self._base = self._peak = _rss_bytes() or 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            self._base = _maxrss_bytes()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __exit__(self, *exc: Any) -> None:
        if self._use_proc:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes() or 0)
        else:
            self._peak = _maxrss_bytes()
        self.peak_mib = max(0.0, (self._peak - self._base) / MIB)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run ``fn()``; return its value, wall seconds and peak RSS growth (MiB)."""
    with RssSampler() as mem:
        start = time.perf_counter()
        value = fn()
        wall = time.perf_counter() - start
    return value, wall, mem.peak_mib


def eval_times(
    evaluate: Callable[[], Any],
    *,
    warmup: int = 2,
    min_calls: int = 5,
    max_calls: int = 50,
    budget: float = 0.3,
) -> list[float]:
    """Seconds of single ``evaluate()`` calls (each must block until its result exists).

    ``warmup`` untimed calls first (tracing, allocator growth), then calls until ``budget``
    seconds or ``max_calls``, at least ``min_calls``.
    """
    for _ in range(warmup):
        evaluate()
    times: list[float] = []
    spent = 0.0
    while len(times) < min_calls or (spent < budget and len(times) < max_calls):
        start = time.perf_counter()
        evaluate()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return times
