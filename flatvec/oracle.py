"""What an algorithm sees of the problem: counted, traceable evaluations and products."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf

from flatvec import scalar_ops
from flatvec._lazy_variable import LazyVariable

__all__ = ["Oracle"]

# What each call adds to the objective's (nfev, njev, nhev), as the Oracle's docstring states.
_EVALUATION = (1, 0, 0)
_WITH_GRADIENT = (1, 1, 0)
_JACOBIAN = (0, 1, 0)
_PRODUCT = (0, 0, 1)


def _read_only_view(t: tf.Tensor) -> Any:
    """``t``'s values as NumPy without ``numpy()``'s copy (20 us for 10^5 float64 entries):
    a read-only view (a scalar as a NumPy scalar), which keeps the tensor alive."""
    a = np.asarray(t)
    return a[()] if a.ndim == 0 else a


def _host_values(outputs: Any) -> tuple[Any, list[Any]]:
    """A compiled function's outputs as read-only NumPy views in the same structure, and
    those views as a flat list. A tensor, or a NamedTuple of tensors (``(f, g)``,
    ``(f, g, G)``), directly; any other structure through ``tf.nest`` (whose generic walk, twice
    a call, cost some 60 us inside a run)."""
    if isinstance(outputs, tf.Tensor):
        value = _read_only_view(outputs)
        return value, [value]
    if isinstance(outputs, tuple) and all(isinstance(t, tf.Tensor) for t in outputs):
        values = [_read_only_view(t) for t in outputs]
        return (type(outputs)(*values) if hasattr(outputs, "_fields") else tuple(values),
                values)
    result = tf.nest.map_structure(_read_only_view, outputs)
    return result, tf.nest.flatten(result)


class Oracle:
    """The problem as ``Algorithm.init`` and ``Algorithm.step`` see it.

    Every call is traceable (it runs inside the compiled iteration) and counted in graph, each
    kind on its own counter: :meth:`value` adds one to ``nfev``, :meth:`value_and_gradient`
    (also ``oracle(x)``) one to ``nfev`` and ``njev``, :meth:`hvp` one to ``nhev``. The driver
    reports the three counts and stops on ``max_eval`` against ``nfev + nhev``.

    Least-squares objectives (``Objective.from_residuals``) also give :meth:`residuals`
    (one ``nfev``), :meth:`jacobian` (dense, one ``njev``), :meth:`jvp`, :meth:`vjp`; those and
    model objectives give :meth:`ggn_vp`, the Gauss-Newton product (one ``nhev`` each), and
    :meth:`ggn_matrix`, the dense Gauss-Newton matrix with value and gradient (one ``njev``).

    Every result is also checked for non-finite entries, counted in graph on two counters the
    driver reads (:attr:`nonfinite`): evaluations (values, gradients, residuals, Jacobians),
    which a line search or trust region backs off from, and curvature products, from which no
    method recovers. The driver's non-finite status and the result's ``nonfinite_evals`` come
    from them.

    Called eagerly on NumPy arrays (the eager tier of an algorithm that runs on the host,
    :func:`flatvec.scalar_ops.on_host`), it calls the same compiled functions and gives NumPy
    arrays back; the finiteness check runs on the host, and the counters stay NumPy values
    until compiled code (or :attr:`nonfinite`) asks for them as a variable
    (:class:`~flatvec._lazy_variable.LazyVariable`): a run on the host dispatches no
    TensorFlow op for them.

    A product the algorithm did not declare raises a ``TypeError`` when the step is traced:
    Hessian-vector products need ``needs_hvp = True`` on the algorithm's class (or instance),
    Gauss-Newton products ``needs_ggn``, residuals and Jacobians ``needs_residuals``.

    Parameters
    ----------
    objective : flatvec.Objective
        The problem.
    needs_hvp : bool
        Whether :meth:`hvp` may be called.
    owner : str
        The algorithm's name, for the error message.
    """

    def __init__(self, objective: Any, *, needs_hvp: bool = False, needs_ggn: bool = False,
                 needs_residuals: bool = False, owner: str = "algorithm"):
        self._objective = objective
        self._nonfinite = LazyVariable([0, 0], np.int64)
        self._declared = {"hvp": bool(needs_hvp), "ggn": bool(needs_ggn),
                          "residuals": bool(needs_residuals)}
        self._owner = owner
        self._host_faults = np.zeros([2], np.int64)  # the counters' increments made on the host
        self._concrete: dict[Any, Any] = {}  # (function, input specs) -> concrete function
        # Seconds spent in the objective's functions called on NumPy arrays (what the eager
        # tier weighs against the rest of its iterations: flatvec._run.block_guards).
        self.host_seconds = 0.0
        # The calls on NumPy arrays, tallied as (nfev, njev, nhev) by the counting the class
        # docstring states: read for each iteration's counts instead of the objective's three
        # counter variables (see host_counts).
        self._host_counts = np.zeros([3], np.int64)

    @property
    def has_residuals(self) -> bool:
        """Whether the objective is a residual (least-squares) one."""
        return hasattr(self._objective, "residuals")

    def _check(self, kind: str, flag: str, method: str) -> Any:
        if not self._declared[kind]:
            raise TypeError(
                f"{self._owner}: calls oracle.{method} but does not declare {flag} = True "
                "(set it on the class so the driver can plan for these products)")
        fn = getattr(self._objective, method, None)
        if fn is None:
            raise TypeError(f"{self._owner}: needs oracle.{method}, which this objective lacks "
                            "(build it with flatvec.Objective.from_residuals)")
        return fn

    @property
    def dtype(self) -> tf.DType:
        """Float dtype of ``x``, ``f``, ``g``."""
        return self._objective.dtype

    def _call(self, kind: int, counted: tuple[int, int, int], fn: Any, *args: Any) -> Any:
        """``fn(*args)``, counted on the non-finite counter ``kind`` (0 evaluations, 1
        products) if any of its results is not finite; on NumPy arrays, as NumPy arrays, and
        ``counted`` (what the call adds to nfev, njev, nhev) tallied on the host."""
        if isinstance(args[0], np.ndarray):
            self._host_counts += counted
            started = time.perf_counter()
            outputs = self._host_callable(fn, args)(*[tf.constant(a) for a in args])
            result, leaves = _host_values(outputs)
            self.host_seconds += time.perf_counter() - started
            if not all(np.isfinite(leaf).all() for leaf in leaves):
                self._host_faults[kind] += 1
                self._nonfinite.assign_add(np.eye(2, dtype=np.int64)[kind])
            return result
        result = fn(*args)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(r))
                                for r in tf.nest.flatten(result)])
        self.nonfinite.assign_add(tf.one_hot(kind, 2, dtype=tf.int64)
                                  * tf.cast(~finite, tf.int64))
        return result

    def _host_callable(self, fn: Any, arrays: tuple[np.ndarray, ...]) -> Any:
        """``fn``'s concrete function for inputs of these arrays' shapes and dtypes where
        ``fn`` is a ``tf.function`` (a call skips the signature lookup: 0.18 against 0.28 ms
        on a small objective), else ``fn``. Keyed by the arrays' own shapes (a tensor's
        ``shape`` builds a ``TensorShape``: 14 us a call, measured inside a run)."""
        key = (fn, tuple((a.shape, a.dtype) for a in arrays))
        concrete = self._concrete.get(key)
        if concrete is None:
            if not hasattr(fn, "get_concrete_function"):
                return fn
            concrete = self._concrete[key] = fn.get_concrete_function(
                *[tf.TensorSpec(a.shape, a.dtype) for a in arrays])
        return concrete

    def host_counts(self) -> np.ndarray:
        """The evaluations and products made on NumPy arrays so far as ``[nfev, njev, nhev]``,
        tallied on the host by the counting the class docstring states (only differences
        between two reads mean anything). The objective's own counters are the truth: the
        eager tier checks the tally against them once a block
        (:meth:`flatvec._run.loop.CompiledLoop.advance_eagerly`), since reading them costs
        three TensorFlow ops (0.14 ms an iteration on the PINN, a tenth of it)."""
        return self._host_counts.copy()

    @property
    def nonfinite(self) -> tf.Variable:
        """int64 ``[2]``: non-finite evaluations and non-finite products so far, as the
        variable the compiled code counts on (made on first use)."""
        return self._nonfinite.variable

    def fault_totals(self) -> np.ndarray:
        """:attr:`nonfinite`'s value, read on the host (without making the variable)."""
        return self._nonfinite.numpy()

    def reset_faults(self) -> None:
        """Set :attr:`nonfinite` to zero (the driver does at each run's start)."""
        self._nonfinite.assign([0, 0])

    def fault_counts(self) -> Any:
        """The non-finite evaluations and products counted so far, ``[2]``: as a tensor read
        of :attr:`nonfinite`, or inside :func:`~flatvec.scalar_ops.on_host` as the host's own
        count (only differences between two reads mean anything)."""
        if scalar_ops.for_context() is scalar_ops.NUMPY:
            return self._host_faults.copy()
        return self.nonfinite.read_value()

    def value(self, x: tf.Tensor) -> tf.Tensor:
        """``f(x)`` without the gradient pass (one ``nfev``)."""
        return self._call(0, _EVALUATION, self._objective.value, x)

    def value_and_gradient(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(f(x), ∇f(x))`` (one ``nfev`` and one ``njev``)."""
        return self._call(0, _WITH_GRADIENT,
                          getattr(self._objective, "call_function", self._objective), x)

    __call__ = value_and_gradient

    def hvp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        """``∇²f(x) v`` (one ``nhev``); only for algorithms that declare ``needs_hvp``."""
        return self._call(1, _PRODUCT, self._check("hvp", "needs_hvp", "hvp"), x, v)

    def ggn_vp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        """Gauss-Newton product ``G v`` (one ``nhev``); algorithms that declare ``needs_ggn``."""
        return self._call(1, _PRODUCT, self._check("ggn", "needs_ggn", "ggn_vp"), x, v)

    @property
    def has_ggn_matrix(self) -> bool:
        """Whether :meth:`ggn_matrix` exists (model and residual objectives)."""
        return bool(getattr(self._objective, "has_gauss_newton", False))

    def ggn_rows(self, x: tf.Tensor) -> int | None:
        """Rows of the Jacobian behind one :meth:`ggn_matrix` (None: not known statically)."""
        rows = getattr(self._objective, "ggn_rows", None)
        return None if rows is None else rows(x)

    def ggn_matrix(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """``(f, g, G)`` with the dense ``[n, n]`` Gauss-Newton matrix ``G`` (one ``njev``);
        algorithms that declare ``needs_ggn``. Counted as an evaluation (a method backs off
        from a non-finite one as from a non-finite value)."""
        return self._call(0, _JACOBIAN, self._check("ggn", "needs_ggn", "ggn_matrix"), x)

    def residuals(self, x: tf.Tensor) -> tf.Tensor:
        """``r(x)`` (one ``nfev``); algorithms that declare ``needs_residuals``."""
        return self._call(0, _EVALUATION,
                          self._check("residuals", "needs_residuals", "residuals"), x)

    def jacobian(self, x: tf.Tensor) -> tf.Tensor:
        """Dense ``J(x)``, ``[m, n]`` (one ``njev``); algorithms that declare
        ``needs_residuals``."""
        return self._call(0, _JACOBIAN,
                          self._check("residuals", "needs_residuals", "jacobian"), x)

    def jvp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        """``J v`` (one ``nhev``); algorithms that declare ``needs_residuals``."""
        return self._call(1, _PRODUCT, self._check("residuals", "needs_residuals", "jvp"), x, v)

    def vjp(self, x: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        """``Jᵀ u`` (one ``nhev``); algorithms that declare ``needs_residuals``."""
        return self._call(1, _PRODUCT, self._check("residuals", "needs_residuals", "vjp"), x, u)


# The objective's traceable methods (``Objective.compiled`` compiles each once).
_TRACEABLE = frozenset({"__call__", "value", "hvp", "ggn_vp", "ggn_matrix", "residuals",
                        "jacobian", "jvp", "vjp"})


class CompiledCalls:
    """An objective whose traceable methods run as its compiled functions (other attributes
    are the objective's): what the driver's :class:`Oracle` wraps.

    Eagerly (the start) these are ordinary compiled calls. Inside the traced iteration they
    become calls of the same functions instead of copies of the objective's graph: the
    objective is traced once (graph sharing traces it anyway) and a start evaluates exactly
    what the iteration does."""

    def __init__(self, objective: Any) -> None:
        self._objective = objective

    def __call__(self, x: tf.Tensor) -> Any:
        return self._objective.compiled("__call__")(x)

    @property
    def call_function(self) -> Any:
        """The ``tf.function`` that :meth:`__call__` calls."""
        return self._objective.compiled("__call__")

    def __getattr__(self, name: str) -> Any:
        if name in _TRACEABLE and hasattr(self._objective, name):
            return self._objective.compiled(name)
        return getattr(self._objective, name)
