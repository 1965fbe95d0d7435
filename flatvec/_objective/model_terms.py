"""A Keras model and its data as the terms of an :class:`~flatvec.objective.Objective`: the
per-batch loss, regularization and derivatives that ``Objective.from_model`` sums over the data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import tensorflow as tf

from flatvec._autograph import with_autograph
from flatvec._objective.curvature import ggn_matrix_terms, ggn_terms
from flatvec._objective.data import (
    Batch,
    FullBatchData,
    check_data_options,
    largest_batch,
    prepare_data,
)
from flatvec._objective.data_checks import check_model_takes_data
from flatvec._objective.sweep import Terms, Want, differentiate
from flatvec.space import FlatParamSpace

__all__ = ["ModelProblem", "model_problem"]


class ModelProblem(NamedTuple):
    """What an objective of a model is built from (see :func:`model_problem`)."""

    space: FlatParamSpace
    terms: Callable[[Batch, Want], Terms]
    data: FullBatchData
    strategy: tf.distribute.Strategy | None
    ggn_rows: int | None  # rows of the Gauss-Newton Jacobian of the largest batch


def _resolve_loss(loss: Any, model: Any) -> Callable[[Any, Any], tf.Tensor]:
    """A function ``(y_true, y_pred) -> unreduced losses``."""
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError("loss: none given and the model was not compiled with a loss")
    if isinstance(loss, str):
        try:
            loss = keras.losses.get(loss)
        except ValueError as err:
            raise ValueError(f"loss: unknown Keras loss name {loss!r}") from err
    if isinstance(loss, keras.losses.Loss):
        return loss.call  # unreduced, keeping the object's options (from_logits, ...)
    if callable(loss):
        return loss
    raise TypeError(
        f"loss: expected a Keras loss name or object or a callable, got {type(loss).__name__}"
    )



def model_problem(model: Any, dataset: Any, loss: Any, *, batch_size: int | None,
                  training: bool, in_memory: bool | None, dtype: Any,
                  allow_unused: bool) -> ModelProblem:
    """The space, per-batch terms and data of ``model``'s full-batch loss over ``dataset``
    (arguments as :meth:`flatvec.Objective.from_model`, checked here)."""
    if not (hasattr(model, "trainable_variables") and callable(model)):
        raise TypeError(f"model: expected a keras.Model, got {type(model).__name__}")
    if not model.built:
        raise ValueError("model: is not built; call it once or build it before optimizing")
    check_data_options(batch_size, training, in_memory)
    loss_fn = with_autograph(_resolve_loss(loss, model))
    space = FlatParamSpace(model, dtype=dtype)
    strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    strategy = strategy or _model_strategy(model)
    data = prepare_data(
        dataset,
        batch_size=batch_size,
        in_memory=False if strategy is not None else in_memory,
    )
    if strategy is None:
        probe_data = data
    else:
        # Under a strategy the loss may read the replica context, which an eager probe
        # outside strategy.run lacks: there, errors come from the first trace.
        probe_data = None
        data = data._replace(dataset=strategy.experimental_distribute_dataset(data.dataset))

    def data_loss(batch: Batch, y_pred: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """The batch's weighted loss sum and element count (no regularization)."""
        losses = tf.cast(loss_fn(batch.y, y_pred), space.dtype)
        n = tf.cast(tf.shape(tf.nest.flatten(batch.x)[0])[0], space.dtype)
        if losses.shape.rank == 0:
            if batch.sample_weight is not None:
                raise ValueError(
                    "loss: returned a scalar, so sample weights cannot be applied; "
                    "return per-sample losses"
                )
            # An empty batch (a replica's share of a small last batch) has a NaN mean.
            loss_sum, count = tf.math.multiply_no_nan(losses, n), n
        else:
            if batch.sample_weight is not None:
                losses = losses * _broadcast_weights(batch.sample_weight, losses, space.dtype)
            loss_sum = tf.reduce_sum(losses)
            count = tf.cast(tf.size(losses), space.dtype)
        return loss_sum, count

    def regularization() -> tf.Tensor:
        # Read after the batch's forward pass (activity regularizers belong to it).
        if not model.losses:
            return tf.zeros([], space.dtype)
        return tf.cast(tf.add_n(model.losses), space.dtype)

    def batch_loss(batch: Batch) -> tuple[tf.Tensor, tf.Tensor]:
        loss_sum, count = data_loss(batch, model(batch.x, training=training))
        # Regularization enters each batch weighted by its share, so the total is counted
        # once whatever the batching.
        return loss_sum + count * regularization(), count

    def terms(batch: Batch, want: Want) -> Terms:
        if want.matrix:
            return ggn_matrix_terms(space, lambda: model(batch.x, training=training),
                                    lambda y_pred: data_loss(batch, y_pred), regularization,
                                    allow_unused)
        if want.ggn:
            return ggn_terms(space, lambda: model(batch.x, training=training),
                             lambda y_pred: data_loss(batch, y_pred), regularization,
                             want.tangents, allow_unused)
        return differentiate(space, lambda: batch_loss(batch), want, allow_unused)

    ggn_rows = None
    if probe_data is not None:
        outputs_per_sample = check_model_takes_data(model, probe_data, loss_fn, data_loss)
        batch_rows = largest_batch(probe_data)
        if batch_rows is not None:
            ggn_rows = batch_rows * outputs_per_sample
    return ModelProblem(space=space, terms=terms, data=data, strategy=strategy,
                        ggn_rows=ggn_rows)


def _broadcast_weights(weights: Any, losses: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    weights = tf.cast(weights, dtype)
    if weights.shape.rank is not None and losses.shape.rank is not None:
        if weights.shape.rank > losses.shape.rank:
            weights = tf.reshape(weights, tf.shape(losses))
        while weights.shape.rank < losses.shape.rank:
            weights = weights[..., None]
    return weights


def _model_strategy(model: Any) -> tf.distribute.Strategy | None:
    """The strategy whose scope created the model's variables, if it is not the default (a
    distributed variable's public ``distribute_strategy``)."""
    for v in model.trainable_variables:
        var = getattr(v, "value", v)  # a Keras variable's tf.Variable
        if isinstance(var, tf.distribute.DistributedValues):
            return var.distribute_strategy
    return None
