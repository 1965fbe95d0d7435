"""Sharing compiled iterations between objectives that trace to the same graph.

A fresh Keras model of an architecture already optimized in this process (a restart, a seed
sweep, a benchmark's repeats) gives a new :class:`~flatvec.objective.Objective` and with it a
new :class:`~flatvec._run.loop.CompiledLoop`, whose iteration graph would be traced again: 0.35 s
of a 1.0 s first call on the digits MLP, about ten times what tracing the objective alone
costs. The iteration graph depends on the objective only through the graph that the objective
traces to and the tensors that graph captures (variables, in-memory data). So a loop whose
objective traces to the same graph can run an earlier loop's compiled functions with its own
captured tensors in place of the earlier loop's: nothing is traced again.

Soundness rests on two checks:

- the objective's graph is compared whole: every node's op, device, attributes (constants
  included) and inputs, with node names replaced by positions (Keras names layers ``dense_3``
  in one model and ``dense_9`` in the next); graphs holding nested functions (whose names are
  generated) are never shared;
- every tensor the shared functions capture must be known: one the objective captured
  (mapped by position in the objective's graph), one of the objective's evaluation counters,
  or one of the loop's own variables. A function capturing anything else (a user algorithm's
  own variable, say) is never shared.

Only objectives without a ``tf.distribute`` strategy, holding at most
:data:`MAX_DATA_BYTES` of data in memory take part, with any algorithm (curvature products
and the dense Gauss-Newton matrix are traced from the same model and loss as the objective's
graph, and capture only what it captures or the check above refuses them). At most
:data:`MAX_TEMPLATES` entries are kept, least recently used dropped first; each
keeps the in-memory data and the model variables of the run that traced it alive (the
iteration calls that run's compiled objective functions, whose graphs hold them; the calls
themselves take every loop's own as inputs). The functions are run through
``ConcreteFunction._call_flat``, the one place TensorFlow lets the captured inputs of a call be
chosen; should a TensorFlow version lack it, loops trace as before. :func:`enabled` is the
switch: off with ``FLATVEC_GRAPH_REUSE=0`` or with every private contact
(:func:`flatvec._tf.enabled`).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import tensorflow as tf

from flatvec import _tf

__all__ = [
    "MAX_DATA_BYTES", "MAX_TEMPLATES", "LoopTemplate", "ObjectiveGraph", "clear", "enabled",
    "find", "keep", "trace_objective",
]

MAX_TEMPLATES = 4
MAX_DATA_BYTES = 32 * 2**20
# Attributes that carry node names only: colocation groups and the names of captured tensors.
_NAME_ATTRIBUTES = frozenset({"_class", "_user_specified_name"})

_templates: OrderedDict[Hashable, LoopTemplate] = OrderedDict()


class ObjectiveGraph(NamedTuple):
    """An objective's traced graph: a fingerprint and the tensors it captures, in the order of
    the graph's capture placeholders."""

    fingerprint: str
    captures: tuple[tf.Tensor, ...]


def enabled() -> bool:
    """Whether loops may share compiled functions: ``FLATVEC_GRAPH_REUSE`` is not ``0`` and
    the private contacts are on (:func:`flatvec._tf.enabled`)."""
    return os.environ.get("FLATVEC_GRAPH_REUSE", "1") != "0" and _tf.enabled()


def trace_objective(objective: Any, x: tf.Tensor) -> ObjectiveGraph | None:
    """Trace ``objective(x)`` once (reusing the objective's compiled ``value_and_gradient``)
    and fingerprint it; None when the graph cannot be compared (nested functions)."""
    spec = tf.TensorSpec(x.shape, x.dtype)
    concrete = objective.compiled("__call__").get_concrete_function(spec)
    graph = concrete.graph
    fingerprint = _fingerprint(graph)
    if fingerprint is None:
        return None
    return ObjectiveGraph(fingerprint, tuple(graph.external_captures))


def _fingerprint(graph: Any) -> str | None:
    graph_def = graph.as_graph_def()
    if graph_def.library.function:
        return None
    position = {node.name: i for i, node in enumerate(graph_def.node)}
    digest = hashlib.sha256()
    for node in graph_def.node:
        data = [name for name in node.input if not name.startswith("^")]
        # Control inputs are kept sorted by name, so their order changes with the names.
        control = sorted(position[name[1:]] for name in node.input if name.startswith("^"))
        refs = []
        for name in data:
            op_name, _, port = name.partition(":")
            refs.append(f"{position[op_name]}:{port or 0}")
        digest.update(f"{node.op}|{node.device}|{refs}|{control}|".encode())
        for key in sorted(node.attr):
            if key not in _NAME_ATTRIBUTES:
                digest.update(key.encode())
                digest.update(node.attr[key].SerializeToString(deterministic=True))
        digest.update(b"\n")
    for kind, tensors in (("in", graph.inputs), ("out", graph.outputs),
                          ("cap", graph.internal_captures)):
        refs = [f"{position[t.op.name]}:{t.value_index}" for t in tensors]
        digest.update(f"{kind}{refs}".encode())
    return digest.hexdigest()


class _Source(NamedTuple):
    """Where one captured input of a shared function comes from."""

    from_objective: bool  # else from the loop's own handles
    index: int


def _recipe(
    concrete: Any, objective_captures: Sequence[tf.Tensor], own_handles: Sequence[tf.Tensor]
) -> tuple[_Source, ...] | None:
    sources = {id(t): _Source(True, i) for i, t in enumerate(objective_captures)}
    sources.update({id(t): _Source(False, i) for i, t in enumerate(own_handles)})
    recipe = []
    for tensor in concrete.captured_inputs:
        source = sources.get(id(tensor))
        if source is None:
            return None
        recipe.append(source)
    return tuple(recipe)


def _bind(
    recipe: tuple[_Source, ...],
    objective_captures: Sequence[tf.Tensor],
    own_handles: Sequence[tf.Tensor],
) -> list[tf.Tensor]:
    return [objective_captures[s.index] if s.from_objective else own_handles[s.index]
            for s in recipe]


class LoopTemplate:
    """A loop's compiled ``advance`` function, and ``start`` where the loop traces one (else
    it runs eagerly), runnable with another loop's captured tensors (see the module
    docstring)."""

    def __init__(self, start: Any, advance: Any, start_recipe: tuple[_Source, ...] | None,
                 advance_recipe: tuple[_Source, ...], algorithm: Any) -> None:
        self._start, self._advance = start, advance
        self._start_recipe, self._advance_recipe = start_recipe, advance_recipe
        self._algorithm = algorithm  # an instance keyed by id must outlive its key

    @classmethod
    def build(
        cls, start: Any, advance: Any, objective_captures: Sequence[tf.Tensor],
        own_handles: Sequence[tf.Tensor], algorithm: Any,
    ) -> LoopTemplate | None:
        """The template of a loop's traced functions (``start`` None: the loop's start is
        eager); None if one captures an unknown tensor or TensorFlow has no way to pass
        captured inputs."""
        functions = [f for f in (start, advance) if f is not None]
        if not all(hasattr(f, "_call_flat") for f in functions):
            return None
        recipes = [_recipe(f, objective_captures, own_handles) for f in functions]
        if any(recipe is None for recipe in recipes):
            return None
        return cls(start, advance, recipes[0] if start is not None else None, recipes[-1],
                   algorithm)

    @property
    def has_start(self) -> bool:
        """Whether the template holds a traced ``start``."""
        return self._start is not None

    def start(self, x0: tf.Tensor, objective_captures: Sequence[tf.Tensor],
              own_handles: Sequence[tf.Tensor]) -> Any:
        """Run the shared ``start`` on ``x0`` with these captures; its structured result."""
        captures = _bind(self._start_recipe, objective_captures, own_handles)
        return self._start._call_flat([x0], captures)

    def advance_with(self, objective_captures: Sequence[tf.Tensor],
                     own_handles: Sequence[tf.Tensor]) -> Any:
        """A zero-argument callable running the shared ``advance`` with these captures."""
        captures = _bind(self._advance_recipe, objective_captures, own_handles)
        advance = self._advance
        return lambda: advance._call_flat([], captures)


def find(key: Hashable) -> LoopTemplate | None:
    """The template kept under ``key``, if any."""
    template = _templates.get(key)
    if template is not None:
        _templates.move_to_end(key)
    return template


def keep(key: Hashable, template: LoopTemplate) -> None:
    """Keep ``template`` under ``key`` (dropping the least recently used past the limit)."""
    _templates[key] = template
    _templates.move_to_end(key)
    while len(_templates) > MAX_TEMPLATES:
        _templates.popitem(last=False)


def clear() -> None:
    """Forget every kept template."""
    _templates.clear()
