"""The methods compared, and how each one is run on a built problem.

Every method gets the problem's common settings: ``max_iter``, ``gtol`` on ``||g||_inf``,
``ftol`` (L-BFGS-B's relative-decrease test), 10 correction pairs for the L-BFGS variants, and
the same start point, data and dtype.

- ``flatvec:<algo>``: ``flatvec.minimize(<objective>, x0, algo=<algo>)`` on a
  :class:`flatvec.Objective` of the problem (model + data, function or closure), built once.
- ``flatvec:lbfgs-xla``: the same L-BFGS with ``jit_compile=True`` (the whole iteration and
  the objective compiled by XLA; its ``t_eval`` is the XLA-compiled evaluation).
- ``scipy:<method>``: ``flatvec.minimize(..., algo="scipy:<method>")``, SciPy driving the same
  compiled objective.
- ``tfp:lbfgs``: ``tfp.optimizer.lbfgs_minimize`` on the flat oracle of the same objective, the
  whole run in one ``tf.function`` (``tolerance=gtol``, ``f_relative_tolerance=ftol``).
- ``flatvec:newton-cg``, ``flatvec:trust-ncg``: the Newton-type methods on forward-over-reverse
  Hessian-vector products of the same objective; beside them ``scipy:Newton-CG``,
  ``scipy:trust-ncg`` and ``scipy:trust-krylov`` with ``hessp`` from the same objective (SciPy's
  Newton-CG has no gradient test: it stops on its ``xtol``, default 1e-5).
- ``flatvec:gauss-newton``, ``flatvec:lm``, ``flatvec:lm-model``, ``flatvec:lm-ggn``,
  ``scipy:lsq-lm``,
  ``scipy:lsq-trf``, ``jtj:lm``: the least-squares methods, on the problem's residual form
  where it has one (see :mod:`benchmarks.least_squares_peers`).
- ``torchmin:newton-cg``, ``torchmin:trust-ncg``: pytorch-minimize's ``minimize(method=...)``
  on a functional PyTorch mirror (``pip install pytorch-minimize``; where a problem has one),
  ``gtol`` on ``||g||_inf`` as ``gtol``, SciPy's other defaults.
- ``torch:lbfgs``: ``torch.optim.LBFGS(line_search_fn="strong_wolfe", history_size=10)`` on the
  PyTorch mirror (``tolerance_grad=gtol``; ``tolerance_change=ftol``, which PyTorch applies to
  the absolute change of f and to the step, a close match to ftol for losses of order one).
  PyTorch's thread count is chosen per problem (see ``torch_mirror.pick_threads``).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

import flatvec
from benchmarks import least_squares_peers, torch_mirror
from benchmarks.measure import RunOutput, Trace
from benchmarks.problems import Instance

__all__ = ["METHODS", "QUICK_METHODS", "Method", "Prepared"]

MEMORY = 10  # L-BFGS correction pairs, everywhere


class Prepared(NamedTuple):
    """A method bound to a problem.

    ``setup()`` (not timed) puts the start point back; ``run()`` (timed) optimizes from it;
    ``evaluate()`` is one bare loss+gradient evaluation of the same implementation.
    """

    setup: Callable[[], None]
    run: Callable[[], RunOutput]
    evaluate: Callable[[], Any]


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    max_size: int | None = None  # dense n x n methods run only up to this many parameters
    options: dict[str, Any] = field(default_factory=dict)
    jit_compile: bool = False  # flatvec: XLA for the iteration and the objective
    # flatvec: "residuals" runs on the problem's residual form where it has one, "model" on
    # its model objective only (see least_squares_peers); None: the problem's objective
    form: str | None = None
    algorithm: str | None = None  # the registered name, where the method's name differs

    def unavailable(self) -> str | None:
        """Why this method cannot run here (None when it can)."""
        if self.family == "flatvec":
            try:
                flatvec.protocol.get_algorithm(self.algo)
            except (ValueError, ImportError, AttributeError) as err:
                return f"flatvec algorithm {self.algo!r} not available ({err})"
        if self.family == "tfp" and importlib.util.find_spec("tensorflow_probability") is None:
            return "tensorflow-probability not installed (pip install '.[bench]')"
        if self.family == "torch" and not torch_mirror.available():
            return "PyTorch not installed (optional: pip install torch)"
        if self.family == "torchmin" and (not torch_mirror.available()
                                          or importlib.util.find_spec("torchmin") is None):
            return "pytorch-minimize not installed (optional: pip install torch pytorch-minimize)"
        return None

    def applies(self, inst: Instance) -> str | None:
        """Why this method is not run on ``inst`` (None when it is)."""
        if self.max_size is not None and inst.size > self.max_size:
            return f"dense n x n method, run only for n <= {self.max_size}"
        return least_squares_peers.not_applicable(self, inst)

    @property
    def algo(self) -> str:
        return self.algorithm or self.name.split(":", 1)[1].removesuffix("-xla")

    def prepare(self, inst: Instance) -> Prepared:
        if self.family in ("flatvec", "scipy"):
            return _prepare_flatvec(self, inst)
        if self.family == "tfp":
            return _prepare_tfp(inst)
        if self.family == "torchmin":
            return _prepare_torchmin(self, inst)
        if self.family in least_squares_peers.FAMILIES:
            return least_squares_peers.prepare(self, inst)
        return _prepare_torch(inst)


QUICK_METHODS = ("flatvec:lbfgs", "flatvec:gd", "scipy:L-BFGS-B", "tfp:lbfgs", "torch:lbfgs")

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("flatvec:lbfgs", "flatvec", options={"memory": MEMORY}),
        Method("flatvec:lbfgs-xla", "flatvec", options={"memory": MEMORY}, jit_compile=True),
        Method("flatvec:cg", "flatvec"),
        Method("flatvec:bfgs", "flatvec", max_size=2000),
        Method("flatvec:gd", "flatvec"),
        Method("flatvec:bb", "flatvec"),  # spectral gradient, non-monotone search
        Method("scipy:L-BFGS-B", "scipy"),
        Method("scipy:CG", "scipy"),
        # SciPy's BFGS update costs two dense n x n matrix products (O(n^3)) per iteration:
        # about 20 s for 300 iterations at n=1000 on two cores.
        Method("scipy:BFGS", "scipy", max_size=500),
        Method("tfp:lbfgs", "tfp"),
        Method("torch:lbfgs", "torch"),
        Method("flatvec:newton-cg", "flatvec"),
        Method("flatvec:trust-ncg", "flatvec"),
        Method("flatvec:gauss-newton", "flatvec", form="residuals"),
        Method("flatvec:lm", "flatvec", form="residuals"),
        Method("flatvec:lm-model", "flatvec", form="model", algorithm="lm"),
        Method("flatvec:lm-ggn", "flatvec", form="model", algorithm="lm",
               options={"solver": "cg"}),
        Method("scipy:lsq-lm", "scipy-lsq", algorithm="lm"),
        Method("scipy:lsq-trf", "scipy-lsq", algorithm="trf"),
        Method("jtj:lm", "jtj"),
        Method("scipy:Newton-CG", "scipy"),
        Method("scipy:trust-ncg", "scipy"),
        Method("scipy:trust-krylov", "scipy"),
        Method("torchmin:newton-cg", "torchmin"),
        Method("torchmin:trust-ncg", "torchmin"),
    )
}



def _flat_evaluate(inst: Instance, jit_compile: bool = False,
                   method: Method | None = None) -> Callable[[], Any]:
    """One compiled value_and_gradient of a fresh objective at the start point."""
    objective = (inst.objective(jit_compile=jit_compile) if method is None
                 else least_squares_peers.flatvec_objective(method, inst))
    x0 = tf.constant(inst.x0, inst.dtype)
    return lambda: objective.value_and_gradient(x0).value.numpy()


def _history_trace(history: dict[str, list[float]]) -> Trace:
    return Trace(
        [int(v) for v in history["nfev"]],
        [float(v) for v in history["time"]],
        [float(v) for v in history["loss"]],
    )


def _prepare_flatvec(method: Method, inst: Instance) -> Prepared:
    spec = inst.spec
    options = dict(method.options)
    if method.family == "flatvec" and method.algo == "gd":
        options["learning_rate"] = spec.gd_learning_rate
    algo = method.name if method.family == "scipy" else method.algo
    # One objective for the warm-up and the timed repeats: flatvec caches the compiled iteration
    # on it, so the first call carries the tracing and the repeats measure the steady cost.
    objective = least_squares_peers.flatvec_objective(method, inst)
    x0 = np.asarray(inst.x0)

    def run() -> RunOutput:
        res = flatvec.minimize(
            objective, x0, algo=algo, max_iter=spec.max_iter, gtol=spec.gtol,
            ftol=spec.ftol, jit_compile=method.jit_compile, **options,
        )
        grad_inf = float(np.max(np.abs(res.jac)))
        return RunOutput(int(res.nit), int(res.nfev), float(res.fun), grad_inf,
                         str(res.message), _history_trace(res.history), int(res.nhev),
                         int(res.njev) if method.form else None)

    return Prepared(inst.reset, run, _flat_evaluate(inst, method.jit_compile, method))


def _prepare_tfp(inst: Instance) -> Prepared:
    import tensorflow_probability as tfp

    spec = inst.spec
    objective = inst.objective()
    x0 = tf.constant(inst.x0, inst.dtype)
    # Each evaluation writes (loss, timestamp) into preallocated variables: no host round trip.
    capacity = 30 * spec.max_iter + 64
    with tf.init_scope():
        losses = tf.Variable(tf.zeros([capacity], tf.float64), trainable=False)
        stamps = tf.Variable(tf.zeros([capacity], tf.float64), trainable=False)
        count = tf.Variable(0, dtype=tf.int32, trainable=False)

    def oracle(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        f, g = objective(x)
        with tf.control_dependencies([f, g]):
            stamp = tf.timestamp()
        i = tf.minimum(count, capacity - 1)
        with tf.control_dependencies(
            [losses[i].assign(tf.cast(f, tf.float64)), stamps[i].assign(stamp)]
        ):
            count.assign_add(1)
            return tf.identity(f), tf.identity(g)

    @tf.function
    def optimize(start: tf.Tensor) -> Any:
        return tfp.optimizer.lbfgs_minimize(
            oracle, start, num_correction_pairs=MEMORY, tolerance=spec.gtol,
            f_relative_tolerance=spec.ftol, x_tolerance=0.0, max_iterations=spec.max_iter,
            parallel_iterations=1,
        )

    def setup() -> None:
        inst.reset()
        count.assign(0)
        objective.reset_counters()

    def run() -> RunOutput:
        start = time.time()  # same clock as tf.timestamp
        res = optimize(x0)
        grad_inf = float(tf.reduce_max(tf.abs(res.objective_gradient)))
        n = min(int(count.numpy()), capacity)
        trace = Trace(list(range(1, n + 1)), list(stamps.numpy()[:n] - start),
                      [float(v) for v in losses.numpy()[:n]])
        message = "converged" if bool(res.converged) else (
            "failed" if bool(res.failed) else "max_iter")
        return RunOutput(int(res.num_iterations), int(res.num_objective_evaluations),
                         float(res.objective_value), grad_inf, message, trace)

    return Prepared(setup, run, _flat_evaluate(inst))


def _prepare_torch(inst: Instance) -> Prepared:
    import torch

    spec = inst.spec
    probe = torch_mirror.build_mirror(inst.mirror, spec.dtype)
    threads = torch_mirror.pick_threads(probe.closure)

    def evaluate() -> Any:
        return probe.closure()

    fresh: list[torch_mirror.TorchProblem] = []

    def setup() -> None:
        fresh[:] = [torch_mirror.build_mirror(inst.mirror, spec.dtype)]

    def run() -> RunOutput:
        problem = fresh[0]
        opt = torch.optim.LBFGS(
            problem.params, lr=1.0, max_iter=spec.max_iter, max_eval=30 * spec.max_iter,
            tolerance_grad=spec.gtol, tolerance_change=spec.ftol, history_size=MEMORY,
            line_search_fn="strong_wolfe",
        )
        trace = Trace([], [], [])
        start = time.perf_counter()

        def closure() -> Any:
            loss = problem.closure()
            trace.time.append(time.perf_counter() - start)
            trace.loss.append(float(loss))
            trace.nfev.append(len(trace.loss))
            return loss

        opt.step(closure)
        state = opt.state[opt._params[0]]
        loss = float(problem.closure())  # f and g at the final point (not counted)
        grad_inf = max(float(p.grad.abs().max()) for p in problem.params)
        return RunOutput(int(state["n_iter"]), int(state["func_evals"]), loss, grad_inf,
                         f"torch threads={threads}", trace)

    return Prepared(setup, run, evaluate)


def _prepare_torchmin(method: Method, inst: Instance) -> Prepared:
    import torch
    import torchmin

    spec = inst.spec
    probe = torch_mirror.build_mirror(inst.mirror, spec.dtype)
    if probe.fun is None:
        raise NotImplementedError(f"no functional PyTorch mirror of {spec.name}")
    threads = torch_mirror.pick_threads(probe.closure)
    x0 = torch.cat([p.detach().reshape(-1) for p in probe.params])
    counts = {"f": 0, "t": [], "loss": []}
    start = [0.0]

    def fun(x: Any) -> Any:
        loss = probe.fun(x)
        counts["f"] += 1
        counts["t"].append(time.perf_counter() - start[0])
        counts["loss"].append(float(loss))
        return loss

    def setup() -> None:
        counts.update(f=0, t=[], loss=[])

    def run() -> RunOutput:
        start[0] = time.perf_counter()
        # pytorch-minimize's trust-ncg tests gtol on ||g||_2; its Newton-CG only has xtol.
        options = {} if method.algo == "newton-cg" else {"gtol": spec.gtol}
        res = torchmin.minimize(fun, x0.clone(), method=method.algo, max_iter=spec.max_iter,
                                options=options)
        x = res.x.detach().requires_grad_(True)
        loss = probe.fun(x)
        (grad,) = torch.autograd.grad(loss, x)
        trace = Trace(list(range(1, counts["f"] + 1)), counts["t"], counts["loss"])
        return RunOutput(int(res.nit), int(res.nfev), float(loss), float(grad.abs().max()),
                         f"{res.message} (torch threads={threads})", trace,
                         res.get("ncg"))  # CG iterations = products; trust-ncg reports none

    return Prepared(setup, run, probe.closure)


# The JAX peers subclass Method, so they are registered once it exists (jax_peers imports
# nothing from JAX at module level: without JAX they are listed and skipped).
from benchmarks.jax_peers import JAX_METHODS  # noqa: E402

METHODS.update({m.name: m for m in JAX_METHODS})
