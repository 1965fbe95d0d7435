r"""Levenberg–Marquardt: damped Gauss-Newton steps, accepted or rejected by the gain ratio.

Each iteration solves :math:`(G + \lambda D)\, p = -g` with the Gauss-Newton matrix
:math:`G` (:math:`J^\top J` for residuals, :math:`J^\top H_L J` for a Keras model's loss),
then compares the actual decrease with the one the Gauss-Newton model predicts,

.. math::
    \rho = \frac{f(x) - f(x + p)}{\tfrac12\, p^\top(\lambda D p - g)},

and on the matrix-free path accepts the step if :math:`\rho > 0` and updates the damping as
Nielsen (1999; Madsen, Nielsen & Tingleff, *Methods for non-linear least squares problems*,
2004, §3.2):
:math:`\lambda \leftarrow \lambda \max(1/3, 1 - (2\rho - 1)^3)`, :math:`\nu = 2` after an
accepted step, :math:`\lambda \leftarrow \nu\lambda`, :math:`\nu \leftarrow 2\nu` after a
rejected one (which is an iteration that leaves ``x, f, g`` bit for bit).

Two ways to solve the damped system, chosen by ``solver``:

``"dense"``
    residual and model objectives, in Moré's trust-region form (1978; MINPACK's ``lmder``):
    the dense Gauss-Newton matrix :math:`G` is formed at each accepted point from the
    Jacobian's columns by forward mode (one ``njev``, :meth:`flatvec.Oracle.ggn_matrix`; no
    backward pass), :math:`D^2` is Marquardt's scaling :math:`\operatorname{diag}(G)`, kept
    at its largest value so far, and :math:`\lambda` is the least damping with
    :math:`\|D p\| \le 1.1 \Delta` (0, the Gauss-Newton step, where that step fits), found
    on one eigendecomposition per iteration; the radius :math:`\Delta` (100 :math:`\|D x_0\|`
    at the start) halves on :math:`\rho < 1/4` and grows to :math:`2 \|D p\|` on
    :math:`\rho \ge 3/4`; steps with :math:`\rho > 10^{-4}` are accepted. A rejected step
    costs one value (``nfev``) and no Jacobian. Memory :math:`O(n^2 + n \cdot rows)`. On
    the MGH problems of ``tests/problems.py`` (the 40 with n <= 100) it solves 40 of 40, as
    ``scipy.optimize.least_squares(method="lm")`` does, with a median ratio of residual plus
    Jacobian evaluations to it of 0.83 (2044 against 2396 in all).
``"cg"``
    matrix-free, for residual and model objectives alike: CG on Gauss-Newton products
    (:math:`D = I`, one ``nhev`` per inner iteration; residual :math:`\le \min(0.5, \|g\|)
    \|g\|`), and one value-and-gradient evaluation per trial. :math:`\lambda_0 = 10^{-3}
    g^\top G g / g^\top g` (one product at the start). Memory :math:`O(n)`.
``"auto"`` (default)
    ``"dense"`` where :math:`n \le` ``dense_max_n`` and :math:`\text{rows} \cdot n \le`
    ``dense_max_entries`` (rows: the residuals :math:`m`, or a model's largest batch times its
    outputs per sample; unknown for streamed data and under a strategy, which take ``"cg"``),
    else ``"cg"``. The choice is in ``state.dense`` and the result's message. On the sinc
    fit (n = 61, 1000 samples) an iteration of the dense path costs 3-5 ms (2.6 ms of it
    the matrix, compiled by XLA) against 28 ms by CG on products. ``dense_max_n`` = 1000:
    the eigendecomposition costs 0.06 / 0.56 / 2.0 / 4.4 s at n = 500 / 1000 / 1500 / 2000
    (float64, 2 cores), and on a Burgers PINN at n = 921 the dense path reached a loss of
    3e-7 in 150 s where CG on products reached 1.2e-4 (a user's report, issue 26).

Stop reason of its own: the step bound reached its limit (:math:`\lambda > 10^{16}` times its
start, or :math:`\Delta \le 10^{-15} \|D x\|`; no step decreases :math:`f` any more).
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from flatvec.protocol import Algorithm, Oracle
from flatvec.status import StopReason

from .line_search import dot
from .newton_cg import check_inner_options, forcing_tolerance, truncated_cg

__all__ = ["LMState", "LevenbergMarquardt"]

SOLVERS = ("auto", "dense", "cg")
DAMPING_OVERFLOW = 1


class LMState(NamedTuple):
    """State of Levenberg–Marquardt."""

    x: tf.Tensor
    f: tf.Tensor
    g: tf.Tensor
    step_size: tf.Tensor
    accepted: tf.Tensor
    stop_reason: tf.Tensor
    damping: tf.Tensor  # lambda (on the dense path: the one the last step used)
    nu: tf.Tensor  # Nielsen's growth factor (cg path)
    radius: tf.Tensor  # the trust radius Delta on ||D p|| (dense path; 0 on the cg path)
    damping_limit: tf.Tensor  # 1e16 x the first damping (cg path)
    scale: tf.Tensor  # D^2: [n] (dense path) or [0]
    # D^-1 G D^-1 = V diag(values) V' at x (dense path; [n] and [n, n], else [0], [0, 0]):
    # computed once per accepted point, reused by the rejected trials from it.
    eig_values: tf.Tensor
    eig_vectors: tf.Tensor
    dense: tf.Tensor  # bool: which path runs (constant for a run)
    cg_iterations: tf.Tensor  # int32, of the last solve (cg path)


class LevenbergMarquardt(Algorithm):
    r"""Levenberg–Marquardt with Nielsen's damping update (see the module docstring).

    Parameters
    ----------
    solver : {"auto", "dense", "cg"}
        How the damped system is solved.
    tau : float
        ``"cg"`` path: :math:`\lambda_0` relative to the scale of :math:`G` (MNT's
        :math:`\tau = 10^{-3}`).
    max_cg_iter : int, optional
        Most CG iterations per solve (``"cg"``); default :math:`\min(20n, 500)`.
    dense_max_n, dense_max_entries : int
        Sizes up to which ``"auto"`` forms the Jacobian.

    Examples
    --------
    >>> import tensorflow as tf, flatvec
    >>> t = tf.linspace(tf.constant(0.0, tf.float64), 1.0, 20)
    >>> y = 2.0 * tf.exp(-1.5 * t)
    >>> obj = flatvec.Objective.from_residuals(lambda p: p[0] * tf.exp(-p[1] * t) - y)
    >>> res = flatvec.minimize(obj, tf.constant([1.0, 1.0], tf.float64), "lm", gtol=1e-12)
    >>> bool(res.success), bool(res.state.dense), [round(v, 6) for v in res.x.tolist()]
    (True, True, [2.0, 1.5])
    """

    needs_ggn: ClassVar[bool] = True
    stop_reasons: ClassVar[tuple[StopReason, ...]] = (
        StopReason("Stopped: the step bound reached its limit (damping 1e16 x its start, or a "
                   "trust radius of 1e-15 |D x|); no step decreases f any more."),
    )
    default_ftol: ClassVar[float] = 0.0

    def __init__(self, *, solver: str = "auto", tau: float = 1e-3,
                 max_cg_iter: int | None = None, dense_max_n: int = 1000,
                 dense_max_entries: int = 4_000_000) -> None:
        if solver not in SOLVERS:
            raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
            raise ValueError(f"tau: expected a positive number, got {tau!r}")
        check_inner_options("quadratic", max_cg_iter)
        for name, value in (("dense_max_n", dense_max_n),
                            ("dense_max_entries", dense_max_entries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.solver, self.tau, self.max_cg_iter = solver, float(tau), max_cg_iter
        self.dense_max_n, self.dense_max_entries = dense_max_n, dense_max_entries

    def result_note(self, state: LMState) -> str:
        """Which solver ran (appended to the result's message)."""
        if bool(state.dense):
            return f"Solver: dense (n = {int(state.x.shape[0])})."
        return "Solver: matrix-free CG on Gauss-Newton products."

    # ------------------------------------------------------------------ set-up
    def _use_dense(self, oracle: Oracle, x: tf.Tensor) -> bool:
        if self.solver == "cg":
            return False
        if not oracle.has_ggn_matrix:
            if self.solver == "dense":
                raise TypeError("solver: 'dense' needs a residual or model objective "
                                "(Objective.from_residuals, Objective.from_model); use 'cg' "
                                "or 'auto'")
            return False
        if self.solver == "dense":
            return True
        n = x.shape[0]
        if n is None or n > self.dense_max_n:
            return False
        rows = oracle.ggn_rows(x)
        return rows is not None and rows * n <= self.dense_max_entries

    def init(self, x: tf.Tensor, oracle: Oracle) -> LMState:
        zero, one = tf.zeros([], x.dtype), tf.ones([], x.dtype)
        dense = self._use_dense(oracle, x)
        if dense:
            f, g, gn_matrix = oracle.ggn_matrix(x)
            scale = tf.linalg.diag_part(gn_matrix)
            values, vectors = _scaled_eigen(gn_matrix, scale)
            # The trust radius (MINPACK's factor 100 times |D x0|, or 100 at x0 = 0).
            dx = tf.norm(tf.sqrt(scale) * x)
            radius = 100.0 * tf.where(dx > 0, dx, one)
            damping = zero
        else:
            f, g = oracle(x)
            ggg = dot(g, oracle.ggn_vp(x, g))
            gg = dot(g, g)
            rayleigh = tf.where(gg > 0, ggg / tf.where(gg > 0, gg, one), one)
            damping = self.tau * tf.where(rayleigh > 0, rayleigh, one)
            scale = values = tf.zeros([0], x.dtype)
            vectors, radius = tf.zeros([0, 0], x.dtype), zero
        return LMState(x, f, g, zero, tf.constant(True), tf.zeros([], tf.int32), damping,
                       2.0 * one, radius, 1e16 * damping, scale, values, vectors,
                       tf.constant(dense), tf.zeros([], tf.int32))

    # ------------------------------------------------------------------ iteration
    def step(self, state: LMState, oracle: Oracle) -> LMState:
        if state.eig_vectors.shape[0] == 0:  # static: the path chosen at init
            return self._step_cg(state, oracle)
        return self._step_dense(state, oracle)

    def _nielsen(self, state: LMState, p: tf.Tensor, predicted: tf.Tensor, f_new: tf.Tensor,
                 g_new: tf.Tensor, iterations: tf.Tensor) -> LMState:
        """Gain ratio, acceptance and Nielsen's damping update (the matrix-free path)."""
        x, f, lam, nu = state.x, state.f, state.damping, state.nu
        rho = (f - f_new) / tf.where(predicted > 0, predicted, tf.ones_like(f))
        accept = (tf.math.is_finite(f_new) & (predicted > 0) & (rho > 0) & tf.math.is_finite(rho)
                  & tf.reduce_all(tf.math.is_finite(g_new)))
        shrink = tf.maximum(tf.constant(1.0 / 3.0, f.dtype), 1.0 - (2.0 * rho - 1.0) ** 3)
        lam_new = tf.where(accept, lam * shrink, lam * nu)
        nu_new = tf.where(accept, 2.0 * tf.ones_like(nu), 2.0 * nu)
        stop = tf.where(~accept & (lam_new > state.damping_limit), DAMPING_OVERFLOW, 0)

        def keep(new: Any, old: Any) -> Any:  # a select: the old value bit for bit if rejected
            return tf.where(accept, new, old)

        return LMState(
            keep(x + p, x), keep(f_new, f), keep(g_new, state.g),
            tf.where(accept, tf.norm(p), tf.zeros_like(f)), accept, tf.cast(stop, tf.int32),
            lam_new, nu_new, state.radius, state.damping_limit, state.scale, state.eig_values,
            state.eig_vectors, state.dense, iterations,
        )

    def _step_dense(self, state: LMState, oracle: Oracle) -> LMState:
        r"""Moré's trust-region form (MINPACK's ``lmder``): the damping is the one that puts
        the step on the boundary :math:`\|D p\| = \Delta` (:math:`\lambda = 0`, the
        Gauss-Newton step, when that step lies inside)."""
        x, f, g, radius = state.x, state.f, state.g, state.radius
        values, vectors = state.eig_values, state.eig_vectors
        d = _scaling(state.scale)
        p, lam = _boundary_step(values, vectors, g, d, radius)
        dp = tf.norm(d * p)
        vdp = tf.linalg.matvec(vectors, d * p, transpose_a=True)
        predicted = -(dot(g, p) + 0.5 * tf.reduce_sum(values * vdp * vdp))  # p'J'Jp on V
        f_new = oracle.value(x + p)
        rho = (f - f_new) / tf.where(predicted > 0, predicted, tf.ones_like(f))
        usable = tf.math.is_finite(f_new) & (predicted > 0) & tf.math.is_finite(rho)
        accept = usable & (rho > 1e-4)

        def evaluate() -> tuple[tf.Tensor, ...]:
            _, g_at, gn_matrix = oracle.ggn_matrix(x + p)
            scale = tf.maximum(state.scale, tf.linalg.diag_part(gn_matrix))
            return (g_at, scale, *_scaled_eigen(gn_matrix, scale))

        g_new, scale, values_new, vectors_new = tf.cond(
            accept, evaluate, lambda: (g, state.scale, values, vectors))
        accept = accept & tf.reduce_all(tf.math.is_finite(g_new))
        # MINPACK's radius update: shrink (to at most 10 |Dp|) on a poor ratio, grow to 2 |Dp|
        # on a good one or after a Gauss-Newton step that did not reach the boundary.
        # A non-finite trial says nothing of the model's quality: shrink hard (a tenth), so a
        # run in a non-finite region reaches the radius floor in ~17 trials, not ~57.
        radius_new = tf.where(
            ~usable | (rho < 0.25),
            tf.where(tf.math.is_finite(f_new), 0.5 * tf.ones_like(f), 0.1 * tf.ones_like(f))
            * tf.minimum(radius, 10.0 * dp),
            tf.where((lam == 0) | (rho >= 0.75), tf.maximum(radius, 2.0 * dp), radius))
        floor = 1e-15 * tf.maximum(tf.norm(d * x), tf.ones_like(f))
        stop = tf.where(~accept & (radius_new <= floor), DAMPING_OVERFLOW, 0)

        def keep(new: Any, old: Any) -> Any:  # a select: the old value bit for bit if rejected
            return tf.where(accept, new, old)

        return LMState(
            keep(x + p, x), keep(f_new, f), keep(g_new, g),
            tf.where(accept, tf.norm(p), tf.zeros_like(f)), accept, tf.cast(stop, tf.int32),
            lam, state.nu, radius_new, state.damping_limit, keep(scale, state.scale),
            keep(values_new, values), keep(vectors_new, vectors), state.dense,
            state.cg_iterations,
        )

    def _step_cg(self, state: LMState, oracle: Oracle) -> LMState:
        x, g, lam = state.x, state.g, state.damping
        n = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        max_iter = self.max_cg_iter if self.max_cg_iter is not None else tf.minimum(20 * n, 500)
        tol = forcing_tolerance(g, "quadratic", 2)
        p, iterations = truncated_cg(lambda v: oracle.ggn_vp(x, v) + lam * v, g, tol, max_iter,
                                     2)
        # CG from 0 keeps p'(B p + g) = 0 for B = G + lam I, so the Gauss-Newton model's
        # decrease -(g'p + p'Gp/2) is (lam p'p - g'p) / 2 without another product.
        predicted = 0.5 * (lam * dot(p, p) - dot(p, g))
        f_new, g_new = oracle(x + p)
        return self._nielsen(state, p, predicted, f_new, g_new, iterations)


def _scaling(scale: tf.Tensor) -> tf.Tensor:
    """Marquardt's :math:`D` from :math:`D^2` (a floor keeps a zero column of J from making
    the scaled system singular)."""
    return tf.sqrt(tf.maximum(scale, 1e-30 + 1e-12 * tf.reduce_max(scale)))


def _scaled_eigen(gn_matrix: tf.Tensor, scale: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    r"""The eigendecomposition of :math:`D^{-1} G D^{-1}`, eigenvalues clipped at 0."""
    d = _scaling(scale)
    s = gn_matrix / (d[:, None] * d[None, :])
    values, vectors = tf.linalg.eigh(0.5 * (s + tf.transpose(s)))
    return tf.maximum(values, 0.0), vectors


def _boundary_step(lam_s: tf.Tensor, v: tf.Tensor, g: tf.Tensor, d: tf.Tensor,
                   radius: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    r"""The Levenberg–Marquardt step :math:`p = -(J^\top J + \lambda D^2)^{-1} g` with the
    least :math:`\lambda \ge 0` such that :math:`\|D p\| \le 1.1\, \Delta`, and that
    :math:`\lambda`.

    On the eigendecomposition :math:`D^{-1} G D^{-1} = V \Lambda V^\top`
    (:func:`_scaled_eigen`) every :math:`\lambda` costs a vector operation:
    :math:`\|Dp\| = \|c / (\Lambda + \lambda)\|`, :math:`c = V^\top D^{-1} g`. The
    boundary :math:`\lambda` is found by Newton's method on
    :math:`1/\Delta - 1/\|D p(\lambda)\|` (Moré & Sorensen), which increases monotonically
    to the root from :math:`\lambda = 0`; directions of zero curvature are dropped from the
    Gauss-Newton step (a pseudo-inverse).
    """
    top = tf.reduce_max(lam_s)
    c = tf.linalg.matvec(v, g / d, transpose_a=True)
    eps = 1e-14 * tf.maximum(top, tf.ones_like(top) * 1e-300)
    live = lam_s > eps
    zero = tf.zeros_like(radius)

    def scaled_norm(lam: tf.Tensor) -> tf.Tensor:
        den = lam_s + lam
        q = tf.where(live | (lam > 0), c / tf.where(den > 0, den, 1.0), 0.0)
        return tf.norm(q)

    gn = scaled_norm(zero)
    inside = gn <= 1.1 * radius

    def newton(lam: tf.Tensor, _: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        den = lam_s + lam
        q = c / den
        qn = tf.norm(q)
        dqn = -tf.reduce_sum(q * q / den) / qn  # d|q| / d lambda
        step = (1.0 / radius - 1.0 / qn) / (dqn / (qn * qn))
        return lam - step, qn

    def solve() -> tf.Tensor:
        # Start just above the smallest eigenvalue's zero, where |q| exceeds the radius.
        lam0 = tf.maximum(eps, 1e-300 * tf.ones_like(eps))
        lam, _ = tf.while_loop(
            lambda lam, qn: tf.abs(qn - radius) > 0.1 * radius, newton,
            (lam0, scaled_norm(lam0)), maximum_iterations=30)
        return lam

    lam = tf.cond(inside, lambda: zero, solve)
    den = lam_s + lam
    q = tf.where(live | (lam > 0), c / tf.where(den > 0, den, 1.0), 0.0)
    return -tf.linalg.matvec(v, q) / d, lam
