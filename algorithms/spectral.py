r"""The spectral gradient method: Barzilai–Borwein steps with a non-monotone line search.

Barzilai & Borwein (1988) take steps along :math:`-g_k` of length

.. math::
    \alpha_k = \frac{s^\top s}{s^\top y} \;(\text{BB1}) \quad\text{or}\quad
    \frac{s^\top y}{y^\top y} \;(\text{BB2}), \qquad s = x_k - x_{k-1},\; y = g_k - g_{k-1},

a scalar secant approximation of the inverse Hessian. The steps make :math:`f` rise now and
then, which is what makes them fast: a monotone search would cut them short. Raydan (1997)
globalized the method with the non-monotone search of Grippo, Lampariello & Lucidi (1986),
which accepts a step when

.. math:: f(x_k + \alpha d_k) \le \max_{0 \le j < M} f_{k-j} + c_1 \alpha\, g_k^\top d_k,

the largest of the last :math:`M` values as the reference
(:class:`~flatvec.algorithms.backtracking.Backtracking` with ``reference=``). Where
:math:`s^\top y \le 0` (no positive curvature along the step) the step is ``step_max``, and
every step is kept in ``[step_min, step_max]`` (Birgin, Martínez & Raydan's SPG). The first
step is :math:`1 / \|g_0\|_2`.

One gradient evaluation per iteration when the first trial is accepted, :math:`O(n)` memory;
no curvature pairs. The result is the best point seen (a non-monotone method may end above
it; see :func:`flatvec.status.verdict_at_best`).
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from flatvec.protocol import Oracle

from .backtracking import Backtracking
from .line_search import Restarted, dot, unit_step_scale
from .line_search_method import Direction, LineSearchMethod, Proposal

__all__ = ["BarzilaiBorwein", "SpectralDirection", "SpectralMemory"]

VARIANTS = ("bb1", "bb2")


class SpectralMemory(NamedTuple):
    """The next first trial step and the last ``M`` values (a ring, ``head`` the oldest)."""

    step: tf.Tensor
    values: tf.Tensor
    head: tf.Tensor


class SpectralDirection(Direction):
    """Steepest descent with Barzilai–Borwein first trials and a GLL reference value."""

    def __init__(self, *, window: int, variant: str, step_min: float, step_max: float) -> None:
        self.window, self.variant = window, variant
        self.step_min, self.step_max = step_min, step_max

    def init(self, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor) -> SpectralMemory:
        step = tf.clip_by_value(unit_step_scale(g), self.step_min, self.step_max)
        return SpectralMemory(step, tf.fill([self.window], f), tf.zeros([], tf.int32))

    def propose(self, memory: SpectralMemory, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
                oracle: Oracle) -> Proposal:
        return Proposal(-g, memory.step, reference=tf.reduce_max(memory.values))

    def update(self, memory: SpectralMemory, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
               found: Restarted, proposal: Proposal) -> SpectralMemory:
        result = found.result
        s, y = result.x - x, result.g - g
        sy = dot(s, y)
        one = tf.ones_like(sy)
        if self.variant == "bb1":
            step = dot(s, s) / tf.where(sy > 0, sy, one)
        else:
            yy = dot(y, y)
            step = sy / tf.where(yy > 0, yy, one)
        step = tf.where((sy > 0) & tf.math.is_finite(step), step, self.step_max * one)
        step = tf.clip_by_value(step, self.step_min, self.step_max)
        moved = result.step > 0
        values = tf.tensor_scatter_nd_update(memory.values, memory.head[None, None],
                                             result.f[None])
        return SpectralMemory(
            tf.where(moved, step, memory.step),
            tf.where(moved, values, memory.values),
            tf.where(moved, (memory.head + 1) % self.window, memory.head),
        )


class BarzilaiBorwein(LineSearchMethod):
    r"""The spectral (Barzilai–Borwein) gradient method with a non-monotone search
    (Raydan 1997; see the module docstring). ``algo="bb"``.

    Parameters
    ----------
    window : int
        :math:`M`, how many of the last values the reference is the largest of (1: a
        monotone Armijo search).
    variant : {"bb1", "bb2"}
        The long (:math:`s^\top s / s^\top y`) or short (:math:`s^\top y / y^\top y`) step.
    c1 : float
        Sufficient-decrease constant of the search.
    max_evals : int
        Most function evaluations per search.
    step_min, step_max : float
        Bounds of the first trial step.

    Examples
    --------
    >>> import tensorflow as tf, flatvec
    >>> fun = lambda x: tf.reduce_sum(tf.range(1.0, 11.0, dtype=tf.float64) * x**2)
    >>> res = flatvec.minimize(fun, tf.ones([10], tf.float64), "bb", gtol=1e-8)
    >>> bool(res.success), float(res.fun) < 1e-15
    (True, True)
    """

    default_ftol: ClassVar[float] = 0.0  # f rises now and then: no relative-decrease test

    def __init__(self, *, window: int = 10, variant: str = "bb1", c1: float = 1e-4,
                 max_evals: int = 30, step_min: float = 1e-10, step_max: float = 1e10) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window: expected a positive int, got {window!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        if not 0.0 < step_min < step_max:
            raise ValueError(f"step_min, step_max: expected 0 < step_min < step_max, got "
                             f"{step_min!r}, {step_max!r}")
        self.window, self.variant, self.c1, self.max_evals = window, variant, c1, max_evals
        self.step_min, self.step_max = float(step_min), float(step_max)
        super().__init__(
            SpectralDirection(window=window, variant=variant, step_min=self.step_min,
                              step_max=self.step_max),
            Backtracking(c1=c1, max_evals=max_evals))

    def get_config(self) -> dict[str, Any]:
        return {"window": self.window, "variant": self.variant, "c1": self.c1,
                "max_evals": self.max_evals, "step_min": self.step_min,
                "step_max": self.step_max}
