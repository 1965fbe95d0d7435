r"""Limited-memory BFGS (L-BFGS) with a strong Wolfe line search.

The direction is :math:`d_k = -H_k g_k`, where :math:`H_k` is the BFGS inverse-Hessian
approximation built from the last :math:`m` curvature pairs :math:`s_i = x_{i+1} - x_i`,
:math:`y_i = g_{i+1} - g_i` over the initial matrix :math:`H_k^0 = \gamma_k I`,

.. math::
    H_{i+1} = V_i^\top H_i V_i + \rho_i s_i s_i^\top, \quad
    V_i = I - \rho_i y_i s_i^\top, \quad \rho_i = 1 / (y_i^\top s_i), \quad
    \gamma_k = \frac{s_{k-1}^\top y_{k-1}}{y_{k-1}^\top y_{k-1}},

applied without forming any matrix by the two-loop recursion (Nocedal & Wright, Algorithm
7.4); the outer iteration is N&W Algorithm 7.5. The pairs live in fixed ``[m, n]`` ring
buffers (a write index and a count; no Python lists, no shifting copies), so the step traces
once and compiles under XLA.

- The step length comes from a strong Wolfe search (:math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`)
  that tries :math:`\alpha = 1` first. With an empty memory the direction is
  :math:`-\gamma g` with :math:`\gamma = 1/\|g_0\|_2` at the start, so the first trial step
  has length 1 (as L-BFGS-B's first step :math:`1/\|d\|`), and the last :math:`\gamma`
  after a reset.
- A pair is skipped when :math:`s^\top y \le \epsilon\, y^\top y` (machine :math:`\epsilon`):
  it would not keep :math:`H` positive definite.
- If the search finds no decrease while the memory holds pairs, the memory is dropped and the
  step is retried along :math:`-\gamma g` in the same iteration; only if that fails too is the
  step reported as ``failed``.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from flatvec.algorithm import Algorithm, Oracle

from .line_search import (
    dot,
    machine_eps,
    search_with_restart,
    unit_step_scale,
)
from .strong_wolfe import StrongWolfe

__all__ = ["LBFGS", "LBFGSState", "two_loop"]


class LBFGSState(NamedTuple):
    """L-BFGS state: the iterate, and the pairs in ring buffers (oldest at ``head - count``)."""

    x: tf.Tensor
    f: tf.Tensor
    g: tf.Tensor
    step_size: tf.Tensor
    failed: tf.Tensor
    s: tf.Tensor  # [m, n]
    y: tf.Tensor  # [m, n]
    rho: tf.Tensor  # [m], 1 / (s'y)
    head: tf.Tensor  # int32: the slot the next pair is written to
    count: tf.Tensor  # int32: pairs stored, <= m
    gamma: tf.Tensor  # scale of the initial inverse Hessian


def two_loop(
    g: tf.Tensor,
    s: tf.Tensor,
    y: tf.Tensor,
    rho: tf.Tensor,
    head: tf.Tensor,
    count: tf.Tensor,
    gamma: tf.Tensor,
) -> tf.Tensor:
    r"""The product :math:`H g` by the two-loop recursion (N&W Algorithm 7.4).

    The ``count`` newest pairs are read from the ring buffers ``s, y`` ([m, n]) and ``rho``
    ([m]); pair ``i`` (0 = oldest) sits in slot ``(head - count + i) mod m``.
    """
    m = tf.shape(s)[0]
    start = tf.math.floormod(head - count, m)
    alphas = tf.zeros_like(rho)

    def backward(i: tf.Tensor, q: tf.Tensor, alphas: tf.Tensor) -> tuple:
        j = tf.math.floormod(start + i, m)
        a = tf.gather(rho, j) * dot(tf.gather(s, j), q)
        return i - 1, q - a * tf.gather(y, j), tf.tensor_scatter_nd_update(alphas, [[j]], [a])

    _, q, alphas = tf.while_loop(
        lambda i, *_: i >= 0, backward, (count - 1, g, alphas), maximum_iterations=m
    )
    r = gamma * q

    def forward(i: tf.Tensor, r: tf.Tensor) -> tuple:
        j = tf.math.floormod(start + i, m)
        b = tf.gather(rho, j) * dot(tf.gather(y, j), r)
        return i + 1, r + (tf.gather(alphas, j) - b) * tf.gather(s, j)

    _, r = tf.while_loop(lambda i, _: i < count, forward, (tf.zeros([], tf.int32), r),
                         maximum_iterations=m)
    return r


class LBFGS(Algorithm):
    r"""Limited-memory BFGS (N&W Algorithms 7.4 and 7.5) with a strong Wolfe line search.

    Parameters
    ----------
    memory : int
        Number :math:`m` of curvature pairs kept.
    c1, c2 : float
        Strong Wolfe constants of the line search.
    max_evals : int
        Most function evaluations per line search.

    Examples
    --------
    >>> import tensorflow as tf, flatvec
    >>> def rosen(x):
    ...     return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    >>> res = flatvec.minimize(rosen, tf.constant([-1.2, 1.0], tf.float64), algo="lbfgs",
    ...                        gtol=1e-6)
    >>> bool(res.success), [round(v, 4) for v in res.x.tolist()]
    (True, [1.0, 1.0])
    """

    def __init__(
        self, *, memory: int = 10, c1: float = 1e-4, c2: float = 0.9, max_evals: int = 25
    ) -> None:
        if int(memory) != memory or memory < 1:
            raise ValueError(f"memory: expected a positive integer, got {memory!r}")
        self.memory = int(memory)
        self.line_search = StrongWolfe(c1=c1, c2=c2, max_evals=max_evals)
        self.c1, self.c2, self.max_evals = float(c1), float(c2), int(max_evals)

    def init(self, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor) -> LBFGSState:
        n = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]  # static where known
        zeros = tf.zeros([self.memory, n], x.dtype)
        return LBFGSState(
            x, f, g,
            step_size=tf.zeros([], x.dtype),
            failed=tf.constant(False),
            s=zeros, y=zeros,
            rho=tf.zeros([self.memory], x.dtype),
            head=tf.zeros([], tf.int32),
            count=tf.zeros([], tf.int32),
            gamma=unit_step_scale(g),
        )

    def step(self, state: LBFGSState, oracle: Oracle) -> LBFGSState:
        x, f, g = state.x, state.f, state.g
        d = -two_loop(g, state.s, state.y, state.rho, state.head, state.count, state.gamma)
        one = tf.ones([], x.dtype)
        found = search_with_restart(
            self.line_search, oracle, x, f, g, d, one,
            fallback_d=-state.gamma * g, fallback_step0=one, can_restart=state.count > 0,
        )
        ls = found.result
        moved = ls.step > 0
        count = tf.where(found.restarted, 0, state.count)

        # Curvature pair (skipped unless s'y > eps * y'y, which keeps H positive definite).
        s, y = ls.x - x, ls.g - g
        sy, yy = dot(s, y), dot(y, y)
        eps = tf.constant(machine_eps(x.dtype), x.dtype)
        keep = moved & (sy > eps * yy) & tf.math.is_finite(sy)
        # Write slot `head` (rewrite it unchanged when the pair is skipped). Rows are read with
        # tf.gather: XLA compiles a dynamic gather once, but a slice with a tensor index once
        # per index value.
        slot = state.head
        s_buf = tf.tensor_scatter_nd_update(
            state.s, [[slot]], [tf.where(keep, s, tf.gather(state.s, slot))])
        y_buf = tf.tensor_scatter_nd_update(
            state.y, [[slot]], [tf.where(keep, y, tf.gather(state.y, slot))])
        rho = tf.tensor_scatter_nd_update(
            state.rho, [[slot]],
            [tf.where(keep, 1.0 / tf.where(keep, sy, one), tf.gather(state.rho, slot))])
        head = tf.where(keep, tf.math.floormod(slot + 1, self.memory), slot)
        count = tf.where(keep, tf.minimum(count + 1, self.memory), count)
        gamma = tf.where(keep, sy / tf.where(keep, yy, one), state.gamma)
        return LBFGSState(
            ls.x, ls.f, ls.g,
            step_size=ls.step,
            failed=~moved,
            s=s_buf, y=y_buf, rho=rho, head=head, count=count, gamma=gamma,
        )
