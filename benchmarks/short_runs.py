"""Short runs and first calls: what a script that optimizes a model built moments ago waits for.

Views (each run in a fresh Python process, medians over ``--repeats`` processes):

- ``first@N``: the first call in the process, N = 10, 40, 200 iterations (the problem's own
  gtol/ftol may stop it earlier: ``nit`` is shown). Timed: preparing the method on the built
  problem and the run (tracing, graph set-up, evaluations); not timed: importing and building
  the model and data, common to every method.
- ``fresh@40``: in a warm process (one call of the same method on another model first), a
  fresh model built after ``keras.utils.set_random_seed`` (which clears TensorFlow's kernel
  caches, as scripts that seed before each model do).

Methods: ``flatvec:lbfgs`` and the SciPy bridge ``scipy:L-BFGS-B`` (the same compiled
objective, SciPy driving it), ``tfp:lbfgs`` and ``torch:lbfgs`` where installed (as in
:mod:`benchmarks.peers`). Problems: the digits MLP (f32, f64), the PINN, Rosenbrock n = 10^5
(:mod:`benchmarks.problems`), ``gpr-closure-f64``: a squared-exponential GP's three log
hyperparameters fit by the negative log marginal likelihood (Cholesky of a 200 x 200 kernel
matrix, a closure over ``tf.Variable`` s, written here); and where GPflow is installed,
``gpflow-gpr`` and ``gpflow-vgp`` with ``gpflow.optimizers.Scipy`` as the peer.

Run: ``python -m benchmarks.short_runs [--problems ...] [--methods ...] [--views ...]
[--repeats 3] [--no-tiers]`` (``--no-tiers``: flatvec compiles every run from its first
iteration, as before :mod:`flatvec._run.tiers`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PROBLEMS = ("mlp-digits-f32", "mlp-digits-f64", "pinn-poisson-f64", "rosenbrock-100k",
            "gpr-closure-f64", "gpflow-gpr", "gpflow-vgp")
METHODS = ("flatvec:lbfgs", "scipy:L-BFGS-B", "tfp:lbfgs", "torch:lbfgs")
GPFLOW_METHODS = ("flatvec:lbfgs", "gpflow:Scipy")
VIEWS = ("first@10", "first@40", "first@200", "fresh@40")
GPR_POINTS = 200


def gpr_closure(seed: int = 0, max_iter: int = 40) -> Any:
    """The GPR closure problem as a :class:`benchmarks.problems.Instance`."""
    import numpy as np
    import tensorflow as tf

    import flatvec
    from benchmarks.problems import Instance, ProblemSpec

    rng = np.random.default_rng(1)  # the data are fixed; ``seed`` moves the start point
    x = rng.uniform(0.0, 10.0, (GPR_POINTS, 1))
    y = np.sin(x[:, 0]) + 0.3 * np.cos(3.0 * x[:, 0]) + 0.1 * rng.normal(size=GPR_POINTS)
    xs, ys = tf.constant(x), tf.constant(y)
    start = np.array([0.0, 0.0, -1.0]) + 0.1 * np.random.default_rng(seed).normal(size=3)
    log_length, log_variance, log_noise = (tf.Variable(v, dtype=tf.float64) for v in start)
    variables = [log_length, log_variance, log_noise]
    squared = tf.reduce_sum((xs[:, None, :] - xs[None, :, :]) ** 2, axis=-1)

    def loss_fn() -> tf.Tensor:
        kernel = tf.exp(log_variance) * tf.exp(-0.5 * squared / tf.exp(2.0 * log_length))
        kernel += (tf.exp(log_noise) + 1e-6) * tf.eye(GPR_POINTS, dtype=tf.float64)
        chol = tf.linalg.cholesky(kernel)
        alpha = tf.linalg.triangular_solve(chol, ys[:, None], lower=True)
        log_det = 2.0 * tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)))
        return 0.5 * (tf.reduce_sum(alpha**2) + log_det + GPR_POINTS * np.log(2.0 * np.pi))

    def reset() -> None:
        for var, value in zip(variables, start):
            var.assign(value)

    spec = ProblemSpec("gpr-closure-f64", "GPR hyperparameters (closure)", "float64", max_iter,
                       1e-5, 1e-3)
    return Instance(spec, "closure", tf.float64, start.copy(), (loss_fn, variables), {},
                    lambda jit_compile=False: flatvec.Objective.from_closure(
                        loss_fn, variables, jit_compile=jit_compile), reset)


def _gpflow_model(kind: str, seed: int) -> Any:
    import gpflow
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, (80, 1))
    y = np.sin(x) + 0.3 * np.cos(3.0 * x) + 0.1 * rng.normal(size=(80, 1))
    kernel = gpflow.kernels.SquaredExponential()
    if kind == "gpflow-gpr":
        return gpflow.models.GPR((x, y), kernel=kernel)
    return gpflow.models.VGP((x, (y > 0).astype(np.float64)), kernel=kernel,
                             likelihood=gpflow.likelihoods.Bernoulli())


def _run_gpflow(problem: str, method: str, iterations: int, seed: int) -> dict[str, Any]:
    import gpflow

    import flatvec

    model = _gpflow_model(problem, seed)
    start = time.perf_counter()
    if method == "gpflow:Scipy":
        res = gpflow.optimizers.Scipy().minimize(
            model.training_loss, model.trainable_variables, options={"maxiter": iterations})
    else:
        res = flatvec.minimize(model.training_loss, model.trainable_variables, "lbfgs",
                               max_iter=iterations)
    return {"wall": time.perf_counter() - start, "nit": int(res.nit), "loss": float(res.fun)}


def _run_benchmark_problem(problem: str, method: str, iterations: int,
                           seed: int) -> dict[str, Any]:
    from benchmarks.peers import METHODS as PEERS
    from benchmarks.problems import build

    inst = (gpr_closure(seed, iterations) if problem == "gpr-closure-f64"
            else build(problem, seed=seed, max_iter=iterations))
    start = time.perf_counter()
    prepared = PEERS[method].prepare(inst)
    prepared.setup()
    out = prepared.run()
    return {"wall": time.perf_counter() - start, "nit": out.nit, "loss": out.loss}


def _one_call(problem: str, method: str, iterations: int, seed: int) -> dict[str, Any]:
    if problem.startswith("gpflow-"):
        return _run_gpflow(problem, method, iterations, seed)
    return _run_benchmark_problem(problem, method, iterations, seed)


def _child(problem: str, method: str, view: str, tiers: bool = True) -> dict[str, Any]:
    import flatvec._run.tiers

    flatvec._run.tiers.ENABLED = tiers
    kind, iterations = view.split("@")
    if kind == "fresh":
        _one_call(problem, method, int(iterations), seed=0)  # warms the process
        return _one_call(problem, method, int(iterations), seed=1)
    return _one_call(problem, method, int(iterations), seed=0)


def _unavailable(problem: str, method: str) -> str | None:
    if problem.startswith("gpflow-"):
        if method not in GPFLOW_METHODS:
            return "not a GPflow method"
        return None if importlib.util.find_spec("gpflow") else "GPflow not installed"
    if method in GPFLOW_METHODS and method.startswith("gpflow"):
        return "GPflow models only"
    from benchmarks.peers import METHODS as PEERS

    if method == "torch:lbfgs" and problem == "gpr-closure-f64":
        return "no PyTorch mirror"
    return PEERS[method].unavailable()


def _child_env() -> dict[str, str]:
    """The children's environment: this one, with Python's bytecode cache on. A module
    imported inside the timed call (flatvec imports an algorithm's module when a run first
    names it) then loads as it does from an installed package, not compiled from source
    again in every process (8 ms for L-BFGS's modules where ``PYTHONDONTWRITEBYTECODE`` is
    set); the peers' own lazy imports come from site-packages, compiled at installation."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS + GPFLOW_METHODS[1:]))
    parser.add_argument("--views", nargs="+", default=list(VIEWS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-tiers", action="store_true",
                        help="flatvec compiles every run at once (the design before tiers)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child, tiers=not args.no_tiers)))
        return
    print(f"{'problem':18s} {'view':10s} {'method':16s} {'nit':>4s} {'wall s':>7s} "
          f"{'x bridge':>8s}  peer", flush=True)
    for problem in args.problems:
        peer = "gpflow:Scipy" if problem.startswith("gpflow-") else "scipy:L-BFGS-B"
        methods = [m for m in args.methods if _unavailable(problem, m) is None]
        methods.sort(key=lambda m: m != peer)  # the peer first: ratios need it
        for view in args.views:
            walls: dict[str, float] = {}
            for method in methods:
                runs = []
                for _ in range(args.repeats):
                    out = subprocess.run(
                        [sys.executable, "-m", "benchmarks.short_runs", "--child", problem,
                         method, view, *(["--no-tiers"] if args.no_tiers else [])],
                        check=True, capture_output=True, text=True, env=_child_env()).stdout
                    runs.append(json.loads(out.strip().splitlines()[-1]))
                walls[method] = statistics.median(r["wall"] for r in runs)
                ratio = walls[method] / walls[peer] if peer in walls else float("nan")
                print(f"{problem:18s} {view:10s} {method:16s} {runs[0]['nit']:4d} "
                      f"{walls[method]:7.3f} {ratio:8.2f}  {peer}", flush=True)


if __name__ == "__main__":
    main()
