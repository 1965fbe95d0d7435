"""Turning user data into something the full-batch objective can sweep quickly.

Measured on the digits MLP (f+g over 1797 samples): ``Dataset.reduce`` costs 7.5x one in-memory
batch and an AutoGraph ``for batch in dataset`` loop 2-14x, while the same batches held as tensors
and unrolled at trace time cost 0.7x (the executor runs independent batches in parallel). So data
that fits in memory is materialized once; larger data is streamed every evaluation (with an
explicit ``get_next_as_optional`` loop in ``objective.py``: ~2-3x one batch instead of ~11x for
the AutoGraph loop; see ``benchmarks/objective_timing.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

__all__ = ["Batch", "FullBatchData", "check_data_options", "held_bytes", "largest_batch",
           "prepare_data"]

# Above this many batches the trace-time unroll makes graphs too large; a tf.while_loop over
# batches stacked into one tensor keeps the graph one batch big.
MAX_UNROLLED_BATCHES = 32
DEFAULT_MEMORY_LIMIT = 2**30  # bytes


class Batch(NamedTuple):
    """One ``(x, y, sample_weight)`` element; ``sample_weight`` may be None."""

    x: Any
    y: Any
    sample_weight: Any


class FullBatchData(NamedTuple):
    """Data prepared for the full-batch sweep.

    Exactly one of the three sources is set: ``batches`` (few in-memory batches, unrolled),
    ``stacked`` + ``tail`` (many equal in-memory batches looped over with ``tf.while_loop``) or
    ``dataset`` (streamed each evaluation).
    """

    batches: tuple[Batch, ...] | None
    stacked: Batch | None
    tail: Batch | None
    dataset: tf.data.Dataset | None
    num_samples: int | None


def _as_batch(element: Any, where: str) -> Batch:
    if isinstance(element, dict):
        raise TypeError(f"{where}: dict elements are not supported; use (x, y[, sample_weight])")
    if not isinstance(element, (tuple, list)) or len(element) not in (2, 3):
        raise ValueError(
            f"{where}: expected elements (x, y) or (x, y, sample_weight), got {type(element)}"
        )
    return Batch(element[0], element[1], element[2] if len(element) == 3 else None)


def _spec(batch: Batch) -> list[tuple[str, tuple, tf.DType]]:
    """Per tensor of a batch: field, shape past the batch axis, dtype."""
    out = []
    for field, part in zip(Batch._fields, batch):
        for t in () if part is None else tf.nest.flatten(part):
            out.append((field, tuple(t.shape[1:]), t.dtype))
    return out


def check_batches_agree(batches: list[Batch]) -> None:
    """Every batch must have the first's structure, dtypes and shapes past the batch axis.

    ``tf.data`` keeps the structure of a concatenation but not its shapes: labels of another
    width in some batches would otherwise be broadcast against the model's output silently.
    """
    first = _spec(batches[0])
    for i, batch in enumerate(batches[1:], start=1):
        spec = _spec(batch)
        if spec != first:
            raise ValueError(
                f"dataset: batch {i} does not match batch 0 (field, shape past the batch axis, "
                f"dtype): {[(f, s, d.name) for f, s, d in spec]} vs "
                f"{[(f, s, d.name) for f, s, d in first]}")


def _nbytes(batch: Batch) -> int:
    total = 0
    for part in tf.nest.flatten(tuple(batch)):
        if part is not None:
            total += int(np.prod(part.shape)) * tf.as_dtype(part.dtype).size
    return total


def held_bytes(data: FullBatchData) -> int:
    """Bytes of the batches ``data`` holds in memory (0 for a streamed dataset)."""
    parts = [*(data.batches or ()), data.stacked, data.tail]
    return sum(_nbytes(part) for part in parts if part is not None)


def _rows(batch: Batch) -> int:
    return int(tf.nest.flatten(batch.x)[0].shape[0])


def largest_batch(data: FullBatchData) -> int | None:
    """Samples in the largest in-memory batch (None for a streamed dataset)."""
    if data.batches is not None:
        return max(_rows(b) for b in data.batches)
    if data.stacked is not None:
        stacked = int(tf.nest.flatten(data.stacked.x)[0].shape[1])
        return max(stacked, _rows(data.tail)) if data.tail is not None else stacked
    return None


def check_data_options(batch_size: Any, training: Any, in_memory: Any) -> None:
    """The types and values of the model form's data options (``minimize`` checks them before
    it looks up a cached objective by them, where 0 == False and 4.0 == 4 would find one;
    ``Objective.from_model`` checks them too)."""
    if not isinstance(training, bool):
        raise TypeError(f"training: expected a bool, got {training!r}")
    if in_memory is not None and not isinstance(in_memory, bool):
        raise TypeError(f"in_memory: expected True, False or None, got {in_memory!r}")
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size: expected a positive int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")


def prepare_data(
    data: Any,
    *,
    batch_size: int | None = None,
    in_memory: bool | None = None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> FullBatchData:
    """Prepare ``data`` for exact full-batch sweeps.

    Parameters
    ----------
    data : tf.data.Dataset or tuple of arrays
        A finite dataset of ``(x, y)`` / ``(x, y, sample_weight)`` batches, or such a tuple of
        NumPy arrays / tensors (batched here with ``batch_size``; default one batch).
    in_memory : bool, optional
        True: materialize the dataset (it must be finite). False: stream it every evaluation.
        None: materialize when it is finite and its batches total at most ``memory_limit`` bytes.
    """
    if isinstance(data, (tuple, list)):
        batch = _as_batch(tuple(data), "dataset")
        arrays = [tf.convert_to_tensor(a) for a in batch if a is not None]
        n = int(arrays[0].shape[0])
        if any(int(a.shape[0]) != n for a in arrays):
            raise ValueError("dataset: x, y and sample_weight must have the same first dimension")
        data = tf.data.Dataset.from_tensor_slices(tuple(arrays)).batch(batch_size or n)
    elif not isinstance(data, tf.data.Dataset):
        raise TypeError(
            f"dataset: expected a tf.data.Dataset or a tuple of arrays, got {type(data).__name__}"
        )
    elif batch_size is not None:
        raise ValueError("batch_size: only for array data; batch the tf.data.Dataset yourself")

    _as_batch(data.element_spec, "dataset")  # a dict spec must not pass as its keys
    cardinality = int(data.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError("dataset: is infinite (repeat()?); a full-batch objective needs one pass")
    if in_memory is False:
        return FullBatchData(None, None, None, data, None)

    batches: list[Batch] = []
    total = 0
    for element in data:
        batch = _as_batch(tuple(element), "dataset")
        total += _nbytes(batch)
        if in_memory is None and total > memory_limit:
            return FullBatchData(None, None, None, data, None)
        batches.append(batch)
    if not batches:
        raise ValueError("dataset: is empty")
    check_batches_agree(batches)
    num_samples = sum(_rows(b) for b in batches)
    if len(batches) <= MAX_UNROLLED_BATCHES:
        return FullBatchData(tuple(batches), None, None, None, num_samples)
    return _stack(batches, num_samples, data)


def _stack(batches: list[Batch], num_samples: int, data: tf.data.Dataset) -> FullBatchData:
    """Stack the equal-size batches into one leading axis; keep a ragged last batch apart."""
    sizes = [_rows(b) for b in batches]
    head, tail = batches, None
    if sizes[-1] != sizes[0]:
        head, tail = batches[:-1], batches[-1]
    if any(s != sizes[0] for s in sizes[: len(head)]):
        # Uneven batches in the middle cannot be stacked: stream them from an in-memory cache.
        return FullBatchData(None, None, None, data.cache(), num_samples)
    stacked = Batch(
        *(
            None if parts[0] is None else tf.nest.map_structure(lambda *t: tf.stack(t), *parts)
            for parts in zip(*head)
        )
    )
    return FullBatchData(None, stacked, tail, None, num_samples)
