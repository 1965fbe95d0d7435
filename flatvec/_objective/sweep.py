"""The per-batch map-reduce behind every objective: what one batch contributes (loss sum, count,
gradient, a curvature product or matrix) and its sum over in-memory or streamed batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

from flatvec._objective import hessian_mode
from flatvec._objective.data import Batch
from flatvec._objective.objective_checks import check_scalar
from flatvec.space import FlatParamSpace

__all__ = ["Terms", "Want", "add_terms", "closure_terms", "differentiate", "loop_dataset",
           "loop_stacked", "sweep_data", "zero_terms"]


class Terms(NamedTuple):
    """Per-batch sums: weighted loss sum, element count, gradient (and Hv) of the sum."""

    loss_sum: tf.Tensor
    count: tf.Tensor
    grad: tf.Tensor  # empty for a value-only sweep
    hvp: tf.Tensor  # empty when no product was asked for (keeps loop structures None-free);
    # the dense Gauss-Newton matrix flattened, for a ``matrix`` sweep


class Want(NamedTuple):
    """What a sweep computes besides the value: the gradient, and for tangents ``v`` the
    Hessian-vector product (or, with ``ggn``, the generalized Gauss-Newton product); with
    ``matrix`` the gradient and the dense Gauss-Newton matrix."""

    gradient: bool = True
    tangents: list[tf.Tensor] | None = None
    ggn: bool = False
    matrix: bool = False


def differentiate(
    space: FlatParamSpace,
    loss_fn: Callable[[], Any],
    want: Want,
    allow_unused: bool,
    reverse_over_reverse: bool = False,
) -> Terms:
    """Value, and as ``want`` asks the gradient and a Hessian-vector product, of ``loss_fn``
    in the space. ``loss_fn`` returns either a scalar or ``(loss_sum, count)``.

    The product is forward-over-reverse, or with ``reverse_over_reverse`` the gradient of
    ``g . v`` (for code that holds function calls or control flow:
    :mod:`flatvec._objective.hessian_mode`)."""
    variables = space.tf_variables
    empty = tf.zeros([0], space.dtype)
    one = tf.ones([], space.dtype)

    def evaluate() -> tuple[tf.Tensor, tf.Tensor]:
        out = loss_fn()
        loss_sum, count = out if isinstance(out, tuple) else (out, None)
        check_scalar(loss_sum, "loss_fn")
        return tf.cast(loss_sum, space.dtype), one if count is None else count

    def value_and_grad() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss_sum, count = evaluate()
        grads = tape.gradient(loss_sum, variables, unconnected_gradients="none")
        return loss_sum, count, space.pack(grads, allow_unused=allow_unused, name="grads")

    if want.tangents is None and not want.gradient:
        loss_sum, count = evaluate()
        return Terms(loss_sum, count, empty, empty)
    if want.tangents is None:
        return Terms(*value_and_grad(), empty)
    if reverse_over_reverse:
        def value_and_flat_grad() -> tuple[tuple[tf.Tensor, tf.Tensor], tf.Tensor]:
            loss_sum, count, g = value_and_grad()
            return (loss_sum, count), g

        (loss_sum, count), g, hv = hessian_mode.reverse_over_reverse(
            value_and_flat_grad, variables, space.pack(want.tangents, name="tangents"),
            lambda parts: space.pack(parts, name="hvp"))
        return Terms(loss_sum, count, g, hv)
    with tf.autodiff.ForwardAccumulator(variables, want.tangents) as acc:
        loss_sum, count, g = value_and_grad()
    hv = acc.jvp(g, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return Terms(loss_sum, count, g, hv)


def closure_terms(space: FlatParamSpace, loss_fn: Callable[[], Any],
                  allow_unused: bool) -> Callable[[Batch | None, Want], Terms]:
    """The ``terms(batch, want)`` of a closure objective (no data: ``batch`` is None), whose
    Hessian-vector products take the mode that is right for ``loss_fn``, decided on the first
    product's trace (:mod:`flatvec._objective.hessian_mode`)."""
    mode: dict[str, bool] = {}

    def terms(batch: Batch | None, want: Want) -> Terms:
        del batch
        if want.tangents is not None and "reverse" not in mode:
            mode["reverse"] = hessian_mode.needs_reverse_over_reverse(loss_fn)
        return differentiate(space, loss_fn, want, allow_unused,
                             reverse_over_reverse=mode.get("reverse", False))

    return terms


def _as_batch(element: Any) -> Batch:
    return Batch(element[0], element[1], element[2] if len(element) == 3 else None)


def add_terms(terms: list[Terms]) -> Terms:
    """The field-wise sum of batches' terms."""
    if len(terms) == 1:
        return terms[0]
    return Terms(
        tf.add_n([t.loss_sum for t in terms]),
        tf.add_n([t.count for t in terms]),
        tf.add_n([t.grad for t in terms]),
        tf.add_n([t.hvp for t in terms]),
    )


def zero_terms(dtype: tf.DType, size: int, want: Want) -> Terms:
    """The terms of no data, shaped as ``want``'s (a loop's start)."""
    zero, zeros, empty = tf.zeros([], dtype), tf.zeros([size], dtype), tf.zeros([0], dtype)
    if want.matrix:
        return Terms(zero, zero, zeros, tf.zeros([size * size], dtype))
    return Terms(zero, zero, zeros if want.gradient and not want.ggn else empty,
                 zeros if want.tangents is not None else empty)


def loop_stacked(run: Callable[[Batch], Terms], stacked: Batch, total: Terms) -> Terms:
    """Sum ``run`` over batches stacked on a leading axis, one batch in the graph."""
    num = tf.shape(tf.nest.flatten(stacked.x)[0])[0]

    def body(i: tf.Tensor, acc: Terms) -> tuple[tf.Tensor, Terms]:
        batch = tf.nest.map_structure(lambda t: None if t is None else t[i], stacked)
        return i + 1, add_terms([acc, run(Batch(*batch))])

    _, total = tf.while_loop(lambda i, _: i < num, body, (tf.constant(0), total))
    return total


def loop_dataset(run: Callable[[Batch], Terms], dataset: Any, total: Terms) -> Terms:
    """Sum ``run`` over a (possibly distributed) dataset, streamed with one iterator.

    An explicit ``get_next_as_optional`` loop is 3-6x faster than an AutoGraph
    ``for batch in dataset`` (scan + take_while + reduce) on the digits MLP with batch 64.
    """
    iterator = iter(dataset)

    def body(opt: Any, acc: Terms) -> tuple[Any, Terms]:
        return iterator.get_next_as_optional(), add_terms([acc, run(_as_batch(opt.get_value()))])

    _, total = tf.while_loop(
        lambda opt, _: opt.has_value(), body, (iterator.get_next_as_optional(), total)
    )
    return total


def sweep_data(terms: Callable[[Batch | None, Want], Terms], data: Any, want: Want, *,
               dtype: tf.DType, size: int | None,
               strategy: tf.distribute.Strategy | None) -> Terms:
    """``terms`` summed over every batch of ``data`` (a prepared ``FullBatchData``; None: a
    closure's single "batch") and normalized by the count: ``(f, g[, Hv])``. Under a strategy
    each batch's terms are computed on the replicas and all-reduced."""
    if data is None:
        return terms(None, want)

    def run(batch: Batch) -> Terms:
        if strategy is None:
            return terms(batch, want)
        per_replica = strategy.run(terms, args=(batch, want))
        return tf.nest.map_structure(
            lambda t: strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None), per_replica)

    if data.batches is not None:
        total = add_terms([run(b) for b in data.batches])
    else:
        total = zero_terms(dtype, size, want)
        if data.stacked is not None:
            total = loop_stacked(run, data.stacked, total)
            if data.tail is not None:
                total = add_terms([total, run(data.tail)])
        else:
            total = loop_dataset(run, data.dataset, total)
    inv = 1.0 / total.count
    return Terms(total.loss_sum * inv, total.count, total.grad * inv, total.hvp * inv)
