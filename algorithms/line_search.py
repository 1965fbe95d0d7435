r"""Pieces shared by the line searches: the result type, the restart helper, interpolation.

A line search looks along a direction :math:`d` from :math:`x` for a step :math:`\alpha > 0`
and works on :math:`\phi(\alpha) = f(x + \alpha d)`, :math:`\phi'(\alpha) = \nabla f(x +
\alpha d)^\top d`. The searches themselves live in :mod:`flatvec.algorithms.strong_wolfe`
(:class:`~flatvec.algorithms.strong_wolfe.StrongWolfe`),
:mod:`flatvec.algorithms.more_thuente` (:class:`~flatvec.algorithms.more_thuente.MoreThuente`)
and :mod:`flatvec.algorithms.backtracking`
(:class:`~flatvec.algorithms.backtracking.Backtracking`); all return a :class:`LineSearchResult`.

Everything here is traceable: it runs inside one ``tf.function`` and under XLA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np
import tensorflow as tf

from flatvec import scalar_ops, vector_ops

__all__ = [
    "Capabilities",
    "LineSearch",
    "LineSearchResult",
    "Restarted",
    "capabilities",
    "check_wolfe_options",
    "cubic_minimizer",
    "dot",
    "finite_trial",
    "is_finite",
    "machine_eps",
    "quadratic_minimizer",
    "repeat_decrease_step",
    "search_with_restart",
    "unit_step_scale",
]


class LineSearchResult(NamedTuple):
    """What a line search returns.

    Attributes
    ----------
    step : scalar tensor
        The accepted step :math:`\\alpha`; 0 when no point with sufficient decrease was found.
    x, f, g : tensors
        The accepted point :math:`x + \\alpha d`, its value and gradient (the start point,
        value and gradient when ``step == 0``). ``x`` is the point that was evaluated, so
        ``f`` and ``g`` belong to it bit for bit.
    nfev : int32 scalar
        Oracle calls made.
    success : bool scalar
        The search's own acceptance conditions hold at ``step`` (strong Wolfe for
        ``StrongWolfe``, sufficient decrease for ``Backtracking``). A search may return a step
        with ``success == False`` that still decreases ``f`` (out of evaluations, or the
        bracket became too narrow to improve on).
    """

    step: tf.Tensor
    x: tf.Tensor
    f: tf.Tensor
    g: tf.Tensor
    nfev: tf.Tensor
    success: tf.Tensor


class LineSearch(Protocol):
    """``search(oracle, x, f, g, d, step0) -> LineSearchResult``; ``d`` must be a descent
    direction (``g'd < 0``) and ``step0 > 0`` the first trial step.

    What a search can do beyond that, it declares as class attributes (read by
    :func:`capabilities`; absent ones are False):

    - ``takes_reference``: ``search`` also takes ``reference=``, the value its
      sufficient-decrease test compares with in place of ``f`` (``f`` stays the value at ``x``
      that interpolation uses). A non-monotone method passes the largest of its last values
      (Grippo, Lampariello & Lucidi 1986) or their weighted average (Zhang & Hager 2004);
      ``reference >= f`` lets ``f`` rise;
    - ``takes_extra_condition``: ``search`` (and ``search_with_fallback``) take
      ``extra_condition=``, a test ``(d, g_new) -> bool`` an accepted step must also pass;
    - ``restarts_in_loop``: the search has ``search_with_fallback(..., fallback_d,
      fallback_step0, can_restart)``, which retries along the fallback direction inside its
      own loop (the oracle traced once), as both Wolfe searches do."""

    takes_reference: ClassVar[bool]
    takes_extra_condition: ClassVar[bool]
    restarts_in_loop: ClassVar[bool]

    def search(
        self,
        oracle: Callable[[tf.Tensor], Any],
        x: tf.Tensor,
        f: tf.Tensor,
        g: tf.Tensor,
        d: tf.Tensor,
        step0: tf.Tensor,
    ) -> LineSearchResult: ...


class Capabilities(NamedTuple):
    """What a line search declares it can do (see :class:`LineSearch`)."""

    takes_reference: bool
    takes_extra_condition: bool
    restarts_in_loop: bool


def capabilities(line_search: Any) -> Capabilities:
    """The capabilities ``line_search``'s class declares (False where it declares none)."""
    return Capabilities(*(bool(getattr(line_search, name, False))
                          for name in Capabilities._fields))


def dot(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Inner product of two 1-D tensors (in the form the compiler runs fastest:
    :mod:`flatvec.vector_ops`)."""
    return vector_ops.dot(a, b)


def is_finite(f: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
    """True when ``f`` and every entry of ``g`` are finite."""
    return tf.math.is_finite(f) & tf.reduce_all(tf.math.is_finite(g))


def finite_trial(f: tf.Tensor, slope: tf.Tensor,
                 ops: scalar_ops.ScalarOps = scalar_ops.TRACED) -> tf.Tensor:
    """True when a trial's value ``f`` and its slope ``slope = g'd`` are finite.

    Stands for :func:`is_finite` of ``f`` and ``g`` without a pass over ``g``: an infinite or
    NaN entry of ``g`` makes ``g'd`` NaN or infinite (times a zero entry of ``d`` too:
    ``inf * 0`` is NaN). A slope that overflows from finite entries counts as not finite,
    which a line search treats like any failed trial (it steps back). ``ops`` as for
    :func:`cubic_minimizer`."""
    return ops.isfinite(f) & ops.isfinite(slope)


def unit_step_scale(g: tf.Tensor) -> tf.Tensor:
    """``1 / ||g||_2`` (1 for a zero or non-finite norm): a step of length 1 along ``-g``."""
    ops = scalar_ops.for_context()
    norm = ops.value(vector_ops.norm(g))
    ok = (norm > 0) & ops.isfinite(norm)
    one = ops.ones_like(norm)
    return ops.tensor(ops.where(ok, one / ops.where(ok, norm, one), one), g.dtype)


def machine_eps(dtype: tf.DType) -> float:
    """Machine epsilon of a float dtype."""
    return float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps)


def check_wolfe_options(c1: float, c2: float, max_evals: int, xtol: float) -> None:
    """Raise a ``ValueError`` naming the option unless 0 < ``c1`` < 1/2, ``c1`` < ``c2`` < 1,
    ``max_evals`` is a positive integer and 0 <= ``xtol`` < 1 (what every Wolfe search checks)."""
    if not 0.0 < c1 < 0.5:
        raise ValueError(f"c1: expected a number in (0, 0.5), got {c1!r}")
    if not c1 < c2 < 1.0:
        raise ValueError(f"c2: expected a number in (c1={c1}, 1), got {c2!r}")
    if int(max_evals) != max_evals or max_evals < 1:
        raise ValueError(f"max_evals: expected a positive integer, got {max_evals!r}")
    if not 0.0 <= xtol < 1.0:
        raise ValueError(f"xtol: expected a number in [0, 1), got {xtol!r}")


def repeat_decrease_step(
    f: tf.Tensor, f_prev: tf.Tensor, slope: tf.Tensor, max_step: float | None = None
) -> tf.Tensor:
    r"""First trial step that repeats the last decrease on a quadratic model (N&W eq. 3.60):
    :math:`\alpha_0 = 2.02\,(f_{k-1} - f_k) / |\phi'(0)|`, 1 where that is not a positive
    finite number, and at most ``max_step`` when given (SciPy's CG and BFGS cap it at 1)."""
    ops = scalar_ops.for_context()  # eagerly: on the host
    with np.errstate(divide="ignore", invalid="ignore"):  # (host scalars: inf, NaN as TF's)
        a0 = 2.02 * (ops.value(f) - ops.value(f_prev)) / ops.value(slope)
    one = ops.ones_like(a0)
    a0 = ops.where(ops.isfinite(a0) & (a0 > 0), a0, one)
    if max_step is not None:
        a0 = ops.minimum(a0, ops.constant(max_step, a0.dtype))
    return a0


def cubic_minimizer(
    a: tf.Tensor, fa: tf.Tensor, da: tf.Tensor, b: tf.Tensor, fb: tf.Tensor, db: tf.Tensor,
    ops: scalar_ops.ScalarOps = scalar_ops.TRACED,
) -> tf.Tensor:
    r"""Minimizer of the cubic that interpolates :math:`\phi, \phi'` at ``a`` and ``b``.

    Nocedal & Wright (2006), eq. (3.59):

    .. math::
        d_1 = \phi'_a + \phi'_b - 3\frac{\phi_a - \phi_b}{a - b},\quad
        d_2 = \operatorname{sign}(b - a)\sqrt{d_1^2 - \phi'_a\phi'_b},\quad
        t = b - (b - a)\frac{\phi'_b + d_2 - d_1}{\phi'_b - \phi'_a + 2 d_2}.

    The square root is taken on rescaled quantities (as in Moré & Thuente) so that large
    slopes do not overflow. Returns NaN where the cubic has no local minimizer. ``ops``: the
    kind of the scalars (:mod:`flatvec.scalar_ops`; tensors by default).
    """
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    scale = ops.maximum(ops.maximum(ops.abs(d1), ops.abs(da)), ops.abs(db))
    safe = ops.where(scale > 0, scale, ops.ones_like(scale))
    disc = (d1 / safe) ** 2 - (da / safe) * (db / safe)
    d2 = ops.sign(b - a) * safe * ops.sqrt(ops.maximum(disc, 0.0))
    t = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2)
    ok = (disc >= 0) & ops.isfinite(t)
    return ops.where(ok, t, ops.constant(float("nan"), t.dtype))


def quadratic_minimizer(
    a: tf.Tensor, fa: tf.Tensor, da: tf.Tensor, b: tf.Tensor, fb: tf.Tensor,
    ops: scalar_ops.ScalarOps = scalar_ops.TRACED,
) -> tf.Tensor:
    r"""Minimizer of the quadratic with value and slope ``fa, da`` at ``a`` and value ``fb``
    at ``b`` (N&W eq. 3.57): :math:`a - \phi'_a (b-a)^2 / (2(\phi_b - \phi_a - \phi'_a(b-a)))`.
    NaN where the quadratic is not convex. ``ops`` as for :func:`cubic_minimizer`."""
    h = b - a
    curv = fb - fa - da * h
    t = a - da * h * h / (2.0 * curv)
    ok = (curv > 0) & ops.isfinite(t)
    return ops.where(ok, t, ops.constant(float("nan"), t.dtype))


def search_on_host(ops: scalar_ops.ScalarOps, start: Callable[..., Any],
                   trial: Callable[[Any], Any], restarts: Callable[[Any], Any],
                   finish: Callable[[Any], Any], g: tf.Tensor, d: tf.Tensor, step0: Any,
                   fallback: tuple[Any, Any, Any] | None, budget: int) -> Any:
    """A Wolfe search's trials as a Python loop on host scalars (the eager tier), where the
    compiled loop runs them in a ``tf.while_loop``: ``start(direction, slope, step, nfev,
    restarted)`` the search's state, ``trial(state)`` the state after evaluating its next
    trial, ``restarts(state)`` whether it starts again along ``fallback`` (direction, first
    trial, may restart), ``finish(state)`` the result; at most ``budget`` trials."""
    with np.errstate(all="ignore"):  # the formulas meet inf and NaN on purpose
        s = start(d, ops.value(dot(g, d)), ops.value(step0), ops.constant(0, tf.int32),
                  ops.constant(False, tf.bool))
        for _ in range(budget):
            if s.done:
                break
            s = trial(s)
            if fallback is not None and restarts(s):
                fallback_d, fallback_step0, _ = fallback
                s = start(fallback_d, ops.value(dot(g, fallback_d)), ops.value(fallback_step0),
                          s.nfev, ops.constant(True, tf.bool))
        return finish(s)


class Restarted(NamedTuple):
    """A line search result and whether it came from the fallback direction."""

    result: LineSearchResult
    restarted: tf.Tensor
    nfev: tf.Tensor


def search_with_restart(
    line_search: LineSearch,
    oracle: Callable[[tf.Tensor], Any],
    x: tf.Tensor,
    f: tf.Tensor,
    g: tf.Tensor,
    d: tf.Tensor,
    step0: tf.Tensor,
    fallback_d: tf.Tensor,
    fallback_step0: tf.Tensor,
    can_restart: tf.Tensor,
    extra_condition: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
    reference: tf.Tensor | None = None,
) -> Restarted:
    """Search along ``d``; if no decrease is found and ``can_restart``, search again along
    ``fallback_d`` (a scaled steepest-descent direction) in the same call.

    ``reference``: the non-monotone acceptance reference, for searches that declare
    ``takes_reference`` (any other raises a ``TypeError`` naming the search).

    This is how the quasi-Newton and CG methods recover from a stale model: the memory or
    the conjugacy is dropped and the step is retried along the gradient, as L-BFGS-B does.
    A direction that is not a descent direction is not searched at all. A line search that
    ``restarts_in_loop`` (both Wolfe searches) restarts inside its own loop, so the oracle is
    traced once; any other is run a second time in a ``tf.cond``. ``extra_condition(d,
    g_new)``, if given, is passed on to the search (which must declare
    ``takes_extra_condition``).
    """
    can = capabilities(line_search)
    extra = {} if extra_condition is None else {"extra_condition": extra_condition}
    if extra_condition is not None and not can.takes_extra_condition:
        raise TypeError(
            f"line_search: {type(line_search).__name__} takes no extra_condition, which this "
            "method passes; use a search with takes_extra_condition = True (MoreThuente)")
    if reference is not None:
        if not can.takes_reference:
            raise TypeError(
                f"line_search: {type(line_search).__name__} takes no reference value, which "
                "this non-monotone method passes; use a search with takes_reference = True "
                "(Backtracking)")
        extra["reference"] = reference
    ops = scalar_ops.for_context()  # eagerly: the choice on the host
    descent = ops.value(dot(g, d)) < 0
    d = ops.branch(descent, lambda: d, lambda: fallback_d)
    step0 = ops.where(descent, ops.value(step0), ops.value(fallback_step0))
    can_restart = ops.value(can_restart) & descent
    if can.restarts_in_loop:
        result, retried = line_search.search_with_fallback(
            oracle, x, f, g, d, step0, fallback_d, fallback_step0, can_restart, **extra)
        return Restarted(result, retried | ~descent, result.nfev)
    first = line_search.search(oracle, x, f, g, d, step0, **extra)
    retry = (first.step <= 0) & can_restart

    def again() -> LineSearchResult:
        return line_search.search(oracle, x, f, g, fallback_d, fallback_step0, **extra)

    second = tf.cond(retry, again, lambda: first)
    return Restarted(second, retry | ~descent, first.nfev + tf.where(retry, second.nfev, 0))
