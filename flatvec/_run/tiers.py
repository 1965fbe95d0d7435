"""Which tier runs a run's iterations: eagerly, or in the compiled loop.

A loop that has not been traced yet pays for its compiled iteration once: tracing the algorithm's
step with the stopping tests, then instantiating the graph. Measured on this project's 2-core
machine (TF 2.21, L-BFGS with More-Thuente, first call in a process): 0.55 s on Rosenbrock
n = 2 and on the digits MLP alike (trace 0.27 s, first call 0.27 s; 0.23 s even with Grappler
off), against 1.7-4.4 ms a compiled iteration. The same iteration run eagerly
(:meth:`~flatvec._run.loop.CompiledLoop.advance_eagerly`) costs about 20 ms more (some 600
small ops, each dispatched from Python; the first one 0.1 s more, kernels set up for new shapes) and
nothing to set up. Break-even: 20-27 iterations.

The rule (:class:`TierPlan`), per run of a loop not compiled yet:

- a run whose limits (``max_iter``, ``max_eval``) or whose predecessor leave it an expected
  length that costs less eagerly than the compiled loop's set-up starts eagerly. The
  predecessor is the last run in this process of the same algorithm and options on a problem
  of the same size and dtype (a fresh GPflow model, a restart, a seed sweep): its length is
  the prediction;
- an eager run that outlasts its prediction switches to the compiled loop once the time it
  has spent eagerly equals the set-up it avoided (the ski-rental rule: at most twice the
  better tier's cost, whatever the length). The compiled loop continues from the eager carry;
- any other run compiles at once, as before: a first call with the default ``max_iter`` pays
  the set-up, because a switch after the break-even point costs more than it saves on every
  run that compiles (digits MLP, 40 iterations: 1.25 s against 0.72 s compiled at once).

Costs start from the measured defaults below and are replaced by this process's own
measurements: a loop's first compiled call, and eager iterations.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["COMPILE_SECONDS", "EAGER_ITERATION_SECONDS", "ENABLED", "TierPlan", "forget"]

# False: every run is compiled from its first iteration (as before tiering); so does the
# environment variable FLATVEC_EAGER_TIER=0.
ENABLED = True

# Measured defaults (see the module docstring): the compiled loop's set-up, and an eager
# iteration's time (its evaluations included, which both tiers pay: a conservative rent).
COMPILE_SECONDS = 0.55
EAGER_ITERATION_SECONDS = 0.025
_MAX_KEYS = 64

_lengths: OrderedDict[Hashable, int] = OrderedDict()  # key -> iterations of its last run
_compile_seconds: dict[str, float] = {}  # algorithm class -> measured set-up
_eager_seconds: dict[Hashable, float] = {}  # key -> measured eager seconds per iteration


def forget() -> None:
    """Forget every measured cost and run length (tests start from the defaults)."""
    _lengths.clear()
    _compile_seconds.clear()
    _eager_seconds.clear()


def _remember(store: OrderedDict[Hashable, Any], key: Hashable, value: Any) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > _MAX_KEYS:
        store.popitem(last=False)


class TierPlan:
    """The tier of one run's blocks (see the module docstring).

    ``key`` names runs whose lengths predict each other (the driver's loop key with the
    problem's size and dtype); ``nit`` is the run's first iteration number (non-zero on a
    resume)."""

    def __init__(self, loop: Any, key: Hashable, max_iter: int, max_eval: int | None,
                 nit: int = 0) -> None:
        try:
            hash(key)
        except TypeError:  # unhashable algorithm options: no prediction
            key = None
        self._loop, self._key, self._start_nit = loop, key, nit
        self._owner = type(loop.algorithm).__name__
        self._spent = 0.0  # seconds of eager blocks so far
        self._iterations = 0  # eager iterations so far
        self.eager = False
        if (not ENABLED or os.environ.get("FLATVEC_EAGER_TIER", "1") == "0"
                or loop.is_compiled or not loop.can_step_eagerly):
            return
        bound = max_iter - nit
        if max_eval:
            bound = min(bound, max_eval)  # every iteration evaluates at least once
        expected = min(bound, _lengths.get(key, bound)) if key is not None else bound
        self.eager = expected * self._eager_cost() <= self._compile_cost()

    def _compile_cost(self) -> float:
        return _compile_seconds.get(self._owner, COMPILE_SECONDS)

    def _eager_cost(self) -> float:
        return _eager_seconds.get(self._key, EAGER_ITERATION_SECONDS)

    def advance(self) -> list[Any]:
        """Run the loop's next block in the plan's tier; the records of its iterations
        (:class:`~flatvec._run.record.IterationRecord`, one host transfer)."""
        loop = self._loop
        start = time.perf_counter()
        if self.eager:
            records = loop.advance_eagerly(loop.block).records()
            self._spent += time.perf_counter() - start
            self._iterations += len(records)  # fewer than the block if it stopped
            if self._spent >= self._compile_cost():
                self.eager = False  # the run has paid for the compiled loop: switch
            return records
        first = not loop.is_compiled
        records = loop.advance().records()  # the transfer waits for the call (and its set-up)
        if first:
            _compile_seconds[self._owner] = time.perf_counter() - start
        return records

    def finish(self, nit: int, cut_short: bool) -> None:
        """Record the run's length (ending at iteration ``nit``; only where the run ended by
        itself, not ``cut_short`` by a limit, a callback or Ctrl-C) and its eager cost."""
        if self._key is None:
            return
        if not cut_short:
            _remember(_lengths, self._key, max(nit - self._start_nit, 0))
        if self._iterations >= 4:  # past the first iteration's one-time set-up
            _eager_seconds[self._key] = self._spent / self._iterations
