"""Objectives: a problem turned into graph-mode oracles of one 1-D tensor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import tensorflow as tf

from flatvec._autograph import with_autograph
from flatvec._objective import hessian_mode
from flatvec._objective.data import (
    FullBatchData,
    held_bytes,
)
from flatvec._objective.model_terms import model_problem
from flatvec._objective.objective_checks import check_arity, check_function_options, check_scalar
from flatvec._objective.sweep import (
    Terms,
    Want,
    closure_terms,
    sweep_data,
)
from flatvec.space import FlatParamSpace, check_flat_vector

__all__ = ["GaussNewtonSystem", "Objective", "ValueAndGradient"]


class ValueAndGradient(NamedTuple):
    """``f(x)`` and ``∇f(x)``."""

    value: tf.Tensor
    gradient: tf.Tensor


class GaussNewtonSystem(NamedTuple):
    """``f(x)``, ``∇f(x)`` and the dense ``[n, n]`` Gauss-Newton matrix ``G(x)``."""

    value: tf.Tensor
    gradient: tf.Tensor
    matrix: tf.Tensor


# The subclasses the constructors build, by form: each registers itself where it is defined
# (``class ResidualObjective(Objective, form="residuals")``), so that this module, which they
# import, imports none of them (flatvec/__init__.py imports them all).
_FORMS: dict[str, type] = {}


class Objective:
    """A differentiable scalar objective of one flat 1-D vector, with graph-mode oracles.

    Build one with :meth:`from_function`, :meth:`from_model` or :meth:`from_closure`. Then

    - ``objective(x) -> (f, g)`` and ``objective.hvp(x, v)`` are traceable oracles meant to be
      called inside a ``tf.function`` (they are what algorithms receive);
    - :meth:`value_and_gradient` and :meth:`hessian_vector_product` are the same, compiled;
    - ``nfev``, ``njev``, ``nhev`` count evaluations in ``tf.Variable`` s, so counts stay right
      inside compiled loops.

    Hessian-vector products are forward-over-reverse (``tf.autodiff.ForwardAccumulator`` around
    a ``tf.GradientTape``): one extra forward pass, no second backward pass.
    """

    def __init_subclass__(cls, form: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if form is not None:
            _FORMS[form] = cls

    def __init__(
        self,
        *,
        space: FlatParamSpace | None,
        dtype: tf.DType,
        size: int | None,
        terms: Callable[..., Terms] | None = None,
        data: FullBatchData | None = None,
        fun: Callable[[tf.Tensor], tf.Tensor] | None = None,
        strategy: tf.distribute.Strategy | None = None,
        jit_compile: bool = False,
        ggn_rows: int | None = None,
    ) -> None:
        self._space = space
        self._dtype = tf.as_dtype(dtype)
        self._size = size
        self._terms = terms
        self._data = data
        self._fun = fun
        self._strategy = strategy
        self._jit_compile = bool(jit_compile)
        self._ggn_rows = ggn_rows
        self._reverse_hvp: bool | None = None  # a function objective's product mode, once known
        with tf.init_scope():
            self.nfev = tf.Variable(0, dtype=tf.int64, trainable=False, name="nfev")
            self.njev = tf.Variable(0, dtype=tf.int64, trainable=False, name="njev")
            self.nhev = tf.Variable(0, dtype=tf.int64, trainable=False, name="nhev")
        self._compiled: dict[str, Any] = {}
        self._xla_functions: set[str] = set()
        # The driver's compiled loops on this objective, by algorithm, options and XLA
        # (flatvec.driver): later calls with any tolerances and limits trace nothing.
        self.loops: dict[Any, Any] = {}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_function(
        cls,
        fun: Callable[[tf.Tensor], tf.Tensor],
        *,
        dtype: Any = tf.float64,
        size: int | None = None,
        jit_compile: bool = False,
    ) -> Objective:
        """Objective of ``fun(x) -> scalar`` for a 1-D tensor ``x`` (gradient by GradientTape).

        Examples
        --------
        >>> import tensorflow as tf, flatvec
        >>> obj = flatvec.Objective.from_function(lambda x: tf.reduce_sum(x**2))
        >>> f, g = obj.value_and_gradient(tf.constant([1.0, 2.0], tf.float64))
        >>> float(f), g.numpy().tolist()
        (5.0, [2.0, 4.0])
        """
        check_function_options(fun, dtype, size)
        return cls(space=None, dtype=dtype, size=size, fun=with_autograph(fun),
                   jit_compile=jit_compile)

    @classmethod
    def from_residuals(
        cls,
        fun: Callable[[tf.Tensor], tf.Tensor],
        *,
        dtype: Any = tf.float64,
        size: int | None = None,
        jit_compile: bool = False,
    ) -> Objective:
        r"""Least-squares objective :math:`f(x) = \tfrac12 \|r(x)\|^2` of ``fun(x) -> r``
        (a residual tensor of any shape, flattened), with Jacobian products that never form
        :math:`J` (:class:`flatvec.residuals.ResidualObjective`).

        Examples
        --------
        >>> import tensorflow as tf, flatvec
        >>> obj = flatvec.Objective.from_residuals(lambda x: tf.stack([x[0] - 1.0, 2.0 * x[1]]))
        >>> x = tf.constant([0.0, 1.0], tf.float64)
        >>> float(obj.value_and_gradient(x)[0]), obj.gauss_newton_product(x, x).numpy().tolist()
        (2.5, [0.0, 4.0])
        """
        check_function_options(fun, dtype, size)
        return _FORMS["residuals"](fun, dtype=dtype, size=size, jit_compile=jit_compile)

    @classmethod
    def from_closure(
        cls,
        loss_fn: Callable[[], tf.Tensor],
        variables: Sequence[tf.Variable],
        *,
        dtype: Any = None,
        allow_unused: bool = False,
        jit_compile: bool = False,
    ) -> Objective:
        """Objective of a zero-argument ``loss_fn`` that reads ``variables``."""
        if not callable(loss_fn):
            raise TypeError(f"loss_fn: expected a zero-argument callable, got {type(loss_fn)}")
        check_arity(loss_fn, "loss_fn", 0)
        space = FlatParamSpace(variables, dtype=dtype)
        user_loss = with_autograph(loss_fn)

        def value() -> tf.Tensor:
            f = user_loss()
            check_scalar(f, "loss_fn")  # also keeps a tuple from passing as (sum, count)
            return f

        return cls(space=space, dtype=space.dtype, size=space.size,
                   terms=closure_terms(space, value, allow_unused), jit_compile=jit_compile)

    @classmethod
    def from_residual_closure(
        cls,
        residual_fn: Callable[[], Any],
        variables: Sequence[tf.Variable],
        *,
        weights: Any = None,
        dtype: Any = None,
        allow_unused: bool = False,
        jit_compile: bool = False,
    ) -> Objective:
        r"""Least-squares objective :math:`\tfrac12 \|r\|^2` of a zero-argument
        ``residual_fn`` that reads ``variables`` and returns a residual tensor or a list of
        residual groups (weighted by ``weights``: a list, or ``"mean"`` for
        :math:`\sum_i \operatorname{mean}(r_i^2)`); see
        :class:`flatvec.residual_closure.ResidualClosureObjective`.

        Examples
        --------
        >>> import tensorflow as tf, flatvec
        >>> w = tf.Variable([0.0, 1.0], dtype=tf.float64)
        >>> obj = flatvec.Objective.from_residual_closure(
        ...     lambda: [w - 1.0, 3.0 * w[1:]], [w], weights=[1.0, 4.0])
        >>> float(obj.value_and_gradient(tf.constant([0.0, 1.0], tf.float64))[0])
        18.5
        """
        return _FORMS["residual_closure"](residual_fn, variables, weights=weights, dtype=dtype,
                                          allow_unused=allow_unused, jit_compile=jit_compile)

    @classmethod
    def from_model(
        cls,
        model: Any,
        dataset: Any,
        loss: Any = None,
        *,
        batch_size: int | None = None,
        training: bool = False,
        in_memory: bool | None = None,
        dtype: Any = None,
        allow_unused: bool = False,
        jit_compile: bool = False,
    ) -> Objective:
        """The exact full-batch objective of a Keras model over a whole dataset.

        ``f(w) = (Σ_i s_i ℓ(y_i, model_w(x_i))) / N + Σ model.losses``: the mean per-sample loss
        over every sample of the dataset (``s_i`` sample weights, 1 if absent; ``N`` the number
        of loss elements, as Keras' ``sum_over_batch_size``) plus the model's regularization
        losses. It is streamed batch by batch inside one compiled function, with sums weighted
        by batch size, so value and gradient do not depend on how the data is batched: they
        equal the whole dataset evaluated as one batch.

        Regularization. ``model.losses`` is read after each batch's forward pass and added with
        weight ``n_b / N`` (the batch's share of the loss elements), so

        - weight regularizers (``kernel_regularizer``, ...) depend only on ``w`` and are
          counted exactly once;
        - activity regularizers are normalized by batch size in Keras 3 (a per-sample mean), so
          the share-weighted sum equals the activity penalty of the whole dataset as one batch;
        - other ``add_loss`` terms are likewise treated as batch means.

        The ``reduction`` of a Keras ``Loss`` object is not used: the objective is always the
        mean above (what ``model.fit`` minimizes with the default ``"sum_over_batch_size"``).

        Parameters
        ----------
        model : keras.Model
            A built model. If it was created under a ``tf.distribute`` strategy's scope, the
            sweep is distributed with that strategy and the sums are all-reduced.
        dataset : tf.data.Dataset or tuple of arrays
            Finite dataset of ``(x, y)`` or ``(x, y, sample_weight)`` batches, or a tuple of
            arrays (batched with ``batch_size``, default: one batch).
        loss : str, keras.losses.Loss or callable, optional
            Default ``model.loss`` of a compiled model. A callable ``loss(y_true, y_pred)``
            should return per-sample losses; a scalar return is taken as the batch mean.
        training : bool
            Passed to the model call (``False``: dropout off, batch norm in inference mode).
        in_memory : bool, optional
            Materialize the dataset once (True), stream it every evaluation (False), or decide
            by size (None, default: up to 1 GiB is materialized).
        """
        problem = model_problem(model, dataset, loss, batch_size=batch_size, training=training,
                                in_memory=in_memory, dtype=dtype, allow_unused=allow_unused)
        return cls(space=problem.space, dtype=problem.space.dtype, size=problem.space.size,
                   terms=problem.terms, data=problem.data, strategy=problem.strategy,
                   jit_compile=jit_compile, ggn_rows=problem.ggn_rows)

    # ------------------------------------------------------------------ properties
    @property
    def space(self) -> FlatParamSpace | None:
        """The flat parameter space (None for a plain function objective)."""
        return self._space

    @property
    def dtype(self) -> tf.DType:
        """Float dtype of ``x``, ``f`` and ``g``."""
        return self._dtype

    @property
    def size(self) -> int | None:
        """Length of ``x`` (None for a function objective built without ``size``)."""
        return self._size

    @property
    def strategy(self) -> tf.distribute.Strategy | None:
        """The ``tf.distribute`` strategy the sweep runs under, if any."""
        return self._strategy

    @property
    def data_bytes(self) -> int:
        """Bytes of data held in memory for the sweep (0 when streaming or without data)."""
        return 0 if self._data is None else held_bytes(self._data)

    @property
    def streams_data(self) -> bool:
        """True when every evaluation iterates a ``tf.data.Dataset`` (not XLA-compilable)."""
        return self._data is not None and self._data.dataset is not None

    @property
    def has_gauss_newton(self) -> bool:
        """Whether :meth:`ggn_vp` and :meth:`ggn_matrix` exist (model and residual
        objectives)."""
        return self._data is not None

    def ggn_rows(self, x: tf.Tensor) -> int | None:
        """Rows of the Jacobian one dense Gauss-Newton evaluation forms at once (a model's
        largest batch times its outputs per sample), or None where that is not known before
        running (streamed data, a strategy) or the objective has no Gauss-Newton matrix.

        ``x`` is the traced point (residual objectives read their length off a trace)."""
        del x
        return self._ggn_rows

    def reset_counters(self) -> None:
        """Set ``nfev``, ``njev`` and ``nhev`` to zero."""
        for counter in (self.nfev, self.njev, self.nhev):
            counter.assign(0)

    # ------------------------------------------------------------------ traceable oracles
    # Not converted when called from user code that AutoGraph converts (an algorithm's step):
    # it is plain traceable code, and converting it cost time on every trace.
    @tf.autograph.experimental.do_not_convert
    def value(self, x: tf.Tensor) -> tf.Tensor:
        """Traceable ``f(x)`` alone (no gradient pass); counts one function evaluation."""
        self.nfev.assign_add(1)
        if self._fun is not None:
            f = self._fun(x)
            check_scalar(f)
            return tf.cast(f, self._dtype)
        self._space.assign(x)
        return self._sweep(Want(gradient=False)).loss_sum

    @tf.autograph.experimental.do_not_convert
    def __call__(self, x: tf.Tensor) -> ValueAndGradient:
        """Traceable ``(f, g)`` at ``x``; counts one function and one gradient evaluation."""
        self.nfev.assign_add(1)
        self.njev.assign_add(1)
        if self._fun is not None:
            with tf.GradientTape() as tape:
                tape.watch(x)
                f = self._fun(x)
            check_scalar(f)
            g = tape.gradient(f, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return ValueAndGradient(tf.cast(f, self._dtype), g)
        self._space.assign(x)
        t = self._sweep(Want())
        return ValueAndGradient(t.loss_sum, t.grad)

    @tf.autograph.experimental.do_not_convert
    def hvp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        """Traceable Hessian-vector product ``∇²f(x) v`` (forward-over-reverse)."""
        self.nhev.assign_add(1)
        if self._fun is not None:
            return self._function_hvp(x, v)
        self._space.assign(x)
        return self._sweep(Want(tangents=self._space.unpack(v))).hvp

    def _function_hvp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        """``∇²f(x) v`` of a function objective, in the mode that is right for ``fun``."""

        def value_and_gradient() -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                f = self._fun(x)
            return f, tape.gradient(f, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        if self._reverse_hvp is None:
            self._reverse_hvp = hessian_mode.needs_reverse_over_reverse(
                self._fun, tf.TensorSpec(x.shape, x.dtype))
        if self._reverse_hvp:
            return hessian_mode.reverse_over_reverse(value_and_gradient, [x], v,
                                                     lambda parts: parts[0])[2]
        with tf.autodiff.ForwardAccumulator(x, v) as acc:
            g = value_and_gradient()[1]
        return acc.jvp(g, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    @tf.autograph.experimental.do_not_convert
    def ggn_vp(self, x: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        """Traceable generalized Gauss-Newton product ``G v = Jᵀ H_L J v`` (plus the exact
        Hessian of the regularization), summed over the data like the gradient (one ``nhev``).

        ``J`` is the Jacobian of the model's outputs, ``H_L`` the loss's Hessian in output space
        (PSD for MSE and cross-entropy, where ``G`` is the Fisher); see
        :func:`flatvec._objective.curvature.ggn_terms`. Model objectives here; residual objectives
        (:meth:`from_residuals`) have their own ``JᵀJ v``.
        """
        self._require_gauss_newton("ggn_vp")
        self.nhev.assign_add(1)
        self._space.assign(x)
        return self._sweep(Want(tangents=self._space.unpack(v), ggn=True)).hvp

    @tf.autograph.experimental.do_not_convert
    def ggn_matrix(self, x: tf.Tensor) -> GaussNewtonSystem:
        """Traceable value, gradient and dense generalized Gauss-Newton matrix
        ``G = Jᵀ H_L J`` (plus the regularization's Hessian) at ``x``, summed over the data like
        the gradient (one ``njev``: value and gradient come with the Jacobian).

        For small models (:func:`flatvec._objective.curvature.ggn_matrix_terms`: ``[n, rows]``
        memory per batch); residual objectives have their own ``JᵀJ``.
        """
        self._require_gauss_newton("ggn_matrix")
        self.njev.assign_add(1)
        return self._traced_once("ggn_matrix_body", self._ggn_matrix_body, x,
                                 xla=not self.streams_data)(x)

    def _require_gauss_newton(self, method: str) -> None:
        if not self.has_gauss_newton:
            raise TypeError(
                f"{method}: needs a model objective (Objective.from_model) or residuals "
                "(Objective.from_residuals); this objective has neither")

    def _ggn_matrix_body(self, x: tf.Tensor) -> GaussNewtonSystem:
        self._space.assign(x)
        t = self._sweep(Want(matrix=True))
        return GaussNewtonSystem(t.loss_sum, t.grad, tf.reshape(t.hvp, [self._size, self._size]))

    def _traced_once(self, name: str, fn: Callable[[tf.Tensor], Any], x: tf.Tensor, *,
                     xla: bool) -> Callable[[tf.Tensor], Any]:
        """``fn`` as a function traced once and called from every graph that uses it, and
        with ``xla`` compiled by XLA where XLA can lower it.

        For an expensive trace (the dense Gauss-Newton matrix: ``tf.vectorized_map`` converts
        the model's forward pass, 0.43 s of a 0.6 s trace on the sinc MLP), which a method's
        set-up and its iteration would otherwise each trace; XLA fuses the many small ops that
        vectorized forward mode makes (2.6 ms against 11 ms a matrix there). Whether XLA can
        lower ``fn`` (a user's model or residuals may hold ops it cannot) is checked once, on
        the HLO, before the first use: without XLA where it cannot. Under a strategy (whose
        replica calls must be traced in the caller's graph) ``fn`` itself."""
        if self._strategy is not None:
            return fn
        if name not in self._compiled:
            compiled = tf.function(fn, autograph=False)
            if xla and not self._jit_compile:  # (inside an XLA loop it is compiled anyway)
                candidate = tf.function(fn, autograph=False, jit_compile=True)
                try:
                    candidate.experimental_get_compiler_ir(
                        tf.TensorSpec(x.shape, x.dtype))(stage="hlo")
                    compiled = candidate
                    self._xla_functions.add(name)
                except Exception:  # noqa: BLE001 - any lowering failure: run it without XLA
                    pass
            self._compiled[name] = compiled
        return self._compiled[name]

    def uses_xla(self, name: str) -> bool:
        """Whether the function traced once under ``name`` (``"ggn_matrix_body"``: the dense
        Gauss-Newton matrix) is compiled by XLA (where XLA could lower it)."""
        return name in self._xla_functions

    def _sweep(self, want: Want) -> Terms:
        """Sum batch terms over the whole data and normalize: ``(f, g[, Hv])``."""
        return sweep_data(self._terms, self._data, want, dtype=self._dtype, size=self._size,
                          strategy=self._strategy)

    # ------------------------------------------------------------------ compiled oracles
    def compiled(self, method: str) -> Any:
        """The compiled function (``tf.function``) of a traceable method (``"__call__"``,
        ``"value"``, ``"hvp"``, ``"ggn_vp"``, ``"ggn_matrix"``, a residual objective's
        ``"residuals"``, ...), one per method: what the compiled API below, the driver's
        iteration (``flatvec.oracle.CompiledCalls``) and graph sharing all call, so each traces
        once (``compiled(m).experimental_get_tracing_count()`` counts its traces)."""
        if method not in self._compiled:
            jit = self._jit_compile and not self.streams_data
            self._compiled[method] = tf.function(getattr(self, method), jit_compile=jit or None,
                                                 autograph=False)
        return self._compiled[method]

    def value_and_gradient(self, x: Any) -> ValueAndGradient:
        """Compiled ``(f, g)`` at ``x`` (see ``__call__``)."""
        return self.compiled("__call__")(self.check_vector(x, "x"))

    def hessian_vector_product(self, x: Any, v: Any) -> tf.Tensor:
        """Compiled ``∇²f(x) v`` (see :meth:`hvp`)."""
        return self.compiled("hvp")(
            self.check_vector(x, "x"), self.check_vector(v, "v")
        )

    def gauss_newton_product(self, x: Any, v: Any) -> tf.Tensor:
        """Compiled ``G v`` (see :meth:`ggn_vp`)."""
        return self.compiled("ggn_vp")(
            self.check_vector(x, "x"), self.check_vector(v, "v")
        )

    def gauss_newton_matrix(self, x: Any) -> GaussNewtonSystem:
        """Compiled ``(f, g, G)`` (see :meth:`ggn_matrix`)."""
        return self.compiled("ggn_matrix")(self.check_vector(x, "x"))

    def check_vector(self, x: Any, name: str) -> tf.Tensor:
        """Validate a flat vector argument against this objective's size and dtype."""
        if self._space is not None:
            return self._space.check_vector(x, name)
        return check_flat_vector(x, name, self._dtype, self._size)
