r"""Limited-memory BFGS (L-BFGS) with a Moré–Thuente line search.

The direction is :math:`d_k = -H_k g_k`, where :math:`H_k` is the BFGS inverse-Hessian
approximation built from the last :math:`m` curvature pairs :math:`s_i = x_{i+1} - x_i`,
:math:`y_i = g_{i+1} - g_i` over the initial matrix :math:`H_k^0 = \gamma_k I`,

.. math::
    H_{i+1} = V_i^\top H_i V_i + \rho_i s_i s_i^\top, \quad
    V_i = I - \rho_i y_i s_i^\top, \quad \rho_i = 1 / (y_i^\top s_i), \quad
    \gamma_k = \frac{s_{k-1}^\top y_{k-1}}{y_{k-1}^\top y_{k-1}}.

The outer iteration is Nocedal & Wright, Algorithm 7.5. The product :math:`H_k g_k` is the
one the two-loop recursion (N&W Algorithm 7.4) gives, computed from the compact
representation of the inverse BFGS matrix (Byrd, Nocedal & Schnabel, 1994):

.. math::
    H g = \gamma g + S p - \gamma Y t, \qquad
    t = R^{-1} S^\top g, \qquad
    p = R^{-\top}\big((D + \gamma Y^\top Y)\, t - \gamma Y^\top g\big),

with :math:`S, Y` the pairs as columns, :math:`R` the upper triangle of :math:`S^\top Y` and
:math:`D` its diagonal. Why this form: the two-loop needs :math:`4m` dependent vector
operations per iteration; the compact form needs two products of a length-:math:`m` vector with
the ``[m, n]`` buffers plus :math:`m \times m` algebra. The small matrices
:math:`S^\top Y, Y^\top Y` and the products :math:`S^\top g, Y^\top g` are kept up to date in
the state: the stored rows meet the new gradient in two matrix-vector products, and the new
pair's products follow from those (:math:`S^\top y = S^\top g_{k+1} - S^\top g_k`), so an
iteration reads the ``[m, n]`` buffers four times in all, the least a method that forms
:math:`d` explicitly can do. No loop runs over the memory, so the step traces once, compiles
under XLA and costs a few large kernels instead of many small ones.

The pairs live in fixed ``[m, n]`` ring buffers (a write index ``head`` and a ``count``; no
shifting): a new pair overwrites one row (:func:`flatvec.buffers.write_rows`: in place in the
compiled loop, which TensorFlow's ``tf.tensor_scatter_nd_update`` never is there), and only
the small matrices are put in chronological order (by a gather).

- The step length comes from a Moré–Thuente search
  (:class:`~flatvec.algorithms.more_thuente.MoreThuente`, :math:`c_1 = 10^{-4}`,
  :math:`c_2 = 0.9`, ``xtol=0.1``, as L-BFGS-B's ``dcsrch``) that tries :math:`\alpha = 1`
  first. With an empty memory the direction is
  :math:`-\gamma g` with :math:`\gamma = 1/\|g_0\|_2` at the start, so the first trial step
  has length 1 (as L-BFGS-B's first step :math:`1/\|d\|`), and the last :math:`\gamma`
  after a reset.
- A pair is skipped when :math:`s^\top y \le \epsilon\, y^\top y` (machine :math:`\epsilon`):
  it would not keep :math:`H` positive definite.
- If the search finds no decrease while the memory holds pairs, the memory is dropped and the
  step is retried along :math:`-\gamma g` in the same iteration; only if that fails too is the
  step reported as ``failed``.

References
----------
R. H. Byrd, J. Nocedal and R. B. Schnabel, "Representations of quasi-Newton matrices and
their use in limited memory methods", Math. Programming 63, 1994.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from flatvec import buffers, scalar_ops, vector_ops
from flatvec.protocol import LBFGSB_FTOL, Oracle

from .line_search import LineSearch, Restarted, dot, machine_eps, unit_step_scale
from .line_search_method import Direction, LineSearchMethod, Proposal
from .searches import make_line_search

__all__ = ["LBFGS", "LBFGSDirection", "LBFGSMemory", "inverse_hessian_product"]


class LBFGSMemory(NamedTuple):
    """L-BFGS memory: the pairs in ring buffers and their inner products.

    Pair ``i`` (0 = oldest) of the ``count`` stored sits in slot ``(head - count + i) mod m``.
    """

    s: tf.Tensor  # [m, n]
    y: tf.Tensor  # [m, n]
    sy: tf.Tensor  # [m, m], sy[i, j] = s_i' y_j (slot order) where pair i is not newer than j
    yy: tf.Tensor  # [m, m], yy[i, j] = y_i' y_j
    sg: tf.Tensor  # [m], s_i' g
    yg: tf.Tensor  # [m], y_i' g
    head: tf.Tensor  # int32: the slot the next pair is written to
    count: tf.Tensor  # int32: pairs stored, <= m
    gamma: tf.Tensor  # scale of the initial inverse Hessian


def inverse_hessian_product(
    g: tf.Tensor,
    s: tf.Tensor,
    y: tf.Tensor,
    sy: tf.Tensor,
    yy: tf.Tensor,
    sg: tf.Tensor,
    yg: tf.Tensor,
    head: tf.Tensor,
    count: tf.Tensor,
    gamma: tf.Tensor,
) -> tf.Tensor:
    r"""The L-BFGS product :math:`H g` in compact form (see the module docstring).

    ``s, y`` are ``[m, n]`` ring buffers holding the ``count`` newest pairs (see
    :class:`LBFGSMemory` for the slot order); ``sy = s y'``, ``yy = y y'``, ``sg = s g`` and
    ``yg = y g`` are their inner products. Slots not in use may hold anything: they are masked.
    """
    return -_direction(g, s, y, sy, yy, sg, yg, head, count, gamma)[0]


def _direction(
    g: tf.Tensor, s: tf.Tensor, y: tf.Tensor, sy: tf.Tensor, yy: tf.Tensor, sg: tf.Tensor,
    yg: tf.Tensor, head: tf.Tensor, count: tf.Tensor, gamma: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(-H g, -gamma g)``: the L-BFGS direction built on the steepest-descent fallback
    (two passes over n fewer than negating ``H g``, and the same bits: negation is exact)."""
    p_slot, t_slot = _compact_coefficients(sy, yy, sg, yg, head, count, gamma)
    fallback = -gamma * g
    return (fallback - vector_ops.combine_rows(p_slot, s)
            + vector_ops.combine_rows(gamma * t_slot, y)), fallback


def _compact_coefficients(
    sy: tf.Tensor, yy: tf.Tensor, sg: tf.Tensor, yg: tf.Tensor, head: tf.Tensor,
    count: tf.Tensor, gamma: tf.Tensor
) -> tuple[Any, Any]:
    """``p, t`` (``[m]``, slot order) with ``H g = gamma g + p' S - gamma t' Y``.

    On ``[m, m]`` and ``[m]`` values only: run eagerly, on the host
    (:mod:`flatvec.scalar_ops`; the triangular solves and the product stay TensorFlow's)."""
    ops = scalar_ops.for_context()
    sy, yy, sg, yg, head, count, gamma = (ops.value(v) for v in (sy, yy, sg, yg, head, count,
                                                                  gamma))
    m = tf.shape(sy)[0] if ops is scalar_ops.TRACED else sy.shape[0]
    # Chronological order of all m slots: the unused ones come first.
    order = ops.floormod(head + ops.range(m), m)
    back = ops.floormod(ops.range(m) - head, m)  # inverse permutation

    def chrono(matrix: Any) -> Any:
        return ops.gather(ops.gather(matrix, order), order, axis=1)

    used = ops.cast(ops.range(m) >= m - count, sy.dtype)
    both = ops.expand_dims(used, 1) * ops.expand_dims(used, 0)
    sy_c = chrono(sy) * both
    # Unused slots get a unit diagonal and no coupling, so they solve to zero.
    r = ops.upper(sy_c) + ops.diag(1.0 - used)
    a = ops.gather(sg, order) * used
    t = ops.squeeze(ops.triangular_solve(r, ops.expand_dims(a, 1), lower=False), 1)
    u = (ops.diag_part(sy_c) * t
         + gamma * (ops.matvec(chrono(yy) * both, t) - ops.gather(yg, order) * used))
    p = ops.squeeze(ops.triangular_solve(r, ops.expand_dims(u, 1), lower=False,
                                         adjoint=True), 1) * used
    return ops.gather(p, back), ops.gather(t, back)


def _replace_row_and_column(
    ops: scalar_ops.ScalarOps, matrix: Any, at: Any, row: Any, column: Any
) -> Any:
    """``matrix`` with the row and the column where the bool mask ``at`` holds set to ``row``
    and ``column``."""
    # expand_dims, not [:, None]: indexing traces a strided slice and its constants.
    return ops.select(ops.expand_dims(at, 1), ops.expand_dims(row, 0),
                      ops.select(ops.expand_dims(at, 0), ops.expand_dims(column, 1), matrix))


def auto_memory(n: int | None) -> int:
    """The default number of curvature pairs for ``n`` parameters.

    50 up to n = 20 000, 20 up to 200 000, 10 (SciPy's) beyond or when n is not static.
    Measured: physics-informed networks lose most to a short memory (after Adam, 500
    iterations on a Poisson PINN with n = 481 reach 7.9e-6 with 10 pairs, 3.8e-7 with 50;
    DeepXDE's Poisson example, n = 5251, 2.3e-6 after 1000 iterations with 10, where 100 pairs
    pass DeepXDE's own final loss, 1.1e-17, within 564); on the 43 classic problems of the
    tests 20 and 50 pairs need fewer evaluations than 10 on 15 and more on at most one; the
    digits MLP (n = 9 610) is indifferent (time to 1e-3 0.42 / 0.40 / 0.43 s with 10 / 20 /
    50). The pairs cost
    2 m n floats and about 4 m n flops an iteration: on Rosenbrock n = 10^5, whose evaluation
    costs little, an iteration takes 1.18x as long with 20 pairs and 1.86x with 50, for the
    same iterations, hence fewer pairs for large n."""
    if n is None or n > 200_000:
        return 10
    return 50 if n <= 20_000 else 20


class LBFGSDirection(Direction):
    """:math:`d = -H g` from the last ``memory`` curvature pairs (see the module docstring)."""

    writes_rows: ClassVar[bool] = True  # s and y rows, on every update (flatvec.buffers)
    runs_on_host: ClassVar[bool] = True  # propose and update take NumPy arrays too

    def __init__(self, memory: int | None) -> None:
        self.memory = memory

    def init(self, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor) -> LBFGSMemory:
        ops = scalar_ops.for_context()  # (on the host: NumPy arrays)
        n = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]  # static where known
        m = self.memory if self.memory is not None else auto_memory(x.shape[0])
        return LBFGSMemory(
            s=ops.zeros([m, n], x.dtype), y=ops.zeros([m, n], x.dtype),
            sy=ops.zeros([m, m], x.dtype), yy=ops.zeros([m, m], x.dtype),
            sg=ops.zeros([m], x.dtype), yg=ops.zeros([m], x.dtype),
            head=ops.zeros([], tf.int32),
            count=ops.zeros([], tf.int32),
            gamma=unit_step_scale(g),
        )

    def propose(self, mem: LBFGSMemory, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
                oracle: Oracle) -> Proposal:
        d, fallback = _direction(g, mem.s, mem.y, mem.sy, mem.yy, mem.sg, mem.yg, mem.head,
                                 mem.count, mem.gamma)
        one = scalar_ops.for_context().constant(1.0, x.dtype)
        return Proposal(d, one, fallback_d=fallback, fallback_step0=one,
                        can_restart=mem.count > 0)

    def update(self, mem: LBFGSMemory, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
               found: Restarted, proposal: Proposal) -> LBFGSMemory:
        # The [m]-sized bookkeeping runs on the host when eager (flatvec.scalar_ops); so do
        # the passes over n inside scalar_ops.on_host (NumPy arrays).
        ops = scalar_ops.for_context()
        ls = found.result
        # Curvature pair (skipped unless s'y > eps * y'y, which keeps H positive definite).
        s, y, g_new = ls.x - x, ls.g - g, ls.g
        sy, yy = ops.value(dot(s, y)), ops.value(dot(y, y))
        moved = ops.value(ls.step) > 0
        count = ops.where(ops.value(found.restarted), ops.constant(0, tf.int32),
                          ops.value(mem.count))
        one = ops.constant(1.0, x.dtype)
        eps = ops.constant(machine_eps(x.dtype), x.dtype)
        keep = moved & (sy > eps * yy) & ops.isfinite(sy)
        slot = ops.value(mem.head)
        # The only passes over the buffers besides the direction: the stored rows against the
        # new gradient (read before the slot is overwritten). The new pair's products with
        # the stored rows follow from them, since y = g_new - g: S y = S g_new - S g and
        # Y y = Y g_new - Y g (the relative rounding is eps |g| / |y|, and a Wolfe step keeps
        # |y| >= (1 - c2) |g'd| / |d|). The compact form reads S'Y only on and above the
        # diagonal in chronological order, so the new row s_new' y_i (i older) is not needed.
        s_g_t, y_g_t = vector_ops.matvec(mem.s, g_new), vector_ops.matvec(mem.y, g_new)
        s_g, y_g = ops.value(s_g_t), ops.value(y_g_t)
        s_y, y_y = s_g - ops.value(mem.sg), y_g - ops.value(mem.yg)
        # The slot's row and column are replaced only for a kept pair (hit is all False else).
        m = mem.sg.shape[0]  # the memory init chose (static)
        hit = ops.one_hot_mask(slot, m) & keep
        zero = ops.zeros_like(s_y)
        sy_row = ops.select(hit, sy, zero)  # s_new' y_i: only the diagonal is read
        sy_col = ops.select(hit, sy, s_y)  # s_i' y_new
        yy_row = ops.select(hit, yy, y_y)
        sy_mat = _replace_row_and_column(ops, ops.value(mem.sy), hit, sy_row, sy_col)
        yy_mat = _replace_row_and_column(ops, ops.value(mem.yy), hit, yy_row, yy_row)
        sg_vec = ops.select(hit, ops.value(dot(s, g_new)), s_g)
        yg_vec = ops.select(hit, ops.value(dot(y, g_new)), y_g)
        # Write slot `head` (in place in the compiled loop: after the products with the old
        # rows; the direction's products come before the search, on which s and y depend).
        # A skipped pair writes no row (keep).
        s_buf, y_buf = buffers.write_rows((mem.s, mem.y), slot, (s, y), keep=keep,
                                          after=(s_g_t, y_g_t))
        dtype = x.dtype
        return LBFGSMemory(
            s=s_buf, y=y_buf, sy=ops.tensor(sy_mat, dtype), yy=ops.tensor(yy_mat, dtype),
            sg=ops.tensor(sg_vec, dtype), yg=ops.tensor(yg_vec, dtype),
            head=ops.tensor(ops.where(keep, ops.floormod(slot + 1, m), slot), tf.int32),
            count=ops.tensor(ops.where(keep, ops.minimum(count + 1, m), count), tf.int32),
            gamma=ops.tensor(ops.where(keep, sy / ops.where(keep, yy, one),
                                       ops.value(mem.gamma)), dtype),
        )


class LBFGS(LineSearchMethod):
    r"""Limited-memory BFGS (N&W Algorithms 7.4 and 7.5) with a Moré–Thuente line search.

    Parameters
    ----------
    memory : int, optional
        Number :math:`m` of curvature pairs kept; default (None) by the size n
        (:func:`auto_memory`: 50 up to n = 20 000, 20 up to 200 000, else 10). ``memory=10``
        is SciPy's L-BFGS-B default.
    c1, c2 : float
        Wolfe constants of the line search.
    max_evals : int
        Most function evaluations per line search.
    line_search : str or LineSearch
        ``"more_thuente"`` (default), ``"strong_wolfe"`` (N&W Algorithms 3.5/3.6), or an
        instance (see :func:`~flatvec.algorithms.searches.make_line_search`).
    line_search_options : dict, optional
        More keyword arguments for a line search given by name.

    The state is a :class:`~flatvec.algorithms.line_search_method.LineSearchState` whose
    ``memory`` is an :class:`LBFGSMemory`.

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

    default_ftol: ClassVar[float] = LBFGSB_FTOL  # L-BFGS-B's relative-decrease test

    def __init__(
        self, *, memory: int | None = None, c1: float = 1e-4, c2: float = 0.9,
        max_evals: int = 25,
        line_search: str | LineSearch = "more_thuente", line_search_options: dict | None = None,
    ) -> None:
        if memory is not None and (isinstance(memory, bool) or int(memory) != memory
                                   or memory < 1):
            raise ValueError(f"memory: expected a positive integer or None, got {memory!r}")
        self.memory = None if memory is None else int(memory)
        super().__init__(LBFGSDirection(self.memory), make_line_search(
            line_search, c1=c1, c2=c2, max_evals=max_evals, **(line_search_options or {})))
        self.c1, self.c2, self.max_evals = float(c1), float(c2), int(max_evals)
