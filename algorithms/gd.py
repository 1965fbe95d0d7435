"""Gradient descent with optional (Nesterov) momentum, or with an Armijo line search."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from flatvec.protocol import LBFGSB_FTOL, Oracle, UpdateRule

from .backtracking import Backtracking
from .line_search import Restarted
from .line_search_method import Direction, LineSearchMethod, Proposal

__all__ = ["ArmijoDescent", "ArmijoMemory", "GradientDescent", "MomentumSlots",
           "SteepestDescent"]

LINE_SEARCHES = (None, "armijo")


class MomentumSlots(NamedTuple):
    velocity: tf.Tensor


class ArmijoMemory(NamedTuple):
    """Memory of steepest descent with a line search."""

    trial: tf.Tensor  # the next first trial step


class SteepestDescent(Direction):
    """:math:`d = -g`; the first trial is twice the last accepted step (``learning_rate`` at
    the start and after a failure), so the step can grow back."""

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate

    def init(self, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor) -> ArmijoMemory:
        return ArmijoMemory(tf.constant(self.learning_rate, x.dtype))

    def propose(self, mem: ArmijoMemory, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
                oracle: Oracle) -> Proposal:
        return Proposal(-g, mem.trial)

    def update(self, mem: ArmijoMemory, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
               found: Restarted, proposal: Proposal) -> ArmijoMemory:
        step = found.result.step
        return ArmijoMemory(tf.where(step > 0, 2.0 * step, mem.trial))


class ArmijoDescent(LineSearchMethod):
    r"""Steepest descent with Armijo backtracking (N&W Algorithm 3.1): along :math:`-g_k`, the
    first trial ``learning_rate``, later ones twice the last accepted step, each shrunk until
    :math:`f(x_k - \alpha g_k) \le f(x_k) - c_1 \alpha \|g_k\|^2`
    (:class:`~flatvec.algorithms.backtracking.Backtracking`). What ``algo="gd",
    line_search="armijo"`` runs."""

    default_ftol: ClassVar[float] = LBFGSB_FTOL

    def __init__(self, *, learning_rate: float = 0.01, c1: float = 1e-4) -> None:
        super().__init__(SteepestDescent(float(learning_rate)), Backtracking(c1=c1))
        self.learning_rate, self.c1 = float(learning_rate), float(c1)


class GradientDescent(UpdateRule):
    r"""Gradient descent, optionally with heavy-ball or Nesterov momentum.

    With momentum :math:`\mu` and step :math:`\eta` (Keras' SGD convention):

    .. math::
        v_{k+1} = \mu v_k - \eta g_k, \qquad
        x_{k+1} = x_k + v_{k+1} \quad\text{or, Nesterov,}\quad
        x_{k+1} = x_k + \mu v_{k+1} - \eta g_k .

    ``momentum=0`` is plain gradient descent :math:`x_{k+1} = x_k - \eta g_k`.

    With ``line_search="armijo"`` the step is chosen each iteration by Armijo backtracking
    along :math:`-g_k` (:class:`ArmijoDescent`, which this rule then runs). This mode
    re-evaluates the loss, so it runs through ``flatvec.minimize`` only, and takes no
    momentum.

    Parameters
    ----------
    learning_rate : float
        Step :math:`\eta` (with a line search: the first trial step).
    momentum : float
        :math:`\mu \in [0, 1)`.
    nesterov : bool
        Use Nesterov's look-ahead form.
    line_search : {None, "armijo"}
        ``None``: the fixed-step rule above (the one ``model.fit`` can run); ``"armijo"``:
        backtracking as described.

    Examples
    --------
    >>> import tensorflow as tf, flatvec
    >>> fun = lambda x: tf.reduce_sum(x**2)
    >>> x0 = tf.constant([1.0, -2.0], tf.float64)
    >>> res = flatvec.minimize(fun, x0, algo="gd", learning_rate=0.25, gtol=1e-8)
    >>> bool(res.success)
    True
    >>> res = flatvec.minimize(fun, x0, algo="gd", line_search="armijo", learning_rate=1.0,
    ...                        gtol=1e-8)
    >>> bool(res.success), int(res.nit)
    (True, 1)
    """

    default_ftol: ClassVar[float] = LBFGSB_FTOL

    def __init__(
        self,
        *,
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        line_search: str | None = None,
    ) -> None:
        super().__init__(learning_rate=learning_rate)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        if line_search not in LINE_SEARCHES:
            raise ValueError(f"line_search: expected one of {LINE_SEARCHES}, got {line_search!r}")
        if line_search is not None and (momentum or nesterov):
            raise ValueError(
                f"line_search: {line_search!r} takes no momentum, got momentum={momentum!r}, "
                f"nesterov={nesterov!r}"
            )
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.line_search = line_search
        if line_search is not None:
            # An instance-level capability: this configuration re-evaluates the loss.
            self.uses_line_search = True
            self._armijo = ArmijoDescent(learning_rate=self.learning_rate)

    def init(self, x: tf.Tensor, oracle: Oracle) -> Any:
        if self.line_search is None:
            return super().init(x, oracle)
        return self._armijo.init(x, oracle)

    def step(self, state: Any, oracle: Oracle) -> Any:
        if self.line_search is None:
            return super().step(state, oracle)
        return self._armijo.step(state, oracle)

    def init_slots(self, x: tf.Tensor) -> MomentumSlots:
        # A zero-length buffer when there is no momentum: nothing stored, nothing updated.
        size = tf.shape(x) if self.momentum > 0 else [0]
        return MomentumSlots(tf.zeros(size, x.dtype))

    def update(
        self, x: tf.Tensor, g: tf.Tensor, slots: MomentumSlots, *, learning_rate: tf.Tensor
    ) -> tuple[tf.Tensor, MomentumSlots]:
        if self.line_search is not None:
            raise ValueError(
                f"line_search={self.line_search!r}: this rule re-evaluates the loss and cannot "
                "run as a per-batch update; use flatvec.minimize"
            )
        if self.momentum == 0.0:
            return x - learning_rate * g, slots
        velocity = self.momentum * slots.velocity - learning_rate * g
        if self.nesterov:
            return x + self.momentum * velocity - learning_rate * g, MomentumSlots(velocity)
        return x + velocity, MomentumSlots(velocity)
