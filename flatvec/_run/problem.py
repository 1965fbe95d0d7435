"""Turning ``minimize``'s first two arguments into an objective and a start point."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from flatvec._objective.closure_cache import cached_closure_objective
from flatvec._objective.model_cache import cached_objective
from flatvec.objective import Objective

__all__ = ["Problem", "resolve_problem"]


class Problem(NamedTuple):
    """An objective, its start point, and the Keras model behind it (if any)."""

    objective: Objective
    x0: tf.Tensor
    model: Any


def _is_model(obj: Any) -> bool:
    return hasattr(obj, "trainable_variables") and hasattr(obj, "layers") and callable(obj)


def _is_variable_list(obj: Any) -> bool:
    if isinstance(obj, tf.Variable):
        return True
    if not isinstance(obj, (list, tuple)) or not obj:
        return False
    return all(isinstance(v, tf.Variable) or hasattr(v, "assign") for v in obj)


def _as_start_point(x0: Any) -> tf.Tensor:
    if isinstance(x0, (tf.Tensor, tf.Variable)):
        x = tf.convert_to_tensor(x0)
    else:
        try:
            arr = np.asarray(x0)
        except Exception as err:  # ragged lists, objects
            raise TypeError(f"x0: expected a 1-D float array or tensor, got {x0!r}") from err
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"x0: expected a 1-D float array or tensor, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype(np.float64)  # as SciPy does with integer start points
        x = tf.convert_to_tensor(arr)
    if not x.dtype.is_floating:
        raise TypeError(f"x0: expected a floating dtype (float32/float64), got {x.dtype.name}")
    if x.shape.rank != 1:
        raise ValueError(f"x0: expected a 1-D vector, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x0: is empty")
    bad = np.flatnonzero(~np.isfinite(x.numpy()))
    if bad.size:
        raise ValueError(
            f"x0: expected finite values, got {x.numpy()[bad[0]]} at index {bad[0]}"
            + (f" (and {bad.size - 1} more)" if bad.size > 1 else ""))
    return x


def resolve_problem(
    problem: Any,
    data: Any,
    *,
    loss: Any = None,
    objective_options: dict[str, Any],
) -> Problem:
    """Recognize the three forms of ``minimize`` (and a prebuilt :class:`Objective`).

    - ``(model, dataset)``: a Keras model and a dataset -> the exact full-batch objective
      (kept on the model and reused by later calls with the same data, loss and options; see
      :mod:`flatvec._objective.model_cache`);
    - ``(loss_fn, variables)``: a zero-argument closure and the variables it reads (its
      objective kept and reused by later calls with the same closure and variables; see
      :mod:`flatvec._objective.closure_cache`);
    - ``(fun, x0)``: a function of a 1-D tensor and a start point;
    - ``(objective, x0)``: an :class:`Objective` (``x0`` may be None for one with a space).

    Closures and functions are least-squares residuals (``fun`` returns residuals, the loss
    is half their squared norm) where ``objective_options["residuals"]`` is true, or, where
    it is None, for a least-squares method (``objective_options["least_squares"]``).
    """
    jit = objective_options.get("jit_compile", False)
    residuals = objective_options.get("residuals")
    weights = objective_options.get("residual_weights")
    if isinstance(problem, Objective):
        if data is None:
            if problem.space is None:
                raise ValueError("x0: required with an Objective built from a function")
            return Problem(problem, problem.space.get(), None)
        return Problem(problem, problem.check_vector(_as_start_point(data), "x0"), None)
    if _is_model(problem):
        if residuals or weights is not None:
            raise TypeError("residuals: a Keras model's objective is its loss over the data "
                            "(least-squares methods use its Gauss-Newton products); "
                            "residuals=True is for closures and functions")
        if data is None:
            raise TypeError("dataset: required with a Keras model (a tf.data.Dataset or arrays)")
        model_options = {k: v for k, v in objective_options.items()
                         if k not in ("residuals", "residual_weights", "least_squares")}
        objective = cached_objective(
            problem, data, loss, model_options,
            lambda: Objective.from_model(problem, data, loss, **model_options),
        )
        return Problem(objective, objective.space.get(), problem)
    if not callable(problem):
        raise TypeError(
            "fun: expected a Keras model, a callable, or a flatvec.Objective, "
            f"got {type(problem).__name__}"
        )
    if loss is not None:
        raise TypeError("loss: only used with a Keras model")
    allow_unused = objective_options.get("allow_unused", False)
    if residuals is None:
        residuals = objective_options.get("least_squares", False)
    if _is_variable_list(data):
        variables = [data] if isinstance(data, tf.Variable) else list(data)
        def build() -> Objective:
            if residuals:
                return Objective.from_residual_closure(
                    problem, variables, weights=weights, jit_compile=jit,
                    allow_unused=allow_unused)
            return Objective.from_closure(problem, variables, jit_compile=jit,
                                          allow_unused=allow_unused)

        objective = cached_closure_objective(
            problem, variables, {"jit_compile": jit, "allow_unused": allow_unused,
                                 "residuals": residuals, "residual_weights": weights}, build)
        return Problem(objective, objective.space.get(), None)
    if data is None:
        raise TypeError("x0: required with a function (or pass variables with a closure)")
    x0 = _as_start_point(data)
    if residuals and weights is not None:
        raise TypeError("residual_weights: only for closures; a function of x weights its "
                        "residuals itself")
    size = int(x0.shape[0])
    build = Objective.from_residuals if residuals else Objective.from_function
    objective = cached_closure_objective(
        problem, (), {"jit_compile": jit, "residuals": bool(residuals), "size": size,
                      "dtype": x0.dtype.name},
        lambda: build(problem, dtype=x0.dtype, size=size, jit_compile=jit))
    return Problem(objective, x0, None)
