"""``flatvec.minimize``: one entry point for models, functions and closures."""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from flatvec._objective.data import check_data_options
from flatvec._run import run_checkpoint
from flatvec._run.keywords import check_algorithm_keywords
from flatvec._run.loop import CompiledLoop
from flatvec._run.problem import resolve_problem
from flatvec._run.reporting import RunReporter
from flatvec._run.run import run_loop
from flatvec._run.stopping import StopRule
from flatvec._tf import graph_reuse
from flatvec.protocol import LBFGSB_FTOL, Algorithm, get_algorithm, lookup_algorithm
from flatvec.residual_closure import check_weights
from flatvec.result import OptimizeResult

__all__ = ["minimize"]

DEFAULT_MAX_ITER = 15000  # L-BFGS-B's default


def _check_options(
    gtol: Any, ftol: Any, max_iter: Any, max_eval: Any, steps_per_call: Any, verbose: Any,
    jit_compile: Any = False,
) -> None:
    for name, value in (("gtol", gtol), ("ftol", ftol)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: expected a finite non-negative number, got {value!r}")
        if not (value >= 0 and np.isfinite(value)):
            raise ValueError(f"{name}: expected a finite non-negative number, got {value!r}")
    for name, value, low in (
        ("max_iter", max_iter, 0),
        ("max_eval", max_eval, 1),
        ("steps_per_call", steps_per_call, 1),
        ("verbose", verbose, 0),
    ):
        if value is None and name in ("max_eval", "steps_per_call"):
            continue
        if isinstance(value, bool) and name != "verbose":
            raise TypeError(f"{name}: expected an int >= {low}, got {value!r}")
        if not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected an int >= {low}, got {value!r}")
        if value < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    if not isinstance(jit_compile, (bool, np.bool_)):
        raise TypeError(f"jit_compile: expected True or False, got {jit_compile!r}")


def _check_initial_state(state: Any) -> None:
    """A previous result's ``state``: a NamedTuple with a finite 1-D float ``x``."""
    if state is None:
        return
    if not (isinstance(state, tuple) and hasattr(state, "_fields") and "x" in state._fields):
        raise TypeError(
            "initial_state: expected an algorithm state (a previous result's .state, a "
            f"NamedTuple with a field x), got {type(state).__name__}")
    try:
        x = np.asarray(state.x)
    except Exception as err:  # a symbolic tensor, for one
        raise TypeError(f"initial_state: its x is not a concrete array ({err})") from err
    if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
        raise ValueError("initial_state: its x must be a finite float vector")


def minimize(
    fun: Any,
    x0: Any = None,
    algo: str | Algorithm = "lbfgs",
    *,
    loss: Any = None,
    max_iter: int = DEFAULT_MAX_ITER,
    max_eval: int | None = None,
    gtol: float = 1e-5,
    ftol: float | None = None,
    callbacks: Sequence[Any] | None = None,
    verbose: int = 0,
    jit_compile: bool = False,
    steps_per_call: int | None = None,
    initial_state: Any = None,
    batch_size: int | None = None,
    training: bool = False,
    in_memory: bool | None = None,
    bounds: Any = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    max_time: float | None = None,
    ftol_floor: float = 0.0,
    allow_unused: bool = False,
    options: dict[str, Any] | None = None,
    residuals: bool | None = None,
    residual_weights: Any = None,
    **algo_options: Any,
) -> OptimizeResult:
    r"""Minimize a model's full-batch loss, a function of a 1-D tensor, or a closure.

    Three forms::

        minimize(model, dataset, algo="lbfgs", loss=None, ...)   # Keras model + tf.data / arrays
        minimize(fun, x0, algo="lbfgs", ...)                     # fun(x) -> scalar, x 1-D
        minimize(loss_fn, variables, algo="lbfgs", ...)          # closure over tf.Variables

    Each iteration (direction, line search, update, stopping tests) is one compiled
    ``tf.function``, traced once per run; Python only runs callbacks and progress between calls.

    Parameters
    ----------
    fun : keras.Model, callable or flatvec.Objective
        What to minimize (see the forms above).
    x0 : dataset, array-like or list of tf.Variable
        The dataset (model form), the start point (function form, float32/float64 1-D), or the
        variables the closure reads (closure form).
    algo : str or Algorithm
        A registered name (``"lbfgs"``, ``"cg"``, ``"bfgs"``, ``"gd"``, plugins ...), an
        :class:`~flatvec.protocol.Algorithm` instance, or ``"scipy:<method>"`` to run
        ``scipy.optimize.minimize`` on the same objective.
    loss : optional
        Model form only: a Keras loss name/object or callable; default ``model.loss``.
    max_iter : int
        Maximum number of iterations (``0`` evaluates the start point only).
    max_eval : int, optional
        Maximum number of evaluations, function evaluations (``nfev``) and Hessian-vector
        products (``nhev``) counted alike (checked after each iteration).
    gtol : float
        Stop when :math:`\|g\|_\infty \le` ``gtol``.
    ftol : float, optional
        Default: the algorithm's ``default_ftol`` (L-BFGS-B's 2.2e-9 for ``lbfgs`` and ``gd``;
        0, i.e. off, for ``cg``, ``bfgs`` and the second-order methods, as in SciPy, and for
        any algorithm that declares none).
        Stop when :math:`(f_k - f_{k+1}) \le` ``ftol`` :math:`\max(|f_k|, |f_{k+1}|,`
        ``ftol_floor``:math:`)`: the reduction relative to the loss itself, so that a loss of
        1e-5 still falling by 1e-9 an iteration is not stopped.
    ftol_floor : float
        The least scale of the ``ftol`` test (default 0). ``ftol_floor=1`` is L-BFGS-B's exact
        test, :math:`\max(|f_k|, |f_{k+1}|, 1)`, which treats losses below 1 as 1.
    callbacks : list, optional
        ``keras.callbacks.Callback`` objects (each iteration is an "epoch" with logs ``loss``,
        ``grad_norm``, ``step_size``, ``nfev``; ``model.stop_training = True`` stops the run) and
        plain callables ``callback(intermediate_result)`` (return True to stop).
    verbose : int
        0 silent, 1 a Keras ``Progbar``.
    jit_compile : bool
        Compile the iteration with XLA (needs in-memory data for the model form).
    steps_per_call : int, optional
        Iterations per compiled call (a ``tf.while_loop``; one host transfer per call).
        Callbacks and the progress bar then see every ``steps_per_call``-th iteration; the
        history still has every iteration (up to 64 per call; its times interpolated within a
        call by evaluation count). Default: 1 when callbacks are given, so that they see every
        iteration and the model at it; without callbacks, as many as take about 0.2 s (at
        most 64), which saves 0.4-3 ms an iteration of call overhead on small and medium
        problems. Under a strategy whose replicas span processes (``MultiWorkerMirrored``
        over a cluster), default 1: every worker must make the same calls.
    initial_state : NamedTuple, optional
        Resume from a previous result's ``state`` (same algorithm and problem size); ``x0`` is
        then ignored in favour of ``initial_state.x``.
    batch_size, training, in_memory :
        Model form: how the data is batched and swept (see ``Objective.from_model``).
    bounds : optional
        Only for ``algo="scipy:<method>"`` (passed through to SciPy).
    checkpoint : str or os.PathLike, optional
        A directory where the run is saved with ``tf.train.Checkpoint`` (the algorithm state,
        the best point, ``nit`` and the evaluation counts; the last 2 checkpoints are kept).
        If it already holds a checkpoint of this algorithm (same options) and problem size,
        the run resumes from it, on the trajectory an uninterrupted run follows (bit-identical
        iterates in the tests, on the same machine and TensorFlow build, where both take the
        same tier: see Notes); ``x0`` and
        ``initial_state`` are then ignored; a mismatched checkpoint raises ``ValueError``.
        After a resume, ``nit``, ``nfev``, ``njev`` and ``nhev`` are totals since the original
        start (the restored point's re-evaluation to set up the loop is not counted),
        ``history`` starts at the restored point (its ``nit`` column counts from the original
        start, its ``time`` from this call) and Keras callbacks see epochs numbered from
        there. A saved run that had stopped on ``gtol``, ``max_iter`` or ``max_eval`` is
        tested again with this call's options (so a larger ``max_iter`` continues it); one
        that stopped for another reason (``ftol``, a failed line search, non-finite values,
        the algorithm's own) returns its result at once. Not for ``algo="scipy:<method>"``.
    checkpoint_every : int, optional
        With ``checkpoint``: save every this many iterations (default 100) and at the end of
        the run (however it ends: convergence, a limit, a callback, Ctrl-C). The compiled
        blocks of iterations (``steps_per_call``) are cut to end at each multiple, so the
        saves happen exactly there.
    max_time : float, optional
        Stop after about this many seconds of wall time (status ``MAX_TIME``); blocks of
        compiled iterations are sized to end by then. For ``algo="scipy:<method>"`` too.
    allow_unused : bool
        Closure and model forms: a variable the loss does not read gets a zero gradient
        instead of raising ``ValueError``.
    residuals : bool, optional
        Closure and function forms: ``fun`` returns residuals (a tensor, or a list of residual
        groups for a closure) and the loss is :math:`\tfrac12 \|r\|^2`
        (:meth:`Objective.from_residual_closure`, :meth:`Objective.from_residuals`). Default:
        True for the least-squares methods (``lm``, ``gauss-newton``), else False.
    residual_weights : list of float or "mean", optional
        Weights of a residual closure's groups: the loss is
        :math:`\tfrac12 \sum_i w_i \|r_i\|^2`; ``"mean"`` makes it
        :math:`\sum_i \operatorname{mean}(r_i^2)`, a PINN's sum of mean squared errors.
    options : dict, optional
        Only for ``algo="scipy:<method>"``: SciPy's own options of that method (``maxcor``,
        ``maxls``, ...), passed to ``scipy.optimize.minimize`` over the ones flatvec maps.
    **algo_options :
        Options of the algorithm (``memory=10``, ``beta="pr+"``, ``learning_rate=...``).
        Another library's names for the options above (``maxiter``, ``method``,
        ``compile``, ...) and near misses of them are refused, naming the option meant.

    Returns
    -------
    OptimizeResult
        ``x, fun, jac, nit, nfev, njev, nhev, nonfinite_evals, status, reason, success,
        message, history, state``. The model's (or closure's) variables are left at ``x``,
        the best accepted point, whatever ended the run (an error or Ctrl-C included; one
        while the start point is traced or evaluated re-raises with the variables as they
        were). ``status`` is SciPy's code for the outcome, ``reason`` flatvec's
        :class:`~flatvec.status.Status`; a convergence claim holds at ``x``. ``reason`` is
        ``NON_FINITE`` when non-finite values ended the run: a step that failed with
        non-finite trial points among its evaluations, or any non-finite curvature product.

    Raises
    ------
    TypeError, ValueError
        A wrong argument, naming it, before anything is traced or any variable written.

    Notes
    -----
    A run expected to be short (by its ``max_iter``/``max_eval``, or by the last run of the
    same algorithm on a problem of the same size in this process) runs its first iterations
    eagerly instead of tracing the compiled iteration (about 0.55 s of set-up); it switches
    to the compiled loop once it has lasted long enough to pay for it. Both run the same
    operations, so results agree to rounding, not bit for bit; ``FLATVEC_EAGER_TIER=0``
    compiles every run from its first iteration.

    Examples
    --------
    >>> import tensorflow as tf, flatvec
    >>> rosen = lambda x: tf.reduce_sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    >>> res = flatvec.minimize(rosen, tf.constant([-1.2, 1.0], tf.float64), "lbfgs", gtol=1e-8)
    >>> bool(res.success), [round(v, 6) for v in res.x.tolist()]
    (True, [1.0, 1.0])
    """
    # Every argument is checked here or while the objective is built, before any variable is
    # touched or anything is traced.
    _check_options(gtol, 0.0 if ftol is None else ftol, max_iter, max_eval, steps_per_call,
                   verbose, jit_compile)
    _check_limits(max_time, ftol_floor, allow_unused)
    _check_initial_state(initial_state)
    check_data_options(batch_size, training, in_memory)
    run_checkpoint.check_arguments(checkpoint, checkpoint_every, algo)
    objective_options = {
        "batch_size": batch_size,
        "training": training,
        "in_memory": in_memory,
        "jit_compile": jit_compile,
        "allow_unused": allow_unused,
    }
    is_scipy = isinstance(algo, str) and algo.lower().startswith("scipy:")
    _check_keywords(algo, algo_options, is_scipy, options)
    objective_options.update(_residual_options(algo, is_scipy, residuals, residual_weights))
    if is_scipy:
        if initial_state is not None or steps_per_call is not None:
            raise TypeError(
                "algo: SciPy methods take no initial_state or steps_per_call; SciPy's own "
                "options go in options={...}")
        from flatvec.scipy_bridge import minimize_with_scipy

        problem = _resolve(fun, x0, loss, objective_options)
        ftol = LBFGSB_FTOL if ftol is None else ftol
        return minimize_with_scipy(
            problem, algo.split(":", 1)[1], max_iter=max_iter, max_eval=max_eval, gtol=gtol,
            ftol=ftol, callbacks=callbacks, verbose=verbose, bounds=bounds, max_time=max_time,
            options=options,
        )
    if bounds is not None:
        raise TypeError("bounds: only supported by algo='scipy:<method>'")
    algorithm = get_algorithm(algo, **algo_options)
    if ftol is None:
        ftol = algorithm.default_ftol if isinstance(algorithm, Algorithm) else 0.0
    problem = _resolve(fun, x0, loss, objective_options)
    keeper = run_checkpoint.open_checkpoint(checkpoint, checkpoint_every, algorithm, problem.x0)
    objective = problem.objective
    if jit_compile and objective.streams_data:
        raise ValueError(
            "jit_compile: XLA cannot compile a tf.data loop; use in-memory data "
            "(in_memory=True) or jit_compile=False"
        )
    rule = StopRule(float(gtol), float(ftol), int(max_iter), int(max_eval or 0),
                    float(ftol_floor))
    reporter = RunReporter(callbacks, problem.model, verbose=verbose, max_iter=max_iter)
    loop_key = _loop_key(algo, algorithm, algo_options, bool(jit_compile))
    loop = _compiled_loop(objective, loop_key, algorithm, bool(jit_compile), problem.x0)
    # Runs of this algorithm on problems of this size predict each other's length.
    tier_key = (loop_key, tuple(problem.x0.shape), problem.x0.dtype.name)
    return run_loop(problem, algorithm, loop, rule, reporter, initial_state, steps_per_call,
                    keeper, max_time, tier_key)


# minimize's own keywords, for the near-miss hints of _check_keywords.
_DRIVER_OPTIONS = (
    "loss", "max_iter", "max_eval", "gtol", "ftol", "callbacks", "verbose", "jit_compile",
    "steps_per_call", "initial_state", "batch_size", "training", "in_memory", "bounds",
    "checkpoint", "checkpoint_every", "max_time", "ftol_floor", "allow_unused", "options",
    "residuals", "residual_weights")


def _check_keywords(algo: Any, algo_options: dict[str, Any], is_scipy: bool,
                    options: Any) -> None:
    """Foreign or misspelt keywords, and ``options`` away from SciPy, before anything runs."""
    if options is not None and not is_scipy:
        raise TypeError(
            "options: only for algo='scipy:<method>' (SciPy's own options); give a flatvec "
            "algorithm's options as keywords, e.g. minimize(..., 'lbfgs', memory=20)")
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options: expected a dict of SciPy options, got {type(options).__name__}")
    if is_scipy:
        check_algorithm_keywords(algo_options, _DRIVER_OPTIONS, (), algo,
                                 "SciPy's own options go in options={...}")
        return
    if isinstance(algo, str):
        cls = lookup_algorithm(algo)  # an unknown name raises here, listing the known ones
        params = inspect.signature(cls.__init__).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        check_algorithm_keywords(algo_options, _DRIVER_OPTIONS,
                                 [k for k in params if k != "self"], algo)
    else:  # an instance: options are its own (get_algorithm refuses them, saying so)
        check_algorithm_keywords(algo_options, _DRIVER_OPTIONS, algo_options,
                                 type(algo).__name__)


def _residual_options(algo: Any, is_scipy: bool, residuals: Any,
                      weights: Any) -> dict[str, Any]:
    """``residuals`` (default: whether the method is a least-squares one) and the checked
    ``residual_weights``, as objective options."""
    if residuals is not None and not isinstance(residuals, (bool, np.bool_)):
        raise TypeError(f"residuals: expected True, False or None, got {residuals!r}")
    if weights is not None and residuals is False:
        raise TypeError("residual_weights: given with residuals=False")
    least_squares = False
    if not is_scipy:
        cls = lookup_algorithm(algo) if isinstance(algo, str) else type(algo)
        least_squares = bool(getattr(cls, "needs_ggn", False)
                             or getattr(cls, "needs_residuals", False))
    if residuals is None and weights is not None:
        residuals = True
    # None: closures and functions are residuals for the least-squares methods.
    return {"residuals": residuals, "least_squares": least_squares,
            "residual_weights": check_weights(weights)}


def _check_limits(max_time: Any, ftol_floor: Any, allow_unused: Any) -> None:
    for name, value, allow_none in (("max_time", max_time, True),
                                    ("ftol_floor", ftol_floor, False)):
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                             np.floating)):
            raise TypeError(f"{name}: expected a non-negative number, got {value!r}")
        if not (value >= 0 and np.isfinite(value)) or (name == "max_time" and value == 0):
            raise ValueError(f"{name}: expected a finite "
                             f"{'positive' if name == 'max_time' else 'non-negative'} number, "
                             f"got {value!r}")
    if not isinstance(allow_unused, (bool, np.bool_)):
        raise TypeError(f"allow_unused: expected True or False, got {allow_unused!r}")


def _loop_key(algo: Any, algorithm: Any, algo_options: dict[str, Any],
              jit_compile: bool) -> tuple[Any, bool]:
    """What tells loops of one objective apart: an algorithm given by name by its name and
    options, an instance by identity; and XLA."""
    if isinstance(algo, str):
        algo_key = ("name", algo.lower(), tuple(sorted(algo_options.items(), key=str)))
    else:
        algo_key = ("instance", id(algorithm))
    return (algo_key, jit_compile)


def _compiled_loop(objective, key, algorithm, jit_compile, x0):
    """The :class:`CompiledLoop`, cached on the objective.

    Several ``minimize`` calls on the same :class:`Objective` with the same algorithm (any
    tolerances and limits) then trace once in all, not once per call. An algorithm given by
    name is keyed by its name and options; an instance by identity (kept alive by the cache).
    A new loop shares the compiled functions of an earlier one whose objective traced to the
    same graph (:mod:`flatvec._tf.graph_reuse`): a fresh model of the same architecture, on the
    same kind of data, traces only its objective.
    """
    def build(shareable: bool) -> CompiledLoop:
        loop = CompiledLoop(algorithm, objective, jit_compile=jit_compile)
        if (shareable and graph_reuse.enabled() and objective.strategy is None
                and objective.data_bytes <= graph_reuse.MAX_DATA_BYTES):
            objective_graph = graph_reuse.trace_objective(objective, x0)
            if objective_graph is not None:
                loop.share_graphs((key, objective_graph.fingerprint), objective_graph)
        return loop

    try:
        hash(key)
    except TypeError:  # unhashable option values: build afresh
        return build(shareable=False)
    cache = objective.loops
    if key not in cache:
        cache[key] = (algorithm, build(shareable=True))
    return cache[key][1]


def _resolve(fun: Any, x0: Any, loss: Any, objective_options: dict[str, Any]) -> Any:
    return resolve_problem(fun, x0, loss=loss, objective_options=objective_options)
