r"""The embedded benchmark problems: data, models, functions and initial weights.

Every problem is built once from a seed; every method then starts from the same point on the same
data in the same dtype. Nothing is downloaded: the data sets ship with scikit-learn.

Problems
--------
``rosenbrock-1k``, ``rosenbrock-100k``, ``rosenbrock-1m``
    Extended Rosenbrock (Moré, Garbow & Hillstrom 1981, problem 21), float64,
    :math:`f(x) = \sum_{i=1}^{n/2} 100 (x_{2i} - x_{2i-1}^2)^2 + (1 - x_{2i-1})^2`,
    from :math:`x_0 = (-1.2, 1, -1.2, 1, \dots)`.
``logreg-cancer``
    L2-regularized logistic regression on breast-cancer (569 x 30, standardized), float64:
    :math:`\frac1N\sum_i \log(1 + e^{z_i}) - y_i z_i + \frac{\lambda}{2}\|w\|^2`,
    :math:`z = Xw + b`, from zero.
``mlp-digits-f32|f64[-ds256]``
    Dense(128, tanh)-Dense(128, tanh)-Dense(10) on digits (1797 x 64, X/16), softmax
    cross-entropy plus :math:`2^{-10} \sum w^2` on the kernels, full batch; as one in-memory
    batch, or (``-ds256``) a ``tf.data.Dataset`` of batch 256.
``cnn-digits-f32``
    8x8x1 digits: Conv2D(6, 3, same, tanh)-MaxPool(2)-Conv2D(16, 3, same, tanh)-Flatten-
    Dense(120, tanh)-Dense(84, tanh)-Dense(10), same loss and weight decay, float32.
``pinn-poisson-f64``
    Physics-informed fit of :math:`u'' = -\pi^2 \sin(\pi x)` on (0, 1), :math:`u(0)=u(1)=0`
    (solution :math:`\sin \pi x`) with a 1-32-32-1 tanh MLP, float64:
    :math:`\frac1M\sum_j (u''(x_j) - f(x_j))^2 + \frac12 (u(0)^2 + u(1)^2)`.
``sinc-mlp-f64``
    The Keras Levenberg-Marquardt package's curve fit: a 1-20-1 tanh MLP fit to
    :math:`y = \operatorname{sinc} x` at 1000 points of [-1, 1] under MSE, float64 (n = 61).

Rosenbrock, the PINN and the sinc fit are least squares and also carry a residual form
(``Instance.residuals``, :mod:`benchmarks.residual_forms`) with :math:`\frac12\|r\|^2` equal to
the loss, for the least-squares methods (:mod:`benchmarks.least_squares_peers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import flatvec
from benchmarks import residual_forms
from benchmarks.residual_forms import ResidualForm

__all__ = ["PROBLEMS", "QUICK", "Instance", "ProblemSpec", "build"]

LOGREG_L2 = 1e-3
# Weight decay on the networks' kernels (Keras' L2: lambda * sum w^2). Without it the digits
# losses fall towards 0 for as long as one iterates, so "1.05 x the best final loss" would only
# measure who was allowed the most evaluations; with it there is a positive minimum that every
# L-BFGS reaches within 5% in about 120 evaluations. A power of two, because Keras rounds the
# coefficient through float32 even for float64 weights.
NET_L2 = 2.0**-10
PINN_POINTS = 128
SINC_WIDTH, SINC_POINTS = 20, 1000
DEFAULT_FTOL = 2.220446049250313e-09


@dataclass(frozen=True)
class ProblemSpec:
    """A problem and the common settings every method gets on it."""

    name: str
    description: str
    dtype: str
    max_iter: int
    gtol: float
    gd_learning_rate: float  # fixed step of the `gd` baseline (stable for this problem)
    network: bool = False  # counts as a network problem for the acceptance targets
    quick_max_iter: int = 10
    ftol: float = DEFAULT_FTOL
    default_methods: tuple[str, ...] | None = None  # the default set's methods (None: all)
    target: float | None = None  # a fixed target loss (None: 1.05 x the best final loss)


@dataclass
class Instance:
    """A built problem.

    ``minimize_args``/``minimize_kwargs`` are what ``flatvec.minimize`` gets (model form,
    function form or closure form); ``objective(jit_compile=False)`` builds a fresh
    :class:`flatvec.Objective` of the same problem (the oracle for SciPy, tfp and ``t_eval``);
    ``reset()`` puts the initial weights back; ``mirror`` holds the arrays the PyTorch mirror
    is built from; ``residuals``, for least-squares problems, is r(x) with ½‖r(x)‖² equal to
    the loss.
    """

    spec: ProblemSpec
    form: str
    dtype: tf.DType
    x0: np.ndarray
    minimize_args: tuple[Any, Any]
    minimize_kwargs: dict[str, Any]
    objective: Callable[..., flatvec.Objective]
    reset: Callable[[], None]
    mirror: dict[str, Any] = field(default_factory=dict)
    residuals: ResidualForm | None = None

    @property
    def size(self) -> int:
        return int(self.x0.size)


# ---------------------------------------------------------------------- data
def digits(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: X / 16 in ``dtype`` (1797 x 64), integer labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(dtype), data.target.astype(np.int32)


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's breast-cancer data, standardized (569 x 30, float64), labels in {0, 1}."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data.astype(np.float64)
    return (x - x.mean(0)) / x.std(0), data.target.astype(np.float64)


def glorot_weights(shapes: list[tuple[int, ...]], seed: int) -> list[np.ndarray]:
    """Glorot-uniform kernels and zero biases for Keras weight shapes, in float64."""
    rng = np.random.default_rng(seed)
    weights = []
    for shape in shapes:
        if len(shape) == 1:
            weights.append(np.zeros(shape))
            continue
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-limit, limit, size=shape))
    return weights


# ---------------------------------------------------------------------- builders
def _model_instance(
    spec: ProblemSpec, model: keras.Model, data: Any, loss: Any, seed: int, mirror: dict
) -> Instance:
    init = glorot_weights([tuple(w.shape) for w in model.trainable_weights], seed)
    init = [w.astype(spec.dtype) for w in init]

    def reset() -> None:
        for var, value in zip(model.trainable_weights, init):
            var.assign(value)

    reset()
    x0 = flatvec.FlatParamSpace(model).get().numpy()
    mirror = dict(mirror, weights=init)
    return Instance(
        spec, "model", tf.as_dtype(spec.dtype), x0, (model, data), {"loss": loss},
        lambda jit_compile=False: flatvec.Objective.from_model(
            model, data, loss, jit_compile=jit_compile),
        reset, mirror,
    )


def _function_instance(spec: ProblemSpec, fun: Callable, x0: np.ndarray, mirror: dict) -> Instance:
    dtype = tf.as_dtype(spec.dtype)
    return Instance(
        spec, "function", dtype, x0, (fun, x0), {},
        lambda jit_compile=False: flatvec.Objective.from_function(
            fun, dtype=dtype, size=x0.size, jit_compile=jit_compile),
        lambda: None, dict(mirror, x0=x0),
    )


def _rosenbrock(spec: ProblemSpec, n: int, seed: int) -> Instance:
    del seed

    def fun(x: tf.Tensor) -> tf.Tensor:
        odd, even = x[0::2], x[1::2]
        return tf.reduce_sum(100.0 * (even - odd**2) ** 2 + (1.0 - odd) ** 2)

    inst = _function_instance(spec, fun, np.tile([-1.2, 1.0], n // 2), {"kind": "rosenbrock"})
    inst.residuals = residual_forms.rosenbrock(n)
    return inst


def _logreg(spec: ProblemSpec, seed: int) -> Instance:
    del seed
    x_np, y_np = breast_cancer()
    features, labels = tf.constant(x_np), tf.constant(y_np)
    d = x_np.shape[1]

    def fun(w: tf.Tensor) -> tf.Tensor:
        z = tf.linalg.matvec(features, w[:d]) + w[d]
        data_term = tf.reduce_mean(tf.math.softplus(z) - labels * z)
        return data_term + 0.5 * LOGREG_L2 * tf.reduce_sum(w[:d] ** 2)

    mirror = {"kind": "logreg", "x": x_np, "y": y_np, "l2": LOGREG_L2}
    return _function_instance(spec, fun, np.zeros(d + 1), mirror)


def _dense_factory(dtype: str) -> Callable[..., keras.layers.Layer]:
    def dense(units: int, activation: str | None = None) -> keras.layers.Layer:
        return keras.layers.Dense(units, activation=activation, dtype=dtype,
                                  kernel_regularizer=keras.regularizers.L2(NET_L2))

    return dense


def plain_digits_mlp(seed: int = 0, dtype: str = "float32") -> keras.Model:
    """The Dense(128, tanh)-Dense(128, tanh)-Dense(10) digits MLP without regularizers, seeded
    (the timing scripts compare one evaluation or one epoch on it)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((64,), dtype=dtype),
            keras.layers.Dense(128, activation="tanh", dtype=dtype),
            keras.layers.Dense(128, activation="tanh", dtype=dtype),
            keras.layers.Dense(10, dtype=dtype),
        ]
    )


def _mlp(spec: ProblemSpec, seed: int, batch_size: int | None) -> Instance:
    x, y = digits(spec.dtype)
    dense = _dense_factory(spec.dtype)
    model = keras.Sequential(
        [keras.Input((64,), dtype=spec.dtype), dense(128, "tanh"), dense(128, "tanh"), dense(10)]
    )
    data: Any = (x, y)
    if batch_size is not None:
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    mirror = {"kind": "mlp", "x": x, "y": y, "batch_size": batch_size, "l2": NET_L2}
    return _model_instance(spec, model, data, loss, seed, mirror)


def _cnn(spec: ProblemSpec, seed: int) -> Instance:
    x, y = digits(spec.dtype)
    x = x.reshape(-1, 8, 8, 1)
    dt = spec.dtype
    dense = _dense_factory(dt)

    def conv(filters: int) -> keras.layers.Layer:
        return keras.layers.Conv2D(filters, 3, padding="same", activation="tanh", dtype=dt,
                                   kernel_regularizer=keras.regularizers.L2(NET_L2))

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), dtype=dt), conv(6), keras.layers.MaxPooling2D(2, dtype=dt),
            conv(16), keras.layers.Flatten(dtype=dt), dense(120, "tanh"), dense(84, "tanh"),
            dense(10),
        ]
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    mirror = {"kind": "cnn", "x": x, "y": y, "l2": NET_L2}
    return _model_instance(spec, model, (x, y), loss, seed, mirror)


def pinn_points(dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interior collocation points, the source term there, and the two boundary points."""
    xs = np.linspace(0.0, 1.0, PINN_POINTS + 2)[1:-1].reshape(-1, 1).astype(dtype)
    source = (-np.pi**2 * np.sin(np.pi * xs)).astype(dtype)
    return xs, source, np.array([[0.0], [1.0]], dtype=dtype)


def _pinn(spec: ProblemSpec, seed: int) -> Instance:
    dt = spec.dtype
    model = keras.Sequential(
        [
            keras.Input((1,), dtype=dt),
            keras.layers.Dense(32, activation="tanh", dtype=dt),
            keras.layers.Dense(32, activation="tanh", dtype=dt),
            keras.layers.Dense(1, dtype=dt),
        ]
    )
    xs_np, source_np, bound_np = pinn_points(dt)
    xs, source, bound = tf.constant(xs_np), tf.constant(source_np), tf.constant(bound_np)

    def loss_fn() -> tf.Tensor:
        # u'' by two nested input tapes; each u(x_j) depends on x_j only, so the gradient of
        # the sum is the pointwise derivative.
        with tf.GradientTape() as outer:
            outer.watch(xs)
            with tf.GradientTape() as inner:
                inner.watch(xs)
                u = model(xs)
            du = inner.gradient(u, xs)
        d2u = outer.gradient(du, xs)
        return tf.reduce_mean((d2u - source) ** 2) + 0.5 * tf.reduce_sum(model(bound) ** 2)

    shapes = [tuple(w.shape) for w in model.trainable_weights]
    init = [w.astype(dt) for w in glorot_weights(shapes, seed)]

    def reset() -> None:
        for var, value in zip(model.trainable_weights, init):
            var.assign(value)

    reset()
    variables = list(model.trainable_variables)
    x0 = flatvec.FlatParamSpace(variables).get().numpy()
    mirror = {"kind": "pinn", "x": xs_np, "source": source_np, "bound": bound_np, "weights": init}
    return Instance(
        spec, "closure", tf.as_dtype(dt), x0, (loss_fn, variables), {},
        lambda jit_compile=False: flatvec.Objective.from_closure(
            loss_fn, variables, jit_compile=jit_compile),
        reset, mirror, residual_forms.pinn(model, xs_np, source_np, bound_np),
    )


def sinc_data(dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """The sinc fit's samples: ``SINC_POINTS`` points of [-1, 1] and sinc there, ``[N, 1]``."""
    x = np.linspace(-1.0, 1.0, SINC_POINTS)[:, None].astype(dtype)
    return x, np.sinc(x).astype(dtype)


def _sinc(spec: ProblemSpec, seed: int) -> Instance:
    dt = spec.dtype
    model = keras.Sequential([keras.Input((1,), dtype=dt),
                              keras.layers.Dense(SINC_WIDTH, activation="tanh", dtype=dt),
                              keras.layers.Dense(1, dtype=dt)])
    x, y = sinc_data(dt)
    inst = _model_instance(spec, model, (x, y), "mse", seed, {"kind": "sinc", "x": x, "y": y})
    inst.residuals = residual_forms.keras_mse(model, x, y)
    return inst


# ---------------------------------------------------------------------- registry
# The batched-data variants ask how the data path costs, not how the methods differ.
# The default set (`python -m benchmarks`, `make bench`) is kept to a few minutes on 2 cores;
# `--methods all` runs every method everywhere. Left out by default: tfp where the acceptance
# checks do not use it (its first call alone takes 6-26 s per problem), the XLA variant where
# it is no faster, fixed-step gradient descent on the networks (far behind), and the CG
# methods on the CNN (10 s each without telling more than the MLP).
ALL_BUT_TFP = ("flatvec:lbfgs", "flatvec:lbfgs-xla", "flatvec:cg", "flatvec:bfgs", "flatvec:gd",
               "scipy:L-BFGS-B", "scipy:CG", "scipy:BFGS", "torch:lbfgs")
DATA_PATH = ("flatvec:lbfgs", "scipy:L-BFGS-B", "torch:lbfgs")
NETWORK_METHODS = ("flatvec:lbfgs", "flatvec:lbfgs-xla", "flatvec:cg", "flatvec:bfgs",
                   "scipy:L-BFGS-B", "scipy:CG", "scipy:BFGS", "tfp:lbfgs", "torch:lbfgs")
CNN_METHODS = ("flatvec:lbfgs", "scipy:L-BFGS-B", "torch:lbfgs")
# Newton-type methods beside their SciPy and pytorch-minimize twins (Hessian-vector products);
# in the default set on the small problems only: on the digits MLP each method takes minutes
# (`--methods` runs them there).
SECOND_ORDER = ("flatvec:newton-cg", "flatvec:trust-ncg", "scipy:Newton-CG", "scipy:trust-ncg",
                "scipy:trust-krylov", "torchmin:newton-cg", "torchmin:trust-ncg")
# Least-squares methods on the problems with a residual form (each skips where it cannot run:
# SciPy's lm needs m >= n, the dense peers a small enough Jacobian). All of them on the PINN;
# elsewhere by default only those that take seconds, not tens of seconds: SciPy's MINPACK and
# trf factorize the dense 1000 x 1000 Jacobian of Rosenbrock at every step (4-6 s a run), and
# on the sinc fit the reverse-mode Jacobian of its 1000 rows costs about 0.1 s (trf: 12 s).
LEAST_SQUARES = ("flatvec:lm", "flatvec:lm-ggn", "flatvec:gauss-newton", "scipy:lsq-lm",
                 "scipy:lsq-trf", "jtj:lm")
ROSENBROCK_LSQ = ("flatvec:lm", "flatvec:gauss-newton", "jtj:lm")
ROSENBROCK_1M = ("flatvec:lbfgs", "flatvec:lbfgs-xla", "scipy:L-BFGS-B", "tfp:lbfgs",
                 "torch:lbfgs", "optax:lbfgs", "jaxopt:lbfgs", "optimistix:lbfgs")
SINC_METHODS = ("flatvec:lbfgs", "scipy:L-BFGS-B", "torch:lbfgs", "flatvec:lm", "flatvec:lm-ggn",
                "scipy:lsq-lm", "jtj:lm")

_SPECS = [
    (ProblemSpec("rosenbrock-1k", "extended Rosenbrock, n=1000", "float64", 200, 1e-5, 1e-3,
                 default_methods=ALL_BUT_TFP + SECOND_ORDER + ROSENBROCK_LSQ),
     lambda s, seed: _rosenbrock(s, 1000, seed)),
    (ProblemSpec("rosenbrock-100k", "extended Rosenbrock, n=100000", "float64", 200, 1e-5,
                 1e-3), lambda s, seed: _rosenbrock(s, 100_000, seed)),
    # Where the pair buffers (2 x 80 MB) no longer fit in a cache; only the L-BFGS family by
    # default: SciPy's other methods and the second-order peers take minutes here.
    (ProblemSpec("rosenbrock-1m", "extended Rosenbrock, n=1000000", "float64", 200, 1e-5,
                 1e-3, default_methods=ROSENBROCK_1M),
     lambda s, seed: _rosenbrock(s, 1_000_000, seed)),
    (ProblemSpec("logreg-cancer", "L2 logistic regression, breast cancer", "float64", 200,
                 1e-6, 0.25, default_methods=ALL_BUT_TFP + SECOND_ORDER), _logreg),
    (ProblemSpec("mlp-digits-f32", "MLP 64-128-128-10, digits, one batch", "float32", 120,
                 1e-5, 0.5, network=True, default_methods=NETWORK_METHODS),
     lambda s, seed: _mlp(s, seed, None)),
    (ProblemSpec("mlp-digits-f64", "MLP 64-128-128-10, digits, one batch", "float64", 120,
                 1e-5, 0.5, network=True, default_methods=NETWORK_METHODS),
     lambda s, seed: _mlp(s, seed, None)),
    (ProblemSpec("mlp-digits-f32-ds256", "MLP, digits, tf.data batch 256", "float32", 120,
                 1e-5, 0.5, network=True, default_methods=DATA_PATH),
     lambda s, seed: _mlp(s, seed, 256)),
    (ProblemSpec("mlp-digits-f64-ds256", "MLP, digits, tf.data batch 256", "float64", 120,
                 1e-5, 0.5, network=True, default_methods=DATA_PATH),
     lambda s, seed: _mlp(s, seed, 256)),
    (ProblemSpec("cnn-digits-f32", "CNN 2 conv + 3 dense, digits", "float32", 100, 1e-5, 0.2,
                 network=True, default_methods=CNN_METHODS), _cnn),
    # The PINN's loss is far below 1, where L-BFGS-B's ftol is an absolute test (a decrease of
    # 2.2e-9 per iteration) that stops every L-BFGS near 1e-5: off, so that the runs go on to
    # the fixed target 1e-6 (with --max-iter; about 650 L-BFGS iterations) or to gtol.
    (ProblemSpec("pinn-poisson-f64", "PINN 1-32-32-1, u''=f on (0,1)", "float64", 200, 1e-6,
                 1e-4, network=True, ftol=0.0, target=1e-6,
                 default_methods=NETWORK_METHODS + LEAST_SQUARES), _pinn),
    # The sinc fit's target is the Keras LM package's 1e-8 (ftol off, as for the PINN); 80
    # iterations: lm and its SciPy peers reach it within 70 evaluations (0.1 s per Jacobian).
    (ProblemSpec("sinc-mlp-f64", "MLP 1-20-1 tanh, sinc fit, MSE", "float64", 80, 1e-10,
                 0.5, ftol=0.0, target=1e-8,
                 default_methods=SINC_METHODS), _sinc),
]

PROBLEMS: dict[str, ProblemSpec] = {spec.name: spec for spec, _ in _SPECS}
_BUILDERS = {spec.name: builder for spec, builder in _SPECS}
QUICK = ("mlp-digits-f32",)  # --quick: the main workload only (tracing dominates its cost)


def build(name: str, *, seed: int = 0, max_iter: int | None = None) -> Instance:
    """Build problem ``name`` (initial weights from ``seed``); ``max_iter`` overrides the spec's."""
    if name not in PROBLEMS:
        raise ValueError(f"problem: unknown {name!r}; known: {', '.join(PROBLEMS)}")
    spec = PROBLEMS[name]
    if max_iter is not None:
        spec = ProblemSpec(**{**spec.__dict__, "max_iter": int(max_iter)})
    keras.utils.set_random_seed(seed)
    return _BUILDERS[name](spec, seed)
