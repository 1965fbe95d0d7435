r"""Truncated Newton (Newton-CG, line-search variant; Nocedal & Wright Algorithm 7.1).

Each iteration solves the Newton equations :math:`\nabla^2 f(x_k)\, d = -g_k` approximately by
conjugate gradients on Hessian-vector products (forward-over-reverse: no Hessian is formed),
then takes a line-search step along :math:`d`.

The inner CG starts from :math:`z_0 = 0` and stops at the first of

- a residual :math:`\|r_j\| \le \eta_k \|g_k\|` with the forcing term
  :math:`\eta_k = \min(0.5, \|g_k\|)` (``forcing="quadratic"``, the default: quadratic
  convergence), :math:`\min(0.5, \sqrt{\|g_k\|})` (``"superlinear"``, SciPy's choice) or a
  constant. On the classic test suite (``tests/compare_suite.py``) the quadratic rule solves
  39 of 43 problems with 7289 Hessian-vector products in all, the superlinear one 39 with
  8036 (SciPy's Newton-CG: 31, 12943);
- negative curvature :math:`p_j^\top \nabla^2 f\, p_j < 0`: the iterate so far, or on the
  first inner iteration the steepest-descent direction scaled by the curvature found,
  :math:`(r^\top r / |p^\top H p|)(-g)`; a curvature of at most
  :math:`3\epsilon \|p\| \|H p\|` (numerically none) ends the
  solve too;
- ``max_cg_iter`` inner iterations (default :math:`20n`, as SciPy).

The norm in the forcing test is the 1-norm by default, as in SciPy's ``Newton-CG``
(``residual_norm=2`` for N&W's 2-norm). The step comes from the Moré–Thuente search
(:math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`, ``xtol=1e-14``) with the first trial 1, the Newton
step; if it finds no decrease the step is retried along :math:`-g` in the same iteration.

With ``xtol > 0`` the run also stops, successfully, once a step's 1-norm is at most
:math:`n \cdot` ``xtol`` (SciPy's ``Newton-CG`` stopping test, for like-for-like comparisons).

References
----------
J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., 2006, §7.1.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import tensorflow as tf

from flatvec.protocol import Oracle
from flatvec.status import StopReason

from .line_search import LineSearch, Restarted, dot, machine_eps, repeat_decrease_step
from .line_search_method import Direction, LineSearchMethod, LineSearchState, Proposal
from .searches import make_line_search

__all__ = ["GaussNewton", "NewtonCG", "NewtonCGMemory", "TruncatedNewtonDirection",
           "check_inner_options", "forcing_tolerance", "truncated_cg"]

FORCING = ("quadratic", "superlinear")


class NewtonCGMemory(NamedTuple):
    """Newton-CG memory: the previous value (for the ``"scipy"`` first trial) and the inner
    iterations of the last solve."""

    f_prev: tf.Tensor
    cg_iterations: tf.Tensor  # int32


def check_inner_options(forcing: object, max_cg_iter: object) -> None:
    """Raise a ``ValueError`` naming the option unless ``forcing`` is a rule name or a number
    in (0, 1) and ``max_cg_iter`` is None or a positive integer."""
    named = isinstance(forcing, str) and forcing in FORCING
    number = (not isinstance(forcing, (bool, str)) and isinstance(forcing, (int, float))
              and 0.0 < forcing < 1.0)
    if not (named or number):
        raise ValueError(f"forcing: expected one of {FORCING} or a number in (0, 1), "
                         f"got {forcing!r}")
    if max_cg_iter is not None and (not isinstance(max_cg_iter, int)
                                    or isinstance(max_cg_iter, bool) or max_cg_iter < 1):
        raise ValueError(f"max_cg_iter: expected a positive integer or None, got {max_cg_iter!r}")


def forcing_tolerance(g: tf.Tensor, forcing: str | float, norm: int) -> tf.Tensor:
    r"""The inner residual tolerance :math:`\eta \|g\|` for a forcing rule (see the module)."""
    gnorm = tf.norm(g, ord=norm)
    half = tf.constant(0.5, g.dtype)
    if forcing == "superlinear":
        eta = tf.minimum(half, tf.sqrt(gnorm))
    elif forcing == "quadratic":
        eta = tf.minimum(half, gnorm)
    else:
        eta = tf.constant(float(forcing), g.dtype)
    return eta * gnorm


class _CG(NamedTuple):
    i: tf.Tensor
    z: tf.Tensor
    r: tf.Tensor
    p: tf.Tensor
    rr: tf.Tensor
    done: tf.Tensor


def truncated_cg(hvp, g: tf.Tensor, tol: tf.Tensor, max_iter: int,
                 norm: int = 1) -> tuple[tf.Tensor, tf.Tensor]:
    r"""Approximate solution of :math:`H d = -g` by CG from 0, stopped as the module says.

    ``hvp(v)`` gives :math:`H v`. Returns ``(d, iterations)``; each iteration is one product.
    """
    eps3 = 3.0 * machine_eps(g.dtype)

    def body(c: _CG) -> tuple[_CG]:
        hp = hvp(c.p)
        curv = dot(c.p, hp)
        # Relative, not SciPy's absolute 3 eps: on a tiny gradient (a loss near 1e-8) every
        # curvature p'Hp is below 3 eps, and the solve would end before its first step.
        flat = (curv >= 0) & (curv <= eps3 * tf.norm(c.p) * tf.norm(hp))
        negative = curv < 0
        # First inner iteration with negative curvature: steepest descent scaled by it.
        z_neg = tf.where(c.i == 0, (c.rr / -tf.where(negative, curv, -1.0)) * -g, c.z)
        alpha = c.rr / tf.where(curv > 0, curv, 1.0)
        z = c.z + alpha * c.p
        r = c.r + alpha * hp
        rr = dot(r, r)
        converged = tf.norm(r, ord=norm) <= tol
        p = -r + (rr / tf.where(c.rr > 0, c.rr, 1.0)) * c.p
        stop = flat | negative
        return (_CG(
            c.i + 1,
            tf.where(negative, z_neg, tf.where(flat, c.z, z)),
            tf.where(stop, c.r, r), tf.where(stop, c.p, p), tf.where(stop, c.rr, rr),
            stop | converged,
        ),)

    start = _CG(tf.zeros([], tf.int32), tf.zeros_like(g), g, -g, dot(g, g),
                tf.norm(g, ord=norm) <= tol)
    (end,) = tf.while_loop(lambda c: ~c.done & (c.i < max_iter), body, (start,))
    return end.z, end.i


class TruncatedNewtonDirection(Direction):
    """The inexact Newton direction of :func:`truncated_cg` (see the module docstring)."""

    def __init__(self, *, forcing: str | float, residual_norm: int, max_cg_iter: int | None,
                 first_trial: str, curvature: str = "hessian") -> None:
        self.forcing, self.residual_norm = forcing, residual_norm
        self.max_cg_iter, self.first_trial = max_cg_iter, first_trial
        self.curvature = curvature

    def init(self, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor) -> NewtonCGMemory:
        # f_prev = inf: the "scipy" first trial is 1 on the first iteration, as SciPy's.
        return NewtonCGMemory(tf.constant(float("inf"), x.dtype), tf.zeros([], tf.int32))

    def propose(self, mem: NewtonCGMemory, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
                oracle: Oracle) -> Proposal:
        n = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        max_iter = self.max_cg_iter if self.max_cg_iter is not None else 20 * n
        tol = forcing_tolerance(g, self.forcing, self.residual_norm)
        product = oracle.hvp if self.curvature == "hessian" else oracle.ggn_vp
        d, iterations = truncated_cg(lambda v: product(x, v), g, tol, max_iter,
                                     self.residual_norm)
        one = tf.ones([], x.dtype)
        if self.first_trial == "scipy":  # N&W eq. 3.60 capped at 1, as SciPy's line search
            step0 = repeat_decrease_step(f, mem.f_prev, dot(g, d), 1.0)
        else:
            step0 = one
        return Proposal(d, step0, fallback_d=-g, fallback_step0=one,
                        can_restart=tf.constant(True), info=iterations)

    def update(self, mem: NewtonCGMemory, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
               found: Restarted, proposal: Proposal) -> NewtonCGMemory:
        moved = found.result.step > 0
        return NewtonCGMemory(tf.where(moved, f, mem.f_prev), proposal.info)


class NewtonCG(LineSearchMethod):
    r"""Truncated Newton with a line search (N&W Algorithm 7.1; see the module docstring).

    Parameters
    ----------
    forcing : {"quadratic", "superlinear"} or float
        The forcing term :math:`\eta_k` of the inner residual test (default ``"quadratic"``).
    residual_norm : {1, 2}
        Norm of the residual and gradient in that test (1: SciPy's choice).
    max_cg_iter : int, optional
        Most inner CG iterations (Hessian-vector products) per iteration; default :math:`20n`.
    first_trial : {"unit", "scipy"}
        First trial step: 1 (the Newton step, default), or eq. 3.60 capped at 1 (SciPy's).
    c1, c2, max_evals, line_search, line_search_options :
        The line search, as for ``lbfgs`` (default ``"more_thuente"`` with ``xtol=1e-14``).
    xtol : float
        Also stop, successfully, once a step's 1-norm is at most ``n * xtol`` (0, the
        default: off).
    curvature : {"hessian", "ggn"}
        The matrix of the inner CG: the Hessian (default), or the generalized Gauss-Newton
        matrix of a model or residual objective (``oracle.ggn_vp``; Hessian-free
        optimization in Martens' sense, positive semi-definite, the ``gauss-newton`` method).

    Examples
    --------
    >>> import tensorflow as tf, flatvec
    >>> def rosen(x):
    ...     return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    >>> res = flatvec.minimize(rosen, tf.constant([1.3, 0.7, 0.8, 1.9, 1.2], tf.float64),
    ...                        "newton-cg", gtol=1e-8)
    >>> bool(res.success), res.nhev > 0
    (True, True)
    """

    needs_hvp: ClassVar[bool] = True
    stop_reasons: ClassVar[tuple[StopReason, ...]] = (
        StopReason("Converged: the last step's 1-norm is at most n * xtol (SciPy's Newton-CG "
                   "test).", success=True),
    )
    default_ftol: ClassVar[float] = 0.0  # SciPy's Newton-CG has no relative-decrease test

    def __init__(
        self, *, forcing: str | float = "quadratic", residual_norm: int = 1,
        max_cg_iter: int | None = None, first_trial: str = "unit", c1: float = 1e-4,
        c2: float = 0.9, max_evals: int = 25, line_search: str | LineSearch = "more_thuente",
        line_search_options: dict | None = None, xtol: float = 0.0, curvature: str = "hessian",
    ) -> None:
        check_inner_options(forcing, max_cg_iter)
        if curvature not in ("hessian", "ggn"):
            raise ValueError(f"curvature: expected 'hessian' or 'ggn', got {curvature!r}")
        self.curvature = curvature
        # Instance-level declarations: the driver reads which products this step asks for.
        self.needs_hvp, self.needs_ggn = curvature == "hessian", curvature == "ggn"
        if residual_norm not in (1, 2):
            raise ValueError(f"residual_norm: expected 1 or 2, got {residual_norm!r}")
        if first_trial not in ("unit", "scipy"):
            raise ValueError(f"first_trial: expected 'unit' or 'scipy', got {first_trial!r}")
        if not xtol >= 0.0:
            raise ValueError(f"xtol: expected a non-negative number, got {xtol!r}")
        self.forcing, self.residual_norm = forcing, int(residual_norm)
        self.max_cg_iter = None if max_cg_iter is None else int(max_cg_iter)
        self.first_trial, self.xtol = first_trial, float(xtol)
        self.c1, self.c2, self.max_evals = float(c1), float(c2), int(max_evals)
        search = make_line_search(
            line_search, c1=c1, c2=c2, max_evals=max_evals,
            defaults={"more_thuente": {"xtol": 1e-14}}, **(line_search_options or {}))
        super().__init__(TruncatedNewtonDirection(
            forcing=forcing, residual_norm=self.residual_norm, max_cg_iter=self.max_cg_iter,
            first_trial=first_trial, curvature=curvature), search)

    def step(self, state: LineSearchState, oracle: Oracle) -> LineSearchState:
        new = super().step(state, oracle)
        if self.xtol == 0:
            return new
        n = tf.cast(tf.size(state.x), state.x.dtype)
        small = ~new.failed & (tf.reduce_sum(tf.abs(new.x - state.x)) <= self.xtol * n)
        return new._replace(stop_reason=tf.where(small, 1, 0))


class GaussNewton(NewtonCG):
    r"""Gauss-Newton with a line search: the direction solves :math:`G d = -g` by CG on
    Gauss-Newton products (:math:`G = J^\top J` for residuals, :math:`J^\top H_L J` for a
    model's loss), never forming :math:`G`; otherwise as ``newton-cg`` (whose options it takes,
    ``curvature`` fixed to ``"ggn"``).

    Examples
    --------
    >>> import tensorflow as tf, flatvec
    >>> obj = flatvec.Objective.from_residuals(
    ...     lambda x: tf.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]]))
    >>> res = flatvec.minimize(obj, tf.constant([-1.2, 1.0], tf.float64), "gauss-newton",
    ...                        gtol=1e-10)
    >>> bool(res.success), [round(v, 6) for v in res.x.tolist()]
    (True, [1.0, 1.0])
    """

    def __init__(self, **options: object) -> None:
        if "curvature" in options:
            raise TypeError("curvature: gauss-newton always uses 'ggn' (see newton-cg)")
        super().__init__(curvature="ggn", **options)  # type: ignore[arg-type]
