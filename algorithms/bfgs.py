r"""BFGS with a dense inverse-Hessian approximation and a Wolfe line search.

Nocedal & Wright (2006), Algorithm 6.1: :math:`d_k = -H_k g_k`, a Wolfe step, then with
:math:`s_k = x_{k+1} - x_k`, :math:`y_k = g_{k+1} - g_k`, :math:`\rho_k = 1/(y_k^\top s_k)`
the update (eq. 6.17)

.. math::
    H_{k+1} = (I - \rho_k s_k y_k^\top) H_k (I - \rho_k y_k s_k^\top) + \rho_k s_k s_k^\top,

computed as :math:`H - \rho(s u^\top + u s^\top) + (\rho^2 y^\top u + \rho) s s^\top` with
:math:`u = H y` (one matrix-vector product, two rank-one terms).

Defaults: the scale-invariant method. :math:`H_0 = \|g_0\|^{-1} I` (a first step of length 1)
is rescaled by N&W eq. 6.20, :math:`H_0 \leftarrow (s^\top y / y^\top y) I`, before the first
update, so multiplying :math:`f` by a constant changes no iterate; a strong Wolfe search
(:class:`~flatvec.algorithms.strong_wolfe.StrongWolfe`, :math:`c_1 = 10^{-4}`,
:math:`c_2 = 0.9`) tries the unit step first. On the classic test suite (robustness sample of
``tests/test_algorithms.py``) this solves 38 problems against SciPy's 37, with a median
evaluation ratio of 0.97 and a geometric mean of 0.86 to SciPy's BFGS; extended Rosenbrock
needs 47 evaluations at n = 100 where SciPy needs 483. SciPy's choices (:math:`H_0 = I`,
Moré–Thuente with ``xtol=1e-14``, first trial :math:`\min(1, 2.02\,(f_k - f_{k-1}) /
\phi'(0))`) are options (``scale_h0=False, line_search="more_thuente",
first_trial="scipy"``) and make SciPy's trials; they win where the problem's curvature is
near 1 (65 against 198 evaluations on a quadratic with eigenvalues 1 to 1000).

A pair with :math:`s^\top y \le \epsilon\, y^\top y` is skipped (no positive-definite update
exists). If the search finds no decrease along :math:`-Hg`, :math:`H` is reset to the (scaled)
identity and the step is retried along the (scaled) gradient in the same iteration.

Memory and work are :math:`O(n^2)` per iteration: for small ``n``; use L-BFGS beyond a few
thousand variables.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np
import tensorflow as tf

from flatvec import scalar_ops, vector_ops
from flatvec.protocol import Oracle

from .line_search import (
    LineSearch,
    Restarted,
    dot,
    machine_eps,
    repeat_decrease_step,
    unit_step_scale,
)
from .line_search_method import Direction, LineSearchMethod, Proposal
from .searches import make_line_search

__all__ = ["BFGS", "BFGSDirection", "BFGSMemory", "bfgs_update"]


class BFGSMemory(NamedTuple):
    """BFGS memory: the inverse-Hessian approximation and its identity scale."""

    h: tf.Tensor  # [n, n]
    gamma: tf.Tensor  # scale of the identity H is (re)started from
    updated: tf.Tensor  # bool: h holds at least one update
    f_prev: tf.Tensor  # the previous value (for the first trial step)


def bfgs_update(h: tf.Tensor, s: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    r"""The BFGS inverse update (N&W eq. 6.17) of ``h`` with the pair ``(s, y)`` (tensors, or
    NumPy arrays on the host)."""
    rho = 1.0 / dot(s, y)
    u = vector_ops.matvec(h, y)
    ss = s[:, None] * s[None, :]
    su = s[:, None] * u[None, :]
    su_t = su.T if isinstance(su, np.ndarray) else tf.transpose(su)
    return h - rho * (su + su_t) + (rho * rho * dot(y, u) + rho) * ss


class BFGSDirection(Direction):
    """:math:`d = -H g` with the dense BFGS inverse update (see the module docstring)."""

    runs_on_host: ClassVar[bool] = True  # propose and update take NumPy arrays too

    def __init__(self, *, scale_h0: bool, first_trial: str) -> None:
        self.scale_h0, self.first_trial = scale_h0, first_trial

    def init(self, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor) -> BFGSMemory:
        ops = scalar_ops.for_context()  # (on the host: NumPy fields)
        gamma = unit_step_scale(g) if self.scale_h0 else ops.tensor(ops.constant(1.0, x.dtype),
                                                                   x.dtype)
        f_prev = ops.value(f) + 0.5 * ops.value(vector_ops.norm(g))
        return BFGSMemory(gamma * _eye_like(x), gamma, ops.zeros([], tf.bool),
                          ops.tensor(f_prev, x.dtype))

    def propose(self, mem: BFGSMemory, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
                oracle: Oracle) -> Proposal:
        one = scalar_ops.for_context().constant(1.0, x.dtype)
        d = -vector_ops.matvec(mem.h, g)
        if self.first_trial == "scipy":  # N&W eq. 3.60, at most 1
            step0 = repeat_decrease_step(f, mem.f_prev, dot(g, d), 1.0)
        else:
            step0 = one
        return Proposal(d, step0, fallback_d=-mem.gamma * g, fallback_step0=one,
                        can_restart=mem.updated)

    def update(self, mem: BFGSMemory, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
               found: Restarted, proposal: Proposal) -> BFGSMemory:
        ops = scalar_ops.for_context()  # eagerly: the scalars on the host
        ls = found.result
        one = ops.constant(1.0, x.dtype)
        moved = ops.value(ls.step) > 0
        s, y = ls.x - x, ls.g - g
        sy, yy = ops.value(dot(s, y)), ops.value(dot(y, y))
        keep = moved & (sy > machine_eps(x.dtype) * yy) & ops.isfinite(sy)
        restarted, updated = ops.value(found.restarted), ops.value(mem.updated)
        if self.scale_h0:  # eq. 6.20 before the first update
            gamma = ops.where(keep, sy / ops.where(keep, yy, one), ops.value(mem.gamma))
            fresh = restarted | ~updated
        else:  # H0 = I, also after a reset
            gamma, fresh = ops.value(mem.gamma), restarted
        # Eq. 6.20: the first update (and the first after a reset) starts from gamma * I.
        # Conds, not selects: an n x n select (and the scaled identity) every iteration cost
        # more than the update itself at n ~ 1000; a skipped pair's update is never computed.
        h = ops.branch(fresh, lambda: gamma * _eye_like(x), lambda: mem.h)
        h = ops.branch(keep, lambda: bfgs_update(h, s, y), lambda: h)
        return BFGSMemory(h, ops.tensor(gamma, x.dtype),
                          ops.tensor(keep | (updated & ~restarted), tf.bool),
                          ops.tensor(ops.where(moved, ops.value(f), ops.value(mem.f_prev)),
                                     x.dtype))


class BFGS(LineSearchMethod):
    r"""BFGS (N&W Algorithm 6.1).

    Parameters
    ----------
    c1, c2 : float
        Wolfe constants of the line search.
    max_evals : int
        Most function evaluations per line search.
    line_search : str or LineSearch
        ``"strong_wolfe"`` (default), ``"more_thuente"`` (built with ``xtol=1e-14``, as
        SciPy's), or an instance (see :func:`~flatvec.algorithms.searches.make_line_search`).
    line_search_options : dict, optional
        More keyword arguments for a line search given by name.
    scale_h0 : bool
        Default True: start :math:`H` from :math:`1/\|g_0\|\, I` (a first step of length 1)
        and rescale it by N&W eq. 6.20 before the first update, which makes the method
        invariant to the scale of :math:`f`. False: SciPy's :math:`H_0 = I`.
    first_trial : {"unit", "scipy"}
        First trial step: always 1 (default), or eq. 3.60 capped at 1 (SciPy's).

    Examples
    --------
    >>> import tensorflow as tf, flatvec
    >>> def rosen(x):
    ...     return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    >>> res = flatvec.minimize(rosen, tf.constant([-1.2, 1.0], tf.float64), algo="bfgs",
    ...                        gtol=1e-6)
    >>> bool(res.success), [round(v, 4) for v in res.x.tolist()]
    (True, [1.0, 1.0])
    """

    # SciPy's CG and BFGS stop on the gradient test only: the relative-decrease test would end
    # slow-but-steady runs early. Read by the driver when ``ftol`` is not given (if it does).
    default_ftol: ClassVar[float] = 0.0

    def __init__(self, *, c1: float = 1e-4, c2: float = 0.9, max_evals: int = 25,
                 line_search: str | LineSearch = "strong_wolfe",
                 line_search_options: dict | None = None, scale_h0: bool = True,
                 first_trial: str = "unit") -> None:
        if first_trial not in ("scipy", "unit"):
            raise ValueError(f"first_trial: expected 'scipy' or 'unit', got {first_trial!r}")
        search = make_line_search(
            line_search, c1=c1, c2=c2, max_evals=max_evals,
            defaults={"more_thuente": {"xtol": 1e-14}}, **(line_search_options or {}))
        self.c1, self.c2, self.max_evals = float(c1), float(c2), int(max_evals)
        self.scale_h0 = bool(scale_h0)
        self.first_trial = first_trial
        super().__init__(BFGSDirection(scale_h0=self.scale_h0, first_trial=first_trial), search)


def _eye_like(x: tf.Tensor) -> Any:
    """The identity of ``x``'s size and dtype (a NumPy array for a NumPy ``x``)."""
    if isinstance(x, np.ndarray):
        return np.eye(x.shape[0], dtype=x.dtype)
    return tf.linalg.diag(tf.ones_like(x))
