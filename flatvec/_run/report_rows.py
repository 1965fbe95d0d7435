"""A carry of the compiled loop (:class:`flatvec._run.loop.Carry`) as the row of an
:class:`~flatvec._run.record.IterationRecord`: traced into the loop, or read on the host in the
eager tier."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from flatvec._run.record import IterationRecord
from flatvec._run.stopping import grad_norm

__all__ = ["counter_values", "counters", "host_report_row", "report_row"]


def counters(objective: Any) -> tuple[Any, Any, Any]:
    """The objective's evaluation counters (nfev, njev, nhev)."""
    return objective.nfev, objective.njev, objective.nhev


def counter_values(objective: Any) -> tuple[Any, Any, Any]:
    """The counters' values, read on the host (NumPy int64 scalars). ``value()``, not
    ``numpy()``: a variable's ``numpy()`` reads through an Identity op, whose first int64 use
    in a process costs 1-5 ms."""
    nfev, njev, nhev = (c.value().numpy() for c in counters(objective))
    return nfev, njev, nhev


def _report_fields(carry: Any, counts: tuple[Any, Any, Any]) -> list[Any]:
    """The carry's :class:`~flatvec._run.record.IterationRecord` fields, in order, with the
    objective's ``counts`` (nfev, njev, nhev: its counters, or their values)."""
    state = carry.state
    step_size = getattr(state, "step_size", None)
    if step_size is None:
        step_size = tf.zeros([], state.f.dtype)
    nfev, njev, nhev = counts
    fields = {"loss": state.f, "grad_norm": grad_norm(state.g), "step_size": step_size,
              "nfev": nfev, "njev": njev, "nhev": nhev, "nit": carry.nit,
              "status": carry.status}
    return [fields[name] for name in IterationRecord._fields]


def report_row(carry: Any, counts: tuple[Any, Any, Any]) -> tf.Tensor:
    """The carry's :class:`~flatvec._run.record.IterationRecord` as one float64 row, with the
    objective's ``counts`` (:func:`counters`)."""
    return tf.stack([tf.cast(value, tf.float64) for value in _report_fields(carry, counts)])


def host_report_row(carry: Any, counts: Any) -> list[float]:
    """:func:`report_row` on the host, field by field, with the counters' values ``counts``
    (eagerly: no casts and stack to dispatch; float64 holds every field exactly, as the
    traced cast does)."""
    return [np.asarray(value, np.float64)[()] for value in _report_fields(carry, counts)]
