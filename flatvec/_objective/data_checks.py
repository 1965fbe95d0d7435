"""Checks of a model's data that run before anything is traced.

TensorFlow reports a label of the wrong shape, a loss of the wrong dtype or a feature count the
model does not take as an error deep inside the graph builder, naming graph nodes. These checks
run the model and the loss once, eagerly, on the first two samples of the first batch and turn
such failures into errors that name the argument at fault.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from flatvec._objective.data import Batch, FullBatchData

__all__ = ["check_model_takes_data"]


def _describe(structure: Any) -> str:
    shapes = [f"{tuple(t.shape)} {t.dtype.name}" for t in tf.nest.flatten(structure)]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _first_batch(data: FullBatchData) -> Batch:
    if data.batches is not None:
        return data.batches[0]
    if data.stacked is not None:
        return Batch(*(None if p is None else tf.nest.map_structure(lambda t: t[0], p)
                       for p in data.stacked))
    for element in data.dataset.take(1):
        return Batch(*element) if len(element) == 3 else Batch(element[0], element[1], None)
    raise ValueError("dataset: is empty")


def check_model_takes_data(
    model: Any, data: FullBatchData, loss_fn: Callable[[Any, Any], Any],
    data_loss: Callable[[Batch, Any], Any],
) -> int:
    """Run ``model`` and the loss on two samples; raise a clear error where they fail.

    ``training=False``, so no layer state (batch-norm statistics) changes; no variable is
    written. Returns the model's output elements per sample.
    """
    batch = _first_batch(data)
    sample = Batch(*(None if p is None else tf.nest.map_structure(lambda t: t[:2], p)
                     for p in batch))
    for t in tf.nest.flatten(sample.y):
        if not (t.dtype.is_floating or t.dtype.is_integer or t.dtype.is_bool):
            raise TypeError(f"dataset: labels must be numeric, got dtype {t.dtype.name}")
    try:
        y_pred = model(sample.x, training=False)
    except Exception as err:
        unbatched = any(t.shape.rank is not None and t.shape.rank <= 1
                        for t in tf.nest.flatten(batch.x))
        hint = (" (is the dataset batched? a tf.data.Dataset must yield batches)"
                if unbatched else "")
        raise ValueError(
            f"dataset: the model does not take inputs x of shape {_describe(sample.x)} "
            f"(a sample of the first batch){hint}: {_first_line(err)}") from err
    try:
        losses = loss_fn(sample.y, y_pred)
    except Exception as err:
        raise ValueError(
            f"dataset: labels y of shape {_describe(sample.y)} do not fit the model's output "
            f"of shape {_describe(y_pred)} under the loss: {_first_line(err)}") from err
    for t in tf.nest.flatten(losses):
        if not tf.as_dtype(t.dtype).is_floating:
            raise TypeError(f"loss: must return floating values, got dtype {t.dtype.name}")
    try:
        data_loss(sample, y_pred)
    except Exception as err:
        if str(err).startswith("loss:"):  # flatvec's own, already naming the argument
            raise
        raise ValueError(
            f"dataset: sample_weight of shape {_describe(sample.sample_weight)} does not fit "
            f"the per-sample losses of shape {_describe(losses)}: {_first_line(err)}") from err
    rows = max(int(tf.nest.flatten(sample.x)[0].shape[0]), 1)
    return sum(int(np.prod(t.shape)) for t in tf.nest.flatten(y_pred)) // rows
