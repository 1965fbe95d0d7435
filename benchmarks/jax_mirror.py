"""The benchmark problems as pure JAX functions of one flat parameter vector.

Each mirror is ``fun(x) -> loss`` on the same data arrays, in the same dtype, as a function of
the same flat vector as the TensorFlow problem (``Instance.x0``: the Keras weights in
``trainable_weights`` order, each flattened row-major), so a JAX optimizer starts from exactly
the TensorFlow start point. Keras' Dense kernels are ``(in, out)`` and are used as such
(``h @ W + b``), so no transposition is needed.

Problems without a mirror here: the ``-ds256`` MLPs (they measure a ``tf.data`` input path that
has no JAX counterpart; their full-batch objective is the in-memory MLP's) and the CNN (not
mirrored yet).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["available", "build_mirror", "unsupported"]


def available() -> bool:
    """True when JAX can be imported."""
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def enable_x64() -> None:
    """Allow float64 arrays in JAX (off by default; float32 problems stay float32, since every
    array here is created with an explicit dtype)."""
    import jax

    jax.config.update("jax_enable_x64", True)


def unsupported(mirror: dict[str, Any]) -> str | None:
    """Why a problem has no JAX mirror (None when it has one)."""
    kind = mirror.get("kind")
    if kind == "mlp" and mirror.get("batch_size") is not None:
        return "no JAX mirror of the tf.data input path (the in-memory MLP is mirrored)"
    if kind not in ("rosenbrock", "logreg", "mlp", "pinn"):
        return f"no JAX mirror of {kind!r} problems"
    return None


def build_mirror(mirror: dict[str, Any], dtype: str) -> Callable[[Any], Any]:
    """``fun(x)``: the problem's loss as a JAX function of the flat parameter vector."""
    why = unsupported(mirror)
    if why is not None:
        raise NotImplementedError(why)
    enable_x64()
    import jax.numpy as jnp

    kind = mirror["kind"]
    if kind == "rosenbrock":
        return _rosenbrock
    if kind == "logreg":
        return _logreg(jnp, mirror, dtype)
    if kind == "mlp":
        return _mlp(jnp, mirror, dtype)
    return _pinn(mirror, dtype)


def _rosenbrock(x: Any) -> Any:
    import jax.numpy as jnp

    odd, even = x[0::2], x[1::2]
    return jnp.sum(100.0 * (even - odd**2) ** 2 + (1.0 - odd) ** 2)


def _logreg(jnp: Any, mirror: dict[str, Any], dtype: str) -> Callable[[Any], Any]:
    import jax

    features = jnp.asarray(mirror["x"], dtype)
    labels = jnp.asarray(mirror["y"], dtype)
    d, l2 = features.shape[1], mirror["l2"]

    def fun(w: Any) -> Any:
        z = features @ w[:d] + w[d]
        data_term = jnp.mean(jax.nn.softplus(z) - labels * z)
        return data_term + 0.5 * l2 * jnp.sum(w[:d] ** 2)

    return fun


def _unflatten(shapes: list[tuple[int, ...]]) -> Callable[[Any], list[Any]]:
    """Split a flat vector into arrays of ``shapes`` (row-major, in order)."""
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0, *sizes])

    def split(x: Any) -> list[Any]:
        return [x[a:b].reshape(s) for a, b, s in zip(offsets[:-1], offsets[1:], shapes)]

    return split


def _dense_stack(weights: list[Any], h: Any) -> Any:
    """tanh Dense layers with a linear last layer; ``weights`` = [k1, b1, k2, b2, ...]."""
    import jax.numpy as jnp

    pairs = list(zip(weights[0::2], weights[1::2]))
    for kernel, bias in pairs[:-1]:
        h = jnp.tanh(h @ kernel + bias)
    kernel, bias = pairs[-1]
    return h @ kernel + bias


def _mlp(jnp: Any, mirror: dict[str, Any], dtype: str) -> Callable[[Any], Any]:
    import jax

    x = jnp.asarray(mirror["x"], dtype)
    y = jnp.asarray(mirror["y"], jnp.int32)
    split = _unflatten([w.shape for w in mirror["weights"]])
    l2 = mirror["l2"]

    def fun(z: Any) -> Any:
        weights = split(z)
        logits = _dense_stack(weights, x)
        log_p = jax.nn.log_softmax(logits, axis=-1)
        # Keras' sparse categorical cross-entropy (mean) plus its L2 regularizer on kernels.
        nll = -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=-1))
        return nll + l2 * sum(jnp.sum(k**2) for k in weights[0::2])

    return fun


def _pinn(mirror: dict[str, Any], dtype: str) -> Callable[[Any], Any]:
    import jax
    import jax.numpy as jnp

    xs = jnp.asarray(mirror["x"], dtype)[:, 0]
    source = jnp.asarray(mirror["source"], dtype)[:, 0]
    bound = jnp.asarray(mirror["bound"], dtype)
    split = _unflatten([w.shape for w in mirror["weights"]])

    def fun(z: Any) -> Any:
        weights = split(z)

        def u(t: Any) -> Any:  # the network at one scalar input
            return _dense_stack(weights, t.reshape(1, 1))[0, 0]

        d2u = jax.vmap(jax.grad(jax.grad(u)))(xs)
        boundary = _dense_stack(weights, bound)
        return jnp.mean((d2u - source) ** 2) + 0.5 * jnp.sum(boundary**2)

    return fun
