r"""A line search for the strong Wolfe conditions: bracketing, then zoom.

Finds :math:`\alpha > 0` with

.. math::
    \phi(\alpha) \le \phi(0) + c_1 \alpha \phi'(0), \qquad
    |\phi'(\alpha)| \le c_2 |\phi'(0)|, \qquad 0 < c_1 < c_2 < 1,

following Nocedal & Wright (2006), Algorithm 3.5 (bracketing) and Algorithm 3.6 (zoom), with
safeguarded cubic interpolation for both the zoom trials and the extrapolation. Both phases
run in one ``tf.while_loop`` over a fixed-shape state, so the search traces into one graph and
compiles under XLA. Run eagerly (the eager tier), the same trial logic is a Python loop on
host scalars (:mod:`flatvec.scalar_ops`), on NumPy arrays too where the method runs on the
host.

A trial point where ``f`` or ``g`` is not finite counts as "too far": it becomes the far end
of the bracket and the next trial moves back towards the last good point.

References
----------
J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer, 2006, §3.4–3.5.
W. W. Hager and H. Zhang, "A new conjugate gradient method with guaranteed descent and an
efficient line search", SIAM J. Optim. 16(1), 2005 (approximate Wolfe conditions).
J. J. Moré and D. J. Thuente, "Line search algorithms with guaranteed sufficient decrease",
ACM TOMS 20(3), 1994 (the safeguards on extrapolation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from flatvec.scalar_ops import TRACED, ScalarOps, for_context

from .line_search import (
    LineSearchResult,
    check_wolfe_options,
    cubic_minimizer,
    dot,
    finite_trial,
    machine_eps,
    quadratic_minimizer,
    search_on_host,
)

__all__ = ["StrongWolfe"]

# A zoom trial keeps these fractions of the bracket from its best end and its far end: little
# towards the best point (after a gross overshoot the minimizer may lie very close to it),
# more towards the far end (so that the bracket keeps shrinking).
_ZOOM_GUARD_LO, _ZOOM_GUARD_HI = 1e-3, 0.1
# Extrapolation from step a (previous step p): next trial in [a + lo*(a-p), a + hi*(a-p)].
_EXTRAP_LO, _EXTRAP_HI = 1.1, 10.0
# Fraction of the bracket kept when the far end is not finite (nothing to interpolate).
_NONFINITE_SHRINK = 0.1


class _Point(NamedTuple):
    a: tf.Tensor  # step
    f: tf.Tensor
    d: tf.Tensor  # slope phi'(a)


class _Loop(NamedTuple):
    nfev: tf.Tensor
    trial: tf.Tensor  # next step to evaluate
    lo: _Point  # best step with sufficient decrease so far (step 0 at the start)
    lo_g: tf.Tensor  # its gradient (its point x + lo.a * d is recomputed at the end)
    hi: _Point  # the other end of the bracket, once bracketed
    hi_finite: tf.Tensor
    bracketed: tf.Tensor
    done: tf.Tensor
    success: tf.Tensor
    d: tf.Tensor  # the direction searched (the fallback one after a restart)
    d0: tf.Tensor  # phi'(0) along it
    attempt_nfev: tf.Tensor  # evaluations along the current direction
    restarted: tf.Tensor


class StrongWolfe:
    r"""Strong Wolfe line search (N&W Algorithms 3.5 and 3.6).

    Parameters
    ----------
    c1 : float
        Sufficient-decrease constant, :math:`0 < c_1 < 1/2`.
    c2 : float
        Curvature constant, :math:`c_1 < c_2 < 1`: 0.9 for quasi-Newton methods, 0.1–0.4 for
        nonlinear conjugate gradients.
    max_evals : int
        Most function evaluations per search.
    xtol : float
        Stop once the bracket around an acceptable-decrease step is narrower than ``xtol``
        times that step: the best point is returned (``success=False``), as MINPACK's
        ``dcsrch`` does.
    max_step : float
        Largest step tried.
    noise : float, optional
        Relative rounding level of ``f``: where trial values differ from :math:`\phi(0)` by at
        most ``noise * |f(x)|``, the search trusts slopes instead of values (the approximate
        Wolfe conditions of Hager & Zhang): it accepts
        :math:`|\phi'(\alpha)| \le c_2|\phi'(0)|` without the decrease test and brackets by the
        sign of :math:`\phi'`. This lets the methods reach small gradient tolerances where
        ``f`` no longer resolves the decrease. Default ``1000 * eps`` of the dtype; 0 turns it
        off.

    Examples
    --------
    >>> import tensorflow as tf
    >>> from .strong_wolfe import StrongWolfe
    >>> def oracle(x):
    ...     with tf.GradientTape() as tape:
    ...         tape.watch(x)
    ...         f = tf.reduce_sum((x - 3.0) ** 2)
    ...     return f, tape.gradient(f, x)
    >>> x = tf.constant([0.0], tf.float64)
    >>> f, g = oracle(x)
    >>> res = StrongWolfe(c2=0.1).search(oracle, x, f, g, -g, tf.constant(1.0, tf.float64))
    >>> round(float(res.step), 6), bool(res.success)
    (0.5, True)
    """

    def __init__(
        self,
        *,
        c1: float = 1e-4,
        c2: float = 0.9,
        max_evals: int = 25,
        xtol: float = 1e-10,
        max_step: float = 1e10,
        noise: float | None = None,
    ) -> None:
        check_wolfe_options(c1, c2, max_evals, xtol)
        if not max_step > 0:
            raise ValueError(f"max_step: expected a positive number, got {max_step!r}")
        if noise is not None and not 0.0 <= noise < 1.0:
            raise ValueError(f"noise: expected None or a number in [0, 1), got {noise!r}")
        self.noise = None if noise is None else float(noise)
        self.c1, self.c2 = float(c1), float(c2)
        self.max_evals, self.xtol, self.max_step = int(max_evals), float(xtol), float(max_step)

    def __repr__(self) -> str:
        return (f"StrongWolfe(c1={self.c1}, c2={self.c2}, max_evals={self.max_evals}, "
                f"xtol={self.xtol}, max_step={self.max_step}, noise={self.noise})")

    takes_reference: ClassVar[bool] = False
    runs_on_host: ClassVar[bool] = True  # on NumPy arrays too (flatvec.scalar_ops.on_host)
    takes_extra_condition: ClassVar[bool] = False
    restarts_in_loop: ClassVar[bool] = True

    def search(
        self,
        oracle: Callable[[tf.Tensor], Any],
        x: tf.Tensor,
        f: tf.Tensor,
        g: tf.Tensor,
        d: tf.Tensor,
        step0: tf.Tensor,
    ) -> LineSearchResult:
        """Search from ``x`` (value ``f``, gradient ``g``) along the descent direction ``d``,
        starting with the trial step ``step0``. See :class:`LineSearchResult`."""
        result, _ = self._search(oracle, x, f, g, d, step0, None)
        return result

    def search_with_fallback(
        self,
        oracle: Callable[[tf.Tensor], Any],
        x: tf.Tensor,
        f: tf.Tensor,
        g: tf.Tensor,
        d: tf.Tensor,
        step0: tf.Tensor,
        fallback_d: tf.Tensor,
        fallback_step0: tf.Tensor,
        can_restart: tf.Tensor,
    ) -> tuple[LineSearchResult, tf.Tensor]:
        """:meth:`search`; if it ends without a decrease and ``can_restart``, search again
        along ``fallback_d`` from ``fallback_step0`` (up to ``max_evals`` more evaluations).

        The restart happens inside the same loop, so the oracle is traced once (a second
        search in a ``tf.cond`` traced the model a second time). Returns the result and
        whether it comes from the fallback direction.
        """
        return self._search(oracle, x, f, g, d, step0, (fallback_d, fallback_step0, can_restart))

    def _search(
        self,
        oracle: Callable[[tf.Tensor], Any],
        x: tf.Tensor,
        f: tf.Tensor,
        g: tf.Tensor,
        d: tf.Tensor,
        step0: tf.Tensor,
        fallback: tuple[tf.Tensor, tf.Tensor, tf.Tensor] | None,
    ) -> tuple[LineSearchResult, tf.Tensor]:
        # Eagerly (the eager tier, a search called outside tf.function) the scalars live on
        # the host as NumPy scalars; traced, they are tensors of the compiled loop.
        ops = for_context()
        dtype = x.dtype
        c1, c2 = ops.constant(self.c1, dtype), ops.constant(self.c2, dtype)
        max_step = ops.constant(self.max_step, dtype)
        zero = ops.constant(0.0, dtype)
        false, true = ops.constant(False, tf.bool), ops.constant(True, tf.bool)
        f0 = ops.cast(ops.value(f), dtype)
        rel = self.noise if self.noise is not None else 1e3 * machine_eps(dtype)
        noise = rel * ops.abs(f0)

        def start(direction: tf.Tensor, d0: Any, step: Any, nfev: Any, restarted: Any) -> _Loop:
            origin = _Point(zero, f0, d0)
            return _Loop(
                nfev=nfev, trial=ops.cast(step, dtype), lo=origin, lo_g=g, hi=origin,
                hi_finite=true, bracketed=false, done=false, success=false, d=direction,
                d0=d0, attempt_nfev=ops.constant(0, tf.int32), restarted=restarted,
            )

        def trial(s: _Loop) -> _Loop:
            """Evaluate the trial ``s.trial``; the search's state after it."""
            d, d0 = s.d, s.d0
            a = s.trial
            xa = x + a * d
            fa, ga = oracle(xa)
            fa = ops.value(fa)
            da = ops.value(dot(ga, d))
            finite = finite_trial(fa, da, ops)
            armijo = finite & (fa <= f0 + c1 * a * d0)
            # Slope sign relative to the far end (or forward, before bracketing): >= 0 means
            # a minimizer lies between the best point and this trial.
            toward_hi = ops.where(s.bracketed, da * (s.hi.a - s.lo.a), da)
            # Values indistinguishable from f(x) within rounding: trust the slopes instead
            # (the approximate Wolfe conditions of Hager & Zhang).
            noisy = finite & (ops.abs(fa - f0) <= noise) & (ops.abs(s.lo.f - f0) <= noise)
            classic_too_far = ~armijo | (fa >= s.lo.f)
            accept = (ops.abs(da) <= -c2 * d0) & (noisy | ~classic_too_far)
            too_far = ~accept & ops.where(noisy, toward_hi >= 0, classic_too_far)
            # Better point but the slope turned uphill: the old best becomes the far end.
            flip = ~too_far & ~accept & (toward_hi >= 0)
            new = _Point(a, fa, da)
            lo = _where(ops, too_far, s.lo, new)
            hi = _where(ops, too_far, new, _where(ops, flip, s.lo, s.hi))
            hi_finite = ops.where(too_far, finite, ops.where(flip, true, s.hi_finite))
            bracketed = s.bracketed | too_far | flip
            # A cond, not a select: the kept gradient is passed on, not copied.
            lo_g = ops.branch(too_far, lambda: s.lo_g, lambda: ga)

            next_trial = ops.where(
                bracketed,
                _zoom_trial(ops, lo, hi, hi_finite, noise),
                ops.minimum(_extrapolate(ops, s.lo, new), max_step),
            )
            width = ops.abs(hi.a - lo.a)
            narrow = bracketed & (lo.a > 0) & (width <= self.xtol * lo.a)
            stuck = ~bracketed & (lo.a >= max_step)
            attempt_nfev = s.attempt_nfev + 1
            done = (accept | narrow | stuck | ~ops.isfinite(next_trial)
                    | (attempt_nfev >= self.max_evals))
            return _Loop(s.nfev + 1, next_trial, lo, lo_g, hi, hi_finite, bracketed, done,
                         accept, d, d0, attempt_nfev, s.restarted)

        def restarts(after: _Loop) -> Any:
            """Whether the search starts again along the fallback direction: it ended without
            a decrease, and may restart (once)."""
            no_decrease = after.done & ~after.success & ~(after.lo.f < f0)
            return no_decrease & ops.value(fallback[2]) & ~after.restarted

        budget = self.max_evals * (1 if fallback is None else 2)
        if ops is not TRACED:  # a Python loop on host scalars
            return search_on_host(ops, start, trial, restarts,
                                  lambda s: _result(ops, x, f0, g, zero, s), g, d, step0,
                                  fallback, budget)

        def body(s: _Loop) -> tuple[_Loop]:
            after = trial(s)
            if fallback is None:
                return (after,)
            fallback_d, fallback_step0, _ = fallback
            return (tf.cond(
                restarts(after),
                lambda: start(fallback_d, dot(g, fallback_d), fallback_step0, after.nfev,
                              tf.constant(True)),
                lambda: after,
            ),)

        init = start(d, dot(g, d), step0, tf.zeros([], tf.int32), false)
        (s,) = tf.while_loop(lambda s: ~s.done, body, (init,), maximum_iterations=budget)
        return _result(ops, x, f0, g, zero, s)


def _result(ops: ScalarOps, x: tf.Tensor, f0: Any, g: tf.Tensor, zero: Any,
            s: _Loop) -> tuple[LineSearchResult, tf.Tensor]:
    """The search's result from its final state, and whether it restarted."""
    # Without the conditions, only a strict decrease is worth returning (a point accepted
    # in the noisy regime may be up to `noise` above f).
    keep = s.success | (s.lo.f < f0)
    # `x + a * d` is the expression the trial point was evaluated at, so the returned
    # point is that point bit for bit.
    x_new, g_new = ops.branch(keep, lambda: (x + s.lo.a * s.d, s.lo_g), lambda: (x, g))
    dtype = x.dtype
    result = LineSearchResult(
        ops.tensor(ops.where(keep, s.lo.a, zero), dtype), x_new,
        ops.tensor(ops.where(keep, s.lo.f, f0), dtype), g_new,
        ops.tensor(s.nfev, tf.int32), ops.tensor(s.success, tf.bool),
    )
    return result, ops.tensor(s.restarted, tf.bool)


def _where(ops: ScalarOps, cond: Any, a: _Point, b: _Point) -> _Point:
    return _Point(*(ops.where(cond, u, v) for u, v in zip(a, b, strict=True)))


def _zoom_trial(ops: ScalarOps, lo: _Point, hi: _Point, hi_finite: Any, noise: Any) -> Any:
    """Next trial inside the bracket: cubic interpolation of both ends, else the quadratic
    from ``lo``'s value and slope and ``hi``'s value, else bisection; kept away from both ends
    so that the bracket shrinks. When the two values differ by no more than rounding noise,
    the secant step on the slopes."""
    width = hi.a - lo.a
    cubic = cubic_minimizer(lo.a, lo.f, lo.d, hi.a, hi.f, hi.d, ops)
    quad = quadratic_minimizer(lo.a, lo.f, lo.d, hi.a, hi.f, ops)
    t = ops.where(ops.isfinite(cubic), cubic, quad)
    secant = lo.a - lo.d * width / (hi.d - lo.d)
    t = ops.where(ops.abs(hi.f - lo.f) <= noise, secant, t)
    t = ops.where(ops.isfinite(t), t, lo.a + 0.5 * width)
    frac = ops.clip((t - lo.a) / width, _ZOOM_GUARD_LO, 1.0 - _ZOOM_GUARD_HI)
    frac = ops.where(hi_finite, frac, ops.constant(_NONFINITE_SHRINK, width.dtype))
    return lo.a + frac * width


def _extrapolate(ops: ScalarOps, prev: _Point, cur: _Point) -> Any:
    """Next trial beyond ``cur`` while the slope is still steeply downhill: the cubic's
    minimizer, kept within ``[cur + 1.1 (cur - prev), cur + 10 (cur - prev)]``."""
    span = cur.a - prev.a
    lo, hi = cur.a + _EXTRAP_LO * span, cur.a + _EXTRAP_HI * span
    t = cubic_minimizer(prev.a, prev.f, prev.d, cur.a, cur.f, cur.d, ops)
    t = ops.where(ops.isfinite(t) & (t > cur.a), t, hi)
    return ops.clip(t, lo, hi)
