"""Which tier runs a run's iterations: eagerly, or in the compiled loop.

A loop that has not been traced yet pays for its compiled iteration once: tracing the algorithm's
step with the stopping tests, then instantiating the graph. Measured on this project's 2-core
machine (TF 2.21, L-BFGS with More-Thuente, first call in a process): 0.55 s on Rosenbrock
n = 2 and on the digits MLP alike (trace 0.27 s, first call 0.27 s; 0.23 s even with Grappler
off). The same iteration run eagerly (:meth:`~flatvec._run.loop.CompiledLoop.advance_eagerly`)
has nothing to set up and costs more per iteration. Two kinds:

- **on the host**, for algorithms that declare ``runs_on_host`` (L-BFGS, BFGS and CG with
  either Wolfe search):
  the iterate, gradient and buffers are NumPy arrays, the objective's compiled functions are
  called on them, and no TensorFlow op is dispatched between two evaluations
  (:func:`flatvec.scalar_ops.on_host`). An iteration costs, against compiled (the
  evaluations in both; second runs in a process, marginal over 40 iterations): digits MLP
  f32 5.0-6.0 against 4.2-4.4 ms, f64 8.8-10.8 against 8.5-9.0 ms, PINN 1.4-2.3 against
  1.0-1.6 ms, Rosenbrock n = 10^5 7-8 against 5.2-5.9 ms. Its *rent* (what an eager
  iteration costs more than a compiled one): 0.5-2.5 ms, 2 ms by default; its first
  iteration in a process some 0.03 s more (the start below). Break-even: some 260
  iterations.
- **on tensors**, for any other algorithm: each TensorFlow op is dispatched from Python
  (7-17 us); scalar and small-array logic written on :mod:`flatvec.scalar_ops` runs on host
  values (the same bits) and vector kernels are called directly (:mod:`flatvec.vector_ops`).
  Measured for L-BFGS before it ran on the host: digits MLP f32 12.5 against 4.5 ms, f64 23
  against 9 ms, PINN 8 against 1.6 ms, Rosenbrock n = 10^5 26 against 6.7 ms: a rent of
  6-19 ms, 12 ms by default; its first iteration of a kind some 0.06-0.15 s more (kernels for
  new shapes). Break-even: some 35 iterations.

The compiled loop's first call costs 0.55-0.75 s more than its later ones.

The rule (:class:`TierPlan`), per run of a loop not compiled yet:

- a run starts eagerly where its expected length's rent, with the eager tier's start (the
  first eager iteration of its kind in the process) and the rent earlier runs of its kind
  already paid, costs less than the compiled loop's set-up. The expected length is the run's
  limits (``max_iter``, ``max_eval``) or, if shorter, its predecessor's: the last run in this
  process of the same algorithm and options on a problem of the same size and dtype (a fresh
  GPflow model, a restart, a seed sweep);
- an eager run that outlasts its prediction switches to the compiled loop once the rent it
  (and its kind) has paid equals the set-up it avoided (the ski-rental rule: at most twice
  the better tier's extra cost, whatever the length). The compiled loop continues from the
  eager carry. Counting the kind's rent, not the run's, makes a process that fits many short
  problems of one kind compile once they have paid for it, and every later one shares the
  compiled functions (:mod:`flatvec._tf.graph_reuse`);
- any other run compiles at once: a first call with the default ``max_iter`` pays the
  set-up, because a switch after the break-even point costs more than it saves on every run
  that compiles.

Costs start from the measured defaults below and are replaced by this process's own
measurements: a loop's first compiled call (the set-up), and the seconds per iteration of
either tier on runs of the same kind; the rent is their difference where both were measured.
Else the smaller of the measured eager iteration and the default rent; and on the host at
least half of what an iteration spends outside the objective (this run's after 4 iterations,
else its kind's last run's): the compiled loop runs the same algebra, measured 1.5-3.6x faster
(about: L-BFGS 1.8 against 0.5 ms an iteration on the digits MLP f64, 0.6 against 0.4 ms on
the PINN; BFGS's dense n x n algebra at n = 1153, 11.9 against 5.5 ms). Where that is large
(BFGS or CG at large n), a run switches after a few iterations instead of after the default
rent's 260. Not below the default: that would keep a kind's warm repeats on the host longer
(the PINN's, 1.35 ms an iteration there against 1.1 ms compiled, ran eagerly for ~10 runs
instead of compiling at the second: README rows 0.27 against 0.22 s).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["COMPILE_SECONDS", "EAGER_RENT_SECONDS", "EAGER_START_SECONDS", "ENABLED",
           "HOST_ALGEBRA_SHARE", "HOST_RENT_SECONDS", "HOST_START_SECONDS", "TierPlan",
           "forget"]

# False: every run is compiled from its first iteration (as before tiering); so does the
# environment variable FLATVEC_EAGER_TIER=0.
ENABLED = True

# Measured defaults (see the module docstring): the compiled loop's set-up, and what an eager
# iteration costs more than a compiled one (the evaluations, which both tiers pay, excluded).
COMPILE_SECONDS = 0.55
EAGER_RENT_SECONDS = 0.012  # on tensors
EAGER_START_SECONDS = 0.15  # the first eager iteration of a kind: kernels for new shapes
HOST_RENT_SECONDS = 0.002  # on the host (algorithms that declare runs_on_host)
HOST_START_SECONDS = 0.03  # the first iteration on the host of a kind
# The share of a host iteration's time outside the objective charged as rent (see above).
HOST_ALGEBRA_SHARE = 0.5
# Host iterations a run measures before its own time outside the objective counts.
MEASURED_ITERATIONS = 4
_MAX_KEYS = 64

_lengths: OrderedDict[Hashable, int] = OrderedDict()  # key -> iterations of its last run
_compile_seconds: dict[str, float] = {}  # algorithm class -> measured set-up
_eager_seconds: dict[Hashable, float] = {}  # key -> measured eager seconds per iteration
_compiled_seconds: dict[Hashable, float] = {}  # key -> measured compiled seconds per iteration
_algebra_seconds: dict[Hashable, float] = {}  # key -> host seconds per iteration outside f
_rent_paid: OrderedDict[Hashable, float] = OrderedDict()  # key -> rent its eager runs paid


def forget() -> None:
    """Forget every measured cost and run length (tests start from the defaults)."""
    _lengths.clear()
    _compile_seconds.clear()
    _eager_seconds.clear()
    _compiled_seconds.clear()
    _algebra_seconds.clear()
    _rent_paid.clear()


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
        host = loop.runs_on_host
        self._default_rent = HOST_RENT_SECONDS if host else EAGER_RENT_SECONDS
        self._spent = 0.0  # seconds of eager blocks so far
        self._in_objective = 0.0  # of which in the objective's functions (on the host)
        self._iterations = 0  # eager iterations so far
        self._host = host
        self._compiled_spent = 0.0  # seconds of compiled blocks after the set-up
        self._compiled_iterations = 0
        self.eager = False
        if (not ENABLED or os.environ.get("FLATVEC_EAGER_TIER", "1") == "0"
                or loop.is_compiled or not loop.can_step_eagerly):
            return
        bound = max_iter - nit
        if max_eval:
            bound = min(bound, max_eval)  # every iteration evaluates at least once
        expected = min(bound, _lengths.get(key, bound)) if key is not None else bound
        start = 0.0 if key in _rent_paid else HOST_START_SECONDS if host else EAGER_START_SECONDS
        self.eager = self._paid() + start + expected * self._rent() <= self._compile_cost()

    def _paid(self) -> float:
        """The rent earlier eager runs of this kind paid: once it adds up to the set-up, the
        kind compiles (later runs of it share the compiled functions)."""
        return _rent_paid.get(self._key, 0.0)

    def _compile_cost(self) -> float:
        return _compile_seconds.get(self._owner, COMPILE_SECONDS)

    def _rent(self) -> float:
        """What an eager iteration costs more than a compiled one (see the module docstring)."""
        eager = _eager_seconds.get(self._key)
        compiled = _compiled_seconds.get(self._key)
        if eager is not None and compiled is not None:
            return max(eager - compiled, 0.0)
        rent = self._default_rent if eager is None else min(eager, self._default_rent)
        algebra = self._algebra()
        if algebra is not None:  # never below the default: see the module docstring
            rent = max(rent, HOST_ALGEBRA_SHARE * algebra)
        return rent

    def _algebra(self) -> float | None:
        """Seconds per host iteration outside the objective: this run's once it has measured
        enough iterations, else its kind's last run's (None: not measured, or not a host
        algorithm)."""
        if not self._host:
            return None
        if self._iterations >= MEASURED_ITERATIONS:
            return max(self._spent - self._in_objective, 0.0) / self._iterations
        return _algebra_seconds.get(self._key)

    def advance(self) -> list[Any]:
        """Run the loop's next block in the plan's tier; the records of its iterations
        (:class:`~flatvec._run.record.IterationRecord`, one host transfer)."""
        loop = self._loop
        start = time.perf_counter()
        if self.eager:
            in_objective = loop.oracle.host_seconds
            records = loop.advance_eagerly(loop.block).records()
            self._spent += time.perf_counter() - start
            self._in_objective += loop.oracle.host_seconds - in_objective
            self._iterations += len(records)  # fewer than the block if it stopped
            if self._paid() + self._iterations * self._rent() >= self._compile_cost():
                self.eager = False  # the run has paid for the compiled loop: switch
            return records
        first = not loop.is_compiled
        records = loop.advance().records()  # the transfer waits for the call (and its set-up)
        if first:
            _compile_seconds[self._owner] = time.perf_counter() - start
        else:
            self._compiled_spent += time.perf_counter() - start
            self._compiled_iterations += len(records)
        return records

    def finish(self, nit: int, cut_short: bool) -> None:
        """Record the run's length (ending at iteration ``nit``; only where the run ended by
        itself, not ``cut_short`` by a limit, a callback or Ctrl-C) and its eager cost."""
        if self._key is None:
            return
        if self._iterations:
            _remember(_rent_paid, self._key, self._paid() + self._iterations * self._rent())
        if not cut_short:
            _remember(_lengths, self._key, max(nit - self._start_nit, 0))
        if self._iterations >= MEASURED_ITERATIONS:  # past the first iteration's set-up
            _eager_seconds[self._key] = self._spent / self._iterations
            algebra = self._algebra()
            if algebra is not None:
                _algebra_seconds[self._key] = algebra
        if self._compiled_iterations >= 4:
            _compiled_seconds[self._key] = self._compiled_spent / self._compiled_iterations
