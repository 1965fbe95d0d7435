"""The algorithm protocol (v2) and the registry that maps names to methods.

An algorithm works on whole vectors. It is a frozen configuration object with two methods:

``init(x, oracle) -> State``
    the state at the start point; ``State`` is a NamedTuple of fixed-shape tensors whose first
    three fields are ``x``, ``f``, ``g`` (the current accepted point, value and gradient).
``step(state, oracle) -> State``
    one iteration. ``oracle`` (:class:`~flatvec.oracle.Oracle`) is the problem, counted:
    ``oracle.value(x)``, ``oracle.value_and_gradient(x)`` (also ``oracle(x)``) and
    ``oracle.hvp(x, v)`` for methods that declare ``needs_hvp``. ``step`` is traced into one
    compiled function: no Python branching on tensor values, no Python-side state.

Optional state fields the driver understands:

``step_size`` (scalar)
    reported to callbacks and the history.
``failed`` (bool scalar)
    no acceptable step was found; ``x, f, g`` must be unchanged; the run stops.
``accepted`` (bool scalar, default True)
    False: the iteration's proposal was rejected (a trust-region step). It is still an
    iteration, but ``x, f, g`` must be unchanged, the best point is not touched and the
    relative-decrease (``ftol``) test is skipped.
``stop_reason`` (int32 scalar, default 0)
    ``k > 0`` stops the run for the algorithm's ``stop_reasons[k - 1]``
    (a :class:`~flatvec.status.StopReason`: message and whether it is a success).

An optional declaration the driver understands: ``writes_rows = True``, for an algorithm whose
``step`` writes history rows with :func:`flatvec.buffers.write_rows` on every step (L-BFGS):
the compiled loop, which knows whether anything else may hold the buffers, then writes the
rows in place. A line-search method takes it from its direction's ``writes_rows``.
And ``runs_on_host = True``, for an algorithm whose ``step`` also runs on NumPy arrays: written
with :mod:`flatvec.scalar_ops` (``for_context()``) for its scalar logic,
:mod:`flatvec.vector_ops` for its passes over n, and arithmetic operators, which both kinds
have. The eager tier (:mod:`flatvec._run.tiers`) then runs its iterations on NumPy arrays,
TensorFlow only inside the objective's compiled functions: its state is NumPy there,
results agree with the compiled loop to rounding. L-BFGS, BFGS and CG (with its built-in
rules) declare it, and so do both Wolfe searches; a line-search method takes it where its
direction and its search both declare it.

An optional method: ``result_note(state) -> str``, a sentence the driver appends to the
result's message (run on the host with the final state; ``lm`` says which solver ran).

The version-1 ``init(x, f, g)`` is still accepted: the driver evaluates ``x`` first.

Line-search methods are written as a direction over one shared driver
(:class:`flatvec.algorithms.line_search_method.LineSearchMethod`), trust-region methods as a
subproblem solver inside :class:`flatvec.algorithms.trust_region.TrustRegionMethod`.

First-order rules ``x <- update(x, g, slots)`` subclass :class:`UpdateRule`; they are the methods
that can also run inside ``model.fit`` through ``flatvec.keras.VectorOptimizer``.
"""

from __future__ import annotations

import inspect
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from flatvec._autograph import with_autograph
from flatvec._rule_checks import call_update, check_slots, check_update
from flatvec.oracle import Oracle
from flatvec.status import StopReason

__all__ = [
    "LBFGSB_FTOL",
    "Algorithm",
    "Oracle",
    "RuleState",
    "UpdateRule",
    "available_algorithms",
    "get_algorithm",
    "lookup_algorithm",
    "register_algorithm",
    "start_state",
    "takes_value",
]

ENTRY_POINT_GROUP = "flatvec.algorithms"
# L-BFGS-B's default relative-decrease tolerance (factr 1e7 times float64's eps).
LBFGSB_FTOL = 2.220446049250313e-09


class Algorithm:
    """Base class of whole-vector optimization methods (see the module docstring).

    Class attributes declare capabilities: ``needs_hvp`` (``step`` calls ``oracle.hvp``),
    ``uses_line_search`` (``step`` re-evaluates the objective at trial points, so it cannot run
    as a per-batch update inside ``model.fit``), ``default_ftol`` (the ``ftol`` that
    ``minimize`` uses when given none; 0, off, unless declared) and ``stop_reasons`` (the
    algorithm's own :class:`~flatvec.status.StopReason` s, selected by a ``stop_reason`` state
    field), ``runs_on_host`` (``step`` also runs on NumPy arrays: see the module docstring).
    """

    needs_hvp: ClassVar[bool] = False
    needs_ggn: ClassVar[bool] = False  # oracle.ggn_vp (Gauss-Newton products)
    needs_residuals: ClassVar[bool] = False  # oracle.residuals / jacobian / jvp / vjp
    uses_line_search: ClassVar[bool] = True
    stop_reasons: ClassVar[tuple[StopReason, ...]] = ()
    # The relative-decrease test's tolerance when minimize() is given no ftol: off unless a
    # method declares one (a plugin does not inherit L-BFGS-B's silently).
    default_ftol: ClassVar[float] = 0.0
    runs_on_host: ClassVar[bool] = False

    def init(self, x: tf.Tensor, oracle: Oracle) -> NamedTuple:
        raise NotImplementedError

    def step(self, state: Any, oracle: Oracle) -> NamedTuple:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (as stored on ``self``), for repr and reports."""
        params = inspect.signature(type(self).__init__).parameters
        return {k: getattr(self, k) for k in params if k != "self" and hasattr(self, k)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class RuleState(NamedTuple):
    """State of an :class:`UpdateRule` run as an algorithm."""

    x: tf.Tensor
    f: tf.Tensor
    g: tf.Tensor
    step_size: tf.Tensor
    slots: Any


class UpdateRule(Algorithm):
    """A first-order rule ``(x, slots) <- update(x, g, slots, learning_rate=...)``.

    Subclasses implement :meth:`init_slots` and :meth:`update`; ``init``/``step`` follow. The
    slots (momentum buffers, previous iterates, ...) are a NamedTuple of fixed-shape tensors;
    ``flatvec.keras.VectorOptimizer`` stores each as a Keras optimizer variable.
    """

    uses_line_search: ClassVar[bool] = False

    def __init__(self, *, learning_rate: float = 0.01) -> None:
        if not learning_rate > 0:
            raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)

    def init_slots(self, x: tf.Tensor) -> NamedTuple:
        """Initial slots for a start point ``x`` (shapes and dtypes must not depend on values)."""
        raise NotImplementedError

    def update(
        self, x: tf.Tensor, g: tf.Tensor, slots: Any, *, learning_rate: tf.Tensor
    ) -> tuple[tf.Tensor, Any]:
        """The new point and slots.

        A rule whose ``update`` also takes a keyword ``f`` gets the loss value at ``x`` (a
        function-value restart, a non-monotone safeguard) from ``flatvec.minimize``;
        ``flatvec.keras.VectorOptimizer`` refuses such a rule, since Keras does not hand the
        loss to an optimizer."""
        raise NotImplementedError

    @property
    def takes_value(self) -> bool:
        """Whether :meth:`update` takes the loss value ``f``."""
        return takes_value(self.update)

    def init(self, x: tf.Tensor, oracle: Oracle) -> RuleState:
        f, g = oracle(x)
        slots = self.init_slots(x)
        check_slots(self, slots)
        return RuleState(x, f, g, tf.zeros([], x.dtype), slots)

    def step(self, state: RuleState, oracle: Oracle) -> RuleState:
        lr = tf.constant(self.learning_rate, state.x.dtype)
        value = {"f": state.f} if self.takes_value else {}
        # User code, converted by AutoGraph (a Python `if` on a tensor works, as documented).
        x, slots = call_update(self, with_autograph(self.update), state.x, state.g,
                               state.slots, learning_rate=lr, **value)
        check_update(self, state.x, x, state.slots, slots)
        f, g = oracle(x)
        return RuleState(x, f, g, lr, slots)


def takes_value(update: Any) -> bool:
    """Whether an ``update`` callable has a parameter named ``f``."""
    try:
        params = inspect.signature(update).parameters
    except (TypeError, ValueError):
        return False
    return "f" in params


def takes_oracle(init: Any) -> bool:
    """Whether ``init`` is the v2 ``init(x, oracle)`` (else the v1 ``init(x, f, g)``)."""
    try:
        params = [p for p in inspect.signature(init).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return True
    return len(params) < 3


def start_state(init: Any, x: tf.Tensor, oracle: Oracle, v2: bool) -> NamedTuple:
    """``init(x, oracle)``, or for a v1 ``init`` (``v2`` False) ``init(x, *oracle(x))``."""
    return init(x, oracle) if v2 else init(x, *oracle(x))


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Algorithm]] = {}
_ENTRY_POINTS_LOADED = False


def register_algorithm(name: str, cls: type[Algorithm], *,
                       override: bool = False) -> type[Algorithm]:
    """Register ``cls`` under ``name`` (what ``algo=name`` resolves to). Returns ``cls``.

    A name already registered (a built-in such as ``"lbfgs"``, a plugin's, an earlier call's)
    is replaced only with ``override=True``; registering the same class again is a no-op."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty str, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise TypeError(f"cls: expected an Algorithm subclass, got {cls!r}")
    _load_entry_points()
    key = name.lower()
    existing = _REGISTRY.get(key)
    if existing is not None and not override:
        same = existing is cls or (not isinstance(existing, type)
                                   and existing.value == f"{cls.__module__}:{cls.__qualname__}")
        if not same:
            owner = existing.__qualname__ if isinstance(existing, type) else existing.value
            raise ValueError(f"name: {name!r} is already registered (to {owner}); pass "
                             "override=True to replace it, or choose another name")
    _REGISTRY[key] = cls
    return cls


def _load_entry_points() -> None:
    # Built-ins and third-party plugins arrive the same way: the `flatvec.algorithms` group.
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTRY.setdefault(ep.name.lower(), ep)  # loaded on first use
    # Marked only once complete: an interrupt during the scan must not leave it half done.
    _ENTRY_POINTS_LOADED = True


def available_algorithms() -> list[str]:
    """Names that ``algo=`` accepts (besides ``"scipy:<method>"``)."""
    _load_entry_points()
    return sorted(_REGISTRY)


def _load_own_entry_points() -> None:
    """flatvec's own entries of the group (its built-ins), from its own metadata: 0.1 ms,
    where the scan of every installed distribution costs 10-25 ms of a first call. Built-in
    names then resolve to the built-ins whatever else is installed."""
    try:
        own = distribution("flatvec").entry_points
    except PackageNotFoundError:  # run from a source tree: the full scan finds them
        return
    for ep in own:
        if ep.group == ENTRY_POINT_GROUP:
            _REGISTRY.setdefault(ep.name.lower(), ep)


def lookup_algorithm(name: str) -> type[Algorithm]:
    """The class registered under ``name`` (ValueError listing the known names if none)."""
    key = name.lower()
    if key not in _REGISTRY:
        _load_own_entry_points()
    if key not in _REGISTRY:
        _load_entry_points()
    if key not in _REGISTRY:
        raise ValueError(
            f"algo: unknown algorithm {name!r}; known: {', '.join(available_algorithms())} "
            "or 'scipy:<method>'. A method registered at run time (register_algorithm) must "
            "be registered again in each new process, before it is used or a model that "
            "names it is loaded; a plugin's package must be installed"
        )
    entry = _REGISTRY[key]
    if not isinstance(entry, type):
        entry = _REGISTRY[key] = entry.load()
    return entry


def get_algorithm(algo: str | Algorithm, **options: Any) -> Algorithm:
    """Resolve ``algo`` (a registered name or an instance) to an :class:`Algorithm`.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones).
    TypeError
        ``algo`` of the wrong type, options given with an instance, or options the algorithm
        does not take.
    """
    if isinstance(algo, Algorithm):
        if options:
            raise TypeError(
                f"options {sorted(options)} were given with an Algorithm instance; "
                "set them on the instance instead"
            )
        return algo
    if not isinstance(algo, str):
        raise TypeError(
            f"algo: expected an algorithm name or an Algorithm instance, got {type(algo).__name__}"
        )
    cls = lookup_algorithm(algo)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(k for k in options if k not in accepted)
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        known = sorted(k for k in accepted if k != "self")
        raise TypeError(f"algo {algo!r}: unknown option(s) {unknown}; it takes {known}")
    return cls(**options)
