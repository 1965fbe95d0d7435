"""The flat parameter space: many variables seen as one 1-D vector."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from flatvec._tf.variables import backing_variable

__all__ = ["FlatParamSpace", "VariableSlot", "check_flat_vector"]


class VariableSlot(NamedTuple):
    """Where one variable lives inside the flat vector."""

    name: str
    shape: tuple[int, ...]
    dtype: tf.DType
    offset: int
    size: int


def _as_variable_list(model_or_variables: Any) -> list[tf.Variable]:
    """Trainable variables of a Keras model/layer/module, or the given variables, deduplicated."""
    if hasattr(model_or_variables, "trainable_variables") and not isinstance(
        model_or_variables, (list, tuple)
    ):
        candidates = list(model_or_variables.trainable_variables)
        source = "model_or_variables.trainable_variables"
    elif isinstance(model_or_variables, Iterable) and not isinstance(
        model_or_variables, (str, bytes, tf.Tensor, np.ndarray)
    ):
        candidates = list(model_or_variables)
        source = "model_or_variables"
    else:
        raise TypeError(
            "model_or_variables: expected a Keras model/layer or a list of tf.Variable, "
            f"got {type(model_or_variables).__name__}"
        )
    unique: list[tf.Variable] = []
    seen: set[int] = set()
    for v in candidates:
        # Keras 3 variables wrap a tf.Variable; both expose shape/dtype/assign.
        if not (isinstance(v, tf.Variable) or _is_keras_variable(v)):
            raise TypeError(f"{source}: expected tf.Variable items, got {type(v).__name__}")
        key = id(backing_variable(v))
        if key not in seen:
            seen.add(key)
            unique.append(v)
    if not unique:
        raise ValueError(f"{source}: no trainable variables (was the model built?)")
    return unique


def _is_keras_variable(v: Any) -> bool:
    return hasattr(v, "value") and hasattr(v, "assign") and hasattr(v, "shape")


def _float_dtype(v: Any, name: str) -> tf.DType:
    dtype = tf.as_dtype(v.dtype)
    if not dtype.is_floating:
        raise TypeError(
            f"variable {name!r}: only floating-point variables can be optimized, got {dtype.name}"
        )
    return dtype


def _widest_float(dtypes: set[tf.DType]) -> tf.DType:
    """The float dtype that holds all of ``dtypes``; float16 with bfloat16 needs float32."""
    widest = max(dtypes, key=lambda d: d.size)
    if widest.size == 2 and len(dtypes) > 1:  # {float16, bfloat16}: neither holds the other
        return tf.float32
    return widest


class FlatParamSpace:
    """A list of variables seen as one flat 1-D vector.

    The layout (shapes, sizes, offsets) is computed once at construction, so ``pack`` is one
    reshape per variable plus one concat and ``unpack`` is one split plus reshapes, with no
    per-call shape arithmetic. All methods work eagerly, inside ``tf.function`` and under XLA.

    Parameters
    ----------
    model_or_variables : keras.Model, keras.Layer or sequence of tf.Variable
        A model contributes its ``trainable_variables`` in their order; a variable listed twice
        appears once.
    dtype : tf.DType or str, optional
        Working float dtype of the flat vector. Default: the widest float dtype among the
        variables. Values are cast on the way in and out.

    Examples
    --------
    >>> import tensorflow as tf, flatvec
    >>> w, b = tf.Variable(tf.ones([2, 3])), tf.Variable(tf.zeros([3]))
    >>> space = flatvec.FlatParamSpace([w, b])
    >>> space.size
    9
    >>> space.assign(tf.range(9, dtype=tf.float32))
    >>> space.unpack(space.get())[1].numpy().tolist()
    [6.0, 7.0, 8.0]
    """

    def __init__(self, model_or_variables: Any, *, dtype: Any = None) -> None:
        self._variables = _as_variable_list(model_or_variables)
        slots: list[VariableSlot] = []
        offset = 0
        for i, v in enumerate(self._variables):
            name = getattr(v, "path", None) or getattr(v, "name", f"variable_{i}")
            shape = tuple(int(d) for d in v.shape)
            size = int(np.prod(shape, dtype=np.int64))
            slots.append(VariableSlot(name, shape, _float_dtype(v, name), offset, size))
            offset += size
        self._layout = tuple(slots)
        self._sizes = [s.size for s in slots]
        self._size = offset
        if dtype is None:
            self._dtype = _widest_float({s.dtype for s in slots})
        else:
            self._dtype = tf.as_dtype(dtype)
            if not self._dtype.is_floating:
                raise TypeError(f"dtype: expected a floating dtype, got {self._dtype.name}")

    # ------------------------------------------------------------------ properties
    @property
    def variables(self) -> list[tf.Variable]:
        """The variables, in flat-vector order."""
        return list(self._variables)

    @property
    def tf_variables(self) -> list[tf.Variable]:
        """The underlying ``tf.Variable`` s (Keras 3 variables unwrapped), for tapes."""
        return [backing_variable(v) for v in self._variables]

    @property
    def size(self) -> int:
        """Total number of scalars, ``n``."""
        return self._size

    @property
    def dtype(self) -> tf.DType:
        """Working float dtype of flat vectors."""
        return self._dtype

    @property
    def layout(self) -> tuple[VariableSlot, ...]:
        """Per variable: name, shape, dtype, offset and size in the flat vector."""
        return self._layout

    def __repr__(self) -> str:
        return (
            f"FlatParamSpace(size={self._size}, dtype={self._dtype.name}, "
            f"variables={len(self._variables)})"
        )

    # ------------------------------------------------------------------ vectors
    def get(self) -> tf.Tensor:
        """All current variable values as one 1-D tensor of dtype ``self.dtype``."""
        return self.pack([backing_variable(v) for v in self._variables])

    def pack(
        self, tensors: Sequence[Any], *, allow_unused: bool = False, name: str = "tensors"
    ) -> tf.Tensor:
        """Concatenate tensors aligned with the variables (e.g. gradients) into one 1-D tensor.

        Parameters
        ----------
        tensors : sequence
            One entry per variable, in ``layout`` order. ``tf.IndexedSlices`` are densified
            (duplicate indices summed).
        allow_unused : bool
            If True, ``None`` entries (unconnected gradients) become zeros; otherwise they raise
            ``ValueError`` naming the variable.
        """
        tensors = list(tensors)
        if not allow_unused:
            self.check_connected(tensors, name)
        parts = []
        for slot, t in zip(self._layout, tensors):
            if t is None:
                parts.append(tf.zeros([slot.size], self._dtype))
                continue
            if isinstance(t, tf.IndexedSlices):
                # convert_to_tensor sums duplicate indices (unsorted_segment_sum).
                t = tf.convert_to_tensor(t)
            t = tf.convert_to_tensor(t)
            if t.shape.is_fully_defined() and t.shape.num_elements() != slot.size:
                raise ValueError(
                    f"{name}: entry for variable {slot.name!r} has shape {t.shape}, "
                    f"expected {slot.shape}"
                )
            parts.append(tf.reshape(tf.cast(t, self._dtype), [slot.size]))
        return tf.concat(parts, axis=0) if len(parts) > 1 else parts[0]

    def unpack(self, x: Any) -> list[tf.Tensor]:
        """Split a 1-D vector into tensors of the variables' shapes and dtypes."""
        x = self.check_vector(x, "x")
        pieces = tf.split(x, self._sizes) if len(self._sizes) > 1 else [x]
        return [
            tf.cast(tf.reshape(p, slot.shape), slot.dtype) for p, slot in zip(pieces, self._layout)
        ]

    def assign(self, x: Any) -> None:
        """Scatter a 1-D vector into the variables (cast to each variable's dtype).

        The vector is fully validated (rank, length, dtype) before any variable is written.
        """
        parts = self.unpack(x)
        for v, p in zip(self._variables, parts):
            v.assign(p)

    # ------------------------------------------------------------------ checks
    def check_connected(self, tensors: Sequence[Any], name: str = "tensors") -> None:
        """Raise ``ValueError`` for a wrong count of ``tensors`` (one per variable) or a
        ``None`` among them (a variable the loss does not depend on), naming the variable."""
        if len(tensors) != len(self._layout):
            raise ValueError(
                f"{name}: expected {len(self._layout)} tensors (one per variable), "
                f"got {len(tensors)}"
            )
        for slot, t in zip(self._layout, tensors):
            if t is None:
                raise ValueError(
                    f"{name}: no gradient for variable {slot.name!r} (it does not affect "
                    "the loss); pass allow_unused=True to treat it as zero"
                )

    def check_vector(self, x: Any, name: str) -> tf.Tensor:
        """``x`` as a vector of this space (arrays cast to its dtype), or a ``TypeError`` /
        ``ValueError`` naming ``name`` (see :func:`check_flat_vector`)."""
        return check_flat_vector(x, name, self._dtype, self._size, whose="the space's")


def check_flat_vector(x: Any, name: str, dtype: tf.DType, size: int | None, *,
                      whose: str = "") -> tf.Tensor:
    """``x`` as a 1-D ``dtype`` tensor of length ``size`` (None: any), or an error naming
    ``name``: tensors must have ``dtype`` already; arrays and lists are cast (NumPy defaults to
    float64 whatever the problem). ``whose`` names the owner of the expected dtype and size in
    the messages (``"the space's"``)."""
    owner = (lambda what: f" ({whose} {what})") if whose else (lambda what: "")
    if isinstance(x, (tf.Tensor, tf.Variable)):
        if not x.dtype.is_floating:
            raise TypeError(f"{name}: expected a floating vector, got dtype {x.dtype.name}")
        if x.dtype != dtype:
            raise TypeError(f"{name}: expected dtype {dtype.name}{owner('dtype')}, "
                            f"got {x.dtype.name}; cast it first")
    else:
        arr = np.asarray(x)
        if not _is_float_array(arr):
            raise TypeError(f"{name}: expected a floating vector, got dtype {arr.dtype}")
        x = tf.cast(tf.convert_to_tensor(arr), dtype)
    if x.shape.rank is not None and x.shape.rank != 1:
        raise ValueError(f"{name}: expected a 1-D vector, got shape {x.shape}")
    if size is not None and x.shape[0] is not None and x.shape[0] != size:
        raise ValueError(f"{name}: expected length {size}{owner('size')}, got {x.shape[0]}")
    return x


def _is_float_array(arr: np.ndarray) -> bool:
    try:  # tf.as_dtype knows ml_dtypes' bfloat16, which np.floating does not include
        return tf.as_dtype(arr.dtype).is_floating
    except TypeError:
        return False
