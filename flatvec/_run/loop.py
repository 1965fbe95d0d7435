"""The compiled iteration: algorithm step, stopping tests and best-point tracking in one graph."""

from __future__ import annotations

import contextlib
import time
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from flatvec import buffers, scalar_ops, vector_ops
from flatvec._autograph import with_autograph
from flatvec._lazy_variable import LazyVariable
from flatvec._run.block_guards import BlasThreads, interrupts_deferred
from flatvec._run.record import WIDTH, IterationRecord, records
from flatvec._run.report_rows import counter_values, counters, host_report_row, report_row
from flatvec._run.stopping import (
    RuleTensors,
    StepFaults,
    StopRule,
    initial_status,
    status_after_step,
)
from flatvec._tf import call_options, graph_reuse
from flatvec.objective import Objective
from flatvec.oracle import CompiledCalls, Oracle
from flatvec.protocol import Algorithm, start_state, takes_oracle
from flatvec.status import ALGORITHM_CODE_BASE, Status

__all__ = ["Carry", "CompiledLoop", "Report"]


class Carry(NamedTuple):
    """What passes from one compiled call to the next."""

    state: Any  # the algorithm's State NamedTuple
    best_x: tf.Tensor
    best_f: tf.Tensor
    best_g: tf.Tensor
    nit: tf.Tensor  # int64
    status: tf.Tensor  # int32, Status


class Report(NamedTuple):
    """What the host reads after each call, as one tensor so that reading it is one transfer:
    rows of an :class:`~flatvec._run.record.IterationRecord`'s fields as float64 (the counts
    are exact integers). :meth:`CompiledLoop.start` gives one such row;
    :meth:`CompiledLoop.advance` gives :data:`MAX_ROWS` rows, one per iteration it ran (rows it
    did not use have nit -1; past ``MAX_ROWS`` iterations the last row is overwritten, so it is
    always the last iteration's)."""

    values: tf.Tensor  # or a NumPy array (the eager tier's)

    def records(self) -> list[IterationRecord]:
        """The typed records of the iterations the call ran (one host transfer)."""
        return records(np.reshape(np.asarray(self.values), [-1, WIDTH]))


MAX_ROWS = 64
# Host reads of the carry done eagerly before a compiled reader is traced (see _read_host).
EAGER_READS = 8
# Value differences of up to this many units in the last place count as rounding (see _one_step).
ROUNDING_ULPS = 256


class CompiledLoop:
    """The compiled iteration of one (objective, algorithm) combination.

    The carry lives in ``tf.Variable`` s between calls: :meth:`advance` takes no arguments
    and hands back only the small :class:`Report`. Why: calling a ``tf.function`` costs about
    0.05 ms per tensor passed in or out on a small CPU, so a carry of ~20 tensors (L-BFGS's
    buffers, products and scalars, the best point) passed back and forth cost more than the
    rest of the iteration on medium problems.

    The variables are created at the first :meth:`start` (shapes come from the algorithm's
    ``init``) and reused by later runs, so repeated runs trace nothing. The stopping rule and
    the number of iterations per call (:meth:`set_block`) are read from variables too: a later
    run with other tolerances, limits or block size traces nothing either.

    After :meth:`share_graphs`, a loop runs the compiled functions of an earlier loop whose
    objective traced to the same graph (:mod:`flatvec._tf.graph_reuse`), or offers its own to
    later ones.
    """

    def __init__(
        self,
        algorithm: Algorithm,
        objective: Objective,
        *,
        jit_compile: bool,
    ) -> None:
        self.algorithm, self.objective = algorithm, objective
        # Settings and flags the compiled iteration reads from variables (a new value does not
        # retrace it); made only once compiled code needs them (a run on the host never does).
        self._tolerances = LazyVariable([0.0, 0.0, 0.0], np.float64)
        self._limits = LazyVariable([0, 0], np.int64)
        self._block = LazyVariable(1, np.int64)
        # Whether buffers of the carry may be held elsewhere (see _advance_graph).
        self._carry_shared = LazyVariable(True, np.bool_)
        self.block = 1
        # A user's algorithm keeps AutoGraph (Python control flow on tensors); flatvec's own
        # algorithms are written for plain tracing and are left as they are.
        self._init = with_autograph(algorithm.init)
        self._init_takes_oracle = takes_oracle(algorithm.init)
        self._step = with_autograph(algorithm.step)
        needs = {"needs_hvp": getattr(algorithm, "needs_hvp", False),
                 "needs_ggn": getattr(algorithm, "needs_ggn", False),
                 "needs_residuals": getattr(algorithm, "needs_residuals", False),
                 "owner": type(algorithm).__name__}
        # The objective's evaluations are calls of its own compiled functions (see
        # CompiledCalls). Under a strategy the replicas' calls must be traced in the caller's
        # graph: there the objective is inlined.
        self._calls_objective = getattr(objective, "strategy", None) is None
        self.oracle = Oracle(CompiledCalls(objective) if self._calls_objective else objective,
                             **needs)
        # The start runs eagerly where it only evaluates f and g, whose compiled function
        # graph sharing traces anyway: nothing of the start is traced or set up as a graph.
        # A start that needs curvature or residuals (Levenberg-Marquardt's dense matrix, say)
        # is a traced graph that loops of a fresh model share: eagerly it would trace the
        # fresh objective's compiled product (sinc fit: 1.7 s instead of 0.8 s to 1e-8).
        self._eager_start = self._calls_objective and not any(
            needs[k] for k in ("needs_hvp", "needs_ggn", "needs_residuals"))
        self._x0_spec: tf.TensorSpec | None = None
        reasons = getattr(algorithm, "stop_reasons", ())
        self._stop_codes = tuple(
            tuple(ALGORITHM_CODE_BASE + k + 1 for k, reason in enumerate(reasons)
                  if reason.success is success) for success in (False, True))
        self._vars: Carry | None = None
        self._eager_carry: Carry | None = None  # newer than the variables (advance_eagerly)
        self._held_interrupts: list[Any] = []  # a Ctrl-C that ended an eager block
        self._blas_threads = BlasThreads()  # NumPy's BLAS threads in host blocks
        # In a host block: the objective's counters less the oracle's host tally at its start,
        # so that each iteration's counts are this plus the tally (see advance_eagerly);
        # None outside one, or once the tally has missed the counters (read them instead).
        self._count_offset: np.ndarray | None = None
        self._counts_tallied = True
        self._advance_concrete: Any = None
        self._shared_key: Any = None
        self._objective_captures: tuple[tf.Tensor, ...] = ()
        self._template: graph_reuse.LoopTemplate | None = None
        self._host_reads, self._reader = 0, None
        # In-place row writes (flatvec.buffers) for algorithms that declare writes_rows; not
        # under XLA, which has no kernel for the raw op (it updates its loop buffers in place
        # itself where the dataflow orders the reads first: flatvec.buffers).
        self._writes_in_place = bool(getattr(algorithm, "writes_rows", False)) and not jit_compile
        self._jit_compile = bool(jit_compile)
        jit = jit_compile or None
        self._start = tf.function(self._start_graph, jit_compile=jit, autograph=False)
        self._advance = tf.function(self._advance_graph, jit_compile=jit, autograph=False)

    # ------------------------------------------------------------------ host side
    def share_graphs(self, key: Any, objective_graph: graph_reuse.ObjectiveGraph) -> None:
        """Run the functions kept under ``key`` if there are any, else keep this loop's once
        traced. ``key`` must tell apart everything besides the objective's graph that the
        iteration's graph depends on (algorithm and options, XLA); ``objective_graph`` is this
        loop's objective traced by :func:`~flatvec._tf.graph_reuse.trace_objective`."""
        self._shared_key = key
        self._objective_captures = objective_graph.captures
        self._template = graph_reuse.find(key)

    def _own_handles(self) -> list[tf.Tensor]:
        """Handles of the variables the loop's functions read besides the objective's."""
        counters = [self.objective.nfev, self.objective.njev, self.objective.nhev]
        own = [lazy.variable for lazy in (self._tolerances, self._limits, self._block)]
        own += [self.nonfinite, self._carry_shared.variable]
        carry = [] if self._vars is None else tf.nest.flatten(self._vars)
        return [v.handle for v in counters + own + carry]

    def _make_variables(self) -> None:
        """Make the variables of the settings and counters before compiled code is traced: a
        variable made while tracing makes ``tf.function`` trace a second time."""
        for lazy in (self._tolerances, self._limits, self._block, self._carry_shared):
            lazy.variable  # noqa: B018 (made on first use)
        self.oracle.nonfinite  # noqa: B018

    @property
    def nonfinite(self) -> tf.Variable:
        """Non-finite evaluations and products of the run, int64 ``[2]`` (counted by the
        oracle: :attr:`flatvec.oracle.Oracle.nonfinite`)."""
        return self.oracle.nonfinite

    def start(self, x0: tf.Tensor, rule: StopRule, state: Any = None) -> Report:
        """Evaluate ``x0`` and make it the loop's start, stopping by ``rule``; with ``state``,
        resume from that algorithm state instead (its structure is checked against the
        algorithm's)."""
        self._tolerances.assign([rule.gtol, rule.ftol, rule.ftol_floor])
        self._limits.assign([rule.max_iter, rule.max_eval])
        self.oracle.reset_faults()
        self._eager_carry = None
        self._held_interrupts.clear()
        x0 = tf.convert_to_tensor(x0)
        self._x0_spec = tf.TensorSpec(x0.shape, x0.dtype)
        host = self._eager_start and self.runs_on_host
        with call_options.lean_calls(self._calls_objective):
            if host:  # on NumPy arrays (advance_eagerly)
                with scalar_ops.on_host(), np.errstate(all="ignore"):
                    carry = self._start_graph(x0.numpy())
            elif self._eager_start:
                carry = self._start_graph(x0)
            elif self._template is not None and self._template.has_start:
                carry = self._template.start(x0, self._objective_captures, self._own_handles())
            else:
                self._make_variables()
                carry = self._start(x0)
        if state is not None:
            try:
                tf.nest.assert_same_structure(carry.state, state)
            except (ValueError, TypeError) as err:
                raise ValueError(
                    "initial_state: does not match this algorithm's state structure"
                ) from err
            # (On the host: copies, which the eager tier writes rows into.)
            state = tf.nest.map_structure(np.array if host else tf.convert_to_tensor, state)
            carry = carry._replace(state=state)
        # Where the loop can step eagerly the carry is the eager tier's, and the variables are
        # written (made, the first time) only when something needs them: a run that stays
        # eager never does (making an L-BFGS carry's 21 variables costs some 20 ms).
        self._eager_carry = carry
        if not (self._eager_start and self.can_step_eagerly):
            self.sync_variables()
        return self._report_eager()

    def set_block(self, iterations: int) -> None:
        """Let each :meth:`advance` run up to ``iterations`` iterations (default 1)."""
        if iterations != self.block:
            self._block.assign(iterations)
            self.block = iterations

    def advance(self) -> Report:
        """Run up to :meth:`set_block`'s number of iterations from the current carry; fewer
        when a stopping test holds."""
        self.sync_variables()
        self._make_variables()
        if self._advance_concrete is None:
            if self._template is not None:
                self._advance_concrete = self._template.advance_with(
                    self._objective_captures, self._own_handles())
            else:
                # Calling the concrete function skips the signature lookup (~0.1 ms a call).
                self._advance_concrete = self._advance.get_concrete_function()
                self._offer_graphs()
        with call_options.lean_calls(self._calls_objective):
            return self._advance_concrete()

    @property
    def advance_function(self) -> Any:
        """The ``tf.function`` of :meth:`advance` (for its graph or compiler IR; a loop that runs
        shared functions, see :mod:`flatvec._tf.graph_reuse`, never traces it)."""
        return self._advance

    @property
    def trace_counts(self) -> tuple[int, int]:
        """How many times this loop traced its start and its iteration."""
        return (self._start.experimental_get_tracing_count(),
                self._advance.experimental_get_tracing_count())

    @property
    def start_is_traced(self) -> bool:
        """Whether :meth:`start` is a traced graph (curvature or residual methods' set-up), not
        run eagerly (only f and g at the start point)."""
        return not self._eager_start

    @property
    def buffers_shared(self) -> bool:
        """Whether the carry's buffers may be held outside the loop (after a start, a host read
        or an eager block): the next compiled block then copies those it writes in place."""
        return bool(self._carry_shared.numpy())

    @property
    def is_compiled(self) -> bool:
        """Whether :meth:`advance` is ready to run without tracing (this loop traced it, or it
        runs an earlier loop's shared functions)."""
        return self._advance_concrete is not None or self._template is not None

    @property
    def runs_on_host(self) -> bool:
        """Whether :meth:`advance_eagerly` runs the algorithm on NumPy arrays (it declares
        ``runs_on_host``: :class:`~flatvec.protocol.Algorithm`)."""
        return bool(getattr(self.algorithm, "runs_on_host", False))

    @property
    def can_step_eagerly(self) -> bool:
        """Whether :meth:`advance_eagerly` runs the same operations as :meth:`advance`: not
        under XLA (whose fused kernels round differently) nor a strategy (whose replicas'
        calls exist only in a traced graph)."""
        return self._calls_objective and not self._jit_compile

    def advance_eagerly(self, iterations: int) -> Report:
        """:meth:`advance` without tracing: up to ``iterations`` iterations run eagerly, each
        calling the objective's compiled functions exactly as the compiled loop does (the
        algorithm's ``step``, the stopping tests and the best-point update are the same
        Python code, executed op by op; scalar logic written on :mod:`flatvec.scalar_ops`
        runs on host values). An algorithm that declares ``runs_on_host`` runs on NumPy
        arrays (:func:`flatvec.scalar_ops.on_host`): the carry is copied to the host once (its
        buffers are then the eager tier's own to write rows into). Costs more per iteration
        (L-BFGS on the digits MLP f32: 5.0-6.0 ms on the host, 12.5 ms eagerly on tensors,
        against 4.2-4.4 ms compiled) and nothing to set up (tracing and instantiating the
        compiled iteration: 0.55-0.75 s there); :class:`flatvec._run.tiers.TierPlan` picks
        one.

        The carry stays with the eager tier between blocks (from the start on, where the start
        was evaluated eagerly) and is written to the variables when anything needs them
        (:attr:`variables`, :meth:`advance`, :meth:`sync_variables`; :meth:`carry` and
        :meth:`report` read it as it is): a run on the host copies its ``[m, n]`` buffers in
        and out at most once, not at every block (32 MB each way on Rosenbrock n = 10^5).

        A Ctrl-C during the block ends it after the iteration it interrupted, so the carry is
        always a whole iteration's, and the report of the block's iterations comes back: the
        interrupt is raised by :meth:`raise_held_interrupt`, once the caller has recorded
        them. An exception from the objective leaves the last whole iteration's carry (every
        evaluation of an iteration comes before its row writes)."""
        if not self.can_step_eagerly:
            raise RuntimeError("CompiledLoop.advance_eagerly: not for XLA or strategy loops")
        on_host = self.runs_on_host
        carry = self._eager_carry
        if carry is None:
            carry = self._read()
            if on_host:  # copies: rows are written into them
                carry = tf.nest.map_structure(np.array, carry)
        rule = self._rule()
        rows = np.full([MAX_ROWS, WIDTH], -1.0)
        started, in_objective = time.perf_counter(), self.oracle.host_seconds
        done = 0
        if on_host and self._counts_tallied:
            self._count_offset = np.array(counter_values(self.objective)) - \
                self.oracle.host_counts()
        # The scalars of the stopping tests and the best point are NumPy scalars here (see
        # flatvec.scalar_ops), which meet inf and NaN as the graph's do, without warnings.
        try:
            with (call_options.lean_calls(self._calls_objective), np.errstate(all="ignore"),
                  scalar_ops.on_host(on_host),
                  self._blas_threads.limit(carry) if on_host else contextlib.nullcontext(),
                  interrupts_deferred(self._held_interrupts) as interrupted):
                for i in range(iterations):
                    carry, counts = self._one_step(carry, rule)
                    self._eager_carry = carry
                    done = i + 1
                    row = rows[min(i, MAX_ROWS - 1)]
                    row[:] = host_report_row(carry, counts)
                    if interrupted or IterationRecord.from_row(row).status != int(
                            Status.RUNNING):
                        break
        finally:
            offset, self._count_offset = self._count_offset, None
        if on_host:
            self._blas_threads.record(done, time.perf_counter() - started,
                                      self.oracle.host_seconds - in_objective)
        if offset is not None:
            self._check_tally(offset, rows[min(done, MAX_ROWS) - 1] if done else None)
        return Report(rows)

    def _check_tally(self, offset: np.ndarray, last_row: np.ndarray | None) -> None:
        """Check a host block's tallied counts (``offset`` plus the oracle's tally) against
        the objective's counters. Where they differ (an objective that counts its calls in
        its own way), the block's last row takes the counters' values and later blocks read
        them every iteration; earlier rows of that block keep the tally's (the history's
        intermediate ``nfev``; the result's counts are always the counters')."""
        tallied = offset + self.oracle.host_counts()
        actual = np.array(counter_values(self.objective))
        if np.array_equal(tallied, actual):
            return
        self._counts_tallied = False
        if last_row is not None:
            first = IterationRecord._fields.index("nfev")
            last_row[first:first + 3] = actual

    def raise_held_interrupt(self) -> None:
        """Raise the Ctrl-C that ended the last eager block, if one did (see
        :meth:`advance_eagerly`)."""
        if self._held_interrupts:
            handler, args = self._held_interrupts[0]
            self._held_interrupts.clear()
            handler(*args)

    def sync_variables(self) -> None:
        """Write the eager tier's carry (see :meth:`advance_eagerly`) to the variables, if it
        is newer: before anything reads them by another way than this loop's methods (a
        ``tf.train.Checkpoint`` that tracks them)."""
        if self._eager_carry is None:
            return
        with interrupts_deferred():
            if self._vars is None:
                self._vars = tf.nest.map_structure(
                    lambda t: tf.Variable(t, trainable=False, shape=np.shape(t)),
                    self._eager_carry)
            else:
                self._write(self._eager_carry)
            self._eager_carry = None
            # The eager carry's tensors may be referenced elsewhere: the next compiled block
            # copies the buffers it writes in place.
            self._carry_shared.assign(True)

    def _offer_graphs(self) -> None:
        if self._shared_key is None or self._x0_spec is None:
            return
        start = None if self._eager_start else self._start.get_concrete_function(self._x0_spec)
        template = graph_reuse.LoopTemplate.build(
            start, self._advance_concrete, self._objective_captures, self._own_handles(),
            self.algorithm)
        if template is not None:
            graph_reuse.keep(self._shared_key, template)

    def carry(self) -> Carry:
        """The current carry as tensors: snapshots, which later calls do not change (an
        assignment to a variable whose value is still referenced gets a new buffer)."""
        return self._read_host()

    @property
    def variables(self) -> Carry:
        """The carry's ``tf.Variable`` s (they exist after the first :meth:`start`): what a
        checkpoint of the run tracks (:mod:`flatvec._run.run_checkpoint`). Assigning them sets
        where the next :meth:`advance` continues."""
        if self._vars is None and self._eager_carry is None:
            raise RuntimeError("CompiledLoop.variables: call start() first")
        self.sync_variables()
        self._carry_shared.assign(True)  # whoever reads or assigns them may keep the buffers
        return self._vars

    def report(self) -> Report:
        """The report row of the current carry, as :meth:`start` returns it."""
        return self._report_eager()

    def _report_eager(self) -> Report:
        if self._eager_carry is not None:  # read as it is: no tensor made of the carry
            counts = counter_values(self.objective)
            return Report(np.asarray([host_report_row(self._eager_carry, counts)]))
        return _report(self._read_host(), self.objective)

    def _read_host(self) -> Carry:
        """:meth:`_read` from the host: eagerly the first few times, then by one compiled
        function. The carry has 10-20 variables; their eager reads cost about 2.5 ms per
        callback on the sinc fit's Levenberg-Marquardt state (a third of its iteration),
        one call 0.1 ms; tracing that call costs about 20 ms, paid only by runs that read
        often (callbacks, progress, history every iteration). The eager tier's carry, where it
        is newer than the variables, is read as it is (tensors copy NumPy arrays)."""
        if self._eager_carry is not None:
            return tf.nest.map_structure(tf.convert_to_tensor, self._eager_carry)
        self._host_reads += 1
        self._carry_shared.assign(True)  # the snapshot shares the variables' buffers
        if self._host_reads <= EAGER_READS:
            return self._read()
        if self._reader is None:
            self._reader = tf.function(self._read, autograph=False).get_concrete_function()
        with call_options.lean_calls(self._calls_objective):
            return self._reader()

    # ------------------------------------------------------------------ graph side
    def _rule(self) -> RuleTensors:
        """The stopping rule: read from the variables in a traced function, from the host's
        values eagerly (NumPy scalars of the same dtypes)."""
        if tf.inside_function():
            gtol, ftol, ftol_floor = tf.unstack(self._tolerances.variable.value(), 3)
            max_iter, max_eval = tf.unstack(self._limits.variable.value(), 2)
        else:
            gtol, ftol, ftol_floor = self._tolerances.numpy()
            max_iter, max_eval = self._limits.numpy()
        return RuleTensors(gtol, ftol, max_iter, max_eval, ftol_floor)

    def _read(self) -> Carry:
        # value(), not read_value(): the same read without an identity node per variable.
        return tf.nest.map_structure(lambda v: v.value(), self._vars)

    def _write(self, carry: Carry) -> None:
        """Store ``carry`` in the variables (every field: the block's ``tf.while_loop`` hands
        back new tensors even for fields no iteration changed). Eager assignments (about 1 ms
        in all), not a tf.function: a second traced function would make a run's first warm
        call pay its tracing and first run."""
        for var, value in zip(tf.nest.flatten(self._vars), tf.nest.flatten(carry)):
            var.assign(value)

    def _start_graph(self, x0: tf.Tensor) -> Carry:
        """The start's carry (run eagerly, or traced: see ``_eager_start``)."""
        with vector_ops.xla_scope(self._jit_compile and tf.inside_function()):
            state = start_state(self._init, x0, self.oracle, self._init_takes_oracle)
        f, g = state.f, state.g
        status = initial_status(f, g, self._rule())
        return Carry(state, x0, f, g, scalar_ops.for_context().zeros([], tf.int64), status)

    def _one_step(self, carry: Carry, rule: RuleTensors) -> tuple[Carry, tuple[Any, ...]]:
        """One iteration: the new carry, and the objective's counters after it (nfev, njev,
        nhev: the variables while traced, their values read once when eager)."""
        nonfinite_before = self.oracle.fault_counts()
        state = self._step(carry.state, self.oracle)
        nit = carry.nit + 1
        ops = scalar_ops.for_context()  # eagerly (the eager tier): the scalars on the host
        f, best_f = ops.value(state.f), ops.value(carry.best_f)
        finite = ops.isfinite(f) & ops.value(vector_ops.all_finite(state.g))
        # Eagerly the values, read once an iteration (the report row takes them too), or on
        # the host the oracle's tally of its calls from the block's start.
        if ops is scalar_ops.TRACED:
            counts = counters(self.objective)
        elif self._count_offset is not None:
            nfev, njev, nhev = self._count_offset + self.oracle.host_counts()
            counts = (nfev, njev, nhev)
        else:
            counts = counter_values(self.objective)
        evaluations = counts[0] + counts[2]
        new_nonfinite = self.oracle.fault_counts() - nonfinite_before
        faults = StepFaults(new_nonfinite[1] > 0, new_nonfinite[0] > 0)
        status = status_after_step(carry.state.f, state, finite, nit, evaluations, rule,
                                    faults, self._stop_codes)
        accepted = ops.value(getattr(state, "accepted", True))
        # <=: a later point of equal value (a step that changed f by less than its rounding)
        # is kept, so the result's gradient is the one the gtol test saw; so is the point where
        # the gtol test holds when its value exceeds the best by rounding only (CG on the
        # 50-dimensional quadratic ended a few ulps above its best point, whose gradient
        # failed gtol, and the result said "converged" with that gradient).
        eps = np.finfo(tf.as_dtype(state.f.dtype).as_numpy_dtype).eps
        rounding = ROUNDING_ULPS * eps * ops.maximum(ops.abs(best_f), ops.abs(f))
        converged_here = (ops.value(status) == int(Status.CONVERGED_GTOL)) & (
            f <= best_f + rounding)
        better = finite & accepted & ((f <= best_f) | converged_here)
        # A cond, not a select: no copy of x and g when the point is not better.
        best_x, best_f, best_g = ops.branch(
            better,
            lambda: (state.x, state.f, state.g),
            lambda: (carry.best_x, carry.best_f, carry.best_g),
        )
        return Carry(state, best_x, best_f, best_g, nit, status), counts

    def _advance_graph(self) -> Report:
        carry = self._read()
        # Buffers that anything besides the loop may hold (the start's tensors, a host
        # snapshot, a checkpoint's) are copied at their first write of this block; after a
        # block that nobody read, the next one writes them in place from the start.
        owned = ~self._carry_shared.variable.value() if self._writes_in_place else None
        rule = self._rule()
        block = self._block.variable.read_value()
        rows = tf.fill([MAX_ROWS, WIDTH], tf.constant(-1.0, tf.float64))

        def cond(i: tf.Tensor, c: Carry, rows: tf.Tensor) -> tf.Tensor:
            return (i < block) & (c.status == int(Status.RUNNING))

        def body(i: tf.Tensor, c: Carry, rows: tf.Tensor) -> tuple[tf.Tensor, Carry, tf.Tensor]:
            # After the block's first step the buffers are the loop's own: that step wrote
            # them (writes_rows algorithms write on every step), by a copy where shared.
            with buffers.in_place(self._writes_in_place,
                                  owned | (i > 0) if self._writes_in_place else None):
                c, counts = self._one_step(c, rule)
            row = tf.minimum(i, MAX_ROWS - 1)
            rows = tf.tensor_scatter_nd_update(rows, [[row]], [report_row(c, counts)])
            return i + 1, c, rows

        # The loop runs at least once: a call is only made while the status is RUNNING.
        with vector_ops.xla_scope(self._jit_compile):
            _, carry, rows = tf.while_loop(cond, body, (tf.constant(0, tf.int64), carry, rows))
        self._write(carry)
        if self._writes_in_place:
            self._carry_shared.variable.assign(False)
        return Report(rows)


def _report(carry: Carry, objective: Objective) -> Report:
    return Report(report_row(carry, counters(objective)))
