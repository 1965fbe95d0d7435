r"""The Moré–Thuente line search (MINPACK-2 ``dcsrch`` / ``dcstep``) in one ``tf.while_loop``.

Finds :math:`\alpha > 0` with

.. math::
    \phi(\alpha) \le \phi(0) + c_1 \alpha \phi'(0), \qquad
    |\phi'(\alpha)| \le c_2 |\phi'(0)|,

by keeping an interval :math:`[\alpha_x, \alpha_y]` (``stx``, ``sty``: ``stx`` the best step so
far) that contains such a step. While no step has :math:`\psi(\alpha) \le 0` and
:math:`\phi'(\alpha) \ge 0` it works on the auxiliary function
:math:`\psi(\alpha) = \phi(\alpha) - \phi(0) - c_1\alpha\phi'(0)` (stage 1), then on
:math:`\phi` (stage 2). Each new trial comes from :func:`_dcstep`: one of four interpolation
cases (cubic / quadratic / secant, Moré & Thuente 1994, §4), extrapolation limited to
:math:`[\alpha + 1.1(\alpha - \alpha_x), \alpha + 4(\alpha - \alpha_x)]` before bracketing, and a
bisection whenever the interval did not shrink by a factor 0.66 in two trials.

Differences from ``dcsrch``: a trial where ``f`` or ``g`` is not finite counts as "too far" (it
becomes ``sty`` and the next trial is :math:`\alpha_x + 0.1(\alpha - \alpha_x)`), and where
``dcsrch`` would ask for ``stx`` again (no progress possible) the search ends at once and
returns ``stx``, whose value and gradient it already holds.

References
----------
J. J. Moré and D. J. Thuente, "Line search algorithms with guaranteed sufficient decrease",
ACM TOMS 20(3), 1994. MINPACK-2 ``dcsrch.f`` and ``dcstep.f`` (B. M. Averick, R. G. Carter,
J. J. Moré, 1993), as used by L-BFGS-B and ``scipy.optimize.line_search_wolfe1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from .line_search import LineSearchResult, check_wolfe_options, dot, finite_trial

__all__ = ["ExtraCondition", "MoreThuente"]

ExtraCondition = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

_XTRAPL, _XTRAPU = 1.1, 4.0  # extrapolation range before bracketing (dcsrch)
_P66 = 0.66  # bisect unless the interval shrinks at least this much in two trials
_NONFINITE_SHRINK = 0.1  # next trial after a non-finite one, as a fraction of the interval


class _End(NamedTuple):
    a: tf.Tensor  # step
    f: tf.Tensor
    d: tf.Tensor  # slope phi'(a)


class _Loop(NamedTuple):
    nfev: tf.Tensor
    trial: tf.Tensor  # next step to evaluate
    x: _End  # best step so far (stx)
    x_g: tf.Tensor  # gradient at stx
    y: _End  # other end of the interval (sty)
    stmin: tf.Tensor
    stmax: tf.Tensor
    width: tf.Tensor
    width1: tf.Tensor
    bracketed: tf.Tensor
    stage2: tf.Tensor
    done: tf.Tensor
    success: tf.Tensor
    last: _End  # the last trial evaluated
    last_g: tf.Tensor
    dirn: tf.Tensor  # the direction searched (the fallback one after a restart)
    d0: tf.Tensor  # phi'(0) along it
    attempt_nfev: tf.Tensor
    restarted: tf.Tensor


class _Packed(NamedTuple):
    """A :class:`_Loop` as the ``tf.while_loop`` carries it: the scalars stacked by dtype.

    Why: every loop variable costs nodes (the loop's plumbing, an identity per branch output)
    that are paid when the iteration is traced and again when it is set up (after every
    ``tf.random.set_seed``). With 22 scalar loop variables as three vectors, and the restart's
    scalars selected instead of passed through a branch, tracing the search made 522 nodes
    instead of 675 in L-BFGS on the digits MLP. Unstacking is one node per vector."""

    reals: tf.Tensor  # [15]: trial, x, y, stmin, stmax, width, width1, last, d0
    flags: tf.Tensor  # bool [5]: bracketed, stage2, done, success, restarted
    counts: tf.Tensor  # int32 [2]: nfev, attempt_nfev
    x_g: tf.Tensor
    last_g: tf.Tensor
    dirn: tf.Tensor


def _pack(s: _Loop) -> _Packed:
    return _Packed(
        tf.stack([s.trial, *s.x, *s.y, s.stmin, s.stmax, s.width, s.width1, *s.last, s.d0]),
        tf.stack([s.bracketed, s.stage2, s.done, s.success, s.restarted]),
        tf.stack([s.nfev, s.attempt_nfev]),
        s.x_g, s.last_g, s.dirn)


def _unpack(p: _Packed) -> _Loop:
    (trial, xa, xf, xd, ya, yf, yd, stmin, stmax, width, width1, la, lf, ld,
     d0) = tf.unstack(p.reals, 15)
    bracketed, stage2, done, success, restarted = tf.unstack(p.flags, 5)
    nfev, attempt_nfev = tf.unstack(p.counts, 2)
    return _Loop(nfev, trial, _End(xa, xf, xd), p.x_g, _End(ya, yf, yd), stmin, stmax, width,
                 width1, bracketed, stage2, done, success, _End(la, lf, ld), p.last_g, p.dirn,
                 d0, attempt_nfev, restarted)


def _cubic_step(a: _End, b: _End) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    r"""Minimizer of the cubic interpolating :math:`\phi, \phi'` at ``a`` and ``b`` in the form
    of ``dcstep`` (rescaled square root, :math:`\gamma` signed towards ``b``):
    :math:`a + \frac{\gamma - \phi'_a + \theta}{2\gamma - \phi'_a + \phi'_b}(b - a)` with
    :math:`\theta = 3(\phi_a - \phi_b)/(b - a) + \phi'_a + \phi'_b`. Returns the step, the
    fraction :math:`r` of ``b - a`` and :math:`\gamma` (case 3 of :func:`_dcstep` needs both).
    """
    theta = 3.0 * (a.f - b.f) / (b.a - a.a) + a.d + b.d
    s = tf.maximum(tf.maximum(tf.abs(theta), tf.abs(a.d)), tf.abs(b.d))
    s = tf.where(s > 0, s, tf.ones_like(s))
    gamma = s * tf.sqrt(tf.maximum((theta / s) ** 2 - (a.d / s) * (b.d / s), 0.0))
    gamma = tf.where(b.a < a.a, -gamma, gamma)
    r = ((gamma - a.d) + theta) / (((gamma - a.d) + gamma) + b.d)
    return a.a + r * (b.a - a.a), r, gamma


def _dcstep(x: _End, y: _End, p: _End, bracketed: tf.Tensor, stmin: tf.Tensor,
            stmax: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    r"""``dcstep``'s new trial from the best end ``x``, the other end ``y`` and the trial
    ``p``; returns ``(trial, bracketed)``. The four cases (Moré & Thuente, §4):

    1. :math:`\phi_p > \phi_x`: bracketed; the cubic step if nearer ``x`` than the quadratic
       (values at both, slope at ``x``) step, else their mean.
    2. slopes of opposite sign: bracketed; the cubic step if farther from ``p`` than the secant
       step, else the secant step.
    3. same sign, :math:`|\phi'_p| < |\phi'_x|`: cubic (if it has a minimizer beyond ``p``, else
       the bound) or secant, the nearer to ``p`` when bracketed (and at most 0.66 of the way to
       ``y``), the farther otherwise (within ``[stmin, stmax]``).
    4. same sign, slope not decreasing: the cubic on ``p`` and ``y`` when bracketed, else the
       bound.
    """
    forward = p.a > x.a
    opposite = tf.sign(p.d) * tf.sign(x.d) < 0
    secant = p.a + p.d / (p.d - x.d) * (x.a - p.a)
    # Case 1.
    cub1, _, _ = _cubic_step(x, p)
    quad1 = x.a + x.d / ((x.f - p.f) / (p.a - x.a) + x.d) / 2.0 * (p.a - x.a)
    step1 = tf.where(tf.abs(cub1 - x.a) <= tf.abs(quad1 - x.a), cub1, cub1 + (quad1 - cub1) / 2)
    # Case 2 (the cubic from p's side; case 3 reads the same cubic's r and gamma).
    cub2, r3, gamma3 = _cubic_step(p, x)
    step2 = tf.where(tf.abs(cub2 - p.a) > tf.abs(secant - p.a), cub2, secant)
    # Case 3: the cubic step only if the cubic tends to infinity towards the step.
    bound = tf.where(forward, stmax, stmin)
    cub3 = tf.where((r3 < 0) & (gamma3 != 0), p.a + r3 * (x.a - p.a), bound)
    near = tf.where(tf.abs(cub3 - p.a) < tf.abs(secant - p.a), cub3, secant)
    limit = p.a + _P66 * (y.a - p.a)
    near = tf.where(forward, tf.minimum(limit, near), tf.maximum(limit, near))
    far = tf.clip_by_value(
        tf.where(tf.abs(cub3 - p.a) > tf.abs(secant - p.a), cub3, secant), stmin, stmax)
    step3 = tf.where(bracketed, near, far)
    # Case 4.
    cub4, _, _ = _cubic_step(p, y)
    step4 = tf.where(bracketed, cub4, bound)

    higher = p.f > x.f
    decreasing = tf.abs(p.d) < tf.abs(x.d)
    step = tf.where(higher, step1, tf.where(opposite, step2,
                                            tf.where(decreasing, step3, step4)))
    return step, bracketed | higher | opposite


def _update_interval(x: _End, y: _End, p: _End) -> tuple[_End, _End]:
    """``dcstep``'s interval update: ``p`` replaces ``y`` if its value is higher, else it
    becomes ``x`` (and the old ``x`` becomes ``y`` if the slopes have opposite signs)."""
    higher = p.f > x.f
    opposite = tf.sign(p.d) * tf.sign(x.d) < 0
    new_y = _where(higher, p, _where(opposite, x, y))
    new_x = _where(higher, x, p)
    return new_x, new_y


def _where(cond: tf.Tensor, a: _End, b: _End) -> _End:
    return _End(*(tf.where(cond, u, v) for u, v in zip(a, b, strict=True)))


def _shift(e: _End, gtest: tf.Tensor) -> _End:
    """The end on the auxiliary function :math:`\\psi`: value and slope less the Armijo line."""
    return _End(e.a, e.f - e.a * gtest, e.d - gtest)


def _unshift(e: _End, gtest: tf.Tensor) -> _End:
    return _End(e.a, e.f + e.a * gtest, e.d + gtest)


class MoreThuente:
    r"""Moré–Thuente line search (MINPACK-2 ``dcsrch``).

    Parameters
    ----------
    c1 : float
        Sufficient-decrease constant (``ftol`` of ``dcsrch``), :math:`0 < c_1 < 1/2`.
    c2 : float
        Curvature constant (``gtol``), :math:`c_1 < c_2 < 1`.
    max_evals : int
        Most function evaluations per search.
    xtol : float
        Stop once the interval is narrower than ``xtol`` times its larger end (``dcsrch``'s
        relative tolerance): the best point is returned with ``success=False``.
    min_step, max_step : float
        Bounds on the step (``stpmin``, ``stpmax``).

    Examples
    --------
    >>> import tensorflow as tf
    >>> from .more_thuente import MoreThuente
    >>> def oracle(x):
    ...     with tf.GradientTape() as tape:
    ...         tape.watch(x)
    ...         f = tf.reduce_sum((x - 3.0) ** 2)
    ...     return f, tape.gradient(f, x)
    >>> x = tf.constant([0.0], tf.float64)
    >>> f, g = oracle(x)
    >>> res = MoreThuente(c2=0.1).search(oracle, x, f, g, -g, tf.constant(1.0, tf.float64))
    >>> round(float(res.step), 3), bool(res.success)
    (0.5, True)
    """

    def __init__(self, *, c1: float = 1e-4, c2: float = 0.9, max_evals: int = 25,
                 xtol: float = 0.1, min_step: float = 0.0, max_step: float = 1e10) -> None:
        check_wolfe_options(c1, c2, max_evals, xtol)
        if not 0.0 <= min_step < max_step:
            raise ValueError(f"min_step, max_step: expected 0 <= min_step < max_step, got "
                             f"{min_step!r}, {max_step!r}")
        self.c1, self.c2, self.xtol = float(c1), float(c2), float(xtol)
        self.max_evals = int(max_evals)
        self.min_step, self.max_step = float(min_step), float(max_step)

    def __repr__(self) -> str:
        return (f"MoreThuente(c1={self.c1}, c2={self.c2}, max_evals={self.max_evals}, "
                f"xtol={self.xtol}, min_step={self.min_step}, max_step={self.max_step})")

    takes_reference: ClassVar[bool] = False
    takes_extra_condition: ClassVar[bool] = True
    restarts_in_loop: ClassVar[bool] = True

    def search(self, oracle: Callable[[tf.Tensor], Any], x: tf.Tensor, f: tf.Tensor,
               g: tf.Tensor, d: tf.Tensor, step0: tf.Tensor,
               extra_condition: ExtraCondition | None = None) -> LineSearchResult:
        """Search from ``x`` (value ``f``, gradient ``g``) along the descent direction ``d``,
        starting with the trial step ``step0``. See :class:`LineSearchResult`.

        ``extra_condition(d, g_new) -> bool`` (optional) must also hold at an accepted step;
        while it does not, the search goes on shrinking the interval."""
        return self._search(oracle, x, f, g, d, step0, None, extra_condition)[0]

    def search_with_fallback(
        self, oracle: Callable[[tf.Tensor], Any], x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
        d: tf.Tensor, step0: tf.Tensor, fallback_d: tf.Tensor, fallback_step0: tf.Tensor,
        can_restart: tf.Tensor, extra_condition: ExtraCondition | None = None,
    ) -> tuple[LineSearchResult, tf.Tensor]:
        """:meth:`search`; if it ends without a decrease and ``can_restart``, search again
        along ``fallback_d`` from ``fallback_step0`` in the same loop (the oracle is traced
        once). Returns the result and whether it comes from the fallback direction."""
        return self._search(oracle, x, f, g, d, step0, (fallback_d, fallback_step0, can_restart),
                            extra_condition)

    def _search(
        self, oracle: Callable[[tf.Tensor], Any], x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
        d: tf.Tensor, step0: tf.Tensor,
        fallback: tuple[tf.Tensor, tf.Tensor, tf.Tensor] | None,
        extra_condition: ExtraCondition | None = None,
    ) -> tuple[LineSearchResult, tf.Tensor]:
        dtype = x.dtype
        c1, c2 = tf.constant(self.c1, dtype), tf.constant(self.c2, dtype)
        lo_bound, hi_bound = tf.constant(self.min_step, dtype), tf.constant(self.max_step, dtype)
        zero = tf.zeros([], dtype)
        false = tf.constant(False)

        def start(direction: tf.Tensor, d0: tf.Tensor, step: tf.Tensor, nfev: tf.Tensor,
                  restarted: tf.Tensor) -> _Loop:
            origin = _End(zero, f, d0)
            step = tf.clip_by_value(tf.cast(step, dtype), lo_bound, hi_bound)
            width = hi_bound - lo_bound
            return _Loop(nfev, step, origin, g, origin, zero, step + _XTRAPU * step, width,
                         2.0 * width, false, false, false, false, origin, g, direction, d0,
                         tf.zeros([], tf.int32), restarted)

        def body(packed: _Packed) -> tuple[_Packed]:
            s = _unpack(packed)
            a = s.trial
            fa, ga = oracle(x + a * s.dirn)
            p = _End(a, fa, dot(ga, s.dirn))
            finite = finite_trial(fa, p.d)
            gtest = c1 * s.d0
            armijo = finite & (fa <= f + a * gtest)
            stage2 = s.stage2 | (armijo & (p.d >= 0))
            converged = armijo & (tf.abs(p.d) <= -c2 * s.d0)
            if extra_condition is not None:
                converged = converged & extra_condition(s.dirn, ga)
            at_max = (a >= hi_bound) & armijo & (p.d <= gtest)
            at_min = (a <= lo_bound) & ~armijo | (a <= lo_bound) & (p.d >= gtest)
            # Stage 1 with a lower value but no sufficient decrease: work on psi.
            on_psi = ~stage2 & finite & (fa <= s.x.f) & ~armijo
            shift = tf.where(on_psi, gtest, zero)
            xs, ys, ps = _shift(s.x, shift), _shift(s.y, shift), _shift(p, shift)
            trial, bracketed = _dcstep(xs, ys, ps, s.bracketed, s.stmin, s.stmax)
            new_x, new_y = _update_interval(xs, ys, ps)
            new_x, new_y = _unshift(new_x, shift), _unshift(new_y, shift)
            # A non-finite trial is too far: it closes the interval, the next trial steps back.
            new_x = _where(finite, new_x, s.x)
            new_y = _where(finite, new_y, p)
            bracketed = tf.where(finite, bracketed, True)
            trial = tf.where(finite, trial, s.x.a + _NONFINITE_SHRINK * (a - s.x.a))
            # No interpolant (an end not finite, or no minimizer): bisect the interval.
            trial = tf.where(tf.math.is_finite(trial) | ~bracketed, trial,
                             new_x.a + 0.5 * (new_y.a - new_x.a))
            took = finite & tf.equal(new_x.a, a)
            x_g = tf.cond(took, lambda: ga, lambda: s.x_g)
            # Bisect unless the interval shrank enough over the last two trials.
            span = tf.abs(new_y.a - new_x.a)
            bisect = bracketed & finite & (span >= _P66 * s.width1)
            trial = tf.where(bisect, new_x.a + 0.5 * (new_y.a - new_x.a), trial)
            width1 = tf.where(bracketed, s.width, s.width1)
            width = tf.where(bracketed, span, s.width)
            stmin = tf.where(bracketed, tf.minimum(new_x.a, new_y.a),
                             trial + _XTRAPL * (trial - new_x.a))
            stmax = tf.where(bracketed, tf.maximum(new_x.a, new_y.a),
                             trial + _XTRAPU * (trial - new_x.a))
            trial = tf.clip_by_value(trial, lo_bound, hi_bound)
            stuck = bracketed & ((trial <= stmin) | (trial >= stmax)
                                 | (stmax - stmin <= self.xtol * stmax))
            stuck = stuck | ~tf.math.is_finite(trial) | (tf.equal(trial, a) & ~bracketed)
            attempt_nfev = s.attempt_nfev + 1
            done = (converged | at_max | at_min | stuck | (attempt_nfev >= self.max_evals))
            after = _Loop(s.nfev + 1, trial, new_x, x_g, new_y, stmin, stmax, width, width1,
                          bracketed, stage2, done, converged, p, ga, s.dirn, s.d0,
                          attempt_nfev, s.restarted)
            if fallback is None:
                return (_pack(after),)
            fallback_d, fallback_step0, can_restart = fallback
            best_f = tf.minimum(new_x.f, tf.where(finite, fa, new_x.f))
            restart = done & ~converged & ~(best_f < f) & can_restart & ~s.restarted
            # The vectors (and the slope along the fallback, a pass over it) in a cond; the
            # scalars by selects on their stacks, which add three nodes instead of a branch
            # per loop variable.
            x_g, last_g, dirn, d0 = tf.cond(
                restart, lambda: (g, g, fallback_d, dot(g, fallback_d)),
                lambda: (after.x_g, after.last_g, after.dirn, after.d0))
            fresh = _pack(start(dirn, d0, fallback_step0, after.nfev, tf.constant(True)))
            kept = _pack(after._replace(d0=d0))
            return (_Packed(*(tf.where(restart, u, v) for u, v in zip(
                fresh[:3], kept[:3], strict=True)), x_g, last_g, dirn),)

        budget = self.max_evals * (1 if fallback is None else 2)
        init = _pack(start(d, dot(g, d), step0, tf.zeros([], tf.int32), false))
        (packed,) = tf.while_loop(lambda p: ~tf.gather(p.flags, 2), body, (init,),
                                  maximum_iterations=budget)
        s = _unpack(packed)
        # The last trial if it converged or is no worse than stx, else stx.
        use_last = s.success | (finite_trial(s.last.f, s.last.d) & (s.last.f <= s.x.f))
        best = _where(use_last, s.last, s.x)
        keep = s.success | (best.f < f)
        x_new, g_new = tf.cond(
            keep,
            lambda: (x + best.a * s.dirn, tf.cond(use_last, lambda: s.last_g, lambda: s.x_g)),
            lambda: (x, g))
        result = LineSearchResult(tf.where(keep, best.a, zero), x_new,
                                  tf.where(keep, best.f, f), g_new, s.nfev, s.success)
        return result, s.restarted
