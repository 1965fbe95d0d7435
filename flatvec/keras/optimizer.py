"""``VectorOptimizer``: a Keras 3 optimizer that updates all trainable variables as one vector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from flatvec._autograph import with_autograph
from flatvec._rule_checks import call_update, check_slots, check_update
from flatvec._tf.keras_hook import KerasHookError, WholeVectorUpdate, hook_usable
from flatvec._tf.variables import backing_variable
from flatvec.keras.rules import resolve_rule, rule_from_config, rule_to_config
from flatvec.protocol import UpdateRule
from flatvec.space import FlatParamSpace

__all__ = ["VectorOptimizer"]


@dataclass(frozen=True)
class _Plan:
    """What ``build`` fixes once; a plain object so TF checkpoints do not track it twice."""

    space: FlatParamSpace
    slot_type: type
    slot_variables: tuple[tf.Variable, ...]  # backing variables of the rule's slots
    positions: dict[int, int]  # id of each variable's tf.Variable -> its place in the vector


def _check_positive_number(name: str, value: Any) -> None:
    """``value``: None, a schedule/callable (left to Keras), or a finite positive number."""
    if value is None or callable(value) or (name == "learning_rate" and isinstance(value, str)):
        return  # Keras checks schedules, and names the argument for a string
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a finite positive number, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a finite positive number, got {value!r}")


@keras.saving.register_keras_serializable(package="flatvec")
class VectorOptimizer(WholeVectorUpdate, keras.optimizers.Optimizer):
    r"""Run a whole-vector first-order rule inside ``model.fit``.

    At each optimizer step the gradients of all :math:`p` trainable variables are concatenated
    into one vector :math:`g \in \mathbb{R}^n`, the variables into :math:`x \in \mathbb{R}^n`,
    and the rule computes

    .. math::
        (x_{k+1}, s_{k+1}) = \mathrm{rule.update}(x_k, g_k, s_k, \eta_k),

    whose result is split back into the variables. :math:`\eta_k` is the Keras learning rate
    (a float or a ``LearningRateSchedule``), :math:`s_k` the rule's slots (a NamedTuple of
    fixed-shape tensors from ``rule.init_slots(x_0)``), each stored as one optimizer variable,
    so ``model.save`` and ``tf.train.Checkpoint`` keep them. ``g_k`` is what Keras would pass
    to any optimizer: all-reduced across replicas, loss-scale unscaled, accumulated, clipped.

    Parameters
    ----------
    rule : str or flatvec.protocol.UpdateRule
        A registered first-order rule name (``"gd"``) or a rule instance (e.g. your own
        ``UpdateRule`` subclass). Methods that re-evaluate the loss (``uses_line_search``:
        ``"lbfgs"``, ``"cg"``, ``"bfgs"``, ...) are refused with a ``ValueError``: use
        ``flatvec.minimize(model, dataset, algo=...)`` for them.
    learning_rate : float, LearningRateSchedule or callable, optional
        The step :math:`\eta`. Default: the rule's own ``learning_rate`` (0.01 for ``"gd"``).
    weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum, \
ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name
        As for every ``keras.optimizers.Optimizer``.
    **rule_options
        Options of a named rule, e.g. ``momentum=0.9, nesterov=True`` for ``"gd"``.

    Notes
    -----
    - Vector dtype: the widest float dtype of the variables. Under ``mixed_float16`` the
      variables (and so the vector) are float32; the float16 compute dtype never reaches it.
    - ``tf.IndexedSlices`` gradients (embeddings) are densified, duplicate rows summed.
    - A variable without a gradient is treated as having gradient zero (Keras warns); a rule
      with momentum may still move it, unlike per-variable Keras optimizers which skip it.
    - Requires the TensorFlow backend. The update runs through one private Keras hook,
      checked at construction, or (``FLATVEC_PRIVATE_TF=0``, or a Keras without the hook,
      with a warning) through Keras' public ``update_step``, not under ``tf.distribute``
      strategies; see ``flatvec/_tf/keras_hook.py``.
    - Saving: with a registered rule name, ``model.save`` / ``keras.models.load_model``
      round-trip without help. A rule instance of an unregistered class is stored by its
      Keras-registered class name and its ``get_config()`` (the constructor arguments):
      decorate its class with ``@keras.saving.register_keras_serializable()`` or pass
      ``custom_objects={"MyRule": MyRule}`` to ``load_model``.

    Examples
    --------
    >>> import keras, numpy as np, flatvec.keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> opt = flatvec.keras.VectorOptimizer("gd", learning_rate=0.1, momentum=0.9)
    >>> model.compile(optimizer=opt, loss="mse")
    >>> x, y = np.ones((8, 4), "float32"), np.zeros((8, 1), "float32")
    >>> _ = model.fit(x, y, epochs=2, verbose=0)
    >>> opt.space.size, [v.name for v in opt.variables][2:]   # 4 weights + 1 bias; the slot
    (5, ['velocity'])
    """

    def __init__(
        self,
        rule: str | UpdateRule = "gd",
        learning_rate: Any = None,
        *,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
        **rule_options: Any,
    ) -> None:
        private_hook = hook_usable()  # else Keras' public update_step (a warning says why)
        update_rule, rule_name = resolve_rule(rule, rule_options)
        if learning_rate is None:
            learning_rate = float(getattr(update_rule, "learning_rate", 0.01))
        # Keras checks the types of these but not their values: a NaN or negative step
        # would only show as a diverging loss.
        for option, value in (("learning_rate", learning_rate), ("clipnorm", clipnorm),
                              ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            _check_positive_number(option, value)
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
        )
        self.uses_private_hook = private_hook
        self._rule = update_rule
        self._rule_name = rule_name
        self._plan: _Plan | None = None
        self._pending: dict[int, Any] = {}  # the public route's gradients of this step
        self._expected: frozenset[int] = frozenset()  # ... and the positions that get one

    @property
    def rule(self) -> UpdateRule:
        """The update rule applied to the flat vectors."""
        return self._rule

    @property
    def space(self) -> FlatParamSpace | None:
        """The flat parameter space (``None`` until the optimizer is built)."""
        return None if self._plan is None else self._plan.space

    # ------------------------------------------------------------------ state
    def build(self, variables: list[Any]) -> None:
        """Create one optimizer variable per field of ``rule.init_slots(x0)``."""
        if self.built:
            return
        super().build(variables)
        # float8-style variables are overwritten by Keras with their "gradient"; keep them out.
        vector_vars = [v for v in variables if not getattr(v, "overwrite_with_gradient", False)]
        space = FlatParamSpace(vector_vars)
        with tf.init_scope():  # slot start values are computed once, eagerly
            slots = self._rule.init_slots(space.get())
            check_slots(self._rule, slots)
            fields = slots._fields if slots != () else ()
            # As NumPy constants: build() may run while Keras traces the train step, and only
            # constant initial values can be lifted out of an XLA-compiled function.
            values = [tf.convert_to_tensor(s).numpy() for s in slots]
        slot_variables = [
            self.add_variable(shape=v.shape, dtype=v.dtype.name, initializer=v, name=field)
            for field, v in zip(fields, values)
        ]
        self._plan = _Plan(
            space=space,
            slot_type=type(slots),
            slot_variables=tuple(backing_variable(v) for v in slot_variables),
            positions={id(backing_variable(v)): i for i, v in enumerate(vector_vars)},
        )

    # ------------------------------------------------------------------ the update
    def _position(self, variable: Any) -> int:
        position = self._plan.positions.get(id(backing_variable(variable)))
        if position is None:
            raise KerasHookError(
                f"a gradient for {getattr(variable, 'name', variable)!r}, which is no variable "
                "this optimizer was built with (a device copy under a tf.distribute strategy "
                "reaches Keras' public update_step route; that needs the private hook: "
                "FLATVEC_PRIVATE_TF not 0, on a tested Keras)")
        return position

    def vector_gradients(self, grads_and_vars: Any) -> list[Any]:
        """One step's gradients in vector order (None where Keras dropped a variable without
        a gradient), from ``(gradient, variable)`` pairs of the built variables."""
        grads: list[Any] = [None] * len(self._plan.positions)
        for g, v in grads_and_vars:
            grads[self._position(v)] = g
        return grads

    def apply(self, grads: Any, trainable_variables: Any = None) -> Any:
        """Keras' ``apply``, first noting which variables get a gradient in this step: on the
        public route (or a Keras that bypasses the hook) the rule runs once the last of them
        reaches :meth:`update_step`."""
        if trainable_variables is not None and not self.built:
            self.build(trainable_variables)
        if self._plan is not None:
            variables = (self._plan.space.variables if trainable_variables is None
                         else trainable_variables)
            positions = self._plan.positions
            self._expected = frozenset(
                positions[id(backing_variable(v))] for g, v in zip(grads, variables)
                if g is not None and id(backing_variable(v)) in positions)
            self._pending = {}
        return super().apply(grads, trainable_variables)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """The public route (see ``flatvec/_tf/keras_hook.py``): Keras calls this once per
        variable; the rule runs once all of this step's gradients are in."""
        self._pending[self._position(variable)] = gradient
        if self._expected <= self._pending.keys():
            grads = [self._pending.get(i) for i in range(len(self._plan.positions))]
            self._pending = {}
            self.update_vector(None, grads, learning_rate)

    def update_vector(self, _anchor: Any, grads: list[Any], learning_rate: Any) -> None:
        """Apply the rule to the whole vector (``grads`` in vector order, None for zero).
        Traced once per device: one concat for g, one for x, the rule, one split."""
        plan = self._plan
        space = plan.space
        g = space.pack(grads, allow_unused=True, name="gradients")
        x = space.get()
        slots = plan.slot_type(*(tf.convert_to_tensor(v) for v in plan.slot_variables))
        lr = tf.cast(learning_rate, space.dtype)
        x_new, slots_new = call_update(self._rule, with_autograph(self._rule.update), x, g,
                                       slots, learning_rate=lr)
        check_update(self._rule, x, x_new, slots, slots_new)
        for var, part in zip(space.tf_variables, space.unpack(x_new)):
            self.assign(var, part)
        for var, old, new in zip(plan.slot_variables, slots, slots_new):
            if new is not old:  # unchanged slots (e.g. gd without momentum) cost nothing
                self.assign(var, new)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """Keras' optimizer config plus ``rule`` (name or serialized rule), ``rule_options``."""
        config = super().get_config()
        config.update(rule_to_config(self._rule, self._rule_name))
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> VectorOptimizer:
        """Inverse of :meth:`get_config` (rule classes resolve through Keras' registry)."""
        config = dict(config)
        rule = rule_from_config(config.pop("rule", "gd"))
        rule_options = dict(config.pop("rule_options", None) or {})
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = keras.saving.deserialize_keras_object(
                config["learning_rate"], custom_objects=custom_objects
            )
        return cls(rule, **config, **rule_options)
