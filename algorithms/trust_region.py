r"""One trust-region driver: a radius, a subproblem solver, accept or reject.

A trust-region method (Nocedal & Wright Algorithm 4.1) is a **subproblem solver** that returns
a displacement :math:`p` with :math:`\|p\| \le \Delta` that decreases the quadratic model
:math:`m(p) = f + g^\top p + \tfrac12 p^\top B p`, and the **search** here, which owns the
radius :math:`\Delta`:

.. math::
    \rho = \frac{f(x) - f(x + p)}{m(0) - m(p)}, \qquad
    \Delta \leftarrow \begin{cases}
        \Delta / 4 & \rho < 1/4 \text{ or } f(x + p) \text{ not finite} \\
        \min(2\Delta, \Delta_{\max}) & \rho > 3/4 \text{ and } \|p\| = \Delta \\
        \Delta & \text{else}
    \end{cases}

and :math:`x \leftarrow x + p` only if :math:`\rho > \eta`. A rejected proposal is still an
iteration (as SciPy counts them): the state says ``accepted = False`` and keeps ``x, f, g`` bit
for bit, so the driver leaves the best point alone and skips the ``ftol`` test.

Two stop reasons of the method's own: the model predicts no decrease (:math:`m(p) \ge m(0)`,
a Hessian approximation too poor to progress), and a radius below its floor
:math:`\epsilon \max(1, \|x\|)` (no step can change :math:`x` any more).

A subproblem solver is any object with ``solve(x, g, radius, oracle) -> SubproblemResult``;
:mod:`flatvec.algorithms.trust_ncg` has the Steihaug–Toint CG solver.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple, Protocol

import tensorflow as tf

from flatvec.protocol import Algorithm, Oracle
from flatvec.status import StopReason

from .line_search import is_finite, machine_eps

__all__ = ["Subproblem", "SubproblemResult", "TrustRegionMethod", "TrustRegionState"]

NO_DECREASE, RADIUS_FLOOR = 1, 2


class SubproblemResult(NamedTuple):
    """A subproblem solver's answer.

    Attributes
    ----------
    p : tensor
        The displacement, :math:`\\|p\\| \\le \\Delta`.
    predicted : scalar tensor
        :math:`m(0) - m(p)`, the model's predicted decrease.
    hits_boundary : bool tensor
        :math:`\\|p\\| = \\Delta` (the radius may grow only then).
    iterations : int32 tensor
        Inner iterations (Hessian-vector products) spent.
    """

    p: tf.Tensor
    predicted: tf.Tensor
    hits_boundary: tf.Tensor
    iterations: tf.Tensor


class Subproblem(Protocol):
    """``solve(x, g, radius, oracle) -> SubproblemResult`` (see the module docstring)."""

    def solve(self, x: tf.Tensor, g: tf.Tensor, radius: tf.Tensor,
              oracle: Oracle) -> SubproblemResult: ...


class TrustRegionState(NamedTuple):
    """State of a trust-region method."""

    x: tf.Tensor
    f: tf.Tensor
    g: tf.Tensor
    step_size: tf.Tensor  # ||p|| of an accepted step, 0 for a rejected one
    accepted: tf.Tensor
    stop_reason: tf.Tensor  # int32
    radius: tf.Tensor
    rho: tf.Tensor  # the last ratio of actual to predicted decrease
    inner_iterations: tf.Tensor  # int32, of the last subproblem


class TrustRegionMethod(Algorithm):
    r"""A :class:`Subproblem` solver inside the trust-region iteration (N&W Algorithm 4.1).

    Parameters
    ----------
    subproblem : Subproblem
        Finds the displacement inside the radius.
    initial_radius, max_radius : float
        :math:`\Delta_0` and :math:`\Delta_{\max}` (SciPy's defaults 1 and 1000).
    eta : float
        Acceptance threshold :math:`\eta \in [0, 1/4)` on :math:`\rho` (SciPy's 0.15).
    """

    needs_hvp: ClassVar[bool] = True
    stop_reasons: ClassVar[tuple[StopReason, ...]] = (
        StopReason("Stopped: the quadratic model predicts no decrease (a poor Hessian "
                   "approximation)."),
        StopReason("Stopped: the trust radius fell below its floor (eps * max(1, ||x||)); "
                   "no step can change x."),
    )
    default_ftol: ClassVar[float] = 0.0  # SciPy's trust-region methods stop on gtol only

    def __init__(self, subproblem: Subproblem, *, initial_radius: float = 1.0,
                 max_radius: float = 1000.0, eta: float = 0.15) -> None:
        if not callable(getattr(subproblem, "solve", None)):
            raise TypeError(f"subproblem: expected an object with a solve method, got "
                            f"{type(subproblem).__name__}")
        for name, value in (("initial_radius", initial_radius), ("max_radius", max_radius)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        if initial_radius > max_radius:
            raise ValueError(f"initial_radius: expected at most max_radius={max_radius}, got "
                             f"{initial_radius!r}")
        if not 0.0 <= eta < 0.25:
            raise ValueError(f"eta: expected a number in [0, 0.25), got {eta!r}")
        self.subproblem = subproblem
        self.initial_radius, self.max_radius = float(initial_radius), float(max_radius)
        self.eta = float(eta)

    def init(self, x: tf.Tensor, oracle: Oracle) -> TrustRegionState:
        f, g = oracle(x)
        zero = tf.zeros([], x.dtype)
        return TrustRegionState(x, f, g, zero, tf.constant(True), tf.zeros([], tf.int32),
                                tf.constant(self.initial_radius, x.dtype), zero,
                                tf.zeros([], tf.int32))

    def step(self, state: TrustRegionState, oracle: Oracle) -> TrustRegionState:
        x, f, g, radius = state.x, state.f, state.g, state.radius
        sub = self.subproblem.solve(x, g, radius, oracle)
        x_new = x + sub.p
        f_new, g_new = oracle(x_new)
        predicts_decrease = sub.predicted > 0
        rho = (f - f_new) / tf.where(predicts_decrease, sub.predicted, tf.ones_like(f))
        usable = is_finite(f_new, g_new) & predicts_decrease & tf.math.is_finite(rho)
        accept = usable & (rho > self.eta)
        quarter, grow = 0.25 * radius, tf.minimum(2.0 * radius, self.max_radius)
        radius_new = tf.where(~usable | (rho < 0.25), quarter,
                              tf.where((rho > 0.75) & sub.hits_boundary, grow, radius))
        floor = machine_eps(x.dtype) * tf.maximum(tf.ones_like(f), tf.norm(x))
        stop = tf.where(~predicts_decrease, NO_DECREASE,
                        tf.where(~accept & (radius_new < floor), RADIUS_FLOOR, 0))

        def keep(new: Any, old: Any) -> Any:  # a select: the old value bit for bit if rejected
            return tf.where(accept, new, old)

        return TrustRegionState(
            keep(x_new, x), keep(f_new, f), keep(g_new, g),
            tf.where(accept, tf.norm(sub.p), tf.zeros_like(f)), accept,
            tf.cast(stop, tf.int32), radius_new, tf.where(tf.math.is_finite(rho), rho, -1.0),
            sub.iterations,
        )
