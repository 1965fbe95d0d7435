r"""One line-search driver for every line-search method: a direction, a search, bookkeeping.

A line-search method is two objects (as optimistix's descent and search):

- a **direction** (:class:`Direction`) proposes :math:`d_k` and a first trial step from its own
  memory (curvature pairs, the previous direction, ...) and updates that memory from the
  search's outcome;
- a **line search** (:class:`~flatvec.algorithms.line_search.LineSearch`: Moré–Thuente, strong
  Wolfe, backtracking) finds the step along it.

:class:`LineSearchMethod` joins them and owns, once for all methods, what every one of them
needs around the search: the check that :math:`d` is a descent direction, the restart along the
direction's fallback (scaled steepest descent) when no decrease is found, skipping the search
when the direction says so, and the state fields the driver reads (``step_size``, ``failed``,
``stop_reason``). L-BFGS, CG, BFGS, gradient descent with Armijo steps and Newton-CG are
directions over it.

Writing a new line-search method is writing a direction::

    class SteepestDescent(Direction):
        def init(self, x, f, g):
            return ()                         # no memory
        def propose(self, memory, x, f, g, oracle):
            return Proposal(-g, tf.ones_like(f))
        def update(self, memory, x, f, g, found, proposal):
            return ()

    method = LineSearchMethod(SteepestDescent(), make_line_search("more_thuente", c1=1e-4,
                              c2=0.9, max_evals=25))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from flatvec import scalar_ops
from flatvec.protocol import Algorithm, Oracle

from .line_search import LineSearch, LineSearchResult, Restarted, search_with_restart

__all__ = ["Direction", "LineSearchMethod", "LineSearchState", "Proposal"]


class Proposal(NamedTuple):
    """What a direction proposes for one iteration.

    Attributes
    ----------
    d : tensor
        The search direction.
    step0 : scalar tensor
        The first trial step along ``d``.
    fallback_d, fallback_step0 : tensors or None
        Where to search when ``d`` is not a descent direction or gives no decrease (and
        ``can_restart``); None: ``-g`` with a first trial of 1.
    can_restart : bool tensor or None
        Whether to retry along the fallback when the search along ``d`` finds no decrease
        (None: False).
    search : bool tensor or None
        False: take no step this iteration (the step fails without evaluating); None: search.
    extra_condition : callable or None
        ``cond(d, g_new) -> bool`` that an accepted step must also meet (passed to searches
        that take it, such as Moré–Thuente).
    info : any
        Whatever the direction wants back in ``update`` (inner iteration counts, ...).
    reference : scalar tensor or None
        A non-monotone method's acceptance reference (see
        :class:`~flatvec.algorithms.line_search.LineSearch`); None: ``f``, a monotone search.
    """

    d: tf.Tensor
    step0: tf.Tensor
    fallback_d: tf.Tensor | None = None
    fallback_step0: tf.Tensor | None = None
    can_restart: tf.Tensor | None = None
    search: tf.Tensor | None = None
    extra_condition: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None
    info: Any = None
    reference: tf.Tensor | None = None


class LineSearchState(NamedTuple):
    """State of a line-search method: the iterate, the driver's fields and the direction's
    memory (a NamedTuple of the direction's own)."""

    x: tf.Tensor
    f: tf.Tensor
    g: tf.Tensor
    step_size: tf.Tensor
    failed: tf.Tensor
    stop_reason: tf.Tensor  # int32, 0: none (see Algorithm.stop_reasons)
    memory: Any


class Direction:
    """The direction half of a line-search method (see the module docstring).

    ``init(x, f, g) -> memory`` gives the memory at the start point (a NamedTuple of
    fixed-shape tensors, or ``()``); ``propose(memory, x, f, g, oracle) -> Proposal`` the
    direction and first trial; ``update(memory, x, f, g, found, proposal) -> memory`` the
    memory after the search, where ``found`` is a
    :class:`~flatvec.algorithms.line_search.Restarted` (the search's result and whether the
    fallback direction was used). ``propose`` may call ``oracle.hvp`` if the method declares
    ``needs_hvp``.

    Optional: ``writes_rows = True`` (a class attribute) for a direction whose ``update``
    writes rows with :func:`flatvec.buffers.write_rows` on every step: the compiled loop then
    writes them in place where it owns the buffers. ``runs_on_host = True`` for a direction
    whose ``propose`` and ``update`` also run on NumPy arrays (see
    :attr:`flatvec.protocol.Algorithm.runs_on_host`); the method runs on the host when its
    line search declares it too.
    """

    writes_rows: ClassVar[bool] = False
    runs_on_host: ClassVar[bool] = False

    def init(self, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor) -> Any:
        raise NotImplementedError

    def propose(self, memory: Any, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
                oracle: Oracle) -> Proposal:
        raise NotImplementedError

    def update(self, memory: Any, x: tf.Tensor, f: tf.Tensor, g: tf.Tensor,
               found: Restarted, proposal: Proposal) -> Any:
        raise NotImplementedError


def _no_step(x: tf.Tensor, f: tf.Tensor, g: tf.Tensor) -> Restarted:
    ops = scalar_ops.for_context()  # (on the host: NumPy fields)
    none, false = ops.zeros([], tf.int32), ops.zeros([], tf.bool)
    return Restarted(LineSearchResult(ops.zeros([], x.dtype), x, f, g, none, false), false,
                     none)


class LineSearchMethod(Algorithm):
    """A :class:`Direction` and a line search as one :class:`~flatvec.protocol.Algorithm`.

    Parameters
    ----------
    direction : Direction
        Proposes the direction and first trial step, and keeps its memory.
    line_search : LineSearch
        Finds the step along it.

    The iteration: ``proposal = direction.propose(...)``; a search along ``proposal.d``
    (along the fallback instead when ``d`` is not a descent direction, and again along it
    when no decrease is found and ``proposal.can_restart``); ``direction.update(...)``. A step
    of 0 sets ``failed`` (the run stops with the line-search status, ``x, f, g`` unchanged).
    """

    def __init__(self, direction: Direction, line_search: LineSearch) -> None:
        if not callable(getattr(direction, "propose", None)):
            raise TypeError(f"direction: expected a Direction, got {type(direction).__name__}")
        if not callable(getattr(line_search, "search", None)):
            raise TypeError(f"line_search: expected an object with a search method, got "
                            f"{type(line_search).__name__}")
        self.direction = direction
        self.line_search = line_search
        # The compiled loop writes rows in place for algorithms that declare it.
        self.writes_rows = bool(getattr(direction, "writes_rows", False))
        self.runs_on_host = all(bool(getattr(part, "runs_on_host", False))
                                for part in (direction, line_search))

    def init(self, x: tf.Tensor, oracle: Oracle) -> LineSearchState:
        ops = scalar_ops.for_context()  # (on the host: NumPy fields)
        f, g = oracle(x)
        return LineSearchState(x, f, g, ops.zeros([], x.dtype), ops.zeros([], tf.bool),
                               ops.zeros([], tf.int32), self.direction.init(x, f, g))

    def step(self, state: LineSearchState, oracle: Oracle) -> LineSearchState:
        x, f, g = state.x, state.f, state.g
        proposal = self.direction.propose(state.memory, x, f, g, oracle)
        found = self._search(proposal, oracle, x, f, g)
        memory = self.direction.update(state.memory, x, f, g, found, proposal)
        ls = found.result
        return LineSearchState(ls.x, ls.f, ls.g, ls.step, ~(ls.step > 0), state.stop_reason,
                               memory)

    def _search(self, p: Proposal, oracle: Oracle, x: tf.Tensor, f: tf.Tensor,
                g: tf.Tensor) -> Restarted:
        ops = scalar_ops.for_context()

        def run() -> Restarted:
            return search_with_restart(
                self.line_search, oracle, x, f, g, p.d, p.step0,
                fallback_d=-g if p.fallback_d is None else p.fallback_d,
                fallback_step0=(ops.constant(1.0, x.dtype) if p.fallback_step0 is None
                                else p.fallback_step0),
                can_restart=(ops.constant(False, tf.bool) if p.can_restart is None
                             else p.can_restart),
                extra_condition=p.extra_condition, reference=p.reference,
            )

        if p.search is None:
            return run()
        return ops.branch(ops.value(p.search), run, lambda: _no_step(x, f, g))
