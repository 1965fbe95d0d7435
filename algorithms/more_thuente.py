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

Run eagerly (the eager tier, :mod:`flatvec._run.tiers`, or a search called outside a
``tf.function``), the same formulas run on NumPy scalars (:mod:`flatvec.scalar_ops`) in a Python
loop: the same trials bit for bit, at a fraction of the cost of dispatching each scalar op.

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

from flatvec.scalar_ops import TRACED, ScalarOps, for_context

from .line_search import (
    LineSearchResult,
    check_wolfe_options,
    dot,
    finite_trial,
    search_on_host,
)

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


def _cubic_step(ops: ScalarOps, a: _End, b: _End) -> tuple[Any, Any, Any]:
    r"""Minimizer of the cubic interpolating :math:`\phi, \phi'` at ``a`` and ``b`` in the form
    of ``dcstep`` (rescaled square root, :math:`\gamma` signed towards ``b``):
    :math:`a + \frac{\gamma - \phi'_a + \theta}{2\gamma - \phi'_a + \phi'_b}(b - a)` with
    :math:`\theta = 3(\phi_a - \phi_b)/(b - a) + \phi'_a + \phi'_b`. Returns the step, the
    fraction :math:`r` of ``b - a`` and :math:`\gamma` (case 3 of :func:`_dcstep` needs both).
    """
    theta = 3.0 * (a.f - b.f) / (b.a - a.a) + a.d + b.d
    s = ops.maximum(ops.maximum(ops.abs(theta), ops.abs(a.d)), ops.abs(b.d))
    s = ops.where(s > 0, s, ops.ones_like(s))
    gamma = s * ops.sqrt(ops.maximum((theta / s) ** 2 - (a.d / s) * (b.d / s), 0.0))
    gamma = ops.where(b.a < a.a, -gamma, gamma)
    r = ((gamma - a.d) + theta) / (((gamma - a.d) + gamma) + b.d)
    return a.a + r * (b.a - a.a), r, gamma


def _dcstep(ops: ScalarOps, x: _End, y: _End, p: _End, bracketed: Any, stmin: Any,
            stmax: Any) -> tuple[Any, Any]:
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
    opposite = ops.sign(p.d) * ops.sign(x.d) < 0
    secant = p.a + p.d / (p.d - x.d) * (x.a - p.a)
    # Case 1.
    cub1, _, _ = _cubic_step(ops, x, p)
    quad1 = x.a + x.d / ((x.f - p.f) / (p.a - x.a) + x.d) / 2.0 * (p.a - x.a)
    step1 = ops.where(ops.abs(cub1 - x.a) <= ops.abs(quad1 - x.a), cub1,
                      cub1 + (quad1 - cub1) / 2)
    # Case 2 (the cubic from p's side; case 3 reads the same cubic's r and gamma).
    cub2, r3, gamma3 = _cubic_step(ops, p, x)
    step2 = ops.where(ops.abs(cub2 - p.a) > ops.abs(secant - p.a), cub2, secant)
    # Case 3: the cubic step only if the cubic tends to infinity towards the step.
    bound = ops.where(forward, stmax, stmin)
    cub3 = ops.where((r3 < 0) & (gamma3 != 0), p.a + r3 * (x.a - p.a), bound)
    near = ops.where(ops.abs(cub3 - p.a) < ops.abs(secant - p.a), cub3, secant)
    limit = p.a + _P66 * (y.a - p.a)
    near = ops.where(forward, ops.minimum(limit, near), ops.maximum(limit, near))
    far = ops.clip(
        ops.where(ops.abs(cub3 - p.a) > ops.abs(secant - p.a), cub3, secant), stmin, stmax)
    step3 = ops.where(bracketed, near, far)
    # Case 4.
    cub4, _, _ = _cubic_step(ops, p, y)
    step4 = ops.where(bracketed, cub4, bound)

    higher = p.f > x.f
    decreasing = ops.abs(p.d) < ops.abs(x.d)
    step = ops.where(higher, step1, ops.where(opposite, step2,
                                              ops.where(decreasing, step3, step4)))
    return step, bracketed | higher | opposite


def _update_interval(ops: ScalarOps, x: _End, y: _End, p: _End) -> tuple[_End, _End]:
    """``dcstep``'s interval update: ``p`` replaces ``y`` if its value is higher, else it
    becomes ``x`` (and the old ``x`` becomes ``y`` if the slopes have opposite signs)."""
    higher = p.f > x.f
    opposite = ops.sign(p.d) * ops.sign(x.d) < 0
    new_y = _where(ops, higher, p, _where(ops, opposite, x, y))
    new_x = _where(ops, higher, x, p)
    return new_x, new_y


def _where(ops: ScalarOps, cond: Any, a: _End, b: _End) -> _End:
    return _End(*(ops.where(cond, u, v) for u, v in zip(a, b, strict=True)))


def _shift(e: _End, gtest: Any) -> _End:
    """The end on the auxiliary function :math:`\\psi`: value and slope less the Armijo line."""
    return _End(e.a, e.f - e.a * gtest, e.d - gtest)


def _unshift(e: _End, gtest: Any) -> _End:
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
    runs_on_host: ClassVar[bool] = True  # on NumPy arrays too (flatvec.scalar_ops.on_host)

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
        # Eagerly (the eager tier, a search called outside tf.function) the scalars live on
        # the host as NumPy scalars; traced, they are tensors of the compiled loop.
        ops = for_context()
        dtype = x.dtype
        c1, c2 = ops.constant(self.c1, dtype), ops.constant(self.c2, dtype)
        lo_bound = ops.constant(self.min_step, dtype)
        hi_bound = ops.constant(self.max_step, dtype)
        zero = ops.constant(0.0, dtype)
        false, true = ops.constant(False, tf.bool), ops.constant(True, tf.bool)
        f0 = ops.cast(ops.value(f), x.dtype)  # (a Python float f too: in the problem dtype)

        def start(direction: tf.Tensor, d0: Any, step: Any, nfev: Any, restarted: Any) -> _Loop:
            origin = _End(zero, f0, d0)
            step = ops.clip(ops.cast(step, dtype), lo_bound, hi_bound)
            width = hi_bound - lo_bound
            return _Loop(nfev, step, origin, g, origin, zero, step + _XTRAPU * step, width,
                         2.0 * width, false, false, false, false, origin, g, direction, d0,
                         ops.constant(0, tf.int32), restarted)

        def trial(s: _Loop) -> _Loop:
            """Evaluate the trial ``s.trial``; the search's state after it."""
            a = s.trial
            fa, ga = oracle(x + s.dirn * a)
            fa = ops.value(fa)
            p = _End(a, fa, ops.value(dot(ga, s.dirn)))
            finite = finite_trial(fa, p.d, ops)
            gtest = c1 * s.d0
            armijo = finite & (fa <= f0 + a * gtest)
            stage2 = s.stage2 | (armijo & (p.d >= 0))
            converged = armijo & (ops.abs(p.d) <= -c2 * s.d0)
            if extra_condition is not None:
                converged = converged & ops.value(extra_condition(s.dirn, ga))
            at_max = (a >= hi_bound) & armijo & (p.d <= gtest)
            at_min = (a <= lo_bound) & ~armijo | (a <= lo_bound) & (p.d >= gtest)
            # Stage 1 with a lower value but no sufficient decrease: work on psi.
            on_psi = ~stage2 & finite & (fa <= s.x.f) & ~armijo
            shift = ops.where(on_psi, gtest, zero)
            xs, ys, ps = _shift(s.x, shift), _shift(s.y, shift), _shift(p, shift)
            step, bracketed = _dcstep(ops, xs, ys, ps, s.bracketed, s.stmin, s.stmax)
            new_x, new_y = _update_interval(ops, xs, ys, ps)
            new_x, new_y = _unshift(new_x, shift), _unshift(new_y, shift)
            # A non-finite trial is too far: it closes the interval, the next trial steps back.
            new_x = _where(ops, finite, new_x, s.x)
            new_y = _where(ops, finite, new_y, p)
            bracketed = ops.where(finite, bracketed, true)
            step = ops.where(finite, step, s.x.a + _NONFINITE_SHRINK * (a - s.x.a))
            # No interpolant (an end not finite, or no minimizer): bisect the interval.
            step = ops.where(ops.isfinite(step) | ~bracketed, step,
                             new_x.a + 0.5 * (new_y.a - new_x.a))
            took = finite & ops.equal(new_x.a, a)
            x_g = ops.branch(took, lambda: ga, lambda: s.x_g)
            # Bisect unless the interval shrank enough over the last two trials.
            span = ops.abs(new_y.a - new_x.a)
            bisect = bracketed & finite & (span >= _P66 * s.width1)
            step = ops.where(bisect, new_x.a + 0.5 * (new_y.a - new_x.a), step)
            width1 = ops.where(bracketed, s.width, s.width1)
            width = ops.where(bracketed, span, s.width)
            stmin = ops.where(bracketed, ops.minimum(new_x.a, new_y.a),
                              step + _XTRAPL * (step - new_x.a))
            stmax = ops.where(bracketed, ops.maximum(new_x.a, new_y.a),
                              step + _XTRAPU * (step - new_x.a))
            step = ops.clip(step, lo_bound, hi_bound)
            stuck = bracketed & ((step <= stmin) | (step >= stmax)
                                 | (stmax - stmin <= self.xtol * stmax))
            stuck = stuck | ~ops.isfinite(step) | (ops.equal(step, a) & ~bracketed)
            attempt_nfev = s.attempt_nfev + 1
            done = (converged | at_max | at_min | stuck | (attempt_nfev >= self.max_evals))
            return _Loop(s.nfev + 1, step, new_x, x_g, new_y, stmin, stmax, width, width1,
                         bracketed, stage2, done, converged, p, ga, s.dirn, s.d0,
                         attempt_nfev, s.restarted)

        budget = self.max_evals * (1 if fallback is None else 2)
        if ops is not TRACED:  # a Python loop on host scalars
            return search_on_host(
                ops, start, trial, lambda s: self._restart(ops, s, f0, fallback),
                lambda s: self._result(ops, x, f0, g, s), g, d, step0, fallback, budget)

        def body(packed: _Packed) -> tuple[_Packed]:
            after = trial(_unpack(packed))
            if fallback is None:
                return (_pack(after),)
            fallback_d, fallback_step0, _ = fallback
            restart = self._restart(ops, after, f0, fallback)
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

        init = _pack(start(d, dot(g, d), step0, tf.zeros([], tf.int32), false))
        (packed,) = tf.while_loop(lambda p: ~tf.gather(p.flags, 2), body, (init,),
                                  maximum_iterations=budget)
        return self._result(ops, x, f0, g, _unpack(packed))

    @staticmethod
    def _restart(ops: ScalarOps, after: _Loop, f0: Any,
                 fallback: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> Any:
        """Whether the search starts again along the fallback direction after the trial
        that left ``after``: it ended without a decrease, and may restart (once)."""
        finite = ops.isfinite(after.last.f) & ops.isfinite(after.last.d)
        best_f = ops.minimum(after.x.f, ops.where(finite, after.last.f, after.x.f))
        can_restart = ops.value(fallback[2])
        return (after.done & ~after.success & ~(best_f < f0) & can_restart
                & ~after.restarted)

    @staticmethod
    def _result(ops: ScalarOps, x: tf.Tensor, f0: Any, g: tf.Tensor,
                s: _Loop) -> tuple[LineSearchResult, tf.Tensor]:
        """The search's result from its final state: the last trial if it converged or is no
        worse than stx, else stx; the start (value ``f0``) if neither decreases f. Tensors
        in both kinds."""
        finite = ops.isfinite(s.last.f) & ops.isfinite(s.last.d)
        use_last = s.success | (finite & (s.last.f <= s.x.f))
        best = _where(ops, use_last, s.last, s.x)
        keep = s.success | (best.f < f0)
        x_new, g_new = ops.branch(
            keep,
            lambda: (x + s.dirn * best.a,
                     ops.branch(use_last, lambda: s.last_g, lambda: s.x_g)),
            lambda: (x, g))
        dtype = x.dtype
        step = ops.where(keep, best.a, ops.constant(0.0, dtype))
        f_new = ops.where(keep, best.f, f0)
        return (LineSearchResult(ops.tensor(step, dtype), x_new, ops.tensor(f_new, dtype), g_new,
                                 ops.tensor(s.nfev, tf.int32), ops.tensor(s.success, tf.bool)),
                ops.tensor(s.restarted, tf.bool))
