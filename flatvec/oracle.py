"""What an algorithm sees of the problem: counted, traceable evaluations and products."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["Oracle"]


class Oracle:
    """The problem as ``Algorithm.init`` and ``Algorithm.step`` see it.

    Every call is traceable (it runs inside the compiled iteration) and counted in graph, each
    kind on its own counter: :meth:`value` adds one to ``nfev``, :meth:`value_and_gradient`
    (also ``oracle(x)``) one to ``nfev`` and ``njev``, :meth:`hvp` one to ``nhev``. The driver
    reports the three counts and stops on ``max_eval`` against ``nfev + nhev``.

    A product the algorithm did not declare raises a ``TypeError`` when the step is traced:
    Hessian-vector products need ``needs_hvp = True`` on the algorithm's class (or instance).

    Parameters
    ----------
    objective : flatvec.Objective
        The problem.
    needs_hvp : bool
        Whether :meth:`hvp` may be called.
    owner : str
        The algorithm's name, for the error message.
    """

    def __init__(self, objective: Any, *, needs_hvp: bool = False, owner: str = "algorithm"):
        self._objective = objective
        self._needs_hvp = bool(needs_hvp)
        self._owner = owner

    @property
    def dtype(self) -> tf.DType:
        """Float dtype of ``x``, ``f``, ``g``."""
        return self._objective.dtype

    def value(self, x: tf.Tensor) -> tf.Tensor:
        """``f(x)`` without the gradient pass (one ``nfev``)."""
        return self._objective.value(x)

    def value_and_gradient(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(f(x), ∇f(x))`` (one ``nfev`` and one ``njev``)."""
        return self._objective(x)

    __call__ = value_and_gradient

    def hvp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        """``∇²f(x) v`` (one ``nhev``); only for algorithms that declare ``needs_hvp``."""
        if not self._needs_hvp:
            raise TypeError(
                f"{self._owner}: calls oracle.hvp but does not declare needs_hvp = True "
                "(set it on the class so the driver can plan for Hessian-vector products)"
            )
        return self._objective.hvp(x, v)
