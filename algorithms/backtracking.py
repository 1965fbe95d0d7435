r"""Armijo backtracking: shrink the step until the sufficient-decrease condition holds.

Nocedal & Wright (2006), Algorithm 3.1, with the step-length selection of §3.5: each new
trial is the minimizer of the quadratic through :math:`\phi(0)`, :math:`\phi'(0)` and
:math:`\phi(\alpha)` (eq. 3.58), kept within :math:`[\rho_{lo}\alpha, \rho_{hi}\alpha]`. A trial
with a non-finite value or gradient is shrunk by :math:`\rho_{lo}`. Accepts the first
:math:`\alpha` with

.. math:: \phi(\alpha) \le \phi(0) + c_1 \alpha \phi'(0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from .line_search import LineSearchResult, dot, is_finite, quadratic_minimizer

__all__ = ["Backtracking"]


class _Loop(NamedTuple):
    nfev: tf.Tensor
    trial: tf.Tensor
    step: tf.Tensor
    x: tf.Tensor
    f: tf.Tensor
    g: tf.Tensor
    done: tf.Tensor


class Backtracking:
    r"""Armijo backtracking line search (N&W Algorithm 3.1 with interpolation, §3.5).

    With ``reference=`` (a non-monotone method's reference value :math:`f_{ref} \ge f`) the
    test is :math:`\phi(\alpha) \le f_{ref} + c_1 \alpha \phi'(0)`.

    Parameters
    ----------
    c1 : float
        Sufficient-decrease constant in (0, 1).
    shrink : tuple of two floats
        ``(rho_lo, rho_hi)`` with ``0 < rho_lo <= rho_hi < 1``: each new trial lies in
        ``[rho_lo * step, rho_hi * step]``.
    max_evals : int
        Most function evaluations per search; with none acceptable the step is 0.

    Examples
    --------
    >>> import tensorflow as tf
    >>> from .backtracking import Backtracking
    >>> def oracle(x):
    ...     with tf.GradientTape() as tape:
    ...         tape.watch(x)
    ...         f = tf.reduce_sum(x ** 2)
    ...     return f, tape.gradient(f, x)
    >>> x = tf.constant([1.0], tf.float64)
    >>> f, g = oracle(x)
    >>> res = Backtracking().search(oracle, x, f, g, -g, tf.constant(4.0, tf.float64))
    >>> float(res.step), int(res.nfev)
    (0.5, 2)
    """

    takes_reference: ClassVar[bool] = True
    takes_extra_condition: ClassVar[bool] = False
    restarts_in_loop: ClassVar[bool] = False

    def __init__(
        self, *, c1: float = 1e-4, shrink: tuple[float, float] = (0.1, 0.5), max_evals: int = 30
    ) -> None:
        if not 0.0 < c1 < 1.0:
            raise ValueError(f"c1: expected a number in (0, 1), got {c1!r}")
        lo, hi = shrink
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(f"shrink: expected (lo, hi) with 0 < lo <= hi < 1, got {shrink!r}")
        if int(max_evals) != max_evals or max_evals < 1:
            raise ValueError(f"max_evals: expected a positive integer, got {max_evals!r}")
        self.c1, self.shrink, self.max_evals = float(c1), (float(lo), float(hi)), int(max_evals)

    def __repr__(self) -> str:
        return f"Backtracking(c1={self.c1}, shrink={self.shrink}, max_evals={self.max_evals})"

    def search(
        self,
        oracle: Callable[[tf.Tensor], Any],
        x: tf.Tensor,
        f: tf.Tensor,
        g: tf.Tensor,
        d: tf.Tensor,
        step0: tf.Tensor,
        reference: tf.Tensor | None = None,
    ) -> LineSearchResult:
        """Backtrack from ``step0`` along the descent direction ``d`` (accepting against
        ``reference`` instead of ``f`` where given)."""
        dtype = x.dtype
        d0 = dot(g, d)
        f_ref = f if reference is None else tf.maximum(reference, f)
        zero = tf.zeros([], dtype)
        rho_lo, rho_hi = self.shrink

        def body(s: _Loop) -> tuple[_Loop]:
            a = s.trial
            xa = x + a * d
            fa, ga = oracle(xa)
            finite = is_finite(fa, ga)
            # A step too small to change x is no step: "accepting" it would pass off a
            # failed search (one that backed off from non-finite trials, say) as convergence.
            ok = finite & (fa <= f_ref + self.c1 * a * d0) & tf.reduce_any(tf.not_equal(xa, x))
            t = quadratic_minimizer(zero, f, d0, a, fa)
            t = tf.where(finite & tf.math.is_finite(t), t, rho_lo * a)
            trial = tf.clip_by_value(t, rho_lo * a, rho_hi * a)
            return (
                _Loop(
                    s.nfev + 1,
                    trial,
                    tf.where(ok, a, s.step),
                    tf.where(ok, xa, s.x),
                    tf.where(ok, fa, s.f),
                    tf.where(ok, ga, s.g),
                    ok,
                ),
            )

        init = _Loop(tf.zeros([], tf.int32), tf.cast(step0, dtype), zero, x, f, g,
                     tf.constant(False))
        (s,) = tf.while_loop(lambda s: ~s.done, body, (init,), maximum_iterations=self.max_evals)
        return LineSearchResult(s.step, s.x, s.f, s.g, s.nfev, s.done)
