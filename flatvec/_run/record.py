"""One iteration as the host reads it: the typed record every run reports, whoever drives it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["LOG_FIELDS", "WIDTH", "IterationRecord", "records"]


class IterationRecord(NamedTuple):
    """An iteration's numbers: what the history, Keras callbacks and the progress bar see.

    The compiled loop hands them back as rows of one float64 tensor (one host transfer per
    call), in the order of these fields (:meth:`from_row`); the SciPy route builds them from
    SciPy's callbacks."""

    loss: float
    grad_norm: float  # ||g||_inf
    step_size: float  # NaN where the method does not report one
    nfev: int
    njev: int
    nhev: int
    nit: int
    status: int  # flatvec.Status code

    @classmethod
    def from_row(cls, row: np.ndarray) -> IterationRecord:
        """The record of one report row (float64; the counts are exact integers)."""
        loss, grad_norm, step_size, nfev, njev, nhev, nit, status = (float(v) for v in row)
        return cls(loss, grad_norm, step_size, int(nfev), int(njev), int(nhev), int(nit),
                   int(status))

    def logs(self) -> dict[str, float]:
        """The Keras logs of the iteration (:data:`LOG_FIELDS`)."""
        return {name: float(getattr(self, name)) for name in LOG_FIELDS}


# What Keras callbacks and the history get of a record, besides nit and time.
LOG_FIELDS = ("loss", "grad_norm", "step_size", "nfev", "njev", "nhev")
WIDTH = len(IterationRecord._fields)


def records(rows: np.ndarray) -> list[IterationRecord]:
    """The records of a call's rows, leaving out the rows it did not use (``nit`` -1)."""
    nit = IterationRecord._fields.index("nit")
    return [IterationRecord.from_row(row) for row in rows if row[nit] >= 0]
