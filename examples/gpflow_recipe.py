"""GPflow models trained with flatvec in place of ``gpflow.optimizers.Scipy``.

GPflow's usual training call is::

    gpflow.optimizers.Scipy().minimize(model.training_loss, model.trainable_variables)

flatvec takes the same two arguments::

    flatvec.minimize(model.training_loss, model.trainable_variables, "lbfgs")

- The model's parameters (constrained by their bijectors, with their priors) end at
  ``result.x``; ``algo="scipy:L-BFGS-B"`` is GPflow's own optimizer through flatvec.
- ``model.training_loss_closure(data)`` (SVGP, compiled with ``tf.function`` by default) works
  as it stands, Newton-type methods included: flatvec takes Hessian-vector products of such
  closures reverse-over-reverse (forward mode through a ``tf.function`` was silently zero).
- Repeated calls with the same closure and variables reuse the compiled objective and loop.
- For runs that repeat bit for bit (SVGP's reductions), call
  ``tf.config.experimental.enable_op_determinism()`` first.

Needs GPflow (``pip install "flatvec[clients]"``; GPflow 2.11 needs ``numpy<2``).
Run: ``python examples/gpflow_recipe.py`` (``--fast``: 60 iterations a run, as the test).
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

import flatvec


def gpr_problem(seed: int = 0, n: int = 80):
    """A 1-D GPR (squared-exponential kernel) on noisy samples of a smooth function."""
    import gpflow

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, (n, 1))
    y = np.sin(x) + 0.3 * np.cos(3.0 * x) + 0.1 * rng.normal(size=(n, 1))
    return gpflow.models.GPR((x, y), kernel=gpflow.kernels.SquaredExponential())


def svgp_problem(seed: int = 0, n: int = 300, inducing: int = 20):
    """An SVGP classifier (Bernoulli likelihood) on scikit-learn's breast-cancer data."""
    import gpflow
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data.target), n, replace=False)
    x = data.data[rows]
    x = (x - x.mean(0)) / x.std(0)
    y = data.target[rows, None].astype(np.float64)
    model = gpflow.models.SVGP(
        gpflow.kernels.SquaredExponential(lengthscales=np.ones(x.shape[1])),
        gpflow.likelihoods.Bernoulli(), x[rng.choice(n, inducing, replace=False)].copy(),
        num_data=n)
    return model, (x, y)


def _fit(build, run) -> tuple[float, int, float]:
    model, closure = build()
    t0 = time.perf_counter()
    nit = run(model, closure)
    return float(closure()), nit, time.perf_counter() - t0


def main(fast: bool = False) -> dict[str, tuple[float, int, float]]:
    """Each model fitted by GPflow's optimizer and by flatvec from the same start; ``fast``
    caps the SVGP runs at 60 iterations (as the test runs them)."""
    import gpflow

    tf.config.experimental.enable_op_determinism()
    rows = {}

    def gpr():
        model = gpr_problem()
        return model, model.training_loss

    def svgp():
        model, data = svgp_problem()
        return model, model.training_loss_closure(data)  # a tf.function

    max_iter = 60 if fast else 1000

    def gpflow_scipy(model, closure):
        return gpflow.optimizers.Scipy().minimize(
            closure, model.trainable_variables, options={"maxiter": max_iter}).nit

    def flatvec_run(algo, **options):
        def run(model, closure):
            return flatvec.minimize(closure, model.trainable_variables, algo, max_iter=max_iter,
                                    **options).nit
        return run

    for problem, build in (("GPR", gpr), ("SVGP", svgp)):
        rows[f"{problem} gpflow.optimizers.Scipy"] = _fit(build, gpflow_scipy)
        rows[f"{problem} flatvec lbfgs"] = _fit(build, flatvec_run("lbfgs"))
        rows[f"{problem} flatvec newton-cg"] = _fit(build, flatvec_run("newton-cg"))
    for name, (loss, nit, wall) in rows.items():
        print(f"{name:34s} loss {loss:12.6f}  nit {nit:4d}  {wall:6.2f} s")
    return rows


if __name__ == "__main__":
    import sys

    main(fast="--fast" in sys.argv)
