"""Resolve the ``rule`` argument of ``VectorOptimizer`` and serialize it for ``model.save``.

A rule is given either by a registered name (``"gd"``) plus options, or as an
:class:`flatvec.protocol.UpdateRule` instance. Only first-order rules can run inside
``model.fit``: methods that re-evaluate the loss (line searches) are refused here, by
capability (``uses_line_search``), never by name, so a plugin method is judged the same way.

Serialized form (what ``VectorOptimizer.get_config`` stores under ``"rule"``):

- a registered flatvec name (a string), with the options under ``"rule_options"``;
- otherwise ``{"class_name": <Keras-registered name>, "config": rule.get_config()}``, resolved
  at load time through Keras' object registry: decorate the rule class with
  ``@keras.saving.register_keras_serializable()`` or pass it in ``custom_objects`` to
  ``keras.models.load_model``.
"""

from __future__ import annotations

from typing import Any

import keras

from flatvec.protocol import (
    Algorithm,
    UpdateRule,
    available_algorithms,
    get_algorithm,
    lookup_algorithm,
    takes_value,
)

__all__ = ["resolve_rule", "rule_from_config", "rule_to_config"]

_MINIMIZE_HINT = (
    "it re-evaluates the loss at trial points (a line search), which a per-batch Keras "
    "optimizer cannot do; train with flatvec.minimize(model, dataset, algo=...) instead, "
    "or pick a first-order rule such as 'gd'"
)


def _refuse_unless_rule(cls_or_rule: Any, given: Any) -> None:
    # Capabilities may be declared on the class or, for configurations such as
    # gd(line_search="armijo"), on the instance; both are checked.
    cls = cls_or_rule if isinstance(cls_or_rule, type) else type(cls_or_rule)
    if not issubclass(cls, UpdateRule) or getattr(cls_or_rule, "uses_line_search", True):
        raise ValueError(f"rule: {given!r} cannot run inside model.fit: {_MINIMIZE_HINT}")
    if takes_value(cls_or_rule.update):
        raise ValueError(
            f"rule: {given!r}'s update takes the loss value f, which Keras does not hand to an "
            "optimizer inside model.fit; run it with flatvec.minimize(model, dataset, algo=...)"
            ", or drop f from its update")


def resolve_rule(rule: Any, options: dict[str, Any]) -> tuple[UpdateRule, str | None]:
    """The rule instance and its registered name (``None`` for an unregistered instance).

    Raises
    ------
    TypeError
        ``rule`` is neither a name nor an Algorithm, or options do not fit it.
    ValueError
        Unknown name, or a method that needs loss re-evaluations (see :func:`flatvec.minimize`).
    """
    if isinstance(rule, str):
        # Judge the class before building it, so lbfgs(momentum=...) is refused for the
        # right reason rather than for an unknown option.
        try:
            cls = lookup_algorithm(rule)
        except ValueError as err:  # the registry's message names minimize's argument, algo
            raise ValueError(str(err).replace("algo:", "rule:", 1)) from None
        _refuse_unless_rule(cls, rule)
        try:
            instance = get_algorithm(rule, **options)
        except TypeError as err:  # unknown options: named after the rule, not minimize's algo
            raise TypeError(str(err).replace("algo ", "rule ", 1)) from None
        _refuse_unless_rule(instance, instance)
        return instance, rule.lower()
    if isinstance(rule, Algorithm):
        _refuse_unless_rule(rule, rule)
        get_algorithm(rule, **options)  # raises if options were given with an instance
        return rule, registered_name_of(type(rule))
    raise TypeError(
        "rule: expected a registered rule name (e.g. 'gd') or an UpdateRule instance, "
        f"got {type(rule).__name__}"
    )


def registered_name_of(cls: type) -> str | None:
    """The flatvec registry name whose class is exactly ``cls``, if any."""
    for name in available_algorithms():
        try:
            if lookup_algorithm(name) is cls:
                return name
        except (ImportError, AttributeError):  # a plugin that fails to load is not `cls`
            continue
    return None


def _rule_options(rule: UpdateRule) -> dict[str, Any]:
    # The Keras optimizer owns the learning rate; the rule's own value is never used in fit.
    return {k: v for k, v in rule.get_config().items() if k != "learning_rate"}


def rule_to_config(rule: UpdateRule, name: str | None) -> dict[str, Any]:
    """``{"rule": ..., "rule_options": ...}`` for ``VectorOptimizer.get_config``."""
    if name is not None:
        return {"rule": name, "rule_options": _rule_options(rule)}
    registered = keras.saving.get_registered_name(type(rule))
    return {"rule": {"class_name": registered, "config": rule.get_config()}, "rule_options": {}}


def rule_from_config(rule: Any) -> Any:
    """Inverse of :func:`rule_to_config` for the ``"rule"`` entry (a name or a rule instance)."""
    if isinstance(rule, str):
        return rule
    if not (isinstance(rule, dict) and "class_name" in rule):
        raise TypeError(f"rule: expected a name or a serialized rule dict, got {rule!r}")
    cls = keras.saving.get_registered_object(rule["class_name"])
    if cls is None:
        raise TypeError(
            f"rule: cannot find the rule class {rule['class_name']!r}. Register it with "
            "@keras.saving.register_keras_serializable() or pass "
            f"custom_objects={{{rule['class_name']!r}: YourRule}} to keras.models.load_model"
        )
    config = dict(rule.get("config", {}))
    from_config = getattr(cls, "from_config", None)
    return from_config(config) if callable(from_config) else cls(**config)
