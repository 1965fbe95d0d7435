"""Reusing a model's :class:`Objective` across ``minimize(model, dataset)`` calls.

Keras keeps ``model.train_function`` between ``fit`` calls; flatvec keeps the objective (and
with it the compiled iterations cached on it) between ``minimize`` calls on the same model,
data, loss and options. A first call on the digits MLP spends about 1 s tracing and setting
up graphs; a repeated call then costs only its iterations.

What decides a reuse (anything else builds a new objective):

- the model object, and the identities of its trainable variables (``trainable`` toggled, or
  layers added, gives new ones);
- the data: a ``tf.data.Dataset`` by identity (datasets are immutable; a dataset is read once
  per objective, so a dataset with random transformations is not re-read by a later call:
  pass a new dataset object for that), arrays and tensors by content (a fingerprint of their
  bytes, so that an array changed in place, or ``X / 16`` built anew, is handled right);
- the loss (a Keras built-in loss by its function and options, anything else by identity;
  ``None`` by the model's compiled loss), ``batch_size``, ``training``, ``in_memory``,
  ``jit_compile`` and the ``tf.distribute`` strategy in scope.

As with Keras' ``train_function``, Python state that was read while tracing (a constant in a
custom loss, a regularizer added to a layer afterwards) stays as it was at the first call:
call :func:`clear_objective_cache` after changing it.

The cache lives on the model (at most :data:`MAX_ENTRIES` objectives, least recently used
dropped first), so it goes when the model goes. An objective holding more than
:data:`MAX_CACHED_BYTES` of data in memory is not kept: on such data an evaluation costs far
more than the tracing a reuse would save, and keeping several copies could exhaust memory.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = ["MAX_CACHED_BYTES", "MAX_ENTRIES", "cached_objective", "clear_objective_cache"]

MAX_ENTRIES = 4
MAX_CACHED_BYTES = 256 * 2**20
_ATTRIBUTE = "_flatvec_objectives"


def clear_objective_cache(model: Any) -> None:
    """Forget the objectives ``minimize`` kept for ``model``; its next call traces anew.

    Parameters
    ----------
    model : keras.Model
        A model passed to :func:`flatvec.minimize` before (any other object is left as it is).
    """
    model.__dict__.pop(_ATTRIBUTE, None)


def cached_objective(
    model: Any,
    dataset: Any,
    loss: Any,
    options: dict[str, Any],
    build: Callable[[], Any],
) -> Any:
    """The objective kept for this (model, data, loss, options), or ``build()``'s, kept."""
    try:
        key, dataset_ref, loss_object = _key(model, dataset, loss, options)
    except _Uncacheable:
        return build()
    cache = model.__dict__.get(_ATTRIBUTE)
    if cache is None:
        cache = OrderedDict()
        # Past Keras' attribute tracking: this is no layer state and must not be saved.
        object.__setattr__(model, _ATTRIBUTE, cache)
    entry = cache.get(key)
    # A dataset is keyed by id: check that the id still names the same (living) object.
    if entry is not None and (entry[1] is None or entry[1]() is dataset):
        cache.move_to_end(key)
        return entry[0]
    objective = build()
    if objective.data_bytes > MAX_CACHED_BYTES:
        return objective
    # The loss object is kept alive with the entry: a loss keyed by id must not be freed and
    # its id given to another callable while the entry exists.
    cache[key] = (objective, dataset_ref, loss_object)
    while len(cache) > MAX_ENTRIES:
        cache.popitem(last=False)
    return objective


class _Uncacheable(Exception):
    """Raised by the key functions for inputs they cannot identify safely."""


def _key(
    model: Any, dataset: Any, loss: Any, options: dict[str, Any]
) -> tuple[Hashable, Any, Any]:
    # The cached objective holds the variables, so their ids cannot be reused by other objects
    # while the entry exists.
    variables = tuple(id(v) for v in model.trainable_variables)
    strategy = id(tf.distribute.get_strategy()) if tf.distribute.has_strategy() else None
    data_key, dataset_ref = _data_key(dataset)
    loss_object = getattr(model, "loss", None) if loss is None else loss
    option_key = tuple(sorted(options.items()))
    try:
        hash(option_key)
    except TypeError as err:  # odd option values: Objective.from_model reports them
        raise _Uncacheable from err
    key = (variables, strategy, data_key, _loss_key(loss_object), option_key)
    return key, dataset_ref, loss_object


def _data_key(dataset: Any) -> tuple[Hashable, Any]:
    if isinstance(dataset, tf.data.Dataset):
        return ("dataset", id(dataset)), weakref.ref(dataset)
    if isinstance(dataset, (tuple, list)):
        return ("arrays", tuple(_fingerprint(part) for part in dataset)), None
    raise _Uncacheable


def _fingerprint(array: Any) -> Hashable:
    if array is None:
        return None
    if isinstance(array, tf.Tensor):
        array = array.numpy()
    if not isinstance(array, np.ndarray) or array.dtype == object:
        raise _Uncacheable  # lists, dicts of features, ...: not worth the risk
    digest = hashlib.blake2b(np.ascontiguousarray(array).data, digest_size=16).hexdigest()
    return array.dtype.str, array.shape, digest


def _loss_key(loss: Any) -> Hashable:
    if loss is None or isinstance(loss, str):
        return loss
    cls = type(loss)
    if isinstance(loss, keras.losses.Loss) and getattr(keras.losses, cls.__name__, None) is cls:
        # Keras' public loss classes compute what their class and config say, so a loss
        # object created afresh for every call still reuses the objective.
        return cls, repr(sorted(loss.get_config().items()))
    return ("identity", id(loss))
